/**
 * One value-based secret masker (as Airflow masks registered secret values in its logs): resolved
 * secrets are registered once, and `mask(text)` replaces every occurrence of each of them — and of
 * the forms a secret takes when it travels — with `***`:
 * - the value itself;
 * - base64 (standard and URL alphabets, padded or not), also *inside* a longer base64 string at any
 *   of the three byte alignments (the password in `Authorization: Basic base64(user:password)`);
 * - hex of its UTF-8 bytes, lower and upper case;
 * - URL-encoded (`encodeURIComponent`, and form encoding with `+` for spaces);
 * - JSON-escaped (inside a JSON string, twice escaped inside JSON in JSON, and with non-ASCII as `\uXXXX`).
 * Values shorter than `minLength` (default 4) are not registered: masking every `a` or `12` in a
 * log makes it unreadable and protects nothing a guess would not find.
 */

export interface Masker {
  /** Register secret values (empty and too-short ones are ignored). */
  add(...values: (string | undefined | null)[]): void;
  /** `text` with every registered value, in every form above, replaced by the mark. */
  mask(text: string): string;
  /** How many values are registered. */
  readonly size: number;
}

export function createMasker(opts: { minLength?: number; mark?: string } = {}): Masker {
  const minLength = opts.minLength ?? 4;
  const mark = opts.mark ?? "***";
  const values = new Set<string>();
  let pattern: RegExp | undefined;
  return {
    add(...vs) {
      for (const v of vs) {
        if (typeof v !== "string" || v.length < minLength || values.has(v)) continue;
        values.add(v);
        pattern = undefined;
      }
    },
    mask(text) {
      if (values.size === 0) return text;
      pattern ??= buildPattern(values, minLength);
      return text.replace(pattern, mark);
    },
    get size() {
      return values.size;
    },
  };
}

/** Every form of every value, longest first so that a secret containing another is masked whole. */
export function encodedForms(value: string, minLength = 4): string[] {
  const forms = new Set<string>([value]);
  const bytes = Buffer.from(value, "utf8");
  for (const b64 of base64Forms(bytes)) forms.add(b64);
  forms.add(bytes.toString("hex"));
  forms.add(bytes.toString("hex").toUpperCase());
  const url = encodeURIComponent(value);
  forms.add(url);
  forms.add(url.replace(/%20/g, "+"));
  // Lower-case percent escapes are valid too, and some clients write them.
  forms.add(url.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()));
  const json = JSON.stringify(value).slice(1, -1);
  forms.add(json);
  forms.add(JSON.stringify(json).slice(1, -1));
  forms.add(json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
  return [...forms].filter((f) => f.length >= minLength);
}

/**
 * The base64 of `bytes` standing alone, and the characters that encode only `bytes` when they sit
 * at offset 1 or 2 (mod 3) inside a longer encoded message: those do not depend on the neighbours.
 */
function base64Forms(bytes: Buffer): string[] {
  const out: string[] = [];
  const whole = bytes.toString("base64");
  out.push(whole, whole.replace(/=+$/, ""));
  for (let k = 0; k < 3; k++) {
    const enc = Buffer.concat([Buffer.alloc(k), bytes])
      .toString("base64")
      .replace(/=+$/, "");
    const first = Math.ceil((8 * k) / 6);
    const last = Math.floor((8 * (k + bytes.length)) / 6); // exclusive: a char straddling the end depends on what follows
    if (last > first) out.push(enc.slice(first, last));
  }
  const url = out.map((s) => s.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""));
  return [...out, ...url];
}

function buildPattern(values: Set<string>, minLength: number): RegExp {
  const forms = new Set<string>();
  for (const v of values) for (const f of encodedForms(v, minLength)) forms.add(f);
  const sorted = [...forms].sort((a, b) => b.length - a.length).map(escapeRegExp);
  return new RegExp(sorted.join("|"), "g");
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/**
 * The process-wide masker: every secret value this process resolves (connectors/secrets.ts
 * resolveSecret, keys loaded from `env:`/`file:` references) is registered here, and every path
 * text leaves the process by — attempt logs, the CLI's JSON log lines, error messages the store
 * keeps, API error bodies, the metrics text — passes through `maskSecrets`. One masker, not one
 * per path, so a secret registered anywhere is masked everywhere.
 */
const processMasker = createMasker();

/** Register resolved secret values with the process-wide masker. */
export function registerSecret(...values: (string | undefined | null)[]): void {
  processMasker.add(...values);
}

/** `text` with every registered secret, in every encoded form, replaced by `***`. */
export function maskSecrets(text: string): string {
  return processMasker.mask(text);
}

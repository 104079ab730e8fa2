/**
 * Secret references.
 *
 * Workflow files never hold secret values: a field declared as a secret holds a reference,
 * `env:NAME` or `file:PATH`, resolved only at the moment a connector needs it. Error messages
 * name the reference (the variable, the path), never the value, so they are safe to log and to
 * store in the run history.
 */
import { readFile } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import { SluiceError } from "../errors.js";
import { registerSecret } from "../crypto/masker.js";

export type SecretRef = `env:${string}` | `file:${string}`;

export interface ResolveSecretOptions {
  /** Environment to read `env:` references from (default `process.env`); tests pass their own. */
  env?: NodeJS.ProcessEnv;
  /** Directory that relative `file:` paths are resolved against (default: the working directory). */
  baseDir?: string;
}

/** True when `value` is written as a secret reference (it says nothing about whether it resolves). */
export function isSecretRef(value: unknown): value is SecretRef {
  return typeof value === "string" && /^(env|file):./.test(value);
}

/**
 * Resolve a secret reference to its value.
 *
 * `field` is the configuration field name ("password", "auth.token"), used in messages so the
 * user knows which setting to fix. A literal value is refused: accepting it "just this once"
 * is how passwords end up committed in YAML.
 */
export async function resolveSecret(ref: string, field: string, opts: ResolveSecretOptions = {}): Promise<string> {
  if (!isSecretRef(ref)) {
    throw new SluiceError("BAD_CONFIG", `${field} must be a secret reference (env:NAME or file:PATH), not a literal value`, { details: { field } });
  }
  if (ref.startsWith("env:")) {
    const name = ref.slice(4);
    const value = (opts.env ?? process.env)[name];
    // An empty variable is treated as missing: an empty password or token is always a mistake,
    // and failing here is clearer than an authentication error from the far side.
    if (value === undefined || value === "") {
      throw new SluiceError("BAD_CONFIG", `${field} refers to environment variable ${name}, which is not set or is empty.`, {
        details: { field, variable: name },
      });
    }
    // Every value resolved here is masked wherever this process writes text (crypto/masker.ts).
    registerSecret(value);
    return value;
  }
  const path = resolvePath(opts.baseDir ?? process.cwd(), ref.slice(5));
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "does not exist"
        : code === "EACCES"
          ? "is not readable"
          : code === "EISDIR"
            ? "is a directory"
            : `cannot be read (${code ?? "unknown error"})`;
    throw new SluiceError("BAD_CONFIG", `${field} refers to secret file ${path}, which ${why}.`, { details: { field, path } });
  }
  // Editors and `echo x > file` add a trailing newline that is never part of the secret.
  const value = text.replace(/(\r?\n)+$/, "");
  if (value === "") {
    throw new SluiceError("BAD_CONFIG", `${field} refers to secret file ${path}, which is empty.`, { details: { field, path } });
  }
  registerSecret(value);
  return value;
}

/**
 * Replace every occurrence of each secret in `text` with `***`.
 *
 * Longest secrets go first so a secret that contains another is masked whole. The URL-encoded
 * form is masked too, because secrets most often leak inside URLs and query strings.
 */
export function redact(text: string, secrets: readonly (string | undefined)[], mask = "***"): string {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (!s) continue;
    forms.add(s);
    const encoded = encodeURIComponent(s);
    if (encoded !== s) forms.add(encoded);
  }
  let out = text;
  for (const form of [...forms].sort((a, b) => b.length - a.length)) out = out.split(form).join(mask);
  return out;
}

/**
 * Query parameters whose values are masked when a URL is shown to people: names whose last word
 * is one of these (`access_token`, `X-Amz-Signature`, `apiKey`, `key`), but not `monkey` or `author`.
 */
const SENSITIVE_PARAM = /(^|[-_.])(token|secret|password|passwd|pwd|apikey|key|signature|sig|auth|credentials?|session)$/i;

function isSensitiveParam(name: string): boolean {
  return SENSITIVE_PARAM.test(name.replace(/([a-z0-9])([A-Z])/g, "$1_$2"));
}

/**
 * A URL safe to print: user name and password removed, sensitive-looking query values masked.
 * Anything that does not parse as a URL is returned with a `user:pass@` part cut out.
 */
export function safeUrl(url: string | URL): string {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    return String(url).replace(/\/\/[^/@\s]*@/, "//");
  }
  u.username = "";
  u.password = "";
  for (const key of [...u.searchParams.keys()]) {
    if (isSensitiveParam(key)) u.searchParams.set(key, "***");
  }
  // URLSearchParams re-encodes "***" as "%2A%2A%2A"; put the readable mask back.
  return u.toString().replace(/%2A%2A%2A/g, "***");
}

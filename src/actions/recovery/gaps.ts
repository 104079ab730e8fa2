/**
 * The gap ledger, as pure functions: the expected key domain minus the keys the destination
 * holds, as exact inclusive ranges. Reconstruction fetches exactly these ranges and storage
 * recomputes the ledger afterwards to prove it empty (GAPS_REMAIN otherwise).
 *
 * WHY ranges of integers and not sets of keys: a declared domain of ten million ids is two
 * numbers, and the answer a person reads ("201–250 and 501–1000 are missing") is ranges too.
 * Three key shapes are understood, decided from every key value seen (declared bounds, held
 * keys, source keys) by `guessCodec`:
 * - `int`: integers (JSON numbers, or decimal strings without leading zeros, as SQLite and
 *   PostgreSQL hand back integer and bigint columns);
 * - `prefixed`: a constant prefix and zero-padded digits of one width (`T-000000201`), ranged
 *   on the number and shown in the original spelling;
 * - `opaque`: anything else, and composite keys; each key is its own range (`from === to`).
 * A value that does not fit the chosen shape cannot be inside the domain, so it is ignored.
 */
import { SluiceError } from "../../errors.js";
import type { GapLedger, KeyRange } from "./contract.js";

export type KeyCodec = { kind: "int" } | { kind: "prefixed"; prefix: string; width: number } | { kind: "opaque" };

/** Sorted, disjoint, non-adjacent inclusive ranges. */
export type NumRanges = [number, number][];

/** A set of keys: ranges for the numeric shapes, a set of texts for opaque keys. */
export interface KeySet {
  codec: KeyCodec;
  ranges: NumRanges;
  opaque: Set<string>;
}

const INT_TEXT = /^-?(0|[1-9]\d*)$/;
const PREFIXED = /^(.*?)(\d+)$/;

/** Watches key values go by and says which shape fits them all. */
export function guessCodec(): { see(value: unknown): void; codec(): KeyCodec } {
  let int = true;
  let prefixed: { prefix: string; width: number } | null | undefined;
  let seen = 0;
  return {
    see(value) {
      if (value === null || value === undefined || value === "") return;
      seen++;
      if (int && !isIntLike(value)) int = false;
      if (prefixed === null) return;
      const m = typeof value === "string" ? PREFIXED.exec(value) : null;
      if (!m || !Number.isSafeInteger(Number(m[2]))) prefixed = null;
      else if (prefixed === undefined) prefixed = { prefix: m[1]!, width: m[2]!.length };
      else if (prefixed.prefix !== m[1] || prefixed.width !== m[2]!.length) prefixed = null;
    },
    codec() {
      if (seen === 0 || int) return { kind: "int" };
      if (prefixed) return { kind: "prefixed", ...prefixed };
      return { kind: "opaque" };
    },
  };
}

function isIntLike(v: unknown): boolean {
  if (typeof v === "number") return Number.isSafeInteger(v);
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v));
  return typeof v === "string" && INT_TEXT.test(v.trim()) && Number.isSafeInteger(Number(v));
}

/** The number a key value stands for in a numeric codec, or its text for opaque keys; undefined when it does not fit. */
export function encodeKey(codec: KeyCodec, value: unknown): number | string | undefined {
  if (value === null || value === undefined || value === "") return undefined;
  if (codec.kind === "int") return isIntLike(value) ? Number(typeof value === "string" ? value.trim() : value) : undefined;
  if (codec.kind === "prefixed") {
    const m = typeof value === "string" ? PREFIXED.exec(value) : null;
    return m && m[1] === codec.prefix && m[2]!.length === codec.width ? Number(m[2]) : undefined;
  }
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The text of a composite key (several columns), as an opaque key. */
export function compositeKey(values: readonly unknown[]): string {
  return JSON.stringify(values.map((v) => (v === undefined ? null : typeof v === "number" || typeof v === "bigint" ? String(v) : v)));
}

/** How a number of a numeric codec is shown in documents: the integer, or the prefixed spelling. */
export function showKey(codec: KeyCodec, n: number | string): string | number {
  if (codec.kind === "prefixed" && typeof n === "number") return `${codec.prefix}${String(n).padStart(codec.width, "0")}`;
  return n;
}

export function emptySet(codec: KeyCodec): KeySet {
  return { codec, ranges: [], opaque: new Set() };
}

/** A key set from encoded keys (numbers for the numeric codecs, texts for opaque). */
export function keySetOf(codec: KeyCodec, keys: Iterable<number | string>): KeySet {
  const set = emptySet(codec);
  if (codec.kind === "opaque") {
    for (const k of keys) set.opaque.add(String(k));
    return set;
  }
  const nums = Float64Array.from([...keys].filter((k): k is number => typeof k === "number")).sort();
  for (const n of nums) {
    const last = set.ranges[set.ranges.length - 1];
    if (last && n <= last[1] + 1) last[1] = Math.max(last[1], n);
    else set.ranges.push([n, n]);
  }
  return set;
}

/** Sort and merge overlapping or adjacent ranges. */
export function mergeRanges(ranges: NumRanges): NumRanges {
  const sorted = ranges.map(([a, b]): [number, number] => (a <= b ? [a, b] : [b, a])).sort((x, y) => x[0] - y[0]);
  const out: NumRanges = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

export function union(a: KeySet, b: KeySet): KeySet {
  return { codec: a.codec, ranges: mergeRanges([...a.ranges, ...b.ranges]), opaque: new Set([...a.opaque, ...b.opaque]) };
}

/** `a` without the keys of `b`. */
export function minus(a: KeySet, b: KeySet): KeySet {
  const out: NumRanges = [];
  let j = 0;
  for (const [from, to] of a.ranges) {
    let start = from;
    while (j < b.ranges.length && b.ranges[j]![1] < start) j++;
    let k = j;
    while (start <= to) {
      const hole = b.ranges[k];
      if (!hole || hole[0] > to) {
        out.push([start, to]);
        break;
      }
      if (hole[0] > start) out.push([start, hole[0] - 1]);
      start = Math.max(start, hole[1] + 1);
      k++;
    }
  }
  return { codec: a.codec, ranges: out, opaque: new Set([...a.opaque].filter((k) => !b.opaque.has(k))) };
}

/** `a` restricted to the keys of `b`. */
export function intersect(a: KeySet, b: KeySet): KeySet {
  return minus(a, minus(a, b));
}

/** Whether an encoded key is in the set (binary search over the ranges). */
export function has(set: KeySet, key: number | string): boolean {
  if (typeof key === "string") return set.opaque.has(key);
  let lo = 0;
  let hi = set.ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = set.ranges[mid]!;
    if (key < a) hi = mid - 1;
    else if (key > b) lo = mid + 1;
    else return true;
  }
  return false;
}

export function size(set: KeySet): number {
  return set.ranges.reduce((n, [a, b]) => n + (b - a + 1), 0) + set.opaque.size;
}

export function isEmpty(set: KeySet): boolean {
  return set.ranges.length === 0 && set.opaque.size === 0;
}

/** The set as the contract's KeyRanges, in the keys' own spelling. */
export function toKeyRanges(set: KeySet): KeyRange[] {
  return [
    ...set.ranges.map(([a, b]) => ({ from: showKey(set.codec, a), to: showKey(set.codec, b) })),
    ...[...set.opaque].sort().map((k) => ({ from: k, to: k })),
  ];
}

/** KeyRanges (from a document) back into a key set of `codec`; endpoints that do not fit are refused. */
export function fromKeyRanges(codec: KeyCodec, ranges: readonly KeyRange[], where: string): KeySet {
  const set = emptySet(codec);
  for (const r of ranges) {
    const a = encodeKey(codec, r.from);
    const b = encodeKey(codec, r.to);
    if (a === undefined || b === undefined)
      throw new SluiceError("BAD_INPUT", `${where}: the key range ${JSON.stringify(r)} does not fit the key's shape (${describeCodec(codec)})`, {
        retryable: false,
      });
    if (typeof a === "string" || typeof b === "string") set.opaque.add(String(a));
    else set.ranges.push([a, b]);
  }
  set.ranges = mergeRanges(set.ranges);
  return set;
}

export function describeCodec(codec: KeyCodec): string {
  if (codec.kind === "int") return "integers";
  if (codec.kind === "prefixed") return `"${codec.prefix}" and ${codec.width} digits`;
  return "opaque keys";
}

/**
 * A declared range as written in a workflow: `1-1000`, `T-000000001..T-000001000`, a single key,
 * or a list of those (an array, or one comma-separated string). Returns raw endpoints; the
 * codec is decided with the other key values, then `fromKeyRanges` encodes them.
 */
export function parseDeclaredRange(spec: string | number | readonly (string | number)[]): KeyRange[] {
  const items = Array.isArray(spec) ? spec : typeof spec === "number" ? [spec] : String(spec).split(",");
  const out: KeyRange[] = [];
  for (const raw of items) {
    if (typeof raw === "number") {
      out.push({ from: raw, to: raw });
      continue;
    }
    const s = String(raw).trim();
    if (s === "") continue;
    const dots = s.split("..");
    if (dots.length === 2) {
      out.push({ from: dots[0]!.trim(), to: dots[1]!.trim() });
      continue;
    }
    const m = /^(-?\d+)\s*-\s*(-?\d+)$/.exec(s);
    out.push(m ? { from: m[1]!, to: m[2]! } : { from: s, to: s });
  }
  if (out.length === 0)
    throw new SluiceError("BAD_INPUT", `range ${JSON.stringify(spec)} names no keys; write it as 1-1000, A..B, or a list`, { retryable: false });
  return out;
}

/** The page manifest a collecting step leaves behind (rec-http writes it; see the collect step's outputs). */
export interface PageManifest {
  /** `file`: the stored page (a collection's manifest.json has it; its outputs leave it out). */
  pages: { page: number; url: string; rows: number; firstKey?: string | number | null; lastKey?: string | number | null; file?: string }[];
  /** True when the collection read the last page. */
  complete: boolean;
  /** The URL of the first page not read, when incomplete. */
  next?: string | null;
  /** The source as shown (masked). */
  source?: string;
}

/** The key ranges a manifest's pages cover (pages without keys say nothing). */
export function manifestRanges(m: PageManifest): KeyRange[] {
  return m.pages.filter((p) => p.firstKey != null && p.lastKey != null).map((p) => ({ from: p.firstKey!, to: p.lastKey! }));
}

/** Assemble the ledger document from the domain, the held keys and the key columns. */
export function gapLedger(
  key: string[],
  from: GapLedger["domain"]["from"],
  domain: KeySet,
  held: KeySet,
  now = new Date(),
): { ledger: GapLedger; gaps: KeySet } {
  const gaps = minus(domain, held);
  const domainCount = size(domain);
  const missing = size(gaps);
  return {
    gaps,
    ledger: {
      kind: "sluice.dev/gap-ledger-v1",
      key,
      domain: { from, ranges: toKeyRanges(domain), count: domainCount },
      held: domainCount - missing,
      gaps: toKeyRanges(gaps),
      missing,
      computedAt: now.toISOString(),
    },
  };
}

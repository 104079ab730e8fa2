/**
 * Merging the records several sources hold for one key, at record level (before typing), with
 * the conflict report as a by-product.
 *
 * WHY compare canonical texts and not raw values: the same row reads as the string "250.10"
 * from a CSV file, the number 250.1 from a JSON API and "2026-01-02 10:00:00+00" from
 * PostgreSQL. Two values are the same when their canonical forms are: numbers (and numeric
 * strings) by their exact decimal text without leading/trailing zeros, ISO-like timestamps by
 * the instant, empty strings and absent fields as null, other strings trimmed. Only a real
 * disagreement is a conflict.
 *
 * Policies: `priority` (default) keeps the record of the source read first (sources are read in
 * rank order); `freshest` keeps the one whose timestamp column is newest (ties: rank order).
 */
import type { Conflict, Provenance } from "./contract.js";
import { compositeKey } from "./gaps.js";

/** Fields a recovered record carries that are not data. */
export const PROVENANCE_FIELD = "_sluice_source";

export interface Candidate {
  record: Record<string, unknown>;
  source: string;
  provenance: Provenance;
  ref: string;
}

export interface MergeState {
  policy: "priority" | "freshest";
  timestampColumn?: string;
  winners: Map<string, Candidate>;
  conflicts: Conflict[];
  /** Records that agreed with the kept one (the same row from another source). */
  agreed: number;
}

export function mergeState(policy: "priority" | "freshest", timestampColumn?: string): MergeState {
  return { policy, ...(timestampColumn ? { timestampColumn } : {}), winners: new Map(), conflicts: [], agreed: 0 };
}

/** The text a key is compared by: the canonical form of its one value, or of all its values. */
export function keyTextOf(record: Record<string, unknown>, key: readonly string[]): string | undefined {
  const values = key.map((k) => record[k]);
  if (values.some((v) => v === null || v === undefined || v === "")) return undefined;
  return key.length === 1 ? canonical(values[0])! : compositeKey(values.map(canonical));
}

/** Offer one record for its key; later sources only win under `freshest`. Returns whether it is kept. */
export function offer(state: MergeState, keyText: string, key: readonly string[], c: Candidate): boolean {
  const kept = state.winners.get(keyText);
  if (!kept) {
    state.winners.set(keyText, c);
    return true;
  }
  if (kept.source === c.source) return false; // the same source repeating a key (overlapping pages): first read wins
  const fields = differingFields(kept.record, c.record);
  if (fields.length === 0) {
    state.agreed++;
    return false;
  }
  const replace =
    state.policy === "freshest" &&
    state.timestampColumn !== undefined &&
    instant(c.record[state.timestampColumn]) > instant(kept.record[state.timestampColumn]);
  const [winner, loser] = replace ? [c, kept] : [kept, c];
  state.conflicts.push({
    key: Object.fromEntries(key.map((k) => [k, winner.record[k]])),
    kept: { source: winner.source, value: winner.record },
    other: { source: loser.source, value: loser.record },
    fields,
  });
  if (replace) state.winners.set(keyText, c);
  return replace;
}

/** The data fields whose canonical values differ between two records. */
export function differingFields(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const names = new Set([...Object.keys(a), ...Object.keys(b)]);
  names.delete(PROVENANCE_FIELD);
  return [...names].filter((n) => canonical(a[n]) !== canonical(b[n])).sort();
}

const NUMBER_TEXT = /^[+-]?(\d+)(\.\d+)?$/;
const ISO_LIKE = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;

export function canonical(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "number" || typeof v === "bigint") return canonicalNumber(String(v));
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "object") return JSON.stringify(v);
  const s = String(v).trim();
  if (s === "") return null;
  if (NUMBER_TEXT.test(s)) return canonicalNumber(s);
  if (ISO_LIKE.test(s)) {
    const ms = Date.parse(s.replace(" ", "T").replace(/([+-]\d{2})$/, "$1:00"));
    if (Number.isFinite(ms)) return new Date(ms).toISOString();
  }
  return s;
}

function canonicalNumber(s: string): string {
  if (!NUMBER_TEXT.test(s)) return s; // 1e21, NaN: keep JavaScript's spelling
  const negative = s.startsWith("-");
  let [int, frac = ""] = s.replace(/^[+-]/, "").split(".");
  int = int!.replace(/^0+(?=\d)/, "");
  frac = frac.replace(/0+$/, "");
  const text = frac ? `${int}.${frac}` : int;
  return negative && text !== "0" ? `-${text}` : text;
}

function instant(v: unknown): number {
  const ms = typeof v === "string" ? Date.parse(v) : typeof v === "number" ? v : NaN;
  return Number.isFinite(ms) ? ms : -Infinity;
}

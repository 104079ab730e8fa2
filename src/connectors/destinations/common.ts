/**
 * What every destination shares: the metadata columns, target validation, the content hash,
 * the row key and in-batch "last wins" deduplication.
 */
import type { Column, TypedRow, TypedValue } from "../../formats/typed.js";
import { canonicalText, contentHash, compileStageDecoder, textHash, type StageChunk } from "../../formats/stage.js";
import { SluiceError } from "../../errors.js";
import type { DestinationTarget } from "./types.js";

export const HASH_COLUMN = "_sluice_hash";
export const RUN_ID_COLUMN = "_sluice_run_id";
export const LOADED_AT_COLUMN = "_sluice_loaded_at";
export const METADATA_COLUMNS = [HASH_COLUMN, RUN_ID_COLUMN, LOADED_AT_COLUMN] as const;
export const QUARANTINE_SUFFIX = "_quarantine";

/** A target after validation: the key is never empty (the hash column when none is declared). */
export interface CheckedTarget {
  table: string;
  columns: Column[];
  /** Declared key columns, or `[HASH_COLUMN]`. */
  key: string[];
  hashKey: boolean;
  /** Index in `columns` of each declared key column (empty for the hash key). */
  keyIndexes: number[];
  names: string[];
}

/** Check a target's shape (names unique, key columns declared, scales sane). */
export function checkTarget(target: DestinationTarget, where: string): CheckedTarget {
  const fail = (why: string) => new SluiceError("BAD_CONFIG", `Destination ${where}: ${why}.`, { details: { destination: where } });
  if (!target || !Array.isArray(target.columns) || target.columns.length === 0) throw fail("the target needs at least one column");
  const names: string[] = [];
  const seen = new Set<string>();
  for (const c of target.columns) {
    if (typeof c.name !== "string" || c.name === "") throw fail("a column has no name");
    if (c.name.includes("\0")) throw fail(`column ${JSON.stringify(c.name)} contains a NUL character`);
    if (seen.has(c.name)) throw fail(`column ${JSON.stringify(c.name)} is declared twice`);
    if (c.name.startsWith("_sluice_")) throw fail(`column ${JSON.stringify(c.name)} uses the reserved prefix _sluice_`);
    if (!["string", "integer", "decimal", "boolean", "timestamp", "date"].includes(c.type))
      throw fail(`column ${c.name} has unknown type ${JSON.stringify(c.type)}`);
    if (c.type === "decimal" && c.scale !== undefined && (!Number.isInteger(c.scale) || c.scale < 0 || c.scale > 38)) {
      throw fail(`column ${c.name} has scale ${c.scale}; expected an integer from 0 to 38`);
    }
    seen.add(c.name);
    names.push(c.name);
  }
  const declared = target.key && target.key.length > 0 ? target.key : undefined;
  const keyIndexes: number[] = [];
  if (declared) {
    const k = new Set<string>();
    for (const name of declared) {
      const i = names.indexOf(name);
      if (i === -1) throw fail(`key column ${JSON.stringify(name)} is not one of the columns (${names.join(", ")})`);
      if (k.has(name)) throw fail(`key column ${JSON.stringify(name)} is listed twice`);
      k.add(name);
      keyIndexes.push(i);
    }
  }
  return {
    table: target.table,
    columns: target.columns.map((c) => ({ ...c })),
    key: declared ? [...declared] : [HASH_COLUMN],
    hashKey: !declared,
    keyIndexes,
    names,
  };
}

export { canonicalText, contentHash };

/** A row's values in column order (absent → null). */
export function rowValues(row: TypedRow, names: readonly string[]): TypedValue[] {
  const out = new Array<TypedValue>(names.length);
  for (let i = 0; i < names.length; i++) {
    // Only strings and booleans are values: absent keys (and anything inherited, such as a
    // column called "constructor") read as null.
    const v: unknown = row[names[i]!];
    out[i] = typeof v === "string" || typeof v === "boolean" ? v : null;
  }
  return out;
}

/** The text used to compare keys in memory; BAD_INPUT when a key column is null. */
export function keyText(t: CheckedTarget, values: readonly TypedValue[], hash: string, rowIndex: number, where: string): string {
  if (t.hashKey) return hash;
  if (t.keyIndexes.length === 1) {
    const v = values[t.keyIndexes[0]!];
    if (v === null || v === undefined) throw nullKey(t, t.keyIndexes[0]!, rowIndex, where);
    return typeof v === "string" ? v : v ? "T" : "F";
  }
  const parts: TypedValue[] = [];
  for (const i of t.keyIndexes) {
    const v = values[i];
    if (v === null || v === undefined) throw nullKey(t, i, rowIndex, where);
    parts.push(v);
  }
  return canonicalText(parts);
}

function nullKey(t: CheckedTarget, col: number, rowIndex: number, where: string): SluiceError {
  const name = t.names[col]!;
  return new SluiceError("BAD_INPUT", `Destination ${where}: row ${rowIndex + 1} of the batch has no value for key column ${name}.`, {
    details: { destination: where, column: name, row: rowIndex + 1 },
  });
}

/** A batch prepared for writing: values in column order, hashes, and which rows survive in-batch dedup. */
export interface PreparedBatch {
  values: TypedValue[][];
  hashes: string[];
  keys: string[];
  /** Indexes of the rows to write (the last row of each key), in batch order. */
  keep: number[];
}

/** `known` hashes (staged rows carry theirs) are used instead of hashing again. */
export function prepareBatch(t: CheckedTarget, rows: readonly TypedRow[], where: string, known?: readonly string[]): PreparedBatch {
  const n = rows.length;
  const values = new Array<TypedValue[]>(n);
  const hashes = new Array<string>(n);
  const keys = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const v = rowValues(rows[i]!, t.names);
    values[i] = v;
    // The hash a conversion step would have staged for this target (formats/stage.ts rowHashKind).
    hashes[i] = known ? known[i]! : t.hashKey ? contentHash(v) : textHash(v, t.columns);
    keys[i] = keyText(t, v, hashes[i]!, i, where);
  }
  // Last wins: walk backwards, keep the first time a key is met.
  const seen = new Set<string>();
  const keepRev: number[] = [];
  for (let i = n - 1; i >= 0; i--) {
    const k = keys[i]!;
    if (seen.has(k)) continue;
    seen.add(k);
    keepRev.push(i);
  }
  return { values, hashes, keys, keep: keepRev.reverse() };
}

/** JSON text for a quarantined record (BigInt-safe; undefined → null). */
export function jsonText(value: unknown): string {
  try {
    return JSON.stringify(value === undefined ? null : value) ?? "null";
  } catch {
    try {
      return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? "null";
    } catch {
      return JSON.stringify(String(value));
    }
  }
}

/** The one quarantine key: a retried step does not add the same record twice. */
export function quarantineKey(runId: string, step: string, source: string, line: number): string {
  return canonicalText([runId, step, source, String(line)]);
}

/** Staged rows decoded for destinations that write objects (SQLite, files), with their hashes and positions. */
export function decodeStaged(t: CheckedTarget, chunk: StageChunk): { rows: TypedRow[]; hashes: string[]; lines: number[] } {
  const into: { row: TypedRow; line: number; hash: string }[] = [];
  compileStageDecoder(t.columns)(chunk.data.toString("utf8"), into);
  return { rows: into.map((r) => r.row), hashes: into.map((r) => r.hash), lines: into.map((r) => r.line) };
}

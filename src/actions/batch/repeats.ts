/**
 * Which values of some columns may appear more than once in a typed dataset, found in one pass
 * over its undecoded stage lines with a Bloom filter: every value the filter had seen already
 * when it came again (so each repeated value, and a few that only collide). Staged values are
 * canonical COPY text, so one value is always the same bytes, and only a line whose value the
 * filter knows is decoded. Most values of a key or a `unique` column appear once; knowing the few
 * that may not lets the merge step write every other row straight out and the quality step's
 * `unique` check remember only those, instead of every value of the dataset.
 */
import type { Column } from "./model.js";
import { BloomFilter } from "./bloom-filter.js";
import type { Dataset } from "./dataset.js";
import { readTypedChunks } from "./typed-dataset.js";
import { decodeStageLine } from "../../formats/stage.js";
import type { TypedRow } from "../../formats/typed.js";

/** Candidates held in memory before a caller gives up on them and treats every value as one. */
export const MAX_REPEATS = 250_000;

/** Where a key's fields are in stage lines: their positions (`_line` is 0), in line order. */
export interface KeyFields {
  positions: number[];
  /** The fields are side by side (or one): their bytes are one stretch of the line. */
  adjacent: boolean;
}

export function keyFieldsOf(columns: readonly Column[], fields: readonly string[]): KeyFields {
  const names = columns.map((c) => c.name);
  const positions = [...new Set(fields.map((f) => names.indexOf(f) + 1))].sort((a, b) => a - b);
  return { positions, adjacent: positions[positions.length - 1]! - positions[0]! === positions.length - 1 };
}

/**
 * The bytes of the fields in the stage line data[start, end) as one stretch [from, to), from
 * the first key field to the last. Only a key of adjacent fields is exactly that stretch: the
 * fields between two others of a composite key would make one key two (see keyText). Chunks
 * hold whole lines; the `end` guard keeps a scan in its line.
 */
function fieldSpan(data: Buffer, start: number, end: number, key: KeyFields): [number, number] {
  const first = key.positions[0]!;
  const last = key.positions[key.positions.length - 1]!;
  let field = 0;
  let i = start;
  while (field < first && i < end) if (data[i++] === 9) field++;
  const from = i;
  while (i < end && !(data[i] === 9 && field === last)) if (data[i++] === 9) field++;
  return [from, i];
}

/**
 * The key fields of a stage line as latin1 text (one character per byte, so equal bytes are
 * equal strings), tab-separated: only the key's own fields, whatever lies between them.
 */
export function keyText(data: Buffer, start: number, end: number, key: KeyFields): string {
  if (key.adjacent) {
    const [from, to] = fieldSpan(data, start, end, key);
    return data.toString("latin1", from, to);
  }
  let text = "";
  let field = 0;
  let k = 0;
  let fieldStart = start;
  for (let i = start; i <= end && k < key.positions.length; i++) {
    if (i < end && data[i] !== 9) continue;
    if (field === key.positions[k]) text += (k++ === 0 ? "" : "\t") + data.toString("latin1", fieldStart, i);
    field++;
    fieldStart = i + 1;
  }
  return text;
}

/**
 * The candidates as `name(row)` of the decoded line (a key's encoding, a column's value), or
 * undefined when there are more than `max` of them (a dataset made mostly of repeats: the
 * caller then treats every value as a candidate). `name` returning undefined leaves a row out.
 * `spans`, when given, also gets each candidate's keyText, for a caller that tests lines
 * without decoding them.
 */
export async function repeatCandidates(
  ds: Dataset,
  columns: readonly Column[],
  fields: readonly string[],
  signal: AbortSignal,
  max: number,
  name: (row: TypedRow) => string | undefined,
  spans?: Set<string>,
): Promise<Set<string> | undefined> {
  const key = keyFieldsOf(columns, fields);
  const filter = new BloomFilter();
  const candidates = new Set<string>();
  for await (const { chunk } of readTypedChunks(ds, columns, signal)) {
    const data = chunk.data;
    let start = 0;
    while (start < data.length) {
      const nl = data.indexOf(10, start);
      const end = nl < 0 ? data.length : nl;
      let seen: boolean;
      if (key.adjacent) {
        const [from, to] = fieldSpan(data, start, end, key);
        seen = filter.seenOrAddBytes(data, from, to);
      } else seen = filter.seenOrAdd(keyText(data, start, end, key));
      if (seen) {
        const v = name(decodeStageLine(data.toString("utf8", start, end), columns));
        if (v !== undefined) candidates.add(v);
        spans?.add(keyText(data, start, end, key));
        if (candidates.size > max) return undefined;
      }
      start = end + 1;
    }
  }
  return candidates;
}

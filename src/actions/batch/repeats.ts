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

/**
 * The candidates as `name(row)` of the decoded line (a key's encoding, a column's value), or
 * undefined when there are more than `max` of them (a dataset made mostly of repeats: the
 * caller then treats every value as a candidate). `name` returning undefined leaves a row out.
 */
export async function repeatCandidates(
  ds: Dataset,
  columns: readonly Column[],
  fields: readonly string[],
  signal: AbortSignal,
  max: number,
  name: (row: TypedRow) => string | undefined,
): Promise<Set<string> | undefined> {
  const names = columns.map((c) => c.name);
  // Field positions in a stage line: _line first, then the columns.
  const at = fields.map((f) => names.indexOf(f) + 1);
  const first = Math.min(...at);
  const last = Math.max(...at);
  const filter = new BloomFilter();
  const candidates = new Set<string>();
  for await (const { chunk } of readTypedChunks(ds, columns, signal)) {
    const data = chunk.data;
    let start = 0;
    while (start < data.length) {
      const nl = data.indexOf(10, start);
      const end = nl < 0 ? data.length : nl; // chunks hold whole lines; the guard keeps a scan in its line
      // The span from the first field to the last (one field for one column).
      let field = 0;
      let i = start;
      while (field < first && i < end) if (data[i++] === 9) field++;
      const from = i;
      while (i < end && !(data[i] === 9 && field === last)) if (data[i++] === 9) field++;
      if (filter.seenOrAddBytes(data, from, i)) {
        const v = name(decodeStageLine(data.toString("utf8", start, end), columns));
        if (v !== undefined) candidates.add(v);
        if (candidates.size > max) return undefined;
      }
      start = end + 1;
    }
  }
  return candidates;
}

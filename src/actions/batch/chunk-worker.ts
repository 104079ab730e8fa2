/**
 * The worker_threads entry of data-collector/process_files_in_parallel (see parallel.ts).
 *
 * A worker takes one work unit at a time (a record-aligned byte range of a CSV/TSV file, or a
 * whole NDJSON/JSON/Parquet file), reads it batch by batch with the formats readers and writes:
 * - the records as read, plus `_line` (the record's line in its source file; the row index for
 *   Parquet), to a part: CSV in Sluice's own dialect (INTERMEDIATE_CSV) for CSV/TSV sources,
 *   whose values are all text, NDJSON for the others, whose values keep their JSON types. CSV
 *   because the next step reads it five to six times faster than NDJSON and it is cheaper to
 *   write (1M trade rows, per thread: NDJSON 0.45 s to write and 0.85 s to read back);
 * - malformed records, in the QuarantinedRecord shape, to the unit's own quarantine NDJSON
 *   (created only when there is one).
 * Memory is bounded by one read batch whatever the unit's size. A unit that cannot be read
 * (unreadable file, corrupt Parquet, a JSON file that is not an array) is reported as failed and
 * the worker stays alive for the next unit.
 *
 * The pool's side (worker-pool.ts) throttles progress reports. This module runs only inside a
 * Worker; the main thread never imports it (types only).
 */
import {
  openCsvWriter,
  openNdjsonWriter,
  openReader,
  readCsvRange,
  type CsvRange,
  type FileFormat,
  type RecordBatch,
  type RecordWriter,
} from "../../formats/index.js";
import { INTERMEDIATE_CSV } from "./dataset.js";
import type { QuarantinedRecord } from "./model.js";
import { serveUnits } from "./worker-pool.js";
import { rowText } from "./convert-unit.js";

/** One piece of work, planned by the main thread. Plain data (structured-cloned). */
export interface WorkUnit {
  /** Index in the plan; results are put back in this order. */
  id: number;
  path: string;
  format: FileFormat;
  /** The original file, named in quarantine records. */
  source: string;
  step: string;
  /** For CSV/TSV: the byte range to read (file line numbers are kept). Absent: the whole file. */
  range?: CsvRange;
  csv?: { delimiter?: string; quote?: string; header?: boolean; columns?: string[]; encoding?: string };
  /** Input bytes of the unit (for progress). */
  bytes: number;
  /** Output part: CSV (INTERMEDIATE_CSV) for a CSV/TSV unit, else NDJSON. */
  out: string;
  /** Quarantine NDJSON of this unit. */
  quarantine: string;
  batchSize: number;
}

/** What a unit reports when done. */
export interface UnitResult {
  rows: number;
  malformed: number;
  partBytes: number;
  quarantineBytes: number;
}

const LINE_FIELD = "_line";
export async function processUnit(unit: WorkUnit, onProgress: (rows: number, bytes: number) => void): Promise<UnitResult> {
  const textual = unit.format === "csv" || unit.format === "tsv";
  const csv = { ...(unit.csv ?? {}), ...(unit.format === "tsv" ? { delimiter: unit.csv?.delimiter ?? "\t" } : {}) };
  const reader: AsyncIterable<RecordBatch> =
    textual && unit.range
      ? readCsvRange(unit.path, unit.range, { ...csv, batchSize: unit.batchSize, name: unit.source })
      : openReader(unit.path, { format: unit.format, batchSize: unit.batchSize, name: unit.source, ...(textual ? csv : {}) });

  // CSV parts take their columns from the first batch: the header, then `_line`.
  let writer: RecordWriter | undefined = textual ? undefined : await openNdjsonWriter(unit.out);
  const open = async (b: RecordBatch): Promise<RecordWriter> =>
    (writer ??= await openCsvWriter(unit.out, [...(b.columns ?? Object.keys(b.rows[0] ?? {})).filter((c) => c !== LINE_FIELD), LINE_FIELD], INTERMEDIATE_CSV));
  let quarantine: RecordWriter | undefined;
  let rows = 0;
  let malformed = 0;
  let estimated = 0; // input bytes read so far, estimated from the text of the records (CSV)
  try {
    for await (const b of reader) {
      const n = b.rows.length;
      for (let i = 0; i < n; i++) {
        const row = b.rows[i]!;
        if (textual) estimated += rowText(row);
        row[LINE_FIELD] = b.lines[i]!;
      }
      if (n > 0) await (await open(b)).write(b.rows);
      rows += n;
      if (b.errors.length > 0) {
        quarantine ??= await openNdjsonWriter(unit.quarantine);
        const recs: QuarantinedRecord[] = b.errors.map((e) => ({ source: unit.source, line: e.line, step: unit.step, reasons: [e.reason], record: e.raw }));
        await quarantine.write(recs as unknown as Record<string, unknown>[]);
        malformed += b.errors.length;
        if (textual) for (const e of b.errors) estimated += e.raw.length + 1;
      }
      onProgress(rows + malformed, Math.min(estimated, unit.bytes));
    }
  } catch (err) {
    await writer?.close().catch(() => undefined);
    await quarantine?.close().catch(() => undefined);
    throw err;
  }
  const partBytes = writer ? (await writer.close()).bytes : 0;
  const quarantineBytes = quarantine ? (await quarantine.close()).bytes : 0;
  return { rows, malformed, partBytes, quarantineBytes };
}

serveUnits(processUnit);

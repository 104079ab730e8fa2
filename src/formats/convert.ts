/**
 * Stream one file into another format (`sluice convert`), batch by batch, so memory is bounded
 * by a batch (or a Parquet row group) whatever the file size.
 *
 * Nothing is dropped silently: every input record is either written or listed in `errors` with
 * its file, line and reason, so `rowsIn = rowsOut + errorCount` always holds.
 * Without a schema every value passes through as read (CSV values stay strings) and header names
 * are kept exactly. The output is written to a temporary file beside the target and renamed into
 * place at the end, so a failed conversion never leaves a half-written output behind.
 */
import { rename, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { SluiceError } from "../errors.js";
import { detectFormat, openReader, openWriter, type ReaderOptions, type WriterOptions } from "./dispatch.js";
import { keysOf } from "./io.js";
import type { FileFormat, RecordWriter } from "./types.js";

export interface ConvertOptions {
  input: string;
  output: string;
  /** Input format; default from the input's extension. */
  from?: FileFormat;
  /** Output format; default from the output's extension. */
  to?: FileFormat;
  /**
   * Output columns, in order. Other input columns are left out; missing ones are written as
   * empty/null. (Typing values is a later layer's job; this only selects.)
   */
  schema?: readonly string[];
  /** Passed to the reader (delimiter, header, batchSize…). */
  read?: Omit<ReaderOptions, "format">;
  /** Passed to the writer (delimiter, rowGroupSize, columnTypes…). */
  write?: Omit<WriterOptions, "columns">;
  /**
   * Applied to every record after reading (typing to a target schema, say): a record it rejects
   * is reported with its reasons like a malformed one. The formats layer stays unaware of types.
   */
  transform?: (row: Record<string, unknown>) => { ok: true; row: Record<string, unknown> } | { ok: false; reasons: string[] };
  /** How many errors to keep in `errors` (all are counted in `errorCount`). Default 10,000. */
  maxErrors?: number;
}

export interface ConvertError {
  file: string;
  line: number;
  reason: string;
}

export interface ConvertResult {
  /** Input records: good ones plus malformed ones. */
  rowsIn: number;
  rowsOut: number;
  /** The first `maxErrors` malformed or unwritable records. */
  errors: ConvertError[];
  errorCount: number;
  /** Output size in bytes. */
  bytes: number;
  /** The output columns, in order. */
  columns: string[];
}

export async function convertFile(opts: ConvertOptions): Promise<ConvertResult> {
  const from = opts.from ?? detectFormat(opts.input);
  const to = opts.to ?? detectFormat(opts.output);
  if (resolve(opts.input) === resolve(opts.output)) {
    throw new SluiceError("USAGE", `convert: input and output are the same file (${opts.input})`);
  }
  const maxErrors = opts.maxErrors ?? 10_000;
  // CSV, TSV and Parquet need one column list for the whole file; JSON outputs do not.
  const fixedColumns = to === "csv" || to === "tsv" || to === "parquet";
  const tmp = `${opts.output}.tmp-${process.pid}-${Date.now()}`;

  const result: ConvertResult = { rowsIn: 0, rowsOut: 0, errors: [], errorCount: 0, bytes: 0, columns: [] };
  const addError = (e: ConvertError): void => {
    result.errorCount++;
    if (result.errors.length < maxErrors) result.errors.push({ file: e.file, line: e.line, reason: e.reason });
  };

  let writer: RecordWriter | undefined;
  let columns: readonly string[] | undefined = opts.schema;
  let known: Set<string> | undefined;
  // For schemaless input into JSON outputs: every key seen, only to report the columns.
  const seen = new Set<string>();
  const openOnce = async (cols: readonly string[] | undefined): Promise<RecordWriter> => {
    writer ??= await openWriter(tmp, to, { ...opts.write, ...(cols ? { columns: cols } : {}) });
    return writer;
  };

  try {
    for await (const batch of openReader(opts.input, { ...opts.read, format: from })) {
      result.rowsIn += batch.rows.length + batch.errors.length;
      for (const e of batch.errors) addError(e);
      if (!columns && batch.columns) columns = batch.columns;
      if (!columns && fixedColumns && batch.rows.length > 0) columns = keysOf(batch.rows);
      if (!writer && (columns || batch.rows.length > 0)) await openOnce(columns);
      if (batch.rows.length === 0) continue;

      let rows = batch.rows;
      if (opts.transform) {
        const kept: Record<string, unknown>[] = [];
        rows.forEach((row, r) => {
          const t = opts.transform!(row);
          if (t.ok) kept.push(t.row);
          else addError({ file: opts.input, line: batch.lines[r]!, reason: t.reasons.join("; ") });
        });
        rows = kept;
      }
      // Schemaless input into a fixed-column output: a key the header does not have would be
      // lost, so such a row is reported instead of written.
      if (fixedColumns && !opts.schema && !batch.columns && columns) {
        known ??= new Set(columns);
        const kept: Record<string, unknown>[] = [];
        for (let r = 0; r < rows.length; r++) {
          const row = rows[r]!;
          const extra = Object.keys(row).find((k) => !known!.has(k));
          if (extra === undefined) kept.push(row);
          else {
            addError({
              file: opts.input,
              line: batch.lines[r]!,
              reason: `column ${JSON.stringify(extra)} is not among the output columns (taken from the first rows); pass a schema to choose them`,
            });
          }
        }
        rows = kept;
      }
      if (!columns) for (const k of keysOf(rows)) seen.add(k);
      await writer!.write(rows);
      result.rowsOut += rows.length;
    }
    const w = await openOnce(columns ?? []);
    const written = await w.close();
    result.bytes = written.bytes;
    result.columns = [...(w.columns ?? columns ?? seen)];
    await rename(tmp, opts.output);
  } catch (err) {
    if (writer) await writer.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  return result;
}

/**
 * Stream one file into another format (`sluice convert`), batch by batch, so memory is bounded
 * by a batch (or a Parquet row group) whatever the file size.
 *
 * Nothing is dropped silently: every input record is either written or reported (`errors`,
 * `onReject`) with its file, line and reason, so `rowsIn = rowsOut + errorCount` always holds.
 * The output is written to a temporary file beside the target and renamed into place at the
 * end, so a failed conversion never leaves a half-written output behind.
 *
 * Types: a `transform` (typing to a target schema, from the layer above) gives canonical values,
 * and `write.schema` the Parquet column types. Without them, CSV values stay strings (unless an
 * `inferSchema` hook decides types) and header names are kept exactly; JSON/NDJSON into Parquet
 * is written with `schema: "auto"` (numbers stay numbers, booleans booleans, objects JSON);
 * Parquet and Arrow into Parquet keep the input file's own column types.
 */
import { rename, rm } from "node:fs/promises";
import { resolve } from "node:path";
import { SluiceError } from "../errors.js";
import { arrowColumnSpecs, detectFormat, openReader, openWriter, parquetColumnSpecs, type ReaderOptions, type WriterOptions } from "./dispatch.js";
import { keysOf } from "./io.js";
import type { ParquetColumnSpec } from "./parquet.js";
import type { FileFormat, RecordError, RecordWriter } from "./types.js";

/** Applied to every record after reading: the typed record, or the reasons it was rejected. */
export type RowTransform = (row: Record<string, unknown>) => { ok: true; row: Record<string, unknown> } | { ok: false; reasons: string[] };

/** What an `inferSchema` hook decides for an input that carries no types of its own. */
export interface InferredSchema {
  /** Output column types (used by typed outputs: Parquet). */
  columns: ParquetColumnSpec[];
  /** Turns each record's values into the canonical values of those types; rejects are reported. */
  transform?: RowTransform;
}

/** A record that was not written, with where it came from and why. */
export interface RejectedRecord {
  file: string;
  line: number;
  reason: string;
  /** The record's text for malformed records, the record as read for rejected ones. */
  raw: unknown;
}

export interface ConvertOptions {
  input: string;
  output: string;
  /** Input format; default from the input's extension. */
  from?: FileFormat;
  /** Output format; default from the output's extension. */
  to?: FileFormat;
  /**
   * Output columns, in order. Other input columns are left out; missing ones are written as
   * empty/null.
   */
  schema?: readonly string[];
  /** Passed to the reader (delimiter, header, batchSize…). */
  read?: Omit<ReaderOptions, "format">;
  /** Passed to the writer (delimiter, rowGroupSize, Parquet `schema` and `codec`…). */
  write?: Omit<WriterOptions, "columns">;
  /**
   * Applied to every record after reading (typing to a target schema, say): a record it rejects
   * is reported with its reasons like a malformed one. The formats layer stays unaware of types.
   */
  transform?: RowTransform;
  /**
   * Schema inference: called once before reading when neither `transform` nor `write.schema`
   * is given, with the input; what it returns types the records and the Parquet columns.
   * Returning undefined keeps the defaults above.
   */
  inferSchema?: (input: { path: string; format: FileFormat }) => Promise<InferredSchema | undefined>;
  /** Called for every rejected record (malformed or refused by `transform`), in input order. */
  onReject?: (record: RejectedRecord) => void | Promise<void>;
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

/** The Parquet column types used when the caller gave none (see the file comment). */
async function defaultParquetSchema(input: string, from: FileFormat): Promise<WriterOptions["schema"]> {
  switch (from) {
    case "ndjson":
    case "json":
      return "auto";
    case "parquet":
      return parquetColumnSpecs(input);
    case "arrow":
      return arrowColumnSpecs(input);
    default:
      return undefined;
  }
}

export async function convertFile(opts: ConvertOptions): Promise<ConvertResult> {
  const from = opts.from ?? detectFormat(opts.input);
  const to = opts.to ?? detectFormat(opts.output);
  if (to === "arrow") throw new SluiceError("USAGE", "writing Arrow files is not supported; write parquet");
  if (resolve(opts.input) === resolve(opts.output)) {
    throw new SluiceError("USAGE", `convert: input and output are the same file (${opts.input})`);
  }
  const maxErrors = opts.maxErrors ?? 10_000;
  // CSV, TSV and Parquet need one column list for the whole file; JSON outputs do not.
  const fixedColumns = to === "csv" || to === "tsv" || to === "parquet";
  const tmp = `${opts.output}.tmp-${process.pid}-${Date.now()}`;

  let transform = opts.transform;
  let writeOptions: WriterOptions = { ...opts.write, name: opts.output };
  if (!transform && !opts.write?.schema) {
    const inferred = opts.inferSchema ? await opts.inferSchema({ path: opts.input, format: from }) : undefined;
    if (inferred) {
      transform = inferred.transform;
      writeOptions = { ...writeOptions, schema: inferred.columns };
    } else if (to === "parquet") {
      const schema = await defaultParquetSchema(opts.input, from);
      if (schema) writeOptions = { ...writeOptions, schema };
    }
  }

  const result: ConvertResult = { rowsIn: 0, rowsOut: 0, errors: [], errorCount: 0, bytes: 0, columns: [] };
  const reject = async (r: RejectedRecord): Promise<void> => {
    result.errorCount++;
    if (result.errors.length < maxErrors) result.errors.push({ file: r.file, line: r.line, reason: r.reason });
    if (opts.onReject) await opts.onReject(r);
  };

  const rejectMalformed = (err: RecordError): Promise<void> => reject({ file: err.file, line: err.line, reason: err.reason, raw: err.raw });

  let writer: RecordWriter | undefined;
  let columns: readonly string[] | undefined = opts.schema;
  let known: Set<string> | undefined;
  // For schemaless input into JSON outputs: every key seen, only to report the columns.
  const seen = new Set<string>();
  const openOnce = async (cols: readonly string[] | undefined): Promise<RecordWriter> => {
    writer ??= await openWriter(tmp, to, { ...writeOptions, ...(cols ? { columns: cols } : {}) });
    return writer;
  };

  try {
    for await (const batch of openReader(opts.input, { ...opts.read, format: from })) {
      result.rowsIn += batch.rows.length + batch.errors.length;
      if (!columns && batch.columns) columns = batch.columns;
      if (!columns && fixedColumns && batch.rows.length > 0) columns = keysOf(batch.rows);
      if (!writer && (columns || batch.rows.length > 0)) await openOnce(columns);
      // Schemaless input into a fixed-column output: a key the header does not have would be
      // lost, so such a row is reported instead of written.
      const checkKeys = fixedColumns && !opts.schema && !batch.columns && columns !== undefined;
      if (checkKeys) known ??= new Set(columns);
      const errors = batch.errors;
      let e = 0;
      let rows = batch.rows;
      if (transform || checkKeys || errors.length > 0) {
        // One pass in input order: malformed records are reported between the rows around them.
        const kept: Record<string, unknown>[] = [];
        for (let r = 0; r < batch.rows.length; r++) {
          const line = batch.lines[r]!;
          while (e < errors.length && errors[e]!.line < line) await rejectMalformed(errors[e++]!);
          let row = batch.rows[r]!;
          if (transform) {
            const t = transform(row);
            if (!t.ok) {
              await reject({ file: opts.input, line, reason: t.reasons.join("; "), raw: row });
              continue;
            }
            row = t.row;
          }
          if (checkKeys) {
            const extra = Object.keys(row).find((k) => !known!.has(k));
            if (extra !== undefined) {
              await reject({
                file: opts.input,
                line,
                reason: `column ${JSON.stringify(extra)} is not among the output columns (taken from the first rows); pass a schema to choose them`,
                raw: row,
              });
              continue;
            }
          }
          kept.push(row);
        }
        while (e < errors.length) await rejectMalformed(errors[e++]!);
        rows = kept;
      }
      if (rows.length === 0) continue;
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
    throw nameOutput(err, tmp, opts.output);
  }
  return result;
}

/** Errors from the writers name the temporary file; the user knows the output's name. */
function nameOutput(err: unknown, tmp: string, output: string): unknown {
  if (err instanceof SluiceError && err.message.includes(tmp)) {
    return new SluiceError(err.code, err.message.replaceAll(tmp, output), { retryable: err.retryable, cause: err.cause, details: err.details });
  }
  if (err instanceof Error && (err as NodeJS.ErrnoException).path === tmp) {
    Object.assign(err, { path: output, message: err.message.replaceAll(tmp, output) });
  }
  return err;
}

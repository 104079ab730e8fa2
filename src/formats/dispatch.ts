/**
 * Pick a format from a file name, open a reader or a writer for it.
 *
 * The Arrow reader is loaded on first use: apache-arrow is a large module that only Arrow input
 * needs. Arrow is read-only here (Parquet is the columnar format Sluice writes).
 */
import { extname } from "node:path";
import { SluiceError } from "../errors.js";
import { openCsvWriter, readCsv, type CsvReadOptions, type CsvWriteOptions } from "./csv.js";
import { openJsonArrayWriter, readJsonArray, type JsonArrayReadOptions } from "./json-array.js";
import { openNdjsonWriter, readNdjson, type NdjsonReadOptions } from "./ndjson.js";
import type { FileDescription, ParquetColumnSpec, ParquetWriteOptions } from "./parquet.js";
import type { FileFormat, ReadOptions, RecordBatch, RecordWriter } from "./types.js";

const BY_EXTENSION: Readonly<Record<string, FileFormat>> = {
  ".csv": "csv",
  ".tsv": "tsv",
  ".ndjson": "ndjson",
  ".jsonl": "ndjson",
  ".json": "json",
  ".parquet": "parquet",
  ".arrow": "arrow",
  ".feather": "arrow",
  ".arrows": "arrow",
  ".ipc": "arrow",
};

export const FILE_FORMATS: readonly FileFormat[] = ["csv", "tsv", "ndjson", "json", "parquet", "arrow"];

/** The format of a file, from its extension (case-insensitive). */
export function detectFormat(path: string): FileFormat {
  const ext = extname(path).toLowerCase();
  const format = BY_EXTENSION[ext];
  if (!format) {
    throw new SluiceError(
      "BAD_INPUT",
      `cannot tell the format of ${path}: unknown extension ${ext ? JSON.stringify(ext) : "(none)"}; ` +
        `expected one of ${Object.keys(BY_EXTENSION).join(", ")}`,
      { details: { file: path } },
    );
  }
  return format;
}

/** Check a format name given by a user (e.g. `--from tsv`). */
export function parseFormat(name: string): FileFormat {
  const f = name.toLowerCase();
  if (f === "jsonl") return "ndjson";
  if (f === "feather" || f === "ipc" || f === "arrows") return "arrow";
  if ((FILE_FORMATS as readonly string[]).includes(f)) return f as FileFormat;
  throw new SluiceError("USAGE", `unknown file format ${JSON.stringify(name)}; expected one of ${FILE_FORMATS.join(", ")}`);
}

/** Reader options for any format; each reader uses the fields that apply to it. */
export type ReaderOptions = CsvReadOptions & NdjsonReadOptions & JsonArrayReadOptions & { format?: FileFormat };

/** Open a streaming reader. The format comes from `options.format` or the file's extension. */
export function openReader(path: string, options: ReaderOptions = {}): AsyncIterable<RecordBatch> {
  const format = options.format ?? detectFormat(path);
  if (options.decrypt && (format === "parquet" || format === "arrow"))
    throw new SluiceError("BAD_INPUT", `${options.name ?? path} is encrypted, and ${format} files cannot be read through a decrypting stream`, {
      retryable: false,
    });
  switch (format) {
    case "csv":
      return readCsv(path, options);
    case "tsv":
      return readCsv(path, { ...options, delimiter: options.delimiter ?? "\t" });
    case "ndjson":
      return readNdjson(path, options);
    case "json":
      return readJsonArray(path, options);
    case "parquet":
      return readParquet(path, options);
    case "arrow":
      return readArrow(path, options);
  }
}

/** `arrow.ts`'s readArrow, loading apache-arrow on first use. */
// Parquet and Arrow load on first use, like every reader of a format a run may never see: the
// Parquet modules (hyparquet, its codecs, the writer) cost each thread that imports them about
// 45 ms and 7 MB, and every conversion worker imports this dispatcher.

export async function* readParquet(path: string, options: ReadOptions = {}): AsyncGenerator<RecordBatch> {
  const parquet = await import("./parquet.js");
  yield* parquet.readParquet(path, options);
}

export async function describeParquet(path: string, options: { name?: string } = {}): Promise<FileDescription> {
  const parquet = await import("./parquet.js");
  return parquet.describeParquet(path, options);
}

export async function parquetColumnSpecs(path: string, options: { name?: string } = {}): Promise<ParquetColumnSpec[]> {
  const parquet = await import("./parquet.js");
  return parquet.parquetColumnSpecs(path, options);
}

export async function openParquetWriter(path: string, columns?: readonly string[], options: ParquetWriteOptions = {}): Promise<RecordWriter> {
  const parquet = await import("./parquet.js");
  return parquet.openParquetWriter(path, columns, options);
}

export async function* readArrow(path: string, options: ReadOptions = {}): AsyncGenerator<RecordBatch> {
  const arrow = await import("./arrow.js");
  yield* arrow.readArrow(path, options);
}

/** `arrow.ts`'s arrowColumnSpecs, loading apache-arrow on first use. */
export async function arrowColumnSpecs(path: string, options: { name?: string } = {}): Promise<ParquetColumnSpec[]> {
  const arrow = await import("./arrow.js");
  return arrow.arrowColumnSpecs(path, options);
}

/** `arrow.ts`'s describeArrow, loading apache-arrow on first use. */
export async function describeArrow(path: string, options: { name?: string } = {}): Promise<FileDescription> {
  const arrow = await import("./arrow.js");
  return arrow.describeArrow(path, options);
}

/** Writer options for any format; each writer uses the fields that apply to it. */
export type WriterOptions = CsvWriteOptions & ParquetWriteOptions & { columns?: readonly string[] };

/** Open a streaming writer. `options.columns` fixes the output columns and their order. */
export function openWriter(path: string, format: FileFormat, options: WriterOptions = {}): Promise<RecordWriter> {
  const columns = options.columns;
  switch (format) {
    case "csv":
      return openCsvWriter(path, columns, options);
    case "tsv":
      return openCsvWriter(path, columns, { ...options, delimiter: options.delimiter ?? "\t" });
    case "ndjson":
      return openNdjsonWriter(path, columns);
    case "json":
      return openJsonArrayWriter(path, columns);
    case "parquet":
      return openParquetWriter(path, columns, options);
    case "arrow":
      return Promise.reject(new SluiceError("USAGE", "writing Arrow files is not supported; write parquet"));
  }
}

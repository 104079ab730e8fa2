/**
 * The formats layer's front door: readers and writers for CSV/TSV, NDJSON, JSON arrays and
 * Parquet, an Arrow IPC reader, a dispatcher by file extension, and a streaming converter.
 * Callers above (actions, the CLI) should need nothing else from this folder.
 */
export * from "./types.js";
export { detectFormat, parseFormat, openReader, openWriter, FILE_FORMATS } from "./dispatch.js";
export type { ReaderOptions, WriterOptions } from "./dispatch.js";
export { openCsvWriter, parseCsvStream, readCsv, readCsvHeader, readCsvRange, resolveDialect } from "./csv.js";
export type { CsvDialect, CsvRange, CsvReadOptions, CsvWriteOptions } from "./csv.js";
export { splitCsv, type SplitCsvOptions } from "./csv-ranges.js";
export { openNdjsonWriter, parseNdjsonStream, readNdjson, type NdjsonReadOptions } from "./ndjson.js";
export { openJsonArrayWriter, readJsonArray, type JsonArrayReadOptions } from "./json-array.js";
export { describeParquet, openParquetWriter, parquetColumnSpecs, readParquet } from "./dispatch.js";
export type { DescribedColumn, FileDescription, ParquetCodec, ParquetColumnSpec, ParquetColumnType, ParquetWriteOptions } from "./parquet.js";
export { describeArrow, readArrow } from "./dispatch.js";
export { convertFile, type ConvertOptions, type ConvertResult } from "./convert.js";
export { detectEncoding, detectFileEncoding, normalizeEncoding, SUPPORTED_ENCODINGS } from "./encoding.js";

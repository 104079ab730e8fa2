/**
 * Parquet reading (hyparquet) and the front door of Parquet writing (parquet-write.ts).
 *
 * Reading goes one row group at a time through a file-handle-backed AsyncBuffer, so only the
 * footer and the column chunks of the current row group are in memory, never the whole file.
 *
 * Every codec Parquet writers use is read: SNAPPY, ZSTD, LZ4 and LZ4_RAW through
 * hyparquet-compressors, GZIP and BROTLI through node:zlib (native, several times faster than
 * the pure-JS inflaters). A file using a codec nothing here reads (LZO) is refused up front with
 * a sentence naming the file, the column and the codec.
 *
 * Values are exact (hyparquet's defaults are not: DECIMAL becomes a float, timestamps become
 * millisecond Dates): custom `parsers` turn TIMESTAMP (MILLIS/MICROS/NANOS) and INT96 into the
 * canonical UTC text of values.ts and DATE into `YYYY-MM-DD`; DECIMAL columns are handed to
 * hyparquet with their DECIMAL annotation removed, so their raw unscaled integers (INT32, INT64
 * or big-endian bytes) reach a per-column converter compiled from the schema, which also turns
 * INT64 into decimal text, binary without a text annotation into base64 and walks LIST / MAP /
 * STRUCT values so that their leaves follow the same rules.
 */
import { open, type FileHandle } from "node:fs/promises";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import {
  parquetMetadataAsync,
  parquetRead,
  parquetSchema,
  type AsyncBuffer,
  type Compressors,
  type FileMetaData,
  type SchemaElement,
  type SchemaTree,
} from "hyparquet";
import { isListLike, isMapLike } from "hyparquet/src/schema.js";
import { compressors as hyparquetCompressors } from "hyparquet-compressors";
import { SluiceError } from "../errors.js";
import { setField } from "./io.js";
import { loadZstd, zstdDecompress } from "./zstd.js";
import { DEFAULT_BATCH_SIZE, type ReadOptions, type RecordBatch } from "./types.js";
import { base64, dateText, decimalText, doubleValue, signedBigEndian, timeText, timestampText, timestampTextFromMicros, type TimeUnitName } from "./values.js";

import type { ParquetColumnSpec } from "./parquet-write.js";
export {
  DEFAULT_ROW_GROUP_SIZE,
  openParquetWriter,
  type ParquetCodec,
  type ParquetColumnSpec,
  type ParquetColumnType,
  type ParquetWriteOptions,
} from "./parquet-write.js";

/** A Sluice column type as a file declares it (schema inference reads these). */
export interface DescribedColumn {
  name: string;
  type: "string" | "integer" | "decimal" | "boolean" | "timestamp" | "date";
  /** Fraction digits of a DECIMAL; absent for FLOAT/DOUBLE (decimal without scale). */
  scale?: number;
  nullable: boolean;
  /** A LIST, MAP or STRUCT column, read as JSON values. */
  nested?: boolean;
}

export interface FileDescription {
  columns: DescribedColumn[];
  rows: number;
}

/** A file opened for random reads, shaped as hyparquet's AsyncBuffer. */
export async function fileAsyncBuffer(path: string, name: string = path): Promise<{ buffer: AsyncBuffer; close: () => Promise<void> }> {
  let fh: FileHandle;
  let size: number;
  try {
    fh = await open(path, "r");
  } catch (err) {
    throw openError(err, name);
  }
  try {
    const stat = await fh.stat();
    if (stat.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    size = stat.size;
  } catch (err) {
    await fh.close();
    throw openError(err, name);
  }
  const buffer: AsyncBuffer = {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const stop = Math.min(end ?? size, size);
      const length = Math.max(0, stop - start);
      // A fresh ArrayBuffer per slice: Buffer.allocUnsafe may hand out a shared pool.
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, start + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return out.buffer;
    },
  };
  return { buffer, close: () => fh.close() };
}

/** One sentence for a file that cannot be opened (missing, a directory, no permission). */
export function openError(err: unknown, name: string): SluiceError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === "ENOENT"
      ? "no such file"
      : code === "EACCES" || code === "EPERM"
        ? "permission denied"
        : code === "EISDIR"
          ? "is a directory"
          : (err as Error).message;
  return new SluiceError(
    code === "ENOENT" ? "FILE_NOT_FOUND" : code === "EACCES" || code === "EPERM" || code === "EISDIR" ? "BAD_INPUT" : "IO_ERROR",
    `cannot read ${name}: ${why}`,
    {
      cause: err,
      details: { file: name },
    },
  );
}

/**
 * Decompressors for every codec hyparquet may meet. zlib's output is a Buffer, which is a
 * Uint8Array. ZSTD goes through zstd-wasm (1,000,000 trades: 0.5 s less than the pure-JS fzstd
 * of hyparquet-compressors), which stays the fallback for a frame the wasm build refuses.
 */
const COMPRESSORS: Compressors = {
  ...hyparquetCompressors,
  GZIP: (input) => gunzipSync(input),
  BROTLI: (input) => brotliDecompressSync(input),
  ZSTD: (input, length) => {
    try {
      return zstdDecompress(input, { defaultHeapSize: Math.max(length, 1) });
    } catch {
      return hyparquetCompressors.ZSTD!(input, length);
    }
  },
};
const READABLE_CODECS = new Set(["UNCOMPRESSED", "SNAPPY", "GZIP", "BROTLI", "ZSTD", "LZ4", "LZ4_RAW"]);

const utf8 = new TextDecoder();

/** hyparquet parsers that produce Sluice's exact text instead of Dates. */
const PARSERS = {
  timestampFromMilliseconds: (v: bigint): string | null => (v === null || v === undefined ? null : timestampText(v, "MILLIS")),
  timestampFromMicroseconds: (v: bigint): string | null => (v === null || v === undefined ? null : timestampTextFromMicros(v)),
  timestampFromNanoseconds: (v: bigint): string | null => (v === null || v === undefined ? null : timestampText(v, "NANOS")),
  dateFromDays: (days: number): string | null => (days === null || days === undefined ? null : dateText(days)),
  jsonFromBytes: (bytes: Uint8Array): unknown => {
    if (!bytes) return bytes;
    const text = utf8.decode(bytes);
    try {
      return JSON.parse(text);
    } catch {
      return text; // not JSON after all: keep the text rather than fail the whole file
    }
  },
};

async function readMetadata(buffer: AsyncBuffer, name: string): Promise<FileMetaData> {
  try {
    return await parquetMetadataAsync(buffer, { parsers: PARSERS });
  } catch (err) {
    throw new SluiceError("BAD_INPUT", `${name}: not a readable Parquet file: ${(err as Error).message}`, {
      cause: err,
      details: { file: name },
    });
  }
}

/** Refuse, before reading any data, a file with a column chunk in a codec that cannot be read. */
function checkCodecs(metadata: FileMetaData, name: string): void {
  for (const group of metadata.row_groups) {
    for (const chunk of group.columns) {
      const codec = chunk.meta_data?.codec;
      if (codec !== undefined && !READABLE_CODECS.has(codec)) {
        const column = chunk.meta_data?.path_in_schema.join(".") ?? "?";
        throw new SluiceError(
          "BAD_INPUT",
          `${name}: column ${JSON.stringify(column)} is compressed with ${codec || "an unknown codec"}, which Sluice cannot read ` +
            `(it reads SNAPPY, GZIP, BROTLI, ZSTD, LZ4, LZ4_RAW and uncompressed Parquet); rewrite the file with one of those`,
          { details: { file: name, column, codec } },
        );
      }
    }
  }
}

type Converter = (value: unknown) => unknown;

interface ReadPlan {
  /** The metadata handed to hyparquet: DECIMAL annotations removed so raw integers come out. */
  metadata: FileMetaData;
  columns: string[];
  converters: Converter[];
}

function isDecimal(el: SchemaElement): boolean {
  return el.converted_type === "DECIMAL" || el.logical_type?.type === "DECIMAL";
}

function planRead(metadata: FileMetaData, name: string): ReadPlan {
  const tree = parquetSchema(metadata);
  const columns = tree.children.map((c) => c.element.name);
  const converters = tree.children.map((c) => converterFor(c, name));
  const schema = metadata.schema.map((el) => (el.converted_type === "DECIMAL" ? { ...el, converted_type: undefined } : el));
  return { metadata: { ...metadata, schema }, columns, converters };
}

const identity: Converter = (v) => (v === undefined ? null : v);

function converterFor(node: SchemaTree, name: string): Converter {
  const el = node.element;
  if (isListLike(node)) {
    let elem = node.children[0]!;
    if (elem.children.length === 1) elem = elem.children[0]!;
    const inner = converterFor(elem, name);
    return (v) => (Array.isArray(v) ? v.map(inner) : v === undefined ? null : v);
  }
  if (isMapLike(node)) {
    const kv = node.children[0]!;
    const key = kv.children.find((c) => c.element.name === "key") ?? kv.children[0]!;
    const value = kv.children.find((c) => c.element.name === "value") ?? kv.children[1]!;
    const k = key.element;
    const keyKind = isDecimal(k)
      ? "decimal"
      : (k.type === "BYTE_ARRAY" || k.type === "FIXED_LEN_BYTE_ARRAY") && !isText(k)
        ? "binary"
        : k.type === "FLOAT" || k.type === "DOUBLE"
          ? "floating-point"
          : undefined;
    if (keyKind) {
      throw new SluiceError(
        "BAD_INPUT",
        `${name}: column ${JSON.stringify(node.path.join("."))} is a MAP with ${keyKind} keys, which Sluice cannot read exactly (JSON object keys are text)`,
        { details: { file: name, column: node.path.join(".") } },
      );
    }
    const inner = converterFor(value, name);
    return (v) => {
      if (v === null || v === undefined || typeof v !== "object") return v ?? null;
      const out: Record<string, unknown> = {};
      for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) setField(out, mk, inner(mv));
      return out;
    };
  }
  if (node.children.length > 0) {
    if (el.logical_type?.type === "VARIANT") return jsonSafe;
    const fields = node.children.map((c) => [c.element.name, converterFor(c, name)] as const);
    const struct: Converter = (v) => {
      if (v === null || v === undefined || typeof v !== "object") return v ?? null;
      const src = v as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const [f, conv] of fields) setField(out, f, conv(src[f]));
      return out;
    };
    return el.repetition_type === "REPEATED" ? repeated(struct) : struct;
  }
  const leaf = leafConverter(el);
  return el.repetition_type === "REPEATED" ? repeated(leaf) : leaf;
}

/** A legacy repeated field (no LIST annotation) arrives as an array of its values. */
function repeated(inner: Converter): Converter {
  return (v) => (Array.isArray(v) ? v.map(inner) : inner(v));
}

function isText(el: SchemaElement): boolean {
  const ct = el.converted_type;
  const lt = el.logical_type?.type;
  return ct === "UTF8" || ct === "ENUM" || ct === "JSON" || lt === "STRING" || lt === "ENUM" || lt === "JSON" || lt === "UUID";
}

function timeUnitOf(el: SchemaElement): TimeUnitName | undefined {
  const lt = el.logical_type;
  if (lt?.type === "TIME") return lt.unit;
  if (el.converted_type === "TIME_MILLIS") return "MILLIS";
  if (el.converted_type === "TIME_MICROS") return "MICROS";
  return undefined;
}

function leafConverter(el: SchemaElement): Converter {
  if (isDecimal(el)) {
    const scale = el.scale ?? (el.logical_type?.type === "DECIMAL" ? el.logical_type.scale : 0) ?? 0;
    return (v) => {
      if (v === null || v === undefined) return null;
      if (typeof v === "number" || typeof v === "bigint") return decimalText(v, scale);
      if (v instanceof Uint8Array) return decimalText(signedBigEndian(v), scale);
      return jsonSafe(v);
    };
  }
  const timeUnit = timeUnitOf(el);
  if (timeUnit) {
    return (v) => (typeof v === "number" || typeof v === "bigint" ? timeText(v, timeUnit) : jsonSafe(v));
  }
  const ct = el.converted_type;
  const lt = el.logical_type?.type;
  switch (el.type) {
    case "BYTE_ARRAY":
    case "FIXED_LEN_BYTE_ARRAY":
      if (ct === "ENUM" || lt === "ENUM") return (v) => (v instanceof Uint8Array ? utf8.decode(v) : identity(v));
      if (isText(el) || lt === "FLOAT16" || lt === "GEOMETRY" || lt === "GEOGRAPHY") return jsonSafe;
      return (v) => (v instanceof Uint8Array ? base64(v) : identity(v));
    case "INT64":
      return (v) => (typeof v === "bigint" ? v.toString() : jsonSafe(v));
    case "FLOAT":
    case "DOUBLE":
      return (v) => (typeof v === "number" ? doubleValue(v) : identity(v));
    case "INT32":
    case "BOOLEAN":
      return identity;
    default:
      // INT96 (already text from the timestamp parser) and anything new: made JSON-safe.
      return jsonSafe;
  }
}

/**
 * A row maker compiled for one file's columns: an object literal of constant shape, so rows are
 * built without a keyed store per value (the V8 inline caches stay monomorphic).
 */
export function compileRowBuilder<S>(columns: readonly string[], value: (i: number) => string): (src: S, r: number) => Record<string, unknown> {
  const fields = columns.map((c, i) => `${c === "__proto__" ? `[${JSON.stringify(c)}]` : JSON.stringify(c)}: ${value(i)}`);
  return new Function("src", "r", `return { ${fields.join(", ")} };`) as (src: S, r: number) => Record<string, unknown>;
}

type GroupColumns = { cols: ArrayLike<unknown>[]; conv: Converter[] };

/** The assembled top-level columns of rows [start, end) of one row group, from hyparquet's chunks. */
async function readGroupColumns(buffer: AsyncBuffer, plan: ReadPlan, start: number, end: number): Promise<ArrayLike<unknown>[]> {
  const count = end - start;
  const index = new Map(plan.columns.map((c, i) => [c, i]));
  const chunks: { rowStart: number; data: ArrayLike<unknown> }[][] = plan.columns.map(() => []);
  await parquetRead({
    file: buffer,
    metadata: plan.metadata,
    rowStart: start,
    rowEnd: end,
    compressors: COMPRESSORS,
    parsers: PARSERS,
    utf8: false,
    onChunk: ({ columnName, columnData, rowStart }) => {
      const c = index.get(columnName);
      if (c !== undefined) chunks[c]!.push({ rowStart, data: columnData });
    },
  });
  return chunks.map((parts) => {
    // Usually one chunk covering the group exactly: used as it is (typed arrays included).
    if (parts.length === 1 && parts[0]!.rowStart === start && parts[0]!.data.length === count) return parts[0]!.data;
    const out = new Array<unknown>(count);
    for (const { rowStart, data } of parts) {
      for (let i = 0; i < data.length; i++) {
        const r = rowStart - start + i;
        if (r >= 0 && r < count) out[r] = data[i];
      }
    }
    return out;
  });
}

/**
 * Read a Parquet file as batches of rows. `lines[i]` is the 0-based row index in the file.
 * Row groups are read one at a time (hyparquet's assembled columns, no intermediate row objects);
 * a row group larger than `batchSize` is yielded in slices.
 */
export async function* readParquet(path: string, options: ReadOptions = {}): AsyncGenerator<RecordBatch> {
  const name = options.name ?? path;
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const { buffer, close } = await fileAsyncBuffer(path, name);
  try {
    await loadZstd();
    const metadata = await readMetadata(buffer, name);
    checkCodecs(metadata, name);
    const plan = planRead(metadata, name);
    const { columns, converters } = plan;
    const build = compileRowBuilder<GroupColumns>(columns, (i) => `src.conv[${i}](src.cols[${i}][r])`);
    let groupStart = 0;
    let yielded = false;
    for (let g = 0; g < metadata.row_groups.length; g++) {
      const groupRows = Number(metadata.row_groups[g]!.num_rows);
      const rowEnd = groupStart + groupRows;
      if (groupRows > 0) {
        let cols: ArrayLike<unknown>[];
        try {
          cols = await readGroupColumns(buffer, plan, groupStart, rowEnd);
        } catch (err) {
          throw new SluiceError("BAD_INPUT", `${name}: row group ${g + 1} (rows ${groupStart}–${rowEnd - 1}) cannot be read: ${(err as Error).message}`, {
            cause: err,
            details: { file: name, rowGroup: g },
          });
        }
        const src: GroupColumns = { cols, conv: converters };
        for (let s = 0; s < groupRows; s += batchSize) {
          const end = Math.min(groupRows, s + batchSize);
          const batch: RecordBatch = { rows: new Array(end - s), lines: new Array(end - s), errors: [], columns };
          for (let k = s; k < end; k++) {
            batch.rows[k - s] = build(src, k);
            batch.lines[k - s] = groupStart + k;
          }
          yield batch;
          yielded = true;
        }
      }
      groupStart = rowEnd;
    }
    if (!yielded) yield { rows: [], lines: [], errors: [], columns };
  } finally {
    await close();
  }
}

/**
 * The columns of a Parquet file as Sluice column types, and its row count, from the footer
 * alone: INT8..INT64 and unsigned → integer, DECIMAL → decimal with its scale, FLOAT/DOUBLE →
 * decimal without scale, TIMESTAMP/INT96 → timestamp, DATE → date, BOOLEAN → boolean, text,
 * binary and everything else → string; LIST/MAP/STRUCT → string with `nested: true`.
 */
export async function describeParquet(path: string, options: { name?: string } = {}): Promise<FileDescription> {
  const name = options.name ?? path;
  const { buffer, close } = await fileAsyncBuffer(path, name);
  try {
    const metadata = await readMetadata(buffer, name);
    const tree = parquetSchema(metadata);
    const columns = tree.children.map((node): DescribedColumn => {
      const el = node.element;
      const nullable = el.repetition_type !== "REQUIRED";
      if (node.children.length > 0 || el.repetition_type === "REPEATED") return { name: el.name, type: "string", nullable, nested: true };
      return { name: el.name, nullable, ...sluiceType(el) };
    });
    return { columns, rows: Number(metadata.num_rows) };
  } finally {
    await close();
  }
}

/**
 * The column types to write this file's values back to Parquet with (`sluice convert` without
 * a schema): its own types where Sluice writes them — DECIMAL(p ≤ 38) keeps its scale,
 * unsigned 64-bit integers become DECIMAL(38, 0) (INT64 cannot hold them), FLOAT/DOUBLE
 * DOUBLE, nested columns JSON — and STRING for the rest (text, base64 of binary, times).
 */
export async function parquetColumnSpecs(path: string, options: { name?: string } = {}): Promise<ParquetColumnSpec[]> {
  const name = options.name ?? path;
  const { buffer, close } = await fileAsyncBuffer(path, name);
  try {
    const metadata = await readMetadata(buffer, name);
    return parquetSchema(metadata).children.map((node): ParquetColumnSpec => {
      const el = node.element;
      if (node.children.length > 0 || el.repetition_type === "REPEATED") return { name: el.name, type: "json" };
      const lt = el.logical_type;
      if (el.converted_type === "UINT_64" || (lt?.type === "INTEGER" && lt.bitWidth === 64 && !lt.isSigned))
        return { name: el.name, type: "decimal", scale: 0 };
      if (el.type === "FLOAT" || el.type === "DOUBLE" || lt?.type === "FLOAT16") return { name: el.name, type: "double" };
      if (el.converted_type === "JSON" || lt?.type === "JSON") return { name: el.name, type: "json" };
      const t = sluiceType(el);
      if (t.type === "decimal" && ((el.precision ?? 0) > 38 || (t.scale ?? 0) > 38)) return { name: el.name, type: "string" };
      return { name: el.name, type: t.type, ...(t.scale !== undefined ? { scale: t.scale } : {}) };
    });
  } finally {
    await close();
  }
}

function sluiceType(el: SchemaElement): Pick<DescribedColumn, "type" | "scale"> {
  const ct = el.converted_type;
  const lt = el.logical_type;
  if (isDecimal(el)) return { type: "decimal", scale: el.scale ?? (lt?.type === "DECIMAL" ? lt.scale : 0) ?? 0 };
  if (lt?.type === "TIMESTAMP" || ct === "TIMESTAMP_MILLIS" || ct === "TIMESTAMP_MICROS" || el.type === "INT96") return { type: "timestamp" };
  if (lt?.type === "DATE" || ct === "DATE") return { type: "date" };
  if (timeUnitOf(el)) return { type: "string" };
  switch (el.type) {
    case "BOOLEAN":
      return { type: "boolean" };
    case "INT32":
    case "INT64":
      return { type: "integer" };
    case "FLOAT":
    case "DOUBLE":
      return { type: "decimal" };
    default:
      return { type: "string" };
  }
}

/** Turn any value a reader produced into one JSON can carry without loss (the generic fallback). */
export function jsonSafe(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return doubleValue(value);
    case "bigint":
      return value.toString();
    case "object":
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      if (value instanceof Uint8Array) return base64(value);
      if (Array.isArray(value) || ArrayBuffer.isView(value)) return Array.from(value as ArrayLike<unknown>, jsonSafe);
      {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) setField(out, k, jsonSafe(v));
        return out;
      }
    default:
      return String(value);
  }
}

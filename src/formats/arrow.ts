/**
 * Arrow IPC reading: the file format (.arrow, .feather — Feather v2 is the IPC file format) and
 * the stream format (.arrows), one record batch at a time.
 *
 * WHY a FileHandle and not a read stream: apache-arrow's reader over a byte stream reads an IPC
 * *file* whole into memory before decoding it (it needs the footer at the end); over a
 * FileHandle it reads the footer, then each record batch at its offset, and a stream-format file
 * sequentially — so memory is one record batch (as the writer chose it) plus `batchSize` rows.
 *
 * Values follow the exactness rules of the Parquet reader (values.ts): Int64 and Decimal as
 * exact decimal text (from the raw 64-bit values and 32-bit words, never `get()`, which rounds
 * timestamps to milliseconds and returns decimals as word arrays), Timestamp as canonical UTC
 * text (nanoseconds truncated to microseconds, the zone only labels the instant), Date as
 * `YYYY-MM-DD`, Time as `HH:MM:SS[.fff[fff]]`, Dictionary as its value, binary as base64,
 * List / Struct / Map as JSON arrays and objects whose leaves follow the same rules.
 *
 * Compressed record batches (IPC body compression, which pyarrow uses for Feather by default)
 * are read: ZSTD through @bokuweb/zstd-wasm (zstd.ts), LZ4_FRAME through the small frame decoder below.
 */
import { open, type FileHandle } from "node:fs/promises";
import { CompressionType, DataType, DateUnit, RecordBatchReader, TimeUnit, Type, Vector, compressionRegistry, type Data, type Field } from "apache-arrow";
import { SluiceError } from "../errors.js";
import { compileRowBuilder, openError, type DescribedColumn, type FileDescription, type ParquetColumnSpec } from "./parquet.js";
import { setField } from "./io.js";
import { loadZstd, zstdDecompress } from "./zstd.js";
import { DEFAULT_BATCH_SIZE, type ReadOptions, type RecordBatch } from "./types.js";
import {
  base64,
  dateText,
  dateTextFromMillis,
  decimalText,
  doubleValue,
  signedLittleEndianWords,
  timeText,
  timestampText,
  type TimeUnitName,
} from "./values.js";

const zstdDecode = (bytes: Uint8Array): Uint8Array => zstdDecompress(bytes);

/**
 * Make sure the IPC body decompressors are registered (zstd-wasm needs its module loaded first).
 * Checked on every open, since apache-arrow's registry is global and a writer in the same
 * process may replace an entry with an encoder alone; such an encoder is kept.
 */
async function registerCodecs(): Promise<void> {
  await loadZstd();
  for (const [type, decode] of [
    [CompressionType.ZSTD, zstdDecode],
    [CompressionType.LZ4_FRAME, lz4FrameDecode],
  ] as const) {
    const current = compressionRegistry.get(type);
    if (current?.decode !== decode) compressionRegistry.set(type, { ...(current?.encode ? { encode: current.encode } : {}), decode });
  }
}

interface OpenedArrow {
  reader: RecordBatchReader;
  fh: FileHandle;
}

async function openArrow(path: string, name: string): Promise<OpenedArrow> {
  await registerCodecs();
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
    const stat = await fh.stat().catch(async (err: unknown) => {
      await fh.close();
      throw err;
    });
    if (stat.isDirectory()) {
      await fh.close();
      throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    }
  } catch (err) {
    throw openError(err, name);
  }
  try {
    const head = new Uint8Array(6);
    await fh.read(head, 0, 6, 0);
    if (head[0] === 0x46 && head[1] === 0x45 && head[2] === 0x41 && head[3] === 0x31) {
      throw new SluiceError(
        "BAD_INPUT",
        `${name}: a Feather version 1 file, which Sluice cannot read; rewrite it as Feather version 2 (Arrow IPC) or Parquet`,
        {
          details: { file: name },
        },
      );
    }
    const reader = await RecordBatchReader.from(fh);
    await reader.open({ autoDestroy: false });
    if (!reader.schema) throw new Error("no schema message");
    return { reader, fh };
  } catch (err) {
    await fh.close().catch(() => undefined);
    if (err instanceof SluiceError) throw err;
    throw new SluiceError("BAD_INPUT", `${name}: not a readable Arrow IPC file or stream: ${(err as Error).message}`, {
      cause: err,
      details: { file: name },
    });
  }
}

async function closeArrow({ reader, fh }: OpenedArrow): Promise<void> {
  await Promise.resolve(reader.cancel()).catch(() => undefined);
  await fh.close().catch(() => undefined); // the reader may have closed it already
}

/**
 * Read an Arrow IPC file or stream as batches of rows. `lines[i]` is the 0-based row index in
 * the file; `columns` are the schema's field names.
 */
export async function* readArrow(path: string, options: ReadOptions = {}): AsyncGenerator<RecordBatch> {
  const name = options.name ?? path;
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const opened = await openArrow(path, name);
  try {
    const fields = opened.reader.schema.fields;
    const columns = fields.map((f) => f.name);
    const build = compileRowBuilder<Getter[]>(columns, (i) => `src[${i}](r)`);
    let rowBase = 0;
    let index = 0;
    let yielded = false;
    const iterator = (opened.reader as AsyncIterable<{ numRows: number; data: Data }>)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<{ numRows: number; data: Data }>;
      try {
        next = await iterator.next();
      } catch (err) {
        throw new SluiceError("BAD_INPUT", `${name}: record batch ${index + 1} (after row ${rowBase}) cannot be read: ${(err as Error).message}`, {
          cause: err,
          details: { file: name, batch: index },
        });
      }
      if (next.done) break;
      const rb = next.value;
      index++;
      const n = rb.numRows;
      const getters = rb.data.children.map((child) => getterFor(child));
      for (let s = 0; s < n; s += batchSize) {
        const end = Math.min(n, s + batchSize);
        const batch: RecordBatch = { rows: new Array(end - s), lines: new Array(end - s), errors: [], columns };
        for (let r = s; r < end; r++) {
          batch.rows[r - s] = build(getters, r);
          batch.lines[r - s] = rowBase + r;
        }
        yield batch;
        yielded = true;
      }
      rowBase += n;
    }
    if (!yielded) yield { rows: [], lines: [], errors: [], columns };
  } finally {
    await closeArrow(opened);
  }
}

/**
 * The fields of an Arrow IPC file or stream as Sluice column types, and its row count (the
 * record batches are walked one at a time to count them): Int → integer, Decimal → decimal
 * with its scale, Float → decimal without scale, Timestamp → timestamp, Date → date, Bool →
 * boolean, Dictionary → the type of its values, text, binary, Time and the rest → string;
 * List / Struct / Map / Union → string with `nested: true`.
 */
export async function describeArrow(path: string, options: { name?: string } = {}): Promise<FileDescription> {
  const name = options.name ?? path;
  const opened = await openArrow(path, name);
  try {
    const columns = opened.reader.schema.fields.map((f) => describeField(f));
    let rows = 0;
    try {
      for await (const rb of opened.reader as AsyncIterable<{ numRows: number }>) rows += rb.numRows;
    } catch (err) {
      throw new SluiceError("BAD_INPUT", `${name}: a record batch cannot be read: ${(err as Error).message}`, { cause: err, details: { file: name } });
    }
    return { columns, rows };
  } finally {
    await closeArrow(opened);
  }
}

/**
 * The column types to write this file's values to Parquet with (`sluice convert` without a
 * schema): Int → integer (Uint64 → DECIMAL(38, 0)), Decimal (precision ≤ 38) keeps its scale,
 * Float → double, Timestamp, Date and Bool as such, nested → json, the rest → string.
 */
export async function arrowColumnSpecs(path: string, options: { name?: string } = {}): Promise<ParquetColumnSpec[]> {
  const name = options.name ?? path;
  const opened = await openArrow(path, name);
  try {
    return opened.reader.schema.fields.map((f): ParquetColumnSpec => {
      let type: DataType = f.type;
      if (DataType.isDictionary(type)) type = type.dictionary;
      if (DataType.isInt(type)) return type.bitWidth === 64 && !type.isSigned ? { name: f.name, type: "decimal", scale: 0 } : { name: f.name, type: "integer" };
      if (DataType.isFloat(type)) return { name: f.name, type: "double" };
      if (DataType.isDecimal(type))
        return type.precision <= 38 && type.scale >= 0 ? { name: f.name, type: "decimal", scale: type.scale } : { name: f.name, type: "string" };
      const d = describeField(f);
      if (d.nested) return { name: f.name, type: "json" };
      return { name: f.name, type: d.type === "decimal" ? "string" : d.type };
    });
  } finally {
    await closeArrow(opened);
  }
}

function describeField(field: Field): DescribedColumn {
  const base = { name: field.name, nullable: field.nullable };
  let type: DataType = field.type;
  if (DataType.isDictionary(type)) type = type.dictionary;
  if (DataType.isInt(type)) return { ...base, type: "integer" };
  if (DataType.isDecimal(type)) return { ...base, type: "decimal", scale: type.scale };
  if (DataType.isFloat(type)) return { ...base, type: "decimal" };
  if (DataType.isTimestamp(type)) return { ...base, type: "timestamp" };
  if (DataType.isDate(type)) return { ...base, type: "date" };
  if (DataType.isBool(type)) return { ...base, type: "boolean" };
  if (
    DataType.isList(type) ||
    DataType.isStruct(type) ||
    DataType.isMap(type) ||
    DataType.isFixedSizeList(type) ||
    DataType.isUnion(type) ||
    type.typeId === Type.LargeList
  ) {
    return { ...base, type: "string", nested: true };
  }
  return { ...base, type: "string" };
}

type Getter = (i: number) => unknown;

function unitName(unit: TimeUnit): TimeUnitName {
  return unit === TimeUnit.SECOND ? "SECONDS" : unit === TimeUnit.MILLISECOND ? "MILLIS" : unit === TimeUnit.MICROSECOND ? "MICROS" : "NANOS";
}

/** A 64-bit value from the values buffer: BigInt64Array in current apache-arrow, 32-bit pairs in old ones. */
function int64At(values: ArrayLike<number | bigint>, i: number, signed: boolean): bigint {
  if (values instanceof BigInt64Array || values instanceof BigUint64Array) return values[i]!;
  const lo = BigInt((values as Int32Array)[2 * i]! >>> 0);
  const hi = BigInt((values as Int32Array)[2 * i + 1]!);
  const v = (hi << 32n) | lo;
  return signed ? v : BigInt.asUintN(64, v);
}

/** A converter from row index to exact JSON value for one column's Data, compiled once per batch. */
function getterFor(data: Data): Getter {
  const inner = valueGetter(data);
  if (data.type.typeId === Type.Null) return () => null;
  return data.nullCount === 0 ? inner : (i) => (data.getValid(i) ? inner(i) : null);
}

function valueGetter(data: Data): Getter {
  const type = data.type as DataType;
  const values = data.values as unknown as ArrayLike<number | bigint>;
  switch (type.typeId) {
    case Type.Int: {
      const t = type as unknown as { bitWidth: number; isSigned: boolean };
      if (t.bitWidth === 64) return (i) => int64At(values, i, t.isSigned).toString();
      return (i) => values[i];
    }
    case Type.Float: {
      const t = type as unknown as { precision: number };
      if (t.precision === 0) {
        const vec = new Vector([data]);
        return (i) => {
          const v = vec.get(i) as number | null;
          return typeof v === "number" ? doubleValue(v) : v;
        };
      }
      return (i) => doubleValue(values[i] as number);
    }
    case Type.Decimal: {
      const t = type as unknown as { scale: number; bitWidth: number };
      const words = values as unknown as Uint32Array;
      const stride = t.bitWidth / 32;
      if (words instanceof Uint32Array) return (i) => decimalText(signedLittleEndianWords(words, i * stride, stride), t.scale);
      return (i) => decimalText(values[i] as bigint | number, t.scale);
    }
    case Type.Date: {
      const t = type as unknown as { unit: DateUnit };
      if (t.unit === DateUnit.DAY) return (i) => dateText(values[i] as number);
      return (i) => dateTextFromMillis(Number(int64At(values, i, true)));
    }
    case Type.Timestamp: {
      const unit = unitName((type as unknown as { unit: TimeUnit }).unit);
      return (i) => timestampText(int64At(values, i, true), unit);
    }
    case Type.Time: {
      const t = type as unknown as { unit: TimeUnit; bitWidth: number };
      const unit = unitName(t.unit);
      if (t.bitWidth === 64) return (i) => timeText(int64At(values, i, true), unit);
      return (i) => timeText(values[i] as number, unit);
    }
    case Type.Duration: {
      return (i) => int64At(values, i, true).toString();
    }
    case Type.Binary:
    case Type.LargeBinary:
    case Type.FixedSizeBinary:
    case Type.BinaryView: {
      const vec = new Vector([data]);
      return (i) => {
        const v = vec.get(i) as Uint8Array | null;
        return v ? base64(v) : null;
      };
    }
    case Type.Bool:
    case Type.Utf8:
    case Type.LargeUtf8:
    case Type.Utf8View: {
      const vec = new Vector([data]);
      return (i) => vec.get(i);
    }
    case Type.List:
    case Type.LargeList: {
      const offsets = data.valueOffsets as unknown as ArrayLike<number | bigint>;
      const child = getterFor(data.children[0]!);
      return (i) => {
        const start = Number(offsets[i]);
        const end = Number(offsets[i + 1]);
        const out = new Array<unknown>(end - start);
        for (let k = start; k < end; k++) out[k - start] = child(k);
        return out;
      };
    }
    case Type.FixedSizeList: {
      const size = (type as unknown as { listSize: number }).listSize;
      const child = getterFor(data.children[0]!);
      return (i) => {
        const out = new Array<unknown>(size);
        for (let k = 0; k < size; k++) out[k] = child(i * size + k);
        return out;
      };
    }
    case Type.Struct: {
      const names = (type as unknown as { children: Field[] }).children.map((f) => f.name);
      const children = data.children.map((c) => getterFor(c));
      return (i) => {
        const out: Record<string, unknown> = {};
        for (let c = 0; c < names.length; c++) setField(out, names[c]!, children[c]!(i));
        return out;
      };
    }
    case Type.Map: {
      const offsets = data.valueOffsets as unknown as ArrayLike<number>;
      const entries = data.children[0]!;
      const key = getterFor(entries.children[0]!);
      const value = getterFor(entries.children[1]!);
      return (i) => {
        const out: Record<string, unknown> = {};
        for (let k = Number(offsets[i]); k < Number(offsets[i + 1]); k++) {
          const kv = key(k);
          setField(out, typeof kv === "string" ? kv : JSON.stringify(kv), value(k));
        }
        return out;
      };
    }
    case Type.Dictionary: {
      const dictionary = data.dictionary;
      if (!dictionary) return () => null;
      const chunks = dictionary.data.map((d) => getterFor(d));
      const starts: number[] = [];
      let total = 0;
      for (const d of dictionary.data) {
        starts.push(total);
        total += d.length;
      }
      const lookup: Getter =
        chunks.length === 1
          ? chunks[0]!
          : (k) => {
              let c = chunks.length - 1;
              while (c > 0 && starts[c]! > k) c--;
              return chunks[c]!(k - starts[c]!);
            };
      return (i) => lookup(Number(values[i]));
    }
    default: {
      // Interval, Union and anything newer: the library's value, made JSON-safe.
      const vec = new Vector([data]);
      return (i) => jsonish(vec.get(i));
    }
  }
}

function jsonish(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return doubleValue(v);
  if (v instanceof Uint8Array) return base64(v);
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number | bigint>, jsonish);
  if (Array.isArray(v)) return v.map(jsonish);
  if (typeof v === "object") {
    const src = typeof (v as { toJSON?: () => unknown }).toJSON === "function" ? (v as { toJSON: () => unknown }).toJSON() : v;
    if (src !== v) return jsonish(src);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) setField(out, k, jsonish(x));
    return out;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// LZ4 frame format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md), decode only.

/** Decode one or more LZ4 frames (Arrow's LZ4_FRAME body compression). Checksums are not verified. */
export function lz4FrameDecode(input: Uint8Array): Uint8Array {
  let out = new Uint8Array(Math.max(64, input.length * 4));
  let o = 0;
  let i = 0;
  const ensure = (n: number): void => {
    if (o + n <= out.length) return;
    let size = out.length * 2;
    while (size < o + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(out.subarray(0, o));
    out = next;
  };
  const u32 = (p: number): number => (input[p]! | (input[p + 1]! << 8) | (input[p + 2]! << 16) | (input[p + 3]! << 24)) >>> 0;
  while (i + 4 <= input.length) {
    const magic = u32(i);
    i += 4;
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      i += 4 + u32(i); // skippable frame
      continue;
    }
    if (magic !== 0x184d2204) throw new Error("not an LZ4 frame");
    const flg = input[i++]!;
    i++; // BD
    const blockChecksum = (flg & 0x10) !== 0;
    const contentSize = (flg & 0x08) !== 0;
    const contentChecksum = (flg & 0x04) !== 0;
    const dictId = (flg & 0x01) !== 0;
    if (contentSize) i += 8;
    if (dictId) i += 4;
    i++; // header checksum
    for (;;) {
      const size = u32(i);
      i += 4;
      if (size === 0) break;
      const length = size & 0x7fffffff;
      if (size & 0x80000000) {
        ensure(length);
        out.set(input.subarray(i, i + length), o);
        o += length;
      } else {
        const end = i + length;
        let p = i;
        while (p < end) {
          const token = input[p++]!;
          let lit = token >> 4;
          if (lit === 15) {
            let b: number;
            do {
              b = input[p++]!;
              lit += b;
            } while (b === 255);
          }
          ensure(lit);
          out.set(input.subarray(p, p + lit), o);
          o += lit;
          p += lit;
          if (p >= end) break;
          const offset = input[p]! | (input[p + 1]! << 8);
          p += 2;
          if (offset === 0 || offset > o) throw new Error("corrupt LZ4 block");
          let match = (token & 15) + 4;
          if ((token & 15) === 15) {
            let b: number;
            do {
              b = input[p++]!;
              match += b;
            } while (b === 255);
          }
          ensure(match);
          let from = o - offset;
          for (let k = 0; k < match; k++) out[o++] = out[from++]!;
        }
      }
      i += length;
      if (blockChecksum) i += 4;
    }
    if (contentChecksum) i += 4;
  }
  return out.subarray(0, o);
}

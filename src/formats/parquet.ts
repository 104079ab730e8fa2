/**
 * Parquet reading (hyparquet) and writing (hyparquet-writer).
 *
 * Reading goes one row group at a time through a file-handle-backed AsyncBuffer, so only the
 * footer and the column chunks of the current row group are in memory, never the whole file.
 * Values are made JSON-safe on the way out (BigInt → decimal string, Date → ISO-8601 UTC,
 * bytes → base64) so downstream code never meets a type JSON.stringify rejects.
 *
 * Writing buffers one row group (default 65,536 rows), encodes it with hyparquet-writer's
 * `ParquetWriter` (which appends row groups and writes the footer at `finish`), and flushes the
 * encoded bytes to the file before the next group, so memory is bounded by one row group.
 */
import { open, type FileHandle } from "node:fs/promises";
import { parquetMetadataAsync, parquetReadObjects, type AsyncBuffer, type FileMetaData } from "hyparquet";
import { ByteWriter, ParquetWriter, schemaFromColumnData, type ColumnSource } from "hyparquet-writer";
import { SluiceError } from "../errors.js";
import { cellText, fieldOf, keysOf, setField } from "./io.js";
import { DEFAULT_BATCH_SIZE, type ReadOptions, type RecordBatch, type RecordWriter, type WriteResult } from "./types.js";

/** A file opened for random reads, shaped as hyparquet's AsyncBuffer. */
export async function fileAsyncBuffer(path: string): Promise<{ buffer: AsyncBuffer; close: () => Promise<void> }> {
  const fh: FileHandle = await open(path, "r");
  const { size } = await fh.stat();
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

/**
 * Read a Parquet file as batches of rows. `lines[i]` is the 0-based row index in the file.
 * Row groups are read one at a time; a row group larger than `batchSize` is yielded in slices.
 */
export async function* readParquet(path: string, options: ReadOptions = {}): AsyncGenerator<RecordBatch> {
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const { buffer, close } = await fileAsyncBuffer(path);
  try {
    let metadata: FileMetaData;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (err) {
      throw new SluiceError("BAD_INPUT", `${path}: not a readable Parquet file: ${(err as Error).message}`, {
        cause: err,
        details: { file: path },
      });
    }
    // Top-level columns, in schema order (schema[0] is the root; its children are the columns).
    const columns = topLevelColumns(metadata);
    let groupStart = 0;
    let yielded = false;
    for (const group of metadata.row_groups) {
      const groupRows = Number(group.num_rows);
      const rowEnd = groupStart + groupRows;
      if (groupRows > 0) {
        const rows = await parquetReadObjects({ file: buffer, metadata, rowStart: groupStart, rowEnd });
        for (let s = 0; s < rows.length; s += batchSize) {
          const slice = rows.slice(s, s + batchSize);
          const batch: RecordBatch = { rows: [], lines: [], errors: [], columns };
          for (let k = 0; k < slice.length; k++) {
            batch.rows.push(jsonSafeRow(slice[k]!));
            batch.lines.push(groupStart + s + k);
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

function topLevelColumns(metadata: FileMetaData): string[] {
  const schema = metadata.schema;
  const names: string[] = [];
  let i = 1;
  const skip = (): void => {
    // Skip one element and all its descendants.
    const el = schema[i++];
    for (let c = 0; c < (el?.num_children ?? 0); c++) skip();
  };
  const root = schema[0];
  for (let c = 0; c < (root?.num_children ?? 0); c++) {
    const el = schema[i];
    if (el) names.push(el.name);
    skip();
  }
  return names;
}

function jsonSafeRow(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(row)) setField(out, key, jsonSafe(row[key]));
  return out;
}

/** Turn the values hyparquet produces into ones JSON can carry without loss. */
export function jsonSafe(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      // NaN and ±Infinity have no JSON form; keep them readable as text.
      return Number.isFinite(value) ? value : String(value);
    case "bigint":
      return value.toString();
    case "object":
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
      if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
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

/** Parquet column types the writer accepts (hyparquet-writer's basic types). */
export type ParquetColumnType = "STRING" | "BOOLEAN" | "INT32" | "INT64" | "FLOAT" | "DOUBLE" | "TIMESTAMP" | "JSON";

export interface ParquetWriteOptions {
  /** Rows per row group. Default 65,536. */
  rowGroupSize?: number;
  /**
   * Types for some columns; the values must already have that type (number, bigint, Date…).
   * Every other column is written as an optional UTF-8 string.
   */
  columnTypes?: Readonly<Record<string, ParquetColumnType>>;
}

export const DEFAULT_ROW_GROUP_SIZE = 65_536;

/**
 * Open a streaming Parquet writer. Without `columns`, the columns are the keys of the rows
 * buffered for the first row group. `null`/`undefined` are written as nulls; in string columns everything else is
 * written as text (numbers, booleans, BigInt as decimals, Dates as ISO-8601, objects as JSON).
 */
export async function openParquetWriter(
  path: string,
  columns?: readonly string[],
  options: ParquetWriteOptions = {},
): Promise<RecordWriter> {
  const groupSize = Math.max(1, options.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE);
  const types = options.columnTypes ?? {};
  const fh = await open(path, "w");
  let cols = columns ? [...columns] : undefined;
  let pending: Record<string, unknown>[] = [];
  let rowsWritten = 0;
  let bytes = 0;
  let closed = false;
  const byteWriter = new ByteWriter(1 << 20);
  let pw: ParquetWriter | undefined;

  /** Move the encoded bytes from the in-memory writer to the file. */
  const drain = async (): Promise<void> => {
    if (byteWriter.index === 0) return;
    const data = new Uint8Array(byteWriter.buffer, 0, byteWriter.index);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done);
      done += bytesWritten;
    }
    bytes += data.length;
    byteWriter.index = 0; // `offset` keeps counting, which is what the Parquet footer needs
  };
  const columnSources = (rows: readonly Record<string, unknown>[], names: readonly string[]): ColumnSource[] =>
    names.map((name) => {
      const type = types[name] ?? "STRING";
      const data = new Array<unknown>(rows.length);
      for (let r = 0; r < rows.length; r++) {
        const v = fieldOf(rows[r]!, name);
        data[r] = v === null || v === undefined ? null : type === "STRING" ? cellText(v) : v;
      }
      return { name, data, type, nullable: true } as ColumnSource;
    });
  const flushGroup = async (): Promise<void> => {
    if (pending.length === 0) return;
    const names = (cols ??= keysOf(pending));
    if (!pw) {
      const schema = schemaFromColumnData({ columnData: columnSources([], names) });
      pw = new ParquetWriter({ writer: byteWriter, schema, createdBy: "sluice" });
    }
    await pw.write({ columnData: columnSources(pending, names), rowGroupSize: pending.length });
    rowsWritten += pending.length;
    pending = [];
    await drain();
  };

  return {
    get columns() {
      return cols;
    },
    async write(rows) {
      if (closed) throw new SluiceError("INTERNAL", `${path}: write after close`);
      for (const row of rows) {
        pending.push(row);
        if (pending.length >= groupSize) await flushGroup();
      }
    },
    async close(): Promise<WriteResult> {
      if (closed) return { rows: rowsWritten, bytes };
      closed = true;
      try {
        await flushGroup();
        if (!pw) {
          // No rows: still a valid Parquet file, with the declared columns and no row groups.
          const schema = schemaFromColumnData({ columnData: columnSources([], cols ?? []) });
          pw = new ParquetWriter({ writer: byteWriter, schema, createdBy: "sluice" });
        }
        await pw.finish();
        await drain();
      } finally {
        await fh.close();
      }
      return { rows: rowsWritten, bytes };
    },
  };
}

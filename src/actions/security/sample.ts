/**
 * A sample of any dataset's rows, as text values by column: typed stage parts (after a convert
 * step, through readTypedRows, so rows a quality step excluded stay out) or the raw files a
 * collect step wrote (CSV, NDJSON, JSON, Parquet, Arrow, through the format readers; an
 * encrypted part — collect_with_encryption — through a decrypting stream, nothing written out).
 *
 * WHY spread over parts: a dataset of one part per source (pages of an API, files of a folder)
 * sampled from the front would only ever see the first source. Each part gets an equal share of
 * what is left, and a short part's unused share goes to the next.
 *
 * Raw records are flattened: a nested object's fields become `parent.child` columns (an API's
 * `customer.email`), arrays and other values are their JSON text. Values go to the caller batch
 * by batch and are never kept here.
 */
import { openReader, type FileFormat } from "../../formats/index.js";
import { SluiceError } from "../../errors.js";
import { partDecryption, type Dataset, type DatasetPart } from "../batch/dataset.js";
import { readTypedRows } from "../batch/typed-dataset.js";
import type { ValueType } from "./classify.js";

export interface SampleBatch {
  /** Column names with their declared types (typed datasets), as first seen. */
  columns: { name: string; type?: ValueType }[];
  /** Each row as column → text; null and missing values are absent. */
  rows: Map<string, string>[];
}

export interface SampleOptions {
  rows: number;
  signal: AbortSignal;
  /** Format of raw parts whose file extension names none. */
  format?: FileFormat;
}

/** Up to `rows` rows of the dataset, spread over its parts, batch by batch. */
export async function* sampleDataset(ds: Dataset, opts: SampleOptions): AsyncGenerator<SampleBatch> {
  let left = opts.rows;
  for (let i = 0; i < ds.parts.length && left > 0; i++) {
    const part = ds.parts[i]!;
    let budget = Math.ceil(left / (ds.parts.length - i));
    for await (const batch of readPart(ds, part, opts)) {
      const rows = batch.rows.slice(0, budget);
      budget -= rows.length;
      left -= rows.length;
      if (rows.length > 0) yield { columns: batch.columns, rows };
      if (budget <= 0) break;
    }
  }
}

async function* readPart(ds: Dataset, part: DatasetPart, opts: SampleOptions): AsyncGenerator<SampleBatch> {
  if (part.format === "stage") {
    if (!ds.columns) throw new SluiceError("BAD_INPUT", `dataset of step ${ds.step} has stage parts but no columns`, { retryable: false });
    const columns = ds.columns.map((c) => ({ name: c.name, type: c.type }));
    // One part at a time: readTypedRows reads every part of the dataset it is given.
    for await (const { rows } of readTypedRows({ ...ds, parts: [part] }, ds.columns, opts.signal))
      yield {
        columns,
        rows: rows.map(({ row }) => {
          const m = new Map<string, string>();
          for (const c of columns) {
            const v = row[c.name];
            if (v !== null && v !== undefined) m.set(c.name, String(v));
          }
          return m;
        }),
      };
    return;
  }
  const format = part.format === "unknown" ? opts.format : part.format;
  if (!format)
    throw new SluiceError(
      "BAD_INPUT",
      `cannot tell the format of ${part.source} from its extension; set the step's format (csv, tsv, ndjson, json, parquet, arrow)`,
      { retryable: false },
    );
  const seen = new Map<string, { name: string }>();
  const decrypt = partDecryption(part);
  for await (const b of openReader(part.path, {
    format,
    batchSize: 1_000,
    name: part.source,
    ...(part.csv ?? {}),
    ...(part.read ?? {}),
    ...(decrypt ? { decrypt } : {}),
  })) {
    if (opts.signal.aborted) throw opts.signal.reason;
    const rows = b.rows.map((r) => {
      const m = new Map<string, string>();
      flatten(r, "", m);
      for (const k of m.keys()) if (!seen.has(k)) seen.set(k, { name: k });
      return m;
    });
    for (const c of b.columns ?? []) if (!seen.has(c)) seen.set(c, { name: c });
    yield { columns: [...seen.values()], rows };
  }
}

/** A record's fields as dotted columns (`address.city`), each value as text: what the classifier samples and the store protects. */
export function flatten(value: unknown, prefix: string, into: Map<string, string>): void {
  if (value === null || value === undefined) return;
  if (typeof value === "object" && !Array.isArray(value) && !(value instanceof Date) && !(value instanceof Uint8Array)) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) flatten(v, prefix ? `${prefix}.${k}` : k, into);
    return;
  }
  if (!prefix) return;
  into.set(
    prefix,
    typeof value === "string" ? value : value instanceof Date ? value.toISOString() : typeof value === "bigint" ? value.toString() : JSON.stringify(value),
  );
}

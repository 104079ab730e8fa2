/**
 * Schema inference for a source: sample it the way the standard workflow will read it, then
 * decide the columns (infer.ts) and the reading options — encoding, CSV delimiter and header —
 * and return an editable schema document.
 *
 * Sampling: the first `sampleRows` records of each file (at most 5 files of a directory or glob),
 * and for a CSV file larger than 32 MB also the first records of 8 record-aligned ranges spread
 * over it (`splitCsv`, quote-aware), so a column that changes shape half-way is seen. Parquet and
 * Arrow files carry their types: their schema is read instead. An HTTP source is sampled on its
 * first page, a PostgreSQL table on its first rows.
 */
import { basename, extname } from "node:path";
import { asErrorCode, SluiceError } from "../../errors.js";
import { fetchPages, listFiles, parseSourceUrl, readPostgres } from "../../connectors/index.js";
import { detectFileEncoding, type DetectedEncoding } from "../../formats/encoding.js";
import {
  describeArrow,
  describeParquet,
  detectFormat,
  openReader,
  readCsv,
  readCsvRange,
  splitCsv,
  type FileFormat,
  type RecordBatch,
} from "../../formats/index.js";
import { keysOf, readTextChunks } from "../../formats/io.js";
import { inferColumns, type InferredColumn } from "./infer.js";
import { compileValueParser, Invalid } from "./typing.js";
import type { SchemaDocument } from "./schema-file.js";
import { splitPostgresSource } from "./source-checks.js";
import { compiledWorker, runPool } from "./worker-pool.js";

export interface InferOptions {
  /** Records sampled from the start of each file (default 20,000). */
  sampleRows?: number;
  format?: FileFormat;
  encoding?: string;
  delimiter?: string;
  header?: boolean;
  /** Key columns to put in the schema. */
  key?: string[];
  signal?: AbortSignal;
}

export interface InferResult {
  schema: SchemaDocument;
  columns: InferredColumn[];
  /** What was read, in words: files, format, encoding, delimiter, header, sample size. */
  source: string;
  files: string[];
  format: FileFormat | "http" | "postgres";
  sampled: number;
  encoding?: DetectedEncoding;
  delimiter?: string;
  header?: boolean;
  notes: string[];
  /** Columns unique and never empty in the sample, with names that look like identifiers. */
  keyCandidates: string[];
}

/** One inference as a unit of work for a worker thread (infer-worker.ts). */
export interface InferUnit {
  id: number;
  source: string;
  options: Omit<InferOptions, "signal">;
}

/** Heap the inference's worker may use: a sample of 20,000 wide records is more than a read batch. */
const INFER_HEAP_MB = 2_048;

/**
 * inferSource on a worker thread, for a caller that goes on to ingest in this process: sampling
 * and trying every type on 20,000 records leaves ~55 MB of garbage that the heap keeps for the
 * rest of the run, and `sluice ingest` of 1M trade rows peaked at 353–357 MB against the
 * standard workflow's ~290 with the schema given. A worker's heap goes when it ends.
 */
export async function inferInWorker(
  source: string,
  options: Omit<InferOptions, "signal"> = {},
  signal: AbortSignal = new AbortController().signal,
): Promise<InferResult> {
  let result: InferResult | undefined;
  let failure: SluiceError | undefined;
  await runPool<InferUnit, InferResult>(
    [{ id: 0, source, options }],
    1,
    compiledWorker("infer-worker.js"),
    signal,
    {
      done: (_u, r) => (result = r),
      failed: (_u, message, code, details) =>
        (failure = new SluiceError(asErrorCode(code, "ACTION_FAILED"), message, { retryable: false, ...(details ? { details } : {}) })),
    },
    { heapMb: INFER_HEAP_MB },
  );
  if (failure) throw failure;
  return result!;
}

const SAMPLE_ROWS = 20_000;
const MAX_FILES = 5;
const SPREAD_ABOVE = 32 << 20;
const SPREAD_RANGES = 8;
const SPREAD_ROWS = 1_000;
const DELIMITERS = [",", "\t", ";", "|"] as const;

export async function inferSource(source: string, opts: InferOptions = {}): Promise<InferResult> {
  const src = parseSourceUrl(source);
  const sampleRows = opts.sampleRows ?? SAMPLE_ROWS;
  if (src.kind === "http") {
    const records: Record<string, unknown>[] = [];
    for await (const page of fetchPages({ url: src.url, maxPages: 1, onMaxPages: "stop" }, { signal: opts.signal })) {
      if (page.records) records.push(...page.records);
      else throw new SluiceError("BAD_INPUT", `${src.display} answered ${page.contentType || "text"}, not JSON; save it to a file and infer that`);
    }
    return finish(records, keysOf(records), { source: src.display, files: [src.display], format: "http", notes: [] }, opts, {});
  }
  if (src.kind === "postgres") {
    const { url, table } = splitPostgresSource(src.url);
    if (!table) throw new SluiceError("BAD_CONFIG", `inferring from ${src.display} needs a table: add ?table=NAME to the URL`);
    const records: Record<string, unknown>[] = [];
    for await (const rows of readPostgres({ url, query: `select * from ${quoteIdent(table)} limit ${sampleRows}`, batchSize: 5_000 }, { signal: opts.signal }))
      records.push(...(rows as Record<string, unknown>[]));
    return finish(records, keysOf(records), { source: `${src.display} ${table}`, files: [src.display], format: "postgres", notes: [] }, opts, {});
  }

  const found = await listFiles(src.path);
  if (found.length === 0) throw new SluiceError("FILE_NOT_FOUND", `no files match ${src.display}`, { retryable: false });
  const files = found.slice(0, MAX_FILES).map((f) => f.path);
  const notes: string[] = found.length > MAX_FILES ? [`sampled the first ${MAX_FILES} of ${found.length} files`] : [];
  const format = opts.format ?? formatOf(files[0]!);
  for (const f of files) {
    const other = opts.format ?? formatOf(f);
    if (other !== format)
      throw new SluiceError("BAD_INPUT", `${f} is ${other} but ${files[0]} is ${format}; infer one format at a time (a glob such as *.csv)`);
  }
  const what = { source: found.length === 1 ? files[0]! : `${src.display} (${found.length} files)`, files, format, notes };

  if (format === "parquet" || format === "arrow") {
    const described = await Promise.all(files.map((f) => (format === "parquet" ? describeParquet(f) : describeArrow(f))));
    const columns: InferredColumn[] = [];
    for (const d of described)
      for (const c of d.columns)
        if (!columns.some((x) => x.name === c.name))
          columns.push({
            name: c.name,
            type: c.type,
            ...(c.scale !== undefined ? { scale: c.scale } : {}),
            nonNull: d.rows,
            nulls: 0,
            distinct: 0,
            unique: false,
            notes: [c.nested ? "nested values: kept as JSON text" : `from the file's ${format === "parquet" ? "Parquet" : "Arrow"} schema`],
          });
    const schema: SchemaDocument = { read: { format }, ...(opts.key ? { key: opts.key } : {}), columns: columns.map(toSpec) };
    return { ...what, schema, columns, sampled: 0, keyCandidates: [] };
  }

  if (format === "csv" || format === "tsv") {
    const encoding = opts.encoding ? { encoding: opts.encoding, confidence: "bom" as const, bom: false } : await detectFileEncoding(files[0]!);
    const head = await headText(files[0]!, encoding.encoding);
    const delimiter = opts.delimiter ?? (format === "tsv" ? "\t" : detectDelimiter(head));
    const dialect = { delimiter, encoding: encoding.encoding };
    const header = opts.header ?? (await detectHeader(files[0]!, dialect));
    const names = header ? undefined : await widthOf(files[0]!, dialect);
    const read = header ? dialect : { ...dialect, header: false, columns: names! };
    const records: Record<string, unknown>[] = [];
    let columns: readonly string[] | undefined = names;
    for (const f of files) {
      const got = await sampleCsv(f, read, sampleRows);
      columns ??= got.columns;
      records.push(...got.rows);
    }
    if (encoding.confidence === "guess")
      notes.push(`the encoding ${encoding.encoding} is a guess from the bytes (not valid UTF-8, no BOM): check accented letters`);
    // The format is written down when the extension would not say it.
    const byExtension = (() => {
      try {
        return detectFormat(files[0]!);
      } catch {
        return undefined;
      }
    })();
    const readSpec: SchemaDocument["read"] = {
      ...(format !== byExtension || format === "tsv" ? { format } : {}),
      encoding: encoding.encoding,
      ...(delimiter !== "," && format !== "tsv" ? { delimiter } : {}),
      ...(header ? {} : { header: false, columns: [...names!] }),
    };
    return finish(records, columns ?? [], what, opts, { read: readSpec, encoding, delimiter, header });
  }

  // NDJSON and JSON arrays.
  const encoding = opts.encoding ? { encoding: opts.encoding, confidence: "bom" as const, bom: false } : await detectFileEncoding(files[0]!);
  const records: Record<string, unknown>[] = [];
  for (const f of files) records.push(...(await take(openReader(f, { format, encoding: encoding.encoding, batchSize: 2_000 }), sampleRows)).rows);
  return finish(records, keysOf(records), what, opts, {
    read: { format, ...(encoding.encoding !== "utf-8" ? { encoding: encoding.encoding } : {}) },
    encoding,
  });
}

function finish(
  records: Record<string, unknown>[],
  names: readonly string[],
  what: Pick<InferResult, "source" | "files" | "format" | "notes">,
  opts: InferOptions,
  extra: { read?: SchemaDocument["read"]; encoding?: DetectedEncoding; delimiter?: string; header?: boolean },
): InferResult {
  if (records.length === 0) what.notes.push("the source has no records to sample: every column is typed as string");
  const columns = inferColumns(names, records);
  for (const k of opts.key ?? [])
    if (!names.includes(k)) throw new SluiceError("USAGE", `--key ${k} is not a column of ${what.source} (columns: ${names.join(", ")})`);
  const keyCandidates = columns
    .filter((c) => c.unique && c.nulls === 0 && c.nonNull === records.length && /(^id$|_id$|Id$|^key$|_key$|code$|uuid)/i.test(c.name))
    .map((c) => c.name);
  const schema: SchemaDocument = {
    ...(extra.read && Object.keys(extra.read).length ? { read: extra.read } : {}),
    ...(opts.key ? { key: opts.key } : {}),
    columns: columns.map(toSpec),
  };
  return { ...what, schema, columns, sampled: records.length, keyCandidates, ...extra };
}

function toSpec(c: InferredColumn): SchemaDocument["columns"][number] {
  return {
    name: c.name,
    type: c.type,
    ...(c.scale !== undefined ? { scale: c.scale } : {}),
    ...(c.format !== undefined ? { format: c.format } : {}),
    ...(c.nullValues ? { nullValues: c.nullValues } : {}),
  } as SchemaDocument["columns"][number];
}

/** Text files of other extensions (.txt, .dat, none: Excel's "Unicode text", exports) are read as delimited text. */
const DELIMITED_TEXT = new Set([".txt", ".dat", ".psv", ".tab", ".asc", ""]);

function formatOf(path: string): FileFormat {
  try {
    return detectFormat(path);
  } catch {
    if (DELIMITED_TEXT.has(extname(path).toLowerCase())) return "csv";
    throw new SluiceError(
      "USAGE",
      `cannot tell the format of ${path} from its extension ${JSON.stringify(extname(path) || basename(path))}; pass --format csv|tsv|ndjson|json|parquet|arrow`,
    );
  }
}

function quoteIdent(table: string): string {
  return table
    .split(".")
    .map((p) => `"${p.replace(/^"|"$/g, "").replace(/"/g, '""')}"`)
    .join(".");
}

/** The first 64 KB of a text file, decoded. */
async function headText(path: string, encoding: string): Promise<string> {
  let text = "";
  for await (const c of readTextChunks(path, { end: 64 * 1024, encoding })) text += c.text;
  return text;
}

/**
 * The delimiter that splits the first lines into the same number of fields (more than one),
 * outside quotes; ties go to the earlier of `, TAB ; |`.
 */
export function detectDelimiter(text: string): string {
  const lines = text.split(/\r?\n/).slice(0, 60);
  if (lines.length > 1 && text.length >= 64 * 1024 - 1) lines.pop(); // the last line may be cut
  let best: { d: string; score: number } = { d: ",", score: -1 };
  for (const d of DELIMITERS) {
    const counts = lines.filter((l) => l.length > 0).map((l) => fieldsOutsideQuotes(l, d));
    if (counts.length === 0) continue;
    const mode = modeOf(counts);
    if (mode < 2) continue;
    const consistent = counts.filter((c) => c === mode).length / counts.length;
    const score = consistent * 1000 + Math.min(mode, 100);
    if (score > best.score) best = { d, score };
  }
  return best.d;
}

function fieldsOutsideQuotes(line: string, d: string): number {
  let n = 1;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') quoted = !quoted;
    else if (c === d && !quoted) n++;
  }
  return n;
}

function modeOf(xs: number[]): number {
  const m = new Map<number, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return [...m].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]![0];
}

async function take(batches: AsyncIterable<RecordBatch>, n: number): Promise<{ rows: Record<string, unknown>[]; columns: readonly string[] | undefined }> {
  const rows: Record<string, unknown>[] = [];
  let columns: readonly string[] | undefined;
  for await (const b of batches) {
    columns ??= b.columns;
    for (const r of b.rows) {
      if (rows.length >= n) return { rows, columns };
      rows.push(r);
    }
    if (rows.length >= n) break;
  }
  return { rows, columns };
}

/** How many fields the first record has (for a file without a header). */
async function widthOf(path: string, dialect: { delimiter: string; encoding: string }): Promise<string[]> {
  // The parser needs the width up front, so it is counted on the first line's text.
  const head = await headText(path, dialect.encoding);
  const firstLine = head.split(/\r?\n/)[0] ?? "";
  const n = fieldsOutsideQuotes(firstLine, dialect.delimiter);
  return Array.from({ length: n }, (_, i) => `column${i + 1}`);
}

/**
 * Whether the first record names the columns: no when, in a column the other records type as a
 * number, date or boolean, the first record's value has that type too (it is data); yes
 * otherwise, and when no column is typed (a file of text only).
 */
async function detectHeader(path: string, dialect: { delimiter: string; encoding: string }): Promise<boolean> {
  const names = await widthOf(path, dialect);
  const { rows } = await take(readCsv(path, { ...dialect, header: false, columns: names, batchSize: 1_000 }), 500);
  if (rows.length < 2) return true;
  const first = rows[0]!;
  const rest = inferColumns(names, rows.slice(1));
  const typed = rest.filter((c) => c.type !== "string");
  if (typed.length === 0) return true;
  return !typed.some((c) => {
    const v = first[c.name];
    if (typeof v !== "string" || v.trim() === "") return false;
    const parse = compileValueParser({ type: c.type, ...(c.scale !== undefined ? { scale: c.scale } : {}), ...(c.format ? { format: c.format } : {}) });
    return !(parse(v) instanceof Invalid);
  });
}

async function sampleCsv(
  path: string,
  read: { delimiter: string; encoding: string; header?: boolean; columns?: string[] },
  n: number,
): Promise<{ rows: Record<string, unknown>[]; columns: readonly string[] | undefined }> {
  const start = await take(readCsv(path, { ...read, batchSize: 2_000 }), n);
  const { size } = await import("node:fs/promises").then((fs) => fs.stat(path));
  if (size <= SPREAD_ABOVE) return start;
  const ranges = await splitCsv(path, { delimiter: read.delimiter, encoding: read.encoding, targetBytes: Math.ceil(size / SPREAD_RANGES) });
  for (const r of ranges.slice(1)) start.rows.push(...(await take(readCsvRange(path, r, { ...read, batchSize: SPREAD_ROWS }), SPREAD_ROWS)).rows);
  return start;
}

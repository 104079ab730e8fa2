/**
 * Records of a candidate source, each with where it came from: the file and line, the HTTP
 * page and position in it, or the row number of a PostgreSQL query. Discovery samples sources
 * through this, reconstruction reads the missing ranges through it — the source kinds are the
 * ones collect_data_from_source reads (file, directory, glob, http(s) URL, postgres://…?table=T).
 *
 * WHY not the collect step itself: recovery needs the position of every record (provenance),
 * to start an HTTP walk at a given page (resume where the primary stopped), and to push the
 * missing key ranges into a PostgreSQL query — none of which a staged copy keeps.
 */
import { extname } from "node:path";
import { SluiceError } from "../../errors.js";
import { fetchPages, listFiles, parseSourceUrl, quoteTableName, readPostgres, type HttpAuth } from "../../connectors/index.js";
import { detectFormat, openReader, parseCsvStream } from "../../formats/index.js";
import { splitPostgresSource } from "../batch/source-checks.js";
import type { Provenance } from "./contract.js";

export interface SourceReadOptions {
  signal: AbortSignal;
  auth?: HttpAuth;
  recordsPath?: string;
  /** HTTP: begin at this URL (and count pages from `page`) instead of the source's first page. */
  start?: { url: string; page: number };
  /** HTTP: most pages to read; with `stopAtMaxPages` the walk stops there instead of failing. */
  maxPages?: number;
  stopAtMaxPages?: boolean;
  /** HTTP: retries of 429/503 (default 2: a recovery must not wait long on a source that fails). */
  maxRetries?: number;
  timeoutMs?: number;
  /** PostgreSQL: a condition on the rows (SQL with $n parameters). */
  where?: { sql: string; params: unknown[] };
  /** Stop after about this many records (a sample). */
  limit?: number;
}

export interface SourceBatch {
  records: Record<string, unknown>[];
  /** Provenance of `records[i]`, and its one-string form (`http://host/api?page=4#12`, `/data/x.csv#17`). */
  provenance: Provenance[];
  refs: string[];
  /** HTTP: the page ended the walk early (more pages were left). */
  pagesLeft?: boolean;
}

/** The source as it is shown everywhere (no credentials), and the key a circuit breaker is kept under. */
export function sourceDisplay(source: string): string {
  return parseSourceUrl(source).display;
}

/**
 * The name a source is recorded under in the ranking and the provenance, and read again by: as
 * given when it carries no secret (a PostgreSQL user name is needed to connect again, and is
 * not one), else its display form (then reading it again needs the secret from elsewhere).
 */
export function sourceName(source: string): string {
  const src = parseSourceUrl(source);
  if (src.kind === "file") return src.display;
  const given = source.trim();
  try {
    if (new URL(given).password !== "" || src.display.includes("***")) return src.display;
  } catch {
    return src.display;
  }
  return given;
}

export async function* readSourceRecords(source: string, opts: SourceReadOptions): AsyncGenerator<SourceBatch> {
  const src = parseSourceUrl(source);
  const name = sourceName(source);
  let count = 0;
  const full = () => opts.limit !== undefined && count >= opts.limit;
  if (src.kind === "file") {
    const files = await listFiles(src.path);
    if (files.length === 0) throw new SluiceError("FILE_NOT_FOUND", `no files match ${src.display}`, { retryable: true });
    for (const f of files) {
      const format = formatOf(f.path);
      for await (const b of openReader(f.path, { format, batchSize: 1000, name: f.path })) {
        if (opts.signal.aborted) throw opts.signal.reason;
        const provenance = b.rows.map((_, i): Provenance => ({ source: src.display, file: f.path, line: b.lines[i]! }));
        count += b.rows.length;
        yield { records: b.rows, provenance, refs: provenance.map((p) => `${p.file}#${p.line}`) };
        if (full()) return;
      }
    }
    return;
  }
  if (src.kind === "http") {
    let page = (opts.start?.page ?? 1) - 1;
    for await (const p of fetchPages(
      {
        url: opts.start?.url ?? src.url,
        ...(opts.auth ? { auth: opts.auth } : {}),
        ...(opts.recordsPath ? { recordsPath: opts.recordsPath } : {}),
        ...(opts.maxPages !== undefined ? { maxPages: opts.maxPages } : {}),
        ...(opts.stopAtMaxPages ? { onMaxPages: "stop" as const } : {}),
        maxRetries: opts.maxRetries ?? 2,
        maxRetryAfterMs: 5_000,
        timeoutMs: opts.timeoutMs ?? 30_000,
      },
      { signal: opts.signal },
    )) {
      page++;
      let records = p.records;
      if (!records && p.text !== undefined) {
        records = [];
        async function* once() {
          yield p.text!;
        }
        for await (const b of parseCsvStream(once(), p.url)) records.push(...b.rows);
      }
      records ??= [];
      const provenance = records.map((_, i): Provenance => ({ source: name, page, line: i + 1 }));
      count += records.length;
      yield { records, provenance, refs: records.map((_, i) => `${p.url}#${i + 1}`), ...(p.pagesLeft ? { pagesLeft: true } : {}) };
      if (full()) return;
    }
    return;
  }
  const { url, table } = splitPostgresSource(src.url);
  if (!table) throw new SluiceError("BAD_CONFIG", `the PostgreSQL source ${src.display} needs ?table=NAME to be read for recovery`, { retryable: false });
  const text = `select * from ${quoteTableName(table)}${opts.where ? ` where ${opts.where.sql}` : ""}${opts.limit !== undefined ? ` limit ${Math.floor(opts.limit)}` : ""}`;
  for await (const rows of readPostgres({ url, query: text, params: opts.where?.params ?? [], batchSize: 5_000 }, { signal: opts.signal })) {
    const provenance = rows.map((_, i): Provenance => ({ source: name, line: count + i + 1 }));
    count += rows.length;
    yield { records: rows, provenance, refs: provenance.map((p) => `${name}#${p.line}`) };
  }
}

/**
 * The pages a failed HTTP collection already stored (its page manifest's `file`s, in the
 * checkpoint of actions/batch/page-checkpoint.ts), read as records of `name` — the primary they
 * came from — with the page and line as provenance, the ref the page's URL and line, as if the
 * primary had been asked again. Every stored page is whole (a page is stored only complete), so
 * these are the primary's rows, without asking a source that is failing.
 */
export async function* readStoredPages(
  pages: readonly { page: number; url: string; file?: string }[],
  name: string,
  signal: AbortSignal,
): AsyncGenerator<SourceBatch> {
  for (const p of pages) {
    if (!p.file) continue;
    const format = /\.csv$/i.test(p.file) ? ("csv" as const) : ("ndjson" as const);
    for await (const b of openReader(p.file, { format, batchSize: 1000, name: p.file })) {
      if (signal.aborted) throw signal.reason;
      const provenance = b.rows.map((_, i): Provenance => ({ source: name, page: p.page, line: format === "csv" ? b.lines[i]! - 1 : b.lines[i]! }));
      yield { records: b.rows, provenance, refs: provenance.map((q) => `${p.url}#${q.line}`) };
    }
  }
}

/** The file's format from its extension; `.jsonl` is NDJSON. */
function formatOf(path: string) {
  if (extname(path).toLowerCase() === ".jsonl") return "ndjson" as const;
  return detectFormat(path);
}

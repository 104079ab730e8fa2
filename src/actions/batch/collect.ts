/**
 * data-collector/collect_data_from_source: stage the source in the run's artifact area.
 *
 * Local files are copied (a snapshot: a retried or resumed run reads the same bytes even if the
 * source changes) with their checksum; files still being written are left for the next run.
 * HTTP pages are kept one file per page in a checkpoint that a retry or resume continues from
 * (collect-http.ts); PostgreSQL rows are written as NDJSON.
 */
import { copyFile, constants as fsConstants, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { SluiceError, type ErrorCode } from "../../errors.js";
import { listFiles, parseSourceUrl, readPostgres, settleDuring, sha256File, type HttpPagination } from "../../connectors/index.js";
import { detectFormat, openWriter, type FileFormat } from "../../formats/index.js";
import type { ActionContext, Outputs } from "../types.js";
import { stepFolder, writeDataset, type DatasetPart } from "./dataset.js";
import { splitPostgresSource, type httpAuth } from "./source-checks.js";
import { mapLimit } from "./map-limit.js";
import { collectHttp } from "./collect-http.js";
import { withSourceBreaker, type BreakerConfig } from "../recovery/source-guard.js";

const COPY_CONCURRENCY = 4;

export interface CollectInput {
  source: string;
  format?: FileFormat;
  csv?: DatasetPart["csv"];
  auth?: Parameters<typeof httpAuth>[0];
  query?: string;
  table?: string;
  recordsPath?: string;
  pagination?: HttpPagination;
  maxPages?: number;
  onMaxPages?: "error" | "stop";
  batchSize?: number;
  workers?: number;
  /** HTTP: the key column named in the page manifest (firstKey/lastKey). */
  key?: string;
  timeoutMs?: number;
  maxRetries?: number;
  maxRetryAfterMs?: number;
  /** The source's circuit breaker (recovery/breaker.ts): thresholds, or false for none. */
  breaker?: BreakerConfig;
}

export async function collectDataFromSource(input: CollectInput, ctx: ActionContext): Promise<Outputs> {
  // An open circuit breaker refuses before the source is touched; the outcome is recorded after.
  return withSourceBreaker(input.source, input.breaker, ctx, () => collectSource(input, ctx));
}

async function collectSource(input: CollectInput, ctx: ActionContext): Promise<Outputs> {
  const dir = await stepFolder(ctx);
  const src = parseSourceUrl(input.source);
  let parts: DatasetPart[];
  let skipped: { path: string; reason: string }[] = [];
  let failedFiles: { path: string; reason: string; code: ErrorCode }[] = [];
  let pagesLeft = false;
  let httpOutputs: Outputs = {};
  if (src.kind === "file") ({ parts, skipped, failedFiles } = await collectFiles(src.path, input, dir, ctx));
  else if (src.kind === "http") ({ parts, pagesLeft, outputs: httpOutputs } = await collectHttp(src.url, src.display, input, dir, ctx));
  else parts = await collectPostgres(src.url, src.display, input, dir, ctx);

  const bytes = parts.reduce((n, p) => n + (p.bytes ?? 0), 0);
  const records = parts.every((p) => p.rows !== undefined) ? parts.reduce((n, p) => n + p.rows!, 0) : undefined;
  const dataset = await writeDataset(dir, {
    step: ctx.step,
    typed: false,
    parts,
    quarantine: [],
    meta: { source: src.display, skipped, ...(failedFiles.length ? { failedFiles } : {}), ...(pagesLeft ? { pagesLeft } : {}) },
  });
  return {
    dataset,
    files: parts.length,
    bytes,
    ...(records !== undefined ? { records } : {}),
    skipped: skipped.length,
    source: src.display,
    ...(failedFiles.length ? { filesFailed: failedFiles.length, failedFiles } : {}),
    ...(pagesLeft ? { pagesLeft: true } : {}),
    ...httpOutputs,
  };
}

/** The format of a collected file: declared, from its extension, or `unknown` for the schema to say. */
function formatOf(path: string, declared: FileFormat | undefined): DatasetPart["format"] {
  if (declared) return declared;
  try {
    return detectFormat(path);
  } catch {
    return "unknown";
  }
}

async function collectFiles(path: string, input: CollectInput, dir: string, ctx: ActionContext) {
  const found = await listFiles(path);
  if (found.length === 0) throw new SluiceError("NOT_FOUND", `no files match ${path}`, { retryable: true });
  // A file whose size or mtime changes within a quarter second is still being written; the
  // quarter second is waited beside the copies (settleDuring), so a copy never holds a file
  // caught mid-write and no run waits it out first.
  const totalBytes = found.reduce((n, f) => n + f.size, 0);
  let done = 0;
  let files = 0;
  // Several files are copied and checksummed at once: the disk, not one stream, is the limit.
  // A file that cannot be read (permissions, gone since it was listed) fails alone.
  type Copied = { part: DatasetPart } | { failed: { path: string; reason: string; code: ErrorCode } };
  const { result: copied, settled } = await settleDuring(found, { intervalMs: 250, checks: 2, minAgeMs: 0, signal: ctx.signal }, () =>
    mapLimit(found, COPY_CONCURRENCY, async (f, i): Promise<Copied> => {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const format = formatOf(f.path, input.format);
      const target = join(dir, `${String(i).padStart(4, "0")}-${basename(f.path)}`);
      try {
        // Copy-on-write clone where the file system allows it; a plain copy elsewhere.
        await copyFile(f.path, target, fsConstants.COPYFILE_FICLONE);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "EACCES" && code !== "EPERM" && code !== "ENOENT" && code !== "EISDIR" && code !== "EIO") throw err;
        const reason =
          code === "ENOENT"
            ? "it disappeared before it could be read"
            : code === "EIO"
              ? "the disk reported an I/O error"
              : "it is not readable by this process";
        return {
          failed: { path: f.path, reason: `${f.path}: ${reason}`, code: code === "ENOENT" ? "FILE_NOT_FOUND" : code === "EIO" ? "IO_ERROR" : "BAD_CONFIG" },
        };
      }
      const [sha256, st] = await Promise.all([sha256File(target, ctx.signal), stat(target)]);
      done += st.size;
      ctx.progress({ files: ++files, totalFiles: found.length, bytes: done, totalBytes });
      return { part: { path: target, format, source: f.path, bytes: st.size, sha256, ...(input.csv ? { csv: input.csv } : {}) } };
    }),
  );

  const parts: DatasetPart[] = [];
  const skipped: { path: string; reason: string }[] = [];
  const failedFiles: { path: string; reason: string; code: ErrorCode }[] = [];
  for (let i = 0; i < found.length; i++) {
    const c = copied[i]!;
    const s = settled[i]!;
    const still = "entry" in s && ("failed" in c || c.part.bytes === s.entry.size);
    if ("part" in c && still) parts.push(c.part);
    else if ("part" in c) {
      await rm(c.part.path, { force: true });
      skipped.push({ path: found[i]!.path, reason: `still being written (${"entry" in s || s.during ? "changed while it was copied" : s.reason})` });
    } else if (!("entry" in s) && !s.during && s.exists) skipped.push({ path: found[i]!.path, reason: `still being written (${s.reason})` });
    else failedFiles.push(c.failed);
  }
  for (const s of skipped) ctx.log.warn("file skipped", s);
  for (const f of failedFiles) ctx.log.warn("file failed", { path: f.path, reason: f.reason });
  if (parts.length === 0 && failedFiles.length === 0)
    throw new SluiceError("NOT_FOUND", `every file of ${path} is still being written; try again later`, { retryable: true });
  if (parts.length === 0)
    throw new SluiceError(
      failedFiles.length === 1 ? failedFiles[0]!.code : "TOO_MANY_FAILED_FILES",
      failedFiles.length === 1 ? `source ${failedFiles[0]!.reason}` : `every file of ${path} failed: ${failedFiles.map((f) => f.reason).join("; ")}`,
      { retryable: false, details: { failedFiles } },
    );
  return { parts, skipped, failedFiles };
}

async function collectPostgres(source: string, display: string, input: CollectInput, dir: string, ctx: ActionContext): Promise<DatasetPart[]> {
  const { url, table } = splitPostgresSource(source);
  input = { ...input, table: input.table ?? table };
  if (!input.table && !input.query)
    throw new SluiceError(
      "BAD_CONFIG",
      `collecting from ${display} needs a table: add ?table=NAME to the URL, or "table" or "query" to the step's with: block`,
    );
  const path = join(dir, "rows.ndjson");
  const writer = await openWriter(path, "ndjson");
  let rows = 0;
  for await (const batch of readPostgres({ url, table: input.table, query: input.query, batchSize: input.batchSize ?? 5_000 }, { signal: ctx.signal })) {
    await writer.write(batch);
    rows += batch.length;
    ctx.progress({ rows });
  }
  const res = await writer.close();
  return [{ path, format: "ndjson", source: `${display} ${input.table ?? "query"}`, rows, bytes: res.bytes, intermediate: true }];
}

/**
 * data-collector/process_files_in_parallel: parse a discovered file set on a pool of worker
 * threads, in record-aligned chunks, into parts with each record's source line (`_line`): CSV in
 * Sluice's own dialect (UTF-8, comma, header; INTERMEDIATE_CSV) for CSV/TSV sources, NDJSON for
 * the others (see chunk-worker.ts). The parts are marked `intermediate`: the next step reads them
 * as written, not with the schema's `read:` options meant for the source files.
 *
 * Plan: every CSV/TSV file larger than `chunkSize` is cut into byte ranges of about that size
 * that start at record boundaries (`splitCsv`, quote-aware, so a quoted newline is never a cut);
 * each range is one work unit, read with `readCsvRange` so line numbers are the file's own.
 * NDJSON, JSON arrays and Parquet files are one unit each.
 *
 * Pool: min(workers, units, CPU cores) worker threads (chunk-worker.ts), each fed the next unit of the plan
 * as soon as it finishes one, so a few big files and many small ones balance by themselves.
 * Results are put back by unit index: the output order (file, then chunk) never depends on
 * which worker finished first.
 *
 * Isolation: a unit that fails (unreadable file, corrupt Parquet, JSON that is not an array, a
 * crashed worker) fails its whole FILE: the file's remaining units are not started, its parts
 * and quarantine are dropped, it is removed from `meta.ingest` (so it is not recorded as
 * ingested) and it is listed with its reason in `failedFiles`. Other files go on. The step
 * fails (TOO_MANY_FAILED_FILES, not retryable) when the failed share exceeds
 * `failureThreshold`, or, by default, when every file failed.
 *
 * Known-bad files: a file that failed because its CONTENT cannot be read (BAD_INPUT: corrupt
 * Parquet, a JSON file that is not an array, a malformed CSV header) is recorded in the file
 * ledger as rejected, by the checksum discovery computed, here and now: a later step may still
 * fail the run, and this step may fail for too many failed files, but the file stays bad.
 * Discovery leaves it out of later runs until its content changes. Before recording, the file
 * is hashed again: one that changed or vanished since discovery failed for a passing reason.
 * Transient failures (I/O errors, a vanished or changed file, a crashed worker) are never
 * recorded: the next run tries the file again.
 *
 * Abort: on `ctx.signal`, every worker is terminated and the step rejects with the signal's reason.
 */
import { availableParallelism } from "node:os";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { asErrorCode, SluiceError, type ErrorCode } from "../../errors.js";
import { sha256File } from "../../connectors/files.js";
import { splitCsv, type CsvRange, type FileFormat } from "../../formats/index.js";
import type { ActionContext, Outputs } from "../types.js";
import { INTERMEDIATE_CSV, readDataset, stepFolder, writeDataset, type Accounting, type DatasetPart, type IngestMeta } from "./dataset.js";
import { mapLimit } from "./map-limit.js";
import type { UnitResult, WorkUnit } from "./chunk-worker.js";
import { compiledWorker, runPool } from "./worker-pool.js";

export interface ParallelInput {
  /** A dataset manifest: the `files` output of discover_files_in_directory (or any raw dataset). */
  files: string;
  /** Worker threads (default 10); never more than there are units. */
  workers?: number;
  /** Target CSV chunk size: "100MB", "64MiB", "500KB" or a number of bytes (default "100MB"). */
  chunkSize?: string | number;
  /** Fraction (0..1) of files allowed to fail; default: any, as long as one file succeeds. */
  failureThreshold?: number;
  /** CSV reading options for every CSV/TSV part (a part's own options win). */
  csv?: DatasetPart["csv"];
}

export interface FailedFile {
  path: string;
  reason: string;
  /** The error code behind the reason (BAD_INPUT for unreadable content; FILE_NOT_FOUND, IO_ERROR, CONFLICT … for passing trouble). */
  code: ErrorCode;
  /** True when the file was recorded in the ledger as known bad: later runs leave it out until its content changes. */
  knownBad: boolean;
}

/** Failures that say the file's content cannot be read: retrying the same bytes cannot help. */
const UNREADABLE_CONTENT = new Set(["BAD_INPUT"]);
/** The reason kept in the ledger is one sentence; a runaway message is cut. */
const MAX_REASON_CHARS = 2_000;

const DEFAULT_WORKERS = 10;
const DEFAULT_CHUNK = "100MB";
/** Rows per read batch in a worker: what bounds a worker's memory. */
const BATCH_SIZE = 2_000;
/** Smallest accepted chunk: below this, per-unit overhead dominates. */
const MIN_CHUNK_BYTES = 1024;
/** Files whose CSV split is computed at once (each split is one sequential read). */
const SPLIT_CONCURRENCY = 4;

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/**
 * Bytes from a size: "100MB" (SI, 10^6), "64MiB" (binary, 2^20), "500KB", "1.5GB", "4096" or a number.
 * `K`, `M`, `G` alone are binary, as in `ls -h`.
 */
export function parseByteSize(value: string | number): number {
  let bytes: number;
  if (typeof value === "number") bytes = value;
  else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
    const unit = m ? UNITS[(m[2] || "b").toLowerCase()] : undefined;
    if (!m || unit === undefined)
      throw new SluiceError("BAD_INPUT", `chunkSize ${JSON.stringify(value)} is not a size; write e.g. "100MB", "64MiB", "500KB" or a number of bytes`);
    bytes = Number(m[1]) * unit;
  }
  if (!Number.isFinite(bytes) || bytes < MIN_CHUNK_BYTES)
    throw new SluiceError("BAD_INPUT", `chunkSize ${JSON.stringify(value)} is too small; use at least ${MIN_CHUNK_BYTES} bytes`);
  return Math.round(bytes);
}

interface FileState {
  index: number;
  part: DatasetPart;
  units: WorkUnit[];
  failed?: string;
  failedCode?: string;
}

export async function processFilesInParallel(input: ParallelInput, ctx: ActionContext): Promise<Outputs> {
  if (ctx.signal.aborted) throw ctx.signal.reason;
  const ds = await readDataset(input.files);
  const chunkBytes = parseByteSize(input.chunkSize ?? DEFAULT_CHUNK);
  const maxWorkers = input.workers ?? DEFAULT_WORKERS;
  if (!Number.isInteger(maxWorkers) || maxWorkers < 1) throw new SluiceError("BAD_INPUT", `workers must be a whole number of at least 1, not ${maxWorkers}`);
  const threshold = input.failureThreshold;
  if (threshold !== undefined && !(threshold >= 0 && threshold <= 1))
    throw new SluiceError("BAD_INPUT", `failureThreshold must be a fraction from 0 to 1, not ${threshold}`);
  const dir = await stepFolder(ctx);

  // 1. Plan: units per file, in file order, then chunk order.
  const files: FileState[] = ds.parts.map((part, index) => ({ index, part, units: [] }));
  await mapLimit(files, SPLIT_CONCURRENCY, async (f) => {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    try {
      f.units = await planFile(f, chunkBytes, input.csv, dir, ctx.step);
    } catch (err) {
      f.failed = reasonOf(err);
      f.failedCode = codeOf(err);
    }
  });
  const units: WorkUnit[] = [];
  const fileOfUnit: FileState[] = [];
  for (const f of files) {
    f.units = f.units.map((u) => {
      const unit = { ...u, id: units.length };
      units.push(unit);
      fileOfUnit.push(f);
      return unit;
    });
  }

  const totalBytes = files.reduce((n, f) => n + (f.part.bytes ?? 0), 0);
  // `workers` is an upper bound, as Argo's parallelism is: more threads than cores only adds
  // memory and context switches (10 workers on 2 cores measured half the speed of 2).
  const workers = Math.min(maxWorkers, units.length, availableParallelism());

  // 2. Run the units on the pool.
  const results: (UnitResult | undefined)[] = new Array(units.length);
  if (units.length > 0) {
    const entry = compiledWorker("chunk-worker.js");
    // Per-unit counts, and their sums kept up to date by differences.
    const unitRows = new Array<number>(units.length).fill(0);
    const unitBytes = new Array<number>(units.length).fill(0);
    const sums = { rows: 0, bytes: 0 };
    const filesDone = new Set<number>();
    const set = (id: number, rows: number, bytes: number): void => {
      sums.rows += rows - unitRows[id]!;
      sums.bytes += bytes - unitBytes[id]!;
      unitRows[id] = rows;
      unitBytes[id] = bytes;
      ctx.progress({ rows: sums.rows, bytes: sums.bytes, totalBytes, files: filesDone.size, totalFiles: files.length });
    };
    await runPool<WorkUnit, UnitResult>(units, workers, entry, ctx.signal, {
      skip: (u) => fileOfUnit[u.id]!.failed !== undefined,
      progress: set,
      done: (u, r) => {
        results[u.id] = r;
        const f = fileOfUnit[u.id]!;
        if (f.units.every((x) => results[x.id] !== undefined)) filesDone.add(f.index);
        set(u.id, r.rows + r.malformed, u.bytes);
      },
      failed: (u, reason, code) => {
        const f = fileOfUnit[u.id]!;
        if (f.failed !== undefined) return; // another unit of the same file failed first
        f.failed = reason;
        f.failedCode = code;
        ctx.log.warn("file failed; its other units are skipped", { path: f.part.source, reason });
      },
    });
  }

  // 3. Assemble in plan order; failed files leave nothing behind.
  const failedFiles: FailedFile[] = [];
  const parts: DatasetPart[] = [];
  const quarantine: string[] = [];
  const accounting: Accounting = { rowsIn: 0, rowsQuarantined: 0, rowsDuplicate: 0 };
  let rowsOut = 0;
  let bytes = 0;
  const drop: string[] = [];
  const ingest = ds.meta?.ingest as IngestMeta | undefined;
  const knownBad = await recordUnreadable(
    files.filter((f) => f.failed !== undefined),
    ingest,
    ctx,
  );
  for (const f of files) {
    if (f.failed !== undefined) {
      failedFiles.push({ path: f.part.source, reason: f.failed, code: asErrorCode(f.failedCode, "ACTION_FAILED"), knownBad: knownBad.has(f) });
      for (const u of f.units) drop.push(u.out, u.quarantine);
      continue;
    }
    bytes += f.part.bytes ?? 0;
    for (const u of f.units) {
      const r = results[u.id]!;
      accounting.rowsIn += r.rows + r.malformed;
      accounting.rowsQuarantined += r.malformed;
      rowsOut += r.rows;
      if (r.rows > 0) parts.push({ path: u.out, ...intermediateFormat(u.format), source: f.part.source, rows: r.rows, bytes: r.partBytes, intermediate: true });
      else drop.push(u.out);
      if (r.malformed > 0) quarantine.push(u.quarantine);
    }
  }
  await Promise.all(drop.map((p) => rm(p, { force: true })));

  const total = files.length;
  if (failedFiles.length > 0) {
    const share = failedFiles.length / total;
    const tooMany = threshold === undefined ? failedFiles.length === total : share > threshold;
    if (tooMany) {
      const limit = threshold === undefined ? "every file failed" : `${failedFiles.length} of ${total} files failed, more than the threshold ${threshold}`;
      throw new SluiceError("TOO_MANY_FAILED_FILES", `${limit}: ${failedFiles.map((f) => `${f.path} (${f.reason})`).join("; ")}`, {
        retryable: false,
        details: { failedFiles },
      });
    }
  }

  // Ingest entries name the file read (the part's path; the same as its source for discovered files).
  const failedPaths = new Set(files.filter((f) => f.failed !== undefined).flatMap((f) => [f.part.path, f.part.source]));
  const meta: Record<string, unknown> = {
    ...(ds.meta ?? {}),
    ...(ingest ? { ingest: { scope: ingest.scope, files: ingest.files.filter((f) => !failedPaths.has(f.path)) } satisfies IngestMeta } : {}),
    failedFiles,
    parallel: { units: units.length, workers, chunkBytes },
  };
  const dataset = await writeDataset(dir, {
    step: ctx.step,
    typed: false,
    parts,
    rows: rowsOut,
    accounting,
    quarantine: [...ds.quarantine, ...quarantine],
    meta,
  });
  return {
    dataset,
    files: total - failedFiles.length,
    filesFailed: failedFiles.length,
    failedFiles,
    filesKnownBad: knownBad.size,
    units: units.length,
    workers,
    workersRequested: maxWorkers,
    rowsIn: accounting.rowsIn,
    rowsOut,
    rowsQuarantined: accounting.rowsQuarantined,
    bytes,
    ...(total === 0 ? { empty: true, note: "no files to process: the dataset is empty" } : {}),
  };
}

/** The units of one file (ids are given afterwards, in plan order). */
async function planFile(f: FileState, chunkBytes: number, csv: ParallelInput["csv"], dir: string, step: string): Promise<WorkUnit[]> {
  const { part, index } = f;
  let size: number;
  try {
    size = (await stat(part.path)).size;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SluiceError(
      code === "ENOENT" ? "FILE_NOT_FOUND" : "IO_ERROR",
      code === "ENOENT" ? `${part.path} no longer exists` : `cannot read ${part.path}: ${(err as Error).message}`,
    );
  }
  // Discovery checksummed the file at this size; a file that changed since is not the one inventoried.
  if (part.bytes !== undefined && part.bytes !== size)
    throw new SluiceError("CONFLICT", `${part.path} changed since it was discovered (${part.bytes} bytes then, ${size} now)`);
  part.bytes = size;
  if (part.format === "stage" || part.format === "unknown")
    throw new SluiceError(
      "BAD_INPUT",
      `${part.path} is ${part.format === "stage" ? "a staged dataset, not a source file; process_files_in_parallel takes the files of a discovery step" : "of no format Sluice can tell from its extension"}`,
    );
  const format = part.format;
  const dialect = { ...(csv ?? {}), ...(part.csv ?? {}) };
  const textual = part.format === "csv" || part.format === "tsv";
  if (textual && part.format === "tsv") dialect.delimiter ??= "\t";
  const name = (chunk: number, kind: string) => join(dir, `${kind}-${pad(index)}-${pad(chunk)}.${kind === "part" && textual ? "csv" : "ndjson"}`);
  const unit = (chunk: number, bytes: number, range?: CsvRange): WorkUnit => ({
    id: -1,
    path: part.path,
    format,
    source: part.source,
    step,
    bytes,
    ...(range ? { range } : {}),
    ...(textual && Object.keys(dialect).length ? { csv: dialect } : {}),
    out: name(chunk, "part"),
    quarantine: name(chunk, "quarantine"),
    batchSize: BATCH_SIZE,
  });
  if (!textual || size <= chunkBytes) return [unit(0, size)];
  const ranges = await splitCsv(part.path, {
    delimiter: dialect.delimiter,
    quote: dialect.quote,
    targetBytes: chunkBytes,
    name: part.source,
    ...(dialect.encoding ? { encoding: dialect.encoding } : {}),
  });
  return ranges.map((r, i) => unit(i, r.end - r.start, r));
}

const pad = (n: number): string => String(n).padStart(5, "0");

/** The form of a unit's part (chunk-worker.ts): CSV in Sluice's dialect for CSV/TSV sources, else NDJSON. */
function intermediateFormat(source: FileFormat): Pick<DatasetPart, "format" | "csv"> {
  return source === "csv" || source === "tsv" ? { format: "csv", csv: { ...INTERMEDIATE_CSV } } : { format: "ndjson" };
}

function reasonOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "ACTION_FAILED";
}

/**
 * Record the files that failed on unreadable content as known bad in the ledger, under the
 * checksum discovery computed. Only files of a discovery (in `meta.ingest`) have one; a file
 * whose bytes are no longer those checksummed (changed, vanished) is left for the next run.
 * Returns the files recorded.
 */
async function recordUnreadable(failed: FileState[], ingest: IngestMeta | undefined, ctx: ActionContext): Promise<Set<FileState>> {
  const recorded = new Set<FileState>();
  if (!ingest || failed.length === 0) return recorded;
  const byPath = new Map(ingest.files.map((f) => [f.path, f]));
  const candidates = failed
    .filter((f) => UNREADABLE_CONTENT.has(f.failedCode ?? ""))
    .map((f) => ({ f, entry: byPath.get(f.part.path) ?? byPath.get(f.part.source) }))
    .filter((c): c is { f: FileState; entry: IngestMeta["files"][number] } => c.entry !== undefined);
  const same = await mapLimit(candidates, SPLIT_CONCURRENCY, async ({ entry }) => {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const now = await sha256File(entry.path, ctx.signal).catch(() => undefined);
    if (now !== entry.checksum) ctx.log.warn("failed file changed since discovery; not recorded as known bad", { path: entry.path });
    return now === entry.checksum;
  });
  const files = candidates.filter((_, i) => same[i]);
  if (files.length === 0) return recorded;
  await ctx.ledger.reject(
    ingest.scope,
    files.map(({ f, entry }) => ({
      checksum: entry.checksum,
      path: entry.path,
      size: entry.size,
      reason: f.failed!.slice(0, MAX_REASON_CHARS),
    })),
  );
  for (const { f } of files) {
    recorded.add(f);
    ctx.log.warn("file recorded as known bad; later runs leave it out until its content changes", { path: f.part.source, reason: f.failed });
  }
  return recorded;
}

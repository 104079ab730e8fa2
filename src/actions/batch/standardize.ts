/**
 * data-converter/convert_to_standard_format (and standardize_file_formats, the bulk workflow's
 * name for the same work): type every record of a dataset to the target schema.
 *
 * Plan: every CSV/TSV file big enough to be worth it is cut into record-aligned byte ranges
 * (`splitCsv`, quote-aware); each range, and each other file, is one unit (convert-unit.ts).
 * Units run on a pool of worker threads, at most one per core (a few MB of input run in this
 * thread: starting workers costs more than they save). Parts come back in plan order, so the
 * output never depends on which worker finished first. On 1M trade rows (99 MB, 2 cores) the
 * step took 2.5 s in one thread and 1.2 s on two workers on the machine of the time; on a later
 * one, whose two cores share less memory bandwidth, 2.59–2.87 s on one worker and 2.66–2.95 s on
 * two (3.2 against 5.25 CPU-seconds).
 *
 * The typed rows are also screened against the schema's quality rules that need no other row
 * (screen.ts): the quality step that applies those rules then re-checks only the rows that broke one.
 *
 * What the step guarantees:
 * - Every record read is a typed row of the output or quarantined with its source, line and
 *   every reason; `rowsIn = rowsOut + rowsQuarantined + rowsDuplicate` is checked.
 * - A file whose header does not fit the schema (a declared column missing), or that cannot be
 *   read, fails ALONE: it is listed in `failedFiles` with its reason and the other files go on,
 *   unless every file failed or more than `failureThreshold` of them did.
 * - More rejected records than `maxRejectShare` of the records read (default 0.5; 1 disables)
 *   fails the step with TOO_MANY_REJECTS, after the rejects are written to the quarantine: a run
 *   that set most of its input aside did nothing useful and must not report success.
 * - An input with no records at all (empty, or a header only) is reported (`empty: true` and a
 *   warning); `allowEmpty: false` fails the step instead.
 */
import { availableParallelism } from "node:os";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { asErrorCode, SluiceError, toErrorInfo, type ErrorCode } from "../../errors.js";
import { readCsvHeader, openReader, splitCsv, type CsvRange, type FileFormat } from "../../formats/index.js";
import { rowHashKind, STAGE_FORMAT } from "../../formats/stage.js";
import type { ActionContext, Outputs } from "../types.js";
import { checkAccounting, readDataset, stepFolder, writeDataset, type Accounting, type DatasetPart, type IngestMeta } from "./dataset.js";
import { convertUnit, type ConvertUnitResult, type ConvertUnitSpec, type ExtraColumns, type ReadSpec } from "./convert-unit.js";
import type { Column, QualityRuleSpec, TargetSchemaSpec } from "./model.js";
import { createQualityChecker, screeningRules } from "./quality.js";
import { writeScreen, type ScreenMeta } from "./screen.js";
import { loadSchemaRef, targetSchemaOf, type SchemaDocument } from "./schema-file.js";
import { compileSchema } from "./typing.js";
import { compiledWorker, runPool } from "./worker-pool.js";
import { mapLimit } from "./map-limit.js";

export interface ConvertInput {
  dataset: string;
  /** The target schema, inline or the path of a schema file (see schema-file.ts). */
  schema: SchemaDocument | string;
  maxRejectShare?: number;
  allowEmpty?: boolean;
  failureThreshold?: number;
  workers?: number;
}

export interface FailedFile {
  path: string;
  reason: string;
  code: ErrorCode;
  /** The schema's columns the file lacks, and the file's columns the schema does not name (a rename shows as both). */
  missing?: string[];
  added?: string[];
}

const DEFAULT_MAX_REJECT_SHARE = 0.5;
/** Below this much input, units run in this thread. */
const IN_THREAD_BYTES = 8 << 20;
const MIN_CHUNK = 4 << 20;
const MAX_CHUNK = 64 << 20;
const BATCH_SIZE = 2_000;

interface FileState {
  part: DatasetPart;
  units: ConvertUnitSpec[];
  failed?: FailedFile;
}

export async function convertToStandardFormat(input: ConvertInput, ctx: ActionContext): Promise<Outputs> {
  const ds = await readDataset(input.dataset);
  const doc = await loadSchemaRef(input.schema);
  const maxRejectShare = input.maxRejectShare ?? DEFAULT_MAX_REJECT_SHARE;
  if (!(maxRejectShare >= 0 && maxRejectShare <= 1)) throw new SluiceError("BAD_CONFIG", `maxRejectShare must be a share from 0 to 1, not ${maxRejectShare}`);
  const extraMode: ExtraColumns = doc.extraColumns ?? "ignore";
  const dir = await stepFolder(ctx);
  if (ds.parts.some((p) => p.format === STAGE_FORMAT))
    throw new SluiceError("BAD_INPUT", `${input.dataset} is already typed (from step ${ds.step}); convert the raw dataset of a collecting step`);

  // 1. The effective schema: with extraColumns: keep, the files' other columns as strings.
  const files: FileState[] = ds.parts.map((part) => ({ part, units: [] }));
  const extras = extraMode === "keep" ? await scanExtraColumns(files, doc) : [];
  const schema: TargetSchemaSpec = { ...targetSchemaOf(doc), columns: [...doc.columns, ...extras.map((name) => ({ name, type: "string" as const }))] };
  const compiled = compileSchema(schema); // configuration errors surface here, once, before any worker starts
  const screen = screeningOf(doc.rules, compiled.columns);

  // 2. The plan: units per file, in file order.
  const cores = Math.max(1, Math.min(input.workers ?? availableParallelism(), availableParallelism()));
  const totalBytes = ds.parts.reduce((n, p) => n + (p.bytes ?? 0), 0);
  const parallel = cores > 1 && totalBytes >= IN_THREAD_BYTES;
  const chunk = Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, Math.ceil(totalBytes / (cores * 3))));
  const lineField = ds.accounting !== undefined; // parts an earlier step parsed carry `_line`
  await mapLimit(files, 4, async (f, index) => {
    try {
      f.units = await planFile(f.part, index, { doc, schema, extraMode, lineField, parallel, chunk, dir, step: ctx.step, screen });
    } catch (err) {
      f.failed = failure(f.part, err);
    }
  });
  const units: ConvertUnitSpec[] = [];
  const fileOf: FileState[] = [];
  for (const f of files)
    for (const u of f.units) {
      u.id = units.length;
      units.push(u);
      fileOf.push(f);
    }

  // 3. Run them.
  const results: (ConvertUnitResult | undefined)[] = new Array(units.length);
  const seen = new Array<number>(units.length).fill(0);
  const seenBytes = new Array<number>(units.length).fill(0);
  const sums = { rows: 0, bytes: 0 };
  const report = (id: number, rows: number, bytes: number): void => {
    sums.rows += rows - seen[id]!;
    sums.bytes += bytes - seenBytes[id]!;
    seen[id] = rows;
    seenBytes[id] = bytes;
    const done = files.length > 1 ? files.filter((f) => f.units.length > 0 && f.units.every((u) => results[u.id])).length : undefined;
    ctx.progress({
      rows: sums.rows,
      bytes: Math.min(sums.bytes, totalBytes),
      totalBytes,
      ...(done !== undefined ? { files: done, totalFiles: files.length } : {}),
    });
  };
  const onDone = (u: ConvertUnitSpec, r: ConvertUnitResult): void => {
    results[u.id] = r;
    report(u.id, r.rowsIn, u.range ? u.range.end - u.range.start : (fileOf[u.id]!.part.bytes ?? 0));
  };
  const onFailed = (u: ConvertUnitSpec, reason: string, code: string, details?: Record<string, unknown>): void => {
    const f = fileOf[u.id]!;
    if (code === "CANCELLED") return;
    f.failed ??= { ...failure(f.part, { message: reason, code, details }), code: asErrorCode(code, "ACTION_FAILED") };
    ctx.log.warn("file failed; its other units are skipped", { path: f.part.source, reason });
  };
  if (parallel && units.length > 1) {
    await runPool(units, Math.min(cores, units.length), compiledWorker("convert-worker.js"), ctx.signal, {
      skip: (u) => fileOf[u.id]!.failed !== undefined,
      progress: report,
      done: onDone,
      failed: onFailed,
    });
  } else {
    for (const u of units) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (fileOf[u.id]!.failed) continue;
      try {
        onDone(u, await convertUnit(u, (rows, bytes) => report(u.id, rows, bytes)));
      } catch (err) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        const e = err as { code?: unknown; message?: unknown; details?: Record<string, unknown> };
        onFailed(u, typeof e.message === "string" ? e.message : String(err), typeof e.code === "string" ? e.code : "IO_ERROR", e.details);
      }
    }
  }
  if (ctx.signal.aborted) throw ctx.signal.reason;

  // 4. Assemble in plan order; a failed file leaves nothing behind.
  const failedFiles: FailedFile[] = [];
  const parts: DatasetPart[] = [];
  const quarantine: string[] = [];
  const drop: string[] = [];
  const extrasSeen: string[] = [];
  const flagged: Record<string, number[]> = {};
  let rowsIn = 0;
  let rejected = 0;
  let rowsOut = 0;
  let failedRows = 0;
  const earlier = (ds.meta?.failedFiles as FailedFile[] | undefined) ?? [];
  for (const f of files) {
    if (f.failed) {
      failedFiles.push(f.failed);
      failedRows += f.part.rows ?? 0;
      for (const u of f.units) drop.push(u.out, u.quarantine);
      continue;
    }
    for (const u of f.units) {
      const r = results[u.id]!;
      rowsIn += r.rowsIn;
      rejected += r.rejected;
      rowsOut += r.rowsOut;
      for (const x of r.extras) if (!extrasSeen.includes(x)) extrasSeen.push(x);
      if (r.rowsOut > 0) {
        parts.push({ path: u.out, format: STAGE_FORMAT, source: f.part.source, rows: r.rowsOut, bytes: r.partBytes });
        if (r.flagged) flagged[u.out] = r.flagged;
      } else drop.push(u.out);
      if (r.rejected > 0) quarantine.push(u.quarantine);
    }
  }
  await Promise.all(drop.map((p) => rm(p, { force: true })));
  checkFailedFiles(failedFiles, files.length, input.failureThreshold);

  // Rows of an input parsed by an earlier step were counted there (less those of files failed here).
  const prior = ds.accounting;
  const accounting: Accounting = prior
    ? { rowsIn: prior.rowsIn - failedRows, rowsQuarantined: prior.rowsQuarantined + rejected, rowsDuplicate: prior.rowsDuplicate }
    : { rowsIn, rowsQuarantined: rejected, rowsDuplicate: 0 };
  checkAccounting(accounting, rowsOut, `step ${ctx.step}`);

  const empty = rowsIn === 0;
  const where = ds.meta?.source ?? (files.length === 1 ? files[0]!.part.source : `${files.length} files`);
  if (empty) {
    if (input.allowEmpty === false)
      throw new SluiceError("BAD_INPUT", `the source ${String(where)} has no records (empty or a header only), and allowEmpty is false`, { retryable: false });
    ctx.log.warn("the source has no records (empty or a header only): nothing to store", { source: where });
  }
  if (extrasSeen.length > 0 && extraMode === "ignore") ctx.log.info("source columns not in the schema were left out", { extraColumns: extrasSeen });
  const share = rowsIn === 0 ? 0 : rejected / rowsIn;
  if (maxRejectShare < 1 && share > maxRejectShare) {
    const first = await firstReasons(quarantine);
    throw new SluiceError(
      "TOO_MANY_REJECTS",
      `${rejected} of ${rowsIn} records (${pct(share)}) of ${String(where)} were rejected, more than maxRejectShare ${maxRejectShare}; ` +
        `they are quarantined (sluice quarantine ${ctx.runId})${first ? `; the first: ${first}` : ""}`,
      { retryable: false, details: { rejected, rowsIn, maxRejectShare } },
    );
  }

  let screened: ScreenMeta | undefined;
  if (screen) screened = await writeScreen(dir, doc.rules!, flagged);
  const ingest = ds.meta?.ingest as IngestMeta | undefined;
  const failedPaths = new Set(failedFiles.map((f) => f.path));
  const dataset = await writeDataset(dir, {
    step: ctx.step,
    typed: true,
    columns: compiled.columns,
    ...(compiled.key ? { key: compiled.key } : {}),
    ...(rowHashKind(compiled.key) === "text" ? { hash: "text" as const } : {}),
    parts,
    rows: rowsOut,
    accounting,
    quarantine: [...ds.quarantine, ...quarantine],
    meta: {
      ...ds.meta,
      ...(ingest ? { ingest: { scope: ingest.scope, files: ingest.files.filter((x) => !failedPaths.has(x.path)) } satisfies IngestMeta } : {}),
      failedFiles: [...earlier, ...failedFiles],
      ...(doc.rules ? { rules: doc.rules } : {}),
      ...(screened ? { screen: screened } : {}),
    },
  });
  return {
    dataset,
    rowsIn: accounting.rowsIn,
    rowsOut,
    rowsQuarantined: accounting.rowsQuarantined,
    rowsRejectedHere: rejected,
    columns: compiled.columns.length,
    files: files.length - failedFiles.length,
    filesFailed: failedFiles.length,
    failedFiles,
    extraColumns: { mode: extraMode, columns: extrasSeen },
    empty,
    units: units.length,
    workers: parallel && units.length > 1 ? Math.min(cores, units.length) : 1,
  };
}

interface PlanContext {
  doc: SchemaDocument;
  schema: TargetSchemaSpec;
  extraMode: ExtraColumns;
  lineField: boolean;
  parallel: boolean;
  chunk: number;
  dir: string;
  step: string;
  screen: QualityRuleSpec[] | undefined;
}

/**
 * How a part is read: the schema document's `read:` wins over what the collecting step recorded,
 * except for a part an earlier step wrote in Sluice's own form (DatasetPart.intermediate).
 */
export function readSpecOf(part: DatasetPart, doc: SchemaDocument): { format: FileFormat; read: ReadSpec } {
  if (part.intermediate && part.format !== "stage" && part.format !== "unknown")
    return { format: part.format, read: { ...(part.csv ?? {}), ...(part.read ?? {}) } };
  const format = (doc.read?.format ?? part.format) as FileFormat | "unknown";
  if (format === "unknown")
    throw new SluiceError(
      "BAD_INPUT",
      `cannot tell the format of ${part.source} from its extension; set read.format in the schema (csv, tsv, ndjson, json, parquet, arrow)`,
      { retryable: false },
    );
  const { format: _f, ...rest } = doc.read ?? {};
  const read: ReadSpec = { ...(part.csv ?? {}), ...(part.read ?? {}), ...rest };
  if (format === "tsv") read.delimiter ??= "\t";
  return { format, read };
}

async function planFile(part: DatasetPart, index: number, p: PlanContext): Promise<ConvertUnitSpec[]> {
  const { format, read } = readSpecOf(part, p.doc);
  const name = (chunk: number, kind: string) => join(p.dir, `${kind}-${pad(index)}-${pad(chunk)}${kind === "part" ? ".stage" : ".ndjson"}`);
  const unit = (chunk: number, range?: CsvRange): ConvertUnitSpec => ({
    id: -1,
    path: part.path,
    format,
    source: part.source,
    read,
    schema: p.schema,
    extraColumns: p.extraMode,
    lineField: p.lineField,
    step: p.step,
    out: name(chunk, "part"),
    quarantine: name(chunk, "quarantine"),
    batchSize: BATCH_SIZE,
    ...(range ? { range } : {}),
    ...(p.screen ? { screen: p.screen } : {}),
  });
  const textual = format === "csv" || format === "tsv";
  if (!textual || !p.parallel) return [unit(0)];
  const size = part.bytes ?? (await stat(part.path)).size;
  if (size <= p.chunk * 1.5) return [unit(0)];
  const ranges = await splitCsv(part.path, {
    delimiter: read.delimiter,
    quote: read.quote,
    targetBytes: p.chunk,
    name: part.source,
    ...(read.encoding ? { encoding: read.encoding } : {}),
  });
  return ranges.map((r, i) => unit(i, r));
}

/** With extraColumns: keep, the columns of the files that the schema does not declare, in first-seen order. */
async function scanExtraColumns(files: FileState[], doc: SchemaDocument): Promise<string[]> {
  const sources = new Set(doc.columns.map((c) => c.from ?? c.name));
  const names = new Set(doc.columns.map((c) => c.name));
  const extras: string[] = [];
  for (const f of files) {
    let have: readonly string[] = [];
    try {
      const { format, read } = readSpecOf(f.part, doc);
      if (format === "csv" || format === "tsv")
        have = read.header === false ? (read.columns ?? []) : await readCsvHeader(f.part.path, { ...read, name: f.part.source });
      else {
        for await (const b of openReader(f.part.path, { format, batchSize: 1000, name: f.part.source })) {
          have = b.columns ?? [...new Set(b.rows.flatMap((r) => Object.keys(r)))];
          break;
        }
      }
    } catch (err) {
      f.failed = failure(f.part, err);
      continue;
    }
    for (const h of have) {
      if (sources.has(h) || h === "_line" || extras.includes(h)) continue;
      if (names.has(h))
        throw new SluiceError(
          "BAD_CONFIG",
          `${f.part.source}: column ${h} is not used by the schema but has the name of a declared column; with extraColumns: keep it would be stored twice — rename one`,
        );
      extras.push(h);
    }
  }
  return extras;
}

function failure(part: DatasetPart, err: unknown): FailedFile {
  const e = err as { code?: unknown; message?: unknown; details?: Record<string, unknown> };
  const names = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  const missing = names(e.details?.missing);
  const added = names(e.details?.added ?? e.details?.extras);
  return {
    path: part.source,
    reason: typeof e.message === "string" ? e.message : String(err),
    code: e.code === undefined ? "IO_ERROR" : toErrorInfo(err).code,
    ...(missing.length ? { missing } : {}),
    ...(added.length ? { added } : {}),
  };
}

/** The columns the failed files lack or add, together: a schema drift, in the recovery contract's shape. */
function driftOf(failed: FailedFile[]): { missing: string[]; added: string[]; retyped: string[] } | undefined {
  const missing = [...new Set(failed.flatMap((f) => f.missing ?? []))];
  const added = [...new Set(failed.flatMap((f) => f.added ?? []))];
  return missing.length || added.length ? { missing, added, retyped: [] } : undefined;
}

/** Fails the step when every file failed, or more than `threshold` of them. */
export function checkFailedFiles(failed: FailedFile[], total: number, threshold: number | undefined): void {
  if (failed.length === 0) return;
  if (threshold !== undefined && !(threshold >= 0 && threshold <= 1))
    throw new SluiceError("BAD_CONFIG", `failureThreshold must be a share from 0 to 1, not ${threshold}`);
  const tooMany = threshold === undefined ? failed.length === total : failed.length / total > threshold;
  if (!tooMany) return;
  if (total === 1) {
    const f = failed[0]!;
    const drift = driftOf(failed);
    throw new SluiceError(f.code, f.reason, {
      retryable: !["BAD_INPUT", "BAD_CONFIG", "FILE_NOT_FOUND", "NOT_FOUND"].includes(f.code),
      details: { failedFiles: failed, ...(drift ? { columns: drift } : {}) },
    });
  }
  const limit = threshold === undefined ? `every file failed (${total})` : `${failed.length} of ${total} files failed, more than the threshold ${threshold}`;
  throw new SluiceError(
    "TOO_MANY_FAILED_FILES",
    `${limit}: ${failed
      .slice(0, 5)
      .map((f) => `${f.path} (${f.reason})`)
      .join("; ")}${failed.length > 5 ? `; and ${failed.length - 5} more` : ""}`,
    {
      retryable: false,
      // What the files' columns show, for the failure analysis (a renamed column is schema_drift).
      details: { failedFiles: failed, ...(driftOf(failed) ? { columns: driftOf(failed) } : {}) },
    },
  );
}

async function firstReasons(files: string[]): Promise<string | undefined> {
  const { readQuarantine } = await import("./dataset.js");
  for (const f of files) {
    for await (const recs of readQuarantine(f)) {
      const r = recs[0];
      if (r) return `${r.source}:${r.line}: ${r.reasons.join("; ")}`;
    }
  }
  return undefined;
}

const pad = (n: number): string => String(n).padStart(5, "0");
const pct = (x: number): string => `${Math.round(x * 1000) / 10}%`;

/**
 * The schema's quality rules a row can be checked against alone (quality.ts screeningRules),
 * checked here against the columns; none when there are none, or when they do not compile (the
 * quality step, whose rules they are, reports that).
 */
function screeningOf(rules: QualityRuleSpec[] | undefined, columns: Column[]): QualityRuleSpec[] | undefined {
  const screen = screeningRules(rules ?? []);
  if (screen.length === 0) return undefined;
  try {
    createQualityChecker(screen, columns);
    return screen;
  } catch {
    return undefined;
  }
}

/**
 * The row-by-row steps of the batch plane: conversion to the target schema
 * (data-converter/convert_to_standard_format) and quality validation
 * (base-data-quality/validate_data_quality). Both stream: read a batch, write a batch.
 *
 * Staged typed rows (stage.ts) hold the schema's columns plus `_line`, the record's
 * position in its source, so a later step can still say where a rejected record came from.
 */
import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import { SluiceError } from "../../errors.js";
import { openReader, type RecordError } from "../../formats/index.js";
import { openStageWriter, readStage, STAGE_FORMAT, type StageWriter } from "./stage.js";
import type { ActionContext, Outputs } from "../types.js";
import {
  checkAccounting, quarantineSink, readDataset, readExclusions, requireTyped, stepFolder, writeDataset,
  type Dataset, type DatasetPart, type Exclusions, type QuarantineSink,
} from "./dataset.js";
import type { QualityRuleSpec, TargetSchemaSpec, TypedRow } from "./model.js";
import { compileSchema } from "./typing.js";
import { createQualityChecker, type QualityReport } from "./quality.js";

export const LINE_FIELD = "_line";
const BATCH = 2_000;

/** Every record of a dataset, batch by batch, with its source and position; excluded rows left out. */
export async function* readParts(ds: Dataset, signal: AbortSignal): AsyncGenerator<{ part: DatasetPart; rows: Record<string, unknown>[]; lines: number[]; errors: { line: number; reason: string; raw: string }[] }> {
  const exclusions = await readExclusions(ds);
  for (const part of ds.parts) {
    const skip = exclusions.get(part.path);
    for await (const b of readPart(part, ds)) {
      if (signal.aborted) throw signal.reason;
      if (!skip) {
        yield { part, rows: b.rows, lines: b.lines, errors: b.errors };
        continue;
      }
      const rows: Record<string, unknown>[] = [];
      const lines: number[] = [];
      b.rows.forEach((row, i) => {
        const line = typeof row[LINE_FIELD] === "number" ? (row[LINE_FIELD] as number) : b.lines[i]!;
        if (!skip.has(line)) (rows.push(row), lines.push(b.lines[i]!));
      });
      yield { part, rows, lines, errors: b.errors };
    }
  }
}

/** One part's batches: staged typed rows, or a file in one of the formats. */
async function* readPart(part: DatasetPart, ds: Dataset): AsyncGenerator<{ rows: Record<string, unknown>[]; lines: number[]; errors: RecordError[] }> {
  if (part.format === STAGE_FORMAT) {
    for await (const rows of readStage(part.path, ds.columns ?? [], { batchSize: BATCH, numeric: [LINE_FIELD] }))
      yield { rows, lines: rows.map((r) => (r as Record<string, unknown>)[LINE_FIELD] as number), errors: [] };
    return;
  }
  yield* openReader(part.path, { format: part.format, batchSize: BATCH, ...(part.csv ?? {}) });
}

/** A staged output of typed rows: one part per source part, so sources stay known. */
export class TypedOutput {
  readonly parts: DatasetPart[] = [];
  rows = 0;
  private current?: { writer: StageWriter; part: DatasetPart };
  constructor(private readonly dir: string, private readonly columns: string[]) {}

  async write(source: DatasetPart, rows: TypedRow[]): Promise<void> {
    if (this.current?.part.source !== source.source) {
      await this.closeCurrent();
      const path = join(this.dir, `part-${String(this.parts.length).padStart(4, "0")}.stage`);
      this.current = { writer: await openStageWriter(path, [...this.columns, LINE_FIELD]), part: { path, format: STAGE_FORMAT, source: source.source, rows: 0 } };
    }
    if (rows.length === 0) return;
    await this.current.writer.write(rows);
    this.current.part.rows! += rows.length;
    this.rows += rows.length;
  }

  async close(): Promise<void> {
    await this.closeCurrent();
  }

  private async closeCurrent(): Promise<void> {
    if (!this.current) return;
    const res = await this.current.writer.close();
    this.parts.push({ ...this.current.part, bytes: res.bytes });
    this.current = undefined;
  }
}

export async function convertToStandardFormat(input: { dataset: string; schema: TargetSchemaSpec }, ctx: ActionContext): Promise<Outputs> {
  const ds = await readDataset(input.dataset);
  const schema = compileSchema(input.schema);
  const dir = await stepFolder(ctx);
  const out = new TypedOutput(dir, schema.columns.map((c) => c.name));
  const quarantine = quarantineSink(dir);
  let rowsIn = 0;

  for await (const b of readParts(ds, ctx.signal)) {
    rowsIn += b.rows.length + b.errors.length;
    for (const e of b.errors) quarantine.add({ source: b.part.source, line: e.line, step: ctx.step, reasons: [e.reason], record: e.raw });
    const good: TypedRow[] = [];
    for (let i = 0; i < b.rows.length; i++) {
      const raw = b.rows[i]!;
      // Records staged by an earlier step carry their original position in `_line`.
      const staged = raw[LINE_FIELD];
      const line = typeof staged === "number" ? staged : b.lines[i]!;
      const r = schema.convert(raw);
      if (r.ok) {
        (r.row as Record<string, unknown>)[LINE_FIELD] = line;
        good.push(r.row);
      } else quarantine.add({ source: b.part.source, line, step: ctx.step, reasons: r.reasons, record: raw });
    }
    await out.write(b.part, good);
    ctx.progress({ rows: rowsIn, files: ds.parts.indexOf(b.part) + 1, totalFiles: ds.parts.length });
  }
  await out.close();
  await quarantine.close();

  // Rows of an already-typed input were counted by the step that read them first.
  const prior = ds.accounting;
  const accounting = prior
    ? { rowsIn: prior.rowsIn, rowsQuarantined: prior.rowsQuarantined + quarantine.count, rowsDuplicate: prior.rowsDuplicate }
    : { rowsIn, rowsQuarantined: quarantine.count, rowsDuplicate: 0 };
  checkAccounting(accounting, out.rows, `step ${ctx.step}`);
  const dataset = await writeDataset(dir, {
    step: ctx.step, typed: true, columns: schema.columns, ...(schema.key ? { key: schema.key } : {}),
    parts: out.parts, rows: out.rows, accounting,
    quarantine: [...ds.quarantine, ...(quarantine.count ? [quarantine.path] : [])], meta: ds.meta,
  });
  return { dataset, rowsIn: accounting.rowsIn, rowsOut: out.rows, rowsQuarantined: accounting.rowsQuarantined, rowsRejectedHere: quarantine.count, columns: schema.columns.length };
}

/**
 * Quality validation does not rewrite the data: rows that break a rule are quarantined and their
 * lines listed in the output dataset's `exclude` file; the parts themselves are shared with the
 * input dataset. That saves a full write and read of the data per run.
 */
export async function validateDataQuality(
  input: { dataset: string; rules: QualityRuleSpec[]; threshold: number },
  ctx: ActionContext,
): Promise<Outputs> {
  const ds = await readDataset(input.dataset);
  requireTyped(ds, input.dataset, "quality validation");
  const dir = await stepFolder(ctx);
  const checker = createQualityChecker(input.rules, ds.columns, { spill: { dir } });
  const quarantine: QuarantineSink = quarantineSink(dir);
  const excluded: Exclusions = Object.fromEntries([...(await readExclusions(ds))].map(([p, set]) => [p, [...set]]));
  let seen = 0;
  let kept = 0;
  for await (const b of readParts(ds, ctx.signal)) {
    for (let i = 0; i < b.rows.length; i++) {
      const row = b.rows[i] as TypedRow & { [LINE_FIELD]?: number };
      const line = row[LINE_FIELD] ?? b.lines[i]!;
      const reasons = checker.check(row, line);
      if (reasons.length === 0) kept++;
      else {
        quarantine.add({ source: b.part.source, line, step: ctx.step, reasons, record: withoutLine(row) });
        (excluded[b.part.path] ??= []).push(line);
      }
    }
    seen += b.rows.length;
    ctx.progress({ rows: seen });
  }
  await quarantine.close();
  const report = checker.finish();
  await writeFile(join(dir, "quality-report.json"), JSON.stringify(report, null, 2));

  if (report.score < input.threshold)
    throw new SluiceError(
      "QUALITY_BELOW_THRESHOLD",
      `quality score ${report.score} is under the threshold ${input.threshold}: ${describeFailures(report)}`,
      { retryable: false, details: { report } },
    );
  const accounting = { ...ds.accounting, rowsQuarantined: ds.accounting.rowsQuarantined + quarantine.count };
  checkAccounting(accounting, kept, `step ${ctx.step}`);
  const exclude = join(dir, "exclude.json");
  await writeFile(exclude, JSON.stringify(excluded));
  const dataset = await writeDataset(dir, {
    step: ctx.step, typed: true, columns: ds.columns, ...(ds.key ? { key: ds.key } : {}), parts: ds.parts, rows: kept, accounting,
    quarantine: [...ds.quarantine, ...(quarantine.count ? [quarantine.path] : [])], exclude, meta: { ...ds.meta, quality: report },
  });
  return {
    dataset, score: report.score, threshold: input.threshold, rowsChecked: report.rowsChecked, rowsFailed: report.rowsFailed,
    rowsIn: accounting.rowsIn, rowsOut: kept, rowsQuarantined: accounting.rowsQuarantined,
    rules: report.rules.map((r) => ({ rule: r.rule, failures: r.failures, passed: r.passed })),
  };
}

function describeFailures(report: QualityReport): string {
  const failed = report.rules.filter((r) => !r.passed);
  return failed.length ? failed.map((r) => `${r.rule} (${r.failures} failing)`).join(", ") : "no single rule failed";
}

export function withoutLine(row: Record<string, unknown>): Record<string, unknown> {
  const { [LINE_FIELD]: _omit, ...rest } = row;
  return rest;
}

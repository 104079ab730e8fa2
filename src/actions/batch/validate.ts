/**
 * base-data-quality/validate_data_quality (and validate_bulk_data): score a typed dataset
 * against quality rules, quarantining the rows that break one.
 *
 * The data is not rewritten: rows that break a rule are quarantined and their lines listed in
 * the output dataset's `exclude` file, the parts themselves are shared with the input dataset.
 * Only the columns the rules name are decoded from the staged lines; when the conversion step
 * screened the rows against these same rules (screen.ts), only the `unique` and freshness columns
 * of the rows that passed, read from the bytes, and the flagged rows whole.
 *
 * The score counts every record that came in, not only the rows that reached this step:
 *
 *   score = rows passing every row rule / (rows in − duplicates) × share of dataset rules passing
 *
 * so a source whose records were nearly all rejected by the conversion step scores near 0
 * instead of 1 (an empty dataset, with nothing rejected, scores 1). Under `threshold` the step
 * fails with QUALITY_BELOW_THRESHOLD (not retried).
 */
import { join } from "node:path";
import { writeFile } from "node:fs/promises";
import { SluiceError } from "../../errors.js";
import type { ActionContext, Outputs } from "../types.js";
import {
  checkAccounting,
  quarantineSink,
  readDataset,
  readExclusions,
  requireTyped,
  stepFolder,
  writeDataset,
  type Dataset,
  type DatasetPart,
  type Exclusions,
} from "./dataset.js";
import type { QualityRuleSpec, TypedRow } from "./model.js";
import { createQualityChecker, score, screenedColumns, type QualityReport } from "./quality.js";
import { screenedLines } from "./screen.js";
import { MAX_REPEATS, repeatCandidates } from "./repeats.js";
import { loadSchemaRef, type SchemaDocument } from "./schema-file.js";
import { readTypedChunks } from "./typed-dataset.js";
import { compileStageDecoder, compileStageFieldDecoder, decodeStageLine, type StagedFields, type StagedRow } from "../../formats/stage.js";

export interface ValidateInput {
  dataset: string;
  rules: QualityRuleSpec[];
  /** A schema (inline or a file) whose `rules:` are applied too. */
  schema?: SchemaDocument | string;
  threshold: number;
}

/** `screenRows`: from how many rows the `unique` check looks for repeats first (SCREEN_ROWS; tests lower it). */
export async function validateDataQuality(input: ValidateInput, ctx: ActionContext, tuning: { screenRows?: number } = {}): Promise<Outputs> {
  const ds = await readDataset(input.dataset);
  requireTyped(ds, input.dataset, "quality validation");
  const fromSchema = input.schema === undefined ? [] : ((await loadSchemaRef(input.schema)).rules ?? []);
  const rules = [...fromSchema, ...input.rules];
  const dir = await stepFolder(ctx);
  const checker = createQualityChecker(rules, ds.columns, {
    spill: { dir },
    repeats: await uniqueRepeats(ds, rules, ctx.signal, tuning.screenRows ?? SCREEN_ROWS),
    ...(ds.rows !== undefined ? { expectedRows: ds.rows } : {}),
  });
  // Rows the conversion step screened need only their `unique` and freshness columns decoded;
  // the few that broke a screening rule are decoded whole and checked against every rule. Parts
  // it did not screen (or screened against other rules) are checked in full.
  const screened = await screenedLines(ds, rules);
  const ruleColumns = [...new Set(rules.flatMap((r) => [r.column, r.freshness?.column]).filter((c): c is string => typeof c === "string"))];
  const decodeScreened = compileStageFieldDecoder(ds.columns, screenedColumns(rules));
  const decodeFull = compileStageDecoder(ds.columns, ruleColumns, true);
  const quarantine = quarantineSink(dir);
  const excluded: Exclusions = Object.fromEntries([...(await readExclusions(ds))].map(([p, set]) => [p, [...set]]));
  let seen = 0;
  let kept = 0;
  const fail = (part: DatasetPart, line: number, reasons: string[], record: TypedRow): void => {
    quarantine.add({ source: part.source, line, step: ctx.step, reasons, record });
    (excluded[part.path] ??= []).push(line);
  };
  const fields: StagedFields[] = [];
  const rows: StagedRow[] = [];
  for await (const { part, chunk } of readTypedChunks(ds, ds.columns, ctx.signal)) {
    const flagged = screened?.get(part.path);
    if (!checker.rowLevel) {
      // No rule looks at a row's values: every row passes, and only the count is needed.
      checker.countPassing(chunk.rows);
      kept += chunk.rows;
    } else if (flagged) {
      fields.length = 0;
      decodeScreened(chunk.data, fields);
      for (const r of fields) {
        const whole = flagged.has(r.line) ? decodeStageLine(chunk.data.toString("utf8", r.start, r.end), ds.columns) : undefined;
        const reasons = whole ? checker.check(whole, r.line) : checker.checkScreened(r.row, r.line);
        if (reasons.length === 0) kept++;
        else fail(part, r.line, reasons, whole ?? decodeStageLine(chunk.data.toString("utf8", r.start, r.end), ds.columns));
      }
    } else {
      rows.length = 0;
      decodeFull(chunk.data.toString("utf8"), rows);
      for (const r of rows) {
        const reasons = checker.check(r.row, r.line);
        if (reasons.length === 0) kept++;
        else fail(part, r.line, reasons, decodeStageLine(r.text!, ds.columns));
      }
    }
    seen += chunk.rows;
    ctx.progress({ rows: seen });
  }
  await quarantine.close();
  const report = checker.finish();
  const accounting = { ...ds.accounting, rowsQuarantined: ds.accounting.rowsQuarantined + quarantine.count };
  // Every record in, less exact duplicates (not a quality failure), is what could have been stored.
  const candidates = accounting.rowsIn - accounting.rowsDuplicate;
  const datasetRules = report.rules.filter((r) => r.kind === "dataset");
  const total = score(candidates, candidates - kept, datasetRules.filter((r) => r.passed).length, datasetRules.length);
  const full: QualityReport & { rowsIn: number; rowsRejectedUpstream: number } = {
    ...report,
    score: total,
    rowsIn: accounting.rowsIn,
    rowsRejectedUpstream: ds.accounting.rowsQuarantined,
  };
  await writeFile(join(dir, "quality-report.json"), JSON.stringify(full, null, 2));

  if (total < input.threshold)
    throw new SluiceError(
      "QUALITY_BELOW_THRESHOLD",
      `quality score ${total} is under the threshold ${input.threshold}: ${describeFailures(report, ds.accounting.rowsQuarantined, candidates)}`,
      { retryable: false, details: { report: full } },
    );
  checkAccounting(accounting, kept, `step ${ctx.step}`);
  const exclude = join(dir, "exclude.json");
  await writeFile(exclude, JSON.stringify(excluded));
  const dataset = await writeDataset(dir, {
    step: ctx.step,
    typed: true,
    columns: ds.columns,
    ...(ds.key ? { key: ds.key } : {}),
    ...(ds.hash ? { hash: ds.hash } : {}),
    parts: ds.parts,
    rows: kept,
    accounting,
    quarantine: [...ds.quarantine, ...(quarantine.count ? [quarantine.path] : [])],
    exclude,
    meta: { ...ds.meta, quality: full },
  });
  return {
    dataset,
    score: total,
    threshold: input.threshold,
    rowsChecked: report.rowsChecked,
    rowsFailed: report.rowsFailed,
    rowsRejectedUpstream: ds.accounting.rowsQuarantined,
    rowsIn: accounting.rowsIn,
    rowsOut: kept,
    rowsQuarantined: accounting.rowsQuarantined,
    rules: report.rules.map((r) => ({ rule: r.rule, failures: r.failures, passed: r.passed })),
  };
}

/** Rows past which the `unique` check looks for the repeats first: where it would spill to disk. */
const SCREEN_ROWS = 1_000_000;

/**
 * For each string column with a `unique` rule, the values that may repeat, when the dataset is
 * large enough for it to pay: up to SCREEN_ROWS the check's in-memory table is faster than the
 * extra pass (on 1M trade rows, 0.95 s against 1.17 s), beyond it the table would move to disk.
 * (Other types compare by value, not by staged text — 1.10 and 1.1 are one decimal — so their
 * staged bytes cannot decide; their check remembers every value.)
 */
async function uniqueRepeats(ds: Dataset, rules: QualityRuleSpec[], signal: AbortSignal, screenRows: number): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  const rows = ds.rows ?? ds.parts.reduce((n, p) => n + (p.rows ?? Infinity), 0);
  if (rows <= screenRows) return out;
  const columns = ds.columns ?? [];
  for (const rule of rules) {
    const col = columns.find((c) => c.name === rule.column);
    if (rule.unique !== true || col?.type !== "string" || out.has(col.name)) continue;
    const found = await repeatCandidates(ds, columns, [col.name], signal, MAX_REPEATS, (row) => {
      const v = row[col.name];
      return typeof v === "string" && v !== "" ? v : undefined;
    });
    if (found) out.set(col.name, found);
  }
  return out;
}

function describeFailures(report: QualityReport, upstream: number, candidates: number): string {
  const failed = report.rules.filter((r) => !r.passed).map((r) => `${r.rule} (${r.failures} failing)`);
  if (upstream > 0) failed.unshift(`${upstream} of ${candidates} records rejected before this step`);
  return failed.length ? failed.join(", ") : "no single rule failed";
}

/**
 * data-merger/validate_and_store_recovered_data: type, check and upsert the reconstructed rows
 * with the batch plane's own steps, record where every stored row came from, then prove the
 * destination complete: the gap ledger is computed again and anything left is GAPS_REMAIN.
 *
 * The batch plane is called, not copied: convertToStandardFormat (typing, quarantine with
 * reasons), validateDataQuality (rules, score, threshold) and storeValidatedData (idempotent
 * upsert on the key, accounting checked) run in sub-folders `<step>/convert`, `<step>/quality`,
 * `<step>/store` of this step's folder. A rerun therefore stores 0 rows: reconstruction finds
 * no gap, and any row offered again is a duplicate of the stored one.
 *
 * The strategy's outcome (succeeded, rows, seconds since reconstruction began, duplicates) is
 * counted into the bandit of the decision record (`decision`, else the one reconstruction
 * followed), success or GAPS_REMAIN alike, so the next incident learns from this one.
 *
 * The schema: `schema` when given; else inferred from the recovered records (as `sluice ingest`
 * does), each column then held to the type the existing destination column has, so the rows fit
 * the table the failed run was filling.
 *
 * WHY provenance in a lineage table (`<table>_lineage`: the key columns, `source`, `position`
 * such as `http://host/api?page=4#12`, and Sluice's run id and load time) and not a
 * `_sluice_source` column in the table: the destinations refuse data columns with the `_sluice_`
 * prefix and never alter an existing table — and the table being repaired exists, created by
 * the standard workflow. A lineage table needs neither, joins on the key, is written with the
 * same idempotent upsert (a rerun adds nothing), and leaves the rows of ordinary runs untouched.
 */
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { SluiceError } from "../../errors.js";
import { openDestination, sqliteType } from "../../connectors/destinations/index.js";
import { sqliteAffinity } from "../../connectors/destinations/sqlite.js";
import type { ActionContext, Outputs } from "../types.js";
import { readDataset, stepFolder, type Dataset } from "../batch/dataset.js";
import { inferSource } from "../batch/infer-source.js";
import type { Column, QualityRuleSpec, TypedRow } from "../batch/model.js";
import { loadSchemaRef, type SchemaDocument } from "../batch/schema-file.js";
import { convertToStandardFormat } from "../batch/standardize.js";
import { storeValidatedData } from "../batch/store.js";
import { readTypedRows } from "../batch/typed-dataset.js";
import { validateDataQuality } from "../batch/validate.js";
import { recordStrategyOutcome, type StrategyOutcome } from "./bandit.js";
import type { DecisionRecord, GapLedger, KeyRange } from "./contract.js";
import { destinationLedger, readTableColumns, resolveDestination, type DestinationRef, type TableColumn } from "./destination-keys.js";
import { typeOfSql } from "./fallbacks.js";
import { manifestRanges, parseDeclaredRange, type KeyCodec, type PageManifest } from "./gaps.js";
import { PROVENANCE_FIELD } from "./merge-records.js";
import { readManifest, type RecoveryMeta } from "./reconstruct.js";
import { readDecisionRecord } from "./strategy.js";

export interface StoreRecoveredInput {
  dataset: string;
  destination?: string;
  table: string;
  key?: string[] | string;
  rules?: QualityRuleSpec[];
  threshold?: number;
  schema?: SchemaDocument | string | null;
  range?: string | number | (string | number)[];
  manifest?: string | PageManifest | null;
  /** The decision record the recovery followed: its outcome is counted into the strategy bandit. */
  decision?: string;
}

const LINEAGE_SUFFIX = "_lineage";
const LINEAGE_BATCH = 5_000;

export async function validateAndStoreRecoveredData(input: StoreRecoveredInput, ctx: ActionContext): Promise<Outputs> {
  const started = performance.now();
  const dir = await stepFolder(ctx);
  const ds = await readDataset(input.dataset);
  const meta = ds.meta?.recovery as RecoveryMeta | undefined;
  const key = (typeof input.key === "string" ? [input.key] : input.key) ?? meta?.key;
  if (!key?.length) throw new SluiceError("BAD_INPUT", "storing recovered data needs the key columns (key: [id])", { retryable: false });
  const dest = await resolveDestination(input.destination, ctx.home);
  if (meta && (meta.destination !== dest.display || meta.table !== input.table))
    ctx.log.warn("the dataset was reconstructed against another table", {
      reconstructedFor: `${meta.destination} ${meta.table}`,
      storingInto: `${dest.display} ${input.table}`,
    });
  const records = ds.parts.reduce((n, p) => n + (p.rows ?? 0), 0);

  let counts = { rowsIn: 0, rowsStored: 0, rowsDuplicate: 0, rowsQuarantined: 0, lineageRows: 0 };
  let score: number | null = null;
  if (records > 0) {
    const doc = input.schema == null ? await recoverySchema(ds, dest, input.table, key, ctx.signal) : await loadSchemaRef(input.schema);
    // The provenance field is not data; kept columns would try to store it.
    const schema: SchemaDocument = { ...doc, key: doc.key ?? key, extraColumns: "ignore" };
    const sub = (name: string): ActionContext => ({ ...ctx, step: `${ctx.step}/${name}` });
    const converted = await convertToStandardFormat({ dataset: input.dataset, schema }, sub("convert"));
    const validated = await validateDataQuality(
      { dataset: String(converted.dataset), rules: input.rules ?? [], schema, threshold: input.threshold ?? 0.95 },
      sub("quality"),
    );
    score = Number(validated.score);
    const stored = await storeValidatedData(
      { dataset: String(validated.dataset), ...(input.destination ? { destination: input.destination } : {}), table: input.table, key },
      sub("store"),
    );
    counts = {
      rowsIn: Number(stored.rowsIn),
      rowsStored: Number(stored.rowsStored),
      rowsDuplicate: Number(stored.rowsDuplicate),
      rowsQuarantined: Number(stored.rowsQuarantined),
      lineageRows: await writeLineage(await readDataset(String(validated.dataset)), ds, input, key, ctx),
    };
  }

  // The proof: the ledger again, against what the destination holds now.
  const { ledger, path: gapLedgerAfter } = await ledgerAfter(input, meta, dest, key, dir, ctx.signal);
  // The recovery's time runs from the start of reconstruction (a wait for Retry-After included).
  const since = meta?.startedAt ? Date.parse(meta.startedAt) : NaN;
  const seconds = Number.isFinite(since) ? Math.max(0, Date.now() - since) / 1000 : Math.round(performance.now() - started) / 1000;
  const delivered = meta?.strategy?.delivered !== false;
  const outcome = { succeeded: ledger.missing === 0 && delivered, rowsRecovered: counts.rowsStored, seconds, duplicates: counts.rowsDuplicate };
  const learned = await learn(input.decision ?? meta?.strategy?.decision, outcome, ctx);
  if (ledger.missing > 0)
    throw new SluiceError(
      "GAPS_REMAIN",
      `${ledger.missing} keys of ${input.table} are still missing after storing the recovered rows: ${showRanges(ledger.gaps)} (ledger ${gapLedgerAfter})`,
      { retryable: false, details: { gapLedgerAfter, gapsAfter: ledger.gaps, ...counts, outcome, ...(learned ? { learned } : {}) } },
    );
  ctx.log.info("recovered rows stored", { table: input.table, ...counts, gapsRemaining: 0 });
  return {
    destination: dest.display,
    table: input.table,
    lineageTable: `${input.table}${LINEAGE_SUFFIX}`,
    ...counts,
    ...(score !== null ? { score } : {}),
    gapLedgerAfter,
    gapsAfter: ledger.gaps,
    gapsRemaining: 0,
    outcome,
    ...(learned ? { learned } : {}),
  };
}

/**
 * Count the outcome into the strategy bandit (bandit.ts), so the next incident of this source
 * and class chooses from what happened here. A decision counted before (a retried or resumed
 * step) is not counted again. The strategy failed when a spare source, not the chosen way,
 * brought the data (`delivered: false`): the recovery succeeded, the strategy did not.
 */
async function learn(
  path: string | undefined,
  outcome: StrategyOutcome,
  ctx: ActionContext,
): Promise<{ strategy: DecisionRecord["choice"]; counted: boolean; reward: number; estimatedSuccess?: number } | undefined> {
  if (!path) return undefined;
  const decision = await readDecisionRecord(path);
  const r = await recordStrategyOutcome(ctx.state, decision, outcome);
  ctx.log.info("strategy outcome counted", { strategy: decision.choice, succeeded: outcome.succeeded, reward: r.reward, counted: r.counted });
  return {
    strategy: decision.choice,
    counted: r.counted,
    reward: Math.round(r.reward * 1e4) / 1e4,
    ...(r.arm ? { estimatedSuccess: Math.round((r.arm.alpha / (r.arm.alpha + r.arm.beta)) * 1e4) / 1e4 } : {}),
  };
}

/** The after-ledger's domain: the declared range, else the one reconstruction used, else a complete manifest. */
async function ledgerAfter(
  input: StoreRecoveredInput,
  meta: RecoveryMeta | undefined,
  dest: DestinationRef,
  key: string[],
  dir: string,
  signal: AbortSignal,
): Promise<{ ledger: GapLedger; path: string }> {
  let from: GapLedger["domain"]["from"];
  let ranges: KeyRange[];
  let codec: KeyCodec | undefined;
  if (input.range !== undefined) {
    from = "declared";
    ranges = parseDeclaredRange(input.range);
  } else if (meta) {
    ({ from, ranges } = meta.domain);
    codec = meta.codec;
  } else if (input.manifest != null) {
    const m = await readManifest(input.manifest);
    if (!m.complete)
      throw new SluiceError(
        "BAD_INPUT",
        "an incomplete manifest does not say which keys are expected; pass range, or the dataset of reconstruct_from_multiple_sources",
        {
          retryable: false,
        },
      );
    from = "manifest";
    ranges = manifestRanges(m);
  } else {
    throw new SluiceError(
      "BAD_INPUT",
      "the gap ledger after storage needs an expected domain: range, manifest, or the dataset of reconstruct_from_multiple_sources",
      {
        retryable: false,
      },
    );
  }
  const { ledger } = await destinationLedger(dest, input.table, key, { from, ranges, ...(codec ? { codec } : {}) }, signal);
  const path = join(dir, "gap-ledger-after.json");
  await writeFile(path, JSON.stringify(ledger, null, 2));
  return { ledger, path };
}

/**
 * One lineage row per stored row: its key, the source and the position there. Typed rows keep
 * their part's source and their line in the raw NDJSON part, which holds the position.
 */
async function writeLineage(typed: Dataset, raw: Dataset, input: StoreRecoveredInput, key: string[], ctx: ActionContext): Promise<number> {
  const columns = typed.columns ?? [];
  const keyColumns = key.map((k) => columns.find((c) => c.name === k)).filter((c): c is Column => c !== undefined);
  if (keyColumns.length !== key.length) return 0;
  const positions = new Map<string, string[]>();
  for (const p of raw.parts) {
    const lines = (await readFile(p.path, "utf8")).split("\n");
    positions.set(
      p.source,
      lines.map((l) => (l.trim() === "" ? "" : String((JSON.parse(l) as Record<string, unknown>)[PROVENANCE_FIELD] ?? ""))),
    );
  }
  const dest = await openDestination(input.destination ?? `sqlite:${join(ctx.home, "warehouse.db")}`);
  let written = 0;
  try {
    await dest.prepare({
      table: `${input.table}${LINEAGE_SUFFIX}`,
      columns: [...keyColumns, { name: "source", type: "string" }, { name: "position", type: "string" }],
      key,
    });
    let batch: TypedRow[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const r = await dest.write(batch, { runId: ctx.runId, step: ctx.step });
      written += r.stored;
      batch = [];
    };
    for await (const b of readTypedRows(typed, columns, ctx.signal, { only: key })) {
      for (const r of b.rows) {
        const row: TypedRow = { source: b.part.source, position: positions.get(b.part.source)?.[r.line - 1] || null };
        for (const k of key) row[k] = r.row[k] ?? null;
        batch.push(row);
        if (batch.length >= LINEAGE_BATCH) await flush();
      }
    }
    await flush();
  } finally {
    await dest.close();
  }
  return written;
}

/**
 * A schema for the recovered records: inferred from them, each column held to the existing
 * destination column's type (and columns the table lacks left out).
 */
async function recoverySchema(ds: Dataset, dest: DestinationRef, table: string, key: string[], signal: AbortSignal): Promise<SchemaDocument> {
  const first = ds.parts[0]!;
  const inferred = await inferSource(join(dirname(first.path), "*.ndjson"), { key, signal });
  let columns = inferred.schema.columns.filter((c) => c.name !== PROVENANCE_FIELD);
  const existing = await readTableColumns(dest, table, signal);
  if (existing) {
    const byName = new Map(existing.map((c) => [c.name, c]));
    columns = columns.filter((c) => byName.has(c.name)).map((c) => alignType(c, byName.get(c.name)!, dest.kind));
  }
  return { key, columns };
}

type SchemaColumn = SchemaDocument["columns"][number];

function alignType(c: SchemaColumn, existing: TableColumn, kind: DestinationRef["kind"]): SchemaColumn {
  const plain = (type: SchemaColumn["type"], scale?: number): SchemaColumn =>
    ({ name: c.name, type, ...(scale !== undefined ? { scale } : {}) }) as SchemaColumn;
  if (kind === "sqlite") {
    const affinity = sqliteAffinity(existing.sqlType);
    if (sqliteType({ name: c.name, type: c.type }) === affinity) return c;
    return plain(affinity === "INTEGER" ? "integer" : affinity === "REAL" ? "decimal" : "string");
  }
  const t = typeOfSql(existing);
  if (t === "any" || t === c.type) return t === "decimal" && existing.scale !== undefined ? { ...c, scale: existing.scale } : c;
  return plain(t, t === "decimal" ? existing.scale : undefined);
}

function showRanges(ranges: KeyRange[]): string {
  const shown = ranges.slice(0, 10).map((r) => (r.from === r.to ? String(r.from) : `${r.from}–${r.to}`));
  return shown.join(", ") + (ranges.length > 10 ? ` and ${ranges.length - 10} more` : "");
}

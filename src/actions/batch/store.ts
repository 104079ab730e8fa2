/**
 * base-data-storage/store_validated_data: upsert the typed rows into the destination, keep the
 * quarantined records next to it, and check that every input record is accounted for.
 *
 * Storage is idempotent on the key (declared, else a content hash): a retried or resumed store
 * finds the rows an earlier attempt committed unchanged and counts them as duplicates, so every
 * valid row ends up stored exactly once.
 */
import { join } from "node:path";
import { openDestination } from "../../connectors/destinations/index.js";
import type { ActionContext, Outputs } from "../types.js";
import { checkAccounting, readDataset, readQuarantine, requireTyped, type Dataset, type IngestMeta } from "./dataset.js";
import type { TypedRow } from "./model.js";
import { readParts } from "./transform.js";

const WRITE_BATCH = 50_000;

export interface StoreInput {
  dataset: string;
  destination?: string;
  table: string;
  key?: string[];
  mode?: "upsert" | "append";
}

/** The embedded warehouse next to the state store, used when a workflow names no destination. */
export function defaultDestination(home: string): string {
  return `sqlite:${join(home, "warehouse.db")}`;
}

export async function storeValidatedData(input: StoreInput, ctx: ActionContext): Promise<Outputs> {
  const ds = await readDataset(input.dataset);
  requireTyped(ds, input.dataset, "storage");
  const dest = await openDestination(input.destination ?? defaultDestination(ctx.home));
  try {
    const key = input.key ?? ds.key;
    await dest.prepare({ table: input.table, columns: ds.columns, key });
    const wctx = { runId: ctx.runId, step: ctx.step };
    let stored = 0;
    let duplicate = 0;
    let pending: TypedRow[] = [];
    // One batch is written while the next is read: the database works while this process parses.
    let inflight: Promise<void> = Promise.resolve();
    const flush = async () => {
      if (pending.length === 0) return;
      const batch = pending;
      pending = [];
      await inflight;
      inflight = dest.write(batch, wctx).then((r) => {
        stored += r.stored;
        duplicate += r.duplicate;
        ctx.progress({ rows: stored + duplicate });
      });
      // A failed write must surface even if no later flush awaits it.
      inflight.catch(() => undefined);
    };
    for await (const b of readParts(ds, ctx.signal)) {
      // Destinations read only the schema's columns, so the staged `_line` needs no stripping.
      for (const row of b.rows) pending.push(row as TypedRow);
      if (pending.length >= WRITE_BATCH) await flush();
    }
    await flush();
    await inflight;
    const quarantined = await storeQuarantine(ds, dest, wctx);

    const accounting = { ...ds.accounting, rowsDuplicate: ds.accounting.rowsDuplicate + duplicate };
    checkAccounting(accounting, stored, `step ${ctx.step}`);
    // Only now, with their rows committed, do the source files count as ingested.
    const ingest = ds.meta?.ingest as IngestMeta | undefined;
    if (ingest?.files.length) await ctx.ledger.record(ingest.scope, ingest.files);
    ctx.log.info("stored", { destination: dest.display, table: input.table, stored, duplicate, quarantined });
    return {
      destination: dest.display,
      table: input.table,
      quarantineTable: `${input.table}_quarantine`,
      rowsIn: accounting.rowsIn,
      rowsStored: stored,
      rowsQuarantined: accounting.rowsQuarantined,
      rowsDuplicate: accounting.rowsDuplicate,
      balanced: true,
    };
  } finally {
    await dest.close();
  }
}

/** Copy every upstream quarantine file into the destination's quarantine table. */
async function storeQuarantine(ds: Dataset, dest: Awaited<ReturnType<typeof openDestination>>, wctx: { runId: string; step: string }): Promise<number> {
  let n = 0;
  for (const file of ds.quarantine) {
    for await (const records of readQuarantine(file)) {
      await dest.writeQuarantine(records, wctx);
      n += records.length;
    }
  }
  return n;
}

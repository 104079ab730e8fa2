/**
 * base-data-storage/store_validated_data: upsert the typed rows into the destination, keep the
 * quarantined records next to it, and check that every input record is accounted for.
 *
 * Storage is idempotent on the key (declared, else a content hash): a retried or resumed store
 * finds the rows an earlier attempt committed unchanged and counts them as duplicates, so every
 * valid row ends up stored exactly once.
 *
 * The staged lines go to the destination as they are (`Destination.writeStaged`): no object
 * per row in this process, and the content hashes computed by the conversion step are reused.
 * Three batches are in flight, so the database stores while this process reads and encodes.
 * A row the destination cannot hold exactly (see SqliteDestination on decimals) comes back
 * rejected and is quarantined here, with its source and line.
 */
import { join } from "node:path";
import { openDestination } from "../../connectors/destinations/index.js";
import { rehashStageChunk, rowHashKind, type StageChunk } from "../../formats/stage.js";
import type { ActionContext, Outputs } from "../types.js";
import { checkAccounting, readDataset, readQuarantine, requireTyped, type Dataset, type DatasetPart, type IngestMeta } from "./dataset.js";
import type { QuarantinedRecord } from "./model.js";
import { readTypedChunks } from "./typed-dataset.js";

/** Rows per destination write (one transaction each); see POSTGRES_BATCH_ROWS on the size. */
const WRITE_BATCH = 50_000;
/**
 * Batches handed to the destination before the next one waits. Three, not two: with two
 * PostgreSQL lanes, two in flight left a lane idle while this thread encoded the next batch. The
 * storage step alone on 1M staged trade rows (2 cores, same run, alternating, 2 rounds): 7.31 and
 * 7.15 s with 2, 6.14 and 5.61 s with 3, 6.39 and 6.92 s with 4, 6.27 and 7.06 s with 6; peak RSS
 * 176 MB with 2, 186–199 MB with 3.
 */
const IN_FLIGHT = 3;

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
    const rejected: QuarantinedRecord[] = [];
    let pending: Buffer[] = [];
    let pendingRows = 0;
    let pendingPart: DatasetPart | undefined;
    // Batches in flight (IN_FLIGHT): the database stores while this process reads and encodes the
    // next (a destination writes them in order).
    const inflight: Promise<void>[] = [];
    const flush = async () => {
      if (pendingRows === 0) return;
      const chunk: StageChunk = { data: pending.length === 1 ? pending[0]! : Buffer.concat(pending), rows: pendingRows };
      const part = pendingPart!;
      pending = [];
      pendingRows = 0;
      if (inflight.length >= IN_FLIGHT) await inflight.shift();
      const write = dest.writeStaged(chunk, wctx).then((r) => {
        stored += r.stored;
        duplicate += r.duplicate;
        for (const x of r.rejected ?? []) rejected.push({ source: part.source, line: x.line ?? x.index, step: ctx.step, reasons: x.reasons, record: x.record });
        ctx.progress({ rows: stored + duplicate + rejected.length });
      });
      // A failed write must surface even if no later flush awaits it.
      write.catch(() => undefined);
      inflight.push(write);
    };
    // Rows typed with a key carry `text` hashes; a target without one keys on the hash, which
    // must then be the `canonical` one earlier loads of that table wrote.
    const rehash = ds.hash === "text" && rowHashKind(key) === "canonical";
    if (rehash) ctx.log.info("re-hashing staged rows for a keyless target", { table: input.table });
    for await (const { part, chunk: staged } of readTypedChunks(ds, ds.columns, ctx.signal)) {
      const chunk = rehash ? rehashStageChunk(staged, ds.columns) : staged;
      // A batch holds rows of one part, so a rejected row's source is known.
      if (pendingPart !== part) await flush();
      pendingPart = part;
      pending.push(chunk.data);
      pendingRows += chunk.rows;
      if (pendingRows >= WRITE_BATCH) await flush();
    }
    await flush();
    for (const w of inflight.splice(0)) await w;
    if (rejected.length > 0) await dest.writeQuarantine(rejected, wctx);
    const quarantined = (await storeQuarantine(ds, dest, wctx)) + rejected.length;

    const accounting = {
      ...ds.accounting,
      rowsQuarantined: ds.accounting.rowsQuarantined + rejected.length,
      rowsDuplicate: ds.accounting.rowsDuplicate + duplicate,
    };
    checkAccounting(accounting, stored, `step ${ctx.step}`);
    // Only now, with their rows committed, do the source files count as ingested.
    const ingest = ds.meta?.ingest as IngestMeta | undefined;
    if (ingest?.files.length) await ctx.ledger.record(ingest.scope, ingest.files);
    const empty = accounting.rowsIn === 0;
    ctx.log.info("stored", { destination: dest.display, table: input.table, stored, duplicate, quarantined, ...(empty ? { empty } : {}) });
    return {
      destination: dest.display,
      table: input.table,
      quarantineTable: `${input.table}_quarantine`,
      rowsIn: accounting.rowsIn,
      rowsStored: stored,
      rowsQuarantined: accounting.rowsQuarantined,
      rowsDuplicate: accounting.rowsDuplicate,
      ...(rejected.length > 0 ? { rowsRejectedByDestination: rejected.length } : {}),
      balanced: true,
      ...(empty ? { empty: true } : {}),
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

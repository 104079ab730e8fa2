/**
 * base-data-storage/store_streaming_data: the sink of a continuous group.
 *
 * The destination is opened with the stage (default: the embedded warehouse
 * `$SLUICE_HOME/warehouse.db`, as for batch storage); its table is prepared from the first
 * batch's columns (the decode stage's schema plus `_ingested_at`) and key (`key`, else the
 * schema's key, else the content hash). Then, per batch:
 *
 * 1. the rejected records are dead-lettered, with their reasons, raw text and message id, into the
 *    destination's quarantine table `<table>_quarantine` (or the `deadLetter` destination the
 *    validation step put on the batch);
 * 2. the good rows are upserted (`Destination.write`: one transaction, by key or content hash);
 * 3. the counts go back to the pipeline, which only then acknowledges the batch to the broker.
 *
 * Two transactions, dead letters first. The Destination contract has no transaction spanning
 * `write` and `writeQuarantine` (and a `deadLetter` destination is another database anyway).
 * The order is safe because nothing is acknowledged until both have committed, and both are
 * idempotent: rows by key or content hash, dead letters by message id (below). A crash or error
 * between the two leaves the batch unacknowledged; the broker redelivers it, the same messages
 * are rejected again (decoding, typing and the rules are deterministic), their dead letters
 * already exist and are skipped, and the rows are written then. Dead letters go first so that
 * committed rows never run ahead of their batch's rejects: once a batch's rows are visible, its
 * dead letters are too.
 *
 * Dead-letter key. `writeQuarantine` keys records on (run_id, step, source, line) and skips a
 * repeat. The run id changes from run to run (and a redelivery may reach a later run), so dead
 * letters are written with run_id `stream` (DEAD_LETTER_RUN_ID), step = the step that rejected
 * the record, source = `<origin>#<message id>` (origin: the broker and stream, e.g.
 * `nats:TRADES`) and line = the message id when it is a number (the stream sequence), else 0.
 * So the key is the message id within its stream: a redelivered message adds no second dead
 * letter. The run, attempt and sink step that wrote it are kept in the record JSON.
 *
 * `deadLettered` counts the rejects of each delivery (a redelivered reject counts again, as a
 * redelivered row counts as `duplicate`), so stored + duplicate + deadLettered = records read.
 *
 * Writes are serialised: the pipeline may hand over the next batch while one commits, but a
 * destination is one connection (one transaction at a time), and batches commit in order.
 * File destinations (.ndjson, .parquet) are refused: they publish their file only at close, so
 * an acknowledged batch would not yet be stored.
 */
import { SluiceError } from "../../errors.js";
import { openDestination, type Destination } from "../../connectors/destinations/index.js";
import type { Column, QuarantinedRecord, TypedRow } from "../batch/model.js";
import { defaultDestination } from "../batch/store.js";
import type { Stage, StreamBatch } from "../stream-types.js";
import type { ActionContext, Outputs } from "../types.js";

export interface StoreStreamInput {
  destination?: string;
  table: string;
  key?: string[];
}

/** The run_id of every dead letter: constant, so the quarantine table's key is the message id (see above). */
export const DEAD_LETTER_RUN_ID = "stream";

type Counts = { stored: number; duplicate: number; deadLettered: number };

async function openStreamDestination(spec: string, role: string): Promise<Destination> {
  const dest = await openDestination(spec);
  if (dest.kind === "file") {
    await dest.close().catch(() => undefined);
    throw new SluiceError(
      "BAD_CONFIG",
      `${role} ${dest.display} is a file, which is written out only when it is closed; a stream needs a database (sqlite:PATH or postgres://…) so that what is acknowledged is stored`,
      { retryable: false },
    );
  }
  return dest;
}

/** A dead letter for each rejected record of the batch, keyed on its message id. */
export function deadLetters(batch: StreamBatch, ctx: Pick<ActionContext, "runId" | "attempt" | "step">): QuarantinedRecord[] {
  const origin = batch.origin ?? "stream";
  return batch.rejected.map((r) => {
    const id = r.record.id;
    const seq = /^\d{1,15}$/.test(id) ? Number(id) : 0;
    const raw = r.raw ?? r.record.raw ?? (typeof r.record.value === "string" ? r.record.value : undefined);
    return {
      source: `${origin}#${id}`,
      line: seq,
      step: r.step ?? ctx.step,
      reasons: r.reasons,
      record: {
        messageId: id,
        raw: raw ?? null,
        ...(raw === undefined ? { value: r.record.value ?? null } : {}),
        publishedAt: r.record.publishedAt === undefined ? null : new Date(r.record.publishedAt).toISOString(),
        runId: ctx.runId,
        attempt: ctx.attempt,
        storedBy: ctx.step,
      },
    };
  });
}

export async function openStoreStage(input: StoreStreamInput, ctx: ActionContext): Promise<Stage> {
  const spec = input.destination ?? defaultDestination(ctx.home);
  const dest = await openStreamDestination(spec, "destination");
  const wctx = { runId: ctx.runId, step: ctx.step };
  const dlctx = { runId: DEAD_LETTER_RUN_ID, step: ctx.step };
  /** The target prepared from the first batch: its columns and key, and the dead-letter destinations prepared alike. */
  let target: { columns: Column[]; key: string[] | undefined } | undefined;
  const deadLetterDests = new Map<string, Promise<Destination>>();
  let chain: Promise<unknown> = Promise.resolve();
  let closed = false;

  const prepare = async (batch: StreamBatch): Promise<void> => {
    if (!batch.columns) {
      throw new SluiceError(
        "BAD_CONFIG",
        `step ${ctx.step} (store_streaming_data) needs typed records with a schema: put a process_streaming_data step before it`,
        { retryable: false },
      );
    }
    if (target) {
      if (batch.columns !== target.columns && !sameColumns(batch.columns, target.columns))
        throw new SluiceError("INTERNAL", `step ${ctx.step}: a batch arrived with other columns than the table was prepared with`, { retryable: false });
      return;
    }
    const key = input.key ?? batch.key;
    await dest.prepare({ table: input.table, columns: batch.columns, key });
    target = { columns: batch.columns, key };
    ctx.log.info("stream destination ready", { destination: dest.display, table: input.table, key: key ?? "content hash" });
  };

  const deadLetterDest = (spec: string): Promise<Destination> => {
    let p = deadLetterDests.get(spec);
    if (!p) {
      p = (async () => {
        const d = await openStreamDestination(spec, "dead-letter destination");
        try {
          await d.prepare({ table: input.table, columns: target!.columns, key: target!.key });
        } catch (err) {
          await d.close().catch(() => undefined);
          throw err;
        }
        return d;
      })();
      // A failed open is tried again with the next batch (the pipeline will have stopped anyway).
      p.catch(() => deadLetterDests.delete(spec));
      deadLetterDests.set(spec, p);
    }
    return p;
  };

  const writeBatch = async (batch: StreamBatch): Promise<Counts> => {
    if (batch.records.length === 0 && batch.rejected.length === 0) return { stored: 0, duplicate: 0, deadLettered: 0 };
    await prepare(batch);
    let deadLettered = 0;
    if (batch.rejected.length > 0) {
      const letters = deadLetters(batch, ctx);
      const to = batch.deadLetter !== undefined ? await deadLetterDest(batch.deadLetter) : dest;
      await to.writeQuarantine(letters, dlctx);
      deadLettered = letters.length;
    }
    let counts = { stored: 0, duplicate: 0 };
    if (batch.records.length > 0) {
      const res = await dest.write(
        batch.records.map((r) => r.value as TypedRow),
        wctx,
      );
      counts = { stored: res.stored, duplicate: res.duplicate };
      // Rows the destination cannot hold exactly (SQLite and a decimal of more than 15 digits).
      if (res.rejected?.length) {
        const letters = deadLetters(
          { ...batch, rejected: res.rejected.map((x) => ({ record: batch.records[x.index]!, reasons: x.reasons, step: ctx.step })) },
          ctx,
        );
        await (batch.deadLetter !== undefined ? await deadLetterDest(batch.deadLetter) : dest).writeQuarantine(letters, dlctx);
        deadLettered += letters.length;
      }
    }
    return { ...counts, deadLettered };
  };

  return {
    kind: "sink",
    stage: {
      write(batch) {
        if (closed) return Promise.reject(new SluiceError("INTERRUPTED", `step ${ctx.step}: the destination is closed`));
        const p = chain.then(() => writeBatch(batch));
        chain = p.catch(() => undefined);
        return p;
      },
      async close() {
        if (closed) return;
        closed = true;
        await chain;
        const others = await Promise.allSettled([...deadLetterDests.values()]);
        await Promise.allSettled([dest.close(), ...others.map((o) => (o.status === "fulfilled" ? o.value.close() : undefined))]);
      },
    },
  };
}

/** As an ordinary step: check the destination opens (and is a database); the table is created by the stream's first batch. */
export async function storeStreamingData(input: StoreStreamInput, ctx: ActionContext): Promise<Outputs> {
  const dest = await openStreamDestination(input.destination ?? defaultDestination(ctx.home), "destination");
  try {
    return {
      mode: "check",
      note: "records are stored only when this step runs in a continuous group; this run checked that the destination answers",
      destination: dest.display,
      table: input.table,
      deadLetterTable: `${input.table}_quarantine`,
      key: input.key ?? null,
    };
  } finally {
    await dest.close();
  }
}

function sameColumns(a: Column[], b: Column[]): boolean {
  return a.length === b.length && a.every((c, i) => c.name === b[i]!.name && c.type === b[i]!.type && c.scale === b[i]!.scale);
}

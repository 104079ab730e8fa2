// The bare-loop baseline of bench/stream/run.mjs: the least a JetStream → SQLite consumer does,
// with the NATS client and better-sqlite3 directly.
//
// The same pull style as src/connectors/streams/nats.ts: a durable consumer with explicit ack,
// read through a consume() iterator (a pull request kept open at the server, 1,000 messages at a
// time). What arrived is committed as soon as the event loop gets a turn (setImmediate), at most
// 500 messages per transaction (the workflow's maxBatch): JSON.parse each record, INSERT OR
// REPLACE by trade_id into a table of text columns, one transaction per batch (WAL,
// synchronous NORMAL), then a plain ack of each message after the commit. Latency = commit time
// − the message's JetStream timestamp, as Sluice measures it.
import Database from "better-sqlite3";
import { AckPolicy, DeliverPolicy, jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";

const COLUMNS = ["trade_id", "executed_at", "symbol", "side", "quantity", "price", "account", "trader_email", "notes"];
const MAX_BATCH = 500;

/**
 * Start consuming `stream` (which must exist) into the SQLite file `dbPath`. `onCommit(publishedAt,
 * latencyMs)` is called for every committed message. Returns { stop(), counts() }.
 */
export async function startBare({ servers, stream, subject, dbPath, onCommit }) {
  const db = new Database(dbPath);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec(`CREATE TABLE IF NOT EXISTS trades_bare (${COLUMNS.map((c) => (c === "trade_id" ? `${c} TEXT PRIMARY KEY` : `${c} TEXT`)).join(", ")})`);
  const insert = db.prepare(`INSERT OR REPLACE INTO trades_bare (${COLUMNS.join(", ")}) VALUES (${COLUMNS.map(() => "?").join(", ")})`);
  const insertAll = db.transaction((rows) => {
    for (const r of rows) insert.run(COLUMNS.map((c) => (r[c] === undefined ? null : String(r[c]))));
  });

  const nc = await connect({ servers, name: "sluice-bench-bare" });
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(stream, {
    durable_name: "bare",
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(30_000),
    max_ack_pending: 20_000,
    filter_subject: subject,
  });
  const consumer = await jsm.jetstream().consumers.get(stream, "bare");
  const iter = await consumer.consume({ max_messages: 1000 });

  const decoder = new TextDecoder();
  const counts = { committed: 0, redelivered: 0, batches: 0, badJson: 0 };
  let pending = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const msgs = pending.length > MAX_BATCH ? pending.splice(0, MAX_BATCH) : pending;
    if (msgs === pending) pending = [];
    if (pending.length) schedule();
    const rows = [];
    for (const m of msgs) {
      try {
        rows.push(JSON.parse(decoder.decode(m.data)));
      } catch {
        counts.badJson++;
      }
    }
    insertAll(rows);
    const committed = Date.now();
    for (const m of msgs) {
      const publishedAt = Math.floor(Number(m.info.timestampNanos) / 1e6);
      onCommit(publishedAt, committed - publishedAt);
      if (m.info.deliveryCount > 1) counts.redelivered++;
      m.ack();
    }
    counts.committed += msgs.length;
    counts.batches++;
  };
  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  const loop = (async () => {
    for await (const m of iter) {
      pending.push(m);
      schedule();
    }
  })();

  return {
    counts: () => ({ ...counts }),
    tableRows: () => db.prepare("SELECT count(*) AS n FROM trades_bare").get().n,
    /** Stop reading, commit and ack what arrived, confirm the acks reached the server, close. */
    async stop() {
      await iter.close();
      await loop.catch(() => undefined);
      while (pending.length || scheduled) await new Promise((r) => setImmediate(r));
      await nc.flush();
      const info = await jsm.consumers.info(stream, "bare");
      const rows = db.prepare("SELECT count(*) AS n FROM trades_bare").get().n;
      await nc.close();
      db.close();
      return { ...counts, tableRows: rows, unacked: info.num_ack_pending, pending: info.num_pending };
    },
  };
}

/**
 * The four stream actions as stages of a continuous pipeline (runPipeline), built from the
 * builtin registry's definitions:
 * - an in-memory source into the embedded SQLite warehouse: accounting, acks only after commit,
 *   a sink failing after its commit (nothing of that batch acked; the redelivery adds no row and
 *   no dead letter twice);
 * - the same into the real PostgreSQL destination;
 * - the real NATS JetStream source: 2,000 trades end to end, then a restart on the same consumer.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/actions/builtin.js";
import type { ActionDefinition } from "../../src/actions/types.js";
import type { SinkStage, Stage, StreamBatch } from "../../src/actions/stream-types.js";
import { sourceStage } from "../../src/actions/stream/source.js";
import { DEFAULT_STREAM_SCHEMA, INGESTED_AT } from "../../src/actions/stream/decode.js";
import { DEAD_LETTER_RUN_ID } from "../../src/actions/stream/store.js";
import type { StreamMessage, StreamSource } from "../../src/connectors/streams/types.js";
import { openStreamPublisher, openStreamSource } from "../../src/connectors/streams/index.js";
import { runPipeline, type PipelineStage, type PipelineStats } from "../../src/engine/pipeline.js";
import { loadWorkflowText } from "../../src/spec/load.js";
import { actionContext, failure, scratch } from "../helpers.js";

const PG = "postgres://postgres@127.0.0.1:5432/test";
const NATS = "nats://127.0.0.1:4222";
const RUN = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const registry = builtinRegistry();
const tmp = scratch();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SOURCE = ["agent", "stream-manager", "establish_stream_connection"] as const;
const PROCESS = ["agent", "data-collector", "process_streaming_data"] as const;
const VALIDATE = ["service", "base-data-quality", "validate_streaming_data"] as const;
const STORE = ["service", "base-data-storage", "store_streaming_data"] as const;

function def(pair: readonly ["agent" | "service", string, string]): ActionDefinition {
  const d = registry.get(pair[0], pair[1], pair[2]);
  if (!d) throw new Error(`no ${pair.join("/")}`);
  return d;
}

/** Open an action's stage the way the engine does: parse the `with:` block, call `stream`. */
async function open(pair: readonly ["agent" | "service", string, string], withBlock: unknown, ctx: { home: string; runId: string; step: string }) {
  const d = def(pair);
  return d.stream!(d.input.parse(withBlock), actionContext({ artifactsDir: join(ctx.home, "artifacts"), home: ctx.home, runId: ctx.runId, step: ctx.step }));
}

// ---------------------------------------------------------------------------------------------
// Trades as JSON messages, with defects

function trade(i: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    trade_id: `T-${i}`,
    executed_at: new Date(Date.UTC(2026, 10, 2, 9, 30) + i * 1000).toISOString(),
    symbol: "AAPL",
    side: i % 2 ? "BUY" : "SELL",
    quantity: String(1 + (i % 90)),
    price: `${100 + (i % 50)}.2500`,
    account: "ACC-7",
    trader_email: "trader@example.com",
    notes: i % 7 === 0 ? 'said "ok", twice' : null,
    ...over,
  };
}

interface Workload {
  texts: string[];
  goodIds: Set<string>;
  /** Messages rejected by decoding, typing or the rules. */
  rejected: number;
  /** Exact repeats (new message, same trade) of a trade already published. */
  repeats: number;
}

/** n messages: malformed JSON, a quantity breaking `min 1`, a quantity that is not an integer, exact repeats. */
function workload(n: number): Workload {
  const texts: string[] = [];
  const goodIds = new Set<string>();
  const good: string[] = [];
  let rejected = 0;
  let repeats = 0;
  for (let i = 1; i <= n; i++) {
    if (i % 23 === 0) {
      texts.push(`{"trade_id": "T-${i}", "quantity": `);
      rejected++;
    } else if (i % 17 === 0) {
      texts.push(JSON.stringify(trade(i, { quantity: "0" })));
      rejected++;
    } else if (i % 29 === 0) {
      texts.push(JSON.stringify(trade(i, { quantity: "abc" })));
      rejected++;
    } else if (i % 13 === 0 && good.length > 5) {
      texts.push(good[good.length - 5]!);
      repeats++;
    } else {
      const t = JSON.stringify(trade(i));
      texts.push(t);
      good.push(t);
      goodIds.add(`T-${i}`);
    }
  }
  return { texts, goodIds, rejected, repeats };
}

// ---------------------------------------------------------------------------------------------
// An in-memory broker: delivers its messages once, remembers what was acknowledged

function memorySource(texts: string[], ids: string[], committed: Set<string>) {
  let pos = 0;
  const acked = new Set<string>();
  const ackedTooEarly: string[] = [];
  const t0 = Date.now();
  const messages: StreamMessage[] = texts.map((t, i) => ({ data: new TextEncoder().encode(t), id: ids[i]!, publishedAt: t0 + i }));
  const source: StreamSource = {
    description: "memory",
    async next(max, maxWaitMs, signal) {
      if (pos >= messages.length) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, maxWaitMs);
          signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
        });
        return [];
      }
      const out = messages.slice(pos, pos + max);
      pos += out.length;
      return out;
    },
    async ack(ms) {
      for (const m of ms) {
        if (!committed.has(m.id)) ackedTooEarly.push(m.id);
        acked.add(m.id);
      }
    },
    async lag() {
      return messages.length - pos;
    },
    async close() {},
  };
  return { source, acked, ackedTooEarly };
}

/** A sink that records which message ids it committed, and can fail once after committing a batch. */
function watchedSink(stage: Stage, opts: { failAfterCommitOf?: number } = {}) {
  if (stage.kind !== "sink") throw new Error("not a sink");
  const inner = stage.stage;
  const committed = new Set<string>();
  const failedIds: string[] = [];
  let writes = 0;
  const ids = (b: StreamBatch) => [...b.records.map((r) => r.id), ...b.rejected.map((r) => r.record.id)];
  const sink: SinkStage = {
    async write(batch) {
      const n = ++writes;
      const counts = await inner.write(batch);
      if (n === opts.failAfterCommitOf) {
        failedIds.push(...ids(batch));
        throw new Error("planned failure after the commit");
      }
      for (const id of ids(batch)) committed.add(id);
      return counts;
    },
    close: () => inner.close?.() ?? Promise.resolve(),
  };
  return { stage: { kind: "sink" as const, stage: sink }, committed, failedIds };
}

/** Run until `done()` (or a failure, or 12 s), then stop with a flush. */
async function runUntil(
  stages: PipelineStage[],
  done: () => boolean,
  opts: { maxBatch?: number; maxLatencyMs?: number; onLatency?: (s: string, ms: number) => void } = {},
): Promise<PipelineStats> {
  const stop = new AbortController();
  let settled = false;
  const p = runPipeline({
    stages,
    signal: stop.signal,
    maxBatch: opts.maxBatch ?? 50,
    maxLatencyMs: opts.maxLatencyMs ?? 5,
    statsEveryMs: 600_000,
    ...(opts.onLatency ? { onLatency: opts.onLatency } : {}),
  });
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  const deadline = Date.now() + 12_000;
  while (!settled && !done() && Date.now() < deadline) await sleep(5);
  stop.abort();
  return p;
}

interface Counts {
  rows: number;
  duplicateKeys: number;
  deadLetters: number;
  deadLetterKeys: number;
}

/** Stages over the memory source with the workload, into `destination`; returns what the destination holds. */
async function scenario(home: string, destination: string | undefined, table: string, count: (table: string) => Promise<Counts>) {
  const w = workload(400);
  const ids = w.texts.map((_, i) => String(i + 1));
  const storeWith = { ...(destination ? { destination } : {}), table, key: ["trade_id"] };
  const stagesFor = async (runId: string, src: StreamSource, sink: ReturnType<typeof watchedSink>): Promise<PipelineStage[]> => [
    { name: "stream-connection", stage: { kind: "source", stage: sourceStage(src, "memory:trades", "stream-connection") } },
    {
      name: "continuous-processing",
      stage: await open(PROCESS, { decode: "json", maxBatch: 50, maxLatency: "5ms" }, { home, runId, step: "continuous-processing" }),
    },
    {
      name: "realtime-validation",
      stage: await open(
        VALIDATE,
        {
          rules: [
            { column: "trade_id", required: true },
            { column: "quantity", min: 1 },
          ],
        },
        { home, runId, step: "realtime-validation" },
      ),
    },
    { name: "streaming-storage", stage: sink.stage },
  ];

  // 1. A sink that fails once, after its third batch committed: the pipeline rejects, and none of
  //    that batch's messages is acknowledged.
  const sink1 = watchedSink(await open(STORE, storeWith, { home, runId: "r-first", step: "streaming-storage" }), { failAfterCommitOf: 3 });
  const m1 = memorySource(w.texts, ids, sink1.committed);
  await expect(runUntil(await stagesFor("r-first", m1.source, sink1), () => false)).rejects.toThrow(/planned failure/);
  expect(sink1.failedIds.length).toBe(50);
  for (const id of sink1.failedIds) expect(m1.acked.has(id)).toBe(false);
  expect(m1.ackedTooEarly).toEqual([]);

  // 2. The broker redelivers what was not acknowledged, to a new run: everything is accounted for.
  const unacked = ids.filter((id) => !m1.acked.has(id));
  const sink2 = watchedSink(await open(STORE, storeWith, { home, runId: "r-second", step: "streaming-storage" }));
  const m2 = memorySource(
    unacked.map((id) => w.texts[Number(id) - 1]!),
    unacked,
    sink2.committed,
  );
  const stats = await runUntil(await stagesFor("r-second", m2.source, sink2), () => m2.acked.size === unacked.length);
  expect(m2.acked.size).toBe(unacked.length);
  expect(m2.ackedTooEarly).toEqual([]);
  expect(stats.records).toBe(unacked.length);
  expect(stats.stored + stats.duplicate + stats.deadLettered).toBe(unacked.length);
  // The failed batch had committed: its good rows come back as duplicates (same content, the
  // ingest time being the broker's), its rejects are dead-lettered again but not added twice.
  expect(stats.duplicate).toBeGreaterThan(0);

  const c = await count(table);
  expect(c.duplicateKeys).toBe(0);
  expect(c.rows).toBe(w.goodIds.size);
  expect(c.deadLetters).toBe(w.rejected);
  expect(c.deadLetterKeys).toBe(w.rejected);
  expect(c.rows + c.deadLetters + w.repeats).toBe(w.texts.length);
  return { w, stats };
}

// ---------------------------------------------------------------------------------------------

describe("stream actions: wiring and configuration", () => {
  it("the four stream definitions have a run and a stream stage", () => {
    for (const pair of [SOURCE, PROCESS, VALIDATE, STORE]) {
      const d = def(pair);
      expect(typeof d.run).toBe("function");
      expect(typeof d.stream).toBe("function");
    }
  });

  it("the realtime workflow validates, and its decode step declares the batching hints", async () => {
    const file = "workflows/base-data-ingestion-workflow-realtime-stream.yaml";
    const { workflows, problems } = loadWorkflowText(readFileSync(file, "utf8"), file, { actions: registry });
    expect(problems).toEqual([]);
    const step = workflows[0]!.workflow.spec.steps.find((s) => s.name === "continuous-processing")!;
    const stage = await open(PROCESS, step.with, { home: tmp("sluice-stream-"), runId: "r-h", step: "continuous-processing" });
    expect(stage.kind).toBe("transform");
    expect(stage.hints).toEqual({ maxBatch: 500, maxLatencyMs: 20 });
    expect(def(PROCESS).input.safeParse({ maxLatency: "soon" }).success).toBe(false);
  });

  it("without a schema, records are typed to the standard trade schema of the batch conversion step", () => {
    // The standard workflow's default schema file holds the trade schema (and its reading options and rules).
    const { key, columns } = parseYaml(readFileSync("examples/schemas/trades.yaml", "utf8")) as { key: unknown; columns: unknown };
    expect(DEFAULT_STREAM_SCHEMA).toEqual({ key, columns });
  });

  it("dataset-level rules are refused, naming the rule", async () => {
    const home = tmp("sluice-stream-");
    expect(def(VALIDATE).input.safeParse({ rules: [{ column: "trade_id", unique: true }] }).success).toBe(false);
    // Called directly (no input schema in the way), the stage refuses it too.
    const err = await failure(
      def(VALIDATE).stream!(
        {
          rules: [
            { column: "quantity", min: 1 },
            { column: "trade_id", unique: true },
          ],
        },
        actionContext({ artifactsDir: home, home }),
      ),
    );
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).toMatch(/quality rule 2 \(trade_id\): unique is a dataset-level rule/);
  });

  it("decode csv: one record per message in the schema's column order; failures name the field", async () => {
    const home = tmp("sluice-stream-");
    const stage = await open(PROCESS, { decode: "csv" }, { home, runId: "r-csv", step: "continuous-processing" });
    if (stage.kind !== "transform") throw new Error("not a transform");
    const published = Date.UTC(2026, 10, 2, 10, 0, 0, 125);
    const rec = (id: string, value: string) => ({ id, value, publishedAt: published });
    const out = await stage.stage.process({
      records: [
        rec("1", 'T-1,2026-11-02T09:30:00+01:00,AAPL,BUY,10,189.25,ACC-1,a@b.c,"said ""hi"", twice"'),
        rec("2", "T-2,2026-11-02T09:30:00Z,AAPL,BUY,ten,189.25,ACC-1,,"),
        rec("3", "T-3,2026-11-02T09:30:00Z,AAPL,BUY,10"),
        rec("4", "T-4,2026-11-02T09:30:00Z,AAPL,BUY,1,1.5,A,,\nT-5,2026-11-02T09:30:00Z,AAPL,BUY,1,1.5,A,,"),
      ],
      rejected: [],
      receivedAt: 0,
      ack: async () => undefined,
    });
    expect(out.columns!.map((c) => c.name)).toEqual([...DEFAULT_STREAM_SCHEMA.columns.map((c) => c.name), INGESTED_AT]);
    expect(out.key).toEqual(["trade_id"]);
    expect(out.records).toHaveLength(1);
    expect(out.records[0]!.value).toEqual({
      trade_id: "T-1",
      executed_at: "2026-11-02T08:30:00.000Z",
      symbol: "AAPL",
      side: "BUY",
      quantity: "10",
      price: "189.2500",
      account: "ACC-1",
      trader_email: "a@b.c",
      notes: 'said "hi", twice',
      [INGESTED_AT]: "2026-11-02T10:00:00.125Z",
    });
    expect(out.rejected.map((r) => [r.record.id, r.reasons, r.step])).toEqual([
      ["2", ['quantity: "ten" is not a valid integer'], "continuous-processing"],
      ["3", ["message 3: expected 9 fields, found 5"], "continuous-processing"],
      ["4", ["message 4: expected one CSV record per message, found 2"], "continuous-processing"],
    ]);
    expect(out.rejected[0]!.raw).toBe("T-2,2026-11-02T09:30:00Z,AAPL,BUY,ten,189.25,ACC-1,,");
  });

  it("file destinations are refused for a stream (they publish only at close)", async () => {
    const home = tmp("sluice-stream-");
    const err = await failure(open(STORE, { destination: join(home, "out.ndjson"), table: "t" }, { home, runId: "r", step: "s" }));
    expect(err.code).toBe("BAD_CONFIG");
  });
});

describe("stream actions in a pipeline", () => {
  it("in-memory source → SQLite warehouse: rows + dead letters account for every message; acks only after commit", async () => {
    const home = tmp("sluice-stream-");
    const count = async (table: string): Promise<Counts> => {
      const db = new Database(join(home, "warehouse.db"), { readonly: true });
      try {
        const one = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
        const letters = db.prepare(`select run_id, step, source, line, reasons, record from ${table}_quarantine order by line`).all() as {
          run_id: string;
          step: string;
          source: string;
          line: number;
          reasons: string;
          record: string;
        }[];
        // A dead letter names its message, keeps the raw text and says why.
        const malformed = letters.find((l) => l.line === 23)!;
        expect(malformed).toMatchObject({ run_id: DEAD_LETTER_RUN_ID, step: "continuous-processing", source: "memory:trades#23" });
        expect(JSON.parse(malformed.record)).toMatchObject({ messageId: "23", raw: '{"trade_id": "T-23", "quantity": ' });
        expect(JSON.parse(letters.find((l) => l.line === 17)!.reasons)).toEqual(["quantity: 0 is below the minimum 1"]);
        expect(letters.find((l) => l.line === 17)!.step).toBe("realtime-validation");
        expect(JSON.parse(letters.find((l) => l.line === 29)!.reasons)).toEqual(['quantity: "abc" is not a valid integer']);
        const row = db.prepare(`select ${INGESTED_AT} as at from ${table} where trade_id = 'T-1'`).get() as { at: string };
        expect(row.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        return {
          rows: one(`select count(*) as n from ${table}`),
          duplicateKeys: one(`select count(*) as n from (select trade_id from ${table} group by trade_id having count(*) > 1)`),
          deadLetters: letters.length,
          deadLetterKeys: new Set(letters.map((l) => l.source)).size,
        };
      } finally {
        db.close();
      }
    };
    await scenario(home, undefined, "trades_stream", count);
  });

  it("deadLetter on the validation step sends every reject of the batch to that destination", async () => {
    const home = tmp("sluice-stream-");
    const w = workload(60);
    const ids = w.texts.map((_, i) => String(i + 1));
    const sink = watchedSink(await open(STORE, { table: "trades", key: ["trade_id"] }, { home, runId: "r-dl", step: "streaming-storage" }));
    const m = memorySource(w.texts, ids, sink.committed);
    const stats = await runUntil(
      [
        { name: "stream-connection", stage: { kind: "source", stage: sourceStage(m.source, "memory:dl", "stream-connection") } },
        { name: "continuous-processing", stage: await open(PROCESS, { decode: "json" }, { home, runId: "r-dl", step: "continuous-processing" }) },
        {
          name: "realtime-validation",
          stage: await open(
            VALIDATE,
            { rules: [{ column: "quantity", min: 1 }], deadLetter: `sqlite:${join(home, "dead.db")}` },
            { home, runId: "r-dl", step: "realtime-validation" },
          ),
        },
        { name: "streaming-storage", stage: sink.stage },
      ],
      () => m.acked.size === w.texts.length,
    );
    expect(stats.deadLettered).toBe(w.rejected);
    const n = (file: string, sql: string) => {
      const db = new Database(join(home, file), { readonly: true });
      try {
        return (db.prepare(sql).get() as { n: number }).n;
      } finally {
        db.close();
      }
    };
    expect(n("dead.db", "select count(*) as n from trades_quarantine")).toBe(w.rejected);
    expect(n("warehouse.db", "select count(*) as n from trades_quarantine")).toBe(0);
    expect(n("warehouse.db", "select count(*) as n from trades")).toBe(w.goodIds.size);
  });

  describe("into PostgreSQL", () => {
    const table = `stream_trades_${RUN}`;
    let admin: pg.Client;
    beforeAll(async () => {
      admin = new pg.Client({ connectionString: PG });
      await admin.connect();
    });
    afterAll(async () => {
      await admin.query(`drop table if exists "${table}", "${table}_quarantine"`).catch(() => undefined);
      await admin.end();
    });

    it("the same accounting against the real PostgreSQL destination", async () => {
      const home = tmp("sluice-stream-");
      const count = async (t: string): Promise<Counts> => {
        const n = async (sql: string) => Number((await admin.query<{ n: string }>(sql)).rows[0]!.n);
        return {
          rows: await n(`select count(*) as n from "${t}"`),
          duplicateKeys: await n(`select count(*) as n from (select trade_id from "${t}" group by trade_id having count(*) > 1) d`),
          deadLetters: await n(`select count(*) as n from "${t}_quarantine"`),
          deadLetterKeys: await n(`select count(distinct source) as n from "${t}_quarantine"`),
        };
      };
      await scenario(home, PG, table, count);
      const types = await admin.query<{ column_name: string; data_type: string }>(
        "select column_name, data_type from information_schema.columns where table_name = $1 and column_name in ('quantity', 'price', '_ingested_at') order by column_name",
        [table],
      );
      expect(types.rows).toEqual([
        { column_name: "_ingested_at", data_type: "timestamp with time zone" },
        { column_name: "price", data_type: "numeric" },
        { column_name: "quantity", data_type: "bigint" },
      ]);
    });
  });

  const natsModule = "src/connectors/streams/nats.ts";
  describe.runIf(existsSync(natsModule))("with the real NATS JetStream source", () => {
    const subject = `sluicetest.${RUN}.actions`;
    const stream = `SLUICETEST_${RUN.toUpperCase()}_ACTIONS`;
    const consumer = `actions-${RUN}`;
    const connection = { broker: "nats", url: NATS, subject, stream, consumer };
    afterAll(async () => {
      const { connect } = await import("@nats-io/transport-node");
      const { jetstreamManager } = await import("@nats-io/jetstream");
      const nc = await connect({ servers: "127.0.0.1:4222" });
      try {
        await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
      } finally {
        await nc.close();
      }
    });

    it("2,000 trades published → stored or dead-lettered, acknowledged; a restart on the same consumer gets nothing again", async () => {
      const home = tmp("sluice-stream-");
      const ctx = (runId: string, step: string) => ({ home, runId, step });
      // The plain step: connect, create the stream and the durable consumer, report the lag.
      const check = await def(SOURCE).run(def(SOURCE).input.parse(connection), actionContext({ artifactsDir: home, home, step: "stream-connection" }));
      expect(check).toMatchObject({ broker: "nats", lag: 0 });
      expect(String(check.description)).toContain(`stream ${stream}`);

      const stagesFor = async (runId: string, sink: ReturnType<typeof watchedSink>): Promise<PipelineStage[]> => [
        { name: "stream-connection", stage: await open(SOURCE, connection, ctx(runId, "stream-connection")) },
        {
          name: "continuous-processing",
          stage: await open(PROCESS, { decode: "json", maxBatch: 500, maxLatency: "20ms" }, ctx(runId, "continuous-processing")),
        },
        {
          name: "realtime-validation",
          stage: await open(
            VALIDATE,
            {
              rules: [
                { column: "trade_id", required: true },
                { column: "quantity", min: 1 },
              ],
            },
            ctx(runId, "realtime-validation"),
          ),
        },
        { name: "streaming-storage", stage: sink.stage },
      ];
      const N = 2000;
      const bad = (i: number) => i % 50 === 0; // 40 trades with quantity 0
      const sink = watchedSink(await open(STORE, { table: "trades_stream", key: ["trade_id"] }, ctx("r-nats-1", "streaming-storage")));
      const stages = await stagesFor("r-nats-1", sink);
      const e2e: number[] = [];
      const running = runUntil(stages, () => sink.committed.size >= N, {
        maxBatch: 500,
        maxLatencyMs: 20,
        onLatency: (s, ms) => void (s === "end-to-end" && e2e.push(ms)),
      });
      const pub = await openStreamPublisher({ broker: "nats", url: NATS, subject, stream });
      try {
        for (let i = 1; i <= N; i++) await pub.publish(JSON.stringify(trade(i, bad(i) ? { quantity: "0" } : {})));
        await pub.flush();
      } finally {
        await pub.close();
      }
      const stats = await running;
      expect(sink.committed.size).toBe(N);
      expect(stats.records).toBe(N);
      expect(stats.deadLettered).toBe(N / 50);
      expect(stats.stored).toBe(N - N / 50);
      expect(stats.stored + stats.duplicate + stats.deadLettered).toBe(N);
      expect(stats.endToEndMs).not.toBeNull();
      e2e.sort((a, b) => a - b);
      console.log(
        `NATS end to end (publish → commit → ack), ms: stats.endToEndMs=${JSON.stringify(stats.endToEndMs)}; ` +
          `all ${e2e.length} samples p50=${e2e[Math.floor(e2e.length / 2)]} p99=${e2e[Math.floor(e2e.length * 0.99)]} max=${e2e.at(-1)}; stages=${JSON.stringify(stats.stageMs)}`,
      );

      const db = new Database(join(home, "warehouse.db"), { readonly: true });
      const n = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
      try {
        expect(n("select count(*) as n from trades_stream")).toBe(N - N / 50);
        expect(n("select count(*) as n from trades_stream_quarantine")).toBe(N / 50);
      } finally {
        db.close();
      }
      // Everything was acknowledged: nothing pending or awaiting an ack at the broker.
      const src = await openStreamSource({ broker: "nats", url: NATS, subject, stream, consumer });
      try {
        expect(await src.lag!()).toBe(0);
      } finally {
        await src.close();
      }

      // Restart on the same consumer: nothing is delivered again, nothing new stored.
      const sink2 = watchedSink(await open(STORE, { table: "trades_stream", key: ["trade_id"] }, ctx("r-nats-2", "streaming-storage")));
      const until = Date.now() + 1000;
      const again = await runUntil(await stagesFor("r-nats-2", sink2), () => Date.now() > until, { maxBatch: 500, maxLatencyMs: 20 });
      expect(again).toMatchObject({ records: 0, stored: 0, deadLettered: 0 });
      const db2 = new Database(join(home, "warehouse.db"), { readonly: true });
      try {
        expect((db2.prepare("select count(*) as n from trades_stream").get() as { n: number }).n).toBe(N - N / 50);
        expect((db2.prepare("select count(*) as n from trades_stream_quarantine").get() as { n: number }).n).toBe(N / 50);
      } finally {
        db2.close();
      }
    });
  });
});

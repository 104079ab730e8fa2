#!/usr/bin/env node
// Child process of bench/stream/run.mjs: publishes trades to a NATS JetStream subject at a paced
// rate, so that publishing does not share the consumer's event loop.
//
//   node bench/stream/publisher.mjs '{"url":"nats://127.0.0.1:4222","subject":"s","phases":[{"rate":5000,"seconds":60}]}'
//
// Records: the trades sample (tradeRecords, 1% defective), one JSON object per message. A pool of
// up to `pool` records is generated before the clock starts and cycled; each cycle rewrites the
// trade ids (`<idPrefix><cycle>-<original>`), so every good record is a new key, and records
// sharing an id within the pool (the id-conflict defect) still share it. An empty trade id (the
// missing-required defect) stays empty.
//
// Pacing: a fixed schedule, not a sleep per message. Every tick (~1 ms) the child publishes as
// many messages as are due by then (floor(elapsed × rate) − sent), so the rate does not drift
// with timer lateness; it catches up after a stall instead of losing messages. Each tick's
// messages go out together; at most SLICE (900) are unconfirmed at a time.
//
// IPC (process.send / process.on("message")):
//   → {type:"ready", pool, poolBad}                  generated and connected; waits for "go"
//   ← {type:"go"}                                     start the schedule
//   → {type:"phase", index, rate, published, startMs, endMs, maxBehindMs}   after each phase
//                       (maxBehindMs: the most the publisher lagged its schedule after the phase's
//                       steadyAfterMs; it catches up, so a lag is a burst, not a lost message)
//   ← {type:"stop"}                                   end after the current tick
//   → {type:"done", published, flushMs, cpuMs}             everything confirmed by the server
import { openStreamPublisher } from "../../dist/connectors/streams/index.js";
import { emptyTradeSummary, tradeRecords } from "../../dist/samples/trades.js";

const cfg = JSON.parse(process.argv[2]);
const phases = cfg.phases;
const total = phases.reduce((a, p) => a + Math.round(p.rate * p.seconds), 0);
const poolSize = Math.max(1, Math.min(total, cfg.pool ?? 100_000));
const prefix = cfg.idPrefix ?? "B";
const TOKEN = "@@TRADE_ID@@";

// The pool: each record as the JSON text before and after its trade id, and the original id.
const summary = emptyTradeSummary();
const heads = [];
const tails = [];
const ids = [];
for await (const r of tradeRecords({ rows: poolSize, badShare: cfg.badShare ?? 0.01, seed: cfg.seed ?? 42 }, summary)) {
  const id = r.trade_id ?? "";
  const [head, tail] = JSON.stringify({ ...r, trade_id: TOKEN }).split(JSON.stringify(TOKEN));
  heads.push(head);
  tails.push(tail);
  ids.push(id);
}
const message = (i) => {
  const k = i % poolSize;
  const id = ids[k];
  return heads[k] + JSON.stringify(id === "" ? "" : `${prefix}${Math.floor(i / poolSize)}-${id}`) + tails[k];
};

const publisher = await openStreamPublisher({ broker: "nats", url: cfg.url, subject: cfg.subject });
let stopped = false;
const go = new Promise((resolve) =>
  process.on("message", (m) => {
    if (m?.type === "go") resolve();
    else if (m?.type === "stop") stopped = true;
  }),
);
process.send({ type: "ready", pool: poolSize, poolBad: summary.bad });
await go;
const cpu0 = process.cpuUsage();

const tick = () => new Promise((r) => setTimeout(r, 1));
const SLICE = 900;
let unconfirmed = 0;
const GRACE_MS = 100;
let sent = 0;
for (const [index, p] of phases.entries()) {
  if (stopped) break;
  const n = Math.round(p.rate * p.seconds);
  const startMs = Date.now();
  const start = performance.now();
  let done = 0;
  let maxBehindMs = 0;
  const steadyAfter = p.steadyAfterMs ?? 0;
  const length = p.seconds * 1000;
  // The phase lasts its time: a publisher that cannot keep the rate stops GRACE_MS after the
  // phase's end with fewer messages (its `published` says so); it does not stretch the phase.
  // A phase marked `complete` publishes all its messages however long that takes.
  const over = () => !p.complete && performance.now() - start > length + GRACE_MS;
  for (;;) {
    const now = performance.now();
    const due = now - start >= length ? n : Math.min(n, Math.floor(((now - start) * p.rate) / 1000));
    // How far behind the schedule the publisher is at this tick (after the phase's warm-up).
    if (due - done > 0 && now - start >= steadyAfter) maxBehindMs = Math.max(maxBehindMs, ((due - done) / p.rate) * 1000);
    // The due messages are handed to the client together (publish() only queues the message and
    // tracks its PubAck), so they go out in one socket write. Every SLICE messages the PubAcks
    // are awaited (flush), which keeps the publisher's in-flight window (1,000) from filling:
    // publish() then never waits for a free slot one message at a time.
    while (done < due && !over()) {
      const slice = [];
      for (const end = Math.min(due, done + SLICE - unconfirmed); done < end; done++, sent++, unconfirmed++) slice.push(publisher.publish(message(sent)));
      await Promise.all(slice);
      if (unconfirmed >= SLICE) {
        await publisher.flush();
        unconfirmed = 0;
      }
    }
    if (done >= n || stopped || over()) break;
    await tick();
  }
  const endMs = Date.now();
  process.send({ type: "phase", index, rate: p.rate, published: done, startMs, endMs, maxBehindMs: Math.round(maxBehindMs * 10) / 10 });
}
const f0 = performance.now();
await publisher.flush();
const flushMs = Math.round(performance.now() - f0);
await publisher.close();
const cpu = process.cpuUsage(cpu0);
process.send({ type: "done", published: sent, flushMs, cpuMs: Math.round((cpu.user + cpu.system) / 1000) }, () => process.exit(0));

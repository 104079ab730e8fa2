#!/usr/bin/env node
// Stream benchmark: end-to-end latency and sustained rate of the real-time workflow
// (workflows/base-data-ingestion-workflow-realtime-stream.yaml) on NATS JetStream, against a
// bare consumer loop (bench/stream/bare.mjs) in the same run on the same machine.
//
//   npm run bench:stream                           (~4 minutes)
//   SLUICE_BENCH_SECONDS=10 npm run bench:stream   (quick: 10 s at the fixed rate)
//
// Needs nats-server with JetStream on 127.0.0.1:4222 (SLUICE_BENCH_NATS overrides the URL).
// Other knobs: SLUICE_BENCH_RATE (5000), SLUICE_BENCH_RATES, SLUICE_BENCH_STEP_SECONDS (8),
// SLUICE_BENCH_PARTS (fixed,ramp,drain), SLUICE_BENCH_CONSUMERS (sluice,bare; the targets need both),
// SLUICE_BENCH_PROFILE=1 (the Sluice runs also report where a record's time goes, from wrapped
// stages: bench/stream/profile.mjs).
//
// 1. Fixed rate: a child process (bench/stream/publisher.mjs) publishes trades (tradeRecords, 1%
//    defective) at 5,000 msg/s for SLUICE_BENCH_SECONDS (60) to a fresh subject, while the
//    consumer runs in this process:
//    - Sluice: createRun + executeRun of the real-time workflow on an SQLite state store in a
//      temporary SLUICE_HOME, storing into the embedded warehouse there (table trades_stream);
//      every end-to-end sample (broker publish time → storage commit) comes from
//      EngineOptions.onStreamLatency. Once the publisher finished and the pipeline caught up,
//      the run is cancelled (store.requestCancel) and the final step outputs are read:
//      stored + duplicate + deadLettered must equal published.
//    - bare: bench/stream/bare.mjs (NATS client + better-sqlite3, durable pull consumer, explicit
//      ack after commit); committed must equal published.
//    Figures over the steady part (messages published after the first 2 s): latency p50/p99/max,
//    records committed per second, the consumer process's CPU per 1,000 records and its event
//    loop delay.
// 2. Highest sustained rate, for both: after a 2 s warm-up the publisher steps through
//    SLUICE_BENCH_RATES (5k, 10k, 15k, 20k, 25k, 30k, 40k, 60k, 80k msg/s),
//    SLUICE_BENCH_STEP_SECONDS (8) each, back to back on one subject. A step is sustained when, 1 s after it ended, ≥ 95% of the messages
//    published during it were committed and their p99 latency is under 1 s. The ramp stops at the
//    first step that is not sustained (or that the publisher itself could not publish at ≥ 95% of
//    the rate, reported as publisherLimited: then that consumer's figure is a lower bound, and
//    the ratio says whether it is measured or only bounded). highestKeptUpPerSec is the most
//    messages per second the consumer kept up with whatever the step asked for.
// 3. Drain: SLUICE_BENCH_DRAIN (200,000; 0 skips) messages are published as fast as the publisher
//    can before any consumer runs; then Sluice and the bare loop each read the whole backlog
//    (each its own durable consumer on the same stream). Records per second from the consumer
//    being ready to the last commit: what each consumer can do with no publisher competing for
//    the CPU, and full batches. On a small machine the publisher tops out before either consumer
//    in the ramp, so this is where their capacities compare (targets.sustainedRatio.drainValue).
// On a small machine the publisher, nats-server and the consumer share the cores; cpuCores says
// how much each took per phase, and `other` what the rest of the machine took meanwhile (a large
// value means something else ran and the figures are disturbed: `disturbed` is set when it took
// more than DISTURBED_SHARE of the machine's cores).
// Every subject gets its own stream, deleted at the end; temporary folders are removed.
// Prints one JSON line on stdout; progress goes to stderr.
import { fork } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { StorageType, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { builtinRegistry } from "../../dist/actions/builtin.js";
import { defaultStreamName } from "../../dist/connectors/streams/nats.js";
import { createRun, executeRun } from "../../dist/engine/index.js";
import { loadWorkflowFile } from "../../dist/spec/load.js";
import { openSqliteStore } from "../../dist/store/sqlite.js";
import { startBare } from "./bare.mjs";
import { instrument } from "./profile.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const WORKFLOW = join(root, "workflows/base-data-ingestion-workflow-realtime-stream.yaml");
const URL_ = process.env.SLUICE_BENCH_NATS ?? "nats://127.0.0.1:4222";
const SERVERS = new URL(URL_).host;
const SECONDS = Number(process.env.SLUICE_BENCH_SECONDS ?? 60);
const RATE = Number(process.env.SLUICE_BENCH_RATE ?? 5000);
const WARMUP_MS = 2000;
const STEP_SECONDS = Number(process.env.SLUICE_BENCH_STEP_SECONDS ?? 8);
const RATES = (process.env.SLUICE_BENCH_RATES ?? "5000,10000,15000,20000,25000,30000,40000,60000,80000").split(",").map(Number);
const KEEP_UP_SHARE = 0.95;
const DISTURBED_SHARE = 0.2;
const disturbed = (cores) => cores.other !== undefined && cores.other > DISTURBED_SHARE * cpus().length;
const KEEP_UP_P99_MS = 1000;
const CATCH_UP_TIMEOUT_MS = 30_000;
const DRAIN = Number(process.env.SLUICE_BENCH_DRAIN ?? 200_000);
const DRAIN_TIMEOUT_MS = 120_000;
const TARGETS = { p99At5kMs: 25, sustainedRatio: 0.8 };
/** Which parts run (comma-separated): fixed, ramp, drain; default all. */
const PARTS = new Set((process.env.SLUICE_BENCH_PARTS ?? "fixed,ramp,drain").split(","));
/** Which consumers run (comma-separated): sluice, bare; default both (the targets need both). */
const KINDS = new Set((process.env.SLUICE_BENCH_CONSUMERS ?? "sluice,bare").split(","));
class Done extends Error {}
/** SLUICE_BENCH_PROFILE=1: the Sluice runs also say where the time goes (bench/stream/profile.mjs). */
const PROFILE = process.env.SLUICE_BENCH_PROFILE === "1";

const tag = `${process.pid}_${Date.now().toString(36)}`;
const temps = [];
const streams = [];
const children = new Set();
const log = (msg) => process.stderr.write(`bench:stream: ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const r1 = (x) => (x === null || x === undefined ? null : Math.round(x * 10) / 10);

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null;
}
function summary(values) {
  const s = Float64Array.from(values).sort();
  return { p50: r1(pct(s, 0.5)), p99: r1(pct(s, 0.99)), max: r1(s.at(-1) ?? null), n: s.length };
}

/** Every committed message: its publish time (epoch ms) and its latency (ms). */
function collector() {
  const c = { pub: [], lat: [], count: 0 };
  c.add = (pub, lat) => {
    c.pub.push(pub);
    c.lat.push(lat);
    c.count++;
  };
  /** Latencies of the messages published in [from, to] (epoch ms). */
  c.between = (from, to) => {
    const out = [];
    for (let i = 0; i < c.count; i++) if (c.pub[i] >= from && c.pub[i] <= to) out.push(c.lat[i]);
    return out;
  };
  /** Messages committed in [from, to] (commit = publish + latency). */
  c.committedBetween = (from, to) => {
    let n = 0;
    for (let i = 0; i < c.count; i++) {
      const at = c.pub[i] + c.lat[i];
      if (at >= from && at <= to) n++;
    }
    return n;
  };
  return c;
}

/**
 * CPU over a phase, in cores (Linux /proc; USER_HZ 100): the whole machine, this process (the
 * consumer), the publisher child, the nats-server processes, and `other`: the rest, i.e. whatever
 * else ran on the machine meanwhile. A large `other` means the figures are disturbed.
 */
function cpuMeter() {
  const ticks = (line) => line.trim().split(/\s+/).slice(1).map(Number);
  const machine = () => {
    const f = ticks(readFileSync("/proc/stat", "utf8").split("\n")[0]);
    return f.reduce((a, b) => a + b, 0) - f[3] - (f[4] ?? 0);
  };
  const natsServer = () => {
    let sum = 0;
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "nats-server") continue;
        const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
        sum += Number(f[11]) + Number(f[12]); // utime, stime
      } catch {
        /* gone */
      }
    }
    return sum;
  };
  const read = () => {
    try {
      return { machine: machine(), nats: natsServer() };
    } catch {
      return null;
    }
  };
  const m0 = read();
  const p0 = process.cpuUsage();
  const t0 = performance.now();
  /** Without the publisher's CPU (not known per ramp step), `other` includes the publisher. */
  return (publisherCpuMs) => {
    const secs = (performance.now() - t0) / 1000;
    const m1 = read();
    const p = process.cpuUsage(p0);
    const consumer = (p.user + p.system) / 1e6 / secs;
    const publisher = publisherCpuMs === undefined ? 0 : publisherCpuMs / 1000 / secs;
    const out = { consumer: r2(consumer) };
    if (publisherCpuMs !== undefined) out.publisher = r2(publisher);
    if (m0 && m1) {
      const all = (m1.machine - m0.machine) / 100 / secs;
      const nats = (m1.nats - m0.nats) / 100 / secs;
      Object.assign(out, { natsServer: r2(nats), machine: r2(all), other: r2(Math.max(0, all - consumer - publisher - nats)) });
    }
    return out;
  };
}
const r2 = (x) => Math.round(x * 100) / 100;

// --- NATS streams -------------------------------------------------------------------------------

const nc = await connect({ servers: SERVERS, name: "sluice-bench-stream" });
const jsm = await jetstreamManager(nc);

async function freshSubject(name) {
  const subject = `sluicebench.${tag}.${name}`;
  const stream = defaultStreamName(subject);
  await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File });
  streams.push(stream);
  return { subject, stream };
}

// --- the publisher child ------------------------------------------------------------------------

/** Start the publisher; resolves once it generated its records and connected. */
async function startPublisher(subject, phases, idPrefix, onPhase) {
  const child = fork(join(here, "publisher.mjs"), [JSON.stringify({ url: URL_, subject, phases, idPrefix })], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: [],
  });
  children.add(child);
  const result = { phases: [], published: 0, flushMs: 0, pool: 0, cpuMs: 0 };
  let ready;
  const readyP = new Promise((ok, fail) => ((ready = ok), child.once("exit", (code) => fail(new Error(`publisher exited ${code} before it was ready`)))));
  const done = new Promise((ok, fail) => {
    child.on("message", (m) => {
      if (m.type === "ready") {
        result.pool = m.pool;
        ready();
      } else if (m.type === "phase") {
        result.phases.push(m);
        onPhase?.(m);
      } else if (m.type === "done") {
        result.published = m.published;
        result.flushMs = m.flushMs;
        result.cpuMs = m.cpuMs;
      }
    });
    child.on("exit", (code) => {
      children.delete(child);
      if (code === 0) ok(result);
      else fail(new Error(`publisher exited with ${code}`));
    });
  });
  await readyP;
  return {
    go: () => child.send({ type: "go" }),
    stop: () => child.connected && child.send({ type: "stop" }),
    done,
  };
}

// --- the consumers ------------------------------------------------------------------------------

const actions = builtinRegistry();
const loaded = await loadWorkflowFile(WORKFLOW, { actions });
if (loaded.problems.length) throw new Error(`workflow problems: ${loaded.problems.map((p) => p.message).join("; ")}`);
const workflow = loaded.workflows[0].workflow;
const SINK_STEP = workflow.spec.steps.at(-1).name;

/** The real-time workflow, run through the engine in this process. */
async function startSluice({ subject, stream }, c) {
  const registry = PROFILE ? builtinRegistry() : actions;
  const prof = PROFILE ? instrument(registry) : null;
  const home = mkdtempSync(join(tmpdir(), "sluice-bench-stream-"));
  temps.push(home);
  process.env.SLUICE_HOME = home;
  const store = openSqliteStore(join(home, "sluice.db"));
  const run = await createRun(store, { workflow, params: { broker: "nats", url: URL_, subject } });
  const stats = [];
  const sinkMs = [];
  const transformMs = {};
  const done = executeRun(run.id, {
    store,
    actions: registry,
    home,
    onStreamLatency: (_wf, stage, ms) => {
      if (stage === "end-to-end") c.add(Date.now() - ms, ms);
      else if (stage === SINK_STEP) sinkMs.push(ms);
      else (transformMs[stage] ??= []).push(ms);
    },
    onEvent: (e) => {
      if (e.type === "stream-stats") stats.push(e.stats);
    },
  });
  let ended = false;
  done.finally(() => (ended = true)).catch(() => undefined);
  // Ready once the pipeline's durable consumer exists (the source is open and pulling).
  const t0 = Date.now();
  for (;;) {
    if (ended) throw new Error(`the run ended before its source opened: ${JSON.stringify(await done)}`);
    const info = await jsm.consumers.info(stream, "sluice").catch(() => null);
    if (info) break;
    if (Date.now() - t0 > 10_000) throw new Error("the pipeline's consumer did not appear within 10 s");
    await sleep(20);
  }
  return {
    async stop() {
      await store.requestCancel(run.id);
      const final = await done;
      const steps = await store.getSteps(run.id);
      await store.close();
      const out = steps.find((s) => s.name === SINK_STEP)?.outputs ?? {};
      const wh = new Database(join(home, "warehouse.db"), { readonly: true });
      const rows = wh.prepare("SELECT count(*) AS n FROM trades_stream").get().n;
      const deadLetters = wh.prepare("SELECT count(*) AS n FROM trades_stream_quarantine").get().n;
      wh.close();
      const batches = out.batches ?? 0;
      return {
        run: { status: final.status, stepStatus: steps.find((s) => s.name === SINK_STEP)?.status },
        outputs: { records: out.records, stored: out.stored, duplicate: out.duplicate, deadLettered: out.deadLettered, batches },
        warehouse: { rows, deadLetters },
        accounted: (out.stored ?? 0) + (out.duplicate ?? 0) + (out.deadLettered ?? 0),
        profile: {
          meanBatch: batches ? r1(out.records / batches) : null,
          sinkWriteMs: summary(sinkMs),
          transformMs: Object.fromEntries(Object.entries(transformMs).map(([k, v]) => [k, summary(v)])),
          maxLag: stats.reduce((m, s) => Math.max(m, s.lag ?? 0), 0),
          lastWindowStageMs: stats.at(-2)?.stageMs ?? null,
          ...(prof
            ? {
                profiled: Object.fromEntries(
                  Object.entries(prof).map(([k, v]) => [k, { ...summary(v), mean: r1(v.reduce((a, b) => a + b, 0) / Math.max(1, v.length)) }]),
                ),
              }
            : {}),
        },
      };
    },
  };
}

async function startBareConsumer({ subject, stream }, c) {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-stream-bare-"));
  temps.push(dir);
  const bare = await startBare({ servers: SERVERS, stream, subject, dbPath: join(dir, "bare.db"), onCommit: c.add });
  return {
    async stop() {
      const r = await bare.stop();
      return {
        counts: r,
        accounted: r.committed,
        profile: { meanBatch: r.batches ? r1(r.committed / r.batches) : null },
      };
    },
  };
}

const CONSUMERS = { sluice: startSluice, bare: startBareConsumer };

// --- 1. fixed rate ------------------------------------------------------------------------------

async function fixedRate(kind) {
  log(`${kind}: ${RATE} msg/s for ${SECONDS} s`);
  const sub = await freshSubject(`${kind}_fixed`);
  const c = collector();
  const consumer = await CONSUMERS[kind](sub, c);
  const pub = await startPublisher(sub.subject, [{ rate: RATE, seconds: SECONDS, steadyAfterMs: WARMUP_MS }], `${kind[0].toUpperCase()}F`);
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const cpu0 = process.cpuUsage();
  const meter = cpuMeter();
  pub.go();
  const published = await pub.done;
  const phase = published.phases[0];
  // Caught up: every published message committed.
  const waitFrom = Date.now();
  while (c.count < published.published && Date.now() - waitFrom < CATCH_UP_TIMEOUT_MS) await sleep(10);
  const catchUpMs = Date.now() - phase.endMs;
  const cpu = process.cpuUsage(cpu0);
  const cpuCores = meter(published.cpuMs);
  eld.disable();
  const end = await consumer.stop();
  const steadyFrom = phase.startMs + WARMUP_MS;
  const lat = summary(c.between(steadyFrom, Infinity));
  const steadySecs = (phase.endMs - steadyFrom) / 1000;
  const result = {
    published: published.published,
    publishedPerSec: Math.round(phase.published / ((phase.endMs - phase.startMs) / 1000)),
    publisherMaxBehindMs: phase.maxBehindMs,
    committed: c.count,
    caughtUp: c.count >= published.published,
    catchUpMs,
    latencyMs: { p50: lat.p50, p99: lat.p99, max: lat.max },
    samples: lat.n,
    committedPerSec: Math.round(c.committedBetween(steadyFrom, phase.endMs) / steadySecs),
    cpuMsPer1kRecords: r1(((cpu.user + cpu.system) / 1000 / Math.max(1, c.count)) * 1000),
    cpuCores,
    disturbed: disturbed(cpuCores),
    eventLoopDelayMs: { p99: r1(eld.percentile(99) / 1e6), max: r1(eld.max / 1e6) },
    ...end,
  };
  result.balanced = end.accounted === published.published;
  log(`${kind}: p50 ${lat.p50} p99 ${lat.p99} max ${lat.max} ms, ${result.committedPerSec}/s, accounted ${end.accounted}/${published.published}`);
  return result;
}

// --- 2. highest sustained rate ------------------------------------------------------------------

async function ramp(kind) {
  log(`${kind}: ramp ${RATES.join(", ")} msg/s, ${STEP_SECONDS} s each`);
  const sub = await freshSubject(`${kind}_ramp`);
  const c = collector();
  const consumer = await CONSUMERS[kind](sub, c);
  const phases = [{ rate: RATES[0], seconds: WARMUP_MS / 1000 }, ...RATES.map((rate) => ({ rate, seconds: STEP_SECONDS }))];
  const steps = [];
  let stopAt;
  const stopped = new Promise((r) => (stopAt = r));
  const evaluations = [];
  let failed = false;
  let pub;
  const stepCpu = [];
  let stepMeter;
  const evaluate = (m) => {
    const lat = c.between(m.startMs, m.endMs);
    const s = summary(lat);
    const achieved = m.published / ((m.endMs - m.startMs) / 1000);
    // Sluice's samples are placed by commit time − latency as seen after the ack, a millisecond
    // or so late, so a few cross a step boundary; the share is capped at 1.
    const share = m.published ? Math.min(1, lat.length / m.published) : 0;
    const publisherLimited = achieved < KEEP_UP_SHARE * m.rate;
    const keptUp = share >= KEEP_UP_SHARE && s.p99 !== null && s.p99 < KEEP_UP_P99_MS;
    const step = {
      rate: m.rate,
      published: m.published,
      publishedPerSec: Math.round(achieved),
      committedShare: Number(share.toFixed(3)),
      latencyMs: { p50: s.p50, p99: s.p99, max: s.max },
      sustained: keptUp && !publisherLimited,
      ...(publisherLimited ? { publisherLimited: true } : {}),
      keptUp,
      cpuCores: stepCpu[m.index],
    };
    steps[m.index - 1] = step;
    log(
      `${kind}: ${m.rate}/s → published ${step.publishedPerSec}/s, committed ${(share * 100).toFixed(1)}%, p99 ${s.p99} ms${step.sustained ? "" : " (not sustained)"}`,
    );
    if (!step.sustained && !failed) {
      failed = true;
      pub.stop();
      stopAt();
    }
  };
  pub = await startPublisher(sub.subject, phases, `${kind[0].toUpperCase()}R`, (m) => {
    // Phases run back to back: one ends as the next starts.
    stepCpu[m.index] = stepMeter?.();
    stepMeter = cpuMeter();
    if (m.index === 0 || failed) return;
    // Judged 1 s after the step ended: what was committed by then.
    evaluations.push(sleep(Math.max(0, m.endMs + 1000 - Date.now())).then(() => !failed && evaluate(m)));
  });
  const meter = cpuMeter();
  stepMeter = cpuMeter();
  pub.go();
  await Promise.race([pub.done, stopped]);
  const published = await pub.done;
  const cpuCores = meter(published.cpuMs);
  await Promise.all(evaluations);
  await consumer.stop();
  const passed = steps.filter((s) => s?.sustained);
  const last = steps.filter(Boolean).at(-1);
  // Sustained means every step up to it was sustained (the ramp stops at the first that is not).
  const keptUp = steps.filter((s) => s?.keptUp);
  return {
    highestSustainedRate: passed.length ? Math.max(...passed.map((s) => s.rate)) : 0,
    // The most messages per second the consumer kept up with, whatever the step asked for (a
    // publisher-limited step that the consumer kept up with counts at the rate it was fed).
    highestKeptUpPerSec: keptUp.length ? Math.max(...keptUp.map((s) => s.publishedPerSec)) : 0,
    // What ended the ramp: the consumer, the publisher (the consumer's figure is then a lower
    // bound), or nothing (every rate sustained: also a lower bound).
    limitedBy: !last || last.sustained ? "none" : last.publisherLimited ? "publisher" : "consumer",
    steps: steps.filter(Boolean),
    cpuCores,
    disturbed: disturbed(cpuCores),
  };
}

// --- 3. drain ----------------------------------------------------------------------------------

async function drain() {
  log(`drain: publishing ${DRAIN} messages`);
  const sub = await freshSubject("drain");
  const pub = await startPublisher(sub.subject, [{ rate: 1_000_000, seconds: DRAIN / 1_000_000, complete: true }], "D");
  const t0 = Date.now();
  pub.go();
  const published = await pub.done;
  const out = { records: published.published, publishedPerSec: Math.round(published.published / ((Date.now() - t0) / 1000)) };
  for (const kind of ["sluice", "bare"]) {
    if (!KINDS.has(kind)) continue;
    const c = collector();
    const consumer = await CONSUMERS[kind](sub, c);
    const ready = Date.now();
    while (c.count < published.published && Date.now() - ready < DRAIN_TIMEOUT_MS) await sleep(5);
    let last = 0;
    for (let i = 0; i < c.count; i++) last = Math.max(last, c.pub[i] + c.lat[i]);
    const end = await consumer.stop();
    const secs = Math.max(0.001, (last - ready) / 1000);
    out[kind] = {
      committed: c.count,
      seconds: Number(secs.toFixed(2)),
      perSec: Math.round(c.count / secs),
      meanBatch: end.profile.meanBatch,
      balanced: end.accounted === published.published,
    };
    log(`drain: ${kind} ${out[kind].perSec}/s`);
  }
  if (out.sluice && out.bare) out.ratio = Number((out.sluice.perSec / out.bare.perSec).toFixed(3));
  return out;
}

// --- main ---------------------------------------------------------------------------------------

const result = {
  bench: "stream",
  node: process.version,
  machine: { cpus: cpus().length, loadavgAtStart: loadavg().map((x) => Number(x.toFixed(2))) },
  broker: `NATS JetStream ${URL_}`,
  workflow: "base-data-ingestion-workflow-realtime-stream.yaml",
  fixedRate: { rate: RATE, seconds: SECONDS, warmupSeconds: WARMUP_MS / 1000 },
  ...(PROFILE ? { profiled: true } : {}),
};
try {
  if (PARTS.has("fixed")) for (const kind of ["sluice", "bare"]) if (KINDS.has(kind)) result[kind] = await fixedRate(kind);
  if (PARTS.has("ramp")) {
    result.sustained = { stepSeconds: STEP_SECONDS, rates: RATES };
    for (const kind of ["sluice", "bare"]) if (KINDS.has(kind)) result.sustained[kind] = await ramp(kind);
  }
  if (PARTS.has("drain") && DRAIN > 0) result.drain = await drain();
  if (!result.sluice || !result.bare || !result.sustained?.sluice || !result.sustained?.bare) throw new Done();
  const ratio = result.sustained.bare.highestSustainedRate ? result.sustained.sluice.highestSustainedRate / result.sustained.bare.highestSustainedRate : null;
  result.sustained.ratio = ratio === null ? null : Number(ratio.toFixed(3));
  // A consumer not limited by itself has a lower bound for its figure: Sluice's makes the ratio a
  // lower bound, bare's an upper bound, both: nothing is known.
  const sBound = result.sustained.sluice.limitedBy !== "consumer";
  const bBound = result.sustained.bare.limitedBy !== "consumer";
  const ratioKind = sBound && bBound ? "inconclusive" : sBound ? "lowerBound" : bBound ? "upperBound" : "measured";
  result.sustained.ratioKind = ratioKind;
  const b = result.sustained.bare.highestKeptUpPerSec;
  result.sustained.keptUpRatio = b ? Number((result.sustained.sluice.highestKeptUpPerSec / b).toFixed(3)) : null;
  const ratioMet =
    ratio === null || ratioKind === "inconclusive"
      ? null
      : ratioKind === "measured"
        ? ratio >= TARGETS.sustainedRatio
        : ratioKind === "lowerBound"
          ? ratio >= TARGETS.sustainedRatio
            ? true
            : null
          : ratio < TARGETS.sustainedRatio
            ? false
            : null;
  result.targets = {
    p99At5kMs: {
      target: TARGETS.p99At5kMs,
      sluice: result.sluice.latencyMs.p99,
      bare: result.bare.latencyMs.p99,
      met: result.sluice.latencyMs.p99 !== null && result.sluice.latencyMs.p99 < TARGETS.p99At5kMs,
    },
    sustainedRatio: {
      target: TARGETS.sustainedRatio,
      value: result.sustained.ratio,
      kind: ratioKind,
      met: ratioMet,
      ...(result.drain?.ratio !== undefined ? { drainValue: result.drain.ratio } : {}),
    },
  };
  result.machine.loadavgAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
} catch (err) {
  if (!(err instanceof Done)) throw err;
} finally {
  for (const ch of children) ch.kill("SIGTERM");
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc.close();
  for (const d of temps) rmSync(d, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");

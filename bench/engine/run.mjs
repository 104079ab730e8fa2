#!/usr/bin/env node
// Engine benchmark: durable step transitions per second on the embedded SQLite store.
//
//   npm run bench:engine
//
// Workloads: a 1,000-step chain, a 1,000-wide fan-out, a 10,000-step chain of no-op
// in-process steps, and a `forEach` over 10,000 items (items/s and peak RSS). Each step makes two durable transitions (attempt started, attempt ended),
// committed as a real run commits them: a step's end together with the start of the step it
// releases, parallel ends in shared commits (see src/engine/writer.ts). The baseline, in the
// same process and on the same disk, is a bare better-sqlite3 loop committing one single-row
// transaction per transition, so the ratio says what the engine costs on top of the writes.
// Prints one JSON line.
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { createRegistry } from "../../dist/actions/registry.js";
import { createRun, executeRun, createLimiter } from "../../dist/engine/index.js";
import { openSqliteStore } from "../../dist/store/sqlite.js";

const dir = mkdtempSync(join(tmpdir(), "sluice-bench-engine-"));
const actions = createRegistry([
  { kind: "agent", owner: "bench", action: "noop", description: "nothing", input: z.object({}).strict(), run: async () => ({}) },
]);

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);

function workflowOf(n, shape) {
  const steps = Array.from({ length: n }, (_, i) => ({
    name: `s${i}`,
    agent: "bench",
    action: "noop",
    ...(shape === "chain" && i > 0 ? { dependsOn: [`s${i - 1}`] } : {}),
  }));
  return { apiVersion: "sluice.dev/v1alpha1", kind: "Workflow", metadata: { name: `bench-${shape}-${n}` }, spec: { parallelism: 64, steps } };
}

async function measure(store, n, shape) {
  peakRss = process.memoryUsage().rss;
  const run = await createRun(store, { workflow: workflowOf(n, shape) });
  const t0 = process.hrtime.bigint();
  const done = await executeRun(run.id, { store, actions, home: dir, limiter: createLimiter(64) });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (done.status !== "succeeded") throw new Error(`bench run ${shape} ended ${done.status}`);
  const transitions = n * 2;
  return {
    steps: n,
    ms: Math.round(ms),
    transitionsPerSec: Math.round(transitions / (ms / 1000)),
    stepsPerSec: Math.round(n / (ms / 1000)),
    overheadMsPerStep: Number((ms / n).toFixed(3)),
    peakRssMb: Math.round(peakRss / 1e6),
  };
}

/**
 * A `forEach` over `n` items: one step whose items are expanded at run time, recorded in the
 * store each as its own step (two transitions per item, plus the expansion and the parent's
 * end), at most 64 at once. Peak RSS is sampled over the run: it must stay bounded.
 */
async function measureForEach(store, n) {
  peakRss = process.memoryUsage().rss;
  const before = peakRss;
  const wf = {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "Workflow",
    metadata: { name: `bench-foreach-${n}` },
    spec: { parallelism: 64, steps: [{ name: "each", forEach: Array.from({ length: n }, (_, i) => ({ i })), agent: "bench", action: "noop" }] },
  };
  const run = await createRun(store, { workflow: wf });
  const t0 = process.hrtime.bigint();
  const done = await executeRun(run.id, { store, actions, home: dir, limiter: createLimiter(64) });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (done.status !== "succeeded") throw new Error(`bench forEach ended ${done.status}`);
  return {
    items: n,
    ms: Math.round(ms),
    itemsPerSec: Math.round(n / (ms / 1000)),
    peakRssMb: Math.round(peakRss / 1e6),
    rssGrowthMb: Math.round((peakRss - before) / 1e6),
  };
}

function bareBaseline(transitions) {
  const db = new Database(join(dir, "bare.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT, at TEXT)");
  const ins = db.prepare("INSERT INTO t (id, status, at) VALUES (?, 'running', ?)");
  const upd = db.prepare("UPDATE t SET status = 'succeeded', at = ? WHERE id = ?");
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < transitions / 2; i++) {
    ins.run(i, new Date().toISOString());
    upd.run(new Date().toISOString(), i);
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  db.close();
  return { transitions, ms: Math.round(ms), transitionsPerSec: Math.round(transitions / (ms / 1000)) };
}

const store = openSqliteStore(join(dir, "sluice.db"));
await measure(store, 200, "chain"); // warm-up: JIT, page cache
const chain = await measure(store, 1000, "chain");
const fanout = await measure(store, 1000, "fanout");
const chain10k = await measure(store, 10000, "chain");
const forEach10k = await measureForEach(store, 10000);
const bare = bareBaseline(2000);
await store.close();
clearInterval(sampler);
rmSync(dir, { recursive: true, force: true });

console.log(
  JSON.stringify({
    bench: "engine",
    store: "sqlite",
    node: process.version,
    chain1k: chain,
    fanout1k: fanout,
    chain10k,
    forEach10k,
    bareSqlite: bare,
    ratioChainToBare: Number((chain.transitionsPerSec / bare.transitionsPerSec).toFixed(3)),
    target: { transitionsPerSec: 5000, overheadMsPerStep: 1 },
    meetsTarget: chain.transitionsPerSec >= 5000 && fanout.transitionsPerSec >= 5000 && chain.overheadMsPerStep < 1,
  }),
);

#!/usr/bin/env node
// Fleet benchmark: steps per second and run latency on PostgreSQL with 1, 2 and 4 `sluice worker`
// processes, the same workloads on SQLite in-process, and the bare baselines in the same run.
//
//   npm run bench:fleet                      (SLUICE_BENCH_PG overrides the server URL)
//
// Workloads (no-op steps, so the engine and the store are what is measured):
// - sequential:  one run, a 1,000-step chain. Each step is one commit (its end and the next
//                step's start go together). Baseline: 1,000 sequential single-row commits.
// - independent: 5,000 independent steps as 100 runs of 50, all queued at once; workers claim
//                runs with SKIP LOCKED and commit step transitions in groups. Baseline: a bare
//                SKIP LOCKED job queue (one job per transaction, as a PostgreSQL job queue does)
//                with as many worker connections.
// PostgreSQL runs twice: with the server's synchronous_commit (on) and with
// SLUICE_PG_SYNCHRONOUS_COMMIT=off (see README). Prints one JSON line.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { createRegistry } from "../../dist/actions/registry.js";
import { createRun, executeRun, startWorker } from "../../dist/engine/index.js";
import { openPostgresStore } from "../../dist/store/postgres.js";
import { openSqliteStore } from "../../dist/store/sqlite.js";
import { actions as benchActions } from "./actions.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const PG = process.env.SLUICE_BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/test";
const SEQ = Number(process.env.SLUICE_BENCH_SEQ ?? 1000);
const RUNS = Number(process.env.SLUICE_BENCH_RUNS ?? 100);
const WIDTH = Number(process.env.SLUICE_BENCH_WIDTH ?? 50);
const home = mkdtempSync(join(tmpdir(), "sluice-bench-fleet-"));
const actions = createRegistry(benchActions);
const schemas = [];

const wf = (name, n, chain) => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "Workflow",
  metadata: { name },
  spec: {
    parallelism: 64,
    steps: Array.from({ length: n }, (_, i) => ({ name: `s${i}`, agent: "bench", action: "noop", ...(chain && i ? { dependsOn: [`s${i - 1}`] } : {}) })),
  },
});
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function pgStore(tag, sync) {
  const schema = `sluice_bench_${tag}_${process.pid}`;
  schemas.push(schema);
  return { schema, store: await openPostgresStore(PG, { schema, synchronousCommit: sync }) };
}

/** One chain run executed in this process: steps/s and the run's latency. */
async function sequential(store) {
  // Warm up first (the server's plan caches, the store's connections), as a long-lived worker is.
  const warm = await createRun(store, { workflow: wf("bench-warm", 100, true) });
  await executeRun(warm.id, { store, actions, home });
  const run = await createRun(store, { workflow: wf("bench-seq", SEQ, true) });
  const t0 = performance.now();
  const done = await executeRun(run.id, { store, actions, home });
  const ms = performance.now() - t0;
  if (done.status !== "succeeded") throw new Error(`sequential run ${done.status}`);
  return { steps: SEQ, ms: Math.round(ms), stepsPerSec: Math.round(SEQ / (ms / 1000)) };
}

/** Queue RUNS × WIDTH independent steps, wait until every run succeeded. */
async function independent(store, startWorkers) {
  const stop = await startWorkers();
  const spec = wf("bench-ind", WIDTH, false);
  const t0 = performance.now();
  // Queued as an API under load would: ten requests at a time.
  const runs = [];
  for (let i = 0; i < RUNS; i += 10)
    runs.push(...(await Promise.all(Array.from({ length: Math.min(10, RUNS - i) }, () => createRun(store, { workflow: spec })))));
  // Poll a cheap aggregate (the bench shares the two cores with the workers), then read the runs once.
  const open = async () =>
    (await store.countRuns()).filter((c) => c.workflow === "bench-ind" && (c.status === "pending" || c.status === "running")).reduce((a, c) => a + c.count, 0);
  while ((await open()) > 0) await sleep(20);
  const ms = performance.now() - t0;
  await stop();
  const ended = await Promise.all(runs.map((r) => store.getRun(r.id)));
  if (ended.some((r) => r.status !== "succeeded")) throw new Error("an independent run did not succeed");
  const lat = ended.map((r) => Date.parse(r.endedAt) - Date.parse(r.createdAt));
  return {
    steps: RUNS * WIDTH,
    runs: RUNS,
    ms: Math.round(ms),
    stepsPerSec: Math.round((RUNS * WIDTH) / (ms / 1000)),
    runLatencyMs: { p50: pct(lat, 50), p99: pct(lat, 99) },
  };
}

/** N real `sluice worker` processes on the store's schema; resolves once each reports started. */
function processWorkers(n, schema, sync) {
  return async () => {
    const env = {
      ...process.env,
      SLUICE_DATABASE_URL: `${PG}`,
      SLUICE_HOME: home,
      SLUICE_ACTIONS: join(here, "actions.mjs"),
      SLUICE_PG_SCHEMA: schema,
      SLUICE_LOG_LEVEL: "warn",
      SLUICE_PG_SYNCHRONOUS_COMMIT: sync ?? "",
    };
    const procs = [];
    await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise((ok, fail) => {
            const p = spawn(process.execPath, [join(root, "bin/sluice.js"), "worker", "--max-runs", "32"], { env, stdio: ["ignore", "ignore", "pipe"] });
            procs.push(p);
            let err = "";
            p.stderr.on("data", (d) => {
              err += d;
              if (err.includes("worker") && err.includes("started")) ok();
            });
            p.on("exit", (code) => fail(new Error(`worker exited ${code}: ${err}`)));
          }),
      ),
    );
    return async () => {
      await Promise.all(procs.map((p) => new Promise((r) => (p.removeAllListeners("exit"), p.on("exit", r), p.kill("SIGTERM")))));
    };
  };
}

/** Bare baselines on the same server: sequential single-row commits, and a SKIP LOCKED job queue. */
async function bareBaselines(sync, workers) {
  const opts = { connectionString: PG, options: sync ? `-c synchronous_commit=${sync}` : undefined };
  const c = new pg.Client(opts);
  await c.connect();
  const t = `bench_bare_${process.pid}`;
  await c.query(`DROP TABLE IF EXISTS ${t}; CREATE TABLE ${t} (id serial PRIMARY KEY, state text NOT NULL DEFAULT 'queued', v int)`);
  await c.query(`INSERT INTO ${t} (v) VALUES (0)`);
  let t0 = performance.now();
  for (let i = 0; i < SEQ; i++) await c.query(`UPDATE ${t} SET v = v + 1 WHERE id = 1`);
  const seq = { commits: SEQ, perSec: Math.round(SEQ / ((performance.now() - t0) / 1000)) };
  await c.query(`TRUNCATE ${t}; INSERT INTO ${t} (v) SELECT g FROM generate_series(1, ${RUNS * WIDTH}) g`);
  const clients = await Promise.all(
    Array.from({ length: workers }, async () => {
      const w = new pg.Client(opts);
      await w.connect();
      return w;
    }),
  );
  t0 = performance.now();
  await Promise.all(
    clients.map(async (w) => {
      for (;;) {
        const r = await w.query(
          `UPDATE ${t} SET state = 'done' WHERE id = (SELECT id FROM ${t} WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id`,
        );
        if (!r.rowCount) break;
      }
    }),
  );
  const queue = { jobs: RUNS * WIDTH, workers, perSec: Math.round((RUNS * WIDTH) / ((performance.now() - t0) / 1000)) };
  await Promise.all(clients.map((w) => w.end()));
  await c.query(`DROP TABLE ${t}`);
  await c.end();
  return { sequentialCommits: seq, skipLockedQueue: queue };
}

const result = { bench: "fleet", machine: { cpus: (await import("node:os")).cpus().length }, postgres: {}, sqlite: {} };
try {
  for (const sync of [undefined, "off"]) {
    const mode = sync ? "synchronousCommitOff" : "synchronousCommitOn";
    const out = {};
    const seq = await pgStore(`seq${sync ? "a" : "s"}`, sync);
    out.sequential = await sequential(seq.store);
    await seq.store.close();
    out.independent = {};
    for (const n of [1, 2, 4]) {
      const s = await pgStore(`ind${n}${sync ? "a" : "s"}`, sync);
      out.independent[`workers${n}`] = await independent(s.store, processWorkers(n, s.schema, sync));
      await s.store.close();
    }
    out.baseline = await bareBaselines(sync, 4);
    result.postgres[mode] = out;
  }
  const lite = openSqliteStore(join(home, "bench.db"));
  result.sqlite.sequential = await sequential(lite);
  result.sqlite.independent = await independent(lite, async () => {
    const w = await startWorker({ store: lite, actions, home, pollMs: 20, maxRuns: 32 });
    return () => w.stop(1000);
  });
  await lite.close();
  const on = result.postgres.synchronousCommitOn;
  const off = result.postgres.synchronousCommitOff;
  result.targets = {
    sequentialStepsPerSec: { target: 1900, synchronousCommitOn: on.sequential.stepsPerSec, synchronousCommitOff: off.sequential.stepsPerSec },
    independentStepsPerSec4Workers: {
      target: 5000,
      synchronousCommitOn: on.independent.workers4.stepsPerSec,
      synchronousCommitOff: off.independent.workers4.stepsPerSec,
    },
  };
} finally {
  const c = new pg.Client(PG);
  await c.connect();
  for (const s of schemas) await c.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await c.end();
  rmSync(home, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");

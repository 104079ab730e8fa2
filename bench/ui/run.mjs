#!/usr/bin/env node
// Web UI benchmark: server time of the UI's pages with 100,000 runs in the store.
//
//   npm run bench:ui            (SLUICE_BENCH_UI_RUNS=20000 for a quicker look)
//
// Seeds 100,000 runs (5 workflows, 6 steps and 6 attempts each, statuses and triggers mixed,
// one second apart) plus one 200-step run with retries and an 8 MB attempt log, into SQLite and
// into PostgreSQL, with bulk SQL (not the engine: the point is the read side). Then measures,
// in process through app.request (no network, so the figure is the server's own time, rendering
// included), p50/p95 of: the runs page, a filtered runs page, page 500 by keyset, the run page of
// the 200-step run, and the log page of the 8 MB log. Baseline in the same run: the bare store
// call behind the runs page (listRunsPage), so the ratio says what rendering costs on top.
// RSS is sampled while walking pages 1 to 500: flat memory means paging keeps nothing.
// Target: p95 under 100 ms for each page. Prints one JSON line.
import Database from "better-sqlite3";
import pg from "pg";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createApp } from "../../dist/server/app.js";
import { AUTH_OFF } from "../../dist/server/auth.js";
import { builtinRegistry } from "../../dist/actions/builtin.js";
import { openSqliteStore } from "../../dist/store/sqlite.js";
import { openPostgresStore } from "../../dist/store/postgres.js";
import { attemptLogFile } from "../../dist/engine/attempt-log.js";

const N = Number(process.env.SLUICE_BENCH_UI_RUNS ?? 100_000);
const PG_URL = process.env.SLUICE_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const SCHEMA = `sluice_bench_ui_${process.pid}`;
const ITER = Number(process.env.SLUICE_BENCH_UI_ITER ?? 60);
const WORKFLOWS = 5;
const STEPS = 6;
const BASE = Date.parse("2024-01-01T00:00:00.000Z");
const STATUSES = ["succeeded", "succeeded", "succeeded", "succeeded", "succeeded", "succeeded", "succeeded", "succeeded", "failed", "cancelled"];
const TRIGGERS = ["schedule", "schedule", "event", "api", "manual"];
const BIG = "r-big-200";

const specOf = (w) => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "Workflow",
  metadata: { name: `wf-${w}` },
  spec: { steps: Array.from({ length: STEPS }, (_, j) => ({ name: `s${j}`, exec: { command: ["true"] }, ...(j > 0 && { dependsOn: [`s${j - 1}`] }) })) },
});
// 200 steps in 20 layers of 10, each depending on two of the layer above.
const bigSpec = {
  apiVersion: "sluice.dev/v1alpha1",
  kind: "Workflow",
  metadata: { name: "wf-big" },
  spec: {
    steps: Array.from({ length: 200 }, (_, i) => {
      const layer = Math.floor(i / 10);
      const deps = layer === 0 ? [] : [`b${(layer - 1) * 10 + (i % 10)}`, `b${(layer - 1) * 10 + ((i + 3) % 10)}`];
      return { name: `b${i}`, exec: { command: ["true"] }, ...(deps.length && { dependsOn: deps }) };
    }),
  },
};
const iso = (ms) => new Date(ms).toISOString();
const runOf = (i) => {
  const status = STATUSES[i % STATUSES.length];
  const created = BASE + i * 1000;
  return {
    id: `r-${String(i).padStart(7, "0")}`,
    workflow: i % WORKFLOWS,
    status,
    trigger: TRIGGERS[i % TRIGGERS.length],
    created,
    ended: created + 800,
    rows: status === "succeeded" ? [1000, 990, 8, 2] : [null, null, null, null],
  };
};
const OUTPUTS = JSON.stringify({ rowsIn: 1000, rowsStored: 990, rowsQuarantined: 8, rowsDuplicate: 2, table: "trades" });

function seedSqlite(file) {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = OFF");
  const specs = Array.from({ length: WORKFLOWS }, (_, w) => JSON.stringify(specOf(w)));
  const run = db.prepare(
    `INSERT INTO runs (id, workflow, spec, source, params, trigger, status, created_at, started_at, ended_at, workflow_version, trigger_type,
       rows_in, rows_stored, rows_quarantined, rows_duplicate, error_code, error_message) VALUES (?, ?, ?, NULL, '{}', ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const step = db.prepare(`INSERT INTO steps (run_id, name, idx, status, attempts, started_at, ended_at, outputs) VALUES (?, ?, ?, ?, 1, ?, ?, ?)`);
  const attempt = db.prepare(
    `INSERT INTO attempts (run_id, step, n, status, started_at, ended_at, owner, error_code, error_message) VALUES (?, ?, ?, ?, ?, ?, 'bench', ?, ?)`,
  );
  db.transaction(() => {
    for (let i = 0; i < N; i++) {
      const r = runOf(i);
      const failed = r.status === "failed";
      run.run(
        r.id,
        `wf-${r.workflow}`,
        specs[r.workflow],
        JSON.stringify({ type: r.trigger }),
        r.status,
        iso(r.created),
        iso(r.created),
        iso(r.ended),
        r.trigger,
        ...r.rows,
        failed ? "NETWORK_ERROR" : null,
        failed ? "the source did not answer" : null,
      );
      for (let j = 0; j < STEPS; j++) {
        const st = failed && j === STEPS - 1 ? "failed" : r.status === "cancelled" && j === STEPS - 1 ? "cancelled" : "succeeded";
        const t = r.created + j * 100;
        step.run(r.id, `s${j}`, j, st, iso(t), iso(t + 90), j === STEPS - 1 && st === "succeeded" ? OUTPUTS : "{}");
        attempt.run(r.id, `s${j}`, 1, st, iso(t), iso(t + 90), st === "failed" ? "NETWORK_ERROR" : null, st === "failed" ? "the source did not answer" : null);
      }
    }
    seedBig((sql, args) => db.prepare(sql).run(...args));
  })();
  db.close();
}

/** The 200-step run: steps with one attempt each, every seventh retried once after a failure. */
function seedBig(exec) {
  const t0 = BASE + N * 1000 + 5000;
  exec(
    `INSERT INTO runs (id, workflow, spec, source, params, trigger, status, created_at, started_at, ended_at, workflow_version, trigger_type) VALUES (?, 'wf-big', ?, NULL, '{}', '{"type":"manual"}', 'succeeded', ?, ?, ?, 1, 'manual')`,
    [BIG, JSON.stringify(bigSpec), iso(t0), iso(t0), iso(t0 + 60_000)],
  );
  bigSpec.spec.steps.forEach((s, i) => {
    const t = t0 + Math.floor(i / 10) * 3000;
    const retried = i % 7 === 0;
    exec(`INSERT INTO steps (run_id, name, idx, status, attempts, started_at, ended_at, outputs) VALUES (?, ?, ?, 'succeeded', ?, ?, ?, ?)`, [
      BIG,
      s.name,
      i,
      retried ? 2 : 1,
      iso(t),
      iso(t + 2500),
      OUTPUTS,
    ]);
    if (retried)
      exec(
        `INSERT INTO attempts (run_id, step, n, status, started_at, ended_at, owner, error_code, error_message) VALUES (?, ?, 1, 'failed', ?, ?, 'bench', 'TIMEOUT', 'timed out')`,
        [BIG, s.name, iso(t), iso(t + 800)],
      );
    exec(`INSERT INTO attempts (run_id, step, n, status, started_at, ended_at, owner) VALUES (?, ?, ?, 'succeeded', ?, ?, 'bench')`, [
      BIG,
      s.name,
      retried ? 2 : 1,
      iso(t + (retried ? 1500 : 0)),
      iso(t + 2500),
    ]);
  });
}

async function seedPostgres() {
  const c = new pg.Client(PG_URL);
  await c.connect();
  const S = `"${SCHEMA}"`;
  const specs = Array.from({ length: WORKFLOWS }, (_, w) => JSON.stringify(specOf(w)));
  const ts = (expr) => `to_char(timestamp '2024-01-01' + (${expr}) * interval '1 millisecond', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
  const statuses = `(array[${STATUSES.map((s) => `'${s}'`).join(",")}])[i % ${STATUSES.length} + 1]`;
  const triggers = `(array[${TRIGGERS.map((s) => `'${s}'`).join(",")}])[i % ${TRIGGERS.length} + 1]`;
  await c.query(
    `INSERT INTO ${S}.runs (id, workflow, spec, source, params, trigger, status, created_at, started_at, ended_at, workflow_version, trigger_type,
       rows_in, rows_stored, rows_quarantined, rows_duplicate, error_code, error_message)
     SELECT 'r-' || lpad(i::text, 7, '0'), 'wf-' || (i % ${WORKFLOWS}), ($1::text[])[i % ${WORKFLOWS} + 1], NULL, '{}',
            json_build_object('type', ${triggers})::text, st, ${ts("i * 1000")}, ${ts("i * 1000")}, ${ts("i * 1000 + 800")}, 1, ${triggers},
            CASE WHEN st = 'succeeded' THEN 1000 END, CASE WHEN st = 'succeeded' THEN 990 END, CASE WHEN st = 'succeeded' THEN 8 END, CASE WHEN st = 'succeeded' THEN 2 END,
            CASE WHEN st = 'failed' THEN 'NETWORK_ERROR' END, CASE WHEN st = 'failed' THEN 'the source did not answer' END
       FROM (SELECT i, ${statuses} AS st FROM generate_series(0, ${N - 1}) i) g`,
    [specs],
  );
  const stepStatus = `CASE WHEN j = ${STEPS - 1} AND r.status <> 'succeeded' THEN r.status ELSE 'succeeded' END`;
  await c.query(
    `INSERT INTO ${S}.steps (run_id, name, idx, status, attempts, started_at, ended_at, outputs)
     SELECT r.id, 's' || j, j, ${stepStatus}, 1, r.created_at, r.ended_at, CASE WHEN j = ${STEPS - 1} AND r.status = 'succeeded' THEN $1 ELSE '{}' END
       FROM ${S}.runs r, generate_series(0, ${STEPS - 1}) j`,
    [OUTPUTS],
  );
  await c.query(
    `INSERT INTO ${S}.attempts (run_id, step, n, status, started_at, ended_at, owner, error_code, error_message)
     SELECT s.run_id, s.name, 1, s.status, s.started_at, s.ended_at, 'bench', CASE WHEN s.status = 'failed' THEN 'NETWORK_ERROR' END, CASE WHEN s.status = 'failed' THEN 'the source did not answer' END
       FROM ${S}.steps s`,
  );
  const queue = [];
  seedBig((sql, args) => {
    let n = 0;
    queue.push([sql.replace(/INSERT INTO (\w+)/, `INSERT INTO ${S}.$1`).replace(/\?/g, () => `$${++n}`), args]);
  });
  for (const [sql, args] of queue) await c.query(sql, args);
  await c.query(`ANALYZE ${S}.runs; ANALYZE ${S}.steps; ANALYZE ${S}.attempts`);
  await c.end();
}

function writeBigLog(home) {
  const file = attemptLogFile(home, BIG, "b0", 2);
  mkdirSync(dirname(file), { recursive: true });
  const line = (i) => `2024-01-01T00:00:00.000Z INFO step b0 processed batch ${i} of the source ${"x".repeat(40)}\n`;
  const parts = [];
  let size = 0;
  for (let i = 0; size < 8 * 1024 * 1024; i++) {
    const l = line(i);
    parts.push(l);
    size += l.length;
  }
  writeFileSync(file, parts.join(""));
  return size;
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] * 100) / 100;
};

async function time(fn, n = ITER) {
  for (let i = 0; i < 5; i++) await fn();
  const xs = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    xs.push(performance.now() - t);
  }
  return { p50: pct(xs, 50), p95: pct(xs, 95) };
}

async function measure(store, home) {
  const app = createApp({
    store,
    home,
    actions: builtinRegistry(),
    auth: AUTH_OFF,
    ready: () => true,
    metrics: { contentType: "text/plain", render: async () => "" },
  });
  const get = async (path) => {
    const res = await app.request(path);
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${text.slice(0, 300)}`);
    return text;
  };
  // Walk to page 500, sampling RSS on the way.
  globalThis.gc?.();
  const rss = [];
  let after;
  let page500;
  const walkStart = performance.now();
  for (let p = 1; p <= 500; p++) {
    const html = await get(`/ui/runs${after ? `?after=${after}` : ""}`);
    if (p === 500) page500 = after;
    const m = /after=([A-Za-z0-9_-]+)" rel="next"/.exec(html);
    after = m?.[1];
    if (p % 25 === 0) rss.push(Math.round(process.memoryUsage().rss / 1048576));
  }
  const walkMs = performance.now() - walkStart;
  const out = {
    runsFirstPage: await time(() => get("/ui/runs")),
    runsFiltered: await time(() => get("/ui/runs?workflow=wf-3&status=failed")),
    runsPage500: await time(() => get(`/ui/runs?after=${page500}`)),
    runPage200Steps: await time(() => get(`/ui/runs/${BIG}`)),
    logPage8MB: await time(() => get(`/ui/runs/${BIG}/steps/b0/attempts/2/log`)),
    baselineStorePage: await time(() => store.listRunsPage({ limit: 50 })),
    walk500PagesMs: Math.round(walkMs),
    rssMbWhilePaging: { first: rss[0], max: Math.max(...rss), last: rss.at(-1) },
  };
  const checks = [out.runsFirstPage, out.runsFiltered, out.runsPage500, out.runPage200Steps, out.logPage8MB];
  out.allP95Under100ms = checks.every((c) => c.p95 < 100);
  return out;
}

const result = { bench: "ui", runs: N, stepsPerRun: STEPS, iterations: ITER, targetP95Ms: 100 };
const dir = mkdtempSync(join(tmpdir(), "sluice-bench-ui-"));
try {
  const file = join(dir, "sluice.db");
  openSqliteStore(file).close();
  let t = performance.now();
  seedSqlite(file);
  const seedSqliteMs = Math.round(performance.now() - t);
  writeBigLog(dir);
  const sqlite = openSqliteStore(file);
  result.sqlite = { seedMs: seedSqliteMs, ...(await measure(sqlite, dir)) };
  await sqlite.close();

  let pgStore;
  try {
    pgStore = await openPostgresStore(PG_URL, { schema: SCHEMA });
  } catch (err) {
    result.postgres = { skipped: `no PostgreSQL at ${PG_URL.replace(/\/\/[^@]*@/, "//")}: ${err.message}` };
  }
  if (pgStore) {
    try {
      t = performance.now();
      await seedPostgres();
      result.postgres = { seedMs: Math.round(performance.now() - t), ...(await measure(pgStore, dir)) };
    } finally {
      await pgStore.close();
      const c = new pg.Client(PG_URL);
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
      await c.end();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");

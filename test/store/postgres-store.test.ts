/**
 * The PostgreSQL state store against a real server: migrations (and the upgrade of an older
 * store, on both dialects), leases and fencing, recovery and the ingested-files ledger. (The engine's behaviours run on it in test/engine/engine.test.ts.)
 * Each test run uses its own schema, dropped at the end.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../../src/store/index.js";
import Database from "better-sqlite3";
import { join } from "node:path";
import { openPostgresStore } from "../../src/store/postgres.js";
import { POSTGRES_MIGRATIONS } from "../../src/store/postgres-migrations.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import { SQLITE_MIGRATIONS } from "../../src/store/sqlite-migrations.js";
import type { StateStore } from "../../src/store/types.js";
import { tempDir, workflow } from "../helpers.js";

const URL_ = "postgres://postgres@127.0.0.1:5432/test";
const suffix = randomUUID().replace(/-/g, "").slice(0, 12);
const schema = `sluice_t_${suffix}`;
const extraSchemas: string[] = [];

let admin: pg.Client;
let store: StateStore;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: URL_ });
  await admin.connect();
  store = await openPostgresStore(URL_, { schema });
});

afterAll(async () => {
  await store?.close();
  for (const s of [schema, ...extraSchemas]) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await admin.end();
});

let seq = 0;
/** A run created straight through the store, steps a, b, c. */
async function newRun(steps = ["a", "b", "c"], name = "lease-flow") {
  const wf = workflow({ steps: steps.map((s) => ({ name: s, agent: "test", action: "echo", with: { value: s } })) }, undefined, name);
  const id = `run-${suffix}-${++seq}`;
  const created = new Date(Date.UTC(2024, 0, 1, 0, 0, seq)).toISOString();
  return store.createRun({ id, workflow: wf, source: null, params: { p: seq }, trigger: { type: "manual" }, createdAt: created });
}

describe("migrations", () => {
  it("migrate once when several processes open a fresh schema at once, and again is a no-op", async () => {
    const fresh = `sluice_m_${suffix}`;
    extraSchemas.push(fresh);
    const stores = await Promise.all([1, 2, 3].map(() => openPostgresStore(URL_, { schema: fresh })));
    expect(stores.map((s) => s.dialect)).toEqual(["postgres", "postgres", "postgres"]);
    await Promise.all(stores.map((s) => s.close()));
    const again = await openPostgresStore(URL_, { schema: fresh });
    await again.close();

    const versions = await admin.query(`SELECT version FROM "${fresh}".schema_migrations ORDER BY version`);
    expect(versions.rows.map((r) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((m) => m.version));
    expect(POSTGRES_MIGRATIONS.map((m) => m.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const tables = await admin.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, [fresh]);
    expect(tables.rows.map((r) => r.table_name)).toEqual([
      "attempts",
      "audit_checkpoints",
      "audit_log",
      "events",
      "fires",
      "ingested_files",
      "leases",
      "runs",
      "schema_migrations",
      "shared_state",
      "steps",
      "workflows",
    ]);
  });

  it("an older store's ingested files stay ingested after the file-ledger migration (SQLite and PostgreSQL)", async () => {
    // PostgreSQL: a schema at version 5 with one ingested file, then opened by this Sluice.
    const old = `sluice_o_${suffix}`;
    extraSchemas.push(old);
    await admin.query(`CREATE SCHEMA "${old}"`);
    await admin.query("BEGIN");
    await admin.query(`SET LOCAL search_path TO "${old}"`);
    await admin.query(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`);
    for (const m of POSTGRES_MIGRATIONS.filter((m) => m.version <= 5)) {
      await admin.query(m.sql);
      await admin.query(`INSERT INTO schema_migrations VALUES ($1, 'then')`, [m.version]);
    }
    await admin.query(`INSERT INTO ingested_files VALUES ('wf:/in', 'c-old', '/in/a.csv', 10, 'r-old', '2025-01-01T00:00:00.000Z')`);
    await admin.query("COMMIT");
    const pgStore = await openPostgresStore(URL_, { schema: old });
    expect(await pgStore.ingestedChecksums("wf:/in", ["c-old"])).toEqual(new Set(["c-old"]));
    expect(await pgStore.rejectedFiles("wf:/in", ["c-old"])).toEqual([]);
    await pgStore.close();

    // SQLite: a file at version 3, the same.
    const file = join(tempDir(), "state.db");
    const db = new Database(file);
    db.exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`);
    for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 3)) {
      db.exec(m.sql);
      db.prepare(`INSERT INTO schema_migrations VALUES (?, 'then')`).run(m.version);
    }
    db.prepare(`INSERT INTO ingested_files VALUES ('wf:/in', 'c-old', '/in/a.csv', 10, 'r-old', '2025-01-01T00:00:00.000Z')`).run();
    db.close();
    const sqlite = openSqliteStore(file);
    expect(await sqlite.ingestedChecksums("wf:/in", ["c-old"])).toEqual(new Set(["c-old"]));
    expect(await sqlite.rejectedFiles("wf:/in", ["c-old"])).toEqual([]);
    await sqlite.close();
  });

  it("an older store's attempts read without usage after the usage migration, and new ends record it (SQLite and PostgreSQL)", async () => {
    const usage = { cpuMs: 41.5, peakMemoryBytes: 210 * 1024 * 1024, readBytes: 4096, writtenBytes: 52_428_800, scope: "process-tree" as const };
    const wf = workflow({
      steps: [
        { name: "a", agent: "test", action: "echo", with: { value: 1 } },
        { name: "b", agent: "test", action: "echo", with: { value: 2 } },
      ],
    });
    const at = "2025-01-01T00:00:00.000Z";
    const end = { owner: "w", status: "succeeded" as const, endedAt: at, error: null, outputs: {}, stepStatus: "succeeded" as const, notBefore: null };
    const check = async (s: StateStore, runId: string) => {
      expect((await s.getAttempts(runId)).map((a) => [a.step, a.status, a.usage])).toEqual([["a", "succeeded", null]]);
      await s.applyTransitions([
        { kind: "begin", runId, step: "b", n: 1, owner: "w", startedAt: at },
        { kind: "end", runId, step: "b", n: 1, ...end, usage },
      ]);
      expect((await s.getAttempts(runId)).find((a) => a.step === "b")!.usage).toEqual(usage);
    };
    const spec = JSON.stringify(wf);

    // PostgreSQL: a schema at version 6 with an ended attempt, then opened by this Sluice.
    const old = `sluice_u_${suffix}`;
    extraSchemas.push(old);
    await admin.query(`CREATE SCHEMA "${old}"`);
    await admin.query("BEGIN");
    await admin.query(`SET LOCAL search_path TO "${old}"`);
    await admin.query(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`);
    for (const m of POSTGRES_MIGRATIONS.filter((m) => m.version <= 6)) {
      await admin.query(m.sql);
      await admin.query(`INSERT INTO schema_migrations VALUES ($1, 'then')`, [m.version]);
    }
    await admin.query(
      `INSERT INTO runs (id, workflow, spec, params, status, created_at, lease_owner, lease_expires_at) VALUES ('r-u', 'test-flow', $1, '{}', 'running', $2, 'w', $3)`,
      [spec, at, Date.now() + 60_000],
    );
    await admin.query(`INSERT INTO steps (run_id, name, idx, status) VALUES ('r-u', 'a', 0, 'succeeded'), ('r-u', 'b', 1, 'pending')`);
    await admin.query(`INSERT INTO attempts (run_id, step, n, status, started_at, ended_at, owner) VALUES ('r-u', 'a', 1, 'succeeded', $1, $1, 'w')`, [at]);
    await admin.query("COMMIT");
    const pgStore = await openPostgresStore(URL_, { schema: old });
    await check(pgStore, "r-u");
    await pgStore.close();

    // SQLite: a file at version 4, the same.
    const file = join(tempDir(), "state.db");
    const db = new Database(file);
    db.exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`);
    for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 4)) {
      db.exec(m.sql);
      db.prepare(`INSERT INTO schema_migrations VALUES (?, 'then')`).run(m.version);
    }
    db.prepare(
      `INSERT INTO runs (id, workflow, spec, params, status, created_at, lease_owner, lease_expires_at) VALUES ('r-u', 'test-flow', ?, '{}', 'running', ?, 'w', ?)`,
    ).run(spec, at, Date.now() + 60_000);
    db.prepare(`INSERT INTO steps (run_id, name, idx, status) VALUES ('r-u', 'a', 0, 'succeeded'), ('r-u', 'b', 1, 'pending')`).run();
    db.prepare(`INSERT INTO attempts (run_id, step, n, status, started_at, ended_at, owner) VALUES ('r-u', 'a', 1, 'succeeded', ?, ?, 'w')`).run(at, at);
    db.close();
    const sqlite = openSqliteStore(file);
    await check(sqlite, "r-u");
    await sqlite.close();
  });

  it("refuses a store written by a newer Sluice", async () => {
    const newer = `sluice_n_${suffix}`;
    extraSchemas.push(newer);
    await (await openPostgresStore(URL_, { schema: newer })).close();
    await admin.query(`INSERT INTO "${newer}".schema_migrations VALUES (99, 'x')`);
    await expect(openPostgresStore(URL_, { schema: newer })).rejects.toMatchObject({
      code: "BAD_CONFIG",
      message: expect.stringMatching(/newer Sluice \(schema 99/),
    });
  });
});

describe("opening", () => {
  it("names host:port, never the password, when the server cannot be reached", async () => {
    const err = await openStore({ SLUICE_DATABASE_URL: "postgres://postgres:s3cr3t-pw@127.0.0.1:1/test" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "NETWORK_ERROR", message: expect.stringMatching(/PostgreSQL at 127\.0\.0\.1:1 .*connection refused/) });
    expect(String((err as Error).message)).not.toContain("s3cr3t");
  });

  it("opens SQLite without a postgres URL and rejects other URLs", async () => {
    const s = await openStore({ SLUICE_HOME: tempDir() });
    expect(s.dialect).toBe("sqlite");
    await s.close();
    await expect(openStore({ SLUICE_DATABASE_URL: "mysql://x@y/z" })).rejects.toMatchObject({ code: "BAD_CONFIG" });
  });
});

describe("runs and leases", () => {
  it("creates a run with its steps and reads it back like the SQLite store", async () => {
    const run = await newRun();
    expect(run).toMatchObject({
      status: "pending",
      workflow: "lease-flow",
      params: { p: seq },
      trigger: { type: "manual" },
      cancelRequested: false,
      leaseOwner: null,
      leaseExpiresAt: null,
    });
    expect(run.spec.spec.steps.map((s) => s.name)).toEqual(["a", "b", "c"]);
    expect((await store.getSteps(run.id)).map((s) => [s.name, s.idx, s.status, s.attempts])).toEqual([
      ["a", 0, "pending", 0],
      ["b", 1, "pending", 0],
      ["c", 2, "pending", 0],
    ]);
    expect(await store.getRun("no-such-run")).toBeUndefined();
  });

  it("claims, renews, reports cancel requests, expires and fences attempts", async () => {
    const run = await newRun();
    const t = 1_700_000_000_000;
    expect(await store.claimRun(run.id, "A", 1_000, t)).toBe(true);
    expect(await store.claimRun(run.id, "B", 1_000, t + 500)).toBe(false); // live lease held by A
    expect(await store.claimRun(run.id, "A", 1_000, t + 500)).toBe(true); // ours: re-claim
    expect((await store.getRun(run.id))!.leaseExpiresAt).toBe(t + 1_500);
    expect(await store.renewLease(run.id, "A", 1_000, t + 900)).toEqual({ held: true, cancelRequested: false });
    expect(await store.renewLease(run.id, "B", 1_000, t + 900)).toEqual({ held: false, cancelRequested: false });

    await store.markRunStarted(run.id, "A", new Date(t).toISOString(), null);
    await expect(store.markRunStarted(run.id, "B", new Date(t).toISOString(), null)).rejects.toMatchObject({ code: "LEASE_LOST" });
    await expect(store.beginAttempt(run.id, "a", 1, "B", new Date(t).toISOString())).rejects.toMatchObject({ code: "LEASE_LOST" });
    await store.beginAttempt(run.id, "a", 1, "A", new Date(t).toISOString());
    await store.beginAttempt(run.id, "b", 1, "A", new Date(t).toISOString());
    expect((await store.getSteps(run.id)).map((s) => [s.name, s.status, s.attempts])).toEqual([
      ["a", "running", 1],
      ["b", "running", 1],
      ["c", "pending", 0],
    ]);

    await store.endAttempt({
      runId: run.id,
      step: "a",
      n: 1,
      owner: "A",
      status: "failed",
      endedAt: new Date(t + 10).toISOString(),
      error: { code: "NETWORK_ERROR", message: "boom" },
      outputs: null,
      stepStatus: "pending",
      notBefore: t + 5_000,
    });
    const a = (await store.getSteps(run.id))[0]!;
    expect(a).toMatchObject({ status: "pending", notBefore: t + 5_000, endedAt: null, error: { code: "NETWORK_ERROR", message: "boom" } });

    await store.requestCancel(run.id);
    expect(await store.renewLease(run.id, "A", 1_000, t + 1_000)).toEqual({ held: true, cancelRequested: true });

    // A stops renewing; once its lease has expired B takes over and A can record nothing more.
    expect(await store.claimRun(run.id, "B", 1_000, t + 2_001)).toBe(true);
    await expect(store.beginAttempt(run.id, "c", 1, "A", new Date(t).toISOString())).rejects.toMatchObject({ code: "LEASE_LOST" });
    expect(await store.recoverInterrupted(run.id, "B", new Date(t + 2_002).toISOString())).toBe(1);
    await expect(
      store.endAttempt({
        runId: run.id,
        step: "b",
        n: 1,
        owner: "A",
        status: "succeeded",
        endedAt: new Date(t + 3_000).toISOString(),
        error: null,
        outputs: { late: true },
        stepStatus: "succeeded",
        notBefore: null,
      }),
    ).rejects.toMatchObject({ code: "LEASE_LOST" });
    const attempts = await store.getAttempts(run.id);
    expect(attempts.map((x) => [x.step, x.n, x.status, x.owner])).toEqual([
      ["a", 1, "failed", "A"],
      ["b", 1, "interrupted", "A"],
    ]);
    expect(attempts[1]!.error?.code).toBe("INTERRUPTED");
    expect((await store.getSteps(run.id)).map((s) => [s.name, s.status, s.outputs])).toEqual([
      ["a", "pending", null],
      ["b", "pending", null],
      ["c", "pending", null],
    ]);

    // B goes on with attempt 2; the old owner cannot finish the run, B can.
    await store.beginAttempt(run.id, "b", 2, "B", new Date(t + 3_000).toISOString());
    await store.endAttempt({
      runId: run.id,
      step: "b",
      n: 2,
      owner: "B",
      status: "succeeded",
      endedAt: new Date(t + 3_100).toISOString(),
      error: null,
      outputs: { rows: 3 },
      stepStatus: "succeeded",
      notBefore: null,
    });
    await store.settleSteps(run.id, ["a", "b", "c"], "cancelled", new Date(t + 3_200).toISOString(), { code: "CANCELLED", message: "the run was cancelled" });
    expect((await store.getSteps(run.id)).map((s) => [s.name, s.status, s.outputs])).toEqual([
      ["a", "cancelled", null],
      ["b", "succeeded", { rows: 3 }],
      ["c", "cancelled", null],
    ]);
    await store.finishRun(run.id, "A", "failed", new Date(t + 3_300).toISOString(), null);
    expect((await store.getRun(run.id))!.status).toBe("running");
    await store.finishRun(run.id, "B", "cancelled", new Date(t + 3_300).toISOString(), { code: "CANCELLED", message: "the run was cancelled" });
    expect(await store.getRun(run.id)).toMatchObject({
      status: "cancelled",
      leaseOwner: null,
      leaseExpiresAt: null,
      cancelRequested: true,
      error: { code: "CANCELLED" },
    });
    expect(await store.claimRun(run.id, "C", 1_000, t + 9_000)).toBe(false); // finished runs cannot be claimed
  });

  it("never leaves an attempt of the old owner running when a takeover races its beginAttempt", async () => {
    const run = await newRun(["a"]);
    const t = Date.now();
    expect(await store.claimRun(run.id, "old", 10, t)).toBe(true);
    // Hold the step row so the old owner's beginAttempt stalls after it has checked its lease.
    const blocker = new pg.Client({ connectionString: URL_ });
    await blocker.connect();
    await blocker.query("BEGIN");
    await blocker.query(`SELECT 1 FROM "${schema}".steps WHERE run_id = $1 FOR UPDATE`, [run.id]);
    const begin = store.beginAttempt(run.id, "a", 1, "old", new Date(t).toISOString()).then(
      () => "recorded",
      (e: { code: string }) => e.code,
    );
    await new Promise((r) => setTimeout(r, 100));
    // The new owner claims the expired lease and recovers: it must wait for the old attempt (or fence it out).
    const takeover = (async () => {
      const claimed = await store.claimRun(run.id, "new", 10_000, t + 1_000);
      return { claimed, recovered: await store.recoverInterrupted(run.id, "new", new Date().toISOString()) };
    })();
    await new Promise((r) => setTimeout(r, 200));
    await blocker.query("COMMIT");
    await blocker.end();
    const [began, { claimed, recovered }] = await Promise.all([begin, takeover]);
    expect(claimed).toBe(true);
    const attempts = await store.getAttempts(run.id);
    expect(attempts.filter((a) => a.status === "running")).toEqual([]);
    expect(recovered).toBe(began === "recorded" ? 1 : 0);
    expect((await store.getSteps(run.id))[0]!.status).toBe("pending");
  });

  it("lists runs newest first with workflow, status and limit filters", async () => {
    const x1 = await newRun(["a"], "list-x");
    const y1 = await newRun(["a"], "list-y");
    const x2 = await newRun(["a"], "list-x");
    await store.finishRun(x2.id, null, "succeeded", new Date().toISOString(), null); // no owner: direct
    expect((await store.listRuns({ workflow: "list-x" })).map((r) => r.id)).toEqual([x2.id, x1.id]);
    expect((await store.listRuns({ workflow: "list-x", status: "pending" })).map((r) => r.id)).toEqual([x1.id]);
    expect((await store.listRuns({ status: "succeeded" })).map((r) => r.id)).toContain(x2.id);
    const top = await store.listRuns({ limit: 2 });
    expect(top.map((r) => r.id)).toEqual([x2.id, y1.id]);
  });
});

describe("ingested-files ledger", () => {
  it("remembers checksums per scope, and recording again is harmless", async () => {
    const run = await newRun(["a"]);
    expect(await store.ingestedChecksums("wf:src", ["c1", "c2"])).toEqual(new Set());
    await store.recordIngested(
      "wf:src",
      [
        { checksum: "c1", path: "/d/1.csv", size: 5_000_000_000 },
        { checksum: "c2", path: "/d/2.csv", size: 2 },
      ],
      run.id,
    );
    await store.recordIngested(
      "wf:src",
      [
        { checksum: "c2", path: "/d/2-again.csv", size: 2 },
        { checksum: "c3", path: "/d/3.csv", size: 3 },
      ],
      run.id,
    );
    await store.recordIngested("wf:src", [], run.id);
    expect(await store.ingestedChecksums("wf:src", ["c1", "c2", "c3", "c4"])).toEqual(new Set(["c1", "c2", "c3"]));
    expect(await store.ingestedChecksums("other", ["c1"])).toEqual(new Set());
    expect(await store.ingestedChecksums("wf:src", [])).toEqual(new Set());
    const row = await admin.query(`SELECT path, size FROM "${schema}".ingested_files WHERE scope = 'wf:src' AND checksum = 'c2'`);
    expect(row.rows[0]).toEqual({ path: "/d/2.csv", size: "2" });
  });
});

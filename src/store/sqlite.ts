/**
 * The embedded SQLite state store (better-sqlite3, WAL).
 *
 * synchronous=NORMAL in WAL mode: a commit survives a crash or `kill -9` of the process (the WAL
 * is in the OS page cache) but the last transactions may be lost on power failure. That is the
 * trade the laptop default makes for thousands of durable transitions per second; the fleet
 * runs on PostgreSQL.
 */
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { SluiceError } from "../errors.js";
import { SQLITE_MIGRATIONS } from "./sqlite-migrations.js";
import { toAttempt, toRun, toStep, type Row } from "./rows.js";
import type {
  AttemptEnd, ErrorInfo, IngestedFile, LeaseState, NewRun, RunFilter, RunStatus, StateStore, StepStatus,
} from "./types.js";


export function openSqliteStore(file: string): StateStore {
  if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db);

  const q = {
    insertRun: db.prepare(
      `INSERT INTO runs (id, workflow, spec, source, params, trigger, status, created_at)
       VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)`,
    ),
    insertStep: db.prepare(`INSERT INTO steps (run_id, name, idx, status) VALUES (?, ?, ?, 'pending')`),
    getRun: db.prepare(`SELECT * FROM runs WHERE id = ?`),
    getSteps: db.prepare(`SELECT * FROM steps WHERE run_id = ? ORDER BY idx`),
    getAttempts: db.prepare(`SELECT * FROM attempts WHERE run_id = ? ORDER BY step, n`),
    claim: db.prepare(
      `UPDATE runs SET lease_owner = @owner, lease_expires_at = @expires
        WHERE id = @id AND status IN ('pending', 'running')
          AND (lease_owner IS NULL OR lease_owner = @owner OR lease_expires_at < @now)`,
    ),
    renew: db.prepare(
      `UPDATE runs SET lease_expires_at = @expires WHERE id = @id AND lease_owner = @owner RETURNING cancel_requested`,
    ),
    release: db.prepare(`UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?`),
    interruptAttempts: db.prepare(
      `UPDATE attempts SET status = 'interrupted', ended_at = @endedAt, error_code = 'INTERRUPTED',
              error_message = 'the process running this attempt stopped (its lease expired) before it finished'
        WHERE run_id = @runId AND status = 'running'`,
    ),
    interruptSteps: db.prepare(`UPDATE steps SET status = 'pending' WHERE run_id = ? AND status = 'running'`),
    startRun: db.prepare(
      `UPDATE runs SET status = 'running', started_at = COALESCE(started_at, @startedAt),
              deadline_at = COALESCE(deadline_at, @deadlineAt)
        WHERE id = @id AND lease_owner = @owner`,
    ),
    finishRun: db.prepare(
      `UPDATE runs SET status = @status, ended_at = @endedAt, error_code = @code, error_message = @message,
              lease_owner = NULL, lease_expires_at = NULL
        WHERE id = @id AND (@owner IS NULL OR lease_owner = @owner)`,
    ),
    beginAttempt: db.prepare(
      `INSERT INTO attempts (run_id, step, n, status, started_at, owner)
       SELECT @runId, @step, @n, 'running', @startedAt, @owner
        WHERE EXISTS (SELECT 1 FROM runs WHERE id = @runId AND lease_owner = @owner)`,
    ),
    stepRunning: db.prepare(
      `UPDATE steps SET status = 'running', attempts = @n, started_at = COALESCE(started_at, @startedAt),
              not_before = NULL
        WHERE run_id = @runId AND name = @step`,
    ),
    endAttempt: db.prepare(
      `UPDATE attempts SET status = @status, ended_at = @endedAt, error_code = @code, error_message = @message
        WHERE run_id = @runId AND step = @step AND n = @n AND status = 'running' AND owner = @owner`,
    ),
    stepEnded: db.prepare(
      `UPDATE steps SET status = @stepStatus, not_before = @notBefore, outputs = COALESCE(@outputs, outputs),
              ended_at = CASE WHEN @stepStatus = 'pending' THEN NULL ELSE @endedAt END,
              error_code = @code, error_message = @message
        WHERE run_id = @runId AND name = @step`,
    ),
    settleStep: db.prepare(
      `UPDATE steps SET status = @status, ended_at = @endedAt,
              error_code = COALESCE(@code, error_code), error_message = COALESCE(@message, error_message)
        WHERE run_id = @runId AND name = @step AND status IN ('pending', 'running')`,
    ),
    cancel: db.prepare(`UPDATE runs SET cancel_requested = 1 WHERE id = ?`),
    isIngested: db.prepare(`SELECT 1 FROM ingested_files WHERE scope = ? AND checksum = ?`),
    recordIngested: db.prepare(
      `INSERT INTO ingested_files (scope, checksum, path, size, run_id, ingested_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (scope, checksum) DO NOTHING`,
    ),
  };

  const createRun = db.transaction((run: NewRun) => {
    q.insertRun.run(
      run.id, run.workflow.metadata.name, JSON.stringify(run.workflow), run.source, JSON.stringify(run.params),
      run.trigger ? JSON.stringify(run.trigger) : null, run.createdAt,
    );
    run.workflow.spec.steps.forEach((s, i) => q.insertStep.run(run.id, s.name, i));
  });
  const begin = db.transaction((runId: string, step: string, n: number, owner: string, startedAt: string) => {
    const r = q.beginAttempt.run({ runId, step, n, owner, startedAt });
    if (r.changes !== 1) throw leaseLost(runId);
    q.stepRunning.run({ runId, step, n, startedAt });
  });
  const end = db.transaction((e: AttemptEnd) => {
    const common = { runId: e.runId, step: e.step, code: e.error?.code ?? null, message: e.error?.message ?? null };
    const r = q.endAttempt.run({ ...common, n: e.n, owner: e.owner, status: e.status, endedAt: e.endedAt });
    if (r.changes !== 1) throw leaseLost(e.runId);
    q.stepEnded.run({
      ...common, stepStatus: e.stepStatus, notBefore: e.notBefore, endedAt: e.endedAt,
      outputs: e.outputs ? JSON.stringify(e.outputs) : null,
    });
  });
  const settle = db.transaction((runId: string, steps: string[], status: StepStatus, endedAt: string, error: ErrorInfo | null) => {
    for (const step of steps) q.settleStep.run({ runId, step, status, endedAt, code: error?.code ?? null, message: error?.message ?? null });
  });
  const recordIngested = db.transaction((scope: string, files: IngestedFile[], runId: string) => {
    const at = new Date().toISOString();
    for (const f of files) q.recordIngested.run(scope, f.checksum, f.path, f.size, runId, at);
  });
  const recover = db.transaction((runId: string, endedAt: string) => {
    const n = q.interruptAttempts.run({ runId, endedAt }).changes;
    q.interruptSteps.run(runId);
    return n;
  });

  return {
    dialect: "sqlite",
    async createRun(run) {
      createRun(run);
      return toRun(q.getRun.get(run.id) as Row);
    },
    async getRun(id) {
      const row = q.getRun.get(id) as Row | undefined;
      return row ? toRun(row) : undefined;
    },
    async listRuns(filter: RunFilter = {}) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.workflow) (where.push("workflow = ?"), args.push(filter.workflow));
      if (filter.status) (where.push("status = ?"), args.push(filter.status));
      const sql = `SELECT * FROM runs ${where.length ? "WHERE " + where.join(" AND ") : ""}
                   ORDER BY created_at DESC, id DESC LIMIT ?`;
      return (db.prepare(sql).all(...args, filter.limit ?? 50) as Row[]).map(toRun);
    },
    async getSteps(runId) {
      return (q.getSteps.all(runId) as Row[]).map(toStep);
    },
    async getAttempts(runId) {
      return (q.getAttempts.all(runId) as Row[]).map(toAttempt);
    },
    async claimRun(runId, owner, ttlMs, now) {
      return q.claim.run({ id: runId, owner, expires: now + ttlMs, now }).changes === 1;
    },
    async renewLease(runId, owner, ttlMs, now): Promise<LeaseState> {
      const row = q.renew.get({ id: runId, owner, expires: now + ttlMs }) as { cancel_requested: number } | undefined;
      return row ? { held: true, cancelRequested: row.cancel_requested === 1 } : { held: false, cancelRequested: false };
    },
    async releaseLease(runId, owner) {
      q.release.run(runId, owner);
    },
    async recoverInterrupted(runId, _owner, endedAt) {
      return recover(runId, endedAt);
    },
    async markRunStarted(runId, owner, startedAt, deadlineAt) {
      if (q.startRun.run({ id: runId, owner, startedAt, deadlineAt }).changes !== 1) throw leaseLost(runId);
    },
    async finishRun(runId, owner, status: RunStatus, endedAt, error) {
      q.finishRun.run({ id: runId, owner, status, endedAt, code: error?.code ?? null, message: error?.message ?? null });
    },
    async beginAttempt(runId, step, n, owner, startedAt) {
      begin(runId, step, n, owner, startedAt);
    },
    async endAttempt(e) {
      end(e);
    },
    async settleSteps(runId, steps, status, endedAt, error) {
      if (steps.length) settle(runId, steps, status, endedAt, error);
    },
    async requestCancel(runId) {
      q.cancel.run(runId);
    },
    async ingestedChecksums(scope, checksums) {
      return new Set(checksums.filter((c) => q.isIngested.get(scope, c) !== undefined));
    },
    async recordIngested(scope, files, runId) {
      if (files.length) recordIngested(scope, files, runId);
    },
    async close() {
      db.close();
    },
  };
}

function migrate(db: Database.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`);
  const applied = new Set((db.prepare(`SELECT version FROM schema_migrations`).all() as { version: number }[]).map((r) => r.version));
  const latest = Math.max(0, ...applied);
  const known = Math.max(...SQLITE_MIGRATIONS.map((m) => m.version));
  if (latest > known)
    throw new SluiceError("BAD_CONFIG", `the state store was written by a newer Sluice (schema ${latest}, this one knows ${known}); upgrade Sluice`);
  for (const m of SQLITE_MIGRATIONS) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`).run(m.version, new Date().toISOString());
    }).immediate();
  }
}

function leaseLost(runId: string): SluiceError {
  return new SluiceError("LEASE_LOST", `run ${runId} is now owned by another process; this one stops working on it`, { retryable: false });
}

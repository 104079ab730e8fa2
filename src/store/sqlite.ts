/**
 * The embedded SQLite state store (better-sqlite3, WAL).
 *
 * synchronous=NORMAL in WAL mode: a commit survives a crash or `kill -9` of the process (the WAL
 * is in the OS page cache) but the last transactions may be lost on power failure. That is the
 * trade the laptop default makes for thousands of durable transitions per second; the fleet
 * runs on PostgreSQL.
 */
import { stepNamesOf } from "../spec/schema.js";
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { SluiceError } from "../errors.js";
import { SQLITE_MIGRATIONS } from "./sqlite-migrations.js";
import { MIGRATIONS_TABLE_SQL, migrationPlan } from "./migrate.js";
import { sqliteAudit } from "./sqlite-audit.js";
import { SUMMARY_COLUMNS, decodeCursor, toPage, toRunSummary } from "./run-page.js";
import { EventEmitter } from "node:events";
import { toSharedState, toAttempt, toEvent, toFire, toRun, toStep, toWorkflowVersion, usageColumns, detailsColumn, type Row } from "./rows.js";
import type {
  AttemptBegin,
  AttemptEnd,
  ErrorInfo,
  IngestedFile,
  LeaseState,
  NewRun,
  RejectedFile,
  RejectedFileRecord,
  RunCount,
  RunFilter,
  RunStatus,
  StateStore,
  StepStatus,
  Transition,
} from "./types.js";

/**
 * Wake-ups for workers of this process when a run is queued. SQLite has no LISTEN/NOTIFY; other
 * processes sharing the file find queued runs by polling.
 */
const queued = new EventEmitter().setMaxListeners(0);

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
      `INSERT INTO runs (id, workflow, spec, source, params, trigger, status, created_at, event_id, lease_owner, lease_expires_at, workflow_version, trigger_type)
       VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)`,
    ),
    insertStep: db.prepare(`INSERT INTO steps (run_id, name, idx, status) VALUES (?, ?, ?, 'pending')`),
    getRun: db.prepare(`SELECT * FROM runs WHERE id = ?`),
    // Items of a fan-out share their parent's idx: `load[2]` before `load[10]`.
    getSteps: db.prepare(`SELECT * FROM steps WHERE run_id = ? ORDER BY idx, length(name), name`),
    insertStepIfMissing: db.prepare(`INSERT INTO steps (run_id, name, idx, status) VALUES (?, ?, ?, 'pending') ON CONFLICT DO NOTHING`),
    leaseHeld: db.prepare(`SELECT 1 FROM runs WHERE id = ? AND lease_owner = ?`),
    parentRunning: db.prepare(`UPDATE steps SET status = 'running', started_at = COALESCE(started_at, ?) WHERE run_id = ? AND name = ?`),
    completeStep: db.prepare(
      `UPDATE steps SET status = @status, ended_at = @endedAt, outputs = COALESCE(@outputs, outputs), not_before = NULL,
              error_code = @code, error_message = @message, error_details = @details
        WHERE run_id = @runId AND name = @step`,
    ),
    getAttempts: db.prepare(`SELECT * FROM attempts WHERE run_id = ? ORDER BY step, n`),
    claim: db.prepare(
      `UPDATE runs SET lease_owner = @owner, lease_expires_at = @expires
        WHERE id = @id AND status IN ('pending', 'running')
          AND (lease_owner IS NULL OR lease_owner = @owner OR lease_expires_at < @now)`,
    ),
    takeOver: db.prepare(
      `UPDATE runs SET lease_owner = @owner, lease_expires_at = @expires
        WHERE id = @id AND status IN ('pending', 'running') AND lease_owner = @deadOwner`,
    ),
    renew: db.prepare(`UPDATE runs SET lease_expires_at = @expires WHERE id = @id AND lease_owner = @owner RETURNING cancel_requested`),
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
    // The storage steps' counts are summed here, once, so that a list of runs never reads steps.
    finishRun: db.prepare(
      `UPDATE runs SET status = @status, ended_at = @endedAt, error_code = @code, error_message = @message,
              lease_owner = NULL, lease_expires_at = NULL,
              (rows_in, rows_stored, rows_quarantined, rows_duplicate) = (
                SELECT sum(json_extract(outputs, '$.rowsIn')), sum(json_extract(outputs, '$.rowsStored')),
                       sum(json_extract(outputs, '$.rowsQuarantined')), sum(json_extract(outputs, '$.rowsDuplicate'))
                  FROM steps WHERE run_id = @id AND outputs LIKE '%"rowsStored"%')
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
      `UPDATE attempts SET status = @status, ended_at = @endedAt, error_code = @code, error_message = @message,
              error_details = @details, cpu_ms = @cpuMs, peak_memory_bytes = @peakMemoryBytes, read_bytes = @readBytes, written_bytes = @writtenBytes,
              usage_scope = @usageScope
        WHERE run_id = @runId AND step = @step AND n = @n AND status = 'running' AND owner = @owner`,
    ),
    stepEnded: db.prepare(
      `UPDATE steps SET status = @stepStatus, not_before = @notBefore, outputs = COALESCE(@outputs, outputs),
              ended_at = CASE WHEN @stepStatus = 'pending' THEN NULL ELSE @endedAt END,
              error_code = @code, error_message = @message, error_details = @details
        WHERE run_id = @runId AND name = @step`,
    ),
    settleStep: db.prepare(
      `UPDATE steps SET status = @status, ended_at = @endedAt,
              error_code = COALESCE(@code, error_code), error_message = COALESCE(@message, error_message),
              error_details = CASE WHEN @code IS NULL THEN error_details ELSE @details END
        WHERE run_id = @runId AND name = @step AND status IN ('pending', 'running')`,
    ),
    cancel: db.prepare(`UPDATE runs SET cancel_requested = 1 WHERE id = ?`),
    isIngested: db.prepare(`SELECT 1 FROM ingested_files WHERE scope = ? AND checksum = ? AND status = 'ingested'`),
    recordIngested: db.prepare(
      `INSERT INTO ingested_files (scope, checksum, path, size, run_id, ingested_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (scope, checksum) DO UPDATE SET status = 'ingested', reason = NULL, path = excluded.path, size = excluded.size,
              run_id = excluded.run_id, ingested_at = excluded.ingested_at
        WHERE ingested_files.status = 'rejected'`,
    ),
    rejected: db.prepare(
      `SELECT checksum, path, size, reason, run_id, ingested_at FROM ingested_files WHERE scope = ? AND checksum = ? AND status = 'rejected'`,
    ),
    recordRejected: db.prepare(
      `INSERT INTO ingested_files (scope, checksum, path, size, run_id, ingested_at, status, reason) VALUES (?, ?, ?, ?, ?, ?, 'rejected', ?)
       ON CONFLICT (scope, checksum) DO UPDATE SET path = excluded.path, size = excluded.size, reason = excluded.reason
        WHERE ingested_files.status = 'rejected'`,
    ),
  };

  const x = {
    openRuns: db.prepare(
      `SELECT id FROM runs WHERE status IN ('pending', 'running') AND (lease_owner IS NULL OR lease_expires_at < ?)
        ORDER BY created_at LIMIT ?`,
    ),
    lease: db.prepare(`UPDATE runs SET lease_owner = ?, lease_expires_at = ? WHERE id = ?`),
    reopenRun: db.prepare(
      `UPDATE runs SET status = 'pending', ended_at = NULL, deadline_at = NULL, error_code = NULL, error_message = NULL,
              cancel_requested = 0, lease_owner = NULL, lease_expires_at = NULL
        WHERE id = ? AND status IN ('failed', 'cancelled')`,
    ),
    reopenStep: db.prepare(
      `UPDATE steps SET status = 'pending', ended_at = NULL, error_code = NULL, error_message = NULL, error_details = NULL, not_before = NULL,
              retry_base = attempts
        WHERE run_id = ? AND name = ?`,
    ),
    countRuns: db.prepare(`SELECT workflow, status, count(*) AS count FROM runs GROUP BY workflow, status ORDER BY workflow, status`),
    currentWorkflow: db.prepare(`SELECT * FROM workflows WHERE name = ? AND current = 1`),
    latestWorkflow: db.prepare(`SELECT * FROM workflows WHERE name = ? ORDER BY version DESC LIMIT 1`),
    workflowVersion: db.prepare(`SELECT * FROM workflows WHERE name = ? AND version = ?`),
    listWorkflows: db.prepare(`SELECT * FROM workflows WHERE current = 1 ORDER BY name`),
    history: db.prepare(`SELECT * FROM workflows WHERE name = ? ORDER BY version`),
    insertWorkflow: db.prepare(`INSERT INTO workflows (name, version, spec, yaml, source, created_at, current) VALUES (?, ?, ?, ?, ?, ?, 1)`),
    uncurrent: db.prepare(`UPDATE workflows SET current = 0 WHERE name = ? AND current = 1`),
    makeCurrent: db.prepare(`UPDATE workflows SET current = 1 WHERE name = ? AND version = ?`),
    insertEvent: db.prepare(`INSERT INTO events (id, name, data, source, created_at) VALUES (?, ?, ?, ?, ?)`),
    getEvent: db.prepare(`SELECT e.*, (SELECT group_concat(r.id) FROM runs r WHERE r.event_id = e.id) AS run_ids FROM events e WHERE e.id = ?`),
    insertFire: db.prepare(`INSERT INTO fires (workflow, trigger_key, fire_at, recorded_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`),
    settleFire: db.prepare(`UPDATE fires SET outcome = ?, run_id = ? WHERE workflow = ? AND trigger_key = ? AND fire_at = ?`),
    lastFire: db.prepare(`SELECT * FROM fires WHERE workflow = ? AND trigger_key = ? ORDER BY fire_at DESC LIMIT 1`),
    unsettled: db.prepare(`SELECT * FROM fires WHERE outcome IS NULL ORDER BY fire_at`),
    acquire: db.prepare(
      `INSERT INTO leases (name, owner, expires_at) VALUES (@name, @owner, @expires)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
        WHERE leases.owner = excluded.owner OR leases.expires_at < @now`,
    ),
    releaseNamed: db.prepare(`DELETE FROM leases WHERE name = ? AND owner = ?`),
    getState: db.prepare(`SELECT * FROM shared_state WHERE namespace = ? AND key = ?`),
    listState: db.prepare(`SELECT * FROM shared_state WHERE namespace = ? ORDER BY key`),
    // Version 0 is "no entry yet": the insert wins only when nobody wrote first.
    insertState: db.prepare(`INSERT INTO shared_state (namespace, key, value, version, updated_at) VALUES (?, ?, ?, 1, ?) ON CONFLICT DO NOTHING`),
    updateState: db.prepare(`UPDATE shared_state SET value = ?, version = version + 1, updated_at = ? WHERE namespace = ? AND key = ? AND version = ?`),
    stepOutputs: db.prepare(`UPDATE steps SET outputs = ? WHERE run_id = ? AND name = ? AND status = 'running'`),
  };
  const wake = () => queued.emit(file);

  const claimRuns = db.transaction((owner: string, expires: number, now: number, limit: number) => {
    const ids = (x.openRuns.all(now, limit) as { id: string }[]).map((r) => r.id);
    for (const id of ids) x.lease.run(owner, expires, id);
    return ids;
  });
  const reopen = db.transaction((runId: string, steps: string[]) => {
    if (x.reopenRun.run(runId).changes !== 1) return false;
    for (const st of steps) x.reopenStep.run(runId, st);
    return true;
  });
  const saveWorkflow = db.transaction((w: { name: string; spec: unknown; yaml: string; source: string | null; createdAt: string }) => {
    const current = x.currentWorkflow.get(w.name) as Row | undefined;
    if (current && current.yaml === w.yaml) return { version: current.version as number, created: false };
    const latest = x.latestWorkflow.get(w.name) as Row | undefined;
    if (!current && latest && latest.yaml === w.yaml) {
      x.makeCurrent.run(w.name, latest.version);
      return { version: latest.version as number, created: false };
    }
    const version = ((latest?.version as number) ?? 0) + 1;
    x.uncurrent.run(w.name);
    x.insertWorkflow.run(w.name, version, JSON.stringify(w.spec), w.yaml, w.source, w.createdAt);
    return { version, created: true };
  });
  const setCurrent = db.transaction((name: string, version: number) => {
    if (!x.workflowVersion.get(name, version)) return false;
    x.uncurrent.run(name);
    x.makeCurrent.run(name, version);
    return true;
  });

  const createRun = db.transaction((run: NewRun) => {
    q.insertRun.run(
      run.id,
      run.workflow.metadata.name,
      JSON.stringify(run.workflow),
      run.source,
      JSON.stringify(run.params),
      run.trigger ? JSON.stringify(run.trigger) : null,
      run.createdAt,
      run.trigger?.eventId ?? null,
      run.lease?.owner ?? null,
      run.lease?.expiresAt ?? null,
      run.version ?? null,
      run.trigger?.type ?? null,
    );
    stepNamesOf(run.workflow).forEach((name, i) => q.insertStep.run(run.id, name, i));
  });
  const begin = (b: AttemptBegin) => {
    const r = q.beginAttempt.run({ runId: b.runId, step: b.step, n: b.n, owner: b.owner, startedAt: b.startedAt });
    if (r.changes !== 1) throw leaseLost(b.runId);
    q.stepRunning.run({ runId: b.runId, step: b.step, n: b.n, startedAt: b.startedAt });
  };
  const end = (e: AttemptEnd) => {
    const common = { runId: e.runId, step: e.step, code: e.error?.code ?? null, message: e.error?.message ?? null, details: detailsColumn(e.error) };
    const r = q.endAttempt.run({ ...common, n: e.n, owner: e.owner, status: e.status, endedAt: e.endedAt, ...usageColumns(e.usage) });
    if (r.changes !== 1) throw leaseLost(e.runId);
    q.stepEnded.run({
      ...common,
      stepStatus: e.stepStatus,
      notBefore: e.notBefore,
      endedAt: e.endedAt,
      outputs: e.outputs ? JSON.stringify(e.outputs) : null,
    });
  };
  const apply = db.transaction((ops: Transition[]) => {
    for (const op of ops)
      if (op.kind === "begin") begin(op);
      else end(op);
  });
  const settle = db.transaction((runId: string, steps: string[], status: StepStatus, endedAt: string, error: ErrorInfo | null) => {
    for (const step of steps)
      q.settleStep.run({ runId, step, status, endedAt, code: error?.code ?? null, message: error?.message ?? null, details: detailsColumn(error) });
  });
  const recordIngested = db.transaction((scope: string, files: IngestedFile[], runId: string) => {
    const at = new Date().toISOString();
    const done = new Set<string>();
    for (const f of files) {
      if (done.has(f.checksum)) continue;
      done.add(f.checksum);
      q.recordIngested.run(scope, f.checksum, f.path, f.size, runId, at);
    }
  });
  const recordRejected = db.transaction((scope: string, files: RejectedFile[], runId: string) => {
    const at = new Date().toISOString();
    // The first file of each checksum, as on PostgreSQL (the same content under two names is one row).
    const done = new Set<string>();
    for (const f of files) {
      if (done.has(f.checksum)) continue;
      done.add(f.checksum);
      q.recordRejected.run(scope, f.checksum, f.path, f.size, runId, at, f.reason);
    }
  });
  const expand = db.transaction((runId: string, owner: string, parent: string, startedAt: string, items: { name: string; idx: number }[]) => {
    if (!q.leaseHeld.get(runId, owner)) throw leaseLost(runId);
    for (const it of items) q.insertStepIfMissing.run(runId, it.name, it.idx);
    q.parentRunning.run(startedAt, runId, parent);
  });
  const complete = db.transaction(
    (runId: string, owner: string, step: string, status: string, endedAt: string, outputs: string | null, error: ErrorInfo | null) => {
      if (!q.leaseHeld.get(runId, owner)) throw leaseLost(runId);
      q.completeStep.run({ runId, step, status, endedAt, outputs, code: error?.code ?? null, message: error?.message ?? null, details: detailsColumn(error) });
    },
  );
  const recover = db.transaction((runId: string, endedAt: string) => {
    const n = q.interruptAttempts.run({ runId, endedAt }).changes;
    q.interruptSteps.run(runId);
    return n;
  });

  return {
    dialect: "sqlite",
    ...sqliteAudit(db),
    async createRun(run) {
      try {
        createRun(run);
      } catch (err) {
        if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY") throw duplicateRun(run.id);
        throw err;
      }
      if (!run.lease) wake();
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
      if (filter.since) (where.push("created_at >= ?"), args.push(filter.since));
      if (filter.until) (where.push("created_at < ?"), args.push(filter.until));
      const sql = `SELECT * FROM runs ${where.length ? "WHERE " + where.join(" AND ") : ""}
                   ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`;
      return (db.prepare(sql).all(...args, filter.limit ?? 50, filter.offset ?? 0) as Row[]).map(toRun);
    },
    async listRunsPage(filter) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.workflow) (where.push("workflow = ?"), args.push(filter.workflow));
      if (filter.status) (where.push("status = ?"), args.push(filter.status));
      if (filter.trigger) (where.push("trigger_type = ?"), args.push(filter.trigger));
      if (filter.since) (where.push("created_at >= ?"), args.push(filter.since));
      if (filter.until) (where.push("created_at < ?"), args.push(filter.until));
      if (filter.after) {
        const c = decodeCursor(filter.after);
        where.push("(created_at, id) < (?, ?)");
        args.push(c.createdAt, c.id);
      }
      const sql = `SELECT ${SUMMARY_COLUMNS} FROM runs ${where.length ? "WHERE " + where.join(" AND ") : ""}
                   ORDER BY created_at DESC, id DESC LIMIT ?`;
      return toPage(db.prepare(sql).all(...args, filter.limit + 1) as Row[], filter.limit);
    },
    async getRunSummaries(ids) {
      if (ids.length === 0) return [];
      const sql = `SELECT ${SUMMARY_COLUMNS} FROM runs WHERE id IN (${ids.map(() => "?").join(", ")})`;
      return (db.prepare(sql).all(...ids) as Row[]).map(toRunSummary);
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
    async takeOverRun(runId, deadOwner, owner, ttlMs, now) {
      return q.takeOver.run({ id: runId, deadOwner, owner, expires: now + ttlMs }).changes === 1;
    },
    async renewLease(runId, owner, ttlMs, now): Promise<LeaseState> {
      const row = q.renew.get({ id: runId, owner, expires: now + ttlMs }) as { cancel_requested: number } | undefined;
      return row ? { held: true, cancelRequested: row.cancel_requested === 1 } : { held: false, cancelRequested: false };
    },
    async releaseLease(runId, owner) {
      if (q.release.run(runId, owner).changes === 1) wake();
    },
    async recoverInterrupted(runId, _owner, endedAt) {
      return recover(runId, endedAt);
    },
    async markRunStarted(runId, owner, startedAt, deadlineAt) {
      if (q.startRun.run({ id: runId, owner, startedAt, deadlineAt }).changes !== 1) throw leaseLost(runId);
      return toRun(q.getRun.get(runId) as Row);
    },
    async finishRun(runId, owner, status: RunStatus, endedAt, error) {
      const r = q.finishRun.run({ id: runId, owner, status, endedAt, code: error?.code ?? null, message: error?.message ?? null });
      return r.changes === 1 ? toRun(q.getRun.get(runId) as Row) : undefined;
    },
    async expandStep(runId, owner, parent, startedAt, items) {
      expand(runId, owner, parent, startedAt, items);
    },
    async completeStep(runId, owner, step, status, endedAt, outputs, error) {
      complete(runId, owner, step, status, endedAt, outputs ? JSON.stringify(outputs) : null, error);
    },
    async beginAttempt(runId, step, n, owner, startedAt) {
      apply([{ kind: "begin", runId, step, n, owner, startedAt }]);
    },
    async endAttempt(e) {
      apply([{ kind: "end", ...e }]);
    },
    async applyTransitions(ops) {
      if (ops.length) apply(ops);
    },
    async recordStepOutputs(runId, step, outputs) {
      x.stepOutputs.run(JSON.stringify(outputs), runId, step);
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
    async rejectedFiles(scope, checksums) {
      const out: RejectedFileRecord[] = [];
      for (const c of new Set(checksums)) {
        const r = q.rejected.get(scope, c) as Row | undefined;
        if (r)
          out.push({
            checksum: c,
            path: r.path as string,
            size: r.size as number,
            reason: (r.reason as string) ?? "",
            runId: r.run_id as string,
            rejectedAt: r.ingested_at as string,
          });
      }
      return out;
    },
    async recordRejected(scope, files, runId) {
      if (files.length) recordRejected(scope, files, runId);
    },
    async claimRuns(owner, ttlMs, now, limit) {
      return claimRuns(owner, now + ttlMs, now, limit).map((id) => toRun(q.getRun.get(id) as Row));
    },
    async onRunsQueued(fn) {
      queued.on(file, fn);
      return async () => void queued.off(file, fn);
    },
    async reopenRun(runId, steps) {
      const ok = reopen(runId, steps);
      if (ok) wake();
      return ok;
    },
    async countRuns() {
      return x.countRuns.all() as RunCount[];
    },
    async saveWorkflow(w) {
      return saveWorkflow(w);
    },
    async getWorkflow(name, version) {
      const row = (version === undefined ? x.currentWorkflow.get(name) : x.workflowVersion.get(name, version)) as Row | undefined;
      return row ? toWorkflowVersion(row) : undefined;
    },
    async listWorkflows() {
      return (x.listWorkflows.all() as Row[]).map(toWorkflowVersion);
    },
    async workflowHistory(name) {
      return (x.history.all(name) as Row[]).map(toWorkflowVersion);
    },
    async setCurrentWorkflow(name, version) {
      return setCurrent(name, version);
    },
    async retireWorkflow(name) {
      x.uncurrent.run(name);
    },
    async recordEvent(e) {
      x.insertEvent.run(e.id, e.name, JSON.stringify(e.data ?? null), e.source, e.createdAt);
    },
    async getEvent(id) {
      const row = x.getEvent.get(id) as Row | undefined;
      return row ? toEvent(row) : undefined;
    },
    async listEvents(filter = {}) {
      const sql = `SELECT e.*, (SELECT group_concat(r.id) FROM runs r WHERE r.event_id = e.id) AS run_ids FROM events e
                   ${filter.name ? "WHERE e.name = ?" : ""} ORDER BY e.created_at DESC, e.id DESC LIMIT ?`;
      const args: unknown[] = filter.name ? [filter.name] : [];
      return (db.prepare(sql).all(...args, filter.limit ?? 50) as Row[]).map(toEvent);
    },
    async recordFire(f) {
      return x.insertFire.run(f.workflow, f.triggerKey, f.fireAt, f.recordedAt).changes === 1;
    },
    async settleFire(workflow, triggerKey, fireAt, outcome, runId) {
      x.settleFire.run(outcome, runId, workflow, triggerKey, fireAt);
    },
    async lastFire(workflow, triggerKey) {
      const row = x.lastFire.get(workflow, triggerKey) as Row | undefined;
      return row ? toFire(row) : undefined;
    },
    async unsettledFires() {
      return (x.unsettled.all() as Row[]).map(toFire);
    },
    async listFires(filter = {}) {
      const sql = `SELECT * FROM fires ${filter.workflow ? "WHERE workflow = ?" : ""} ORDER BY fire_at DESC LIMIT ?`;
      const args: unknown[] = filter.workflow ? [filter.workflow] : [];
      return (db.prepare(sql).all(...args, filter.limit ?? 50) as Row[]).map(toFire);
    },
    async acquireLease(name, owner, ttlMs, now) {
      return x.acquire.run({ name, owner, expires: now + ttlMs, now }).changes === 1;
    },
    async releaseNamedLease(name, owner) {
      x.releaseNamed.run(name, owner);
    },
    async getState(namespace, key) {
      const r = x.getState.get(namespace, key) as Row | undefined;
      return r ? toSharedState(r) : undefined;
    },
    async putState(namespace, key, value, expectedVersion, updatedAt) {
      const json = JSON.stringify(value);
      const changed =
        expectedVersion === 0
          ? x.insertState.run(namespace, key, json, updatedAt).changes
          : x.updateState.run(json, updatedAt, namespace, key, expectedVersion).changes;
      return changed === 1 ? expectedVersion + 1 : null;
    },
    async listState(namespace) {
      return (x.listState.all(namespace) as Row[]).map(toSharedState);
    },
    async close() {
      db.close();
    },
  };
}

function migrate(db: Database.Database): void {
  db.exec(MIGRATIONS_TABLE_SQL);
  const applied = (db.prepare(`SELECT version FROM schema_migrations`).all() as { version: number }[]).map((r) => r.version);
  for (const m of migrationPlan(applied, SQLITE_MIGRATIONS)) {
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`).run(m.version, new Date().toISOString());
    }).immediate();
  }
}

function duplicateRun(runId: string): SluiceError {
  return new SluiceError("CONFLICT", `a run with id ${runId} already exists`, { retryable: false });
}

function leaseLost(runId: string): SluiceError {
  return new SluiceError("LEASE_LOST", `run ${runId} is now owned by another process; this one stops working on it`, { retryable: false });
}

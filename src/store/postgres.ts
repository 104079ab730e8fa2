/**
 * The PostgreSQL state store, for several processes (the worker fleet) sharing one history.
 *
 * Same semantics as the SQLite store, transition for transition. The differences come from
 * PostgreSQL being shared by processes that run at the same time:
 * - Every transition is ONE statement (data-modifying CTEs, or the `apply_transitions` function
 *   for attempt begins and ends), so it is atomic and costs one round trip; the engine batches a
 *   step's end with the next step's begin, so a sequential step is one round trip and one commit.
 * - The fencing in beginAttempt locks the run row `FOR SHARE` while it checks the lease owner:
 *   a concurrent claimRun by another process waits for the attempt row to commit (and then its
 *   recoverInterrupted sees it), or, when the claim committed first, the lock re-reads the row,
 *   finds the new owner and the insert does not happen (LEASE_LOST). Attempts of one run still
 *   begin in parallel: share locks do not conflict with each other.
 * - Tables live in their own schema (`sluice` by default) so they never meet user tables.
 * - Migrations run under a transaction-level advisory lock: processes starting together migrate
 *   exactly once.
 * Commits are durable (the server's synchronous_commit applies, `on` by default).
 */
import { stepNamesOf } from "../spec/schema.js";
import { toSharedState, toAttempt, toEvent, toFire, toRun, toStep, toWorkflowVersion, usageColumns, detailsColumn, type Row } from "./rows.js";
import pg from "pg";
import { pgEndpoint, pgError } from "../connectors/pg-connection.js";
import { SluiceError } from "../errors.js";
import { POSTGRES_MIGRATIONS, ROW_COUNTS_SQL } from "./postgres-migrations.js";
import { SUMMARY_COLUMNS, decodeCursor, toPage, toRunSummary } from "./run-page.js";
import { MIGRATIONS_TABLE_SQL, migrationPlan } from "./migrate.js";
import { postgresAudit } from "./postgres-audit.js";
import type { ErrorInfo, LeaseState, RunCount, RunFilter, RunStatus, StateStore, StepStatus, Transition } from "./types.js";

export interface PostgresStoreOptions {
  /** Schema holding the store's tables, created when missing (default `sluice`). */
  schema?: string;
  /** Connections in the pool (default 10). */
  max?: number;
  /**
   * The server's synchronous_commit for the store's sessions (default: the server's, normally
   * `on`; SLUICE_PG_SYNCHRONOUS_COMMIT). `off` makes a commit return before its WAL reaches disk:
   * every Sluice process may still crash without loss, but a crash of the PostgreSQL server
   * itself can lose the last few hundred milliseconds of history, whose steps then run again —
   * the same trade as the SQLite default's synchronous=NORMAL. It roughly halves the time of a
   * sequential step (one commit each).
   */
  synchronousCommit?: "on" | "off";
}

const INT8_OID = 20;
/** BIGINT columns (epoch ms, file sizes) as JS numbers, for this pool only: pg's global parsers stay as they are. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID && format !== "binary" ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<StateStore> {
  const schema = opts.schema ?? "sluice";
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema))
    throw new SluiceError("BAD_CONFIG", `the state store schema ${JSON.stringify(schema)} must be lower-case letters, digits and underscores`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SluiceError("BAD_CONFIG", "SLUICE_DATABASE_URL is not a valid postgres:// URL");
  }
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const secrets = [password, u.password].filter((s): s is string => !!s);
  const syncCommit = opts.synchronousCommit ?? synchronousCommitFromEnv();
  const ep = await pgEndpoint(u, {
    password,
    applicationName: "sluice-state",
    sessionOptions: syncCommit ? `-c synchronous_commit=${syncCommit}` : undefined,
  });
  const pool = new pg.Pool({ ...ep.client, types, max: opts.max ?? 10, idleTimeoutMillis: 30_000 });
  // An idle connection dropped by the server must not crash the process; the next query reconnects.
  pool.on("error", () => undefined);
  const fail = (err: unknown, doing: string) => pgError(err, ep.where, secrets, doing);

  try {
    await migrate(pool, schema);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw fail(err, "preparing the state store");
  }

  const S = `"${schema}"`;
  const T = {
    runs: `${S}.runs`,
    steps: `${S}.steps`,
    attempts: `${S}.attempts`,
    ingested: `${S}.ingested_files`,
    state: `${S}.shared_state`,
    workflows: `${S}.workflows`,
    events: `${S}.events`,
    fires: `${S}.fires`,
    leases: `${S}.leases`,
  };
  /** NOTIFY channel telling workers that runs were queued (one per store schema). */
  const channel = `sluice_runs_${schema}`;
  // Named statements are prepared once per connection and reused.
  const stmt = (name: string, text: string) => ({ name: `sluice_${schema}_${name}`, text });
  const q = {
    createRun: stmt(
      "create_run",
      `
      WITH r AS (
        INSERT INTO ${T.runs} (id, workflow, spec, source, params, trigger, status, created_at, event_id, lease_owner, lease_expires_at, workflow_version, trigger_type)
        VALUES ($1::text, $2, $3, $4, $5, $6, 'pending', $7, $9, $10, $11, $12, $13)
        RETURNING *
      ), s AS (
        INSERT INTO ${T.steps} (run_id, name, idx, status)
        SELECT $1::text, t.name, (t.i - 1)::int, 'pending' FROM unnest($8::text[]) WITH ORDINALITY AS t(name, i)
      )
      SELECT r.*, CASE WHEN $10::text IS NULL THEN pg_notify('${channel}', '') END AS notified FROM r`,
    ),
    getRun: stmt("get_run", `SELECT * FROM ${T.runs} WHERE id = $1`),
    // Items of a fan-out share their parent's idx: `load[2]` before `load[10]`.
    getSteps: stmt("get_steps", `SELECT * FROM ${T.steps} WHERE run_id = $1 ORDER BY idx, length(name), name`),
    expandStep: stmt(
      "expand_step",
      `
      WITH l AS (
        SELECT 1 FROM ${T.runs} WHERE id = $1 AND lease_owner = $2 FOR SHARE
      ), i AS (
        INSERT INTO ${T.steps} (run_id, name, idx, status)
        SELECT $1::text, t.name, t.idx, 'pending' FROM l, unnest($5::text[], $6::int[]) AS t(name, idx)
        ON CONFLICT DO NOTHING
      ), u AS (
        UPDATE ${T.steps} SET status = 'running', started_at = COALESCE(started_at, $4) WHERE run_id = $1 AND name = $3 AND EXISTS (SELECT 1 FROM l)
      )
      SELECT count(*)::int AS n FROM l`,
    ),
    completeStep: stmt(
      "complete_step",
      `
      WITH l AS (
        SELECT 1 FROM ${T.runs} WHERE id = $1 AND lease_owner = $2 FOR SHARE
      ), u AS (
        UPDATE ${T.steps} SET status = $4, ended_at = $5, outputs = COALESCE($6::text, outputs), not_before = NULL,
               error_code = $7, error_message = $8, error_details = $9
         WHERE run_id = $1 AND name = $3 AND EXISTS (SELECT 1 FROM l)
      )
      SELECT count(*)::int AS n FROM l`,
    ),
    getAttempts: stmt("get_attempts", `SELECT * FROM ${T.attempts} WHERE run_id = $1 ORDER BY step, n`),
    claim: stmt(
      "claim",
      `
      UPDATE ${T.runs} SET lease_owner = $2, lease_expires_at = $3
       WHERE id = $1 AND status IN ('pending', 'running')
         AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at < $4)`,
    ),
    // Like claim, the row lock makes it wait for a beginAttempt's FOR SHARE fence (see the top).
    takeOver: stmt(
      "take_over",
      `
      UPDATE ${T.runs} SET lease_owner = $3, lease_expires_at = $4
       WHERE id = $1 AND status IN ('pending', 'running') AND lease_owner = $2`,
    ),
    renew: stmt("renew", `UPDATE ${T.runs} SET lease_expires_at = $3 WHERE id = $1 AND lease_owner = $2 RETURNING cancel_requested`),
    release: stmt(
      "release",
      `
      WITH r AS (UPDATE ${T.runs} SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 RETURNING 1)
      SELECT pg_notify('${channel}', '') FROM r`,
    ),
    // The queue: open runs nobody holds (or whose holder died), oldest first; SKIP LOCKED lets
    // workers polling at the same moment take different runs instead of waiting on each other.
    claimRuns: stmt(
      "claim_runs",
      `
      WITH c AS (
        SELECT id FROM ${T.runs}
         WHERE status IN ('pending', 'running') AND (lease_owner IS NULL OR lease_expires_at < $3)
         ORDER BY created_at LIMIT $4
           FOR UPDATE SKIP LOCKED
      )
      UPDATE ${T.runs} r SET lease_owner = $1, lease_expires_at = $2 FROM c WHERE r.id = c.id RETURNING r.*`,
    ),
    reopen: stmt(
      "reopen",
      `
      WITH r AS (
        UPDATE ${T.runs} SET status = 'pending', ended_at = NULL, deadline_at = NULL, error_code = NULL, error_message = NULL,
               cancel_requested = false, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND status IN ('failed', 'cancelled')
        RETURNING id
      ), s AS (
        UPDATE ${T.steps} SET status = 'pending', ended_at = NULL, error_code = NULL, error_message = NULL, error_details = NULL, not_before = NULL,
               retry_base = attempts
         WHERE run_id = $1 AND name = ANY($2::text[]) AND EXISTS (SELECT 1 FROM r)
      )
      SELECT pg_notify('${channel}', '') FROM r`,
    ),
    countRuns: stmt("count_runs", `SELECT workflow, status, count(*)::int AS count FROM ${T.runs} GROUP BY workflow, status ORDER BY workflow, status`),
    currentWorkflow: stmt("current_workflow", `SELECT * FROM ${T.workflows} WHERE name = $1 AND current`),
    workflowVersion: stmt("workflow_version", `SELECT * FROM ${T.workflows} WHERE name = $1 AND version = $2`),
    listWorkflows: stmt("list_workflows", `SELECT * FROM ${T.workflows} WHERE current ORDER BY name`),
    history: stmt("workflow_history", `SELECT * FROM ${T.workflows} WHERE name = $1 ORDER BY version`),
    retire: stmt("retire_workflow", `UPDATE ${T.workflows} SET current = false WHERE name = $1 AND current`),
    insertEvent: stmt("insert_event", `INSERT INTO ${T.events} (id, name, data, source, created_at) VALUES ($1, $2, $3, $4, $5)`),
    getEvent: stmt(
      "get_event",
      `
      SELECT e.*, (SELECT string_agg(r.id, ',') FROM ${T.runs} r WHERE r.event_id = e.id) AS run_ids FROM ${T.events} e WHERE e.id = $1`,
    ),
    insertFire: stmt(
      "insert_fire",
      `
      INSERT INTO ${T.fires} (workflow, trigger_key, fire_at, recorded_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
    ),
    settleFire: stmt("settle_fire", `UPDATE ${T.fires} SET outcome = $4, run_id = $5 WHERE workflow = $1 AND trigger_key = $2 AND fire_at = $3`),
    lastFire: stmt("last_fire", `SELECT * FROM ${T.fires} WHERE workflow = $1 AND trigger_key = $2 ORDER BY fire_at DESC LIMIT 1`),
    unsettled: stmt("unsettled_fires", `SELECT * FROM ${T.fires} WHERE outcome IS NULL ORDER BY fire_at`),
    acquire: stmt(
      "acquire_lease",
      `
      INSERT INTO ${T.leases} AS l (name, owner, expires_at) VALUES ($1, $2, $3)
      ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE l.owner = excluded.owner OR l.expires_at < $4`,
    ),
    releaseNamed: stmt("release_lease", `DELETE FROM ${T.leases} WHERE name = $1 AND owner = $2`),
    getState: stmt("get_state", `SELECT namespace, key, value::text AS value, version, updated_at FROM ${T.state} WHERE namespace = $1 AND key = $2`),
    listState: stmt("list_state", `SELECT namespace, key, value::text AS value, version, updated_at FROM ${T.state} WHERE namespace = $1 ORDER BY key`),
    // Version 0 is "no entry yet": the insert wins only when nobody wrote first.
    insertState: stmt(
      "insert_state",
      `INSERT INTO ${T.state} (namespace, key, value, version, updated_at) VALUES ($1, $2, $3::jsonb, 1, $4) ON CONFLICT DO NOTHING RETURNING version`,
    ),
    updateState: stmt(
      "update_state",
      `UPDATE ${T.state} SET value = $3::jsonb, version = version + 1, updated_at = $4
        WHERE namespace = $1 AND key = $2 AND version = $5 RETURNING version`,
    ),
    stepOutputs: stmt("step_outputs", `UPDATE ${T.steps} SET outputs = $3 WHERE run_id = $1 AND name = $2 AND status = 'running'`),
    recover: stmt(
      "recover",
      `
      WITH a AS (
        UPDATE ${T.attempts} SET status = 'interrupted', ended_at = $2, error_code = 'INTERRUPTED',
               error_message = 'the process running this attempt stopped (its lease expired) before it finished'
         WHERE run_id = $1 AND status = 'running'
        RETURNING 1
      ), s AS (
        UPDATE ${T.steps} SET status = 'pending' WHERE run_id = $1 AND status = 'running'
      )
      SELECT count(*)::int AS n FROM a`,
    ),
    startRun: stmt(
      "start_run",
      `
      UPDATE ${T.runs} SET status = 'running', started_at = COALESCE(started_at, $3), deadline_at = COALESCE(deadline_at, $4)
       WHERE id = $1 AND lease_owner = $2 RETURNING *`,
    ),
    finishRun: stmt(
      "finish_run",
      `
      UPDATE ${T.runs} SET status = $3, ended_at = $4, error_code = $5, error_message = $6,
             lease_owner = NULL, lease_expires_at = NULL,
             (rows_in, rows_stored, rows_quarantined, rows_duplicate) = (
               SELECT c.rows_in, c.rows_stored, c.rows_quarantined, c.rows_duplicate
                 FROM (${ROW_COUNTS_SQL(T.steps)} AND s.run_id = $1 GROUP BY s.run_id) c)
       WHERE id = $1 AND ($2::text IS NULL OR lease_owner = $2) RETURNING *`,
    ),
    settle: stmt(
      "settle",
      `
      UPDATE ${T.steps} SET status = $3, ended_at = $4,
             error_code = COALESCE($5, error_code), error_message = COALESCE($6, error_message),
             error_details = CASE WHEN $5::text IS NULL THEN error_details ELSE $7 END
       WHERE run_id = $1 AND name = ANY($2::text[]) AND status IN ('pending', 'running')`,
    ),
    cancel: stmt("cancel", `UPDATE ${T.runs} SET cancel_requested = true WHERE id = $1`),
    ingested: stmt("ingested", `SELECT checksum FROM ${T.ingested} WHERE scope = $1 AND checksum = ANY($2::text[]) AND status = 'ingested'`),
    // Inputs are distinct by checksum (see uniqueFiles): DO UPDATE may touch a row once per statement.
    recordIngested: stmt(
      "record_ingested",
      `
      INSERT INTO ${T.ingested} AS f (scope, checksum, path, size, run_id, ingested_at)
      SELECT $1::text, t.checksum, t.path, t.size, $5::text, $6::text FROM unnest($2::text[], $3::text[], $4::bigint[]) AS t(checksum, path, size)
      ON CONFLICT (scope, checksum) DO UPDATE SET status = 'ingested', reason = NULL, path = excluded.path, size = excluded.size,
             run_id = excluded.run_id, ingested_at = excluded.ingested_at
       WHERE f.status = 'rejected'`,
    ),
    rejected: stmt(
      "rejected_files",
      `
      SELECT checksum, path, size, reason, run_id, ingested_at FROM ${T.ingested}
       WHERE scope = $1 AND checksum = ANY($2::text[]) AND status = 'rejected'`,
    ),
    recordRejected: stmt(
      "record_rejected",
      `
      INSERT INTO ${T.ingested} AS f (scope, checksum, path, size, run_id, ingested_at, status, reason)
      SELECT $1::text, t.checksum, t.path, t.size, $6::text, $7::text, 'rejected', t.reason
        FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) AS t(checksum, path, size, reason)
      ON CONFLICT (scope, checksum) DO UPDATE SET path = excluded.path, size = excluded.size, reason = excluded.reason
       WHERE f.status = 'rejected'`,
    ),
  };

  /** Transitions as the JSON the SQL function reads; outputs stay JSON text, stored byte for byte. */
  /**
   * Transitions go over one connection of their own: the engine's writer sends one batch at a
   * time anyway, and a dedicated connection with a prepared statement saves the pool's hand-over
   * on the hot path (about 0.15 ms a step, a sixth of a sequential step). A broken connection is
   * replaced on the next call.
   */
  let txConn: Promise<pg.Client> | undefined;
  const transitionClient = (): Promise<pg.Client> => {
    if (txConn) return txConn;
    const c = new pg.Client({ ...ep.client, types });
    const opening: Promise<pg.Client> = c.connect().then(() => c);
    const forget = () => {
      if (txConn === opening) txConn = undefined;
    };
    c.on("error", () => (forget(), c.end().catch(() => undefined)));
    opening.catch(forget);
    txConn = opening;
    return opening;
  };

  const apply = async (ops: Transition[]): Promise<void> => {
    const payload = ops.map((op) =>
      op.kind === "begin"
        ? op
        : {
            kind: "end",
            runId: op.runId,
            step: op.step,
            n: op.n,
            owner: op.owner,
            status: op.status,
            endedAt: op.endedAt,
            errorCode: op.error?.code ?? null,
            errorMessage: op.error?.message ?? null,
            errorDetails: detailsColumn(op.error),
            stepStatus: op.stepStatus,
            notBefore: op.notBefore,
            outputs: op.outputs ? JSON.stringify(op.outputs) : null,
            ...usageColumns(op.usage),
          },
    );
    try {
      const client = await transitionClient();
      await client.query({ name: "sluice_apply_transitions", text: `SELECT ${S}.apply_transitions($1::jsonb)`, values: [JSON.stringify(payload)] });
    } catch (err) {
      if ((err as { code?: string }).code === "SL001") throw leaseLost((err as Error).message);
      const first = ops[0]!;
      throw fail(err, ops.length === 1 ? `recording attempt ${first.n} of step ${first.step}` : `recording ${ops.length} step transitions`);
    }
  };

  const run = async (doing: string, query: { name: string; text: string }, values: unknown[]): Promise<pg.QueryResult<Row>> => {
    try {
      return await pool.query<Row>({ ...query, values });
    } catch (err) {
      throw fail(err, doing);
    }
  };

  return {
    dialect: "postgres",
    ...postgresAudit(pool, schema, (doing, fn) => transaction(pool, fail, doing, fn), fail),
    async createRun(r) {
      let res: pg.QueryResult<Row>;
      try {
        res = await pool.query<Row>({
          ...q.createRun,
          values: [
            r.id,
            r.workflow.metadata.name,
            JSON.stringify(r.workflow),
            r.source,
            JSON.stringify(r.params),
            r.trigger ? JSON.stringify(r.trigger) : null,
            r.createdAt,
            stepNamesOf(r.workflow),
            r.trigger?.eventId ?? null,
            r.lease?.owner ?? null,
            r.lease?.expiresAt ?? null,
            r.version ?? null,
            r.trigger?.type ?? null,
          ],
        });
      } catch (err) {
        if ((err as { code?: string; constraint?: string }).code === "23505" && (err as { constraint?: string }).constraint === "runs_pkey")
          throw new SluiceError("CONFLICT", `a run with id ${r.id} already exists`, { retryable: false });
        throw fail(err, `creating run ${r.id}`);
      }
      return toRun(res.rows[0]!);
    },
    async getRun(id) {
      const row = (await run(`reading run ${id}`, q.getRun, [id])).rows[0];
      return row ? toRun(row) : undefined;
    },
    async listRuns(filter: RunFilter = {}) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.workflow) (args.push(filter.workflow), where.push(`workflow = $${args.length}`));
      if (filter.status) (args.push(filter.status), where.push(`status = $${args.length}`));
      if (filter.since) (args.push(filter.since), where.push(`created_at >= $${args.length}`));
      if (filter.until) (args.push(filter.until), where.push(`created_at < $${args.length}`));
      args.push(filter.limit ?? 50, filter.offset ?? 0);
      const text = `SELECT * FROM ${T.runs} ${where.length ? "WHERE " + where.join(" AND ") : ""}
                    ORDER BY created_at DESC, id DESC LIMIT $${args.length - 1} OFFSET $${args.length}`;
      try {
        return (await pool.query<Row>(text, args)).rows.map(toRun);
      } catch (err) {
        throw fail(err, "listing runs");
      }
    },
    async listRunsPage(filter) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.workflow) (args.push(filter.workflow), where.push(`workflow = $${args.length}`));
      if (filter.status) (args.push(filter.status), where.push(`status = $${args.length}`));
      if (filter.trigger) (args.push(filter.trigger), where.push(`trigger_type = $${args.length}`));
      if (filter.since) (args.push(filter.since), where.push(`created_at >= $${args.length}`));
      if (filter.until) (args.push(filter.until), where.push(`created_at < $${args.length}`));
      if (filter.after) {
        const c = decodeCursor(filter.after);
        args.push(c.createdAt, c.id);
        where.push(`(created_at, id) < ($${args.length - 1}, $${args.length})`);
      }
      args.push(filter.limit + 1);
      const text = `SELECT ${SUMMARY_COLUMNS} FROM ${T.runs} ${where.length ? "WHERE " + where.join(" AND ") : ""}
                    ORDER BY created_at DESC, id DESC LIMIT $${args.length}`;
      try {
        return toPage((await pool.query<Row>(text, args)).rows, filter.limit);
      } catch (err) {
        throw fail(err, "listing runs");
      }
    },
    async getRunSummaries(ids) {
      if (ids.length === 0) return [];
      try {
        return (await pool.query<Row>(`SELECT ${SUMMARY_COLUMNS} FROM ${T.runs} WHERE id = ANY($1::text[])`, [ids])).rows.map(toRunSummary);
      } catch (err) {
        throw fail(err, "reading runs");
      }
    },
    async getSteps(runId) {
      return (await run(`reading the steps of run ${runId}`, q.getSteps, [runId])).rows.map(toStep);
    },
    async getAttempts(runId) {
      return (await run(`reading the attempts of run ${runId}`, q.getAttempts, [runId])).rows.map(toAttempt);
    },
    async claimRun(runId, owner, ttlMs, now) {
      return (await run(`claiming run ${runId}`, q.claim, [runId, owner, now + ttlMs, now])).rowCount === 1;
    },
    async takeOverRun(runId, deadOwner, owner, ttlMs, now) {
      return (await run(`taking over run ${runId}`, q.takeOver, [runId, deadOwner, owner, now + ttlMs])).rowCount === 1;
    },
    async renewLease(runId, owner, ttlMs, now): Promise<LeaseState> {
      const row = (await run(`renewing the lease of run ${runId}`, q.renew, [runId, owner, now + ttlMs])).rows[0];
      return row ? { held: true, cancelRequested: row.cancel_requested === true } : { held: false, cancelRequested: false };
    },
    async releaseLease(runId, owner) {
      await run(`releasing run ${runId}`, q.release, [runId, owner]);
    },
    async recoverInterrupted(runId, _owner, endedAt) {
      return (await run(`recovering run ${runId}`, q.recover, [runId, endedAt])).rows[0]!.n as number;
    },
    async markRunStarted(runId, owner, startedAt, deadlineAt) {
      const row = (await run(`starting run ${runId}`, q.startRun, [runId, owner, startedAt, deadlineAt])).rows[0];
      if (!row) throw leaseLost(runId);
      return toRun(row);
    },
    async finishRun(runId, owner, status: RunStatus, endedAt, error) {
      const row = (await run(`finishing run ${runId}`, q.finishRun, [runId, owner, status, endedAt, error?.code ?? null, error?.message ?? null])).rows[0];
      return row ? toRun(row) : undefined;
    },
    async beginAttempt(runId, step, n, owner, startedAt) {
      await apply([{ kind: "begin", runId, step, n, owner, startedAt }]);
    },
    async endAttempt(e) {
      await apply([{ kind: "end", ...e }]);
    },
    async expandStep(runId, owner, parent, startedAt, items) {
      const res = await run(`expanding step ${parent}`, q.expandStep, [runId, owner, parent, startedAt, items.map((i) => i.name), items.map((i) => i.idx)]);
      if (res.rows[0]?.n !== 1) throw leaseLost(runId);
    },
    async completeStep(runId, owner, step, status, endedAt, outputs, error) {
      const res = await run(`recording the end of step ${step}`, q.completeStep, [
        runId,
        owner,
        step,
        status,
        endedAt,
        outputs ? JSON.stringify(outputs) : null,
        error?.code ?? null,
        error?.message ?? null,
        detailsColumn(error),
      ]);
      if (res.rows[0]?.n !== 1) throw leaseLost(runId);
    },
    async applyTransitions(ops) {
      if (ops.length) await apply(ops);
    },
    async recordStepOutputs(runId, step, outputs) {
      await run(`recording the figures of step ${step}`, q.stepOutputs, [runId, step, JSON.stringify(outputs)]);
    },
    async settleSteps(runId, steps, status: StepStatus, endedAt, error: ErrorInfo | null) {
      if (!steps.length) return;
      await run(`settling steps of run ${runId}`, q.settle, [runId, steps, status, endedAt, error?.code ?? null, error?.message ?? null, detailsColumn(error)]);
    },
    async requestCancel(runId) {
      await run(`cancelling run ${runId}`, q.cancel, [runId]);
    },
    async ingestedChecksums(scope, checksums) {
      if (!checksums.length) return new Set<string>();
      const res = await run("reading the ingested-files ledger", q.ingested, [scope, checksums]);
      return new Set(res.rows.map((r) => r.checksum as string));
    },
    async recordIngested(scope, files, runId) {
      if (!files.length) return;
      files = uniqueFiles(files);
      await run("recording ingested files", q.recordIngested, [
        scope,
        files.map((f) => f.checksum),
        files.map((f) => f.path),
        files.map((f) => f.size),
        runId,
        new Date().toISOString(),
      ]);
    },
    async rejectedFiles(scope, checksums) {
      if (!checksums.length) return [];
      const res = await run("reading the rejected files of the ledger", q.rejected, [scope, [...new Set(checksums)]]);
      return res.rows.map((r) => ({
        checksum: r.checksum as string,
        path: r.path as string,
        size: r.size as number,
        reason: (r.reason as string) ?? "",
        runId: r.run_id as string,
        rejectedAt: r.ingested_at as string,
      }));
    },
    async recordRejected(scope, files, runId) {
      if (!files.length) return;
      files = uniqueFiles(files);
      await run("recording rejected files", q.recordRejected, [
        scope,
        files.map((f) => f.checksum),
        files.map((f) => f.path),
        files.map((f) => f.size),
        files.map((f) => f.reason),
        runId,
        new Date().toISOString(),
      ]);
    },
    async claimRuns(owner, ttlMs, now, limit) {
      return (await run("claiming queued runs", q.claimRuns, [owner, now + ttlMs, now, limit])).rows.map(toRun);
    },
    async onRunsQueued(fn) {
      return listen(ep.client, channel, fn);
    },
    async reopenRun(runId, steps) {
      return (await run(`reopening run ${runId}`, q.reopen, [runId, steps])).rowCount === 1;
    },
    async countRuns() {
      return (await run("counting runs", q.countRuns, [])).rows as unknown as RunCount[];
    },
    async saveWorkflow(w) {
      return transaction(pool, fail, `saving workflow ${w.name}`, async (c) => {
        // Serialise versions of one name across processes (apply from two places at once).
        await c.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`sluice.workflow:${schema}:${w.name}`]);
        const current = (await c.query<Row>(q.currentWorkflow.text, [w.name])).rows[0];
        if (current && current.yaml === w.yaml) return { version: current.version as number, created: false };
        const latest = (await c.query<Row>(`SELECT * FROM ${T.workflows} WHERE name = $1 ORDER BY version DESC LIMIT 1`, [w.name])).rows[0];
        if (!current && latest && latest.yaml === w.yaml) {
          await c.query(`UPDATE ${T.workflows} SET current = true WHERE name = $1 AND version = $2`, [w.name, latest.version]);
          return { version: latest.version as number, created: false };
        }
        const version = ((latest?.version as number) ?? 0) + 1;
        await c.query(q.retire.text, [w.name]);
        await c.query(`INSERT INTO ${T.workflows} (name, version, spec, yaml, source, created_at, current) VALUES ($1, $2, $3, $4, $5, $6, true)`, [
          w.name,
          version,
          JSON.stringify(w.spec),
          w.yaml,
          w.source,
          w.createdAt,
        ]);
        return { version, created: true };
      });
    },
    async getWorkflow(name, version) {
      const res =
        version === undefined
          ? await run(`reading workflow ${name}`, q.currentWorkflow, [name])
          : await run(`reading workflow ${name}`, q.workflowVersion, [name, version]);
      return res.rows[0] ? toWorkflowVersion(res.rows[0]) : undefined;
    },
    async listWorkflows() {
      return (await run("listing workflows", q.listWorkflows, [])).rows.map(toWorkflowVersion);
    },
    async workflowHistory(name) {
      return (await run(`reading the history of workflow ${name}`, q.history, [name])).rows.map(toWorkflowVersion);
    },
    async setCurrentWorkflow(name, version) {
      return transaction(pool, fail, `rolling back workflow ${name}`, async (c) => {
        await c.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`sluice.workflow:${schema}:${name}`]);
        if (!(await c.query(q.workflowVersion.text, [name, version])).rowCount) return false;
        await c.query(q.retire.text, [name]);
        await c.query(`UPDATE ${T.workflows} SET current = true WHERE name = $1 AND version = $2`, [name, version]);
        return true;
      });
    },
    async retireWorkflow(name) {
      await run(`retiring workflow ${name}`, q.retire, [name]);
    },
    async recordEvent(e) {
      await run(`recording event ${e.name}`, q.insertEvent, [e.id, e.name, JSON.stringify(e.data ?? null), e.source, e.createdAt]);
    },
    async getEvent(id) {
      const row = (await run(`reading event ${id}`, q.getEvent, [id])).rows[0];
      return row ? toEvent(row) : undefined;
    },
    async listEvents(filter = {}) {
      const args: unknown[] = filter.name ? [filter.name] : [];
      args.push(filter.limit ?? 50);
      const text = `SELECT e.*, (SELECT string_agg(r.id, ',') FROM ${T.runs} r WHERE r.event_id = e.id) AS run_ids FROM ${T.events} e
                    ${filter.name ? "WHERE e.name = $1" : ""} ORDER BY e.created_at DESC, e.id DESC LIMIT $${args.length}`;
      try {
        return (await pool.query<Row>(text, args)).rows.map(toEvent);
      } catch (err) {
        throw fail(err, "listing events");
      }
    },
    async recordFire(f) {
      return (await run("recording a schedule fire", q.insertFire, [f.workflow, f.triggerKey, f.fireAt, f.recordedAt])).rowCount === 1;
    },
    async settleFire(workflow, triggerKey, fireAt, outcome, runId) {
      await run("settling a schedule fire", q.settleFire, [workflow, triggerKey, fireAt, outcome, runId]);
    },
    async lastFire(workflow, triggerKey) {
      const row = (await run("reading schedule fires", q.lastFire, [workflow, triggerKey])).rows[0];
      return row ? toFire(row) : undefined;
    },
    async unsettledFires() {
      return (await run("reading schedule fires", q.unsettled, [])).rows.map(toFire);
    },
    async listFires(filter = {}) {
      const args: unknown[] = filter.workflow ? [filter.workflow] : [];
      args.push(filter.limit ?? 50);
      const text = `SELECT * FROM ${T.fires} ${filter.workflow ? "WHERE workflow = $1" : ""} ORDER BY fire_at DESC LIMIT $${args.length}`;
      try {
        return (await pool.query<Row>(text, args)).rows.map(toFire);
      } catch (err) {
        throw fail(err, "listing schedule fires");
      }
    },
    async acquireLease(name, owner, ttlMs, now) {
      return (await run(`taking lease ${name}`, q.acquire, [name, owner, now + ttlMs, now])).rowCount === 1;
    },
    async releaseNamedLease(name, owner) {
      await run(`releasing lease ${name}`, q.releaseNamed, [name, owner]);
    },
    async getState(namespace, key) {
      const r = (await run(`reading shared state ${namespace}/${key}`, q.getState, [namespace, key])).rows[0];
      return r ? toSharedState(r) : undefined;
    },
    async putState(namespace, key, value, expectedVersion, updatedAt) {
      const json = JSON.stringify(value);
      const res =
        expectedVersion === 0
          ? await run(`writing shared state ${namespace}/${key}`, q.insertState, [namespace, key, json, updatedAt])
          : await run(`writing shared state ${namespace}/${key}`, q.updateState, [namespace, key, json, updatedAt, expectedVersion]);
      return res.rows.length ? (res.rows[0]!.version as number) : null;
    },
    async listState(namespace) {
      return (await run(`listing shared state ${namespace}`, q.listState, [namespace])).rows.map(toSharedState);
    },
    async close() {
      const c = txConn;
      txConn = undefined;
      await c
        ?.then(
          (x) => x.end(),
          () => undefined,
        )
        .catch(() => undefined);
      await pool.end();
    },
  };
}

/**
 * Apply missing migrations in one transaction holding an advisory lock keyed on the schema, so
 * processes starting at once wait for each other and the later ones find nothing left to do.
 */
async function migrate(pool: pg.Pool, schema: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    try {
      await client.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`sluice.migrate:${schema}`]);
      // Create only what is missing: a role without CREATE rights can use a store an admin prepared.
      if (!(await client.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [schema])).rowCount) await client.query(`CREATE SCHEMA "${schema}"`);
      await client.query(`SET LOCAL search_path TO "${schema}"`);
      // Checked first, not IF NOT EXISTS: a role without CREATE rights can use a prepared store.
      if (!(await client.query(`SELECT to_regclass('schema_migrations') AS t`)).rows[0]?.t) await client.query(MIGRATIONS_TABLE_SQL);
      const applied = (await client.query<{ version: number }>(`SELECT version FROM schema_migrations`)).rows.map((r) => r.version);
      for (const m of migrationPlan(applied, POSTGRES_MIGRATIONS)) {
        await client.query(m.sql);
        await client.query(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, [m.version, new Date().toISOString()]);
      }
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    }
  } finally {
    client.release();
  }
}

function synchronousCommitFromEnv(): "on" | "off" | undefined {
  const v = process.env.SLUICE_PG_SYNCHRONOUS_COMMIT;
  if (v === undefined || v === "") return undefined;
  if (v === "on" || v === "off") return v;
  throw new SluiceError("BAD_CONFIG", `SLUICE_PG_SYNCHRONOUS_COMMIT must be on or off, not "${v}"`);
}

async function transaction<T>(pool: pg.Pool, fail: (err: unknown, doing: string) => Error, doing: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw fail(err, doing);
  }
  try {
    await client.query("BEGIN");
    const out = await fn(client);
    await client.query("COMMIT");
    return out;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err instanceof SluiceError ? err : fail(err, doing);
  } finally {
    client.release();
  }
}

/**
 * LISTEN on a dedicated connection (a pooled one would be handed to other queries). A dropped
 * connection is re-opened after a pause; workers poll too, so a gap only costs latency.
 */
async function listen(config: pg.ClientConfig, channel: string, fn: () => void): Promise<() => Promise<void>> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const connect = async (): Promise<void> => {
    const c = new pg.Client(config);
    c.on("notification", () => fn());
    c.on("error", () => {
      c.end().catch(() => undefined);
      if (!stopped) retry = setTimeout(() => void connect().catch(() => undefined), 1_000);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${channel}`);
      client = c;
      if (stopped) await c.end();
    } catch {
      await c.end().catch(() => undefined);
      if (!stopped) retry = setTimeout(() => void connect().catch(() => undefined), 1_000);
    }
  };
  await connect();
  return async () => {
    stopped = true;
    clearTimeout(retry);
    await client?.end().catch(() => undefined);
  };
}

/** The first file of each checksum (the same content found under two names is one ledger row). */
function uniqueFiles<F extends { checksum: string }>(files: F[]): F[] {
  const seen = new Set<string>();
  return files.filter((f) => !seen.has(f.checksum) && (seen.add(f.checksum), true));
}

function leaseLost(runId: string): SluiceError {
  return new SluiceError("LEASE_LOST", `run ${runId} is now owned by another process; this one stops working on it`, { retryable: false });
}

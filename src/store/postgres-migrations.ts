/**
 * Versioned schema of the PostgreSQL state store, the same versions as the SQLite one. Append new
 * versions; never edit an applied one.
 *
 * The statements name no schema: they run with `SET LOCAL search_path` pointing at the store's
 * schema (`sluice` by default), inside the migration transaction that holds the advisory lock.
 *
 * Column choices, so that the record mapping is the one of the SQLite store:
 * - times are ISO-8601 TEXT (as written by the engine), not timestamptz;
 * - JSON documents (spec, params, trigger, outputs) are TEXT holding JSON: they round-trip byte for
 *   byte (JSONB would reorder object keys) and cost the server no parsing on the hot path;
 * - epoch-ms values (lease_expires_at, not_before) and file sizes are BIGINT; the store's pool
 *   reads BIGINT as a JS number (safe: epoch ms and file sizes stay far below 2^53);
 * - names and ids use COLLATE "C" so ORDER BY sorts bytewise, as SQLite does, whatever the
 *   database's default collation.
 */
export const POSTGRES_MIGRATIONS: { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE runs (
        id               TEXT COLLATE "C" PRIMARY KEY,
        workflow         TEXT COLLATE "C" NOT NULL,
        spec             TEXT NOT NULL,
        source           TEXT,
        params           TEXT NOT NULL,
        trigger          TEXT,
        status           TEXT COLLATE "C" NOT NULL,
        created_at       TEXT COLLATE "C" NOT NULL,
        started_at       TEXT,
        ended_at         TEXT,
        deadline_at      TEXT,
        error_code       TEXT,
        error_message    TEXT,
        cancel_requested BOOLEAN NOT NULL DEFAULT false,
        lease_owner      TEXT COLLATE "C",
        lease_expires_at BIGINT
      );
      CREATE INDEX runs_workflow_created ON runs (workflow, created_at);
      CREATE INDEX runs_status ON runs (status);

      CREATE TABLE steps (
        run_id        TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name          TEXT COLLATE "C" NOT NULL,
        idx           INTEGER NOT NULL,
        status        TEXT COLLATE "C" NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        not_before    BIGINT,
        started_at    TEXT,
        ended_at      TEXT,
        outputs       TEXT,
        error_code    TEXT,
        error_message TEXT,
        PRIMARY KEY (run_id, name)
      );

      CREATE TABLE attempts (
        run_id        TEXT COLLATE "C" NOT NULL,
        step          TEXT COLLATE "C" NOT NULL,
        n             INTEGER NOT NULL,
        status        TEXT COLLATE "C" NOT NULL,
        started_at    TEXT NOT NULL,
        ended_at      TEXT,
        error_code    TEXT,
        error_message TEXT,
        owner         TEXT COLLATE "C",
        PRIMARY KEY (run_id, step, n),
        FOREIGN KEY (run_id, step) REFERENCES steps (run_id, name) ON DELETE CASCADE
      );
    `,
  },
  {
    version: 2,
    sql: `
      -- Files a workflow has ingested, by content checksum, so a daily run takes only new files.
      CREATE TABLE ingested_files (
        scope       TEXT COLLATE "C" NOT NULL,
        checksum    TEXT COLLATE "C" NOT NULL,
        path        TEXT NOT NULL,
        size        BIGINT NOT NULL,
        run_id      TEXT NOT NULL,
        ingested_at TEXT NOT NULL,
        PRIMARY KEY (scope, checksum)
      );
    `,
  },
  {
    version: 3,
    sql: `
      -- The service: the run queue, the workflow registry, events, cron fires, leader leases.
      ALTER TABLE runs ADD COLUMN event_id TEXT COLLATE "C";
      CREATE INDEX runs_event ON runs (event_id) WHERE event_id IS NOT NULL;
      -- The queue workers poll: only open runs are in it, so it stays small however long the history.
      CREATE INDEX runs_open ON runs (created_at) WHERE status IN ('pending', 'running');
      -- Attempts before a manual retry do not count against the step's retry budget.
      ALTER TABLE steps ADD COLUMN retry_base INTEGER NOT NULL DEFAULT 0;

      CREATE TABLE workflows (
        name       TEXT COLLATE "C" NOT NULL,
        version    INTEGER NOT NULL,
        spec       TEXT NOT NULL,
        yaml       TEXT NOT NULL,
        source     TEXT,
        created_at TEXT NOT NULL,
        current    BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (name, version)
      );
      CREATE UNIQUE INDEX workflows_one_current ON workflows (name) WHERE current;

      CREATE TABLE events (
        id         TEXT COLLATE "C" PRIMARY KEY,
        name       TEXT COLLATE "C" NOT NULL,
        data       TEXT NOT NULL,
        source     TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL
      );
      CREATE INDEX events_name_created ON events (name, created_at);

      CREATE TABLE fires (
        workflow    TEXT COLLATE "C" NOT NULL,
        trigger_key TEXT COLLATE "C" NOT NULL,
        fire_at     TEXT COLLATE "C" NOT NULL,
        run_id      TEXT,
        outcome     TEXT,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (workflow, trigger_key, fire_at)
      );

      CREATE TABLE leases (
        name       TEXT COLLATE "C" PRIMARY KEY,
        owner      TEXT COLLATE "C" NOT NULL,
        expires_at BIGINT NOT NULL
      );
    `,
  },
  {
    version: 4,
    sql: `
      -- Step transitions applied in order in one call: one round trip and one commit for a
      -- step's end and the next step's start, or for the ends of many parallel steps. The
      -- engine batches what it has to write while the previous batch commits (group commit).
      -- A begin is fenced on the run's lease (the run row is locked FOR SHARE, see postgres.ts);
      -- an end only lands on an attempt still running under the same owner. Either failing
      -- raises SQLSTATE SL001 with the run id, which rolls the whole batch back.
      CREATE FUNCTION apply_transitions(ops jsonb) RETURNS void
      LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
      DECLARE
        op jsonb;
        changed int;
      BEGIN
        FOR op IN SELECT value FROM jsonb_array_elements(ops) LOOP
          IF op->>'kind' = 'begin' THEN
            PERFORM 1 FROM runs WHERE id = op->>'runId' AND lease_owner = op->>'owner' FOR SHARE;
            IF NOT FOUND THEN
              RAISE EXCEPTION USING ERRCODE = 'SL001', MESSAGE = op->>'runId';
            END IF;
            INSERT INTO attempts (run_id, step, n, status, started_at, owner)
            VALUES (op->>'runId', op->>'step', (op->>'n')::int, 'running', op->>'startedAt', op->>'owner');
            UPDATE steps SET status = 'running', attempts = (op->>'n')::int,
                   started_at = COALESCE(started_at, op->>'startedAt'), not_before = NULL
             WHERE run_id = op->>'runId' AND name = op->>'step';
          ELSE
            UPDATE attempts SET status = op->>'status', ended_at = op->>'endedAt',
                   error_code = op->>'errorCode', error_message = op->>'errorMessage'
             WHERE run_id = op->>'runId' AND step = op->>'step' AND n = (op->>'n')::int
               AND status = 'running' AND owner = op->>'owner';
            GET DIAGNOSTICS changed = ROW_COUNT;
            IF changed <> 1 THEN
              RAISE EXCEPTION USING ERRCODE = 'SL001', MESSAGE = op->>'runId';
            END IF;
            UPDATE steps SET status = op->>'stepStatus', not_before = (op->>'notBefore')::bigint,
                   outputs = COALESCE(op->>'outputs', outputs),
                   ended_at = CASE WHEN op->>'stepStatus' = 'pending' THEN NULL ELSE op->>'endedAt' END,
                   error_code = op->>'errorCode', error_message = op->>'errorMessage'
             WHERE run_id = op->>'runId' AND name = op->>'step';
          END IF;
        END LOOP;
      END
      $fn$;
    `,
  },
  {
    version: 5,
    sql: `
      -- As version 4, but a batch locks and checks each run's lease once: the begins of a wide
      -- fan-out are many ops on one run, and the lock is held to the end of the transaction anyway.
      CREATE OR REPLACE FUNCTION apply_transitions(ops jsonb) RETURNS void
      LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
      DECLARE
        op jsonb;
        changed int;
        fenced text[] := '{}';
      BEGIN
        FOR op IN SELECT value FROM jsonb_array_elements(ops) LOOP
          IF op->>'kind' = 'begin' THEN
            IF NOT (op->>'runId' || ' ' || (op->>'owner')) = ANY (fenced) THEN
              PERFORM 1 FROM runs WHERE id = op->>'runId' AND lease_owner = op->>'owner' FOR SHARE;
              IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'SL001', MESSAGE = op->>'runId';
              END IF;
              fenced := fenced || (op->>'runId' || ' ' || (op->>'owner'));
            END IF;
            INSERT INTO attempts (run_id, step, n, status, started_at, owner)
            VALUES (op->>'runId', op->>'step', (op->>'n')::int, 'running', op->>'startedAt', op->>'owner');
            UPDATE steps SET status = 'running', attempts = (op->>'n')::int,
                   started_at = COALESCE(started_at, op->>'startedAt'), not_before = NULL
             WHERE run_id = op->>'runId' AND name = op->>'step';
          ELSE
            UPDATE attempts SET status = op->>'status', ended_at = op->>'endedAt',
                   error_code = op->>'errorCode', error_message = op->>'errorMessage'
             WHERE run_id = op->>'runId' AND step = op->>'step' AND n = (op->>'n')::int
               AND status = 'running' AND owner = op->>'owner';
            GET DIAGNOSTICS changed = ROW_COUNT;
            IF changed <> 1 THEN
              RAISE EXCEPTION USING ERRCODE = 'SL001', MESSAGE = op->>'runId';
            END IF;
            UPDATE steps SET status = op->>'stepStatus', not_before = (op->>'notBefore')::bigint,
                   outputs = COALESCE(op->>'outputs', outputs),
                   ended_at = CASE WHEN op->>'stepStatus' = 'pending' THEN NULL ELSE op->>'endedAt' END,
                   error_code = op->>'errorCode', error_message = op->>'errorMessage'
             WHERE run_id = op->>'runId' AND name = op->>'step';
          END IF;
        END LOOP;
      END
      $fn$;
    `,
  },
  {
    version: 6,
    sql: `
      -- The file ledger also remembers files whose content cannot be read (corrupt Parquet, a
      -- JSON file that is not an array), by checksum with the reason, so later runs leave them
      -- out until the content changes. For such a row, run_id and ingested_at are the run and
      -- time of the first rejection. (A constant default: no table rewrite.)
      ALTER TABLE ingested_files ADD COLUMN status TEXT COLLATE "C" NOT NULL DEFAULT 'ingested';
      ALTER TABLE ingested_files ADD COLUMN reason TEXT;
    `,
  },
  {
    version: 7,
    sql: `
      -- What each attempt consumed (see AttemptUsage in types.ts), the columns of SQLite's
      -- version 5: CPU ms, peak resident bytes, bytes read and written, and whose figures they
      -- are ('process-tree' or 'process'). Null for older, running and interrupted attempts.
      ALTER TABLE attempts ADD COLUMN cpu_ms DOUBLE PRECISION;
      ALTER TABLE attempts ADD COLUMN peak_memory_bytes BIGINT;
      ALTER TABLE attempts ADD COLUMN read_bytes BIGINT;
      ALTER TABLE attempts ADD COLUMN written_bytes BIGINT;
      ALTER TABLE attempts ADD COLUMN usage_scope TEXT COLLATE "C";

      -- As version 5, with an end recording the attempt's usage.
      CREATE OR REPLACE FUNCTION apply_transitions(ops jsonb) RETURNS void
      LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
      DECLARE
        op jsonb;
        changed int;
        fenced text[] := '{}';
      BEGIN
        FOR op IN SELECT value FROM jsonb_array_elements(ops) LOOP
          IF op->>'kind' = 'begin' THEN
            IF NOT (op->>'runId' || ' ' || (op->>'owner')) = ANY (fenced) THEN
              PERFORM 1 FROM runs WHERE id = op->>'runId' AND lease_owner = op->>'owner' FOR SHARE;
              IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'SL001', MESSAGE = op->>'runId';
              END IF;
              fenced := fenced || (op->>'runId' || ' ' || (op->>'owner'));
            END IF;
            INSERT INTO attempts (run_id, step, n, status, started_at, owner)
            VALUES (op->>'runId', op->>'step', (op->>'n')::int, 'running', op->>'startedAt', op->>'owner');
            UPDATE steps SET status = 'running', attempts = (op->>'n')::int,
                   started_at = COALESCE(started_at, op->>'startedAt'), not_before = NULL
             WHERE run_id = op->>'runId' AND name = op->>'step';
          ELSE
            UPDATE attempts SET status = op->>'status', ended_at = op->>'endedAt',
                   error_code = op->>'errorCode', error_message = op->>'errorMessage',
                   cpu_ms = (op->>'cpuMs')::float8, peak_memory_bytes = (op->>'peakMemoryBytes')::bigint,
                   read_bytes = (op->>'readBytes')::bigint, written_bytes = (op->>'writtenBytes')::bigint,
                   usage_scope = op->>'usageScope'
             WHERE run_id = op->>'runId' AND step = op->>'step' AND n = (op->>'n')::int
               AND status = 'running' AND owner = op->>'owner';
            GET DIAGNOSTICS changed = ROW_COUNT;
            IF changed <> 1 THEN
              RAISE EXCEPTION USING ERRCODE = 'SL001', MESSAGE = op->>'runId';
            END IF;
            UPDATE steps SET status = op->>'stepStatus', not_before = (op->>'notBefore')::bigint,
                   outputs = COALESCE(op->>'outputs', outputs),
                   ended_at = CASE WHEN op->>'stepStatus' = 'pending' THEN NULL ELSE op->>'endedAt' END,
                   error_code = op->>'errorCode', error_message = op->>'errorMessage'
             WHERE run_id = op->>'runId' AND name = op->>'step';
          END IF;
        END LOOP;
      END
      $fn$;
    `,
  },
  {
    version: 8,
    sql: `
      -- Shared state that outlives a run (SharedStateStore in types.ts), as SQLite's version 6.
      CREATE TABLE shared_state (
        namespace  TEXT COLLATE "C" NOT NULL,
        key        TEXT COLLATE "C" NOT NULL,
        value      JSONB NOT NULL,
        version    INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (namespace, key)
      );
    `,
  },
  {
    version: 9,
    sql: `
      -- The evidence an error carried (ErrorInfo.details), SQLite's version 7: JSON text of at
      -- most ~4 KB (text, like outputs: stored and read back byte for byte). Null when none.
      ALTER TABLE attempts ADD COLUMN error_details TEXT;
      ALTER TABLE steps ADD COLUMN error_details TEXT;

      -- As version 7, with an end recording the error's details on the attempt and the step.
      CREATE OR REPLACE FUNCTION apply_transitions(ops jsonb) RETURNS void
      LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
      DECLARE
        op jsonb;
        changed int;
        fenced text[] := '{}';
      BEGIN
        FOR op IN SELECT value FROM jsonb_array_elements(ops) LOOP
          IF op->>'kind' = 'begin' THEN
            IF NOT (op->>'runId' || ' ' || (op->>'owner')) = ANY (fenced) THEN
              PERFORM 1 FROM runs WHERE id = op->>'runId' AND lease_owner = op->>'owner' FOR SHARE;
              IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'SL001', MESSAGE = op->>'runId';
              END IF;
              fenced := fenced || (op->>'runId' || ' ' || (op->>'owner'));
            END IF;
            INSERT INTO attempts (run_id, step, n, status, started_at, owner)
            VALUES (op->>'runId', op->>'step', (op->>'n')::int, 'running', op->>'startedAt', op->>'owner');
            UPDATE steps SET status = 'running', attempts = (op->>'n')::int,
                   started_at = COALESCE(started_at, op->>'startedAt'), not_before = NULL
             WHERE run_id = op->>'runId' AND name = op->>'step';
          ELSE
            UPDATE attempts SET status = op->>'status', ended_at = op->>'endedAt',
                   error_code = op->>'errorCode', error_message = op->>'errorMessage', error_details = op->>'errorDetails',
                   cpu_ms = (op->>'cpuMs')::float8, peak_memory_bytes = (op->>'peakMemoryBytes')::bigint,
                   read_bytes = (op->>'readBytes')::bigint, written_bytes = (op->>'writtenBytes')::bigint,
                   usage_scope = op->>'usageScope'
             WHERE run_id = op->>'runId' AND step = op->>'step' AND n = (op->>'n')::int
               AND status = 'running' AND owner = op->>'owner';
            GET DIAGNOSTICS changed = ROW_COUNT;
            IF changed <> 1 THEN
              RAISE EXCEPTION USING ERRCODE = 'SL001', MESSAGE = op->>'runId';
            END IF;
            UPDATE steps SET status = op->>'stepStatus', not_before = (op->>'notBefore')::bigint,
                   outputs = COALESCE(op->>'outputs', outputs),
                   ended_at = CASE WHEN op->>'stepStatus' = 'pending' THEN NULL ELSE op->>'endedAt' END,
                   error_code = op->>'errorCode', error_message = op->>'errorMessage', error_details = op->>'errorDetails'
             WHERE run_id = op->>'runId' AND name = op->>'step';
          END IF;
        END LOOP;
      END
      $fn$;
    `,
  },
  {
    version: 10,
    sql: `
      -- The audit trail (AuditStore in types.ts), as SQLite's version 8: hash-chained entries with
      -- PCI DSS 10.2.2 fields, signed checkpoints apart from them, both append-only by trigger
      -- (UPDATE, DELETE and TRUNCATE refused). details is TEXT, not JSONB: kept as it was hashed.
      CREATE TABLE audit_log (
        seq       BIGINT PRIMARY KEY,
        time      TEXT NOT NULL,
        actor     TEXT NOT NULL,
        event     TEXT COLLATE "C" NOT NULL,
        outcome   TEXT COLLATE "C" NOT NULL CHECK (outcome IN ('success', 'failure')),
        origin    TEXT NOT NULL,
        resource  TEXT NOT NULL,
        run_id    TEXT COLLATE "C",
        step      TEXT,
        details   TEXT,
        prev_hash TEXT COLLATE "C" NOT NULL,
        hash      TEXT COLLATE "C" NOT NULL
      );
      CREATE INDEX audit_log_run ON audit_log (run_id) WHERE run_id IS NOT NULL;
      CREATE TABLE audit_checkpoints (
        count     BIGINT NOT NULL,
        head      TEXT COLLATE "C" NOT NULL,
        time      TEXT NOT NULL,
        key_id    TEXT COLLATE "C" NOT NULL,
        signature TEXT NOT NULL,
        run_id    TEXT COLLATE "C",
        PRIMARY KEY (count, key_id)
      );
      CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        RAISE EXCEPTION 'the audit trail is append-only (% on %)', TG_OP, TG_TABLE_NAME;
      END
      $fn$;
      CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_append_only();
      CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
      CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_append_only();
      CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    `,
  },
  {
    version: 11,
    sql: `
      -- The web UI's runs list, as SQLite's version 9: keyset pages in (created_at, id) order,
      -- alone or by workflow, status or trigger type, each one index seek; the registry version a
      -- run came from; the records its storage steps counted, summed when the run ends.
      ALTER TABLE runs ADD COLUMN workflow_version INTEGER;
      ALTER TABLE runs ADD COLUMN trigger_type TEXT COLLATE "C";
      ALTER TABLE runs ADD COLUMN rows_in BIGINT;
      ALTER TABLE runs ADD COLUMN rows_stored BIGINT;
      ALTER TABLE runs ADD COLUMN rows_quarantined BIGINT;
      ALTER TABLE runs ADD COLUMN rows_duplicate BIGINT;
      UPDATE runs SET trigger_type = trigger::jsonb->>'type' WHERE trigger IS NOT NULL;
      UPDATE runs r SET rows_in = c.rows_in, rows_stored = c.rows_stored, rows_quarantined = c.rows_quarantined, rows_duplicate = c.rows_duplicate
        FROM (${ROW_COUNTS_SQL("steps")} GROUP BY s.run_id) c
       WHERE c.run_id = r.id AND r.status IN ('succeeded', 'failed', 'cancelled');
      CREATE INDEX runs_created_id ON runs (created_at, id);
      DROP INDEX runs_workflow_created;
      CREATE INDEX runs_workflow_created ON runs (workflow, created_at, id);
      CREATE INDEX runs_status_created ON runs (status, created_at, id);
      CREATE INDEX runs_trigger_created ON runs (trigger_type, created_at, id);
    `,
  },
];

/**
 * The records counted by a run's storage steps (those whose outputs have rowsStored), per run:
 * append `AND s.run_id = $1` for one run or `GROUP BY s.run_id` for all.
 */
export function ROW_COUNTS_SQL(steps: string): string {
  return `SELECT s.run_id,
            sum((s.outputs::jsonb->>'rowsIn')::numeric)::bigint AS rows_in,
            sum((s.outputs::jsonb->>'rowsStored')::numeric)::bigint AS rows_stored,
            sum((s.outputs::jsonb->>'rowsQuarantined')::numeric)::bigint AS rows_quarantined,
            sum((s.outputs::jsonb->>'rowsDuplicate')::numeric)::bigint AS rows_duplicate
       FROM ${steps} s WHERE s.outputs LIKE '%"rowsStored"%'`;
}

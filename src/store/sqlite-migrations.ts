/**
 * Versioned schema of the SQLite state store. Append new versions; never edit an applied one.
 */
export const SQLITE_MIGRATIONS: { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE runs (
        id               TEXT PRIMARY KEY,
        workflow         TEXT NOT NULL,
        spec             TEXT NOT NULL,
        source           TEXT,
        params           TEXT NOT NULL,
        trigger          TEXT,
        status           TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        started_at       TEXT,
        ended_at         TEXT,
        deadline_at      TEXT,
        error_code       TEXT,
        error_message    TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        lease_owner      TEXT,
        lease_expires_at INTEGER
      );
      CREATE INDEX runs_workflow_created ON runs (workflow, created_at);
      CREATE INDEX runs_status ON runs (status);

      CREATE TABLE steps (
        run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        idx           INTEGER NOT NULL,
        status        TEXT NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        not_before    INTEGER,
        started_at    TEXT,
        ended_at      TEXT,
        outputs       TEXT,
        error_code    TEXT,
        error_message TEXT,
        PRIMARY KEY (run_id, name)
      ) WITHOUT ROWID;

      CREATE TABLE attempts (
        run_id        TEXT NOT NULL,
        step          TEXT NOT NULL,
        n             INTEGER NOT NULL,
        status        TEXT NOT NULL,
        started_at    TEXT NOT NULL,
        ended_at      TEXT,
        error_code    TEXT,
        error_message TEXT,
        owner         TEXT,
        PRIMARY KEY (run_id, step, n),
        FOREIGN KEY (run_id, step) REFERENCES steps (run_id, name) ON DELETE CASCADE
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    sql: `
      -- Files a workflow has ingested, by content checksum, so a daily run takes only new files.
      CREATE TABLE ingested_files (
        scope       TEXT NOT NULL,
        checksum    TEXT NOT NULL,
        path        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        run_id      TEXT NOT NULL,
        ingested_at TEXT NOT NULL,
        PRIMARY KEY (scope, checksum)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 3,
    sql: `
      -- The service: the run queue, the workflow registry, events, cron fires, leader leases.
      ALTER TABLE runs ADD COLUMN event_id TEXT;
      CREATE INDEX runs_event ON runs (event_id) WHERE event_id IS NOT NULL;
      CREATE INDEX runs_open ON runs (created_at) WHERE status IN ('pending', 'running');
      -- Attempts before a manual retry do not count against the step's retry budget.
      ALTER TABLE steps ADD COLUMN retry_base INTEGER NOT NULL DEFAULT 0;

      CREATE TABLE workflows (
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        spec       TEXT NOT NULL,
        yaml       TEXT NOT NULL,
        source     TEXT,
        created_at TEXT NOT NULL,
        current    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, version)
      ) WITHOUT ROWID;

      CREATE TABLE events (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        data       TEXT NOT NULL,
        source     TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX events_name_created ON events (name, created_at);

      CREATE TABLE fires (
        workflow    TEXT NOT NULL,
        trigger_key TEXT NOT NULL,
        fire_at     TEXT NOT NULL,
        run_id      TEXT,
        outcome     TEXT,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (workflow, trigger_key, fire_at)
      ) WITHOUT ROWID;

      CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 4,
    sql: `
      -- The file ledger also remembers files whose content cannot be read (corrupt Parquet, a
      -- JSON file that is not an array), by checksum with the reason, so later runs leave them
      -- out until the content changes. For such a row, run_id and ingested_at are the run and
      -- time of the first rejection.
      ALTER TABLE ingested_files ADD COLUMN status TEXT NOT NULL DEFAULT 'ingested';
      ALTER TABLE ingested_files ADD COLUMN reason TEXT;
    `,
  },
  {
    version: 5,
    sql: `
      -- What each attempt consumed (see AttemptUsage in types.ts): CPU ms (fractional for
      -- in-process actions), peak resident bytes, bytes read and written, and whose figures
      -- they are ('process-tree' for an exec step's programs, 'process' for the whole Sluice
      -- process). All null for attempts recorded before this version, running or interrupted.
      ALTER TABLE attempts ADD COLUMN cpu_ms REAL;
      ALTER TABLE attempts ADD COLUMN peak_memory_bytes INTEGER;
      ALTER TABLE attempts ADD COLUMN read_bytes INTEGER;
      ALTER TABLE attempts ADD COLUMN written_bytes INTEGER;
      ALTER TABLE attempts ADD COLUMN usage_scope TEXT;
    `,
  },
  {
    version: 6,
    sql: `
      -- Shared state that outlives a run (SharedStateStore in types.ts): circuit breakers and
      -- the recovery bandit. value is JSON text; version makes every write a compare-and-set.
      CREATE TABLE shared_state (
        namespace  TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        version    INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (namespace, key)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 7,
    sql: `
      -- The evidence an error carried (ErrorInfo.details: HTTP status, Retry-After, bytes declared
      -- and received, page …) as JSON text of at most ~4 KB, for failure analysis. Null when the
      -- error had none, and for errors recorded before this version.
      ALTER TABLE attempts ADD COLUMN error_details TEXT;
      ALTER TABLE steps ADD COLUMN error_details TEXT;
    `,
  },
  {
    version: 8,
    sql: `
      -- The audit trail (AuditStore in types.ts): entries with PCI DSS 10.2.2 fields, each hash
      -- SHA-256 over the previous one and the entry (crypto/audit-chain.ts); signed checkpoints
      -- apart from them. The triggers make both append-only for every ordinary writer.
      CREATE TABLE audit_log (
        seq       INTEGER PRIMARY KEY,
        time      TEXT NOT NULL,
        actor     TEXT NOT NULL,
        event     TEXT NOT NULL,
        outcome   TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
        origin    TEXT NOT NULL,
        resource  TEXT NOT NULL,
        run_id    TEXT,
        step      TEXT,
        details   TEXT,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
      );
      CREATE INDEX audit_log_run ON audit_log (run_id) WHERE run_id IS NOT NULL;
      CREATE TABLE audit_checkpoints (
        count     INTEGER NOT NULL,
        head      TEXT NOT NULL,
        time      TEXT NOT NULL,
        key_id    TEXT NOT NULL,
        signature TEXT NOT NULL,
        run_id    TEXT,
        PRIMARY KEY (count, key_id)
      ) WITHOUT ROWID;
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
      CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
      CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
      CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
    `,
  },
  {
    version: 9,
    sql: `
      -- The web UI's runs list (store/run-page.ts): keyset pages in (created_at, id) order, alone
      -- or filtered by workflow, status or trigger type, each one index seek; the registry version
      -- a run came from; and the records its storage steps counted, summed when the run ends
      -- (finishRun), so a page never reads the steps' outputs.
      ALTER TABLE runs ADD COLUMN workflow_version INTEGER;
      ALTER TABLE runs ADD COLUMN trigger_type TEXT;
      ALTER TABLE runs ADD COLUMN rows_in INTEGER;
      ALTER TABLE runs ADD COLUMN rows_stored INTEGER;
      ALTER TABLE runs ADD COLUMN rows_quarantined INTEGER;
      ALTER TABLE runs ADD COLUMN rows_duplicate INTEGER;
      UPDATE runs SET trigger_type = json_extract(trigger, '$.type') WHERE trigger IS NOT NULL;
      UPDATE runs SET
        rows_in = (SELECT sum(json_extract(outputs, '$.rowsIn')) FROM steps WHERE run_id = runs.id AND outputs LIKE '%"rowsStored"%'),
        rows_stored = (SELECT sum(json_extract(outputs, '$.rowsStored')) FROM steps WHERE run_id = runs.id AND outputs LIKE '%"rowsStored"%'),
        rows_quarantined = (SELECT sum(json_extract(outputs, '$.rowsQuarantined')) FROM steps WHERE run_id = runs.id AND outputs LIKE '%"rowsStored"%'),
        rows_duplicate = (SELECT sum(json_extract(outputs, '$.rowsDuplicate')) FROM steps WHERE run_id = runs.id AND outputs LIKE '%"rowsStored"%')
       WHERE status IN ('succeeded', 'failed', 'cancelled');
      CREATE INDEX runs_created_id ON runs (created_at, id);
      DROP INDEX runs_workflow_created;
      CREATE INDEX runs_workflow_created ON runs (workflow, created_at, id);
      CREATE INDEX runs_status_created ON runs (status, created_at, id);
      CREATE INDEX runs_trigger_created ON runs (trigger_type, created_at, id);
    `,
  },
];

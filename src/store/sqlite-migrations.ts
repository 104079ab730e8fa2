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
];

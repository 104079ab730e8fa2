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
];

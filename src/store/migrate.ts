/**
 * The migration plan both dialects follow: which versions to apply, in order, and the refusal to
 * open a store a newer Sluice has written. Each dialect only executes the plan (SQLite in one
 * immediate transaction per version, PostgreSQL in one transaction under an advisory lock).
 */
import { SluiceError } from "../errors.js";

export interface Migration {
  version: number;
  sql: string;
}

/** The migrations still to apply, in version order; a store ahead of this code is an error. */
export function migrationPlan(applied: Iterable<number>, migrations: readonly Migration[]): Migration[] {
  const done = new Set(applied);
  const latest = Math.max(0, ...done);
  const known = Math.max(0, ...migrations.map((m) => m.version));
  if (latest > known)
    throw new SluiceError("BAD_CONFIG", `the state store was written by a newer Sluice (schema ${latest}, this one knows ${known}); upgrade Sluice`);
  return [...migrations].sort((a, b) => a.version - b.version).filter((m) => !done.has(m.version));
}

/** The table that records applied versions, the same in both dialects. */
export const MIGRATIONS_TABLE_SQL = `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`;

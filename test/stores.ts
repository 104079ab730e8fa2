/**
 * The two state stores a behaviour is tested on: the embedded SQLite one (a fresh file per test
 * environment) and PostgreSQL (the real server on this machine, in a schema of its own that is
 * dropped after the file's tests).
 */
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { openPostgresStore } from "../src/store/postgres.js";
import type { StateStore } from "../src/store/types.js";

export const PG_URL = "postgres://postgres@127.0.0.1:5432/test";

export interface StoreBackend {
  dialect: "sqlite" | "postgres";
  /** The shared store for the file (PostgreSQL), or undefined for a fresh SQLite file per environment. */
  open(): Promise<StateStore | undefined>;
  drop(): Promise<void>;
  /** The schema PostgreSQL tests use, for child processes pointed at the same store. */
  schema?: string;
}

export async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client(PG_URL);
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
}

export function bothStores(prefix: string): StoreBackend[] {
  const schema = `sluice_${prefix}_${process.pid}_${Date.now().toString(36)}`;
  return [
    { dialect: "sqlite", open: async () => undefined, drop: async () => undefined },
    { dialect: "postgres", schema, open: async () => openPostgresStore(PG_URL, { schema }), drop: () => dropSchema(schema) },
  ];
}

/** A PostgreSQL schema of its own for the enclosing describe block: created before its tests, dropped after. */
export function pgSchema(prefix: string): string {
  const schema = `sluice_${prefix}_${process.pid}`;
  beforeAll(async () => {
    const c = new pg.Client(PG_URL);
    await c.connect();
    await c.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await c.end();
  });
  afterAll(() => dropSchema(schema));
  return schema;
}

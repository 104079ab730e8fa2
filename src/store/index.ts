/**
 * Choosing the state store: SQLite under SLUICE_HOME by default, PostgreSQL when
 * SLUICE_DATABASE_URL is a postgres:// URL.
 */
import { join, resolve } from "node:path";
import { SluiceError } from "../errors.js";
import { openSqliteStore } from "./sqlite.js";
import type { StateStore } from "./types.js";

export type { StateStore } from "./types.js";

/** Where Sluice keeps its state, logs and artifacts: `$SLUICE_HOME`, or `.sluice/` under the working directory. */
export function sluiceHome(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.SLUICE_HOME ?? join(process.cwd(), ".sluice"));
}

/**
 * The state store this environment asks for: PostgreSQL when SLUICE_DATABASE_URL is a postgres://
 * URL (tables in the `sluice` schema, or SLUICE_PG_SCHEMA, migrated on open), otherwise SQLite
 * under SLUICE_HOME.
 * A server that cannot be reached fails with NETWORK_ERROR naming host:port, never the password.
 */
export async function openStore(env: NodeJS.ProcessEnv = process.env): Promise<StateStore> {
  const url = env.SLUICE_DATABASE_URL;
  // Loaded only when asked for: the pg client is 60 ms of start-up a laptop's run does without.
  if (url && /^postgres(ql)?:\/\//.test(url)) return (await import("./postgres.js")).openPostgresStore(url, { schema: env.SLUICE_PG_SCHEMA || undefined });
  if (url) throw new SluiceError("BAD_CONFIG", "SLUICE_DATABASE_URL must be a postgres:// URL");
  return openSqliteStore(join(sluiceHome(env), "sluice.db"));
}

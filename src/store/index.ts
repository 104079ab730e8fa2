/**
 * Choosing the state store: SQLite under SLUICE_HOME by default.
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

export function openStore(env: NodeJS.ProcessEnv = process.env): StateStore {
  const url = env.SLUICE_DATABASE_URL;
  if (url && /^postgres(ql)?:\/\//.test(url))
    throw new SluiceError(
      "BAD_CONFIG",
      "SLUICE_DATABASE_URL points at PostgreSQL, but this build has only the embedded SQLite state store; unset it to use .sluice/sluice.db",
    );
  if (url) throw new SluiceError("BAD_CONFIG", "SLUICE_DATABASE_URL must be a postgres:// URL");
  return openSqliteStore(join(sluiceHome(env), "sluice.db"));
}

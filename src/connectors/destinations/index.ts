/**
 * Storage destinations for validated, typed rows: SQLite, PostgreSQL, NDJSON/Parquet files.
 *
 * `openDestination(spec)` accepts:
 * - `sqlite:PATH`: a SQLite file, relative to `baseDir` (default: the working directory);
 *   parent folders are created;
 * - `postgres://…` / `postgresql://…`: without a password (put a URL with a password in a secret);
 * - `env:NAME` / `file:PATH`: a secret reference whose value is one of the URL forms above;
 * - a path ending in `.ndjson`, `.jsonl` or `.parquet`: a file destination.
 */
import { isAbsolute, resolve } from "node:path";
import { SluiceError } from "../../errors.js";
import { isSecretRef, resolveSecret } from "../secrets.js";
import { FileDestination } from "./file.js";
import { PostgresDestination } from "./postgres.js";
import { SqliteDestination } from "./sqlite.js";
import type { Destination } from "./types.js";

export type { Destination, DestinationKind, DestinationTarget, WriteContext, WriteCounts } from "./types.js";
export { HASH_COLUMN, RUN_ID_COLUMN, LOADED_AT_COLUMN, METADATA_COLUMNS, QUARANTINE_SUFFIX, canonicalText, contentHash } from "./common.js";
export { FileDestination, DEFAULT_MAX_TRACKED_KEYS, type FileDestinationOptions } from "./file.js";
export { PostgresDestination, POSTGRES_BATCH_ROWS, postgresType } from "./postgres.js";
export { SqliteDestination, sqliteType } from "./sqlite.js";

export interface OpenDestinationOptions {
  /** Folder that relative paths (and `file:` secrets) resolve against. Default: the working directory. */
  baseDir?: string;
  /** Environment for `env:` references. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
}

const FORMS = "sqlite:PATH, postgres://HOST/DB (no password), env:NAME or file:PATH holding one of those URLs, or a path ending in .ndjson, .jsonl or .parquet";

/** Open (and for databases, connect to) the destination a spec names. */
export async function openDestination(spec: string, opts: OpenDestinationOptions = {}): Promise<Destination> {
  if (typeof spec !== "string" || spec.trim() === "") throw new SluiceError("BAD_CONFIG", `A destination is required: ${FORMS}.`);
  const baseDir = opts.baseDir ?? process.cwd();
  if (isSecretRef(spec)) {
    const value = await resolveSecret(spec, "destination", { baseDir, env: opts.env });
    if (!/^(sqlite:|postgres(ql)?:\/\/)/i.test(value.trim())) {
      // Never echo the value: it is a secret.
      throw new SluiceError("BAD_CONFIG", `Destination ${spec} must hold a sqlite:PATH or postgres:// URL.`);
    }
    return openPlain(value.trim(), baseDir, spec);
  }
  return openPlain(spec, baseDir, undefined);
}

async function openPlain(spec: string, baseDir: string, fromSecret: string | undefined): Promise<Destination> {
  if (/^sqlite:/i.test(spec)) {
    const path = spec.slice("sqlite:".length);
    if (path === "") throw new SluiceError("BAD_CONFIG", `Destination ${fromSecret ?? spec} has no path after sqlite:.`);
    return SqliteDestination.open(isAbsolute(path) ? path : resolve(baseDir, path));
  }
  if (/^postgres(ql)?:\/\//i.test(spec)) return PostgresDestination.open(spec, fromSecret ? { fromSecret } : {});
  if (!fromSecret && /\.(ndjson|jsonl|parquet)$/i.test(spec) && !/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) {
    return new FileDestination(resolve(baseDir, spec));
  }
  throw new SluiceError(
    "BAD_CONFIG",
    `Destination ${JSON.stringify(fromSecret ?? spec.replace(/\/\/[^/@\s]*@/, "//"))} is not one of the accepted forms: ${FORMS}.`,
  );
}

/**
 * What a destination table already holds, read for the gap ledger: its key values and its
 * columns. The destination string is the one the standard workflow takes (sqlite:PATH relative
 * to the working directory, postgres://…, env:/file: references to either; default the embedded
 * warehouse `<home>/warehouse.db`), so a recovery names the same table the failed run filled.
 *
 * WHY read here and not through the Destination interface: destinations are write paths
 * (prepare, upsert, count); reading every key is a recovery need only, and it must not create a
 * table that does not exist yet — a missing table simply holds nothing. File destinations are
 * refused: they rewrite the whole file on every store, so "fill the gaps" has no meaning there.
 */
import Database from "better-sqlite3";
import { existsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { SluiceError } from "../../errors.js";
import { isSecretRef, readPostgres, resolveSecret, safeUrl } from "../../connectors/index.js";
import { splitTableName } from "../../connectors/destinations/postgres.js";
import { defaultDestination } from "../batch/store.js";
import type { GapLedger, KeyRange } from "./contract.js";
import { compositeKey, encodeKey, fromKeyRanges, gapLedger, guessCodec, keySetOf, type KeyCodec, type KeySet } from "./gaps.js";
import { canonical } from "./merge-records.js";

export type DestinationRef = { kind: "sqlite"; path: string; display: string } | { kind: "postgres"; url: string; display: string };

/** A destination column as the database describes it. */
export interface TableColumn {
  name: string;
  /** SQLite: the declared type (INTEGER, REAL, TEXT); PostgreSQL: information_schema's data_type. */
  sqlType: string;
  scale?: number;
}

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

export async function resolveDestination(spec: string | undefined, home: string): Promise<DestinationRef> {
  let s = spec ?? defaultDestination(home);
  if (isSecretRef(s)) s = (await resolveSecret(s, "destination")).trim();
  if (/^sqlite:/i.test(s)) {
    const path = s.slice("sqlite:".length);
    const abs = isAbsolute(path) ? path : resolve(path);
    return { kind: "sqlite", path: abs, display: `sqlite:${abs}` };
  }
  if (/^postgres(ql)?:\/\//i.test(s)) return { kind: "postgres", url: s, display: safeUrl(s) };
  throw new SluiceError(
    "BAD_CONFIG",
    `recovery stores into a database table (sqlite:PATH or postgres://…); ${isSecretRef(spec ?? "") ? spec! : safeUrl(s)} is not one (file destinations are rewritten whole on every store, so gaps cannot be filled in them)`,
    { retryable: false },
  );
}

/** Every key of the table, one array of key-column values per row; nothing when the table (or the SQLite file) does not exist. */
export async function readHeldKeys(dest: DestinationRef, table: string, key: readonly string[], signal?: AbortSignal): Promise<unknown[][]> {
  if (key.length === 0) throw new SluiceError("BAD_INPUT", "the gap ledger needs the key columns (key: [...])", { retryable: false });
  if (dest.kind === "sqlite") {
    const db = openSqlite(dest);
    if (!db) return [];
    try {
      if (!db.prepare("select 1 from sqlite_master where type = 'table' and name = ?").get(table)) return [];
      return db
        .prepare(`select ${key.map(q).join(", ")} from ${q(table)}`)
        .raw()
        .all() as unknown[][];
    } catch (err) {
      throw new SluiceError("BAD_CONFIG", `reading the keys of ${table} in ${dest.display} failed: ${(err as Error).message}`, { retryable: false });
    } finally {
      db.close();
    }
  }
  const { qualified, regclass } = pgName(table);
  if (!(await pgTableExists(dest, regclass, signal))) return [];
  const out: unknown[][] = [];
  for await (const rows of readPostgres({ url: dest.url, query: `select ${key.map(q).join(", ")} from ${qualified}`, batchSize: 10_000 }, { signal }))
    for (const r of rows) out.push(key.map((k) => r[k]));
  return out;
}

/**
 * The gap ledger of a table against an expected domain (its key shape guessed from the domain
 * and the held keys unless given).
 */
export async function destinationLedger(
  dest: DestinationRef,
  table: string,
  key: string[],
  domain: { from: GapLedger["domain"]["from"]; ranges: KeyRange[]; codec?: KeyCodec },
  signal?: AbortSignal,
): Promise<{ ledger: GapLedger; gaps: KeySet; codec: KeyCodec }> {
  const heldRows = await readHeldKeys(dest, table, key, signal);
  const single = key.length === 1;
  let codec = domain.codec;
  if (!codec) {
    const g = guessCodec();
    for (const r of domain.ranges) (g.see(r.from), g.see(r.to));
    for (const r of heldRows) g.see(r[0]);
    codec = single ? g.codec() : { kind: "opaque" };
  }
  const c = codec;
  const expected = fromKeyRanges(c, domain.ranges, "the expected domain");
  const held = keySetOf(
    c,
    heldRows.map((r) => (single ? encodeKey(c, r[0]) : compositeKey(r.map(canonical)))).filter((k): k is number | string => k !== undefined),
  );
  return { ...gapLedger(key, domain.from, expected, held), codec: c };
}

/** The table's own columns (Sluice's `_sluice_*` metadata left out), or undefined when it does not exist. */
export async function readTableColumns(dest: DestinationRef, table: string, signal?: AbortSignal): Promise<TableColumn[] | undefined> {
  if (dest.kind === "sqlite") {
    const db = openSqlite(dest);
    if (!db) return undefined;
    try {
      const info = db.prepare(`pragma table_info(${q(table)})`).all() as { name: string; type: string }[];
      if (info.length === 0) return undefined;
      return info.filter((c) => !c.name.startsWith("_sluice_")).map((c) => ({ name: c.name, sqlType: c.type.toUpperCase() }));
    } finally {
      db.close();
    }
  }
  const { schema, table: name } = splitTableName(table);
  const { regclass } = pgName(table);
  if (!(await pgTableExists(dest, regclass, signal))) return undefined;
  const cols: TableColumn[] = [];
  for await (const rows of readPostgres(
    {
      url: dest.url,
      query:
        "select column_name, data_type, numeric_scale from information_schema.columns where table_name = $1 and table_schema = coalesce($2, current_schema()) order by ordinal_position",
      params: [name, schema ?? null],
    },
    { signal },
  ))
    for (const r of rows)
      if (!String(r.column_name).startsWith("_sluice_"))
        cols.push({ name: String(r.column_name), sqlType: String(r.data_type), ...(r.numeric_scale != null ? { scale: Number(r.numeric_scale) } : {}) });
  return cols;
}

function openSqlite(dest: { path: string; display: string }): Database.Database | undefined {
  if (!existsSync(dest.path)) return undefined;
  try {
    const db = new Database(dest.path, { readonly: true, fileMustExist: true });
    db.pragma("busy_timeout = 5000");
    return db;
  } catch (err) {
    throw new SluiceError("BAD_CONFIG", `${dest.display} cannot be opened: ${(err as Error).message}`, { retryable: false });
  }
}

function pgName(table: string): { qualified: string; regclass: string } {
  const { schema, table: name } = splitTableName(table);
  const qualified = schema ? `${q(schema)}.${q(name)}` : q(name);
  return { qualified, regclass: qualified };
}

async function pgTableExists(dest: { url: string }, regclass: string, signal?: AbortSignal): Promise<boolean> {
  for await (const rows of readPostgres({ url: dest.url, query: "select to_regclass($1) is not null as found", params: [regclass] }, { signal }))
    return rows[0]?.found === true;
  return false;
}

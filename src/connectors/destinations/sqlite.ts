/**
 * SQLite destination (better-sqlite3): WAL, synchronous=NORMAL, one transaction per batch.
 *
 * Tables Sluice creates are STRICT, so a value the column cannot hold (text in an INTEGER
 * column) is refused by SQLite instead of stored as something else. Timestamps and dates are
 * TEXT (canonical UTC ISO-8601 and YYYY-MM-DD, which sort and compare as time); booleans are
 * INTEGER 0/1.
 *
 * Decimals are REAL, so that they compare, sort and aggregate as numbers (as TEXT, `max(price)`
 * answered 9.4 where the maximum was 35.6). SQLite has no exact decimal type; a REAL holds every
 * decimal of at most 15 significant digits exactly — reading it back to the column's scale gives
 * the very digits that were written (DBL_DIG is 15) — which covers prices, amounts and
 * measurements. A value with more significant digits is not rounded silently: its row is
 * rejected (quarantined by the store step, dead-lettered by a stream) with a reason saying so;
 * such data belongs in PostgreSQL, whose NUMERIC(38, s) holds it exactly.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Column, QuarantinedRecord, TypedRow } from "../../formats/typed.js";
import type { StageChunk } from "../../formats/stage.js";
import { SluiceError } from "../../errors.js";
import {
  HASH_COLUMN,
  LOADED_AT_COLUMN,
  QUARANTINE_SUFFIX,
  RUN_ID_COLUMN,
  checkTarget,
  decodeStaged,
  jsonText,
  prepareBatch,
  type CheckedTarget,
  type PreparedBatch,
} from "./common.js";
import type { Destination, DestinationTarget, WriteContext, WriteCounts } from "./types.js";

type Affinity = "INTEGER" | "TEXT" | "BLOB" | "REAL" | "NUMERIC";

/** SQLite's column affinity rules (https://www.sqlite.org/datatype3.html §3.1). */
export function sqliteAffinity(declared: string): Affinity {
  const t = declared.toUpperCase();
  if (t.includes("INT")) return "INTEGER";
  if (t.includes("CHAR") || t.includes("CLOB") || t.includes("TEXT")) return "TEXT";
  if (t === "" || t.includes("BLOB") || t === "ANY") return "BLOB";
  if (t.includes("REAL") || t.includes("FLOA") || t.includes("DOUB")) return "REAL";
  return "NUMERIC";
}

export function sqliteType(c: Column): "TEXT" | "INTEGER" | "REAL" {
  return c.type === "integer" || c.type === "boolean" ? "INTEGER" : c.type === "decimal" ? "REAL" : "TEXT";
}

/** Most significant digits a REAL holds exactly (DBL_DIG). */
const REAL_DIGITS = 15;

/** Significant digits of canonical decimal text: leading and trailing zeros and the point left out. */
export function significantDigits(text: string): number {
  let start = text.charCodeAt(0) === 45 ? 1 : 0;
  let end = text.length;
  while (start < end && (text.charCodeAt(start) === 48 || text.charCodeAt(start) === 46)) start++;
  while (end > start && (text.charCodeAt(end - 1) === 48 || text.charCodeAt(end - 1) === 46)) end--;
  let n = end - start;
  if (text.indexOf(".", start) !== -1 && text.indexOf(".", start) < end) n--;
  return Math.max(0, n);
}

/** Affinities that keep a value of this type exactly (BLOB = none: stores what it is given). */
function acceptable(c: Column): Affinity[] {
  switch (c.type) {
    case "integer":
    case "boolean":
      return ["INTEGER", "NUMERIC", "BLOB"];
    case "decimal":
      return ["REAL"];
    default:
      return ["TEXT", "BLOB"];
  }
}

/** Rows per multi-row upsert statement (one prepared statement per row count up to this, cached). */
const ROWS_PER_STATEMENT = 64;

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

export class SqliteDestination implements Destination {
  readonly kind = "sqlite" as const;
  readonly display: string;
  private readonly db: Database.Database;
  private target: CheckedTarget | undefined;
  private insertQuarantine: Database.Statement | undefined;
  /** Upserts rows given as one flat array of parameters (each row's columns then the metadata), in one transaction. */
  private runBatch: ((params: unknown[]) => number) | undefined;

  private constructor(
    readonly path: string,
    db: Database.Database,
  ) {
    this.db = db;
    this.display = `sqlite:${path}`;
  }

  static open(path: string): SqliteDestination {
    try {
      mkdirSync(dirname(path), { recursive: true });
      const db = new Database(path);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("busy_timeout = 5000");
      return new SqliteDestination(path, db);
    } catch (err) {
      throw sqliteError(err, `sqlite:${path}`, "opening the database");
    }
  }

  async prepare(target: DestinationTarget): Promise<void> {
    const t = checkTarget(target, this.display);
    if (!/^[^.]+$/.test(t.table) || t.table.trim() === "") {
      throw new SluiceError(
        "BAD_CONFIG",
        `Destination ${this.display}: table name ${JSON.stringify(t.table)} is not valid for SQLite (one name, no schema part).`,
      );
    }
    const table = t.table;
    const qt = q(table);
    const qq = q(table + QUARANTINE_SUFFIX);
    try {
      this.db
        .transaction(() => {
          const existing = this.db.prepare("select 1 from sqlite_master where type = 'table' and name = ?").get(table);
          if (existing) this.checkExisting(t);
          else {
            const cols = t.columns.map((c) => `${q(c.name)} ${sqliteType(c)}${t.key.includes(c.name) ? " NOT NULL" : ""}`);
            cols.push(`${q(HASH_COLUMN)} TEXT NOT NULL`, `${q(RUN_ID_COLUMN)} TEXT NOT NULL`, `${q(LOADED_AT_COLUMN)} TEXT NOT NULL`);
            this.db.exec(`create table ${qt} (${cols.join(", ")}, primary key (${t.key.map(q).join(", ")})) strict`);
          }
          this.db.exec(`create table if not exists ${qq} (
            id integer primary key autoincrement,
            run_id text not null, step text not null, source text not null, line integer not null,
            reasons text not null, record text, quarantined_at text not null,
            unique (run_id, step, source, line))`);
        })
        .immediate();
    } catch (err) {
      throw sqliteError(err, this.display, `preparing table ${table}`);
    }
    const all = [...t.names, HASH_COLUMN, RUN_ID_COLUMN, LOADED_AT_COLUMN];
    const updates = all.filter((n) => !t.key.includes(n)).map((n) => `${q(n)} = excluded.${q(n)}`);
    const conflict = t.hashKey
      ? `on conflict (${q(HASH_COLUMN)}) do nothing`
      : `on conflict (${t.key.map(q).join(", ")}) do update set ${updates.join(", ")} where ${qt}.${q(HASH_COLUMN)} is not excluded.${q(HASH_COLUMN)}`;
    // Rows go in several to a statement: stepping a prepared statement once per row cost about a
    // fifth of the upsert time (measured on the stream bench's 13-column table). The rows of a batch have distinct keys (prepareBatch
    // keeps the last of each), so a multi-row upsert changes exactly what one upsert per row
    // would, and `changes` counts the same rows (a skipped conflict counts 0 either way).
    const insertHead = `insert into ${qt} (${all.map(q).join(", ")}) values `;
    const tuple = `(${all.map(() => "?").join(", ")})`;
    const statements = new Map<number, Database.Statement>();
    const upsertRows = (n: number): Database.Statement => {
      let st = statements.get(n);
      if (!st) {
        st = this.db.prepare(`${insertHead}${new Array<string>(n).fill(tuple).join(", ")} ${conflict}`);
        statements.set(n, st);
      }
      return st;
    };
    this.insertQuarantine = this.db.prepare(
      `insert into ${qq} (run_id, step, source, line, reasons, record, quarantined_at) values (?, ?, ?, ?, ?, ?, ?) on conflict do nothing`,
    );
    const width = all.length;
    // At most ROWS_PER_STATEMENT rows (and well under SQLite's 32,766 parameters) per statement.
    const perStatement = Math.max(1, Math.min(ROWS_PER_STATEMENT, Math.floor(30000 / width)));
    this.runBatch = this.db.transaction((params: unknown[]) => {
      const rows = params.length / width;
      let changed = 0;
      for (let start = 0; start < rows; start += perStatement) {
        const n = Math.min(perStatement, rows - start);
        const slice = n === rows ? params : params.slice(start * width, (start + n) * width);
        changed += upsertRows(n).run(slice).changes;
      }
      return changed;
    });
    this.target = t;
  }

  private checkExisting(t: CheckedTarget): void {
    const info = this.db.prepare(`pragma table_info(${q(t.table)})`).all() as {
      name: string;
      type: string;
      notnull: number;
      dflt_value: unknown;
      pk: number;
    }[];
    const byName = new Map(info.map((c) => [c.name, c]));
    const fail = (why: string) =>
      new SluiceError("BAD_CONFIG", `Destination ${this.display}: existing table ${t.table} ${why}; Sluice does not alter existing tables.`, {
        details: { table: t.table },
      });
    const expect: [string, string, Affinity[]][] = t.columns.map((c) => [c.name, sqliteType(c), acceptable(c)]);
    expect.push([HASH_COLUMN, "TEXT", ["TEXT", "BLOB"]], [RUN_ID_COLUMN, "TEXT", ["TEXT", "BLOB"]], [LOADED_AT_COLUMN, "TEXT", ["TEXT", "BLOB"]]);
    for (const [name, type, ok] of expect) {
      const found = byName.get(name);
      if (!found) throw fail(`has no column ${name} (expected ${type})`);
      if (!ok.includes(sqliteAffinity(found.type))) {
        const col = t.columns.find((c) => c.name === name);
        const hint =
          col?.type === "decimal" && sqliteAffinity(found.type) === "TEXT"
            ? " (decimals are stored as REAL since Sluice 0.2, so that they compare as numbers; rename or drop the old table)"
            : "";
        throw fail(`column ${name} has type ${found.type || "(none)"}, expected ${type}${hint}`);
      }
    }
    const wanted = new Set(expect.map((e) => e[0]));
    for (const c of info) {
      if (!wanted.has(c.name) && c.notnull && c.dflt_value === null && c.pk === 0) throw fail(`has column ${c.name}, which is NOT NULL without a default`);
    }
    // ON CONFLICT needs a primary key or a unique index on exactly the key columns.
    const key = [...t.key].sort().join("\0");
    const pk = info
      .filter((c) => c.pk > 0)
      .map((c) => c.name)
      .sort()
      .join("\0");
    if (pk === key) return;
    const indexes = this.db.prepare(`pragma index_list(${q(t.table)})`).all() as { name: string; unique: number; partial: number }[];
    for (const ix of indexes) {
      if (!ix.unique || ix.partial) continue;
      const cols = (this.db.prepare(`pragma index_info(${q(ix.name)})`).all() as { name: string | null }[])
        .map((c) => c.name ?? "")
        .sort()
        .join("\0");
      if (cols === key) return;
    }
    throw fail(`has no primary key or unique index on (${t.key.join(", ")})`);
  }

  async write(rows: TypedRow[], ctx: WriteContext): Promise<WriteCounts> {
    const t = this.requireTarget();
    if (rows.length === 0) return { stored: 0, duplicate: 0 };
    return this.upsert(t, rows, prepareBatch(t, rows, this.display), undefined, ctx);
  }

  async writeStaged(chunk: StageChunk, ctx: WriteContext): Promise<WriteCounts> {
    const t = this.requireTarget();
    if (chunk.rows === 0) return { stored: 0, duplicate: 0 };
    const { rows, hashes, lines } = decodeStaged(t, chunk);
    return this.upsert(t, rows, prepareBatch(t, rows, this.display, hashes), lines, ctx);
  }

  private upsert(t: CheckedTarget, rows: TypedRow[], batch: PreparedBatch, lines: number[] | undefined, ctx: WriteContext): WriteCounts {
    const loadedAt = new Date().toISOString();
    const width = t.columns.length + 3;
    const params = new Array<unknown>(batch.keep.length * width);
    const bool = t.columns.map((c) => c.type === "boolean");
    const dec = t.columns.map((c) => c.type === "decimal");
    const rejected: NonNullable<WriteCounts["rejected"]> = [];
    let o = 0;
    for (let k = 0; k < batch.keep.length; k++) {
      const i = batch.keep[k]!;
      const v = batch.values[i]!;
      const start = o;
      let why: string | undefined;
      for (let c = 0; c < v.length; c++) {
        const x = v[c];
        if (dec[c] && typeof x === "string") {
          const digits = significantDigits(x);
          if (digits > REAL_DIGITS) {
            why = `${t.names[c]}: ${x} has ${digits} significant digits; SQLite stores decimals as REAL, which holds ${REAL_DIGITS} exactly (store into PostgreSQL, or declare the column a string)`;
            break;
          }
          params[o++] = Number(x);
        } else params[o++] = typeof x === "boolean" ? (x ? 1 : 0) : bool[c] && typeof x === "string" ? booleanText(x) : x;
      }
      if (why !== undefined) {
        o = start;
        rejected.push({ index: i, ...(lines ? { line: lines[i]! } : {}), reasons: [why], record: rows[i]! });
        continue;
      }
      params[o++] = batch.hashes[i];
      params[o++] = ctx.runId;
      params[o++] = loadedAt;
    }
    params.length = o;
    let stored: number;
    try {
      stored = o === 0 ? 0 : this.runBatch!(params);
    } catch (err) {
      throw sqliteError(err, this.display, `writing to table ${t.table}`);
    }
    return { stored, duplicate: rows.length - stored - rejected.length, ...(rejected.length ? { rejected } : {}) };
  }

  async writeQuarantine(records: QuarantinedRecord[], ctx: WriteContext): Promise<void> {
    const t = this.requireTarget();
    if (records.length === 0) return;
    const at = new Date().toISOString();
    const ins = this.insertQuarantine!;
    try {
      this.db.transaction(() => {
        for (const r of records) {
          ins.run(ctx.runId, r.step || ctx.step, r.source, r.line, jsonText(r.reasons ?? []), jsonText(r.record), at);
        }
      })();
    } catch (err) {
      throw sqliteError(err, this.display, `writing to table ${t.table}${QUARANTINE_SUFFIX}`);
    }
  }

  async count(): Promise<number> {
    const t = this.requireTarget();
    const r = this.db.prepare(`select count(*) as n from ${q(t.table)}`).get() as { n: number };
    return r.n;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private requireTarget(): CheckedTarget {
    if (!this.target) throw new SluiceError("INTERNAL", `Destination ${this.display}: prepare() must be called before writing.`, { retryable: false });
    return this.target;
  }
}

/** A boolean given as text ("true"/"false") is stored as 1/0 too; anything else is left for SQLite to refuse. */
function booleanText(x: string): unknown {
  const s = x.toLowerCase();
  return s === "true" || s === "t" || s === "1" ? 1 : s === "false" || s === "f" || s === "0" ? 0 : x;
}

function sqliteError(err: unknown, where: string, doing: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as Error & { code?: string };
  const code = e.code ?? "";
  const base = `SQLite ${where} failed while ${doing}: ${e.message}`;
  if (code.startsWith("SQLITE_CONSTRAINT") || code === "SQLITE_MISMATCH" || code === "SQLITE_TOOBIG") {
    return new SluiceError("BAD_INPUT", `${base}.`, { cause: err, details: { code } });
  }
  if (code === "SQLITE_BUSY" || code === "SQLITE_LOCKED" || code.startsWith("SQLITE_BUSY")) {
    return new SluiceError("IO_ERROR", `${base} (the database is busy; retrying may help).`, { retryable: true, cause: err, details: { code } });
  }
  if (code === "SQLITE_ERROR") return new SluiceError("BAD_CONFIG", `${base}.`, { cause: err, details: { code } });
  return new SluiceError("IO_ERROR", `${base}.`, { retryable: true, cause: err, details: { code } });
}

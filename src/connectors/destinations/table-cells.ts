/**
 * Reading and updating the field-encrypted cells of a destination table, for `sluice decrypt`,
 * `sluice keys rewrap` and `sluice keys retire` (the batch destinations only write).
 *
 * Cells are found by their text (`sl1:<kid>:<ver>:…`, crypto/cells.ts), compared with
 * `substr(col, 1, n) = prefix` rather than LIKE: a key id may hold `_`, which LIKE reads as a
 * wildcard. Rows are read in primary-key order, keyset-paged, so a rewrap of a large table holds
 * one batch in memory, and each batch of updates is one transaction: a rewrap killed mid-way has
 * rewrapped whole batches, and the cells' own version prefix is the progress it resumes from.
 */
import { isAbsolute, resolve } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { SluiceError } from "../../errors.js";
import { isSecretRef, resolveSecret } from "../secrets.js";
import { clientConfig, splitTableName } from "./postgres.js";

export type CellRow = Record<string, unknown>;

export interface CellTable {
  readonly display: string;
  /** Tables of the destination (the quarantine tables included). */
  tables(): Promise<string[]>;
  /** The primary key columns, in key order; fails when the table has none. */
  keyColumns(table: string): Promise<string[]>;
  /** Columns that can hold cells (text), in table order. */
  textColumns(table: string): Promise<string[]>;
  /** Rows in key order after `after` (a key tuple), at most `limit`, optionally `column = value`. */
  rows(table: string, opts: { key: string[]; after?: unknown[]; limit: number; where?: { column: string; value: string } }): Promise<CellRow[]>;
  /** Rows with a cell (in `columns`) that does not start with `current`, in key order, at most `limit`. */
  staleRows(table: string, opts: { key: string[]; columns: string[]; current: string; limit: number }): Promise<CellRow[]>;
  /** Set cells of rows found by their key, in ONE transaction. */
  update(table: string, key: string[], changes: { key: unknown[]; cells: Record<string, string> }[]): Promise<void>;
  /** Cells of `columns` whose text starts with `prefix`. */
  countPrefix(table: string, columns: string[], prefix: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * The primary key as a cell's AAD names it (crypto/cells.ts CellPlace.key): the value's text for
 * a one-column key, the JSON array of the values' texts for a composite one. The store step and
 * the readers here both use this, so a cell written by one is found by the other.
 */
export function rowKeyText(values: readonly unknown[]): string {
  const texts = values.map((v) => (v === null || v === undefined ? "" : String(v)));
  return texts.length === 1 ? texts[0]! : JSON.stringify(texts);
}

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** Open the table access for a destination spec (sqlite:PATH, postgres://…, or an env:/file: reference to one). */
export async function openCellTable(spec: string, opts: { baseDir?: string } = {}): Promise<CellTable> {
  const baseDir = opts.baseDir ?? process.cwd();
  let value = spec;
  if (isSecretRef(spec)) value = (await resolveSecret(spec, "destination", { baseDir })).trim();
  if (/^sqlite:/i.test(value)) {
    const path = value.slice("sqlite:".length);
    return sqliteCells(isAbsolute(path) ? path : resolve(baseDir, path));
  }
  if (/^postgres(ql)?:\/\//i.test(value)) return postgresCells(value, isSecretRef(spec) ? spec : undefined);
  throw new SluiceError("BAD_CONFIG", `destination ${isSecretRef(spec) ? spec : JSON.stringify(spec)} must be sqlite:PATH or a postgres:// URL`);
}

function sqliteCells(path: string): CellTable {
  const db = new Database(path, { fileMustExist: true });
  db.pragma("busy_timeout = 5000");
  const info = (table: string) => {
    const cols = db.prepare(`select name, type, pk from pragma_table_info(?)`).all(table) as { name: string; type: string; pk: number }[];
    if (cols.length === 0) throw new SluiceError("NOT_FOUND", `table ${table} does not exist in sqlite:${path}`);
    return cols;
  };
  const order = (key: string[]) => key.map(q).join(", ");
  return {
    display: `sqlite:${path}`,
    async tables() {
      return (db.prepare(`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`).all() as { name: string }[]).map(
        (r) => r.name,
      );
    },
    async keyColumns(table) {
      const key = info(table)
        .filter((c) => c.pk > 0)
        .sort((a, b) => a.pk - b.pk)
        .map((c) => c.name);
      if (key.length === 0) throw new SluiceError("BAD_INPUT", `table ${table} has no primary key; its cells cannot be bound to their rows`);
      return key;
    },
    async textColumns(table) {
      return info(table)
        .filter((c) => c.type.toUpperCase().includes("TEXT"))
        .map((c) => c.name);
    },
    async rows(table, o) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (o.where) (where.push(`cast(${q(o.where.column)} as text) = ?`), args.push(o.where.value));
      if (o.after) (where.push(`(${order(o.key)}) > (${o.key.map(() => "?").join(", ")})`), args.push(...o.after));
      const sql = `select * from ${q(table)} ${where.length ? `where ${where.join(" and ")}` : ""} order by ${order(o.key)} limit ?`;
      return db.prepare(sql).all(...args, o.limit) as CellRow[];
    },
    async staleRows(table, o) {
      if (o.columns.length === 0) return [];
      const cond = o.columns.map((c) => `(substr(${q(c)}, 1, 4) = 'sl1:' and substr(${q(c)}, 1, ?) <> ?)`).join(" or ");
      const args = o.columns.flatMap(() => [o.current.length, o.current]);
      return db.prepare(`select * from ${q(table)} where ${cond} order by ${order(o.key)} limit ?`).all(...args, o.limit) as CellRow[];
    },
    async update(table, key, changes) {
      const tx = db.transaction(() => {
        for (const ch of changes) {
          const cols = Object.keys(ch.cells);
          if (cols.length === 0) continue;
          db.prepare(`update ${q(table)} set ${cols.map((c) => `${q(c)} = ?`).join(", ")} where ${key.map((k) => `${q(k)} = ?`).join(" and ")}`).run(
            ...cols.map((c) => ch.cells[c]),
            ...ch.key,
          );
        }
      });
      tx();
    },
    async countPrefix(table, columns, prefix) {
      let n = 0;
      for (const c of columns)
        n += (db.prepare(`select count(*) as n from ${q(table)} where substr(${q(c)}, 1, ?) = ?`).get(prefix.length, prefix) as { n: number }).n;
      return n;
    },
    async close() {
      db.close();
    },
  };
}

async function postgresCells(url: string, fromSecret: string | undefined): Promise<CellTable> {
  const s = await clientConfig(url, fromSecret ? { fromSecret } : {});
  const client = new pg.Client(s.config);
  await client.connect();
  const name = (table: string) => {
    const p = splitTableName(table);
    return { schema: p.schema, table: p.table, sql: p.schema === undefined ? q(p.table) : `${q(p.schema)}.${q(p.table)}` };
  };
  const columns = async (table: string) => {
    const t = name(table);
    const r = await client.query<{ column_name: string; data_type: string }>(
      `select column_name, data_type from information_schema.columns where table_schema = coalesce($1, current_schema()) and table_name = $2 order by ordinal_position`,
      [t.schema ?? null, t.table],
    );
    if (r.rows.length === 0) throw new SluiceError("NOT_FOUND", `table ${table} does not exist in ${s.where}`);
    return r.rows;
  };
  const order = (key: string[]) => key.map(q).join(", ");
  return {
    display: fromSecret ?? `postgres://${s.where}`,
    async tables() {
      const r = await client.query<{ t: string }>(
        `select table_schema || '.' || table_name as t from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE' order by 1`,
      );
      return r.rows.map((x) => x.t);
    },
    async keyColumns(table) {
      const t = name(table);
      const r = await client.query<{ attname: string }>(
        `select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
         where i.indrelid = $1::regclass and i.indisprimary order by array_position(i.indkey, a.attnum)`,
        [t.sql],
      );
      if (r.rows.length === 0) throw new SluiceError("BAD_INPUT", `table ${table} has no primary key; its cells cannot be bound to their rows`);
      return r.rows.map((x) => x.attname);
    },
    async textColumns(table) {
      return (await columns(table)).filter((c) => c.data_type === "text" || c.data_type === "character varying").map((c) => c.column_name);
    },
    async rows(table, o) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (o.where) (args.push(o.where.value), where.push(`${q(o.where.column)}::text = $${args.length}`));
      if (o.after) {
        const ph = o.after.map((v) => (args.push(v), `$${args.length}`));
        where.push(`(${order(o.key)}) > (${ph.join(", ")})`);
      }
      args.push(o.limit);
      const r = await client.query(
        `select * from ${name(table).sql} ${where.length ? `where ${where.join(" and ")}` : ""} order by ${order(o.key)} limit $${args.length}`,
        args,
      );
      return r.rows as CellRow[];
    },
    async staleRows(table, o) {
      if (o.columns.length === 0) return [];
      const cond = o.columns.map((c) => `(left(${q(c)}, 4) = 'sl1:' and left(${q(c)}, $1) <> $2)`).join(" or ");
      const r = await client.query(`select * from ${name(table).sql} where ${cond} order by ${order(o.key)} limit $3`, [o.current.length, o.current, o.limit]);
      return r.rows as CellRow[];
    },
    async update(table, key, changes) {
      await client.query("begin");
      try {
        for (const ch of changes) {
          const cols = Object.keys(ch.cells);
          if (cols.length === 0) continue;
          const set = cols.map((c, i) => `${q(c)} = $${i + 1}`).join(", ");
          const match = key.map((k, i) => `${q(k)} = $${cols.length + i + 1}`).join(" and ");
          await client.query(`update ${name(table).sql} set ${set} where ${match}`, [...cols.map((c) => ch.cells[c]), ...ch.key]);
        }
        await client.query("commit");
      } catch (err) {
        await client.query("rollback").catch(() => undefined);
        throw err;
      }
    },
    async countPrefix(table, cols, prefix) {
      let n = 0;
      for (const c of cols) {
        const r = await client.query<{ n: string }>(`select count(*) as n from ${name(table).sql} where left(${q(c)}, $1) = $2`, [prefix.length, prefix]);
        n += Number(r.rows[0]!.n);
      }
      return n;
    },
    async close() {
      await client.end();
    },
  };
}

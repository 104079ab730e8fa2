/**
 * The same behaviour proved against every database destination: a real SQLite file in a temp
 * folder and the real PostgreSQL on 127.0.0.1:5432 (a unique schema, dropped afterwards).
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Column, TypedRow } from "../../../src/actions/batch/model.js";
import { contentHash, openStageWriter, readStageChunks } from "../../../src/formats/stage.js";
import { pgTimestampToIso } from "../../../src/connectors/postgres.js";
import { openDestination, type Destination } from "../../../src/connectors/destinations/index.js";

const PG = "postgres://postgres@127.0.0.1:5432/test";
const schema = `sluice_dest_${randomUUID().replace(/-/g, "").slice(0, 10)}`;
const dir = mkdtempSync(join(tmpdir(), "sluice-dest-"));
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: PG, options: "-c TimeZone=UTC" });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
});
afterAll(async () => {
  await admin?.query(`drop schema if exists ${schema} cascade`);
  await admin?.end();
  rmSync(dir, { recursive: true, force: true });
});

const COLUMNS: Column[] = [
  { name: "id", type: "integer" },
  { name: "name", type: "string" },
  { name: "amount", type: "decimal", scale: 4 },
  { name: "active", type: "boolean" },
  { name: "at", type: "timestamp" },
  { name: "day", type: "date" },
];
const ctx = { runId: "run-1", step: "store" };
let n = 0;

interface Harness {
  label: string;
  open(): Promise<Destination>;
  table(): string;
  /** Rows of the target table, values as text (or null), ordered by `order`. */
  select(table: string, columns: string[], order: string): Promise<Record<string, string | null>[]>;
}

const sqlitePath = join(dir, "sub", "dest.db");
const sqliteHarness: Harness = {
  label: "sqlite",
  open: () => openDestination("sqlite:sub/dest.db", { baseDir: dir }),
  table: () => `t${++n}`,
  async select(table, columns, order) {
    const db = new Database(sqlitePath, { readonly: true });
    try {
      const rows = db
        .prepare(`select ${columns.map((c) => `"${c}"`).join(", ")} from "${table}" order by ${order}`)
        .safeIntegers(true)
        .all() as Record<string, unknown>[];
      return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v === null ? null : String(v)])));
    } finally {
      db.close();
    }
  },
};
const pgHarness: Harness = {
  label: "postgres",
  open: () => openDestination(PG),
  table: () => `${schema}.t${++n}`,
  async select(table, columns, order) {
    const r = await admin.query(`select ${columns.map((c) => `"${c}"::text`).join(", ")} from ${table} order by ${order}`);
    return r.rows.map((row: Record<string, string | null>) => {
      const out: Record<string, string | null> = {};
      for (const [i, c] of columns.entries()) {
        const v = Object.values(row)[i] ?? null;
        // Compare in the typed-value spelling: booleans t/f → true/false, timestamptz → ISO UTC.
        out[c] = v === null ? null : v === "t" ? "true" : v === "f" ? "false" : /^\d{4}-\d\d-\d\d \d\d:/.test(v) ? pgTimestampToIso(v) : v;
      }
      return out;
    });
  },
};

function row(id: number, over: Partial<TypedRow> = {}): TypedRow {
  return { id: String(id), name: `n${id}`, amount: "1.0000", active: true, at: "2026-11-02T09:30:00.125Z", day: "2026-11-02", ...over };
}

describe.each([sqliteHarness, pgHarness])("$label destination", (h) => {
  it("creates the table with metadata columns and round-trips every type exactly", async () => {
    const d = await h.open();
    const table = h.table();
    try {
      await d.prepare({ table, columns: COLUMNS, key: ["id"] });
      const weird = "tab\there\nnew line\r\\back\\slash \"quotes\" 'single' ünïcødé 𝄞 \\N";
      const rows: TypedRow[] = [
        { id: "9007199254740993", name: weird, amount: "12345678901234567890.1234", active: false, at: "1999-12-31T23:59:59.999Z", day: "2026-02-28" },
        { id: "-42", name: "", amount: "-0.0001", active: true, at: "2026-11-02T09:30:00.125001Z", day: "1970-01-01" },
        { id: "3", name: null, amount: null, active: null, at: null, day: null },
      ];
      const sqlite = h.label === "sqlite";
      const res = await d.write(rows, ctx);
      if (sqlite) {
        // SQLite keeps decimals as REAL: a value with more than 15 significant digits is not
        // rounded but handed back, with the reason, for the caller to quarantine.
        expect(res).toEqual({
          stored: 2,
          duplicate: 0,
          rejected: [
            {
              index: 0,
              reasons: [
                "amount: 12345678901234567890.1234 has 24 significant digits; SQLite stores decimals as REAL, which holds 15 exactly (store into PostgreSQL, or declare the column a string)",
              ],
              record: rows[0],
            },
          ],
        });
      } else expect(res).toEqual({ stored: 3, duplicate: 0 });
      expect(await d.count()).toBe(sqlite ? 2 : 3);
      const got = await h.select(table, ["id", "name", "amount", "active", "at", "day"], "2");
      const bool = (b: boolean) => (sqlite ? (b ? "1" : "0") : String(b));
      expect(got).toHaveLength(sqlite ? 2 : 3);
      // Booleans read back as 1/0 from SQLite (INTEGER), true/false from PostgreSQL.
      const byId = new Map(got.map((r) => [r.id, r]));
      if (!sqlite)
        expect(byId.get("9007199254740993")).toMatchObject({
          name: weird,
          amount: "12345678901234567890.1234",
          active: bool(false),
          at: "1999-12-31T23:59:59.999Z",
          day: "2026-02-28",
        });
      expect(byId.get("-42")).toMatchObject({ name: "", amount: "-0.0001", at: "2026-11-02T09:30:00.125001Z", day: "1970-01-01" });
      expect(byId.get("3")).toEqual({ id: "3", name: null, amount: null, active: null, at: null, day: null });
      const meta = await h.select(table, ["_sluice_hash", "_sluice_run_id", "_sluice_loaded_at"], "1");
      for (const m of meta) {
        expect(m._sluice_hash).toMatch(/^[A-Za-z0-9+/]{27}$/);
        expect(m._sluice_run_id).toBe("run-1");
        expect(m._sluice_loaded_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,6}Z$/);
      }
      expect(new Set(meta.map((m) => m._sluice_hash)).size).toBe(sqlite ? 2 : 3);
    } finally {
      await d.close();
    }
  });

  it("stores staged rows (the batch plane's path) exactly as written rows, with the stage's hashes", async () => {
    const d = await h.open();
    const table = h.table();
    try {
      await d.prepare({ table, columns: COLUMNS, key: ["id"] });
      const weird = 'tab\there\nnew line\r\\back\\slash "quotes" ünïcødé 𝄞 \\N';
      const rows: TypedRow[] = [
        { id: "9007199254740993", name: weird, amount: "123456789.1234", active: false, at: "1999-12-31T23:59:59.999Z", day: "2026-02-28" },
        { id: "-42", name: "", amount: "-0.0001", active: true, at: "2026-11-02T09:30:00.125001Z", day: "1970-01-01" },
        { id: "3", name: null, amount: null, active: null, at: null, day: null },
        { id: "4", name: "far", amount: "0.0000", active: true, at: "2300-01-01T00:00:00.000Z", day: "1900-03-01" },
        { id: "5", name: "past", amount: "-98765.4321", active: false, at: "1600-06-30T12:00:00.500Z", day: "0001-01-01" },
      ];
      const path = join(dir, `${table}.stage`);
      const w = await openStageWriter(path, COLUMNS);
      await w.write(rows, [2, 3, 4, 5, 6]);
      await w.close();
      const chunks = [];
      for await (const c of readStageChunks(path, COLUMNS)) chunks.push(c);
      const chunk = { data: Buffer.concat(chunks.map((c) => c.data)), rows: chunks.reduce((n, c) => n + c.rows, 0) };
      expect(await d.writeStaged(chunk, ctx)).toEqual({ stored: 5, duplicate: 0 });
      // The same rows again: all duplicates (the upsert path, by hash).
      expect(await d.writeStaged(chunk, ctx)).toEqual({ stored: 0, duplicate: 5 });
      const got = await h.select(table, ["id", "name", "amount", "active", "at", "day", "_sluice_hash"], "1");
      const byId = new Map(got.map((r) => [r.id, r]));
      const names = COLUMNS.map((c) => c.name);
      for (const r of rows) {
        const g = byId.get(r.id as string)!;
        expect(g.name).toBe(r.name);
        expect(g.at).toBe(r.at);
        expect(g.day).toBe(r.day);
        if (r.amount !== null && h.label === "postgres") expect(g.amount).toBe(r.amount);
        if (r.amount !== null && h.label === "sqlite") expect(Number(g.amount)).toBe(Number(r.amount));
        expect(g._sluice_hash).toBe(contentHash(names.map((n) => r[n] ?? null)));
      }
    } finally {
      await d.close();
    }
  });

  it("upserts: inserts new keys, updates changed content, reports unchanged rows as duplicates", async () => {
    const d = await h.open();
    const table = h.table();
    try {
      await d.prepare({ table, columns: COLUMNS, key: ["id"] });
      const batch = [row(1), row(2), row(3)];
      expect(await d.write(batch, ctx)).toEqual({ stored: 3, duplicate: 0 });
      // Same batch twice: nothing stored, all duplicates.
      expect(await d.write(batch, { runId: "run-2", step: "store" })).toEqual({ stored: 0, duplicate: 3 });
      // Changed content for key 2, a new key 4, key 1 unchanged.
      expect(await d.write([row(1), row(2, { name: "changed" }), row(4)], { runId: "run-3", step: "store" })).toEqual({ stored: 2, duplicate: 1 });
      expect(await d.count()).toBe(4);
      const got = await h.select(table, ["id", "name", "_sluice_run_id"], `"id"`);
      expect(got).toEqual([
        { id: "1", name: "n1", _sluice_run_id: "run-1" },
        { id: "2", name: "changed", _sluice_run_id: "run-3" },
        { id: "3", name: "n3", _sluice_run_id: "run-1" },
        { id: "4", name: "n4", _sluice_run_id: "run-3" },
      ]);
      // In-batch duplicate keys: the last wins, the earlier ones count as duplicates.
      expect(await d.write([row(5, { name: "first" }), row(6), row(5, { name: "second" }), row(5, { name: "last" })], ctx)).toEqual({
        stored: 2,
        duplicate: 2,
      });
      expect((await h.select(table, ["name"], `"id"`)).map((r) => r.name)).toEqual(["n1", "changed", "n3", "n4", "last", "n6"]);
      // An update back to content that appeared earlier in the batch still counts once.
      expect(await d.write([row(5, { name: "last" }), row(5, { name: "x" }), row(5, { name: "last" })], ctx)).toEqual({ stored: 0, duplicate: 3 });
      expect(await d.write([], ctx)).toEqual({ stored: 0, duplicate: 0 });
    } finally {
      await d.close();
    }
  });

  it("uses the content hash as the key when none is declared, and a composite key when declared", async () => {
    const d = await h.open();
    const table = h.table();
    try {
      await d.prepare({ table, columns: COLUMNS, key: undefined });
      expect(await d.write([row(1), row(1), row(2), row(1, { name: "other" })], ctx)).toEqual({ stored: 3, duplicate: 1 });
      expect(await d.write([row(2), row(3)], ctx)).toEqual({ stored: 1, duplicate: 1 });
      expect(await d.count()).toBe(4);
      // null and "" hash differently.
      expect(await d.write([row(7, { name: null }), row(7, { name: "" })], ctx)).toEqual({ stored: 2, duplicate: 0 });
    } finally {
      await d.close();
    }
    const d2 = await h.open();
    const t2 = h.table();
    try {
      await d2.prepare({ table: t2, columns: COLUMNS, key: ["day", "name"] });
      expect(await d2.write([row(1, { name: "a" }), row(2, { name: "a" }), row(3, { name: "b" })], ctx)).toEqual({ stored: 2, duplicate: 1 });
      expect((await h.select(t2, ["id", "name"], `"name"`)).map((r) => r.id)).toEqual(["2", "3"]);
      await expect(d2.write([row(1, { name: null })], ctx)).rejects.toMatchObject({ code: "BAD_INPUT", message: expect.stringContaining("key column name") });
    } finally {
      await d2.close();
    }
  });

  it("keeps quarantined records next to the table, once per (run, step, source, line)", async () => {
    const d = await h.open();
    const table = h.table();
    try {
      await d.prepare({ table, columns: COLUMNS, key: ["id"] });
      const records = [
        { source: "in.csv", line: 3, step: "quality", reasons: ["amount: not a decimal", "day: not a date"], record: { id: "x", amount: "abc" } },
        { source: "in.csv", line: 9, step: "quality", reasons: ["malformed"], record: 'raw "text"\twith tab' },
      ];
      await d.writeQuarantine(records, ctx);
      await d.writeQuarantine(records, ctx); // a retried step
      await d.writeQuarantine([records[0]!], { runId: "run-2", step: "store" }); // another run keeps its own
      const got = await h.select(`${table}_quarantine`, ["run_id", "step", "source", "line", "reasons", "record"], "id");
      expect(got).toHaveLength(3);
      expect(got[0]).toMatchObject({ run_id: "run-1", step: "quality", source: "in.csv", line: "3" });
      expect(JSON.parse(got[0]!.reasons!)).toEqual(["amount: not a decimal", "day: not a date"]);
      expect(JSON.parse(got[0]!.record!)).toEqual({ id: "x", amount: "abc" });
      expect(JSON.parse(got[1]!.record!)).toBe('raw "text"\twith tab');
      expect(got[2]!.run_id).toBe("run-2");
      expect(await d.count()).toBe(0);
    } finally {
      await d.close();
    }
  });

  it("accepts a compatible existing table and refuses an incompatible one with BAD_CONFIG", async () => {
    const table = h.table();
    const d = await h.open();
    try {
      await d.prepare({ table, columns: COLUMNS, key: ["id"] });
      await d.write([row(1)], ctx);
    } finally {
      await d.close();
    }
    const again = await h.open();
    try {
      // Re-preparing the same shape is fine, and the data is still there.
      await again.prepare({ table, columns: COLUMNS, key: ["id"] });
      expect(await again.count()).toBe(1);
      // A column that holds text where an integer is now declared.
      const changed = COLUMNS.map((c) => (c.name === "name" ? { ...c, type: "integer" as const } : c));
      await expect(again.prepare({ table, columns: changed, key: ["id"] })).rejects.toMatchObject({
        code: "BAD_CONFIG",
        retryable: false,
        message: expect.stringMatching(/table .*t\d+ column name has type (TEXT|text), expected (INTEGER|bigint)/),
      });
      await expect(again.prepare({ table, columns: [...COLUMNS, { name: "extra", type: "string" }], key: ["id"] })).rejects.toMatchObject({
        code: "BAD_CONFIG",
        message: expect.stringContaining("has no column extra"),
      });
      await expect(again.prepare({ table, columns: COLUMNS, key: ["name"] })).rejects.toMatchObject({
        code: "BAD_CONFIG",
        message: expect.stringContaining("no primary key or unique index on (name)"),
      });
      // Fewer declared columns than the table has: the extra ones are nullable, so it is fine.
      await again.prepare({ table, columns: COLUMNS.filter((c) => c.name !== "day"), key: ["id"] });
      expect(await again.write([{ id: "2", name: "b", amount: "2.0000", active: false, at: null }], ctx)).toEqual({ stored: 1, duplicate: 0 });
    } finally {
      await again.close();
    }
  });

  it("reports a value the column cannot hold as BAD_INPUT", async () => {
    const d = await h.open();
    const table = h.table();
    try {
      await d.prepare({ table, columns: COLUMNS, key: ["id"] });
      await expect(d.write([row(1), row(2, { amount: "not-a-number", id: "abc" })], ctx)).rejects.toMatchObject({ code: "BAD_INPUT", retryable: false });
      // The failed batch left nothing behind, and the destination still works.
      expect(await d.count()).toBe(0);
      expect(await d.write([row(1)], ctx)).toEqual({ stored: 1, duplicate: 0 });
    } finally {
      await d.close();
    }
  });
});

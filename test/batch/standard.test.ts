/**
 * The standard ingestion workflow end to end, on real files, the real SQLite warehouse and the
 * real PostgreSQL server: every input record is stored, quarantined with its reasons, or a
 * duplicate, and the numbers add up.
 */
import { afterAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import pg from "pg";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import type { runDetail } from "../../src/engine/index.js";
import { writeTradesCsv } from "../../src/samples/trades.js";
import { standardWorkflow } from "./standard-workflow.js";

const PG_URL = "postgres://postgres@127.0.0.1:5432/test";
const std = standardWorkflow("sluice-std-data-");
const run = std.run;

const outputsOf = (d: Awaited<ReturnType<typeof runDetail>>, step: string) => d.steps.find((s) => s.name === step)!.outputs!;

describe("standard ingestion into the embedded SQLite warehouse", () => {
  it("stores valid rows, quarantines every defect with its reason, and balances the books", async () => {
    const file = join(std.data, "trades.csv");
    const summary = await writeTradesCsv(file, { rows: 3_000, seed: 7, badShare: 0.05 });
    const warehouse = join(std.data, "w1.db");
    const { run: r, detail } = await run({ source: file, destination: `sqlite:${warehouse}`, table: "trades" });
    expect(r.status, JSON.stringify(r.error)).toBe("succeeded");

    const out = outputsOf(detail, "data-storage");
    expect(out.rowsIn).toBe(3_000);
    expect(Number(out.rowsStored) + Number(out.rowsQuarantined) + Number(out.rowsDuplicate)).toBe(3_000);
    expect(out.rowsQuarantined).toBe(summary.bad);

    const db = new Database(warehouse, { readonly: true });
    const stored = db.prepare("SELECT count(*) AS n, count(DISTINCT trade_id) AS ids FROM trades").get() as { n: number; ids: number };
    expect(stored).toEqual({ n: out.rowsStored, ids: out.rowsStored });
    const q = db.prepare("SELECT source, line, step, reasons FROM trades_quarantine ORDER BY line").all() as {
      source: string;
      line: number;
      step: string;
      reasons: string;
    }[];
    expect(q.length).toBe(out.rowsQuarantined);
    // Prices are numbers in SQLite (REAL) that read back to exactly the 4 decimal places of the
    // source, and compare as numbers; timestamps are UTC ISO-8601.
    const sample = db.prepare("SELECT trade_id, price, executed_at FROM trades LIMIT 50").all() as { trade_id: string; price: number; executed_at: string }[];
    // Simple lines of the file (no quoted field): trade_id → price as written.
    const simple = readFileSync(file, "utf8")
      .split("\n")
      .slice(1)
      .filter((l) => !l.includes('"'))
      .map((l) => l.split(","))
      .filter((f) => f.length === 9);
    const ids = new Map<string, number>();
    for (const f of simple) ids.set(f[0]!, (ids.get(f[0]!) ?? 0) + 1);
    // Ids the file has once (the sample repeats some ids with other content, on purpose).
    const source = new Map(simple.filter((f) => ids.get(f[0]!) === 1).map((f) => [f[0], f[5]]));
    let compared = 0;
    for (const s of sample) {
      expect(typeof s.price).toBe("number");
      if (source.has(s.trade_id)) (expect(s.price.toFixed(4)).toBe(source.get(s.trade_id)), compared++);
      expect(s.executed_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    expect(compared).toBeGreaterThan(30);
    const { max, typed } = db.prepare("SELECT max(price) AS max, typeof(max(price)) AS typed FROM trades").get() as { max: number; typed: string };
    expect(typed).toBe("real");
    const all = (db.prepare("SELECT price FROM trades").all() as { price: number }[]).map((r) => r.price);
    expect(max).toBe(Math.max(...all));
    db.close();

    // Each quarantined record points at the line it starts on in the source file.
    const lines = readFileSync(file, "utf8").split("\n");
    const reasons = q.map((x) => JSON.parse(x.reasons).join("; ")).join("\n");
    expect(reasons).toMatch(/expected 9 fields/); // malformed CSV, caught by the reader
    expect(reasons).toMatch(/executed_at: .* is not a valid timestamp/); // typing
    expect(reasons).toMatch(/side .*BUY, SELL/); // quality rule
    expect(reasons).toMatch(/trade_id: duplicate value/); // unique rule
    for (const x of q.filter((x) => x.step === "format-conversion").slice(0, 20)) {
      expect(x.source).toBe(file);
      expect(lines[x.line - 1]).toBeDefined();
    }
  });

  it("is idempotent: ingesting the same file again stores nothing new", async () => {
    const file = join(std.data, "again.csv");
    await writeTradesCsv(file, { rows: 500, seed: 8, badShare: 0 });
    const dest = `sqlite:${join(std.data, "w2.db")}`;
    const first = outputsOf((await run({ source: file, destination: dest, table: "t" })).detail, "data-storage");
    const second = outputsOf((await run({ source: file, destination: dest, table: "t" })).detail, "data-storage");
    expect(first).toMatchObject({ rowsIn: 500, rowsStored: 500, rowsDuplicate: 0 });
    expect(second).toMatchObject({ rowsIn: 500, rowsStored: 0, rowsDuplicate: 500 });
  });

  it("fails fast, without retries, when the source does not exist", async () => {
    const { run: r, detail } = await run({ source: join(std.data, "nope.csv"), table: "t" });
    expect(r.status).toBe("failed");
    const step = detail.steps.find((s) => s.name === "source-validation")!;
    expect(step.attempts).toHaveLength(1);
    expect(step.attempts[0]!.error?.message).toContain("nope.csv");
    expect(detail.steps.filter((s) => s.status === "skipped")).toHaveLength(5);
  });

  it("fails the quality step when the score is under the threshold", async () => {
    const file = join(std.data, "bad.csv");
    await writeTradesCsv(file, { rows: 400, seed: 9, badShare: 0.5 });
    const { run: r, detail } = await run({ source: file, destination: `sqlite:${join(std.data, "w3.db")}`, table: "t" });
    expect(r.status).toBe("failed");
    const q = detail.steps.find((s) => s.name === "quality-validation")!;
    expect(q.attempts).toHaveLength(1);
    expect(q.attempts[0]!.error).toMatchObject({ code: "QUALITY_BELOW_THRESHOLD", message: expect.stringMatching(/under the threshold 0\.9/) });
  });
});

describe("standard ingestion into PostgreSQL", () => {
  const table = `std_${process.pid}_${Date.now()}`;
  afterAll(async () => {
    const c = new pg.Client(PG_URL);
    await c.connect();
    await c.query(`DROP TABLE IF EXISTS "${table}", "${table}_quarantine"`);
    await c.end();
  });

  it("loads typed rows with exact decimals and UTC timestamps", async () => {
    const file = join(std.data, "pg.csv");
    const summary = await writeTradesCsv(file, { rows: 2_000, seed: 11, badShare: 0.02 });
    const { run: r, detail } = await run({ source: file, destination: PG_URL, table });
    expect(r.status, JSON.stringify(r.error)).toBe("succeeded");
    const out = outputsOf(detail, "data-storage");
    expect(out.rowsQuarantined).toBe(summary.bad);
    const c = new pg.Client(PG_URL);
    await c.connect();
    const { rows } = await c.query(`SELECT count(*)::int AS n, pg_typeof(max(price))::text AS t FROM "${table}"`);
    expect(rows[0]).toEqual({ n: out.rowsStored, t: "numeric" });
    const { rows: q } = await c.query(`SELECT count(*)::int AS n FROM "${table}_quarantine"`);
    expect(q[0].n).toBe(out.rowsQuarantined);
    await c.end();
  });
});

/**
 * Schema inference on real-world shaped files (test/fixtures/real-world, written by Python in
 * the shapes public datasets and common tools produce): the schema `sluice infer` decides,
 * column by column; `sluice ingest` of each file end to end into SQLite and PostgreSQL, row
 * counts and values asserted; and the comparison with DuckDB's read_csv_auto on the same files,
 * whose differences the README explains.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import pg from "pg";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { inferSource } from "../../src/actions/batch/infer-source.js";
import { inferColumn } from "../../src/actions/batch/infer.js";
import { tempDir } from "../helpers.js";
import { ROOT, sluice } from "../cli/cli-helpers.js";

const FIXTURES = join(ROOT, "test", "fixtures", "real-world");
const f = (name: string) => join(FIXTURES, name);
const PG_URL = "postgres://postgres@127.0.0.1:5432/test";
const work = tempDir("sluice-infer-");
let duck: DuckDBConnection;
let admin: pg.Client;
const suffix = Math.random().toString(36).slice(2, 8);
beforeAll(async () => {
  duck = await (await DuckDBInstance.create(":memory:")).connect();
  admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
});
afterAll(async () => {
  for (const t of ["airports", "orders_us", "movies"]) await admin.query(`drop table if exists infer_${t}_${suffix}, infer_${t}_${suffix}_quarantine`);
  await admin.end();
  rmSync(work, { recursive: true, force: true });
});

type Col = { name: string; type: string; scale?: number; format?: string; nullValues?: string[] };
const str = (name: string): Col => ({ name, type: "string" });

/** What inference must decide for each fixture. */
const EXPECTED: Record<string, { read?: Record<string, unknown>; columns: Col[]; rows: number }> = {
  "airports.csv": {
    read: { encoding: "utf-8" },
    rows: 40,
    columns: [
      { name: "id", type: "integer" },
      str("ident"),
      str("type"),
      str("name"),
      { name: "latitude_deg", type: "decimal", scale: 6 },
      { name: "longitude_deg", type: "decimal", scale: 6 },
      { name: "elevation_ft", type: "integer" },
      // "NA" is North America here: a string column keeps it as text.
      str("continent"),
      str("iso_country"),
      str("municipality"),
      { name: "scheduled_service", type: "boolean" },
      str("gps_code"),
      str("iata_code"),
      str("home_link"),
    ],
  },
  "weather.csv": {
    read: { encoding: "utf-8" },
    rows: 60,
    columns: [
      str("STATION"), // 0072530: leading zeros kept
      { name: "DATE", type: "date" },
      { name: "PRCP", type: "decimal", scale: 2 },
      { name: "TMAX", type: "decimal", scale: 1, nullValues: ["", "NA"] },
      { name: "TMIN", type: "decimal", scale: 1, nullValues: ["", "NA"] },
      { name: "SNOW", type: "integer" },
    ],
  },
  "stocks.csv": {
    read: { encoding: "utf-8" },
    rows: 40,
    columns: [
      { name: "Date", type: "date", format: "%b %e %Y" },
      ...["Open", "High", "Low", "Close"].map((name) => ({ name, type: "decimal", scale: 4 })),
      { name: "Volume", type: "integer" },
    ],
  },
  "movies.csv": {
    read: { encoding: "windows-1252", delimiter: ";" },
    rows: 32,
    columns: [
      str("title"),
      { name: "year", type: "integer" },
      { name: "rating", type: "decimal", scale: 1 },
      { name: "color", type: "boolean" },
      { name: "budget_eur", type: "integer" },
      str("notes"),
    ],
  },
  "cars.tsv": {
    read: { format: "tsv", encoding: "utf-8" },
    rows: 32,
    columns: [
      str("model"),
      { name: "mpg", type: "decimal", scale: 1, nullValues: ["", "NA"] },
      { name: "cyl", type: "integer" },
      { name: "disp", type: "decimal", scale: 1 },
      { name: "hp", type: "integer" },
      { name: "wt", type: "decimal", scale: 3 },
      { name: "am", type: "integer" },
    ],
  },
  "orders_us.csv": {
    read: { encoding: "utf-8" },
    rows: 30,
    columns: [
      { name: "order_id", type: "integer" },
      { name: "placed_at", type: "timestamp", format: "%m/%d/%Y %I:%M %p" },
      { name: "amount", type: "decimal", scale: 2 },
      { name: "paid", type: "boolean" },
    ],
  },
  "eu_dates.csv": {
    read: { encoding: "utf-8" },
    rows: 31,
    columns: [{ name: "Datum", type: "date", format: "%d.%m.%Y" }, { name: "Betrag", type: "decimal", scale: 2 }, str("Kunde")],
  },
  "events.ndjson": {
    read: { format: "ndjson" },
    rows: 40,
    columns: [
      { name: "id", type: "integer" },
      { name: "at", type: "timestamp" },
      str("user"),
      { name: "score", type: "decimal", scale: 3 },
      { name: "active", type: "boolean" },
      str("note"),
    ],
  },
  "products.json": {
    read: { format: "json" },
    rows: 25,
    columns: [str("sku"), { name: "price", type: "decimal", scale: 2 }, { name: "qty", type: "integer" }, { name: "released", type: "date" }],
  },
  "comments.csv": {
    read: { encoding: "utf-8" },
    rows: 20,
    columns: [{ name: "id", type: "integer" }, str("comment"), { name: "created", type: "timestamp" }],
  },
  "excel_unicode.txt": {
    read: { format: "csv", encoding: "utf-16le", delimiter: "\t" },
    rows: 20,
    columns: [str("Name"), str("Stadt"), { name: "Umsatz", type: "decimal", scale: 2 }, { name: "Datum", type: "date" }],
  },
  "sensor_noheader.csv": {
    read: { encoding: "utf-8", header: false, columns: ["column1", "column2", "column3"] },
    rows: 30,
    columns: [
      { name: "column1", type: "integer" },
      { name: "column2", type: "decimal", scale: 4 },
      { name: "column3", type: "integer" },
    ],
  },
};

describe("sluice infer on real-world shaped files", () => {
  for (const [file, want] of Object.entries(EXPECTED)) {
    it(`${file}: ${want.columns.length} columns, reading options and types`, async () => {
      const r = await inferSource(f(file));
      expect(r.schema.read).toEqual(want.read);
      expect(r.schema.columns).toEqual(want.columns);
      expect(r.sampled).toBe(want.rows);
    });
  }

  it("a Parquet file's types come from its schema (written by DuckDB)", async () => {
    const path = join(work, "typed.parquet");
    await duck.run(
      `COPY (SELECT 42::BIGINT AS id, 12.5::DECIMAL(10,2) AS amount, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS at, DATE '2024-01-02' AS day, true AS ok, 'x' AS s) TO '${path}' (FORMAT parquet)`,
    );
    const r = await inferSource(path);
    expect(r.schema).toEqual({
      read: { format: "parquet" },
      columns: [
        { name: "id", type: "integer" },
        { name: "amount", type: "decimal", scale: 2 },
        { name: "at", type: "timestamp" },
        { name: "day", type: "date" },
        { name: "ok", type: "boolean" },
        str("s"),
      ],
    });
  });

  it("tolerates a few broken values (their rows are quarantined later) but not many", () => {
    const values = [...Array.from({ length: 199 }, (_, i) => String(i)), "12.5x"];
    expect(inferColumn("n", values)).toMatchObject({
      type: "integer",
      notes: [expect.stringMatching(/^1 of 200 sampled values are not an integer \("12\.5x"\)/)],
    });
    expect(inferColumn("n", [...values.slice(0, 190), ...Array.from({ length: 10 }, () => "x")]).type).toBe("string");
    // A type every value fits wins over one most values fit.
    expect(inferColumn("n", ["1", "2", "2.5"])).toMatchObject({ type: "decimal", scale: 1 });
  });
});

describe("sluice ingest of each file, end to end", () => {
  const ingest = (file: string, to: string, table: string) =>
    sluice(["ingest", f(file), "--to", to, "--table", table], { cwd: work, env: { SLUICE_HOME: join(work, "home") } });

  it("stores every record of every file in SQLite, with exact values", () => {
    const warehouse = join(work, "w.db");
    for (const [file, want] of Object.entries(EXPECTED)) {
      const table = file.replace(/\W/g, "_");
      const r = ingest(file, `sqlite:${warehouse}`, table);
      expect(r.code, `${file}: ${r.stderr}`).toBe(0);
      const db = new Database(warehouse, { readonly: true });
      try {
        expect((db.prepare(`select count(*) as n from "${table}"`).get() as { n: number }).n, file).toBe(want.rows);
        expect((db.prepare(`select count(*) as n from "${table}_quarantine"`).get() as { n: number }).n, file).toBe(0);
      } finally {
        db.close();
      }
    }
    const db = new Database(warehouse, { readonly: true });
    try {
      expect(db.prepare(`select distinct title from movies_csv order by title limit 3`).all()).toEqual([
        { title: "Amélie" },
        { title: "Cinéma Paradiso" },
        { title: "Crouching Tiger – Hidden Dragon" },
      ]);
      expect(db.prepare(`select placed_at from orders_us_csv where order_id = 1000`).get()).toEqual({ placed_at: "2021-01-01T23:59:00.000Z" });
      expect(db.prepare(`select "Date" as d, "Open" as o from stocks_csv limit 1`).get()).toEqual({
        d: "1998-06-02",
        o: Number(readFileSync(f("stocks.csv"), "utf8").split("\n")[1]!.split(",")[1]),
      });
      const na = readFileSync(f("weather.csv"), "utf8")
        .split("\n")
        .filter((l) => l.split(",")[3] === "NA").length;
      expect(db.prepare(`select count(*) as n from weather_csv where TMAX is null`).get()).toEqual({ n: na });
      expect(db.prepare(`select STATION from weather_csv limit 1`).get()).toEqual({ STATION: "0072530" });
      expect(db.prepare(`select count(*) as n from airports_csv where continent = 'NA'`).get()).toEqual({ n: 16 });
      expect(db.prepare(`select "Name" as n, "Stadt" as s from excel_unicode_txt limit 1`).get()).toEqual({ n: "Müller 0", s: "Köln" });
    } finally {
      db.close();
    }
  }, 120_000);

  it("ingests Parquet (written by DuckDB) and Arrow (written by apache-arrow) with the files' own types", async () => {
    const parquet = join(work, "typed.parquet");
    await duck.run(
      `COPY (SELECT i::BIGINT AS id, (i * 1.25)::DECIMAL(10,2) AS amount, TIMESTAMPTZ '2024-01-02 03:04:05+00' + i * INTERVAL 1 SECOND AS at, i % 2 = 0 AS ok FROM range(500) t(i)) TO '${parquet}' (FORMAT parquet, COMPRESSION zstd)`,
    );
    const { tableFromArrays, tableToIPC } = await import("apache-arrow");
    const arrow = join(work, "typed.arrow");
    writeFileSync(
      arrow,
      tableToIPC(
        tableFromArrays({ id: BigInt64Array.from({ length: 300 }, (_, i) => BigInt(i)), name: Array.from({ length: 300 }, (_, i) => `n${i}`) }),
        "file",
      ),
    );
    const warehouse = join(work, "typed.db");
    for (const [file, table, n] of [
      [parquet, "pq", 500],
      [arrow, "ar", 300],
    ] as const) {
      const r = sluice(["ingest", file, "--to", `sqlite:${warehouse}`, "--table", table], { cwd: work, env: { SLUICE_HOME: join(work, "home") } });
      expect(r.code, r.stderr).toBe(0);
      const db = new Database(warehouse, { readonly: true });
      try {
        expect((db.prepare(`select count(*) as n from ${table}`).get() as { n: number }).n).toBe(n);
      } finally {
        db.close();
      }
    }
    const db = new Database(warehouse, { readonly: true });
    try {
      expect(db.prepare("select id, amount, at, ok from pq where id = 3").get()).toEqual({ id: 3, amount: 3.75, at: "2024-01-02T03:04:08.000Z", ok: 0 });
      expect(db.prepare("select id, name from ar where id = 7").get()).toEqual({ id: 7, name: "n7" });
    } finally {
      db.close();
    }
  }, 60_000);

  it("stores files into PostgreSQL with the inferred types", async () => {
    for (const file of ["airports.csv", "orders_us.csv", "movies.csv"]) {
      const table = `infer_${file.replace(/\.\w+$/, "")}_${suffix}`;
      const r = ingest(file, PG_URL, table);
      expect(r.code, `${file}: ${r.stderr}`).toBe(0);
      const n = await admin.query(`select count(*)::int as n from ${table}`);
      expect(n.rows[0].n).toBe(EXPECTED[file]!.rows);
    }
    const types = await admin.query(
      `select column_name, data_type from information_schema.columns where table_name = $1 and column_name in ('placed_at', 'amount', 'paid') order by column_name`,
      [`infer_orders_us_${suffix}`],
    );
    expect(types.rows).toEqual([
      { column_name: "amount", data_type: "numeric" },
      { column_name: "paid", data_type: "boolean" },
      { column_name: "placed_at", data_type: "timestamp with time zone" },
    ]);
  }, 120_000);
});

/** DuckDB's type, as a Sluice type (DOUBLE is read as decimal: Sluice keeps decimals exact). */
function sluiceTypeOf(duckType: string): string {
  if (/^(BIGINT|INTEGER|SMALLINT|TINYINT|HUGEINT)$/.test(duckType)) return "integer";
  if (duckType === "DOUBLE" || duckType.startsWith("DECIMAL")) return "decimal";
  if (duckType === "DATE") return "date";
  if (duckType.startsWith("TIMESTAMP")) return "timestamp";
  if (duckType === "BOOLEAN") return "boolean";
  return "string";
}

describe("compared with DuckDB's read_csv_auto", () => {
  it("agrees column by column, except where the README says why not", async () => {
    const differences: string[] = [];
    for (const [file, want] of Object.entries(EXPECTED)) {
      if (!/\.(csv|tsv|txt)$/.test(file)) continue;
      let duckTypes: string[];
      try {
        const r = await duck.runAndReadAll(`DESCRIBE SELECT * FROM read_csv_auto('${f(file)}')`);
        duckTypes = r.getRowObjects().map((x) => String(x.column_type));
      } catch {
        differences.push(`${file}: DuckDB cannot read it`);
        continue;
      }
      want.columns.forEach((c, i) => {
        const d = sluiceTypeOf(duckTypes[i] ?? "?");
        if (d !== c.type) differences.push(`${file} ${c.name}: sluice ${c.type}, duckdb ${duckTypes[i]}`);
      });
    }
    expect(differences).toEqual([
      "weather.csv TMAX: sluice decimal, duckdb VARCHAR", // "NA" as a null marker
      "weather.csv TMIN: sluice decimal, duckdb VARCHAR",
      "stocks.csv Date: sluice date, duckdb VARCHAR", // "Jun 2 1998"
      "movies.csv: DuckDB cannot read it", // windows-1252
      "cars.tsv mpg: sluice decimal, duckdb VARCHAR", // "NA"
      "orders_us.csv placed_at: sluice timestamp, duckdb VARCHAR", // "01/01/2021 11:59 PM"
      "orders_us.csv paid: sluice boolean, duckdb VARCHAR", // Y/N
      "excel_unicode.txt: DuckDB cannot read it", // UTF-16
    ]);
  });
});

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { describe, expect, it } from "vitest";
import { scratch } from "../helpers.js";
import { sluice } from "./cli-helpers.js";

const dirs = scratch();

/** A folder with `files` written into it, as a user's working directory. */
function workdir(files: Record<string, string> = {}): string {
  const cwd = dirs("sluice-convert-cli-");
  for (const [name, text] of Object.entries(files)) writeFileSync(join(cwd, name), text);
  return cwd;
}

const SCHEMA = `key: [trade_id]
columns:
  - { name: trade_id, type: string, required: true }
  - { name: executed_at, type: timestamp, required: true }
  - { name: quantity, type: integer, required: true }
  - { name: price, type: decimal, scale: 4, required: true }
  - { name: settled, type: date }
  - { name: active, type: boolean }
  - { name: note, type: string }
`;

describe("sluice convert (a real process)", () => {
  it("a missing input is one sentence and exit 1, never a bug report", () => {
    const cwd = workdir();
    const r = sluice(["convert", "trades.csv", "out.parquet"], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("sluice: cannot read trades.csv: no such file\n");
    expect(r.stdout).toBe("");
  });

  it("an input that is a directory, an output that cannot be created, a missing schema: one sentence each, exit 1; Arrow output: usage, exit 2", () => {
    const cwd = workdir({ "in.csv": "a\n1\n", "file.txt": "x" });
    mkdirSync(join(cwd, "data"));
    mkdirSync(join(cwd, "taken.parquet"));
    const cases: [string[], number, string][] = [
      [["convert", "data", "out.parquet"], 1, "sluice: cannot read data: is a directory\n"],
      [["convert", "in.csv", "file.txt/out.parquet"], 1, "sluice: cannot write file.txt/out.parquet: a part of the path is not a directory\n"],
      [["convert", "in.csv", "taken.parquet"], 1, "sluice: cannot write taken.parquet: is a directory\n"],
      [
        ["convert", "in.csv", "out.parquet", "--schema", "schema.yaml"],
        1,
        `sluice: schema file schema.yaml cannot be read: no such file (a relative path is read from the working directory, ${cwd})\n`,
      ],
      [["convert", "in.csv", "out.feather"], 2, "sluice: writing Arrow files is not supported; write parquet\n"],
      [["convert", "in.csv", "out.bin", "--to", "xlsx"], 2, 'sluice: --to must be one of csv, tsv, ndjson, json, parquet, arrow, not "xlsx"\n'],
    ];
    for (const [args, code, stderr] of cases) {
      const r = sluice(args, { cwd });
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code, stderr });
    }
  });

  it("lists the first 20 rejected records, counts the rest, and --rejects holds all 30 with their raw records", () => {
    const lines = ["trade_id,executed_at,quantity,price,settled,active,note"];
    for (let i = 1; i <= 60; i++) {
      if (i % 2 === 0) lines.push(`T-${i},2026-11-02T09:30:00Z,${i},${i}.25,2026-11-03,true,ok`);
      else if (i % 4 === 1)
        lines.push(`T-${i},2026-11-02T09:30:00Z,many,1.5,,,`); // typing reject
      else lines.push(`T-${i},2026-11-02T09:30:00Z,${i}`); // malformed: 3 fields of 7
    }
    const cwd = workdir({ "trades.csv": `${lines.join("\n")}\n`, "schema.yaml": SCHEMA });
    const r = sluice(["convert", "trades.csv", "out.parquet", "--schema", "schema.yaml"], { cwd });
    expect(r.code).toBe(1);
    const err = r.stderr.trimEnd().split("\n");
    expect(err).toHaveLength(21);
    expect(err[0]).toBe('trades.csv:2: quantity: "many" is not a valid integer');
    expect(err[1]).toBe("trades.csv:4: expected 7 fields, found 3");
    expect(err.slice(0, 20).every((l) => /^trades\.csv:\d+: /.test(l))).toBe(true);
    expect(err[20]).toBe("… and 10 more rejected records (all of them: --rejects FILE)");
    expect(r.stdout).toBe("out.parquet: 30 rows written (60 read, 30 malformed), 7 columns\n");

    const r2 = sluice(["convert", "trades.csv", "out2.parquet", "--schema", "schema.yaml", "--rejects", "rejects/all.ndjson"], { cwd });
    expect(r2.code).toBe(1);
    expect(r2.stderr.trimEnd().split("\n").at(-1)).toBe("… and 10 more rejected records (all of them in rejects/all.ndjson)");
    const rejects = readFileSync(join(cwd, "rejects/all.ndjson"), "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rejects).toHaveLength(30);
    expect(rejects.map((x) => x.line)).toEqual(Array.from({ length: 30 }, (_, k) => 2 * k + 2));
    expect(rejects[0]).toEqual({
      file: "trades.csv",
      line: 2,
      reason: 'quantity: "many" is not a valid integer',
      raw: { trade_id: "T-1", executed_at: "2026-11-02T09:30:00Z", quantity: "many", price: "1.5", settled: "", active: "", note: "" },
    });
    expect(rejects[1]).toEqual({ file: "trades.csv", line: 4, reason: "expected 7 fields, found 3", raw: "T-3,2026-11-02T09:30:00Z,3" });
  });

  it("--schema writes typed Parquet that DuckDB reads with the right types and values", async () => {
    const csv = [
      "trade_id,executed_at,quantity,price,settled,active,note",
      "T-1,2026-11-02T10:30:00.123456+01:00,100,189.25,2026-11-03,yes,é ✓",
      "T-2,2026-11-02 09:30:00Z,-5,0.0001,,false,",
      'T-3,2026-11-02T09:30:00.5Z,9223372036854775807,99999999999999.9999,2024-02-29,1,"a, b"',
    ].join("\n");
    const cwd = workdir({ "trades.csv": `${csv}\n`, "schema.yaml": SCHEMA });
    const r = sluice(["convert", "trades.csv", "out/trades.parquet", "--schema", "schema.yaml"], { cwd });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("out/trades.parquet: 3 rows written (3 read, 0 malformed), 7 columns\n");
    const db = await DuckDBInstance.create(":memory:", { threads: "1" });
    const con = await db.connect();
    try {
      await con.run("SET TimeZone = 'UTC'");
      const path = join(cwd, "out/trades.parquet");
      const types = (await con.runAndReadAll(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '${path}')`)).getRowObjectsJson();
      expect(types).toEqual([
        { column_name: "trade_id", column_type: "VARCHAR" },
        { column_name: "executed_at", column_type: "TIMESTAMP WITH TIME ZONE" },
        { column_name: "quantity", column_type: "BIGINT" },
        { column_name: "price", column_type: "DECIMAL(38,4)" },
        { column_name: "settled", column_type: "DATE" },
        { column_name: "active", column_type: "BOOLEAN" },
        { column_name: "note", column_type: "VARCHAR" },
      ]);
      const rows = (
        await con.runAndReadAll(
          `SELECT trade_id, executed_at::VARCHAR AS at, quantity::VARCHAR AS q, price::VARCHAR AS p, settled::VARCHAR AS d, active, note FROM '${path}'`,
        )
      ).getRowObjectsJson();
      expect(rows).toEqual([
        { trade_id: "T-1", at: "2026-11-02 09:30:00.123456+00", q: "100", p: "189.2500", d: "2026-11-03", active: true, note: "é ✓" },
        { trade_id: "T-2", at: "2026-11-02 09:30:00+00", q: "-5", p: "0.0001", d: null, active: false, note: null },
        { trade_id: "T-3", at: "2026-11-02 09:30:00.5+00", q: "9223372036854775807", p: "99999999999999.9999", d: "2024-02-29", active: true, note: "a, b" },
      ]);
      const codecs = (await con.runAndReadAll(`SELECT DISTINCT compression FROM parquet_metadata('${path}')`)).getRowObjectsJson();
      expect(codecs).toEqual([{ compression: "ZSTD" }]);
    } finally {
      con.closeSync();
      db.closeSync();
    }
  });
});

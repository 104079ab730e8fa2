import { readFile, readdir } from "node:fs/promises";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import * as A from "apache-arrow";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertFile, type RejectedRecord } from "../../src/formats/convert.js";
import { detectFormat, openReader, openWriter } from "../../src/formats/dispatch.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();
let instance: DuckDBInstance;
let duck: DuckDBConnection;
beforeAll(async () => {
  instance = await DuckDBInstance.create(":memory:", { threads: "1" });
  duck = await instance.connect();
  await duck.run("SET TimeZone = 'UTC'");
});
afterAll(() => {
  duck?.closeSync();
  instance?.closeSync();
});
const rowsOf = async (sql: string): Promise<Record<string, unknown>[]> => (await duck.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
const typesOf = async (path: string): Promise<string[]> =>
  (await rowsOf(`SELECT column_type FROM (DESCRIBE SELECT * FROM '${path}')`)).map((r) => r.column_type as string);

/** CSV text quoted minimally (as RFC 4180 writers do), with quoted commas, quotes and newlines. */
function sourceCsv(rows: number): string {
  const lines = ["id,full name,note,amount,empty"];
  for (let i = 0; i < rows; i++) {
    const note = i % 4 === 0 ? `"multi\nline ""${i}"", ok"` : i % 4 === 1 ? `"a,b"` : `plain é ${i}`;
    lines.push(`${i},Name ${i},${note},${(i * 1.25).toFixed(2)},`);
  }
  return lines.join("\n") + "\n";
}

describe("detectFormat", () => {
  it("maps extensions and names the file for an unknown one", () => {
    expect(["a.csv", "a.TSV", "a.ndjson", "a.jsonl", "a.json", "a.parquet", "a.arrow", "a.feather", "a.arrows", "a.ipc"].map(detectFormat)).toEqual([
      "csv",
      "tsv",
      "ndjson",
      "ndjson",
      "json",
      "parquet",
      "arrow",
      "arrow",
      "arrow",
      "arrow",
    ]);
    expect(() => detectFormat("/data/in.xlsx")).toThrow(expect.objectContaining({ code: "BAD_INPUT", message: expect.stringContaining("/data/in.xlsx") }));
    expect(() => detectFormat("noext")).toThrow(/unknown extension \(none\)/);
  });

  it("reads and writes TSV with a tab delimiter", async () => {
    const path = await tmp.file("t.tsv", "a\tb\nx,y\t2\n");
    const r = await collect(openReader(path));
    expect(r.rows).toEqual([{ a: "x,y", b: "2" }]);
    const out = await tmp.file("o.tsv");
    const w = await openWriter(out, "tsv", { columns: ["a", "b"] });
    await w.write(r.rows);
    await w.close();
    expect(await readFile(out, "utf8")).toBe("a\tb\nx,y\t2\n");
  });
});

describe("convertFile", () => {
  it("CSV → NDJSON → JSON → Parquet → CSV keeps the data exactly", async () => {
    const text = sourceCsv(3000);
    const csv = await tmp.file("src.csv", text);
    const original = await collect(openReader(csv));
    expect(original.rows).toHaveLength(3000);

    const steps: [string, string][] = [
      [csv, await tmp.file("a.ndjson")],
      [await tmp.file("a.ndjson"), await tmp.file("b.json")],
      [await tmp.file("b.json"), await tmp.file("c.parquet")],
      [await tmp.file("c.parquet"), await tmp.file("d.csv")],
    ];
    for (const [input, output] of steps) {
      const res = await convertFile({ input, output });
      expect(res).toMatchObject({ rowsIn: 3000, rowsOut: 3000, errors: [], errorCount: 0 });
      expect(res.columns).toEqual(["id", "full name", "note", "amount", "empty"]);
      const back = await collect(openReader(output));
      expect(back.rows).toEqual(original.rows);
    }
    // The final CSV is byte-identical to the source (the writer quotes exactly what needs it).
    expect(await readFile(steps.at(-1)![1], "utf8")).toBe(text);
    // No temp files left behind.
    expect((await readdir(tmp.dir)).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("reports malformed input records and keeps rowsIn = rowsOut + errors", async () => {
    const csv = await tmp.file("bad.csv", 'a,b\n1,2\n3\n"x"y,4\n5,6\n');
    const res = await convertFile({ input: csv, output: await tmp.file("bad.ndjson") });
    expect(res.rowsIn).toBe(4);
    expect(res.rowsOut).toBe(2);
    expect(res.errors).toEqual([
      { file: csv, line: 3, reason: "expected 2 fields, found 1" },
      { file: csv, line: 4, reason: "unexpected character after the closing quote of field 1" },
    ]);
    expect(await readFile(await tmp.file("bad.ndjson"), "utf8")).toBe('{"a":"1","b":"2"}\n{"a":"5","b":"6"}\n');
  });

  it("NDJSON → CSV: columns from the first batch; a later row with an unknown key is reported, not truncated", async () => {
    const nd = await tmp.file("keys.ndjson", '{"a":1,"b":"x"}\n{"b":"y"}\n{"a":3,"c":true}\n');
    const out = await tmp.file("keys.csv");
    const res = await convertFile({ input: nd, output: out, read: { batchSize: 2 } });
    expect(res).toMatchObject({ rowsIn: 3, rowsOut: 2, columns: ["a", "b"] });
    expect(res.errors).toEqual([{ file: nd, line: 3, reason: expect.stringContaining('column "c"') }]);
    expect(await readFile(out, "utf8")).toBe("a,b\n1,x\n,y\n");
  });

  it("selects and orders columns with a schema, and honours from/to overrides", async () => {
    const input = await tmp.file("data.txt", "a;b;c\n1;2;3\n");
    const output = await tmp.file("out.dat");
    const res = await convertFile({ input, output, from: "csv", to: "ndjson", schema: ["c", "a"], read: { delimiter: ";" } });
    expect(res).toMatchObject({ rowsIn: 1, rowsOut: 1, columns: ["c", "a"] });
    expect(await readFile(output, "utf8")).toBe('{"c":"3","a":"1"}\n');
  });

  it("converts a header-only CSV to a header-only CSV and an empty Parquet file", async () => {
    const input = await tmp.file("head.csv", "x,y\n");
    const pq = await tmp.file("head.parquet");
    expect(await convertFile({ input, output: pq })).toMatchObject({ rowsIn: 0, rowsOut: 0, columns: ["x", "y"] });
    const out = await tmp.file("head2.csv");
    await convertFile({ input: pq, output: out });
    expect(await readFile(out, "utf8")).toBe("x,y\n");
  });

  it("leaves no output when the input cannot be read", async () => {
    const input = await tmp.file("notarray.json", '{"a":1}');
    const output = await tmp.file("never.csv");
    await expect(convertFile({ input, output })).rejects.toMatchObject({ code: "BAD_INPUT" });
    expect((await readdir(tmp.dir)).filter((f) => f.startsWith("never.csv"))).toEqual([]);
  });
});

describe("convertFile keeps types", () => {
  it("JSON → Parquet (no schema) → JSON: numbers stay numbers, booleans booleans, nested objects objects", async () => {
    const records = Array.from({ length: 2500 }, (_, i) => ({
      id: i,
      price: i / 8,
      active: i % 2 === 0,
      name: `item ${i} é`,
      tags: i % 5 === 0 ? null : ["a", String(i)],
      meta: { source: "api", depth: { level: i % 3 } },
      note: i % 7 === 0 ? null : "x",
    }));
    const json = await tmp.file("typed-in.json", JSON.stringify(records));
    const pq = await tmp.file("typed-out.parquet");
    const res = await convertFile({ input: json, output: pq, write: { rowGroupSize: 1000 } });
    expect(res).toMatchObject({ rowsIn: 2500, rowsOut: 2500, errorCount: 0 });
    expect(await typesOf(pq)).toEqual(["DOUBLE", "DOUBLE", "BOOLEAN", "VARCHAR", "JSON", "JSON", "VARCHAR"]);
    const back = await tmp.file("typed-back.json");
    await convertFile({ input: pq, output: back });
    expect(JSON.parse(await readFile(back, "utf8"))).toEqual(records);
    // NDJSON the same way.
    const nd = await tmp.file("typed-in.ndjson", records.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const pq2 = await tmp.file("typed-out2.parquet");
    await convertFile({ input: nd, output: pq2 });
    expect((await collect(openReader(pq2))).rows).toEqual(records);
  });

  it("Parquet → Parquet and Arrow → Parquet keep the input's own column types", async () => {
    const src = await tmp.file("duck-src.parquet");
    await duck.run(`COPY (SELECT i::BIGINT AS id, (i / 100)::DECIMAL(12,2) AS amount, TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL (i) SECOND AS at,
      DATE '2026-01-01' + i::INT AS day, i % 2 = 0 AS ok, i / 3 AS ratio, 'n' || i AS name, [i, i + 1] AS pair, {'k': i} AS obj
      FROM range(100) t(i)) TO '${src}' (FORMAT parquet)`);
    const out = await tmp.file("pq-to-pq.parquet");
    expect(await convertFile({ input: src, output: out })).toMatchObject({ rowsOut: 100, errorCount: 0 });
    expect(await typesOf(out)).toEqual(["BIGINT", "DECIMAL(38,2)", "TIMESTAMP WITH TIME ZONE", "DATE", "BOOLEAN", "DOUBLE", "VARCHAR", "JSON", "JSON"]);
    expect(
      await rowsOf(
        `SELECT count(*)::INT AS n FROM '${src}' a JOIN '${out}' b ON a.id = b.id AND a.amount = b.amount AND a."at" = b."at" AND a.day = b.day AND a.ok = b.ok AND a.ratio = b.ratio AND a.name = b.name`,
      ),
    ).toEqual([{ n: 100 }]);
    // Nested values are JSON whose leaves follow the reading rules (BIGINT elements as exact text).
    expect(await rowsOf(`SELECT pair::VARCHAR AS pair, obj::VARCHAR AS obj FROM '${out}' WHERE id = 7`)).toEqual([{ pair: '["7","8"]', obj: '{"k":"7"}' }]);

    const arrow = await tmp.file("src.arrow");
    const table = new A.Table({
      id: A.makeVector(A.makeData({ type: new A.Int64(), length: 2, data: new BigInt64Array([1n, 9223372036854775807n]) })),
      at: A.makeVector(
        A.makeData({ type: new A.Timestamp(A.TimeUnit.NANOSECOND, "UTC"), length: 2, data: new BigInt64Array([1_700_000_000_123_456_789n, 0n]) }),
      ),
      side: A.vectorFromArray(["BUY", "SELL"], new A.Dictionary(new A.Utf8(), new A.Int8())),
      x: A.vectorFromArray([0.5, -1], new A.Float64()),
    });
    await (await import("node:fs/promises")).writeFile(arrow, A.tableToIPC(table, "file"));
    const out2 = await tmp.file("arrow-to-pq.parquet");
    await convertFile({ input: arrow, output: out2 });
    expect(await typesOf(out2)).toEqual(["BIGINT", "TIMESTAMP WITH TIME ZONE", "VARCHAR", "DOUBLE"]);
    expect(await rowsOf(`SELECT id::VARCHAR AS id, "at"::VARCHAR AS at, side, x FROM '${out2}'`)).toEqual([
      { id: "1", at: "2023-11-14 22:13:20.123456+00", side: "BUY", x: 0.5 },
      { id: "9223372036854775807", at: "1970-01-01 00:00:00+00", side: "SELL", x: -1 },
    ]);
  });

  it("CSV stays text without a schema; an inferSchema hook types it; every reject reaches onReject with its raw record", async () => {
    const csv = await tmp.file("infer.csv", "id,qty,when\n1,5,2026-01-01T00:00:00Z\n2,x,2026-01-02T00:00:00Z\n3,7\n4,9,2026-01-04T00:00:00Z\n");
    const plain = await tmp.file("infer-plain.parquet");
    await convertFile({ input: csv, output: plain });
    expect(await typesOf(plain)).toEqual(["VARCHAR", "VARCHAR", "VARCHAR"]);

    const typed = await tmp.file("infer-typed.parquet");
    const rejected: RejectedRecord[] = [];
    const seen: unknown[] = [];
    const res = await convertFile({
      input: csv,
      output: typed,
      inferSchema: async (input) => {
        seen.push(input);
        return {
          columns: [
            { name: "id", type: "integer" },
            { name: "qty", type: "integer" },
            { name: "when", type: "timestamp" },
          ],
          transform: (row) =>
            /^\d+$/.test(String(row.qty))
              ? { ok: true, row: { id: row.id, qty: row.qty, when: String(row.when).replace("Z", ".000Z") } }
              : { ok: false, reasons: [`qty: ${JSON.stringify(row.qty)} is not an integer`] },
        };
      },
      onReject: (r) => {
        rejected.push(r);
      },
      maxErrors: 1,
    });
    expect(seen).toEqual([{ path: csv, format: "csv" }]);
    expect(res).toMatchObject({ rowsIn: 4, rowsOut: 2, errorCount: 2, errors: [{ file: csv, line: 3, reason: 'qty: "x" is not an integer' }] });
    expect(rejected).toEqual([
      { file: csv, line: 3, reason: 'qty: "x" is not an integer', raw: { id: "2", qty: "x", when: "2026-01-02T00:00:00Z" } },
      { file: csv, line: 4, reason: "expected 3 fields, found 2", raw: "3,7" },
    ]);
    expect(await typesOf(typed)).toEqual(["BIGINT", "BIGINT", "TIMESTAMP WITH TIME ZONE"]);
    expect(await rowsOf(`SELECT id::INT AS id, qty::INT AS qty FROM '${typed}'`)).toEqual([
      { id: 1, qty: 5 },
      { id: 4, qty: 9 },
    ]);
  });

  it("names the output, not its temporary file, when writing fails; refuses Arrow output", async () => {
    const nd = await tmp.file("amounts.ndjson", '{"amount":1}\n{"amount":"n/a"}\n');
    const output = await tmp.file("amounts.parquet");
    await expect(convertFile({ input: nd, output, write: { rowGroupSize: 1 } })).rejects.toThrow(
      `cannot write ${output}: column "amount" is DOUBLE, which takes numbers, but row 2 holds "n/a"`,
    );
    expect((await readdir(tmp.dir)).filter((f) => f.startsWith("amounts.parquet"))).toEqual([]);
    await expect(convertFile({ input: nd, output: await tmp.file("x.feather") })).rejects.toMatchObject({
      code: "USAGE",
      message: "writing Arrow files is not supported; write parquet",
    });
  });
});

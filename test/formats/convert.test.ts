import { readFile, readdir } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { convertFile } from "../../src/formats/convert.js";
import { detectFormat, openReader, openWriter } from "../../src/formats/dispatch.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();

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
    expect(["a.csv", "a.TSV", "a.ndjson", "a.jsonl", "a.json", "a.parquet"].map(detectFormat)).toEqual([
      "csv",
      "tsv",
      "ndjson",
      "ndjson",
      "json",
      "parquet",
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

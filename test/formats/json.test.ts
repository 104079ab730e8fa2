import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { openJsonArrayWriter, readJsonArray } from "../../src/formats/json-array.js";
import { openNdjsonWriter, parseNdjsonStream, readNdjson } from "../../src/formats/ndjson.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();

describe("readNdjson", () => {
  it("reads one object per line, skips blank lines and reports bad lines", async () => {
    const path = await tmp.file(
      "data.ndjson",
      ['{"id":1,"name":"a"}', "", '{"id":2,"nested":{"x":[1,2]}}\r', "   ", "{not json}", "[1,2]", "42", "null", '{"id":3,"text":"é ✓ \\n"}'].join("\n"),
    );
    const r = await collect(readNdjson(path, { highWaterMark: 5 }));
    expect(r.rows).toEqual([
      { id: 1, name: "a" },
      { id: 2, nested: { x: [1, 2] } },
      { id: 3, text: "é ✓ \n" },
    ]);
    expect(r.lines).toEqual([1, 3, 9]);
    expect(r.errors.map((e) => [e.line, e.raw])).toEqual([
      [5, "{not json}"],
      [6, "[1,2]"],
      [7, "42"],
      [8, "null"],
    ]);
    expect(r.errors[0]!.reason).toMatch(/^invalid JSON: /);
    expect(r.errors[1]!.reason).toBe("expected a JSON object, found an array");
    expect(r.errors[2]!.reason).toBe("expected a JSON object, found a number");
    expect(r.errors[3]!.reason).toBe("expected a JSON object, found null");
    expect(r.errors.every((e) => e.file === path)).toBe(true);
  });

  it("parses a stream of chunks and names the source in errors", async () => {
    async function* body(): AsyncGenerator<string> {
      yield '{"a":1}\n{"a":';
      yield "2}\nnope\n";
    }
    const r = await collect(parseNdjsonStream(body(), "nats:orders"));
    expect(r.rows).toEqual([{ a: 1 }, { a: 2 }]);
    expect(r.errors).toMatchObject([{ file: "nats:orders", line: 3, raw: "nope" }]);
  });

  it("names options.name, not the file read, in errors", async () => {
    const staged = await tmp.file("0001-data.ndjson", '{"a":1}\nnope\n{"a":"' + "x".repeat(200));
    const name = "https://api.example.com/v1/orders";
    await expect(collect(readNdjson(staged, { name, maxRecordBytes: 100, highWaterMark: 16 }))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: `${name}: line 3 is longer than 100 characters`,
    });
    const r = await collect(readNdjson(staged, { name }));
    expect(r.errors.map((e) => [e.file, e.line])).toEqual([
      [name, 2],
      [name, 3],
    ]);
  });

  it("writes NDJSON that reads back the same", async () => {
    const path = await tmp.file("out.ndjson");
    const w = await openNdjsonWriter(path);
    const rows = [
      { a: "1", b: "x\ny" },
      { a: "2", big: 10n as unknown },
    ];
    await w.write(rows);
    const res = await w.close();
    const text = await readFile(path, "utf8");
    expect(text).toBe('{"a":"1","b":"x\\ny"}\n{"a":"2","big":"10"}\n');
    expect(res).toEqual({ rows: 2, bytes: Buffer.byteLength(text) });
  });
});

describe("readJsonArray", () => {
  it("streams the elements of a top-level array with their start lines", async () => {
    const text = [
      "\uFEFF[",
      '  {"id": 1, "s": "a \\" ] } , [ {"},',
      "  {",
      '    "id": 2,',
      '    "list": [1, {"y": "\\\\"}]',
      "  },",
      '  {"id": 3, "u": "\\u00e9"}',
      "]",
      "",
    ].join("\n");
    const path = await tmp.file("arr.json", text);
    const whole = await collect(readJsonArray(path));
    expect(whole.rows).toEqual([
      { id: 1, s: 'a " ] } , [ {' },
      { id: 2, list: [1, { y: "\\" }] },
      { id: 3, u: "é" },
    ]);
    expect(whole.lines).toEqual([2, 3, 7]);
    expect(whole.errors).toEqual([]);
    // Same result when every string escape and bracket is split across reads.
    for (const hwm of [1, 2, 3, 5]) {
      const small = await collect(readJsonArray(path, { highWaterMark: hwm, batchSize: 2 }));
      expect(small.rows).toEqual(whole.rows);
      expect(small.lines).toEqual(whole.lines);
    }
  });

  it("reports bad elements and reads the rest", async () => {
    const path = await tmp.file("bad.json", ['[{"id":1},', '{"id": oops},', "7,", '"str",', "[1,2],", ",", '{"id":2}', "]"].join("\n"));
    const r = await collect(readJsonArray(path));
    expect(r.rows).toEqual([{ id: 1 }, { id: 2 }]);
    expect(r.lines).toEqual([1, 7]);
    expect(r.errors.map((e) => [e.line, e.raw])).toEqual([
      [2, '{"id": oops}'],
      [3, "7"],
      [4, '"str"'],
      [5, "[1,2]"],
      [6, ""],
    ]);
    expect(r.errors[0]!.reason).toMatch(/^invalid JSON: /);
    expect(r.errors[1]!.reason).toBe("expected a JSON object, found a number");
    expect(r.errors[3]!.reason).toBe("expected a JSON object, found an array");
    expect(r.errors[4]!.reason).toMatch(/empty array element/);
  });

  it("reports an unterminated element and text after the array", async () => {
    const cut = await collect(readJsonArray(await tmp.file("cut.json", '[{"a":1},\n{"a":2')));
    expect(cut.rows).toEqual([{ a: 1 }]);
    expect(cut.errors).toMatchObject([{ line: 2, reason: "unterminated array element at end of file", raw: '{"a":2' }]);
    const extra = await collect(readJsonArray(await tmp.file("extra.json", '[{"a":1}]\n\n[{"a":2}]')));
    expect(extra.rows).toEqual([{ a: 1 }]);
    expect(extra.errors).toMatchObject([{ line: 3, reason: "unexpected text after the end of the top-level array" }]);
    const empty = await collect(readJsonArray(await tmp.file("emptyarr.json", " [ ] ")));
    expect(empty.rows).toEqual([]);
    expect(empty.errors).toEqual([]);
  });

  it("rejects a file that is not a top-level array with a clear error", async () => {
    const obj = await tmp.file("obj.json", '{"rows": [{"a": 1}]}');
    await expect(collect(readJsonArray(obj))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: expect.stringContaining(`${obj}: expected a JSON array of objects`),
    });
    await expect(collect(readJsonArray(await tmp.file("e.json", "  ")))).rejects.toMatchObject({ code: "BAD_INPUT" });
  });

  it("names options.name, not the file read, in errors", async () => {
    const name = "/data/in/customers.json";
    const obj = await tmp.file("0002-data.json", '{"rows": []}');
    await expect(collect(readJsonArray(obj, { name }))).rejects.toMatchObject({
      message: `${name}: expected a JSON array of objects, but the file starts with "{\\"rows\\": []}"`,
    });
    const bad = await collect(readJsonArray(await tmp.file("0003-data.json", '[{"a":1}, 7]'), { name }));
    expect(bad.errors).toMatchObject([{ file: name, line: 1, reason: "expected a JSON object, found a number" }]);
  });

  it("writes a streaming array that reads back the same", async () => {
    const path = await tmp.file("out.json");
    const w = await openJsonArrayWriter(path, ["b", "a"]);
    await w.write([{ a: 1, b: "x" }]);
    await w.write([{ a: 2 }, { a: 3, b: "z", c: "dropped" }]);
    await w.close();
    expect(await readFile(path, "utf8")).toBe('[\n{"b":"x","a":1},\n{"b":null,"a":2},\n{"b":"z","a":3}\n]\n');
    const back = await collect(readJsonArray(path));
    expect(back.rows).toEqual([
      { b: "x", a: 1 },
      { b: null, a: 2 },
      { b: "z", a: 3 },
    ]);
    expect(back.lines).toEqual([2, 3, 4]);
    const emptyPath = await tmp.file("none.json");
    await (await openJsonArrayWriter(emptyPath)).close();
    expect(await readFile(emptyPath, "utf8")).toBe("[\n]\n");
  });
});

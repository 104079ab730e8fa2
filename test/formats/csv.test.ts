import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { openCsvWriter, parseCsvStream, readCsv, readCsvHeader, readCsvRange } from "../../src/formats/csv.js";
import { SluiceError } from "../../src/errors.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();

describe("readCsv", () => {
  it("reads quoted delimiters, doubled quotes and quoted newlines with exact start lines", async () => {
    const path = await tmp.file(
      "quoted.csv",
      ["id,name,note", '1,"Smith, John","said ""hi"""', '2,plain,"two', "line", 'note"', "3,x,", '4,"","a\r\nb"', "5,last,end"].join("\n") + "\n",
    );
    const r = await collect(readCsv(path));
    expect(r.errors).toEqual([]);
    expect(r.columns).toEqual(["id", "name", "note"]);
    expect(r.rows).toEqual([
      { id: "1", name: "Smith, John", note: 'said "hi"' },
      { id: "2", name: "plain", note: "two\nline\nnote" },
      { id: "3", name: "x", note: "" },
      { id: "4", name: "", note: "a\r\nb" },
      { id: "5", name: "last", note: "end" },
    ]);
    expect(r.lines).toEqual([2, 3, 6, 7, 9]);
  });

  it("strips a UTF-8 BOM, accepts CRLF and skips blank lines", async () => {
    const path = await tmp.file("bom.csv", "\uFEFFa,b\r\n1,2\r\n\r\n\r\n3,4\r\n\n5,6");
    const r = await collect(readCsv(path));
    expect(r.columns).toEqual(["a", "b"]);
    expect(r.rows).toEqual([
      { a: "1", b: "2" },
      { a: "3", b: "4" },
      { a: "5", b: "6" },
    ]);
    expect(r.lines).toEqual([2, 5, 7]);
    expect(r.errors).toEqual([]);
  });

  it("keeps header names exactly, spaces and odd names included", async () => {
    const path = await tmp.file("names.csv", ' Name ,"a,b",__proto__,\n1,2,3,4\n');
    const r = await collect(readCsv(path));
    expect(r.columns).toEqual([" Name ", "a,b", "__proto__", ""]);
    expect(Object.keys(r.rows[0]!)).toEqual([" Name ", "a,b", "__proto__", ""]);
    expect(r.rows[0]![" Name "]).toBe("1");
    expect(Object.getOwnPropertyDescriptor(r.rows[0], "__proto__")?.value).toBe("3");
    expect(Object.getPrototypeOf(r.rows[0])).toBe(Object.prototype);
  });

  it("uses a custom delimiter and quote char", async () => {
    const path = await tmp.file("semi.csv", "a;b\n'x;y';'it''s'\nplain;'multi\nline'\n");
    const r = await collect(readCsv(path, { delimiter: ";", quote: "'" }));
    expect(r.rows).toEqual([
      { a: "x;y", b: "it's" },
      { a: "plain", b: "multi\nline" },
    ]);
    expect(r.lines).toEqual([2, 3]);
  });

  it("reads a headerless file with declared columns, and renames with header + columns", async () => {
    const path = await tmp.file("nohead.csv", "1,2\n3,4\n");
    const r = await collect(readCsv(path, { header: false, columns: ["x", "y"] }));
    expect(r.rows).toEqual([
      { x: "1", y: "2" },
      { x: "3", y: "4" },
    ]);
    expect(r.lines).toEqual([1, 2]);
    const renamed = await collect(readCsv(path, { header: true, columns: ["p", "q"] }));
    expect(renamed.rows).toEqual([{ p: "3", q: "4" }]);
    expect(renamed.lines).toEqual([2]);
  });

  it("reports malformed records with their start line and reads the rest", async () => {
    const path = await tmp.file(
      "bad.csv",
      [
        "a,b,c",
        "1,2,3",
        "4,5", // too few
        '6,"multi', // quoted newline, then too many fields
        'line",7,8',
        'x,ab"c,9', // stray quote
        '"q"junk,1,2', // junk after closing quote
        "10,11,12",
        '"open,13,14', // unterminated to end of file
        "15,16,17",
      ].join("\n") + "\n",
    );
    const r = await collect(readCsv(path));
    expect(r.rows).toEqual([
      { a: "1", b: "2", c: "3" },
      { a: "10", b: "11", c: "12" },
    ]);
    expect(r.lines).toEqual([2, 8]);
    expect(r.errors.map((e) => [e.line, e.reason])).toEqual([
      [3, "expected 3 fields, found 2"],
      [4, "expected 3 fields, found 4"],
      [6, "stray quote in unquoted field 2"],
      [7, "unexpected character after the closing quote of field 1"],
      [9, "unterminated quoted field 1 at end of file"],
    ]);
    expect(r.errors[0]).toEqual({ file: path, line: 3, reason: "expected 3 fields, found 2", raw: "4,5" });
    expect(r.errors[1]!.raw).toBe('6,"multi\nline",7,8');
    expect(r.errors[4]!.raw).toBe('"open,13,14\n15,16,17\n');
  });

  it("truncates the raw text of a huge bad record", async () => {
    const path = await tmp.file("huge.csv", "a,b\n" + "x".repeat(20_000) + "\n1,2\n");
    const r = await collect(readCsv(path));
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.raw.length).toBe(4096);
    expect(r.rows).toEqual([{ a: "1", b: "2" }]);
  });

  it("treats a record longer than maxRecordBytes as a broken file instead of buffering it all", async () => {
    const path = await tmp.file("open.csv", 'a,b\n1,"never closed\n' + "x,y\n".repeat(5000));
    await expect(collect(readCsv(path, { maxRecordBytes: 1000, highWaterMark: 256 }))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: expect.stringContaining("line 2"),
    });
  });

  it("gives the same rows and lines whatever the read size (records split across chunks)", async () => {
    const lines = ["id,text,n"];
    for (let i = 0; i < 300; i++) {
      const text = i % 7 === 0 ? `"multi\r\nline ""${i}"", é ✓"` : i % 5 === 0 ? `"a,b ${i}"` : `plain ${i} ü`;
      lines.push(i % 11 === 0 ? `${i},${text}` : `${i},${text},${i * 2}`);
      if (i % 13 === 0) lines.push("");
    }
    const path = await tmp.file("chunks.csv", "\uFEFF" + lines.join("\r\n") + "\r\n");
    const whole = await collect(readCsv(path, { highWaterMark: 1 << 20 }));
    expect(whole.rows.length).toBeGreaterThan(250);
    expect(whole.errors.length).toBe(28); // every 11th row has 2 fields
    for (const hwm of [1, 2, 3, 7, 16, 61]) {
      const small = await collect(readCsv(path, { highWaterMark: hwm, batchSize: 17 }));
      expect(small.rows).toEqual(whole.rows);
      expect(small.lines).toEqual(whole.lines);
      expect(small.errors).toEqual(whole.errors);
    }
    expect(whole.rows.find((r) => r.id === "7")).toEqual({ id: "7", text: 'multi\r\nline "7", é ✓', n: "14" });
  });

  it("bounds batches by batchSize", async () => {
    const body = Array.from({ length: 25 }, (_, i) => `${i}`).join("\n");
    const path = await tmp.file("batches.csv", "n\n" + body + "\n");
    const sizes: number[] = [];
    for await (const b of readCsv(path, { batchSize: 10 })) sizes.push(b.rows.length);
    expect(sizes).toEqual([10, 10, 5]);
  });

  it("yields the columns of a header-only file and nothing for an empty one", async () => {
    const head = await collect(readCsv(await tmp.file("head.csv", "a,b\n")));
    expect(head.columns).toEqual(["a", "b"]);
    expect(head.rows).toEqual([]);
    const empty = await collect(readCsv(await tmp.file("empty.csv", "")));
    expect(empty.batches).toBe(0);
  });

  it("rejects a malformed or duplicated header and a bad dialect", async () => {
    await expect(collect(readCsv(await tmp.file("badhead.csv", 'a,b"c\n1,2\n')))).rejects.toMatchObject({
      code: "BAD_INPUT",
    });
    await expect(collect(readCsv(await tmp.file("duphead.csv", "a,a\n1,2\n")))).rejects.toThrow(/appears twice/);
    await expect(collect(readCsv(await tmp.file("x.csv", "a\n"), { delimiter: "::" }))).rejects.toBeInstanceOf(SluiceError);
  });

  it("reads a header on its own, even one with a quoted newline", async () => {
    const path = await tmp.file("h.csv", '\uFEFF"multi\nline",b\n1,2\n');
    expect(await readCsvHeader(path, { highWaterMark: 3 })).toEqual(["multi\nline", "b"]);
  });

  it("reads the fixture file", async () => {
    const path = new URL("./fixtures/tricky.csv", import.meta.url).pathname;
    const r = await collect(readCsv(path));
    expect(r.columns).toEqual(["id", "city", "comment", "amount"]);
    expect(r.rows).toEqual([
      { id: "1", city: "São Paulo", comment: "ok", amount: "10.50" },
      { id: "2", city: "Zürich, CH", comment: 'he said "no"\nthen left', amount: "-3" },
      { id: "3", city: "東京", comment: "", amount: "0" },
    ]);
    expect(r.lines).toEqual([2, 3, 6]);
    expect(r.errors.map((e) => [e.line, e.reason])).toEqual([[5, "expected 4 fields, found 3"]]);
  });
});

describe("the input's name in errors (options.name)", () => {
  const user = "/home/ana/exports/orders.csv";
  it("names the user's file, not the staged copy, in every RecordError and error sentence", async () => {
    const staged = await tmp.file("0000-data.csv", "a,b\n1,2\n3\n");
    const r = await collect(readCsv(staged, { name: user }));
    expect(r.errors).toEqual([{ file: user, line: 3, reason: "expected 2 fields, found 1", raw: "3" }]);
    const range = await collect(readCsvRange(staged, { start: 4, end: 10, firstLine: 2 }, { name: user }));
    expect(range.errors).toEqual([{ file: user, line: 3, reason: "expected 2 fields, found 1", raw: "3" }]);

    const cases: [string, string, Record<string, unknown>, string][] = [
      ["dup.csv", "a,a\n1,2\n", {}, `${user}: column name "a" appears twice in the header`],
      ["badhead2.csv", 'a,b"c\n1,2\n', {}, `${user}: the header (line 1) is malformed: stray quote in unquoted field 2`],
      [
        "open2.csv",
        'a,b\n1,"never closed\n' + "x,y\n".repeat(300),
        { maxRecordBytes: 100, highWaterMark: 64 },
        `${user}: the record starting at line 2 is longer than 100 characters; is a quote left open?`,
      ],
      ["nohead2.csv", "1,2\n", { header: false }, `${user}: header: false needs a declared list of columns`],
    ];
    for (const [file, content, opts, message] of cases) {
      const path = await tmp.file(file, content);
      await expect(collect(readCsv(path, { ...opts, name: user })), file).rejects.toMatchObject({ message });
    }
    const empty = await tmp.file("empty2.csv", "");
    await expect(readCsvHeader(empty, { name: user })).rejects.toMatchObject({ message: `${user}: the file is empty, so it has no header row` });
  });

  it("parseCsvStream takes options.name over the source label", async () => {
    async function* body(): AsyncGenerator<string> {
      yield "a,b\n1\n";
    }
    const r = await collect(parseCsvStream(body(), "stream", { name: "https://example.com/export?id=7" }));
    expect(r.errors.map((e) => e.file)).toEqual(["https://example.com/export?id=7"]);
  });
});

describe("parseCsvStream", () => {
  it("parses byte chunks from any source, with characters split across chunks", async () => {
    const bytes = Buffer.from('\uFEFFcity,n\n"São\nPaulo",1\nZürich,2\n');
    async function* oneByteAtATime(): AsyncGenerator<Uint8Array> {
      for (const b of bytes) yield Uint8Array.of(b);
    }
    const r = await collect(parseCsvStream(oneByteAtATime(), "http://example/x.csv"));
    expect(r.rows).toEqual([
      { city: "São\nPaulo", n: "1" },
      { city: "Zürich", n: "2" },
    ]);
    expect(r.lines).toEqual([2, 4]);
  });
});

describe("openCsvWriter", () => {
  it("quotes only what RFC 4180 requires and round-trips through the reader", async () => {
    const path = await tmp.file("out.csv");
    const w = await openCsvWriter(path, ["id", "text", "n"]);
    const rows = [
      { id: "1", text: "plain", n: 1 },
      { id: "2", text: 'a,b "c"', n: null },
      { id: "3", text: "line\nbreak\r\nx", n: true },
      { id: "4", text: "", n: undefined },
    ];
    await w.write(rows.slice(0, 2));
    await w.write(rows.slice(2));
    const res = await w.close();
    const text = await readFile(path, "utf8");
    expect(text).toBe('id,text,n\n1,plain,1\n2,"a,b ""c""",\n3,"line\nbreak\r\nx",true\n4,,\n');
    expect(res).toEqual({ rows: 4, bytes: Buffer.byteLength(text) });
    const back = await collect(readCsv(path));
    expect(back.rows).toEqual([
      { id: "1", text: "plain", n: "1" },
      { id: "2", text: 'a,b "c"', n: "" },
      { id: "3", text: "line\nbreak\r\nx", n: "true" },
      { id: "4", text: "", n: "" },
    ]);
    expect(back.lines).toEqual([2, 3, 4, 7]);
  });

  it("takes columns from the first batch when none are given, and writes TSV", async () => {
    const path = await tmp.file("out.tsv");
    const w = await openCsvWriter(path, undefined, { delimiter: "\t" });
    await w.write([{ a: "x\ty", b: "2" }]);
    expect(w.columns).toEqual(["a", "b"]);
    await w.close();
    expect(await readFile(path, "utf8")).toBe('a\tb\n"x\ty"\t2\n');
  });
});

import { readFile } from "node:fs/promises";
import { DuckDBInstance } from "@duckdb/node-api";
import { describe, expect, it } from "vitest";
import { parseCsvStream, readCsv, readCsvHeader } from "../../src/formats/csv.js";
import { SUPPORTED_ENCODINGS, createDecoder, detectEncoding, detectFileEncoding, normalizeEncoding, type InvalidBytes } from "../../src/formats/encoding.js";
import { readJsonArray } from "../../src/formats/json-array.js";
import { parseNdjsonStream, readNdjson } from "../../src/formats/ndjson.js";
import { tradesCsv } from "../../src/samples/trades.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();
/** Files written by Python's codecs (fixtures/encodings/make.py), not by Node. */
const fixture = (name: string): string => new URL(`./fixtures/encodings/${name}`, import.meta.url).pathname;
const UTF8_HINT = "(is the file latin1 or windows-1252? set encoding)";

const WESTERN_ROWS = [
  { id: "1", city: "München", animal: "Ñandú", note: "Café au lait" },
  { id: "2", city: "Zürich", animal: "plain", note: "quoted, with ß" },
  { id: "3", city: "Oslo", animal: "ascii only", note: "no accents" },
  { id: "4", city: "São Paulo", animal: "Jaguar", note: "multi\nline é" },
];

async function* bytesOf(buf: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

describe("normalizeEncoding", () => {
  it("accepts the common spellings and names what it accepts otherwise", () => {
    expect(normalizeEncoding("UTF8")).toBe("utf-8");
    expect(normalizeEncoding("utf-8-sig")).toBe("utf-8");
    expect(normalizeEncoding("UTF-8 with BOM")).toBe("utf-8");
    expect(normalizeEncoding("latin-1")).toBe("iso-8859-1");
    expect(normalizeEncoding("Latin1")).toBe("iso-8859-1");
    expect(normalizeEncoding("ISO_8859-1")).toBe("iso-8859-1");
    expect(normalizeEncoding("cp1252")).toBe("windows-1252");
    expect(normalizeEncoding("Windows-1250")).toBe("windows-1250");
    expect(normalizeEncoding("UTF-16")).toBe("utf-16");
    expect(normalizeEncoding("UTF-16LE")).toBe("utf-16le");
    expect(normalizeEncoding("Shift-JIS")).toBe("shift_jis");
    expect(normalizeEncoding("sjis")).toBe("shift_jis");
    expect(normalizeEncoding("GB2312")).toBe("gbk");
    expect(normalizeEncoding("koi8r")).toBe("koi8-r");
    for (const name of SUPPORTED_ENCODINGS) expect(normalizeEncoding(name)).toBe(name);
    expect(() => normalizeEncoding("klingon")).toThrow(
      expect.objectContaining({ code: "BAD_CONFIG", message: expect.stringMatching(/^unknown text encoding "klingon"; accepted: utf-8, utf-16le, .*big5/) }),
    );
    expect(() => normalizeEncoding("__proto__")).toThrow(/unknown text encoding/);
  });

  it("every supported encoding decodes ASCII as ASCII", () => {
    const ascii = Buffer.from("id,name\r\n1,plain\n", "latin1");
    for (const name of SUPPORTED_ENCODINGS) {
      if (name.startsWith("utf-16")) continue;
      const d = createDecoder(name);
      const out = d.push(ascii);
      expect([out.text, out.invalid], name).toEqual(["id,name\r\n1,plain\n", undefined]);
    }
  });
});

describe("single-byte tables", () => {
  it("are exact where ICU or WHATWG fold one encoding into another", () => {
    const text = (enc: string, ...bytes: number[]) => createDecoder(enc).push(Uint8Array.from(bytes));
    // ISO-8859-9 keeps C1 controls at 0x80–0x9F; windows-1254 (what WHATWG reads it as) has €.
    expect(text("iso-8859-9", 0xd0, 0x80, 0xfd).text).toBe("\u011E\u0080\u0131");
    expect(text("windows-1254", 0xd0, 0x80).text).toBe("\u011E€");
    // All 32 windows-1252 positions 0x80–0x9F (Node 20's one-shot TextDecoder gets them wrong).
    expect(text("windows-1252", ...Array.from({ length: 32 }, (_, i) => 0x80 + i)).text).toBe("€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008DŽ\u008F\u0090‘’“”•–—˜™š›œ\u009DžŸ");
    // windows-874 0xDB is unassigned: invalid (ICU would give a private-use character).
    const thai = text("windows-874", 0x41, 0xdb, 0xa1);
    expect(thai.text).toBe("A\uFFFD\u0E01");
    expect(thai.invalid).toEqual([
      { at: 1, offset: 1, reason: "byte 0xDB at offset 1 is not valid windows-874 (is the file in another encoding? set encoding)" },
    ]);
    // ASCII is ASCII in ibm866 (ICU rotates 0x1A, 0x1C and 0x7F).
    expect(text("cp866", 0x1a, 0x1c, 0x7f, 0x80).text).toBe("\u001A\u001C\u007FА");
    expect(text("us-ascii", 0x41, 0xe9).invalid).toHaveLength(1);
  });
});

describe("reading Latin-1, windows-1252 and UTF-8", () => {
  it("reads a Latin-1 CSV exactly with encoding latin1", async () => {
    for (const highWaterMark of [undefined, 1, 7]) {
      const r = await collect(readCsv(fixture("latin1.csv"), { encoding: "latin1", highWaterMark }));
      expect(r.errors).toEqual([]);
      expect(r.rows).toEqual(WESTERN_ROWS);
      expect(r.lines).toEqual([2, 3, 4, 5]);
    }
  });

  it("reading the Latin-1 file as UTF-8 quarantines exactly the rows with non-ASCII bytes, naming line and byte offset", async () => {
    const path = fixture("latin1.csv");
    const bytes = await readFile(path);
    for (const highWaterMark of [undefined, 1, 7]) {
      const r = await collect(readCsv(path, { highWaterMark }));
      expect(r.rows).toEqual([WESTERN_ROWS[2]]);
      expect(r.lines).toEqual([4]);
      expect(r.errors).toEqual([
        {
          file: path,
          line: 2,
          reason: `byte 0xFC at offset ${bytes.indexOf(0xfc)} is not valid UTF-8 ${UTF8_HINT}; and 3 more invalid byte sequences in this record`,
          raw: "1,M\uFFFDnchen,\uFFFDand\uFFFD,Caf\uFFFD au lait",
        },
        {
          file: path,
          line: 3,
          reason: `byte 0xFC at offset ${bytes.indexOf(0xfc, 30)} is not valid UTF-8 ${UTF8_HINT}; and 1 more invalid byte sequence in this record`,
          raw: '2,Z\uFFFDrich,plain,"quoted, with \uFFFD"',
        },
        {
          file: path,
          line: 5,
          reason: `byte 0xE3 at offset ${bytes.indexOf(0xe3)} is not valid UTF-8 ${UTF8_HINT}; and 1 more invalid byte sequence in this record`,
          raw: '4,S\uFFFDo Paulo,Jaguar,"multi\nline \uFFFD"',
        },
      ]);
      expect(bytes.indexOf(0xfc)).toBe(23); // "id,city,animal,note\n1,M" is 23 bytes
    }
  });

  it("reads windows-1252 (€ at 0x80, curly quotes, en dash) exactly; ISO-8859-1 keeps those bytes as C1 code points", async () => {
    const r = await collect(readCsv(fixture("cp1252.csv"), { encoding: "cp1252" }));
    expect(r.errors).toEqual([]);
    expect(r.rows).toEqual([
      { id: "1", item: "Coffee", price: "€3.50", quote: "“Best in town”" },
      { id: "2", item: "Tea", price: "€2.10", quote: "‘fine’ – ok" },
      { id: "3", item: "Sandwich", price: "€6.00", quote: "plain" },
    ]);
    // ISO-8859-1 is exact: every byte is its code point (WHATWG's "latin1" would be windows-1252).
    const latin1 = await collect(readCsv(fixture("cp1252.csv"), { encoding: "iso-8859-1" }));
    expect(latin1.rows[0]!.price).toBe("\u00803.50");
    expect(latin1.rows[0]!.quote).toBe("\u0093Best in town\u0094");
  });

  it("the same Latin-1 file as DuckDB reads it (an independent reader)", async () => {
    const db = await DuckDBInstance.create(":memory:");
    const conn = await db.connect();
    try {
      const res = await conn.runAndReadAll(`SELECT * FROM read_csv('${fixture("latin1.csv")}', encoding = 'latin-1', all_varchar = true)`);
      const ours = await collect(readCsv(fixture("latin1.csv"), { encoding: "latin1" }));
      expect(ours.rows).toEqual(res.getRowObjects());
    } finally {
      conn.closeSync();
    }
  });

  it("drops a UTF-8 BOM (with or without utf-8-sig) and keeps a legitimate U+FFFD as data", async () => {
    for (const encoding of [undefined, "utf-8-sig", "UTF-8 with BOM"]) {
      const r = await collect(readCsv(fixture("utf8-bom.csv"), { encoding }));
      expect(r.columns).toEqual(["id", "name"]);
      expect(r.rows).toEqual([
        { id: "1", name: "Ünïcödé" },
        { id: "2", name: "plain" },
      ]);
    }
    // EF BF BD is the UTF-8 encoding of U+FFFD itself: valid, stored as is.
    const path = await tmp.file("fffd.csv", Buffer.from("a,b\n1,x\uFFFDy\n2,\uFFFD\n", "utf8"));
    for (const highWaterMark of [undefined, 1, 2]) {
      const r = await collect(readCsv(path, { highWaterMark }));
      expect(r.errors).toEqual([]);
      expect(r.rows).toEqual([
        { a: "1", b: "x\uFFFDy" },
        { a: "2", b: "\uFFFD" },
      ]);
    }
  });

  it("finds a truncated sequence inside a record and one split across reads, whatever the read size", async () => {
    // Line 3 has "é" cut to its first byte (C3) before a comma; line 5 has a 4-byte emoji cut
    // to 3 bytes at the end of the file; line 4's "ü" and "😀" are whole and must survive every
    // read boundary (a 7-byte read cuts them).
    const good = Buffer.from("id,text,n\n1,Zürich 😀 ok,1\n", "utf8");
    const bad1 = Buffer.concat([Buffer.from("2,caf", "utf8"), Buffer.of(0xc3), Buffer.from(",2\n", "utf8")]);
    const good2 = Buffer.from("3,Straße über 😀😀,3\n", "utf8");
    const bad2 = Buffer.concat([Buffer.from("4,end,", "utf8"), Buffer.from("😀", "utf8").subarray(0, 3)]);
    const bytes = Buffer.concat([good, bad1, good2, bad2]);
    const path = await tmp.file("truncated.csv", bytes);
    const off1 = good.length + 5;
    const off2 = good.length + bad1.length + good2.length + 6;
    const expected = {
      rows: [
        { id: "1", text: "Zürich 😀 ok", n: "1" },
        { id: "3", text: "Straße über 😀😀", n: "3" },
      ],
      errors: [
        { file: path, line: 3, reason: `byte 0xC3 at offset ${off1} is not valid UTF-8 ${UTF8_HINT}`, raw: "2,caf\uFFFD,2" },
        {
          file: path,
          line: 5,
          reason: `bytes 0xF0 0x9F 0x98 at offset ${off2} are not valid UTF-8 (the input ends in the middle of a character)`,
          raw: "4,end,\uFFFD",
        },
      ],
    };
    for (let highWaterMark = 1; highWaterMark <= 13; highWaterMark++) {
      const r = await collect(readCsv(path, { highWaterMark, batchSize: 2 }));
      expect({ rows: r.rows, errors: r.errors }, `highWaterMark ${highWaterMark}`).toEqual(expected);
      expect(r.lines).toEqual([2, 4]);
    }
    // The same from a byte stream: offsets count from the stream's first byte.
    for (const size of [1, 3, 7, 1000]) {
      const r = await collect(parseCsvStream(bytesOf(bytes, size), "https://example.com/t.csv"));
      expect(r.rows).toEqual(expected.rows);
      expect(r.errors.map((e) => [e.file, e.line, e.reason])).toEqual(expected.errors.map((e) => ["https://example.com/t.csv", e.line, e.reason]));
    }
  });

  it("reports invalid sequences as the WHATWG decoder replaces them (maximal subparts)", () => {
    // E2 82 41: a 3-byte sequence cut by "A"; ED A0 80: a surrogate (three separate errors);
    // C0 AF: an overlong "/"; F4 90: above U+10FFFF.
    const d = createDecoder("utf-8");
    const out = d.push(Uint8Array.of(0x78, 0xe2, 0x82, 0x41, 0xed, 0xa0, 0x80, 0xc0, 0xaf, 0xf4, 0x90, 0x79));
    expect(out.text).toBe(new TextDecoder().decode(Uint8Array.of(0x78, 0xe2, 0x82, 0x41, 0xed, 0xa0, 0x80, 0xc0, 0xaf, 0xf4, 0x90, 0x79)));
    expect(out.invalid!.map((m: InvalidBytes) => [m.at, m.offset])).toEqual([
      [1, 1],
      [3, 4],
      [4, 5],
      [5, 6],
      [6, 7],
      [7, 8],
      [8, 9],
      [9, 10],
    ]);
    expect(out.invalid![0]!.reason).toBe(`bytes 0xE2 0x82 at offset 1 are not valid UTF-8 ${UTF8_HINT}`);
  });

  it("fails the file when the CSV header has an invalid byte, naming file, offset and encoding", async () => {
    const path = await tmp.file("badhead.csv", Buffer.concat([Buffer.from("id,Stra"), Buffer.of(0xdf), Buffer.from("e\n1,x\n")]));
    await expect(collect(readCsv(path, { name: "s3://bucket/in/streets.csv" }))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: `s3://bucket/in/streets.csv: the header (line 1) cannot be read: byte 0xDF at offset 7 is not valid UTF-8 ${UTF8_HINT}`,
    });
    await expect(readCsvHeader(path)).rejects.toMatchObject({ code: "BAD_INPUT", message: expect.stringContaining(`${path}: the header (line 1)`) });
    expect(await readCsvHeader(path, { encoding: "latin1" })).toEqual(["id", "Straße"]);
  });

  it("refuses an unknown encoding name with a sentence naming the input", async () => {
    await expect(collect(readCsv(fixture("latin1.csv"), { encoding: "latin-2000", name: "orders.csv" }))).rejects.toMatchObject({
      code: "BAD_CONFIG",
      message: expect.stringMatching(/^orders\.csv: unknown text encoding "latin-2000"; accepted: utf-8, /),
    });
    await expect(collect(readNdjson(fixture("latin1.ndjson"), { encoding: "ebcdic" }))).rejects.toMatchObject({ code: "BAD_CONFIG" });
    await expect(collect(readJsonArray(fixture("latin1.json"), { encoding: "ebcdic" }))).rejects.toMatchObject({ code: "BAD_CONFIG" });
  });
});

describe("UTF-16", () => {
  const EXCEL_ROWS = [
    { Name: "José", City: "São Paulo", Amount: "1,50", Note: "ok" },
    { Name: "Ærøskøbing", City: "København", Amount: "-3", Note: "tab\there" },
    { Name: "李", City: "北京", Amount: "7", Note: "😀 emoji" },
  ];

  it("reads Excel's Unicode text (tab-separated UTF-16 LE with BOM, CRLF) with every read size", async () => {
    for (const encoding of ["utf-16", "utf-16le", "UTF16LE"]) {
      for (const highWaterMark of [undefined, 1, 2, 3, 7]) {
        const r = await collect(readCsv(fixture("excel-unicode.txt"), { encoding, delimiter: "\t", highWaterMark }));
        expect(r.errors).toEqual([]);
        expect(r.columns).toEqual(["Name", "City", "Amount", "Note"]);
        expect(r.rows).toEqual(EXCEL_ROWS);
      }
    }
  });

  it("reads UTF-16 BE with BOM", async () => {
    for (const encoding of ["utf-16", "utf-16be"]) {
      for (const highWaterMark of [undefined, 1, 5]) {
        const r = await collect(readCsv(fixture("utf16be.csv"), { encoding, highWaterMark }));
        expect(r.errors).toEqual([]);
        expect(r.rows).toEqual(WESTERN_ROWS);
        expect(r.lines).toEqual([2, 3, 4, 5]);
      }
    }
  });

  it("refuses a UTF-16 file read as UTF-8, and utf-16 without a BOM", async () => {
    await expect(collect(readCsv(fixture("excel-unicode.txt"), { delimiter: "\t", name: "Book1.txt" }))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: "Book1.txt: the file starts with a UTF-16LE byte order mark but is read as utf-8; set encoding: utf-16",
    });
    const noBom = await tmp.file("nobom16.csv", Buffer.from("a,b\n1,2\n", "utf16le"));
    await expect(collect(readCsv(noBom, { encoding: "utf-16" }))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: `${noBom}: encoding utf-16 needs a byte order mark (FF FE or FE FF) at the start of the file, and there is none; set encoding: utf-16le or utf-16be`,
    });
    expect((await collect(readCsv(noBom, { encoding: "utf-16le" }))).rows).toEqual([{ a: "1", b: "2" }]);
    await expect(collect(readCsv(fixture("utf16be.csv"), { encoding: "utf-16le" }))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: `${fixture("utf16be.csv")}: the file starts with a UTF-16BE byte order mark but is read as utf-16le; set encoding: utf-16`,
    });
    await expect(collect(readCsv(fixture("utf8-bom.csv"), { encoding: "utf-16be" }))).rejects.toMatchObject({
      message: expect.stringContaining("starts with a UTF-8 byte order mark but is read as utf-16be; set encoding: utf-8"),
    });
  });

  it("quarantines a record with an unpaired surrogate and a file cut in the middle of a code unit", async () => {
    const head = Buffer.from("\uFEFFa,b\n1,ok 😀\n2,", "utf16le");
    const lone = Buffer.of(0x3d, 0xd8); // a high surrogate (LE) followed by "x", not a low one
    const rest = Buffer.from("x\n3,fine\n4,cut", "utf16le");
    const bytes = Buffer.concat([head, lone, rest, Buffer.of(0x41)]);
    const path = await tmp.file("lone16.csv", bytes);
    for (const highWaterMark of [undefined, 1, 3, 4]) {
      const r = await collect(readCsv(path, { encoding: "utf-16le", highWaterMark }));
      expect(r.rows).toEqual([
        { a: "1", b: "ok 😀" },
        { a: "3", b: "fine" },
      ]);
      expect(r.errors.map((e) => [e.line, e.reason, e.raw])).toEqual([
        [3, `bytes 0x3D 0xD8 at offset ${head.length} are not valid UTF-16LE (an unpaired surrogate)`, "2,\uFFFDx"],
        [5, `byte 0x41 at offset ${bytes.length - 1} is not valid UTF-16LE (the input ends in the middle of a code unit)`, "4,cut\uFFFD"],
      ]);
    }
  });
});

describe("Shift_JIS and GB18030", () => {
  it("reads Shift_JIS exactly, including 表 and ソ whose second byte is a backslash", async () => {
    for (const highWaterMark of [undefined, 1, 2, 3, 7]) {
      const r = await collect(readCsv(fixture("sjis.csv"), { encoding: "shift_jis", highWaterMark }));
      expect(r.errors).toEqual([]);
      expect(r.columns).toEqual(["id", "名前", "都市", "メモ"]);
      expect(r.rows).toEqual([
        { id: "1", 名前: "山田太郎", 都市: "東京", メモ: "表計算ソフト" },
        { id: "2", 名前: "佐藤花子", 都市: "大阪", メモ: "ｶﾀｶﾅ" },
        { id: "3", 名前: "鈴木一郎", 都市: "京都", メモ: "引用,カンマ" },
      ]);
    }
  });

  it("quarantines a Shift_JIS record with an invalid byte at its exact offset; the ASCII after a bad lead byte is kept", async () => {
    const good = await readFile(fixture("sjis.csv"));
    // 0xA0 is not Shift_JIS; 0x81 followed by "," is a lead byte without its trail byte.
    const bad = Buffer.concat([Buffer.from("4,"), Buffer.of(0xa0), Buffer.from("x,"), Buffer.of(0x81), Buffer.from(",z\n")]);
    const path = await tmp.file("sjis-bad.csv", Buffer.concat([good, bad]));
    for (const highWaterMark of [undefined, 1, 5]) {
      const r = await collect(readCsv(path, { encoding: "sjis", highWaterMark }));
      expect(r.rows).toHaveLength(3);
      expect(r.errors).toEqual([
        {
          file: path,
          line: 5,
          reason: `byte 0xA0 at offset ${good.length + 2} is not valid shift_jis (is the file in another encoding? set encoding); and 1 more invalid byte sequence in this record`,
          raw: "4,\uFFFDx,\uFFFD,z",
        },
      ]);
    }
  });

  it("reads GB18030 with a four-byte character, and its encoding of U+FFFD (84 31 A4 37) as data", async () => {
    for (const highWaterMark of [undefined, 1, 3]) {
      const r = await collect(readCsv(fixture("gb18030.csv"), { encoding: "GB18030", highWaterMark }));
      expect(r.errors).toEqual([]);
      expect(r.rows).toEqual([
        { id: "1", 名称: "张伟", 城市: "北京" },
        { id: "2", 名称: "李娜", 城市: "上海" },
        { id: "3", 名称: "𠀀字", 城市: "€" },
      ]);
    }
    const withFffd = Buffer.concat([Buffer.from("a,b\n1,"), Buffer.of(0x84, 0x31, 0xa4, 0x37), Buffer.from("\n2,"), Buffer.of(0xff), Buffer.from("\n")]);
    const path = await tmp.file("gb-fffd.csv", withFffd);
    for (const highWaterMark of [undefined, 1, 2, 3]) {
      const r = await collect(readCsv(path, { encoding: "gb18030", highWaterMark }));
      expect(r.rows).toEqual([{ a: "1", b: "\uFFFD" }]);
      expect(r.errors.map((e) => [e.line, e.reason])).toEqual([
        [3, `byte 0xFF at offset 13 is not valid gb18030 (is the file in another encoding? set encoding)`],
      ]);
    }
  });
});

describe("NDJSON and JSON arrays", () => {
  it("reads NDJSON in Latin-1 and UTF-16, and names the bad lines when Latin-1 is read as UTF-8", async () => {
    const latin1 = fixture("latin1.ndjson");
    expect((await collect(readNdjson(latin1, { encoding: "latin1", highWaterMark: 5 }))).rows).toEqual([
      { id: 1, city: "München" },
      { id: 2, city: "Café" },
      { id: 3, city: "Oslo" },
    ]);
    const bytes = await readFile(latin1);
    const wrong = await collect(readNdjson(latin1, { name: "https://api.example.com/cities", highWaterMark: 3 }));
    expect(wrong.rows).toEqual([{ id: 3, city: "Oslo" }]);
    expect(wrong.lines).toEqual([3]);
    expect(wrong.errors).toEqual([
      {
        file: "https://api.example.com/cities",
        line: 1,
        reason: `byte 0xFC at offset ${bytes.indexOf(0xfc)} is not valid UTF-8 ${UTF8_HINT}`,
        raw: '{"id":1,"city":"M\uFFFDnchen"}',
      },
      {
        file: "https://api.example.com/cities",
        line: 2,
        reason: `byte 0xE9 at offset ${bytes.indexOf(0xe9)} is not valid UTF-8 ${UTF8_HINT}`,
        raw: '{"id":2,"city":"Caf\uFFFD"}',
      },
    ]);
    for (const highWaterMark of [undefined, 1, 3]) {
      const r = await collect(readNdjson(fixture("utf16le.ndjson"), { encoding: "utf-16", highWaterMark }));
      expect(r.errors).toEqual([]);
      expect(r.rows).toEqual([
        { id: 1, city: "Zürich" },
        { id: 2, note: "😀" },
      ]);
    }
  });

  it("parses an NDJSON byte stream in a declared encoding, one byte at a time", async () => {
    const bytes = await readFile(fixture("latin1.ndjson"));
    const r = await collect(parseNdjsonStream(bytesOf(bytes, 1), "nats:cities", { encoding: "iso-8859-1" }));
    expect(r.rows.map((x) => x.city)).toEqual(["München", "Café", "Oslo"]);
    const wrong = await collect(parseNdjsonStream(bytesOf(bytes, 1), "nats:cities"));
    expect(wrong.errors.map((e) => [e.file, e.line])).toEqual([
      ["nats:cities", 1],
      ["nats:cities", 2],
    ]);
  });

  it("reads JSON arrays in Latin-1 and UTF-16 BE, and quarantines the element with the bad byte", async () => {
    for (const highWaterMark of [undefined, 1, 4]) {
      expect((await collect(readJsonArray(fixture("latin1.json"), { encoding: "latin1", highWaterMark }))).rows).toEqual([
        { id: 1, city: "München" },
        { id: 2, city: "Oslo" },
      ]);
      const r = await collect(readJsonArray(fixture("utf16be.json"), { encoding: "utf-16", highWaterMark }));
      expect(r.errors).toEqual([]);
      expect(r.rows).toEqual([
        { id: 1, city: "Zürich" },
        { id: 2, note: "😀 北京" },
      ]);
      expect(r.lines).toEqual([1, 2]);
    }
    const bytes = await readFile(fixture("latin1.json"));
    const wrong = await collect(readJsonArray(fixture("latin1.json"), { name: "cities.json", highWaterMark: 2 }));
    expect(wrong.rows).toEqual([{ id: 2, city: "Oslo" }]);
    expect(wrong.errors).toEqual([
      {
        file: "cities.json",
        line: 2,
        reason: `byte 0xFC at offset ${bytes.indexOf(0xfc)} is not valid UTF-8 ${UTF8_HINT}`,
        raw: '{"id":1,"city":"M\uFFFDnchen"}',
      },
    ]);
    // A file that is not text in the encoding at all: fails, with the reason.
    const path = await tmp.file("notjson.json", Buffer.of(0xff, 0x5b, 0x5d));
    await expect(collect(readJsonArray(path))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: `${path}: the file cannot be read as a JSON array: byte 0xFF at offset 0 is not valid UTF-8 ${UTF8_HINT}`,
    });
  });
});

describe("real-world shaped data in other encodings", () => {
  it("a trades sample re-encoded as Latin-1 and as UTF-16 LE reads back to the same rows and errors", async () => {
    const text = [...tradesCsv({ rows: 3000, seed: 11 })].join("");
    const utf8 = await tmp.file("trades-utf8.csv", Buffer.from(text, "utf8"));
    const latin1 = await tmp.file("trades-latin1.csv", Buffer.from(text, "latin1"));
    const utf16 = await tmp.file("trades-utf16.csv", Buffer.concat([Buffer.of(0xff, 0xfe), Buffer.from(text, "utf16le")]));
    const base = await collect(readCsv(utf8));
    expect(base.rows.length).toBeGreaterThan(2900);
    expect(base.rows.some((r) => String(r.notes).includes("Zürich"))).toBe(true);
    const strip = (errs: { line: number; reason: string; raw: string }[]) => errs.map((e) => [e.line, e.reason, e.raw]);
    for (const [path, encoding] of [
      [latin1, "latin1"],
      [utf16, "utf-16"],
    ] as const) {
      const r = await collect(readCsv(path, { encoding, highWaterMark: 4099 }));
      expect(r.rows).toEqual(base.rows);
      expect(r.lines).toEqual(base.lines);
      expect(strip(r.errors)).toEqual(strip(base.errors));
    }
    // Read as UTF-8, the Latin-1 copy loses nothing silently: the rows with "Zürich" are
    // quarantined, every other row is stored exactly.
    const wrong = await collect(readCsv(latin1));
    const zurich = new Set(base.lines.filter((_, i) => String(base.rows[i]!.notes).includes("Zürich")));
    expect(zurich.size).toBeGreaterThan(50);
    expect(wrong.rows).toEqual(base.rows.filter((_, i) => !zurich.has(base.lines[i]!)));
    const undecodable = wrong.errors.filter((e) => e.reason.includes("not valid UTF-8"));
    expect(new Set(undecodable.map((e) => e.line))).toEqual(zurich);
    expect(wrong.rows.length + wrong.errors.length).toBe(base.rows.length + base.errors.length);
  });
});

describe("detectEncoding", () => {
  it("names the encoding of each fixture", async () => {
    const cases: [string, string, "bom" | "valid" | "guess", boolean][] = [
      ["latin1.csv", "iso-8859-1", "guess", false],
      ["latin1.ndjson", "iso-8859-1", "guess", false],
      ["latin1.json", "iso-8859-1", "guess", false],
      ["cp1252.csv", "windows-1252", "guess", false],
      ["excel-unicode.txt", "utf-16le", "bom", true],
      ["utf16le.ndjson", "utf-16le", "bom", true],
      ["utf16be.csv", "utf-16be", "bom", true],
      ["utf16be.json", "utf-16be", "bom", true],
      ["utf8-bom.csv", "utf-8", "bom", true],
      ["sjis.csv", "shift_jis", "guess", false],
      ["gb18030.csv", "gb18030", "guess", false],
    ];
    for (const [name, encoding, confidence, bom] of cases) {
      expect(await detectFileEncoding(fixture(name)), name).toEqual({ encoding, confidence, bom });
    }
    const tricky = new URL("./fixtures/tricky.csv", import.meta.url).pathname;
    expect(await detectFileEncoding(tricky)).toEqual({ encoding: "utf-8", confidence: "valid", bom: false });
  });

  it("pure ASCII is UTF-8; UTF-16 without BOM shows in its zero bytes; a cut character at the end is fine", () => {
    expect(detectEncoding(Buffer.from("id,name\n1,plain\n"))).toEqual({ encoding: "utf-8", confidence: "valid", bom: false });
    expect(detectEncoding(new Uint8Array(0))).toEqual({ encoding: "utf-8", confidence: "valid", bom: false });
    expect(detectEncoding(Buffer.from("id,name\n1,Zürich\n", "utf16le"))).toEqual({ encoding: "utf-16le", confidence: "guess", bom: false });
    const be = Buffer.from("id,name\n1,Zürich\n", "utf16le").swap16();
    expect(detectEncoding(be)).toEqual({ encoding: "utf-16be", confidence: "guess", bom: false });
    // A sample cut inside 京 (E4 BA AC): one or two of its bytes at the end.
    const whole = Buffer.from("id,name\n1,東京", "utf8");
    for (const cut of [whole.subarray(0, -1), whole.subarray(0, -2)]) {
      expect(detectEncoding(cut)).toEqual({ encoding: "utf-8", confidence: "valid", bom: false });
    }
  });

  it("does not crash on random binary bytes and names an encoding the readers accept", () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed >>> 24;
    };
    for (const size of [1, 2, 3, 17, 4096, 300_000]) {
      const bytes = Uint8Array.from({ length: size }, rand);
      const d = detectEncoding(bytes);
      expect(SUPPORTED_ENCODINGS).toContain(d.encoding);
      expect(d.confidence).not.toBe("bom");
    }
  });
});

/**
 * The stage format between batch steps: every typed value round-trips exactly, the content hash
 * is the one destinations have always used, lines can be excluded and read as bytes.
 */
import { afterAll, describe, expect, it } from "vitest";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  canonicalText,
  compileStageLineWriter,
  contentHash,
  decodeStageLine,
  openStageWriter,
  readStageChunks,
  readStageRows,
  rehashStageChunk,
  rowHashKind,
  textHash,
} from "../../src/formats/stage.js";
import { createHash } from "node:crypto";
import type { Column, TypedRow } from "../../src/formats/typed.js";
import { tempDir } from "../helpers.js";

const dir = tempDir("sluice-stage-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const COLUMNS: Column[] = [
  { name: "id", type: "string" },
  { name: "flag", type: "boolean" },
  { name: "price", type: "decimal", scale: 4 },
  { name: "at", type: "timestamp" },
  { name: "note", type: "string" },
];

const ROWS: TypedRow[] = [
  { id: "a", flag: true, price: "1.0000", at: "2026-11-02T09:30:00.125Z", note: "tab\there\nnew line\r\nand a \\ backslash" },
  { id: "b", flag: false, price: null, at: null, note: "\\N" },
  { id: "c", flag: null, price: "-0.5000", at: "2026-11-02T09:30:00.125001Z", note: "" },
  { id: "\\t literal", flag: true, price: "12345678901234567890.1234", at: "0001-01-01T00:00:00.000Z", note: "Zürich ✓ 日本" },
];

describe("the stage format", () => {
  it("round-trips every value exactly: escapes, null versus the text \\N, booleans, unicode, positions, hashes", async () => {
    const path = join(dir, "a.stage");
    const w = await openStageWriter(path, COLUMNS);
    await w.write(ROWS.slice(0, 2), [2, 7]);
    await w.write(ROWS.slice(2), [9, 10]);
    expect((await w.close()).rows).toBe(4);
    const text = readFileSync(path, "utf8");
    expect(text.split("\n")[0]).toBe("_line\tid\tflag\tprice\tat\tnote\t_sluice_hash");
    // A raw newline only ever ends a row.
    expect(text.split("\n")).toHaveLength(6);
    const back = [];
    for await (const batch of readStageRows(path, COLUMNS, { batchSize: 3 })) back.push(...batch);
    expect(back.map((r) => r.row)).toEqual(ROWS);
    expect(back.map((r) => r.line)).toEqual([2, 7, 9, 10]);
    const names = COLUMNS.map((c) => c.name);
    expect(back.map((r) => r.hash)).toEqual(ROWS.map((r) => contentHash(names.map((n) => r[n] ?? null))));
  });

  it("hashes the canonical text tables were always keyed on (length-prefixed strings, T/F, ~ for null)", () => {
    expect(canonicalText(["ab", true, null, "", false])).toBe("2:abT~0:F");
    const line = compileStageLineWriter([
      { name: "s", type: "string" },
      { name: "b", type: "boolean" },
    ])({ s: "ab", b: true }, 3);
    expect(line).toBe(`3\tab\tt\t${contentHash(["ab", true])}\n`);
    // A column called like an Object.prototype member reads only own properties.
    const proto = compileStageLineWriter([{ name: "constructor", type: "string" }])({}, 1);
    expect(proto.split("\t")[1]).toBe("\\N");
  });

  it("keeps the keyless hash earlier versions wrote, byte for byte", () => {
    // SHA-1 of "2:abT~0:F" in base64, cut to 27 characters: a keyless table is keyed on it.
    const sha1 = createHash("sha1").update("2:abT~0:F").digest("base64").slice(0, 27);
    expect(contentHash(["ab", true, null, "", false])).toBe(sha1);
    expect(rowHashKind(undefined)).toBe("canonical");
    expect(rowHashKind([])).toBe("canonical");
  });

  it("hashes a keyed row's stage text, the same whether staged or computed by a destination", async () => {
    expect(rowHashKind(["id"])).toBe("text");
    const path = join(dir, "keyed.stage");
    const w = await openStageWriter(path, COLUMNS, "text");
    await w.write(ROWS, [1, 2, 3, 4]);
    await w.close();
    const lines = readFileSync(path, "utf8").split("\n").slice(1, -1);
    const names = COLUMNS.map((c) => c.name);
    lines.forEach((line, i) => {
      const values = line.slice(line.indexOf("\t") + 1, line.lastIndexOf("\t"));
      const hash = line.slice(line.lastIndexOf("\t") + 1);
      // The SHA-1 of exactly the values as the line holds them (escaped, \\N for null, t/f).
      expect(hash).toBe(createHash("sha1").update(values).digest("base64").slice(0, 27));
      expect(hash).toBe(
        textHash(
          names.map((n) => ROWS[i]![n] ?? null),
          COLUMNS,
        ),
      );
      expect(hash).not.toBe(contentHash(names.map((n) => ROWS[i]![n] ?? null)));
    });
    // The values still round-trip, and re-hashing gives the keyless hash without touching them.
    const back = [];
    for await (const batch of readStageRows(path, COLUMNS)) back.push(...batch);
    expect(back.map((r) => r.row)).toEqual(ROWS);
    const chunks = [];
    for await (const c of readStageChunks(path, COLUMNS)) chunks.push(rehashStageChunk(c, COLUMNS));
    const rehashed = Buffer.concat(chunks.map((c) => c.data))
      .toString("utf8")
      .split("\n")
      .slice(0, -1);
    expect(rehashed).toHaveLength(4);
    rehashed.forEach((line, i) => {
      expect(line.slice(0, line.lastIndexOf("\t"))).toBe(lines[i]!.slice(0, lines[i]!.lastIndexOf("\t")));
      expect(line.slice(line.lastIndexOf("\t") + 1)).toBe(contentHash(names.map((n) => ROWS[i]![n] ?? null)));
    });
  });

  it("writes a boolean column's non-boolean text as null whether or not another value needs escaping", () => {
    const cols: Column[] = [
      { name: "b", type: "boolean" },
      { name: "s", type: "string" },
    ];
    const write = compileStageLineWriter(cols, "text");
    const plain = write({ b: "maybe", s: "x" }, 1);
    const escaped = write({ b: "maybe", s: "x\ty" }, 2);
    expect(plain.split("\t").slice(1, 3)).toEqual(["\\N", "x"]);
    expect(escaped.split("\t").slice(1, 3)).toEqual(["\\N", "x\\ty"]);
    // And the hash a destination computes for the same values is the staged one.
    expect(escaped.trimEnd().split("\t").at(-1)).toBe(textHash(["maybe", "x\ty"], cols));
  });

  it("decodes only the columns asked for, and keeps the line to decode the rest later", async () => {
    const path = join(dir, "b.stage");
    const w = await openStageWriter(path, COLUMNS);
    await w.write(ROWS, [1, 2, 3, 4]);
    await w.close();
    const got = [];
    for await (const batch of readStageRows(path, COLUMNS, { only: ["price"], keepText: true })) got.push(...batch);
    expect(got.map((r) => r.row)).toEqual(ROWS.map((r) => ({ price: r.price })));
    expect(decodeStageLine(got[0]!.text!, COLUMNS)).toEqual(ROWS[0]);
  });

  it("reads lines as bytes in bounded chunks, leaving out excluded positions", async () => {
    const path = join(dir, "big.stage");
    const w = await openStageWriter(path, [
      { name: "id", type: "string" },
      { name: "note", type: "string" },
    ]);
    const n = 60_000;
    const rows = Array.from({ length: n }, (_, i) => ({ id: `id-${i}`, note: i % 7 === 0 ? "multi\nline" : "x".repeat(i % 50) }));
    await w.write(
      rows,
      rows.map((_, i) => i + 2),
    );
    await w.close();
    const exclude = new Set([2, 100, 60_001]);
    let count = 0;
    let chunks = 0;
    for await (const c of readStageChunks(
      path,
      [
        { name: "id", type: "string" },
        { name: "note", type: "string" },
      ],
      exclude,
    )) {
      count += c.rows;
      chunks++;
      expect(c.data[c.data.length - 1]).toBe(10);
      for (const l of c.data.toString("utf8").split("\n").slice(0, -1)) expect(exclude.has(Number(l.split("\t")[0]))).toBe(false);
    }
    expect(count).toBe(n - 3);
    expect(chunks).toBeGreaterThan(1);
  });

  it("refuses a file whose header does not match the columns", async () => {
    const path = join(dir, "c.stage");
    const w = await openStageWriter(path, COLUMNS);
    await w.close();
    await expect(async () => {
      for await (const _ of readStageChunks(path, COLUMNS.slice(1))) void _;
    }).rejects.toThrow(/is damaged: its header is/);
  });
});

import { stat } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { readCsv, readCsvRange } from "../../src/formats/csv.js";
import { splitCsv } from "../../src/formats/csv-ranges.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();

/** A file whose quoted fields hold newlines, delimiters, doubled quotes and non-ASCII text. */
async function trickyFile(name: string, rows: number, opts: { bom?: boolean; crlf?: boolean } = {}): Promise<string> {
  const eol = opts.crlf ? "\r\n" : "\n";
  const out: string[] = ['id,"multi\nline header",amount'];
  for (let i = 0; i < rows; i++) {
    if (i % 9 === 0) out.push(`${i},"first\n${i},not,a record\n""quoted"" ✓",${i}.5`);
    else if (i % 17 === 0) out.push(`${i},bad"quote,${i}`); // stray quote: malformed, must not flip state
    else if (i % 23 === 0) out.push(`${i},"x"y,${i}`); // junk after closing quote: malformed
    else if (i % 29 === 0) out.push(`${i},short`); // wrong field count
    else if (i % 31 === 0) out.push("");
    else out.push(`${i},"a, ${i}",${i}`);
  }
  return tmp.file(name, (opts.bom ? "\uFEFF" : "") + out.join(eol) + eol);
}

async function readAllRanges(path: string, targetBytes: number) {
  const ranges = await splitCsv(path, { targetBytes, highWaterMark: 97 });
  const parts = await Promise.all(ranges.map((r) => collect(readCsvRange(path, r, { highWaterMark: 64 }))));
  return {
    ranges,
    rows: parts.flatMap((p) => p.rows),
    lines: parts.flatMap((p) => p.lines),
    errors: parts.flatMap((p) => p.errors),
  };
}

describe("splitCsv + readCsvRange", () => {
  it("cuts at record boundaries and reproduces a whole-file read exactly", async () => {
    for (const opts of [{}, { bom: true, crlf: true }]) {
      const path = await trickyFile(`split-${opts.crlf ? "crlf" : "lf"}.csv`, 400, opts);
      const whole = await collect(readCsv(path));
      expect(whole.errors.length).toBeGreaterThan(10);
      const size = (await stat(path)).size;
      for (const target of [1, 100, 700, 5000, size * 2]) {
        const split = await readAllRanges(path, target);
        // Ranges tile the file with no gap or overlap.
        expect(split.ranges[0]!.start).toBe(0);
        expect(split.ranges.at(-1)!.end).toBe(size);
        for (let i = 1; i < split.ranges.length; i++) expect(split.ranges[i]!.start).toBe(split.ranges[i - 1]!.end);
        expect(split.rows).toEqual(whole.rows);
        expect(split.lines).toEqual(whole.lines);
        expect(split.errors).toEqual(whole.errors);
      }
    }
  });

  it("finds the same boundaries whatever the read size", async () => {
    const path = await trickyFile("hwm.csv", 150, { bom: true, crlf: true });
    const expected = await splitCsv(path, { targetBytes: 40 });
    expect(expected.length).toBeGreaterThan(50);
    for (const highWaterMark of [1, 2, 3, 5, 13]) {
      expect(await splitCsv(path, { targetBytes: 40, highWaterMark })).toEqual(expected);
    }
  });

  it("never starts a range inside a quoted field", async () => {
    const path = await trickyFile("inside.csv", 200);
    const whole = await collect(readCsv(path));
    const starts = new Set([...whole.lines, ...whole.errors.map((e) => e.line)]);
    const ranges = await splitCsv(path, { targetBytes: 10 });
    expect(ranges.length).toBeGreaterThan(100);
    for (const r of ranges.slice(1)) {
      const part = await collect(readCsvRange(path, r));
      const first = Math.min(...part.lines, ...part.errors.map((e) => e.line));
      // Quoted fields here hold lines like "9,not,a record": a cut inside a quote would start
      // a range with a record the whole-file read never saw.
      if (Number.isFinite(first)) expect(starts.has(first), `range at line ${r.firstLine}`).toBe(true);
    }
  });

  it("returns one range for a small file and an empty range for an empty file", async () => {
    const path = await tmp.file("small.csv", "a\n1\n");
    expect(await splitCsv(path, { targetBytes: 1 << 20 })).toEqual([{ start: 0, end: 4, firstLine: 1 }]);
    const empty = await tmp.file("empty.csv", "");
    expect(await splitCsv(empty)).toEqual([{ start: 0, end: 0, firstLine: 1 }]);
  });

  it("uses declared columns for a headerless file", async () => {
    const path = await tmp.file("nohead.csv", "1,2\n3,4\n5,6\n");
    const ranges = await splitCsv(path, { targetBytes: 4 });
    expect(ranges).toEqual([
      { start: 0, end: 4, firstLine: 1 },
      { start: 4, end: 8, firstLine: 2 },
      { start: 8, end: 12, firstLine: 3 },
    ]);
    const r = await collect(readCsvRange(path, ranges[2]!, { header: false, columns: ["a", "b"] }));
    expect(r.rows).toEqual([{ a: "5", b: "6" }]);
    expect(r.lines).toEqual([3]);
  });
});

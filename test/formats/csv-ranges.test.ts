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
    else if (i % 17 === 0)
      out.push(`${i},bad"quote,${i}`); // stray quote: malformed, must not flip state
    else if (i % 23 === 0)
      out.push(`${i},"x"y,${i}`); // junk after closing quote: malformed
    else if (i % 29 === 0)
      out.push(`${i},short`); // wrong field count
    else if (i % 31 === 0) out.push("");
    else out.push(`${i},"a, ${i}",${i}`);
  }
  return tmp.file(name, (opts.bom ? "\uFEFF" : "") + out.join(eol) + eol);
}

async function readAllRanges(path: string, targetBytes: number, encoding?: string, splitHighWaterMark = 97) {
  const ranges = await splitCsv(path, { targetBytes, highWaterMark: splitHighWaterMark, encoding });
  const parts = await Promise.all(ranges.map((r) => collect(readCsvRange(path, r, { highWaterMark: 64, encoding }))));
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

  it("splits files in other encodings at the same records: Latin-1, Shift_JIS, GB18030, UTF-16 LE and BE (on 2-byte boundaries)", async () => {
    // The tricky file's text with non-ASCII in every record, re-encoded; invalid bytes too.
    const lines: string[] = ['id,"名前\nline",amount'];
    for (let i = 0; i < 120; i++) {
      if (i % 9 === 0) lines.push(`${i},"表\n${i},not,a record\n""ソ"" ü",${i}`);
      else if (i % 17 === 0) lines.push(`${i},bad"quote,${i}`);
      else if (i % 29 === 0) lines.push(`${i},short`);
      else lines.push(`${i},"a, 東京 ${i}",${i}`);
    }
    const text = lines.join("\r\n") + "\r\n";
    const files: [string, Buffer, string][] = [
      ["sjis", Buffer.from(await encodeWith("shift_jis", text.replace(/ü/g, "ｶ"))), "shift_jis"],
      ["gb18030", Buffer.from(await encodeWith("gb18030", text.replace(/ü/g, "𠀀"))), "gb18030"],
      ["utf16le", Buffer.concat([Buffer.of(0xff, 0xfe), Buffer.from(text, "utf16le")]), "utf-16"],
      ["utf16be", Buffer.concat([Buffer.of(0xfe, 0xff), Buffer.from(text, "utf16le").swap16()]), "utf-16be"],
      ["utf16le-nobom", Buffer.from(text, "utf16le"), "utf-16le"],
      // eslint-disable-next-line no-control-regex -- Latin-1 is U+0000..U+00FF, control characters included
      ["latin1", Buffer.from(text.replace(/[^\x00-\xff]/g, "?"), "latin1"), "latin1"],
    ];
    for (const [label, bytes, encoding] of files) {
      const path = await tmp.file(`enc-${label}.csv`, bytes);
      const whole = await collect(readCsv(path, { encoding }));
      expect(whole.rows.length, label).toBeGreaterThan(90);
      expect(whole.errors.length, label).toBeGreaterThan(5);
      for (const target of [1, 150, 1000, bytes.length * 2]) {
        for (const splitHwm of [97, 3]) {
          const split = await readAllRanges(path, target, encoding, splitHwm);
          if (encoding.startsWith("utf-16")) for (const r of split.ranges) expect(r.start % 2, label).toBe(0);
          expect(split.ranges.length, label).toBeGreaterThan(target === 1 ? 90 : 0);
          expect(split.ranges.at(-1)!.end).toBe(bytes.length);
          expect(split.rows, `${label} target ${target}`).toEqual(whole.rows);
          expect(split.lines).toEqual(whole.lines);
          expect(split.errors).toEqual(whole.errors);
        }
      }
    }
  });

  it("keeps a Shift_JIS file whole when the delimiter could be a trail byte, and reads a UTF-16 range by the file's BOM", async () => {
    // 0x7C ("|") is a valid Shift_JIS trail byte: a byte scan could take half a character for it.
    const path = await tmp.file("pipe-sjis.csv", Buffer.from(await encodeWith("shift_jis", "a|b\n1|表\n2|ソ\n")));
    const size = (await stat(path)).size;
    expect(await splitCsv(path, { delimiter: "|", encoding: "sjis", targetBytes: 1 })).toEqual([{ start: 0, end: size, firstLine: 1 }]);
    const r = await collect(readCsvRange(path, { start: 0, end: size, firstLine: 1 }, { delimiter: "|", encoding: "sjis" }));
    expect(r.rows).toEqual([
      { a: "1", b: "表" },
      { a: "2", b: "ソ" },
    ]);
    const be = await tmp.file("be.csv", Buffer.concat([Buffer.of(0xfe, 0xff), Buffer.from("k,v\n1,ü\n2,😀\n", "utf16le").swap16()]));
    const ranges = await splitCsv(be, { encoding: "utf-16", targetBytes: 4 });
    expect(ranges.map((x) => x.firstLine)).toEqual([1, 2, 3]);
    const last = await collect(readCsvRange(be, ranges[2]!, { encoding: "utf-16" }));
    expect(last.rows).toEqual([{ k: "2", v: "😀" }]);
    expect(last.lines).toEqual([3]);
    const noBom = await tmp.file("nobom.csv", Buffer.from("k,v\n1,2\n", "utf16le"));
    await expect(splitCsv(noBom, { encoding: "utf-16" })).rejects.toMatchObject({ code: "BAD_INPUT" });
  });
});

/** `text` encoded by Python's codecs (Node has no encoder for the legacy encodings). */
async function encodeWith(codec: string, text: string): Promise<Uint8Array> {
  const { spawnSync } = await import("node:child_process");
  const out = spawnSync("python3", ["-c", `import sys; sys.stdout.buffer.write(sys.stdin.buffer.read().decode('utf-8').encode('${codec}'))`], {
    input: Buffer.from(text, "utf8"),
  });
  if (out.status !== 0) throw new Error(String(out.stderr));
  return out.stdout;
}

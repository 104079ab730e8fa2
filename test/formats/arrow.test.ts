import { execFileSync } from "node:child_process";
import * as A from "apache-arrow";
import { beforeAll, describe, expect, it } from "vitest";
import { describeArrow, lz4FrameDecode, readArrow } from "../../src/formats/arrow.js";
import { detectFormat, openReader, openWriter } from "../../src/formats/dispatch.js";
import { loadZstd, zstdCompress } from "../../src/formats/zstd.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();

/** A validity bitmap (LSB first) from booleans. */
function bitmap(valid: boolean[]): Uint8Array {
  const out = new Uint8Array(Math.ceil(valid.length / 8));
  valid.forEach((v, i) => {
    if (v) out[i >> 3]! |= 1 << (i & 7);
  });
  return out;
}

const VALID = [true, true, true, false];
const nulls = { nullCount: 1, nullBitmap: bitmap(VALID) };

/** Decimal128 values as little-endian 32-bit words. */
function decimalWords(values: bigint[]): Uint32Array {
  const words = new Uint32Array(values.length * 4);
  values.forEach((v, i) => {
    let u = BigInt.asUintN(128, v);
    for (let k = 0; k < 4; k++) {
      words[i * 4 + k] = Number(u & 0xffffffffn);
      u >>= 32n;
    }
  });
  return words;
}

const day = (iso: string): number => Date.parse(`${iso}T00:00:00Z`) / 86_400_000;

/** Four rows of every type the brief names, the last one all nulls (where a type can be null). */
function sampleTable(): A.Table {
  const int64 = A.makeVector(
    A.makeData({ type: new A.Int64(), length: 4, ...nulls, data: new BigInt64Array([9223372036854775807n, -9223372036854775808n, 9007199254740993n, 0n]) }),
  );
  const dec = A.makeVector(A.makeData({ type: new A.Decimal(4, 38, 128), length: 4, ...nulls, data: decimalWords([12_345_600n, -1n, 10n ** 37n + 1n, 0n]) }));
  const ts = (unit: A.TimeUnit, tz: string | null, values: bigint[]) =>
    A.makeVector(A.makeData({ type: new A.Timestamp(unit, tz), length: 4, ...nulls, data: new BigInt64Array(values) }));
  const date = A.makeVector(A.makeData({ type: new A.DateDay(), length: 4, ...nulls, data: new Int32Array([day("2024-02-29"), -1, day("0001-01-01"), 0]) }));
  const dict = A.vectorFromArray(["BUY", "SELL", "BUY", null], new A.Dictionary(new A.Utf8(), new A.Int32()));
  const list = A.vectorFromArray([[1, 2], [], [null, 3], null], new A.List(new A.Field("item", new A.Int32(), true)));
  const structType = new A.Struct([new A.Field("name", new A.Utf8(), true), new A.Field("qty", new A.Int64(), true)]);
  const struct = A.vectorFromArray([{ name: "é ✓", qty: 5n }, { name: null, qty: -7n }, { name: "", qty: null }, null], structType);
  const dbl = A.vectorFromArray([1.5, Number.NaN, -Infinity, null], new A.Float64());
  const bool = A.vectorFromArray([true, false, true, null], new A.Bool());
  return new A.Table({
    int64,
    dec,
    ts_ms: ts(A.TimeUnit.MILLISECOND, null, [1_700_000_000_123n, -1n, 253_402_300_799_999n, 0n]),
    ts_us: ts(A.TimeUnit.MICROSECOND, "UTC", [1_700_000_000_123_456n, -1n, 1_700_000_000_123_000n, 0n]),
    ts_ns: ts(A.TimeUnit.NANOSECOND, "Europe/Paris", [1_700_000_000_123_456_789n, -1n, 1_700_000_000_000_000_001n, 0n]),
    date,
    dict,
    list,
    struct,
    dbl,
    bool,
  });
}

const EXPECTED = [
  {
    int64: "9223372036854775807",
    dec: "1234.5600",
    ts_ms: "2023-11-14T22:13:20.123Z",
    ts_us: "2023-11-14T22:13:20.123456Z",
    ts_ns: "2023-11-14T22:13:20.123456Z",
    date: "2024-02-29",
    dict: "BUY",
    list: [1, 2],
    struct: { name: "é ✓", qty: "5" },
    dbl: 1.5,
    bool: true,
  },
  {
    int64: "-9223372036854775808",
    dec: "-0.0001",
    ts_ms: "1969-12-31T23:59:59.999Z",
    ts_us: "1969-12-31T23:59:59.999999Z",
    ts_ns: "1969-12-31T23:59:59.999999Z",
    date: "1969-12-31",
    dict: "SELL",
    list: [],
    struct: { name: null, qty: "-7" },
    dbl: "NaN",
    bool: false,
  },
  {
    int64: "9007199254740993",
    dec: "1000000000000000000000000000000000.0001",
    ts_ms: "9999-12-31T23:59:59.999Z",
    ts_us: "2023-11-14T22:13:20.123Z",
    ts_ns: "2023-11-14T22:13:20.000Z",
    date: "0001-01-01",
    dict: "BUY",
    list: [null, 3],
    struct: { name: "", qty: null },
    dbl: "-Infinity",
    bool: true,
  },
  { int64: null, dec: null, ts_ms: null, ts_us: null, ts_ns: null, date: null, dict: null, list: null, struct: null, dbl: null, bool: null },
];

describe("Arrow IPC reading", () => {
  it("reads the file format (.arrow, .feather) and the stream format (.arrows) exactly", async () => {
    const table = sampleTable();
    const file = await tmp.file("sample.arrow", Buffer.from(A.tableToIPC(table, "file")));
    const feather = await tmp.file("sample.feather", Buffer.from(A.tableToIPC(table, "file")));
    const stream = await tmp.file("sample.arrows", Buffer.from(A.tableToIPC(table, "stream")));
    for (const path of [file, feather, stream]) {
      expect(detectFormat(path)).toBe("arrow");
      const back = await collect(openReader(path));
      expect(back.columns).toEqual(["int64", "dec", "ts_ms", "ts_us", "ts_ns", "date", "dict", "list", "struct", "dbl", "bool"]);
      expect(back.rows).toEqual(EXPECTED);
      expect(back.lines).toEqual([0, 1, 2, 3]);
      expect(back.errors).toEqual([]);
      expect(JSON.parse(JSON.stringify(back.rows))).toEqual(back.rows);
    }
  });

  it("streams a 300,000-row file one record batch at a time, in bounded batches", async () => {
    const batches: A.RecordBatch[] = [];
    for (let b = 0; b < 30; b++) {
      const ids = new BigInt64Array(10_000);
      const at = new BigInt64Array(10_000);
      for (let i = 0; i < 10_000; i++) {
        ids[i] = BigInt(b * 10_000 + i);
        at[i] = 1_800_000_000_000_000n + BigInt(b * 10_000 + i);
      }
      batches.push(
        new A.RecordBatch({
          id: A.makeData({ type: new A.Int64(), length: 10_000, data: ids }),
          at: A.makeData({ type: new A.Timestamp(A.TimeUnit.MICROSECOND, "UTC"), length: 10_000, data: at }),
        }),
      );
    }
    const path = await tmp.file("big.arrow", Buffer.from(A.tableToIPC(new A.Table(batches), "file")));
    let rows = 0;
    let yielded = 0;
    let expectedLine = 0;
    let last: Record<string, unknown> | undefined;
    for await (const batch of readArrow(path, { batchSize: 4000 })) {
      expect(batch.rows.length).toBeLessThanOrEqual(4000);
      expect(batch.lines[0]).toBe(expectedLine);
      expectedLine += batch.rows.length;
      rows += batch.rows.length;
      yielded++;
      last = batch.rows.at(-1);
    }
    expect(rows).toBe(300_000);
    expect(yielded).toBe(90); // per 10,000-row record batch: 4000, 4000, 2000
    expect(last).toEqual({ id: "299999", at: "2027-01-15T08:00:00.299999Z" });
  });

  it("yields the record batches of a stream before a damaged end, then names the batch that cannot be read", async () => {
    const batches = Array.from(
      { length: 20 },
      (_, b) =>
        new A.RecordBatch({
          id: A.makeData({ type: new A.Int64(), length: 5000, data: BigInt64Array.from({ length: 5000 }, (_, i) => BigInt(b * 5000 + i)) }),
        }),
    );
    const bytes = A.tableToIPC(new A.Table(batches), "stream");
    const path = await tmp.file("cut.arrows", Buffer.from(bytes.subarray(0, Math.floor(bytes.length * 0.55))));
    const seen: number[] = [];
    const reading = (async () => {
      for await (const b of readArrow(path, { name: "feed.arrows", batchSize: 5000 })) seen.push(b.rows.length);
    })();
    await expect(reading).rejects.toThrow(/^feed\.arrows: record batch 11 \(after row 50000\) cannot be read: /);
    expect(seen).toEqual(Array(10).fill(5000));
  });

  it("reads record batches compressed with ZSTD and LZ4 frames (written by apache-arrow with zstd and the reference lz4 tool)", async () => {
    await loadZstd();
    A.compressionRegistry.set(A.CompressionType.ZSTD, { encode: (bytes) => zstdCompress(bytes, 3) });
    A.compressionRegistry.set(A.CompressionType.LZ4_FRAME, { encode: (bytes) => new Uint8Array(execFileSync("lz4", ["-c", "-q"], { input: bytes })) });
    for (const [name, compressionType] of [
      ["zstd", A.CompressionType.ZSTD],
      ["lz4", A.CompressionType.LZ4_FRAME],
    ] as const) {
      const bytes = A.RecordBatchFileWriter.writeAll(sampleTable(), { compressionType }).toUint8Array(true);
      const path = await tmp.file(`compressed-${name}.feather`, Buffer.from(bytes));
      expect((await collect(readArrow(path))).rows).toEqual(EXPECTED);
    }
  });

  it("decodes LZ4 frames with back-references across blocks", () => {
    const text = Buffer.from("abcabcabcabcabcabcabcabc-".repeat(5000));
    const frame = execFileSync("lz4", ["-c", "-q", "-B4", "--content-size"], { input: text });
    expect(frame.length).toBeLessThan(text.length / 10);
    expect(Buffer.from(lz4FrameDecode(frame)).equals(text)).toBe(true);
  });

  it("describes the fields as Sluice types and counts the rows", async () => {
    const path = await tmp.file("describe.arrow", Buffer.from(A.tableToIPC(sampleTable(), "file")));
    expect(await describeArrow(path)).toEqual({
      rows: 4,
      columns: [
        { name: "int64", type: "integer", nullable: true },
        { name: "dec", type: "decimal", scale: 4, nullable: true },
        { name: "ts_ms", type: "timestamp", nullable: true },
        { name: "ts_us", type: "timestamp", nullable: true },
        { name: "ts_ns", type: "timestamp", nullable: true },
        { name: "date", type: "date", nullable: true },
        { name: "dict", type: "string", nullable: true },
        { name: "list", type: "string", nullable: true, nested: true },
        { name: "struct", type: "string", nullable: true, nested: true },
        { name: "dbl", type: "decimal", nullable: true },
        { name: "bool", type: "boolean", nullable: true },
      ],
    });
  });

  it("reports unreadable input in one sentence naming the file, and refuses to write Arrow", async () => {
    const notArrow = await tmp.file("not.arrow", "hello, this is not arrow at all\n");
    await expect(collect(readArrow(notArrow, { name: "upload.arrow" }))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: expect.stringMatching(/^upload\.arrow: not a readable Arrow IPC file or stream: /),
    });
    const feather1 = await tmp.file("old.feather", Buffer.concat([Buffer.from("FEA1"), Buffer.alloc(64)]));
    await expect(collect(readArrow(feather1))).rejects.toThrow(
      /a Feather version 1 file, which Sluice cannot read; rewrite it as Feather version 2 \(Arrow IPC\) or Parquet$/,
    );
    await expect(collect(readArrow(`${tmp.dir}/none.arrows`, { name: "none.arrows" }))).rejects.toMatchObject({
      code: "FILE_NOT_FOUND",
      message: "cannot read none.arrows: no such file",
    });
    await expect(openWriter(await tmp.file("out.arrow"), "arrow")).rejects.toMatchObject({
      code: "USAGE",
      message: "writing Arrow files is not supported; write parquet",
    });
  });
});

beforeAll(() => {
  // The reference lz4 tool must be present for the compressed-file tests to mean anything.
  execFileSync("lz4", ["--version"], { stdio: "ignore" });
});

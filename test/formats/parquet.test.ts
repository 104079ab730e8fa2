import { execFileSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { parquetMetadataAsync } from "hyparquet";
import { ByteWriter, parquetWriteBuffer } from "hyparquet-writer";
import { writePageHeader } from "hyparquet-writer/src/datapage.js";
import { writeMetadata } from "hyparquet-writer/src/metadata.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeParquet, fileAsyncBuffer, openParquetWriter, readParquet } from "../../src/formats/parquet.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();
let duck: DuckDBConnection;
let instance: DuckDBInstance;

beforeAll(async () => {
  instance = await DuckDBInstance.create(":memory:", { threads: "1" });
  duck = await instance.connect();
  await duck.run("SET TimeZone = 'UTC'");
});
afterAll(() => {
  duck?.closeSync();
  instance?.closeSync();
});

async function rowsOf(sql: string): Promise<Record<string, unknown>[]> {
  return (await duck.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
}

describe("parquet files written by DuckDB", () => {
  const CODECS = ["UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "BROTLI", "LZ4_RAW"] as const;
  const files: Record<string, string> = {};

  beforeAll(async () => {
    await duck.run(`CREATE TABLE typed (
      id INTEGER, big BIGINT, d18 DECIMAL(18,4), d38 DECIMAL(38,10), d9 DECIMAL(9,2), dbl DOUBLE, ok BOOLEAN, day DATE,
      tstz TIMESTAMPTZ, tsns TIMESTAMP_NS, ts TIMESTAMP, txt VARCHAR, ints INTEGER[],
      st STRUCT(price DECIMAL(18,4), "at" TIMESTAMP, tags VARCHAR[]), mp MAP(VARCHAR, BIGINT), bin BLOB)`);
    await duck.run(`INSERT INTO typed VALUES
      (1, 9223372036854775807, 1234.5600, 12345678901234567890.1234567891, 1234567.89, 1.5, true, DATE '2024-02-29',
       TIMESTAMPTZ '2026-11-02 09:30:00.123456+00', TIMESTAMP_NS '2026-11-02 09:30:00.123456789', TIMESTAMP '2026-11-02 09:30:00',
       'héllo ✓ 日本 😀', [1, 2, NULL], {'price': 12.34, 'at': TIMESTAMP '2024-01-01 00:00:00.5', 'tags': ['x', 'y']},
       MAP {'k1': 10, 'k2': NULL}, '\\xDE\\xAD'::BLOB),
      (2, -9223372036854775808, -0.0001, -0.0000000001, -0.01, 'NaN'::DOUBLE, false, DATE '1969-12-31',
       TIMESTAMPTZ '2026-11-02 10:30:00+01', TIMESTAMP_NS '1969-12-31 23:59:59.999999999', TIMESTAMP '1969-12-31 23:59:59.999',
       '', [], {'price': NULL, 'at': NULL, 'tags': []}, MAP {}, ''::BLOB),
      (3, NULL, NULL, NULL, NULL, 'inf'::DOUBLE, NULL, DATE '0001-01-01', TIMESTAMPTZ '9999-12-31 23:59:59.999999+00',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
    for (const codec of CODECS) {
      files[codec] = await tmp.file(`duck-${codec}.parquet`);
      await duck.run(`COPY typed TO '${files[codec]}' (FORMAT parquet, COMPRESSION ${codec})`);
    }
  });

  const EXPECTED = [
    {
      id: 1,
      big: "9223372036854775807",
      d18: "1234.5600",
      d38: "12345678901234567890.1234567891",
      d9: "1234567.89",
      dbl: 1.5,
      ok: true,
      day: "2024-02-29",
      tstz: "2026-11-02T09:30:00.123456Z",
      tsns: "2026-11-02T09:30:00.123456Z",
      ts: "2026-11-02T09:30:00.000Z",
      txt: "héllo ✓ 日本 😀",
      ints: [1, 2, null],
      st: { price: "12.3400", at: "2024-01-01T00:00:00.500Z", tags: ["x", "y"] },
      mp: { k1: "10", k2: null },
      bin: "3q0=",
    },
    {
      id: 2,
      big: "-9223372036854775808",
      d18: "-0.0001",
      d38: "-0.0000000001",
      d9: "-0.01",
      dbl: "NaN",
      ok: false,
      day: "1969-12-31",
      tstz: "2026-11-02T09:30:00.000Z",
      tsns: "1969-12-31T23:59:59.999999Z",
      ts: "1969-12-31T23:59:59.999Z",
      txt: "",
      ints: [],
      st: { price: null, at: null, tags: [] },
      mp: {},
      bin: "",
    },
    {
      id: 3,
      big: null,
      d18: null,
      d38: null,
      d9: null,
      dbl: "Infinity",
      ok: null,
      day: "0001-01-01",
      tstz: "9999-12-31T23:59:59.999999Z",
      tsns: null,
      ts: null,
      txt: null,
      ints: null,
      st: null,
      mp: null,
      bin: null,
    },
    {
      id: 4,
      big: null,
      d18: null,
      d38: null,
      d9: null,
      dbl: null,
      ok: null,
      day: null,
      tstz: null,
      tsns: null,
      ts: null,
      txt: null,
      ints: null,
      st: null,
      mp: null,
      bin: null,
    },
  ];

  for (const codec of CODECS) {
    it(`reads every value exactly from a ${codec} file`, async () => {
      const { buffer, close } = await fileAsyncBuffer(files[codec]!);
      const meta = await parquetMetadataAsync(buffer);
      await close();
      expect(new Set(meta.row_groups.flatMap((g) => g.columns.map((c) => c.meta_data?.codec)))).toEqual(new Set([codec]));
      const back = await collect(readParquet(files[codec]!));
      expect(back.columns).toEqual(["id", "big", "d18", "d38", "d9", "dbl", "ok", "day", "tstz", "tsns", "ts", "txt", "ints", "st", "mp", "bin"]);
      expect(back.rows).toEqual(EXPECTED);
      expect(back.lines).toEqual([0, 1, 2, 3]);
      // Every value survives JSON unchanged: nothing a downstream JSON.stringify would reject or alter.
      expect(JSON.parse(JSON.stringify(back.rows))).toEqual(back.rows);
    });
  }

  it("describes the columns as Sluice types", async () => {
    expect(await describeParquet(files.ZSTD!)).toEqual({
      rows: 4,
      columns: [
        { name: "id", type: "integer", nullable: true },
        { name: "big", type: "integer", nullable: true },
        { name: "d18", type: "decimal", scale: 4, nullable: true },
        { name: "d38", type: "decimal", scale: 10, nullable: true },
        { name: "d9", type: "decimal", scale: 2, nullable: true },
        { name: "dbl", type: "decimal", nullable: true },
        { name: "ok", type: "boolean", nullable: true },
        { name: "day", type: "date", nullable: true },
        { name: "tstz", type: "timestamp", nullable: true },
        { name: "tsns", type: "timestamp", nullable: true },
        { name: "ts", type: "timestamp", nullable: true },
        { name: "txt", type: "string", nullable: true },
        { name: "ints", type: "string", nullable: true, nested: true },
        { name: "st", type: "string", nullable: true, nested: true },
        { name: "mp", type: "string", nullable: true, nested: true },
        { name: "bin", type: "string", nullable: true },
      ],
    });
  });

  it("reads a large DuckDB file row group by row group, in bounded batches", async () => {
    const path = await tmp.file("duck-big.parquet");
    await duck.run(
      `COPY (SELECT i::BIGINT AS id, (i * 0.0001)::DECIMAL(18,4) AS price, TIMESTAMPTZ '2026-01-01 00:00:00+00' + INTERVAL (i) MICROSECOND AS at
        FROM range(300000) t(i)) TO '${path}' (FORMAT parquet, COMPRESSION ZSTD, ROW_GROUP_SIZE 100000)`,
    );
    let rows = 0;
    let batches = 0;
    let last: Record<string, unknown> | undefined;
    for await (const b of readParquet(path, { batchSize: 5000 })) {
      expect(b.rows.length).toBeLessThanOrEqual(5000);
      rows += b.rows.length;
      batches++;
      last = b.rows.at(-1);
    }
    expect(rows).toBe(300000);
    expect(batches).toBeGreaterThanOrEqual(60);
    expect(last).toEqual({ id: "299999", price: "29.9999", at: "2026-01-01T00:00:00.299999Z" });
  });
});

describe("legacy and unusual parquet files", () => {
  it("reads INT96 timestamps (Spark, Impala, Hive) as canonical UTC text", async () => {
    // A one-column file built by hand: INT96 = 8 bytes of nanoseconds in the day, then a 4-byte Julian day.
    const values = [
      { julian: 2_440_588, nanos: 0n }, // 1970-01-01T00:00:00
      { julian: 2_461_347, nanos: 34_200_123_456_789n }, // 2026-11-02T09:30:00.123456789
      { julian: 2_440_587, nanos: 86_399_999_999_999n }, // 1969-12-31T23:59:59.999999999
    ];
    const plain = new Uint8Array(12 * values.length);
    const view = new DataView(plain.buffer);
    values.forEach((v, i) => {
      view.setBigUint64(i * 12, v.nanos, true);
      view.setUint32(i * 12 + 8, v.julian, true);
    });
    const w = new ByteWriter();
    w.appendUint32(0x31524150);
    const pageStart = w.offset;
    writePageHeader(w, {
      type: "DATA_PAGE",
      uncompressed_page_size: plain.length,
      compressed_page_size: plain.length,
      data_page_header: { num_values: values.length, encoding: "PLAIN", definition_level_encoding: "RLE", repetition_level_encoding: "RLE" },
    });
    w.appendBytes(plain);
    const chunkSize = w.offset - pageStart;
    writeMetadata(w, {
      version: 1,
      schema: [
        { name: "spark_schema", num_children: 1 },
        { name: "ts", type: "INT96", repetition_type: "REQUIRED" },
      ],
      num_rows: BigInt(values.length),
      row_groups: [
        {
          columns: [
            {
              file_offset: BigInt(pageStart),
              meta_data: {
                type: "INT96",
                encodings: ["PLAIN"],
                path_in_schema: ["ts"],
                codec: "UNCOMPRESSED",
                num_values: BigInt(values.length),
                total_uncompressed_size: BigInt(chunkSize),
                total_compressed_size: BigInt(chunkSize),
                data_page_offset: BigInt(pageStart),
              },
            },
          ],
          total_byte_size: BigInt(chunkSize),
          num_rows: BigInt(values.length),
        },
      ],
      created_by: "hand-built INT96 test file",
    } as Parameters<typeof writeMetadata>[1]);
    w.appendUint32(0x31524150);
    const path = await tmp.file("int96.parquet", Buffer.from(w.getBytes()));
    const back = await collect(readParquet(path));
    expect(back.rows).toEqual([{ ts: "1970-01-01T00:00:00.000Z" }, { ts: "2026-11-02T09:30:00.123456Z" }, { ts: "1969-12-31T23:59:59.999999Z" }]);
    expect((await describeParquet(path)).columns).toEqual([{ name: "ts", type: "timestamp", nullable: false }]);
  });

  it("reads the Hadoop LZ4 codec (blocks compressed by the reference lz4 tool)", async () => {
    // Hadoop's LZ4 framing: big-endian uncompressed and compressed lengths, then one raw LZ4 block,
    // taken here from the frame the `lz4` command writes (7-byte frame header, 4-byte block size).
    const hadoopLz4 = (input: Uint8Array): Uint8Array => {
      const frame = execFileSync("lz4", ["-c", "-q", "--no-frame-crc"], { input });
      const size = frame.readUInt32LE(7);
      expect(size & 0x80000000).toBe(0); // a compressed block, not a stored one
      const block = frame.subarray(11, 11 + size);
      const out = Buffer.alloc(8 + block.length);
      out.writeUInt32BE(input.length, 0);
      out.writeUInt32BE(block.length, 4);
      block.copy(out, 8);
      return out;
    };
    const names = Array.from({ length: 500 }, (_, i) => `name ${i % 7} ✓`);
    const bytes = parquetWriteBuffer({ columnData: [{ name: "name", data: names, type: "STRING" }], codec: "LZ4", compressors: { LZ4: hadoopLz4 } });
    const path = await tmp.file("hadoop-lz4.parquet", Buffer.from(bytes));
    const back = await collect(readParquet(path));
    expect(back.rows.map((r) => r.name)).toEqual(names);
  });

  it("refuses a codec it cannot read with one sentence naming the file, column and codec", async () => {
    const bytes = parquetWriteBuffer({ columnData: [{ name: "v", data: ["a", "b"], type: "STRING" }], codec: "LZO", compressors: { LZO: (b) => b } });
    const path = await tmp.file("lzo.parquet", Buffer.from(bytes));
    await expect(collect(readParquet(path, { name: "s3://bucket/events.parquet" }))).rejects.toThrow(
      's3://bucket/events.parquet: column "v" is compressed with LZO, which Sluice cannot read (it reads SNAPPY, GZIP, BROTLI, ZSTD, LZ4, LZ4_RAW and uncompressed Parquet); rewrite the file with one of those',
    );
  });

  it("names the input as given in options.name, and reports a missing or non-Parquet file in one sentence", async () => {
    const path = await tmp.file("fake.parquet", "a,b\n1,2\n");
    await expect(collect(readParquet(path))).rejects.toMatchObject({
      code: "BAD_INPUT",
      message: expect.stringMatching(/^.*fake\.parquet: not a readable Parquet file/),
    });
    await expect(collect(readParquet(path, { name: "https://example.com/x.parquet" }))).rejects.toThrow(
      /^https:\/\/example\.com\/x\.parquet: not a readable Parquet file/,
    );
    await expect(collect(readParquet(`${tmp.dir}/missing.parquet`, { name: "missing.parquet" }))).rejects.toMatchObject({
      code: "FILE_NOT_FOUND",
      message: "cannot read missing.parquet: no such file",
    });
  });
});

describe("parquet writing", () => {
  it("round-trips string rows across several row groups", async () => {
    const path = await tmp.file("rt.parquet");
    const w = await openParquetWriter(path, ["id", "name", "note"], { rowGroupSize: 1000 });
    const rows = Array.from({ length: 2500 }, (_, i) => ({
      id: String(i),
      name: i % 3 === 0 ? "" : `name ${i} é ✓`,
      note: i % 7 === 0 ? null : `line\nbreak, "q" ${i}`,
    }));
    for (let i = 0; i < rows.length; i += 333) await w.write(rows.slice(i, i + 333));
    const res = await w.close();
    expect(res.rows).toBe(2500);

    const { buffer, close } = await fileAsyncBuffer(path);
    const meta = await parquetMetadataAsync(buffer);
    await close();
    expect(meta.row_groups.map((g) => Number(g.num_rows))).toEqual([1000, 1000, 500]);
    expect(res.bytes).toBe(buffer.byteLength);

    const back = await collect(readParquet(path, { batchSize: 400 }));
    expect(back.columns).toEqual(["id", "name", "note"]);
    expect(back.rows).toEqual(rows);
    expect(back.lines).toEqual(rows.map((_, i) => i));
    expect(back.errors).toEqual([]);
    // Batches never straddle a row group and never exceed batchSize.
    let n = 0;
    for await (const b of readParquet(path, { batchSize: 400 })) {
      expect(b.rows.length).toBeLessThanOrEqual(400);
      expect(Math.floor(b.lines[0]! / 1000)).toBe(Math.floor(b.lines.at(-1)! / 1000));
      n++;
    }
    expect(n).toBe(8); // per 1000-row group: 400, 400, 200; the 500-row group: 400, 100
    // DuckDB reads the same rows.
    expect(await rowsOf(`SELECT count(*)::INT AS n, count(note)::INT AS notes FROM '${path}'`)).toEqual([{ n: 2500, notes: 2142 }]);
  });

  it("writes typed columns DuckDB reads as BIGINT, DECIMAL(38,4), TIMESTAMPTZ, DATE, BOOLEAN, DOUBLE and VARCHAR, ZSTD-compressed", async () => {
    const path = await tmp.file("typed.parquet");
    const schema = [
      { name: "id", type: "integer" },
      { name: "price", type: "decimal", scale: 4 },
      { name: "at", type: "timestamp" },
      { name: "day", type: "date" },
      { name: "ok", type: "boolean" },
      { name: "ratio", type: "double" },
      { name: "label", type: "string" },
      { name: "meta", type: "json" },
    ] as const;
    const w = await openParquetWriter(path, undefined, { schema: [...schema], rowGroupSize: 1000 });
    const special = [
      {
        id: "9223372036854775807",
        price: "99999999999999999999999999999999.9999",
        at: "9999-12-31T23:59:59.999999Z",
        day: "9999-12-31",
        ok: true,
        ratio: 1.5,
        label: "日本 😀",
        meta: { a: [1, "x"] },
      },
      {
        id: "-9223372036854775808",
        price: "-99999999999999999999999999999999.9999",
        at: "0001-01-01T00:00:00.000Z",
        day: "0001-01-01",
        ok: false,
        ratio: -0.25,
        label: "",
        meta: [],
      },
      { id: "0", price: "0.0000", at: "1969-12-31T23:59:59.999999Z", day: "1969-12-31", ok: true, ratio: 1e300, label: "a,b", meta: "text" },
      { id: "-1", price: "-0.0001", at: "2026-11-02T09:30:00.125Z", day: "2024-02-29", ok: null, ratio: null, label: null, meta: null },
      { id: null, price: null, at: null, day: null, ok: null, ratio: null, label: null, meta: null },
    ];
    const rows: Record<string, unknown>[] = [...special];
    for (let i = 0; i < 2995; i++) {
      rows.push({
        id: String(i * 7919 - 10_000_000),
        price: `${i}.${String(i % 10000).padStart(4, "0")}`,
        at: `2026-11-02T09:${String(30 + (i % 30)).padStart(2, "0")}:00.${String(i % 1000).padStart(3, "0")}${i % 2 ? "001" : ""}Z`,
        day: `20${String(10 + (i % 15)).padStart(2, "0")}-0${1 + (i % 9)}-1${i % 10}`,
        ok: i % 3 === 0,
        ratio: i / 7,
        label: `SYM${i % 13}`,
        meta: { i },
      });
    }
    for (let i = 0; i < rows.length; i += 700) await w.write(rows.slice(i, i + 700));
    expect(await w.close()).toMatchObject({ rows: 3000 });

    expect(await rowsOf(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '${path}')`)).toEqual([
      { column_name: "id", column_type: "BIGINT" },
      { column_name: "price", column_type: "DECIMAL(38,4)" },
      { column_name: "at", column_type: "TIMESTAMP WITH TIME ZONE" },
      { column_name: "day", column_type: "DATE" },
      { column_name: "ok", column_type: "BOOLEAN" },
      { column_name: "ratio", column_type: "DOUBLE" },
      { column_name: "label", column_type: "VARCHAR" },
      { column_name: "meta", column_type: "JSON" },
    ]);
    expect(await rowsOf(`SELECT name, type, type_length, converted_type, scale, precision FROM parquet_schema('${path}') WHERE name <> 'schema'`)).toEqual([
      { name: "id", type: "INT64", type_length: null, converted_type: "INT_64", scale: null, precision: null },
      { name: "price", type: "FIXED_LEN_BYTE_ARRAY", type_length: "16", converted_type: "DECIMAL", scale: "4", precision: "38" },
      { name: "at", type: "INT64", type_length: null, converted_type: "TIMESTAMP_MICROS", scale: null, precision: null },
      { name: "day", type: "INT32", type_length: null, converted_type: "DATE", scale: null, precision: null },
      { name: "ok", type: "BOOLEAN", type_length: null, converted_type: null, scale: null, precision: null },
      { name: "ratio", type: "DOUBLE", type_length: null, converted_type: null, scale: null, precision: null },
      { name: "label", type: "BYTE_ARRAY", type_length: null, converted_type: "UTF8", scale: null, precision: null },
      { name: "meta", type: "BYTE_ARRAY", type_length: null, converted_type: "JSON", scale: null, precision: null },
    ]);
    const meta = await rowsOf(`SELECT DISTINCT row_group_id::INT AS g, compression FROM parquet_metadata('${path}') ORDER BY g`);
    expect(meta).toEqual([0, 1, 2].map((g) => ({ g, compression: "ZSTD" })));
    // Row-group statistics are right (DuckDB prunes row groups with them).
    expect(
      await rowsOf(
        `SELECT path_in_schema AS c, stats_min_value AS lo, stats_max_value AS hi, stats_null_count::INT AS nulls FROM parquet_metadata('${path}') WHERE row_group_id = 0 AND path_in_schema IN ('id', 'at', 'day', 'ratio')`,
      ),
    ).toEqual([
      { c: "id", lo: "-9223372036854775808", hi: "9223372036854775807", nulls: 1 },
      { c: "at", lo: "0001-01-01 00:00:00+00", hi: "9999-12-31 23:59:59.999999+00", nulls: 1 },
      { c: "day", lo: "0001-01-01", hi: "9999-12-31", nulls: 1 },
      { c: "ratio", lo: "-0.25", hi: "1e+300", nulls: 2 },
    ]);
    expect(await rowsOf(`SELECT count(*)::INT AS n FROM '${path}' WHERE id > 0 AND price > 2000`)).toEqual([
      { n: rows.filter((r) => r.id !== null && BigInt(r.id as string) > 0n && Number(r.price) > 2000).length },
    ]);

    // Values: DuckDB's text of each value equals ours (timestamps in DuckDB's own text form).
    const duckRows = await rowsOf(
      `SELECT id::VARCHAR AS id, price::VARCHAR AS price, strftime("at", '%Y-%m-%dT%H:%M:%S.%fZ') AS at, day::VARCHAR AS day, ok, ratio, label, meta::VARCHAR AS meta FROM '${path}'`,
    );
    const micros = (t: unknown): unknown => (typeof t === "string" ? (t.length === 24 ? `${t.slice(0, 23)}000Z` : t) : t);
    expect(duckRows).toEqual(
      rows.map((r) => ({
        id: r.id,
        price: r.price,
        at: micros(r.at),
        day: r.day,
        ok: r.ok,
        ratio: r.ratio,
        label: r.label,
        meta: r.meta === null ? null : JSON.stringify(r.meta),
      })),
    );
    // And Sluice reads its own file back exactly.
    const back = await collect(readParquet(path));
    expect(back.rows).toEqual(rows);
  });

  it("encodes random integers, decimals, timestamps and dates across their whole ranges exactly", async () => {
    // A seeded generator: every digit count, sign and year, so both the number and the BigInt paths run.
    let seed = 12345;
    const rand = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const digits = (n: number): string => Array.from({ length: n }, (_, i) => String(Math.floor(rand() * 10) || (i === 0 ? 1 : 0))).join("");
    const MIN_US = -62_135_596_800_000_000n; // 0001-01-01
    const SPAN_US = 315_537_897_600_000_000n; // to 10000-01-01
    const rows = Array.from({ length: 3000 }, () => {
      const neg = rand() < 0.5 ? "-" : "";
      const intLen = 1 + Math.floor(rand() * 18);
      const id = intLen === 19 ? "0" : `${neg}${digits(intLen)}`;
      const decInt = Math.floor(rand() * 34);
      const price = `${neg}${decInt === 0 ? "0" : digits(decInt)}.${digits(4)}`;
      const us = MIN_US + (BigInt(Math.floor(rand() * 2 ** 30)) * SPAN_US) / 2n ** 30n;
      const micros = rand() < 0.3 ? us - (us % 1000n) : us; // a share at whole milliseconds
      const days = Math.floor(rand() * 3_652_059) - 719_162;
      return { id, price, micros, days };
    });
    const text = (us: bigint): string => {
      const ms = Number(us / 1000n - (us % 1000n < 0n ? 1n : 0n));
      const sub = Number(((us % 1000n) + 1000n) % 1000n);
      const iso = new Date(ms).toISOString();
      return sub === 0 ? iso : `${iso.slice(0, 23)}${String(sub).padStart(3, "0")}Z`;
    };
    const path = await tmp.file("random.parquet");
    const w = await openParquetWriter(path, undefined, {
      rowGroupSize: 1000,
      schema: [
        { name: "id", type: "integer" },
        { name: "price", type: "decimal", scale: 4 },
        { name: "at", type: "timestamp" },
        { name: "day", type: "date" },
      ],
    });
    const dayText = (d: number): string => new Date(d * 86_400_000).toISOString().slice(0, 10);
    const written = rows.map((r) => ({ id: r.id, price: r.price, at: text(r.micros), day: dayText(r.days) }));
    await w.write(written);
    await w.close();
    const duckRows = await rowsOf(
      `SELECT id::VARCHAR AS id, price::VARCHAR AS price, epoch_us("at")::VARCHAR AS us, (day - DATE '1970-01-01')::INT AS days FROM '${path}'`,
    );
    expect(duckRows).toEqual(
      rows.map((r) => ({ id: r.id.replace(/^-0$/, "0"), price: r.price.replace(/^-(0\.0000)$/, "$1"), us: String(r.micros), days: r.days })),
    );
    expect((await collect(readParquet(path))).rows).toEqual(
      written.map((r) => ({ ...r, id: r.id.replace(/^-0$/, "0"), price: r.price.replace(/^-(0\.0000)$/, "$1") })),
    );
  });

  it("falls back from dictionary to PLAIN pages inside a chunk and still reads back exactly", async () => {
    const path = await tmp.file("dict-fallback.parquet");
    const w = await openParquetWriter(path, undefined, {
      schema: [
        { name: "s", type: "string" },
        { name: "u", type: "string" },
      ],
      rowGroupSize: 20_000,
    });
    const rows = Array.from({ length: 40_000 }, (_, i) => ({
      // Few distinct values at first, then long unique ones: the dictionary passes 1 MiB mid-chunk.
      s: i < 3000 ? `v${i % 5}` : `${"x".repeat(200)}-${i}`,
      u: `id-${i}`, // unique from the start: PLAIN after the first 1,024 values
    }));
    await w.write(rows);
    await w.close();
    const enc = await rowsOf(`SELECT row_group_id::INT AS g, path_in_schema AS c, encodings FROM parquet_metadata('${path}') ORDER BY g, c`);
    expect(enc).toEqual([
      { g: 0, c: "s", encodings: "RLE, PLAIN, RLE_DICTIONARY" },
      { g: 0, c: "u", encodings: "RLE, PLAIN" },
      // The second group is unique from the start: its first 1,024 values decide PLAIN.
      { g: 1, c: "s", encodings: "RLE, PLAIN" },
      { g: 1, c: "u", encodings: "RLE, PLAIN" },
    ]);
    expect(await rowsOf(`SELECT count(DISTINCT s)::INT AS s, count(DISTINCT u)::INT AS u, max(length(s))::INT AS len FROM '${path}'`)).toEqual([
      { s: 37_005, u: 40_000, len: 206 },
    ]);
    expect((await collect(readParquet(path))).rows).toEqual(rows);
  });

  it("writes SNAPPY, GZIP and uncompressed files on request", async () => {
    for (const codec of ["SNAPPY", "GZIP", "UNCOMPRESSED"] as const) {
      const path = await tmp.file(`codec-${codec}.parquet`);
      const w = await openParquetWriter(path, undefined, {
        codec,
        schema: [
          { name: "n", type: "integer" },
          { name: "s", type: "string" },
        ],
      });
      await w.write([
        { n: "1", s: "a" },
        { n: "2", s: null },
      ]);
      await w.close();
      expect(await rowsOf(`SELECT DISTINCT compression FROM parquet_metadata('${path}')`)).toEqual([{ compression: codec }]);
      expect(await rowsOf(`SELECT n::VARCHAR AS n, s FROM '${path}'`)).toEqual([
        { n: "1", s: "a" },
        { n: "2", s: null },
      ]);
    }
  });

  it("keeps the earlier columnTypes API (INT64 from bigints, BOOLEAN)", async () => {
    const path = await tmp.file("legacy.parquet");
    const w = await openParquetWriter(path, ["id", "big", "ok", "label"], { columnTypes: { big: "INT64", ok: "BOOLEAN" } });
    await w.write([
      { id: 1, big: 9007199254740993n, ok: true, label: { k: [1] } },
      { id: 2, big: null, ok: false, label: 7 },
    ]);
    await w.close();
    expect((await collect(readParquet(path))).rows).toEqual([
      { id: "1", big: "9007199254740993", ok: true, label: '{"k":[1]}' },
      { id: "2", big: null, ok: false, label: "7" },
    ]);
  });

  it("refuses a value that does not fit its column with a sentence naming both", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ type: "integer", v: "12.5" }, 'cannot write out.parquet: column "c" is INT64, which takes integers, but row 2 holds "12.5"'],
      [
        { type: "integer", v: "9223372036854775808" },
        'cannot write out.parquet: column "c" is INT64, which takes integers, but row 2 holds "9223372036854775808"',
      ],
      [
        { type: "decimal", v: "1.23456" },
        'cannot write out.parquet: column "c" is DECIMAL(38, 4), which takes decimals with at most 4 fraction digits, but row 2 holds "1.23456"',
      ],
      [
        { type: "decimal", v: "1".repeat(35) },
        `cannot write out.parquet: column "c" is DECIMAL(38, 4), and "${"1".repeat(35)}" in row 2 does not fit it (at most 38 digits)`,
      ],
      [
        { type: "timestamp", v: "2026-11-02 09:30:00+01:00" },
        'cannot write out.parquet: column "c" is TIMESTAMP, which takes canonical UTC timestamps (YYYY-MM-DDTHH:MM:SS.sssZ), but row 2 holds "2026-11-02 09:30:00+01:00"',
      ],
      [{ type: "date", v: "2023-02-29" }, 'cannot write out.parquet: column "c" is DATE, which takes YYYY-MM-DD dates, but row 2 holds "2023-02-29"'],
      [{ type: "boolean", v: "yes" }, 'cannot write out.parquet: column "c" is BOOLEAN, which takes true or false, but row 2 holds "yes"'],
    ];
    for (const [{ type, v }, message] of cases) {
      const path = await tmp.file(`bad-${type}.parquet`);
      const w = await openParquetWriter(path, undefined, { name: "out.parquet", schema: [{ name: "c", type: type as "integer", scale: 4 }] });
      const good =
        type === "integer" ? "1" : type === "decimal" ? "1.5" : type === "timestamp" ? "2026-01-01T00:00:00.000Z" : type === "date" ? "2026-01-01" : true;
      await expect(w.write([{ c: good }, { c: v }])).rejects.toThrow(message);
      await expect(w.write([{ c: good }])).rejects.toThrow(message); // the writer stays failed
      await w.close().catch(() => undefined);
    }
  });

  it("schema auto: numbers DOUBLE, booleans BOOLEAN, objects JSON, strings or a mix STRING; a later misfit is an error", async () => {
    const path = await tmp.file("auto.parquet");
    const w = await openParquetWriter(path, undefined, { schema: "auto", rowGroupSize: 3 });
    const rows = [
      { n: 1, b: true, o: { x: [1, 2] }, s: "a", m: 1, z: null },
      { n: 2.5, b: null, o: [1], s: "b", m: "two", z: null },
      { n: null, b: false, o: null, s: null, m: true, z: null },
      { n: -3, b: true, o: { y: null }, s: "d", m: { k: 1 }, z: "later text" },
    ];
    await w.write(rows);
    await w.close();
    expect(await rowsOf(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '${path}')`)).toEqual([
      { column_name: "n", column_type: "DOUBLE" },
      { column_name: "b", column_type: "BOOLEAN" },
      { column_name: "o", column_type: "JSON" },
      { column_name: "s", column_type: "VARCHAR" },
      { column_name: "m", column_type: "VARCHAR" },
      { column_name: "z", column_type: "VARCHAR" },
    ]);
    expect((await collect(readParquet(path))).rows).toEqual([
      { n: 1, b: true, o: { x: [1, 2] }, s: "a", m: "1", z: null },
      { n: 2.5, b: null, o: [1], s: "b", m: "two", z: null },
      { n: null, b: false, o: null, s: null, m: "true", z: null },
      { n: -3, b: true, o: { y: null }, s: "d", m: '{"k":1}', z: "later text" },
    ]);

    const bad = await tmp.file("auto-bad.parquet");
    const w2 = await openParquetWriter(bad, undefined, { schema: "auto", rowGroupSize: 2, name: "amounts.parquet" });
    await expect(w2.write([{ amount: 1 }, { amount: 2 }, { amount: "n/a" }])).rejects.toThrow(
      'cannot write amounts.parquet: column "amount" is DOUBLE, which takes numbers, but row 3 holds "n/a"',
    );
    await w2.close().catch(() => undefined);
  });

  it("keeps columns named __proto__ or constructor as plain fields", async () => {
    const path = await tmp.file("proto.parquet");
    const w = await openParquetWriter(path, ["__proto__", "constructor", "n"], { schema: [{ name: "n", type: "integer" }] });
    const row: Record<string, unknown> = { constructor: "c", n: "1" };
    Object.defineProperty(row, "__proto__", { value: "p", enumerable: true });
    await w.write([row]);
    await w.close();
    const [back] = (await collect(readParquet(path))).rows;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.entries(back!)).toEqual([
      ["__proto__", "p"],
      ["constructor", "c"],
      ["n", "1"],
    ]);
  });

  it("writes a valid file with no rows", async () => {
    const path = await tmp.file("empty.parquet");
    const w = await openParquetWriter(path, ["a", "b"]);
    expect(await w.close()).toMatchObject({ rows: 0 });
    const back = await collect(readParquet(path));
    expect(back.rows).toEqual([]);
    expect(back.columns).toEqual(["a", "b"]);
    expect(await rowsOf(`SELECT count(*)::INT AS n FROM '${path}'`)).toEqual([{ n: 0 }]);
  });

  it("rejects a file that is not Parquet", async () => {
    const path = await tmp.file("fake2.parquet");
    await writeFile(path, "a,b\n1,2\n");
    await expect(collect(readParquet(path))).rejects.toMatchObject({ code: "BAD_INPUT" });
  });
});

import { writeFile } from "node:fs/promises";
import { parquetMetadataAsync } from "hyparquet";
import { describe, expect, it } from "vitest";
import { fileAsyncBuffer, openParquetWriter, readParquet } from "../../src/formats/parquet.js";
import { collect, tempDir } from "./helpers.js";

const tmp = await tempDir();

describe("parquet", () => {
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
  });

  it("writes typed columns and reads BigInt and Date values back as JSON-safe strings", async () => {
    const path = await tmp.file("typed.parquet");
    const w = await openParquetWriter(path, ["id", "big", "at", "ok", "price", "label"], {
      columnTypes: { id: "INT32", big: "INT64", at: "TIMESTAMP", ok: "BOOLEAN", price: "DOUBLE" },
    });
    await w.write([
      { id: 1, big: 9007199254740993n, at: new Date("2024-03-01T12:34:56.789Z"), ok: true, price: 1.5, label: 7 },
      { id: 2, big: null, at: null, ok: false, price: -0.25, label: { k: [1] } },
    ]);
    await w.close();
    const back = await collect(readParquet(path));
    expect(back.rows).toEqual([
      { id: 1, big: "9007199254740993", at: "2024-03-01T12:34:56.789Z", ok: true, price: 1.5, label: "7" },
      { id: 2, big: null, at: null, ok: false, price: -0.25, label: '{"k":[1]}' },
    ]);
    expect(JSON.parse(JSON.stringify(back.rows))).toEqual(back.rows);
  });

  it("writes a valid file with no rows", async () => {
    const path = await tmp.file("empty.parquet");
    const w = await openParquetWriter(path, ["a", "b"]);
    expect(await w.close()).toMatchObject({ rows: 0 });
    const back = await collect(readParquet(path));
    expect(back.rows).toEqual([]);
    expect(back.columns).toEqual(["a", "b"]);
  });

  it("rejects a file that is not Parquet", async () => {
    const path = await tmp.file("fake.parquet");
    await writeFile(path, "a,b\n1,2\n");
    await expect(collect(readParquet(path))).rejects.toMatchObject({ code: "BAD_INPUT" });
  });
});

import { afterAll, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openStageWriter, readStage } from "../../src/actions/batch/stage.js";
import type { Column } from "../../src/actions/batch/model.js";
import { tempDir } from "../helpers.js";

const dir = tempDir("sluice-stage-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const COLUMNS: Column[] = [
  { name: "id", type: "string" },
  { name: "flag", type: "boolean" },
  { name: "price", type: "decimal", scale: 4 },
  { name: "note", type: "string" },
];

describe("staged typed rows", () => {
  it("round-trip every value exactly: escapes, null versus the text \\N, booleans, unicode, positions", async () => {
    const rows = [
      { id: "a", flag: true, price: "1.0000", note: "tab\there\nnew line\r\nand a \\ backslash", _line: 2 },
      { id: "b", flag: false, price: null, note: "\\N", _line: 7 },
      { id: "c", flag: null, price: "-0.5000", note: "", _line: 9 },
      { id: "\\t literal", flag: true, price: "12345678901234567890.1234", note: "Zürich ✓ 日本", _line: 10 },
    ];
    const path = join(dir, "a.stage");
    const w = await openStageWriter(path, ["id", "flag", "price", "note", "_line"]);
    await w.write(rows.slice(0, 2));
    await w.write(rows.slice(2));
    expect((await w.close()).rows).toBe(4);
    const back = [];
    for await (const batch of readStage(path, COLUMNS, { batchSize: 3, numeric: ["_line"] })) back.push(...batch);
    expect(back).toEqual(rows);
  });

  it("reads large files in bounded batches across read chunks", async () => {
    const path = join(dir, "big.stage");
    const w = await openStageWriter(path, ["id", "note", "_line"]);
    const n = 60_000;
    await w.write(Array.from({ length: n }, (_, i) => ({ id: `id-${i}`, note: i % 7 === 0 ? "multi\nline" : "x".repeat(i % 50), _line: i + 2 })));
    await w.close();
    let count = 0;
    let maxBatch = 0;
    for await (const batch of readStage(path, COLUMNS, { batchSize: 1_000, numeric: ["_line"] })) {
      for (const r of batch) expect(r.id).toBe(`id-${count++}`);
      maxBatch = Math.max(maxBatch, batch.length);
    }
    expect(count).toBe(n);
    expect(maxBatch).toBe(1_000);
  });
});

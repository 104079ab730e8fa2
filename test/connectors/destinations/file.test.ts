/**
 * File destinations: NDJSON and Parquet through the formats layer, temp file + rename on close,
 * last-wins deduplication, and the quarantine sidecar.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Column, TypedRow } from "../../../src/actions/batch/model.js";
import { FileDestination, openDestination } from "../../../src/connectors/destinations/index.js";
import { openReader } from "../../../src/formats/index.js";

const dir = mkdtempSync(join(tmpdir(), "sluice-dest-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const COLUMNS: Column[] = [
  { name: "id", type: "integer" },
  { name: "name", type: "string" },
  { name: "amount", type: "decimal", scale: 4 },
  { name: "active", type: "boolean" },
  { name: "at", type: "timestamp" },
];
const ctx = { runId: "run-1", step: "store" };
const row = (id: number, over: Partial<TypedRow> = {}): TypedRow => ({
  id: String(id),
  name: `n${id}`,
  amount: "1.5000",
  active: true,
  at: "2026-11-02T09:30:00.125001Z",
  ...over,
});

async function readAll(path: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for await (const b of openReader(path)) out.push(...b.rows);
  return out;
}

describe.each(["out.ndjson", "out.parquet"])("file destination %s", (name) => {
  it("writes rows with metadata, deduplicates last-wins across batches, renames into place on close", async () => {
    const path = join(dir, name);
    const d = await openDestination(name, { baseDir: dir });
    expect(d.kind).toBe("file");
    await d.prepare({ table: "ignored", columns: COLUMNS, key: ["id"] });
    expect(await d.write([row(1), row(2), row(1, { name: "one" })], ctx)).toEqual({ stored: 2, duplicate: 1 });
    expect(await d.write([row(1, { name: "one" }), row(3), row(2, { name: "two", amount: "12345678901234567890.1234" })], ctx)).toEqual({
      stored: 2,
      duplicate: 1,
    });
    expect(await d.write([row(3)], ctx)).toEqual({ stored: 0, duplicate: 1 });
    expect(await d.count()).toBe(3);
    expect(existsSync(path)).toBe(false); // nothing in place before close
    await d.close();
    const rows = await readAll(path);
    expect(rows.map((r) => [String(r.id), r.name, r.amount, r.active, r.at])).toEqual([
      ["1", "one", "1.5000", true, "2026-11-02T09:30:00.125001Z"],
      ["3", "n3", "1.5000", true, "2026-11-02T09:30:00.125001Z"],
      ["2", "two", "12345678901234567890.1234", true, "2026-11-02T09:30:00.125001Z"],
    ]);
    expect(Object.keys(rows[0]!)).toEqual(["id", "name", "amount", "active", "at", "_sluice_hash", "_sluice_run_id", "_sluice_loaded_at"]);
    expect(rows[0]!._sluice_run_id).toBe("run-1");
    expect(readdirSync(dir).filter((f) => f.includes("sluice-tmp"))).toEqual([]);
  });

  it("a retried attempt rewrites the whole file; quarantine goes to <file>.quarantine.ndjson once per line", async () => {
    const path = join(dir, `retry-${name}`);
    for (let attempt = 0; attempt < 2; attempt++) {
      const d = new FileDestination(path);
      await d.prepare({ table: "x", columns: COLUMNS, key: undefined });
      expect(await d.write([row(1), row(1), { id: null, name: null, amount: null, active: null, at: null }], ctx)).toEqual({ stored: 2, duplicate: 1 });
      const q = [{ source: "in.csv", line: 4, step: "quality", reasons: ["bad"], record: { id: "x" } }];
      await d.writeQuarantine(q, ctx);
      await d.writeQuarantine(q, ctx);
      await d.close();
    }
    const rows = await readAll(path);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatchObject({ id: null, name: null, active: null });
    const q = readFileSync(`${path}.quarantine.ndjson`, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(q).toHaveLength(1);
    expect(q[0]).toMatchObject({ run_id: "run-1", step: "quality", source: "in.csv", line: 4, reasons: ["bad"], record: { id: "x" } });
  });

  it("beyond the tracked-key bound, deduplicates within a batch only", async () => {
    const path = join(dir, `bounded-${name}`);
    const d = new FileDestination(path, { maxTrackedKeys: 2 });
    await d.prepare({ table: "x", columns: COLUMNS, key: ["id"] });
    expect(await d.write([row(1), row(2), row(3), row(3)], ctx)).toEqual({ stored: 3, duplicate: 1 });
    expect(await d.write([row(1), row(3)], ctx)).toEqual({ stored: 1, duplicate: 1 }); // 1 tracked, 3 not
    await d.close();
    expect((await readAll(path)).map((r) => String(r.id))).toEqual(["1", "2", "3", "3"]);
  });
});

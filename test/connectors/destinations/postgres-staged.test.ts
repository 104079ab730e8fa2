/**
 * Staged rows into PostgreSQL over several connections: split by key so that the last version
 * of a key still wins, binary COPY values exact, counts balanced, first load and reload.
 */
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDestination } from "../../../src/connectors/destinations/index.js";
import { partitionLines } from "../../../src/connectors/destinations/postgres.js";
import { openStageWriter, readStageChunks } from "../../../src/formats/stage.js";
import type { Column, TypedRow } from "../../../src/formats/typed.js";
import { tempDir } from "../../helpers.js";

const PG = "postgres://postgres@127.0.0.1:5432/test";
const schema = `sluice_staged_${randomUUID().replace(/-/g, "").slice(0, 10)}`;
const dir = tempDir("sluice-staged-");
let admin: pg.Client;
beforeAll(async () => {
  admin = new pg.Client({ connectionString: PG, options: "-c TimeZone=UTC" });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
});
afterAll(async () => {
  await admin?.query(`drop schema if exists ${schema} cascade`);
  await admin?.end();
  rmSync(dir, { recursive: true, force: true });
});

const COLUMNS: Column[] = [
  { name: "id", type: "string" },
  { name: "version", type: "integer" },
  { name: "amount", type: "decimal", scale: 2 },
  { name: "at", type: "timestamp" },
];

async function staged(rows: TypedRow[], name: string) {
  const path = join(dir, `${name}.stage`);
  const w = await openStageWriter(path, COLUMNS);
  await w.write(
    rows,
    rows.map((_, i) => i + 2),
  );
  await w.close();
  const chunks = [];
  for await (const c of readStageChunks(path, COLUMNS)) chunks.push(c);
  return { data: Buffer.concat(chunks.map((c) => c.data)), rows: chunks.reduce((n, c) => n + c.rows, 0) };
}

describe("staged rows over several PostgreSQL connections", () => {
  it("splits lines by key: one key, one part, order kept, nothing lost", async () => {
    const rows = Array.from({ length: 9_000 }, (_, i) => ({ id: `k${i % 1000}`, version: String(i), amount: "1.00", at: "2026-11-02T09:30:00.000Z" }));
    const chunk = await staged(rows, "split");
    const parts = partitionLines(chunk, [1], 2);
    expect(parts.reduce((n, p) => n + p.rows, 0)).toBe(9_000);
    const where = new Map<string, number>();
    parts.forEach((p, k) => {
      let last = new Map<string, number>();
      const lines = Array.from(p.starts.subarray(0, p.rows), (s) => chunk.data.toString("utf8", s, chunk.data.indexOf(10, s)));
      for (const line of lines) {
        const [, id, version] = line.split("\t");
        expect(where.get(id!) ?? k).toBe(k);
        where.set(id!, k);
        expect(Number(version)).toBeGreaterThan(last.get(id!) ?? -1);
        last = last.set(id!, Number(version));
      }
    });
    // Both parts get work.
    expect(Math.min(...parts.map((p) => p.rows))).toBeGreaterThan(3_000);
  });

  it("stores the last version of every key, exact values, and counts reloads as duplicates", async () => {
    const dest = await openDestination(PG);
    const table = `${schema}.t1`;
    try {
      await dest.prepare({ table, columns: COLUMNS, key: ["id"] });
      // 30,000 rows, 10,000 keys, each key three times with different content: the last wins.
      const rows: TypedRow[] = Array.from({ length: 30_000 }, (_, i) => ({
        id: `k${i % 10_000}`,
        version: String(Math.floor(i / 10_000)),
        amount: `${i}.${String(i % 100).padStart(2, "0")}`,
        at: `2026-11-02T09:30:${String(i % 60).padStart(2, "0")}.${String(i % 1000).padStart(3, "0")}Z`,
      }));
      const chunk = await staged(rows, "load");
      const first = await dest.writeStaged(chunk, { runId: "r1", step: "store" });
      expect(first.stored + first.duplicate).toBe(30_000);
      const got = await admin.query(
        `select id, version::text, amount::text, to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at from ${table} order by id`,
      );
      expect(got.rows).toHaveLength(10_000);
      const want = new Map(rows.slice(20_000).map((r) => [r.id, r]));
      for (const r of got.rows) expect(r).toEqual(want.get(r.id));
      // The same batch again: every row is unchanged content.
      const again = await dest.writeStaged(chunk, { runId: "r2", step: "store" });
      expect(again).toEqual({ stored: 0, duplicate: 30_000 });
    } finally {
      await dest.close();
    }
  });
});

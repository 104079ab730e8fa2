/**
 * The two content hashes at the destination: a keyed table holds the `text` hash the conversion
 * staged, and rows written as objects (the stream plane's path) get the same one, so a row loaded
 * both ways is unchanged, not updated; a keyless target keys on the `canonical` hash earlier
 * versions wrote, even when the rows were staged with a key (a store step that drops it).
 */
import { describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { join } from "node:path";
import { storeValidatedData } from "../../src/actions/batch/store.js";
import { openDestination } from "../../src/connectors/destinations/index.js";
import { contentHash, textHash } from "../../src/formats/stage.js";
import { COLUMNS, context, dataset, trade } from "./typed-datasets.js";

const ROWS = [trade("T1"), trade("T2", { price: "2.5000", symbol: "tab\there" }), trade("T3", { quantity: null })];
const values = (r: Record<string, unknown>) => COLUMNS.map((c) => (r[c.name] ?? null) as string | null);

function hashesIn(db: string, table: string): Map<string, string> {
  const d = new Database(db, { readonly: true });
  try {
    const rows = d.prepare(`SELECT trade_id, _sluice_hash AS h FROM ${table}`).all() as { trade_id: string; h: string }[];
    return new Map(rows.map((r) => [r.trade_id, r.h]));
  } finally {
    d.close();
  }
}

describe("content hashes at the destination", () => {
  it("a keyed table holds the staged text hash, and the same rows written as objects are unchanged", async () => {
    const { ref, root } = await dataset([{ source: "a.csv", rows: ROWS }], { key: ["trade_id"] });
    const db = join(root, "w.db");
    const out = await storeValidatedData({ dataset: ref, destination: `sqlite:${db}`, table: "t" }, context(root, { step: "data-storage" }));
    expect(out.rowsStored).toBe(3);
    const stored = hashesIn(db, "t");
    for (const r of ROWS) expect(stored.get(r.trade_id as string)).toBe(textHash(values(r), COLUMNS));

    const dest = await openDestination(`sqlite:${db}`);
    try {
      await dest.prepare({ table: "t", columns: COLUMNS, key: ["trade_id"] });
      const again = await dest.write(
        ROWS.map((r) => ({ ...r })),
        { runId: "r-2", step: "stream-store" },
      );
      expect(again).toMatchObject({ stored: 0, duplicate: 3 });
    } finally {
      await dest.close();
    }
  });

  it("a keyless target gets the canonical hash, and a second load stores nothing", async () => {
    const { ref, root } = await dataset([{ source: "a.csv", rows: ROWS }], { key: ["trade_id"] });
    const db = join(root, "w.db");
    const ctx = context(root, { step: "data-storage" });
    const first = await storeValidatedData({ dataset: ref, destination: `sqlite:${db}`, table: "k", key: [] }, ctx);
    expect(first.rowsStored).toBe(3);
    const stored = hashesIn(db, "k");
    for (const r of ROWS) expect(stored.get(r.trade_id as string)).toBe(contentHash(values(r)));
    const second = await storeValidatedData({ dataset: ref, destination: `sqlite:${db}`, table: "k", key: [] }, ctx);
    expect(second).toMatchObject({ rowsStored: 0, rowsDuplicate: 3 });
    expect(hashesIn(db, "k").size).toBe(3);
  });
});

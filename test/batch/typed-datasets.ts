/** Typed datasets of stage parts on disk, and an action context over them, for the batch steps' tests. */
import { afterAll } from "vitest";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeDataset, type Accounting } from "../../src/actions/batch/dataset.js";
import type { Column } from "../../src/actions/batch/model.js";
import type { ActionContext } from "../../src/actions/types.js";
import { openStageWriter, rowHashKind } from "../../src/formats/stage.js";
import { actionContext, tempDir } from "../helpers.js";

export const COLUMNS: Column[] = [
  { name: "trade_id", type: "string" },
  { name: "executed_at", type: "timestamp" },
  { name: "symbol", type: "string" },
  { name: "quantity", type: "integer" },
  { name: "price", type: "decimal", scale: 4 },
];

export type Row = Record<string, string | boolean | null>;
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

export function trade(id: string | null, over: Row = {}): Row {
  return { trade_id: id, executed_at: "2026-11-02T09:30:00.000Z", symbol: "ACME", quantity: "10", price: "1.0000", ...over };
}

/** A typed dataset of stage parts, one per source, rows at lines 2, 3, … */
export async function dataset(
  files: { source: string; rows: Row[] }[],
  opts: { columns?: Column[]; prior?: Partial<Accounting>; quarantine?: string[]; key?: string[] } = {},
): Promise<{ ref: string; root: string }> {
  const root = tempDir("sluice-merge-");
  dirs.push(root);
  const dir = join(root, "in");
  mkdirSync(dir, { recursive: true });
  const parts = await Promise.all(
    files.map(async (f, i) => {
      const path = join(dir, `part-${i}.stage`);
      // Typed with a key, rows carry `text` hashes, as a conversion step stages them.
      const w = await openStageWriter(path, opts.columns ?? COLUMNS, rowHashKind(opts.key));
      await w.write(
        f.rows,
        f.rows.map((_, j) => j + 2),
      );
      await w.close();
      return { path, format: "stage" as const, source: f.source, rows: f.rows.length };
    }),
  );
  const rows = files.reduce((n, f) => n + f.rows.length, 0);
  const q = opts.prior?.rowsQuarantined ?? 0;
  const d = opts.prior?.rowsDuplicate ?? 0;
  const ref = await writeDataset(dir, {
    step: "format-standardization",
    typed: true,
    columns: opts.columns ?? COLUMNS,
    ...(opts.key ? { key: opts.key, hash: rowHashKind(opts.key) } : {}),
    parts,
    rows,
    accounting: { rowsIn: rows + q + d, rowsQuarantined: q, rowsDuplicate: d },
    quarantine: opts.quarantine ?? [],
    meta: { ingest: { scope: "bulk:/data/in", files: files.map((f) => ({ path: f.source, checksum: `c-${f.source}`, size: 1 })) }, source: "bulk" },
  });
  return { ref, root };
}

export function context(root: string, over: Partial<ActionContext> = {}): ActionContext & { progressRows: number[] } {
  const progressRows: number[] = [];
  return {
    ...actionContext({
      workflow: "bulk-file-ingestion",
      step: "data-consolidation",
      artifactsDir: join(root, "artifacts"),
      home: root,
      progress: (u) => void (u.rows !== undefined && progressRows.push(u.rows)),
      ...over,
    }),
    progressRows,
  };
}

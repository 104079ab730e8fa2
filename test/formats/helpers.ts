import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import type { RecordBatch, RecordError } from "../../src/formats/types.js";

/** A fresh temp dir for this test file, removed when the file's tests are done. */
export async function tempDir(): Promise<{ dir: string; file: (name: string, content?: string | Buffer) => Promise<string> }> {
  const dir = await mkdtemp(join(tmpdir(), "sluice-formats-"));
  afterAll(() => rm(dir, { recursive: true, force: true }));
  return {
    dir,
    async file(name, content) {
      const path = join(dir, name);
      if (content !== undefined) await writeFile(path, content);
      return path;
    },
  };
}

export interface Collected {
  rows: Record<string, unknown>[];
  lines: number[];
  errors: RecordError[];
  columns: readonly string[] | undefined;
  batches: number;
}

/** Drain a reader, checking on the way that every batch is well formed. */
export async function collect(batches: AsyncIterable<RecordBatch>): Promise<Collected> {
  const out: Collected = { rows: [], lines: [], errors: [], columns: undefined, batches: 0 };
  for await (const b of batches) {
    if (b.rows.length !== b.lines.length) throw new Error("rows and lines differ in length");
    out.rows.push(...b.rows);
    out.lines.push(...b.lines);
    out.errors.push(...b.errors);
    if (b.columns) out.columns = b.columns;
    out.batches++;
  }
  return out;
}

/**
 * The bulk file workflow end to end: mixed formats in parallel, a bad file isolated, duplicates
 * merged, everything accounted for, and a second daily run taking only the new files.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRun, executeRun, runDetail } from "../../src/engine/index.js";
import { loadWorkflowFile } from "../../src/spec/load.js";
import { writeTradesCsv } from "../../src/samples/trades.js";
import type { Workflow } from "../../src/spec/schema.js";
import { testEnv, tempDir, type TestEnv } from "../helpers.js";
import { ROOT } from "../cli/cli-helpers.js";

let env: TestEnv;
let wf: Workflow;
let dir: string;
beforeAll(async () => {
  env = testEnv();
  const loaded = await loadWorkflowFile(join(ROOT, "workflows", "base-data-ingestion-workflow-bulk-file.yaml"), { actions: env.actions });
  expect(loaded.problems).toEqual([]);
  wf = loaded.workflows[0]!.workflow;
  dir = tempDir("sluice-bulk-");
});
afterAll(async () => {
  await env.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

async function run(params: Record<string, string>) {
  const created = await createRun(env.store, { workflow: wf, params });
  const done = await executeRun(created.id, { store: env.store, actions: env.actions, home: env.home });
  const d = await runDetail(env.store, created.id);
  return { run: done, out: (step: string) => d.steps.find((s) => s.name === step)!.outputs! };
}

describe("bulk file ingestion", () => {
  it("processes mixed files in parallel, isolates a bad file, and takes only new files the next day", async () => {
    const input = join(dir, "in");
    mkdirSync(input);
    for (const f of ["trades-c.ndjson", "trades-d.json"]) copyFileSync(join(ROOT, "examples", "data", "bulk", f), join(input, f));
    const a = await writeTradesCsv(join(input, "a.csv"), { rows: 3_000, seed: 21, idPrefix: "A-", badShare: 0.02 });
    writeFileSync(join(input, "broken.json"), '{"not": "an array"}'); // isolated as a failed file
    const warehouse = join(dir, "w.db");
    const params = { directory: input, destination: `sqlite:${warehouse}`, table: "bulk" };

    const first = await run(params);
    expect(first.run.status, JSON.stringify(first.run.error)).toBe("succeeded");
    expect(first.out("file-discovery")).toMatchObject({ found: 4, new: 4, alreadyIngested: 0 });
    const processed = first.out("parallel-file-processing");
    expect(processed).toMatchObject({ files: 3, filesFailed: 1 });
    expect((processed.failedFiles as { path: string }[])[0]!.path).toContain("broken.json");
    const stored = first.out("bulk-storage");
    expect(stored.rowsIn).toBe(3_000 + 500 + 500);
    expect(Number(stored.rowsStored) + Number(stored.rowsQuarantined) + Number(stored.rowsDuplicate)).toBe(stored.rowsIn);
    expect(Number(stored.rowsQuarantined) + Number(stored.rowsDuplicate)).toBe(a.bad);

    const db = new Database(warehouse, { readonly: true });
    expect((db.prepare("SELECT count(*) AS n, count(DISTINCT trade_id) AS k FROM bulk").get())).toEqual({ n: stored.rowsStored, k: stored.rowsStored });
    db.close();

    // The next day: one new file; the three ingested ones are skipped, the broken one is tried again.
    await writeTradesCsv(join(input, "b.csv"), { rows: 200, seed: 22, idPrefix: "B-", badShare: 0 });
    const second = await run(params);
    expect(second.run.status).toBe("succeeded");
    expect(second.out("file-discovery")).toMatchObject({ found: 5, new: 2, alreadyIngested: 3 });
    expect(second.out("bulk-storage")).toMatchObject({ rowsIn: 200, rowsStored: 200 });
  });

  it("fails the processing step when more files fail than the threshold allows", async () => {
    const input = join(dir, "bad");
    mkdirSync(input);
    writeFileSync(join(input, "x.json"), "{}");
    writeFileSync(join(input, "y.parquet"), "not parquet at all");
    const r = await run({ directory: input, table: "t", destination: `sqlite:${join(dir, "w2.db")}` });
    expect(r.run.status).toBe("failed");
    expect(r.run.error?.code).toBe("TOO_MANY_FAILED_FILES");
  });
});

/**
 * The bulk file workflow end to end: mixed formats in parallel, a bad file isolated, duplicates
 * merged, everything accounted for, and a second daily run taking only the new files. A file
 * whose content cannot be read is remembered as known bad (on SQLite and on PostgreSQL) and left
 * out until its content changes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { DuckDBInstance } from "@duckdb/node-api";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FailedFile } from "../../src/actions/batch/parallel.js";
import { createRun, executeRun, runDetail } from "../../src/engine/index.js";
import { loadWorkflowFile } from "../../src/spec/load.js";
import { writeTradesCsv } from "../../src/samples/trades.js";
import type { Workflow } from "../../src/spec/schema.js";
import type { StateStore } from "../../src/store/types.js";
import { testEnv, tempDir, type TestEnv } from "../helpers.js";
import { ROOT } from "../cli/cli-helpers.js";
import { bothStores } from "../stores.js";

const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

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
    expect(db.prepare("SELECT count(*) AS n, count(DISTINCT trade_id) AS k FROM bulk").get()).toEqual({ n: stored.rowsStored, k: stored.rowsStored });
    db.close();

    // The next day: one new file; the three ingested ones are skipped, the broken one is known bad.
    await writeTradesCsv(join(input, "b.csv"), { rows: 200, seed: 22, idPrefix: "B-", badShare: 0 });
    const second = await run(params);
    expect(second.run.status).toBe("succeeded");
    expect(second.out("file-discovery")).toMatchObject({ found: 5, new: 1, alreadyIngested: 3, knownBad: [{ path: join(input, "broken.json") }] });
    expect(second.out("parallel-file-processing")).toMatchObject({ files: 1, filesFailed: 0 });
    expect(second.out("bulk-storage")).toMatchObject({ rowsIn: 200, rowsStored: 200 });
  });

  it("fails the processing step when more files fail than the threshold allows", async () => {
    const input = join(dir, "bad");
    mkdirSync(input);
    writeFileSync(join(input, "x.json"), "{}");
    writeFileSync(join(input, "y.parquet"), "not parquet at all");
    const params = { directory: input, table: "t", destination: `sqlite:${join(dir, "w2.db")}` };
    const r = await run(params);
    expect(r.run.status).toBe("failed");
    expect(r.run.error?.code).toBe("TOO_MANY_FAILED_FILES");
    // Their content is what cannot be read: the next run leaves both out and stores nothing.
    const again = await run(params);
    expect(again.run.status, JSON.stringify(again.run.error)).toBe("succeeded");
    expect(again.out("file-discovery")).toMatchObject({ found: 2, new: 0, empty: true });
    expect((again.out("file-discovery").knownBad as { path: string }[]).map((k) => k.path)).toEqual([join(input, "x.json"), join(input, "y.parquet")]);
  });
});

describe.each(bothStores("bulk"))("known-bad files in the bulk ledger on $dialect", (backend) => {
  let shared: StateStore | undefined;
  let benv: TestEnv;
  let bwf: Workflow;
  beforeAll(async () => {
    shared = await backend.open();
    benv = testEnv([], shared ? { store: shared } : {});
    bwf = (await loadWorkflowFile(join(ROOT, "workflows", "base-data-ingestion-workflow-bulk-file.yaml"), { actions: benv.actions })).workflows[0]!.workflow;
  });
  afterAll(async () => {
    await benv.cleanup();
    await shared?.close();
    await backend.drop();
  });
  const bulk = async (params: Record<string, string>) => {
    const created = await createRun(benv.store, { workflow: bwf, params });
    const done = await executeRun(created.id, { store: benv.store, actions: benv.actions, home: benv.home });
    const d = await runDetail(benv.store, created.id);
    return { run: done, out: (step: string) => d.steps.find((s) => s.name === step)!.outputs! };
  };

  it("a corrupt Parquet file is failed once, remembered with its reason, and taken again once replaced by a valid one", async () => {
    const input = join(dir, `known-bad-${backend.dialect}`);
    mkdirSync(input);
    await writeTradesCsv(join(input, "a.csv"), { rows: 300, seed: 41, idPrefix: "A-", badShare: 0 });
    await writeTradesCsv(join(input, "b.csv"), { rows: 200, seed: 42, idPrefix: "B-", badShare: 0 });
    const bad = join(input, "positions.parquet");
    writeFileSync(bad, "PAR1\u0000\u0001 a truncated upload, not a Parquet file");
    const badSum = sha(bad);
    const warehouse = join(dir, `known-bad-${backend.dialect}.db`);
    const params = { directory: input, destination: `sqlite:${warehouse}`, table: "trades" };
    const scope = `bulk-file-ingestion:${input}`;
    const stored = () => {
      const db = new Database(warehouse, { readonly: true });
      const n = (db.prepare("SELECT count(*) AS n FROM trades").get() as { n: number }).n;
      db.close();
      return n;
    };

    // Run 1: the good rows are stored, the Parquet file is isolated and recorded as known bad.
    const one = await bulk(params);
    expect(one.run.status, JSON.stringify(one.run.error)).toBe("succeeded");
    expect(one.out("file-discovery")).toMatchObject({ found: 3, new: 3, knownBad: [] });
    const failed = one.out("parallel-file-processing").failedFiles as FailedFile[];
    expect(failed).toEqual([
      {
        path: bad,
        code: "BAD_INPUT",
        knownBad: true,
        reason: expect.stringMatching(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: not a readable Parquet file`)),
      },
    ]);
    expect(one.out("bulk-storage")).toMatchObject({ rowsIn: 500, rowsStored: 500 });
    expect(stored()).toBe(500);
    const [remembered, ...others] = await benv.store.rejectedFiles(scope, [badSum]);
    expect(others).toEqual([]);
    expect(remembered).toMatchObject({ checksum: badSum, path: bad, reason: failed[0]!.reason, runId: one.run.id });
    expect(await benv.store.ingestedChecksums(scope, [badSum])).toEqual(new Set());

    // Run 2, nothing new: succeeds with 0 rows and reports the known-bad file with its reason.
    const two = await bulk(params);
    expect(two.run.status, JSON.stringify(two.run.error)).toBe("succeeded");
    expect(two.out("file-discovery")).toMatchObject({
      found: 3,
      new: 0,
      alreadyIngested: 2,
      empty: true,
      knownBad: [{ path: bad, reason: failed[0]!.reason, since: remembered!.rejectedAt }],
      note: `no new files in ${input} (2 already ingested, 1 known bad): the dataset is empty and the run will store nothing`,
    });
    expect(two.out("parallel-file-processing")).toMatchObject({ files: 0, filesFailed: 0 });
    expect(two.out("bulk-storage")).toMatchObject({ rowsIn: 0, rowsStored: 0 });
    expect(stored()).toBe(500);

    // The file is replaced by a valid one (written by DuckDB): new content, taken by run 3.
    rmSync(bad);
    const duck = await DuckDBInstance.create(":memory:");
    const c = await duck.connect();
    await c.run(`COPY (
      SELECT 'P-' || i AS trade_id, TIMESTAMPTZ '2026-01-02 09:30:00+00' + INTERVAL (i) SECOND AS executed_at,
             'MSFT' AS symbol, 'SELL' AS side, (i % 90 + 1)::BIGINT AS quantity, CAST(i * 1.25 + 100 AS DECIMAL(18, 4)) AS price,
             'ACC-7' AS account, 'ann@example.com' AS trader_email, 'from DuckDB' AS notes
        FROM range(1, 51) t(i)) TO '${bad}' (FORMAT parquet)`);
    c.closeSync();
    duck.closeSync();
    const three = await bulk(params);
    expect(three.run.status, JSON.stringify(three.run.error)).toBe("succeeded");
    expect(three.out("file-discovery")).toMatchObject({ found: 3, new: 1, alreadyIngested: 2, knownBad: [] });
    expect(three.out("parallel-file-processing")).toMatchObject({ files: 1, filesFailed: 0 });
    expect(three.out("bulk-storage")).toMatchObject({ rowsIn: 50, rowsStored: 50 });
    expect(stored()).toBe(550);
    const db = new Database(warehouse, { readonly: true });
    expect(db.prepare("SELECT trade_id, price, executed_at FROM trades WHERE trade_id = 'P-2'").get()).toEqual({
      trade_id: "P-2",
      price: 102.5,
      executed_at: "2026-01-02T09:30:02.000Z",
    });
    db.close();
    expect(await benv.store.ingestedChecksums(scope, [sha(bad)])).toEqual(new Set([sha(bad)]));
  });
});

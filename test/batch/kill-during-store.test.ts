/**
 * `kill -9` of `sluice run` in the middle of storing, then `sluice resume`: every valid row ends
 * up in the warehouse exactly once, and the steps before storage are not run again.
 */
import { afterAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeTradesCsv } from "../../src/samples/trades.js";
import { tempDir } from "../helpers.js";
import { ROOT, sluice, sluiceAsync, waitForStderr } from "../cli/cli-helpers.js";

const cwd = tempDir("sluice-kill-store-");
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

function storedRows(db: string): number {
  if (!existsSync(db)) return 0;
  try {
    const d = new Database(db, { readonly: true, fileMustExist: true });
    try {
      return (d.prepare("SELECT count(*) AS n FROM trades").get() as { n: number }).n;
    } finally {
      d.close();
    }
  } catch {
    return 0; // table not created yet
  }
}

describe("kill -9 while storing", () => {
  it("resumes and stores every valid row exactly once", async () => {
    const file = join(cwd, "big.csv");
    const summary = await writeTradesCsv(file, { rows: 400_000, seed: 5, badShare: 0.01 });
    const warehouse = join(cwd, "warehouse.db");
    const env = { SLUICE_LEASE_TTL_MS: "1500" };
    const args = [
      "run",
      join(ROOT, "workflows", "base-data-ingestion-workflow-standard-ingestion.yaml"),
      "--param",
      `source=${file}`,
      "--param",
      `destination=sqlite:${warehouse}`,
      "--param",
      "table=trades",
      "--param",
      `schema=${join(ROOT, "examples", "schemas", "trades.yaml")}`,
    ];

    const child = sluiceAsync(args, { cwd, env });
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/, 60_000)) as RegExpMatchArray;
    await waitForStderr(child, /step data-storage started/, 120_000);
    // Wait until some batches are committed, then kill in the middle of the step.
    const t0 = Date.now();
    while (storedRows(warehouse) === 0 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 10));
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const before = storedRows(warehouse);
    expect(before).toBeGreaterThan(0);

    await new Promise((r) => setTimeout(r, 1_700)); // let the dead process's lease expire
    const resumed = sluice(["resume", runId!, "--json"], { cwd, env });
    expect(resumed.code, resumed.stderr).toBe(0);
    const doc = JSON.parse(resumed.stdout);
    const storage = doc.steps.find((s: { name: string }) => s.name === "data-storage");
    expect(storage.attempts.map((a: { status: string }) => a.status)).toEqual(["interrupted", "succeeded"]);
    for (const s of doc.steps.filter((s: { name: string }) => s.name !== "data-storage")) expect(s.attempts).toHaveLength(1);

    const out = storage.outputs;
    const valid = summary.rows - out.rowsQuarantined;
    const d = new Database(warehouse, { readonly: true });
    const counts = d.prepare("SELECT count(*) AS n, count(DISTINCT trade_id) AS ids FROM trades").get();
    d.close();
    expect(counts).toEqual({ n: valid, ids: valid });
    expect(out.rowsIn).toBe(summary.rows);
    // Rows the killed attempt had committed are found unchanged by the second: duplicates, not new rows.
    expect(out.rowsStored + out.rowsDuplicate).toBe(valid);
    expect(out.rowsDuplicate).toBeGreaterThanOrEqual(before);
  }, 180_000);
});

/**
 * The data half of the recovery workflow end to end through `sluice run`: discover → reconstruct
 * → store, in a workflow file of its own, against a primary API that fails from page 4, a
 * fallback API and a CSV fallback that disagree on 10 keys, into a SQLite table holding 1–500
 * except 201–250. Then a rerun stores 0 rows; and test 10 of issue 11: `kill -9` in the middle
 * of reconstruction, `sluice resume`, no duplicates, provenance intact.
 *
 * The CLI runs as a child process (sluiceAsync): the APIs live in this process, whose event loop
 * must keep serving while the child runs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { scratch, waitUntil } from "../helpers.js";
import { sluiceAsync, waitForStderr, type CliResult } from "../cli/cli-helpers.js";
import type { ConflictReport, SourceRanking } from "../../src/actions/recovery/contract.js";
import { fillDestination, item, itemsCsv, range, startPagedApi, type PagedApi } from "./sources.js";

const fresh = scratch();
const now = Date.now();
const DISAGREE = [210, 211, 212, 213, 214, 900, 901, 902, 903, 904];
const all = range(1, 1000).map((id) => item(id, now));
const apis: PagedApi[] = [];

const WORKFLOW = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: recovery-data
spec:
  params:
    primary: { type: string }
    fallback: { type: string }
    destination: { type: string }
    table: { type: string, default: items }
    range: { type: string, default: "1-1000" }
  steps:
    - name: discover
      agent: data-scheduler
      action: discover_fallback_sources
      with:
        primary: \${{ params.primary }}
        fallbacks: \${{ params.fallback }}
        key: [id]
        destination: \${{ params.destination }}
        table: \${{ params.table }}
    - name: reconstruct
      agent: data-collector
      action: reconstruct_from_multiple_sources
      dependsOn: [discover]
      with:
        sources: \${{ steps.discover.outputs.sources }}
        key: [id]
        destination: \${{ params.destination }}
        table: \${{ params.table }}
        range: \${{ params.range }}
    - name: store
      agent: data-merger
      action: validate_and_store_recovered_data
      dependsOn: [reconstruct]
      with:
        dataset: \${{ steps.reconstruct.outputs.dataset }}
        destination: \${{ params.destination }}
        table: \${{ params.table }}
        key: [id]
`;

function finished(child: ChildProcess): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  return new Promise((res) => child.once("close", (code) => res({ code: code ?? -1, stdout, stderr })));
}

interface RunDoc {
  id: string;
  status: string;
  steps: { name: string; status: string; outputs: Record<string, unknown> | null; attempts: unknown[] }[];
}
const outputs = (doc: RunDoc, step: string) => doc.steps.find((s) => s.name === step)!.outputs!;

let primary: PagedApi;
let apiB: PagedApi;
beforeAll(async () => {
  primary = await startPagedApi({ rows: all, status: (page) => (page >= 4 ? 503 : undefined) });
  apiB = await startPagedApi({ rows: all });
  apis.push(primary, apiB);
});
afterAll(async () => {
  await Promise.all(apis.map((a) => a.close()));
});

describe("discover → reconstruct → store through sluice run", () => {
  let cwd: string;
  let wf: string;
  let params: string[];
  beforeAll(async () => {
    cwd = fresh("sluice-rec-e2e-");
    wf = join(cwd, "recovery.yaml");
    writeFileSync(wf, WORKFLOW);
    const csv = join(cwd, "mirror.csv");
    writeFileSync(csv, itemsCsv(all.map((i) => (DISAGREE.includes(i.id) ? { ...i, amount: "1.00" } : i))));
    await fillDestination(
      `sqlite:${join(cwd, "warehouse.db")}`,
      "items",
      [...range(1, 200), ...range(251, 500)].map((id) => item(id, now)),
    );
    params = ["--param", `primary=${primary.url}`, "--param", `fallback=${apiB.url},${csv}`, "--param", "destination=sqlite:warehouse.db"];
  });

  it("completes the table from the ranked fallbacks, with the conflicts reported and every row's origin", async () => {
    const r = await finished(sluiceAsync(["run", wf, ...params, "--json"], { cwd }));
    expect(r.stderr).not.toMatch(/failed/);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as RunDoc;
    expect(doc.status).toBe("succeeded");
    const discover = outputs(doc, "discover");
    expect(discover).toMatchObject({ accepted: 2, rejected: [{ source: primary.url, reason: "unreachable" }] });
    const ranking = JSON.parse(readFileSync(String(discover.sources), "utf8")) as SourceRanking;
    const first = ranking.candidates.find((c) => c.rank === 1)!.source;

    const rec = outputs(doc, "reconstruct");
    expect(rec).toMatchObject({
      gapsBefore: [
        { from: 201, to: 250 },
        { from: 501, to: 1000 },
      ],
      missing: 550,
      recovered: 550,
      conflicts: 10,
      bySource: { [first]: 550 },
    });
    const report = JSON.parse(readFileSync(String(rec.conflictReport), "utf8")) as ConflictReport;
    expect(report.conflicts.map((c) => Number(c.key.id)).sort((a, b) => a - b)).toEqual(DISAGREE);
    expect(new Set(report.conflicts.map((c) => c.kept.source))).toEqual(new Set([first]));

    expect(outputs(doc, "store")).toMatchObject({ rowsStored: 550, rowsDuplicate: 0, gapsAfter: [], gapsRemaining: 0, lineageRows: 550 });
    const db = new Database(join(cwd, "warehouse.db"), { readonly: true });
    try {
      expect(db.prepare("select count(*) as n, count(distinct id) as d from items").get()).toEqual({ n: 1000, d: 1000 });
      expect(db.prepare("select count(*) as n from items_lineage").get()).toEqual({ n: 550 });
      // The kept value of a disagreeing key is the first-ranked source's.
      const amount = (db.prepare("select amount from items where id = 900").get() as { amount: number }).amount;
      expect(amount).toBe(first === apiB.url ? 900 : 1);
    } finally {
      db.close();
    }
  }, 60_000);

  it("a rerun stores 0 rows", async () => {
    const r = await finished(sluiceAsync(["run", wf, ...params, "--json"], { cwd }));
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as RunDoc;
    expect(outputs(doc, "reconstruct")).toMatchObject({ missing: 0, recovered: 0 });
    expect(outputs(doc, "store")).toMatchObject({ rowsStored: 0, gapsRemaining: 0 });
  }, 60_000);
});

describe("test 10: kill -9 in the middle of reconstruction, then sluice resume", () => {
  it("finishes with no duplicates and provenance intact", async () => {
    const cwd = fresh("sluice-rec-kill-");
    const wf = join(cwd, "recovery.yaml");
    writeFileSync(wf, WORKFLOW);
    const slow = await startPagedApi({ rows: all, delayMs: 250 });
    apis.push(slow);
    await fillDestination(
      `sqlite:${join(cwd, "warehouse.db")}`,
      "items",
      [...range(1, 200), ...range(251, 500)].map((id) => item(id, now)),
    );
    const params = ["--param", `primary=${primary.url}`, "--param", `fallback=${slow.url}`, "--param", "destination=sqlite:warehouse.db"];

    const child = sluiceAsync(["run", wf, ...params], { cwd });
    const id = (await waitForStderr(child, /run (r-[a-z0-9]+-[0-9a-f]+) created/))[1]!;
    // Reconstruction has begun when its folder exists and the slow API is being walked again.
    await waitUntil(() => existsSync(join(cwd, ".sluice", "runs", id, "artifacts", "reconstruct")), 30_000, "reconstruction to start");
    const asked = slow.requests.length;
    await waitUntil(() => slow.requests.length >= asked + 2, 30_000, "reconstruction to read pages");
    child.kill("SIGKILL");
    await new Promise((r) => child.once("close", r));

    const r = await finished(sluiceAsync(["resume", id, "--json"], { cwd }));
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as RunDoc;
    expect(doc.status).toBe("succeeded");
    expect(outputs(doc, "store")).toMatchObject({ rowsStored: 550, gapsRemaining: 0 });
    const db = new Database(join(cwd, "warehouse.db"), { readonly: true });
    try {
      expect(db.prepare("select count(*) as n, count(distinct id) as d from items").get()).toEqual({ n: 1000, d: 1000 });
      expect(db.prepare("select count(*) as n, count(distinct id) as d from items_lineage").get()).toEqual({ n: 550, d: 550 });
      expect(db.prepare("select position from items_lineage where id = 201").get()).toEqual({ position: `${slow.url}?page=3#1` });
    } finally {
      db.close();
    }
  }, 120_000);
});

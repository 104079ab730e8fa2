/**
 * `sluice status` of a recovery run: the decision record with every strategy's probabilities, the
 * gap ledger before and after, the conflict count. The run is real (the real strategy selector
 * plus two small steps that write the ledger and conflict documents a reconstruction writes).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { defineAction } from "../../src/actions/types.js";
import type { ConflictReport, FailureAnalysis, GapLedger } from "../../src/actions/recovery/contract.js";
import { runDetail } from "../../src/engine/index.js";
import { recoveryLines, recoverySummary } from "../../src/cli/recovery-status.js";
import { statusCommand } from "../../src/cli/status.js";
import type { RunRecord } from "../../src/store/types.js";
import { runWorkflow, scratch, testEnv, workflow, type TestEnv } from "../helpers.js";

const dir = scratch();
// eslint-disable-next-line no-control-regex
const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

const ledger = (gaps: GapLedger["gaps"], missing: number): GapLedger => ({
  kind: "sluice.dev/gap-ledger-v1",
  key: ["trade_id"],
  domain: { from: "declared", ranges: [{ from: 1, to: 1000 }], count: 1000 },
  held: 1000 - missing,
  gaps,
  missing,
  computedAt: new Date().toISOString(),
});

/** Writes the documents a reconstruction step writes and names them in its outputs. */
const reconstruct = defineAction({
  kind: "agent",
  owner: "test-recovery",
  action: "reconstruct",
  description: "write a gap ledger and a conflict report",
  input: z.object({}).strict(),
  async run(_input, ctx) {
    const d = join(ctx.artifactsDir, ctx.step);
    mkdirSync(d, { recursive: true });
    const gapLedger = join(d, "gaps.json");
    writeFileSync(
      gapLedger,
      JSON.stringify(
        ledger(
          [
            { from: 201, to: 250 },
            { from: 501, to: 1000 },
          ],
          550,
        ),
      ),
    );
    const report: ConflictReport = {
      kind: "sluice.dev/conflict-report-v1",
      policy: "priority",
      conflicts: Array.from({ length: 10 }, (_, i) => ({
        key: { trade_id: 600 + i },
        kept: { source: "a", value: { price: "1.00" } },
        other: { source: "b", value: { price: "2.00" } },
        fields: ["price"],
      })),
    };
    const conflictReport = join(d, "conflicts.json");
    writeFileSync(conflictReport, JSON.stringify(report));
    return { dataset: "unused", gapLedger, conflictReport };
  },
});

/** The store step: the gaps after, as ranges in its outputs. */
const store = defineAction({
  kind: "agent",
  owner: "test-recovery",
  action: "store",
  description: "report the gaps after",
  input: z.object({}).strict(),
  run: async () => ({ rowsStored: 550, gapsAfter: [] }),
});

describe("status of a recovery run", () => {
  let env: TestEnv;
  let run: RunRecord;
  beforeAll(async () => {
    env = testEnv([reconstruct, store]);
    const analysis: FailureAnalysis = {
      kind: "sluice.dev/failure-analysis-v1",
      workflow: "standard-ingestion",
      runId: "failed",
      window: { since: "2025-01-01T00:00:00.000Z", until: "2025-01-02T00:00:00.000Z" },
      primaryClass: "server_unavailable",
      failures: [503, 503].map((status, i) => ({
        class: "server_unavailable" as const,
        evidence: {
          runId: "failed",
          step: "collect",
          attempt: i + 1,
          code: "NETWORK_ERROR",
          message: "503",
          status,
          page: 4,
          at: `2025-01-01T10:00:0${i}.000Z`,
        },
      })),
      counts: { server_unavailable: 2 },
      sources: [],
      failedRun: { id: "failed", workflow: "standard-ingestion", params: { source: "http://primary.test/trades" }, step: "collect", error: null },
    };
    const path = join(dir("analysis-"), "analysis.json");
    writeFileSync(path, JSON.stringify(analysis));
    const wf = workflow(
      {
        steps: [
          { name: "recovery-strategy-selection", agent: "data-fetch-retry", action: "select_optimal_retry_strategy", with: { analysis: path, fallbacks: 1 } },
          { name: "data-reconstruction", agent: "test-recovery", action: "reconstruct", with: {}, dependsOn: ["recovery-strategy-selection"] },
          { name: "validation-and-storage", agent: "test-recovery", action: "store", with: {}, dependsOn: ["data-reconstruction"] },
        ],
      },
      env.actions,
    );
    run = await runWorkflow(env, wf);
    expect(run.status).toBe("succeeded");
  });
  afterAll(() => env.cleanup());

  it("shows the choice, why, every strategy's probabilities, the gaps before and after and the conflicts", async () => {
    const lines = recoveryLines(await recoverySummary(await runDetail(env.store, run.id))).map(plain);
    const text = lines.join("\n");
    expect(lines[0]).toMatch(
      /^strategy \(recovery-strategy-selection\): (switch_to_fallback|retry_with_backoff|reduce_page_size|resume_from_checkpoint) {2}class server_unavailable$/,
    );
    expect(lines[1]).toMatch(/^ {2}why: server_unavailable on http:\/\/primary\.test\/trades: 2 failures, the last HTTP 503 on page 4\. Chose /);
    expect(lines[2]).toMatch(/STRATEGY\s+P\(SUCCESS\)\s+SAMPLE\s+ALPHA\s+BETA\s+EXCLUDED BECAUSE/);
    // One row per strategy, the chosen one marked, the excluded ones with their reason.
    const rows = lines.slice(3, 9);
    expect(
      rows.map(
        (r) =>
          r
            .trim()
            .replace(/^[→✗]\s+/, "")
            .split(/\s+/)[0],
      ),
    ).toEqual(["retry_with_backoff", "wait_retry_after", "reduce_page_size", "switch_to_fallback", "resume_from_checkpoint", "give_up"]);
    expect(rows.filter((r) => r.includes("→"))).toHaveLength(1);
    // SAMPLE is a Beta(3, 1) draw: shown as 1.00 once in about 70 runs.
    expect(rows[3]).toMatch(/switch_to_fallback\s+0\.75\s+(0\.\d\d|1\.00)\s+3\.00\s+1\.00/);
    expect(rows[1]).toMatch(/✗\s+wait_retry_after\s+0\.50\s+1\.00\s+1\.00\s+only for rate_limited failures, and this one is server_unavailable/);
    expect(text).toContain("gaps before: 550 missing in 2 ranges [201–250], [501–1000] (data-reconstruction)");
    expect(text).toContain("gaps after: none (validation-and-storage)");
    expect(text).toMatch(/conflicts: 10 \(.*conflicts\.json\)/);
  });

  it("is printed by sluice status, after the steps table", async () => {
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => (written.push(String(chunk)), true));
    const before = { home: process.env.SLUICE_HOME, db: process.env.SLUICE_DATABASE_URL };
    process.env.SLUICE_HOME = env.home;
    delete process.env.SLUICE_DATABASE_URL;
    try {
      expect(await statusCommand(run.id, {})).toBe(0);
    } finally {
      spy.mockRestore();
      if (before.home === undefined) delete process.env.SLUICE_HOME;
      else process.env.SLUICE_HOME = before.home;
      if (before.db !== undefined) process.env.SLUICE_DATABASE_URL = before.db;
    }
    const out = plain(written.join(""));
    expect(out.indexOf("validation-and-storage")).toBeLessThan(out.indexOf("strategy (recovery-strategy-selection)"));
    expect(out).toContain("gaps before: 550 missing in 2 ranges");
    expect(out).toContain("conflicts: 10");
  });

  it("says so when a named document cannot be read, and prints nothing for other runs", async () => {
    const summary = await recoverySummary({
      ...(await runDetail(env.store, run.id)),
      steps: [
        { name: "x", status: "succeeded", attempts: [], error: null, outputs: { decision: "/nonexistent/decision.json", gapLedger: "/nonexistent/g.json" } },
      ],
    });
    const lines = recoveryLines(summary).map(plain);
    expect(lines).toEqual(["strategy (x): cannot read /nonexistent/decision.json (ENOENT)", "gaps before: cannot read /nonexistent/g.json (ENOENT)"]);
    expect(recoveryLines(await recoverySummary({ ...(await runDetail(env.store, run.id)), steps: [] }))).toEqual([]);
  });
});

/**
 * Issue 11's fault harness, across runs: test 11 as a series of real recovery runs on one store
 * (the strategy bandit learns from what each one's chosen way achieved), and test 13, the whole
 * chain through `sluice serve`: a standard-ingestion run against a failing primary fails, its
 * `data_source_failure` platform event starts the recovery run by itself, and the warehouse ends
 * complete. Test 12 (a breaker opened in one run holds in the next and half-opens after its
 * cool-down, through `sluice run` in two processes) is in breaker.test.ts, with the standard
 * workflow's source check behind the breaker.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { scratch } from "../helpers.js";
import { call, killAll, startServe, waitFor } from "../cli/serve-helpers.js";
import { decisionOf, flakyApis, outputs, RECOVERY, recoveryRun, STANDARD, standardRun, tableFacts, TRADES_SCHEMA, warehouse } from "./harness.js";

const fresh = scratch();
const apis = flakyApis();
afterAll(async () => {
  killAll();
  await apis.closeAll();
});

describe.concurrent("issue 11 fault harness: across runs", () => {
  it("test 11: real recovery runs on one store: the choice moves to what delivered", { timeout: 120_000 }, async () => {
    const cwd = fresh("sluice-h11-");
    // Page 4 fails for exactly the standard run's 4 attempts × 6 requests, then the primary is healthy
    // again; the only fallback is two days old, so discovery rejects it and switching cannot deliver.
    const primary = await apis.start("fail status=503 retry-after=0 pages=4 times=24");
    const stale = await apis.start("stale-days=2");
    const failed = await standardRun(cwd, primary.url);
    expect(failed.status).toBe("failed");

    const incidents: { choice: string; succeeded: boolean; reward: number; switchMean: number; bestOther: number }[] = [];
    for (let i = 1; i <= 8; i++) {
      const rec = await recoveryRun(cwd, { runId: failed.id, fallback: stale.url, table: `trades_${i}` });
      // Every recovery completes its table: the primary's stored pages, then the primary itself.
      expect(rec.status, rec.stderr).toBe("succeeded");
      const d = decisionOf(rec);
      expect(d.banditKey).toEqual({ source: primary.url, class: "server_unavailable" });
      const learned = outputs(rec, "validation-and-storage").learned as { strategy: string; counted: boolean; reward: number };
      const outcome = outputs(rec, "validation-and-storage").outcome as { succeeded: boolean };
      expect(learned).toMatchObject({ strategy: d.choice, counted: true });
      const mean = (s: string) => d.considered.find((c) => c.strategy === s)!.estimatedSuccess;
      incidents.push({
        choice: d.choice,
        succeeded: outcome.succeeded,
        reward: learned.reward,
        switchMean: mean("switch_to_fallback"),
        bestOther: Math.max(...["retry_with_backoff", "reduce_page_size", "resume_from_checkpoint"].map(mean)),
      });
    }
    // The first incident takes the rule's favourite for a 5xx source, and it does not deliver.
    expect(incidents[0]).toMatchObject({ choice: "switch_to_fallback", succeeded: false, reward: 0, switchMean: 0.75 });
    // What a strategy achieved is what it is credited with: switching never delivered, asking the primary always did.
    for (const x of incidents) expect(x.succeeded, JSON.stringify(x)).toBe(x.choice !== "switch_to_fallback");
    for (const x of incidents.filter((y) => y.succeeded)) expect(x.reward).toBeGreaterThan(0.5);
    // The choice follows: switching is taken rarely after its failure (P(more than 3 of 7) < 0.1% in
    // simulation of these priors and rates), and its estimate ends below its prior and below the others'.
    expect(incidents.slice(1).filter((x) => x.choice === "switch_to_fallback").length).toBeLessThanOrEqual(3);
    const last = incidents.at(-1)!;
    expect(last.switchMean).toBeLessThan(0.75);
    expect(last.switchMean).toBeLessThan(last.bestOther);
    const db = warehouse(cwd);
    try {
      for (let i = 1; i <= 8; i++) expect(tableFacts(db, `trades_${i}`).rows).toEqual({ n: 1000, d: 1000, lo: 1, hi: 1000 });
    } finally {
      db.close();
    }
  });

  it("test 13: through sluice serve, a failed standard run starts its recovery by itself and the warehouse ends complete", { timeout: 120_000 }, async () => {
    const cwd = fresh("sluice-h13-");
    const primary = await apis.start("fail status=503 retry-after=0 pages=4-");
    const fallback = await apis.start();
    // The deployment: the standard workflow as shipped, and the recovery with its fallback named.
    const dir = join(cwd, "workflows");
    mkdirSync(dir);
    writeFileSync(join(dir, "standard.yaml"), readFileSync(STANDARD, "utf8"));
    const recovery = parse(readFileSync(RECOVERY, "utf8")) as { spec: { params: Record<string, { default?: string }> } };
    recovery.spec.params.fallback!.default = fallback.url;
    writeFileSync(join(dir, "recovery.yaml"), stringify(recovery));

    const srv = await startServe(["--workflows", dir], { cwd, env: { SLUICE_HOME: join(cwd, ".sluice") } });
    try {
      await waitFor("both workflows to load", async () => (await call(srv.url, "GET", "/api/v1/workflows")).json?.workflows?.length === 2, 20_000);
      const started = await call(srv.url, "POST", "/api/v1/workflows/standard-ingestion/runs", {
        json: { params: { source: primary.url, schema: TRADES_SCHEMA } },
      });
      expect(started.status, started.text).toBe(201);
      const failedId = started.json.id as string;
      const recovered = await waitFor(
        "the recovery run to succeed",
        async () => {
          const runs = (await call(srv.url, "GET", "/api/v1/runs?workflow=resilient-fetch-recovery")).json.runs as { id: string; status: string }[];
          const done = runs.find((r) => r.status === "succeeded" || r.status === "failed");
          return done;
        },
        90_000,
        250,
      );
      expect(recovered.status).toBe("succeeded");
      const detail = (await call(srv.url, "GET", `/api/v1/runs/${recovered.id}`)).json;
      expect(detail.trigger).toMatchObject({ type: "event", name: "data_source_failure", data: { runId: failedId, workflow: "standard-ingestion" } });
      expect(detail.params).toMatchObject({ runId: failedId, workflow: "standard-ingestion", fallback: fallback.url });
      expect((await call(srv.url, "GET", `/api/v1/runs/${failedId}`)).json.status).toBe("failed");
      const db = warehouse(cwd);
      try {
        const f = tableFacts(db);
        expect(f.rows).toEqual({ n: 1000, d: 1000, lo: 1, hi: 1000 });
        expect(f.lineage.map((l) => [l.source, l.lo, l.hi])).toEqual([
          [primary.url, 1, 300],
          [fallback.url, 301, 1000],
        ]);
      } finally {
        db.close();
      }
    } finally {
      expect(await srv.stop("SIGTERM")).toBe(0);
    }
  });
});

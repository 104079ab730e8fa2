/**
 * Issue 11's fault harness, the scenarios that start from a FAILED standard-ingestion run
 * (tests 1, 2, 3, 4, 6, 7): the standard workflow runs against a flaky trades API (ids 1–1000
 * over 10 pages) and fails; then the resilient-fetch workflow runs with `--param runId=…` and
 * defaults everything else (primary, destination, table, schema) to the failed run's. Each is
 * end to end through the built CLI (`npm run build` first); outcomes are read from the SQLite
 * warehouse, the decision record, the page checkpoint and the APIs' /_stats.
 *
 * The scenarios are independent (a home, a warehouse and APIs each) and mostly wait (the
 * standard workflow's retry backoff), so they run concurrently.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { PageManifest } from "../../src/actions/recovery/contract.js";
import { scratch } from "../helpers.js";
import {
  analysisOf,
  cli,
  decisionOf,
  flakyApis,
  outputs,
  pageRequests,
  rankingOf,
  recoveryRun,
  standardRun,
  standardWithCollectionTimeout,
  step,
  tableFacts,
  warehouse,
  type RunDoc,
} from "./harness.js";

const fresh = scratch();
const apis = flakyApis();
afterAll(() => apis.closeAll());

/** A 503 that the connector retries at once (Retry-After: 0), so the standard run fails in seconds, not minutes. */
const DOWN_FROM_PAGE_4 = "fail status=503 retry-after=0 pages=4-";

const expectComplete = (cwd: string) => {
  const db = warehouse(cwd);
  try {
    const f = tableFacts(db);
    expect(f.rows).toEqual({ n: 1000, d: 1000, lo: 1, hi: 1000 });
    return f;
  } finally {
    db.close();
  }
};

const recoveredBy = (rec: RunDoc) => outputs(rec, "data-reconstruction").bySource as Record<string, number>;

describe.concurrent("issue 11 fault harness: recovering from a failed standard run", () => {
  it("test 1: pages 1–3 then 503 forever; the fallback serves the rest", { timeout: 90_000 }, async () => {
    const cwd = fresh("sluice-h1-");
    const primary = await apis.start(DOWN_FROM_PAGE_4);
    const fallback = await apis.start();
    const failed = await standardRun(cwd, primary.url);
    expect(failed.status).toBe("failed");
    expect(step(failed, "data-collection").error?.code).toBe("NETWORK_ERROR");
    const before = primary.stats();

    const rec = await recoveryRun(cwd, { runId: failed.id, fallback: fallback.url });
    expect(rec.status, rec.stderr).toBe("succeeded");
    const decision = decisionOf(rec);
    expect(decision).toMatchObject({ class: "server_unavailable", choice: "switch_to_fallback", banditKey: { source: primary.url } });
    expect(decision.evidence.at(-1)).toMatchObject({ status: 503, page: 4 });
    // The primary's pages 1–3 come from the failed run's checkpoint; the fallback resumes at page 4.
    expect(outputs(rec, "failure-analysis")).toMatchObject({ primary: primary.url, table: "trades", failedRun: failed.id });
    expect(recoveredBy(rec)).toEqual({ [primary.url]: 300, [fallback.url]: 700 });
    const f = expectComplete(cwd);
    expect(f.lineage.map((l) => [l.source, l.d, l.lo, l.hi])).toEqual([
      [primary.url, 300, 1, 300],
      [fallback.url, 700, 301, 1000],
    ]);
    expect(fallback.stats().pages["1"]).toBe(1); // discovery's probe only: reconstruction started at page 4
    // The recovery asked the failing page 4 only in discovery's probe (one request and one retry).
    expect(pageRequests(primary.stats(), before, 4)).toBeLessThanOrEqual(2);
    expect(outputs(rec, "validation-and-storage")).toMatchObject({ rowsStored: 1000, gapsAfter: [], gapsRemaining: 0 });

    // sluice status: the decision record, the ledgers before and after, the conflict count.
    const status = await cli(["status", rec.id], cwd);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/strategy \(recovery-strategy-selection\): .*switch_to_fallback.*class server_unavailable/);
    expect(status.stdout).toMatch(/→ +switch_to_fallback +0\.75/);
    expect(status.stdout).toMatch(/gaps before: 1000 missing in 1 range \[1–1000\]/);
    expect(status.stdout).toMatch(/gaps after: .*none/);
    expect(status.stdout).toMatch(/conflicts: 0/);
    expect(status.stdout).toMatch(/learned \(validation-and-storage\): switch_to_fallback .*succeeded/);
  });

  it("test 2: 429 with Retry-After: 2 is waited out and the primary read again, no fallback used", { timeout: 90_000 }, async () => {
    const cwd = fresh("sluice-h2a-");
    // Four 429s: the standard run's source check and its three retries; then the source answers.
    const primary = await apis.start("fail status=429 retry-after=2 times=4");
    const fallback = await apis.start();
    const failed = await standardRun(cwd, primary.url);
    expect(failed.status).toBe("failed");
    expect(step(failed, "source-validation").attempts).toHaveLength(4);

    const rec = await recoveryRun(cwd, { runId: failed.id, fallback: fallback.url });
    expect(rec.status, rec.stderr).toBe("succeeded");
    const decision = decisionOf(rec);
    expect(decision).toMatchObject({ class: "rate_limited", choice: "wait_retry_after", waitMs: 2000 });
    expect(decision.evidence.at(-1)).toMatchObject({ status: 429, retryAfterSeconds: 2 });
    expect(decision.considered.find((c) => c.strategy === "switch_to_fallback")!.excludedBecause).toMatch(/Retry-After \(2 s\) ends within/);
    // Reconstruction began no sooner than the wait allowed, and read the primary only.
    const rebuilt = outputs(rec, "data-reconstruction");
    expect(recoveredBy(rec)).toEqual({ [primary.url]: 1000 });
    expect(rebuilt.read).toEqual([expect.objectContaining({ source: primary.url, role: "primary", complete: true })]);
    expect(rebuilt.skipped).toEqual([{ source: fallback.url, why: "every gap is filled already" }]);
    const read = step(rec, "data-reconstruction").attempts[0]!;
    expect(Date.parse(read.endedAt!) - Date.parse(decision.decidedAt)).toBeGreaterThanOrEqual(2000);
    expect(rebuilt.strategy).toMatchObject({ choice: "wait_retry_after", delivered: true });
    const f = expectComplete(cwd);
    expect(f.lineage.map((l) => l.source)).toEqual([primary.url]);
    expect(primary.stats().statuses["429"]).toBe(4);
  });

  it("test 2: Retry-After: 3600 is longer than the deadline: the fallback at once, the reason recorded", { timeout: 90_000 }, async () => {
    const cwd = fresh("sluice-h2b-");
    const primary = await apis.start("fail status=429 retry-after=3600");
    const fallback = await apis.start();
    const failed = await standardRun(cwd, primary.url);
    expect(failed.status).toBe("failed");

    const rec = await recoveryRun(cwd, { runId: failed.id, fallback: fallback.url });
    expect(rec.status, rec.stderr).toBe("succeeded");
    const decision = decisionOf(rec);
    expect(decision).toMatchObject({ class: "rate_limited", choice: "switch_to_fallback" });
    expect(decision.waitMs).toBeUndefined();
    expect(decision.considered.find((c) => c.strategy === "wait_retry_after")!.excludedBecause).toMatch(
      /asked to wait 3600 s \(Retry-After\), longer than the 30m0s left before the deadline/,
    );
    expect(decision.why).toContain("3600 s");
    expect(rec.ms).toBeLessThan(20_000); // nothing was waited for
    expect(rankingOf(rec).candidates.find((c) => c.role === "primary")).toMatchObject({ accepted: false, rejectedBecause: "unreachable" });
    expect(recoveredBy(rec)).toEqual({ [fallback.url]: 1000 });
    expectComplete(cwd);
  });

  it("test 3: a hang times out in bounded time, the walk resumes at page 5, and page 5 is stored once", { timeout: 90_000 }, async () => {
    const cwd = fresh("sluice-h3-");
    // Page 5 hangs for each of the standard run's four collection attempts, then answers.
    const primary = await apis.start("hang pages=5 times=4");
    const fallback = await apis.start();
    const file = standardWithCollectionTimeout(cwd, "2s");
    const failed = await standardRun(cwd, primary.url, {}, file);
    expect(failed.status).toBe("failed");
    const collection = step(failed, "data-collection");
    expect(collection.attempts.map((a) => a.error?.code)).toEqual(["TIMEOUT", "TIMEOUT", "TIMEOUT", "TIMEOUT"]);
    expect(failed.ms).toBeLessThan(40_000); // four 2 s timeouts and the backoff between them, not four 30 s hangs
    // The checkpoint kept pages 1–4: every retry resumed at page 5, which was never stored.
    const checkpoint = join(cwd, ".sluice", "runs", failed.id, "artifacts", "data-collection.checkpoint");
    expect(readdirSync(checkpoint).filter((n) => n.startsWith("page-"))).toEqual([
      "page-00001.ndjson",
      "page-00002.ndjson",
      "page-00003.ndjson",
      "page-00004.ndjson",
    ]);
    expect([1, 2, 3, 4, 5].map((p) => primary.stats().pages[p])).toEqual([3, 1, 1, 1, 4]); // page 1: two probes and the walk

    const rec = await recoveryRun(cwd, { runId: failed.id, fallback: fallback.url });
    expect(rec.status, rec.stderr).toBe("succeeded");
    expect(rec.ms).toBeLessThan(20_000);
    expect(analysisOf(rec).primaryClass).toBe("timeout");
    const decision = decisionOf(rec);
    expect(decision.class).toBe("timeout");
    expect(decision.choice).not.toBe("switch_to_fallback"); // the rule for a timeout asks the source again
    const f = expectComplete(cwd);
    const db = warehouse(cwd);
    try {
      const page5 = db.prepare("select count(*) as n, count(distinct trade_id) as d from trades_lineage where position like ?").get(`%page=5#%`);
      expect(page5).toEqual({ n: 100, d: 100 });
    } finally {
      db.close();
    }
    expect(f.lineage.map((l) => [l.source, l.d])).toEqual([[primary.url, 1000]]);
    expect(primary.stats().pages["5"]).toBe(4 + 2); // the four hangs, discovery's probe, reconstruction's read
  });

  it("test 4: a truncated body and a JSON body cut mid-way: truncated_body, checkpoint kept, refetched, no partial page", { timeout: 90_000 }, async () => {
    const cwd = fresh("sluice-h4-");
    const primary = await apis.start("truncate pages=5 times=2 declare=5000 send=1200; cut-json pages=5 times=2");
    const fallback = await apis.start();
    const failed = await standardRun(cwd, primary.url);
    expect(failed.status).toBe("failed");
    expect(step(failed, "data-collection").attempts.map((a) => a.error?.code)).toEqual([
      "INCOMPLETE_RESPONSE",
      "INCOMPLETE_RESPONSE",
      "INCOMPLETE_RESPONSE",
      "INCOMPLETE_RESPONSE",
    ]);
    const artifacts = join(cwd, ".sluice", "runs", failed.id, "artifacts");
    const manifest = JSON.parse(readFileSync(join(artifacts, "data-collection", "manifest.json"), "utf8")) as PageManifest;
    expect(manifest).toMatchObject({ complete: false, rows: 400, error: { code: "INCOMPLETE_RESPONSE" } });
    expect(manifest.pages.map((p) => p.page)).toEqual([1, 2, 3, 4]);
    expect(existsSync(join(artifacts, "data-collection.checkpoint", "page-00005.ndjson"))).toBe(false);

    const rec = await recoveryRun(cwd, { runId: failed.id, fallback: fallback.url });
    expect(rec.status, rec.stderr).toBe("succeeded");
    const analysis = analysisOf(rec);
    expect(analysis.primaryClass).toBe("truncated_body");
    expect(analysis.counts).toEqual({ truncated_body: 4 });
    expect(analysis.failures.map((x) => [x.evidence.page, x.evidence.bytesDeclared, x.evidence.bytesReceived])).toContainEqual([5, 5000, 1200]);
    expect(decisionOf(rec).class).toBe("truncated_body");
    expect(outputs(rec, "failure-analysis").manifest).toMatch(/failed-run-manifest\.json$/);
    expectComplete(cwd);
    const db = warehouse(cwd);
    try {
      // Page 5 was fetched again, whole, and stored once; the pages before it came from the checkpoint.
      expect(
        db.prepare("select count(distinct trade_id) as d, min(trade_id) as lo, max(trade_id) as hi from trades_lineage where position like ?").get("%page=5#%"),
      ).toEqual({
        d: 100,
        lo: 401,
        hi: 500,
      });
    } finally {
      db.close();
    }
    expect([1, 2, 3, 4].map((p) => primary.stats().pages[p])).toEqual([4, 2, 2, 2]); // the standard run's walk once, discovery's probe once
  });

  it("test 6: a renamed column is schema_drift, not retried; the fallback fills the table", { timeout: 90_000 }, async () => {
    const cwd = fresh("sluice-h6-");
    const primary = await apis.start("rename from=price to=px");
    const fallback = await apis.start();
    const failed = await standardRun(cwd, primary.url);
    expect(failed.status).toBe("failed");
    expect(step(failed, "format-conversion").attempts).toHaveLength(1);

    const rec = await recoveryRun(cwd, { runId: failed.id, fallback: fallback.url });
    expect(rec.status, rec.stderr).toBe("succeeded");
    const drift = analysisOf(rec).failures.at(-1)!;
    expect(drift).toMatchObject({ class: "schema_drift", evidence: { columns: { missing: ["price"], added: ["px"] } } });
    const decision = decisionOf(rec);
    expect(decision).toMatchObject({ class: "schema_drift", choice: "switch_to_fallback" });
    for (const s of ["retry_with_backoff", "reduce_page_size", "resume_from_checkpoint"])
      expect(decision.considered.find((c) => c.strategy === s)).toMatchObject({ allowed: false, excludedBecause: expect.stringMatching(/schema_drift/) });
    const rejected = rankingOf(rec).candidates.find((c) => c.role === "primary")!;
    expect(rejected).toMatchObject({ accepted: false, rejectedBecause: "schema_mismatch" });
    expect(rejected.detail).toMatch(/column price is missing \(renamed to px\?\)/);
    expect(recoveredBy(rec)).toEqual({ [fallback.url]: 1000 });
    expectComplete(cwd);
  });

  it("test 7: 401 is auth: not retried by the standard run, not asked again by the recovery", { timeout: 90_000 }, async () => {
    const cwd = fresh("sluice-h7-");
    const primary = await apis.start("fail status=401");
    const fallback = await apis.start();
    const failed = await standardRun(cwd, primary.url);
    expect(failed.status).toBe("failed");
    expect(step(failed, "source-validation").attempts).toHaveLength(1);
    expect(primary.stats().requests).toBe(1);

    const rec = await recoveryRun(cwd, { runId: failed.id, fallback: fallback.url });
    expect(rec.status, rec.stderr).toBe("succeeded");
    const decision = decisionOf(rec);
    expect(decision).toMatchObject({ class: "auth", choice: "switch_to_fallback" });
    expect(decision.considered.find((c) => c.strategy === "retry_with_backoff")!.excludedBecause).toMatch(/refused the credentials \(auth\)/);
    expect(rankingOf(rec).candidates.find((c) => c.role === "primary")).toMatchObject({ accepted: false, rejectedBecause: "unauthorized" });
    expect(primary.stats().requests).toBe(2); // the failed run's one check, discovery's one probe
    expectComplete(cwd);
  });
});

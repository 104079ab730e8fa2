/**
 * Failure analysis: the classification of recorded errors (pure), the change-point test on
 * synthetic outcome sequences (pure), the errors' evidence kept by both stores, and
 * analyze_failure_patterns end to end on both stores: a real collector against a local HTTP
 * server that works for six runs and then answers 503.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SluiceError, MAX_DETAILS_CHARS } from "../../src/errors.js";
import { defineAction } from "../../src/actions/types.js";
import { classifyFailure } from "../../src/actions/recovery/classify.js";
import { detectChangePoint } from "../../src/actions/recovery/changepoint.js";
import type { FailureAnalysis } from "../../src/actions/recovery/contract.js";
import { createRun, executeRun } from "../../src/engine/index.js";
import { runHistoryOf } from "../../src/engine/history.js";
import type { StateStore } from "../../src/store/types.js";
import { bothStores } from "../stores.js";
import { runWorkflow, testEnv, workflow, type TestEnv } from "../helpers.js";

const at = "2030-01-01T00:00:00.000Z";
const ctx = { runId: "r1", step: "collect", attempt: 1, at };
const cls = (code: string, message: string, details?: Record<string, unknown>) => classifyFailure({ code, message, ...(details ? { details } : {}) }, ctx);

describe("classifyFailure", () => {
  it("reads the HTTP status from details, else from the sentence connectors/http.ts writes today", () => {
    expect(cls("NETWORK_ERROR", "GET http://x/a failed with HTTP 503: the server had an error.", { status: 503, url: "http://x/a" })).toMatchObject({
      class: "server_unavailable",
      evidence: { status: 503, url: "http://x/a", code: "NETWORK_ERROR", runId: "r1", step: "collect", attempt: 1, at },
    });
    expect(cls("NETWORK_ERROR", "GET http://x/a failed with HTTP 502: the server had an error.").class).toBe("server_unavailable");
    expect(cls("BAD_CONFIG", "GET http://x/a failed with HTTP 401: the credentials were missing or rejected.", { status: 401 }).class).toBe("auth");
    expect(cls("BAD_CONFIG", "GET http://x/a failed with HTTP 403: the credentials are not allowed to read it.").class).toBe("auth");
    expect(cls("BAD_CONFIG", "GET http://x/a failed with HTTP 404: the URL does not exist.", { status: 404 }).class).toBe("not_found");
    expect(cls("NETWORK_ERROR", "GET http://x/a failed with HTTP 408: the server timed out waiting for the request.", { status: 408 }).class).toBe("timeout");
  });

  it("takes 429 as rate_limited with the Retry-After it saw, from details or the sentence", () => {
    const a = cls("BAD_CONFIG", "GET http://x/a failed with HTTP 429: the server rejected the request.", { status: 429, retryAfterSeconds: 3600 });
    expect(a).toMatchObject({ class: "rate_limited", evidence: { status: 429, retryAfterSeconds: 3600 } });
    expect(a.why).toContain("3600");
    expect(cls("HTTP_ERROR", "HTTP 429 Too Many Requests (Retry-After: 2)").evidence.retryAfterSeconds).toBe(2);
    // connectors/http.ts today: a Retry-After longer than maxRetryAfterMs, in ms.
    const long = cls("NETWORK_ERROR", "HTTP 429 from http://x/a asked to retry after 3600 s, longer than maxRetryAfterMs (60000 ms).", {
      status: 429,
      url: "http://x/a",
      retryAfterMs: 3_600_000,
    });
    expect(long).toMatchObject({ class: "rate_limited", evidence: { retryAfterSeconds: 3600 } });
    expect(
      cls("NETWORK_ERROR", "HTTP 429 from http://x/a asked to retry after 120 s, longer than maxRetryAfterMs (60000 ms).").evidence.retryAfterSeconds,
    ).toBe(120);
  });

  it("tells network faults from timeouts, by the system code in details or in the sentence", () => {
    expect(
      cls("NETWORK_ERROR", "Could not reach 127.0.0.1:9 for http://127.0.0.1:9/: connection refused (ECONNREFUSED).", { code: "ECONNREFUSED" }).class,
    ).toBe("network");
    expect(cls("NETWORK_ERROR", "Could not reach h:1 for http://h:1/: connection reset by the server (ECONNRESET).").class).toBe("network");
    expect(cls("NETWORK_ERROR", "Request to http://h/ timed out after 30000 ms.").class).toBe("timeout");
    expect(cls("NETWORK_ERROR", "Could not reach h:1: connection timed out (ETIMEDOUT).", { code: "ETIMEDOUT" }).class).toBe("timeout");
    expect(cls("TIMEOUT", "step collect did not finish within its timeout of 5s").class).toBe("timeout");
    expect(cls("IO_ERROR", "read failed").class).toBe("network");
  });

  it("finds a truncated body from bytes declared vs received, before the status", () => {
    const t = cls("NETWORK_ERROR", "GET http://x/a?page=4: the body ended early", { status: 200, bytesDeclared: 5000, bytesReceived: 1200, page: 4 });
    expect(t).toMatchObject({ class: "truncated_body", evidence: { bytesDeclared: 5000, bytesReceived: 1200, page: 4 } });
    expect(t.why).toBe("the body declared 5000 bytes and 1200 arrived (page 4)");
    expect(cls("BAD_INPUT", "page 3 is not JSON: Unexpected end of JSON input").class).toBe("truncated_body");
    expect(cls("NETWORK_ERROR", "cut", { truncated: true }).class).toBe("truncated_body");
  });

  it("takes missing or renamed columns as schema_drift, with the columns", () => {
    const d = cls("BAD_INPUT", "trades.csv: the schema's column price is not in the file (its header has: id, px)", {
      file: "trades.csv",
      missing: ["price"],
      columns: ["id", "px"],
    });
    expect(d).toMatchObject({ class: "schema_drift", evidence: { columns: { missing: ["price"], added: [], retyped: [] } } });
    expect(cls("BAD_INPUT", "drift", { columns: { missing: [], added: ["px"], retyped: ["qty"] } }).evidence.columns).toEqual({
      missing: [],
      added: ["px"],
      retyped: ["qty"],
    });
  });

  it("maps the remaining codes", () => {
    expect(cls("QUALITY_BELOW_THRESHOLD", "quality 0.7 is below 0.95").class).toBe("quality_breach");
    expect(cls("NOT_FOUND", "no files match /in/*.csv").class).toBe("not_found");
    expect(cls("FILE_NOT_FOUND", "ENOENT").class).toBe("not_found");
    expect(cls("BAD_CONFIG", "collecting from x needs a table").class).toBe("bad_config");
    expect(cls("SPEC_INVALID", "bad spec").class).toBe("bad_config");
    expect(cls("BAD_INPUT", "the source's newest row is stale: older than its maxStaleness of 1h").class).toBe("stale_data");
    expect(cls("ACTION_FAILED", "boom").class).toBe("server_unavailable");
  });

  it("classifies an open circuit breaker as the failures that opened it", () => {
    expect(cls("NETWORK_ERROR", "the circuit is open", { circuit: "open", lastClass: "network" }).class).toBe("network");
    expect(cls("NETWORK_ERROR", "the circuit is open", { circuit: "open" }).class).toBe("server_unavailable");
  });
});

/** A seeded generator (mulberry32): synthetic sequences the same on every run. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const bernoulli = (n: number, p: number, r: () => number) => Array.from({ length: n }, () => (r() < p ? 1 : 0) as 0 | 1);

describe("detectChangePoint (CUSUM)", () => {
  it("calls a shift from a low to a high failure rate an incident, and finds where it began", () => {
    const r = rng(7);
    const healthy = bernoulli(40, 0.03, r);
    const seq = [...healthy, 1, 1, 1, 1, 1, 1] as (0 | 1)[];
    const times = seq.map((_, i) => new Date(Date.UTC(2030, 0, 1, 0, i)).toISOString());
    const cp = detectChangePoint(seq, times);
    expect(cp.verdict).toBe("incident");
    expect(cp.changeIndex).toBe(40);
    expect(cp.since).toBe(times[40]);
    expect(cp.statistic).toBeGreaterThanOrEqual(cp.threshold);
  });

  it("calls steady flakiness chronic, over many seeds, and a flaky source that then goes down an incident", () => {
    let chronic = 0;
    for (let seed = 1; seed <= 50; seed++) {
      const seq = bernoulli(60, 0.35, rng(seed));
      if (detectChangePoint(seq).verdict === "chronic") chronic++;
    }
    expect(chronic).toBeGreaterThanOrEqual(45); // a long enough natural streak may look like a shift
    const flakyThenDown = [...bernoulli(60, 0.35, rng(99)), 1, 1, 1, 1, 1, 1, 1, 1] as (0 | 1)[];
    expect(detectChangePoint(flakyThenDown).verdict).toBe("incident");
  });

  it("calls a partial outage (80 % failures after a healthy stretch) an incident", () => {
    const r = rng(3);
    const seq = [...bernoulli(30, 0.02, r), ...bernoulli(15, 0.8, r), 1, 1] as (0 | 1)[];
    const cp = detectChangePoint(seq);
    expect(cp.verdict).toBe("incident");
    expect(cp.changeIndex).toBeGreaterThanOrEqual(28);
    expect(cp.changeIndex).toBeLessThanOrEqual(34);
  });

  it("is healthy with no failures, one stray failure, a recovered streak, or no outcomes at all", () => {
    expect(detectChangePoint(Array(30).fill(0))).toMatchObject({ verdict: "healthy", statistic: 0 });
    expect(detectChangePoint([...Array(30).fill(0), 1]).verdict).toBe("healthy");
    expect(detectChangePoint([...Array(30).fill(0), 1, 1, 1, ...Array(20).fill(0)]).verdict).toBe("healthy");
    expect(detectChangePoint([]).verdict).toBe("healthy");
  });

  it("calls a source that failed every attempt in the window (down since before it) an incident", () => {
    expect(detectChangePoint([1, 1, 1, 1, 1, 1, 1, 1])).toMatchObject({ verdict: "incident", changeIndex: 0 });
    expect(detectChangePoint([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]).verdict).toBe("incident");
  });

  it("honours its documented parameters", () => {
    const seq = [...Array(20).fill(0), 1, 1] as (0 | 1)[];
    expect(detectChangePoint(seq).verdict).toBe("incident");
    expect(detectChangePoint(seq, undefined, { threshold: 8 }).verdict).toBe("healthy"); // 2 of 22 failed: below chronicRate 0.2
    expect(detectChangePoint(seq, undefined, { threshold: 8, chronicRate: 0.05 }).verdict).toBe("chronic");
    expect(detectChangePoint(seq, undefined, { minBaseline: 0.3 })).toMatchObject({ verdict: "healthy", baselineRate: 0.3, shiftedRate: 0.72 });
  });
});

let env: TestEnv;
afterEach(async () => env?.cleanup());

/** Fails every attempt with a SluiceError carrying evidence (and, when asked, far too much of it). */
const failing = defineAction({
  kind: "agent",
  owner: "evidence",
  action: "fail",
  description: "fail with details",
  input: z.object({ huge: z.boolean().default(false) }).strict(),
  run: async ({ huge }, c) => {
    throw new SluiceError("NETWORK_ERROR", `GET http://127.0.0.1:1/x?page=4 failed with HTTP 503: the server had an error.`, {
      retryable: true,
      details: {
        status: 503,
        url: "http://127.0.0.1:1/x?page=4",
        page: 4,
        attempt: c.attempt,
        ...(huge ? { body: "x".repeat(20_000), rows: Array.from({ length: 500 }, (_, i) => ({ i })) } : {}),
      },
    });
  },
});

interface Api {
  url: string;
  mode: "ok" | "503";
  requests: number;
  close(): Promise<void>;
}

async function tradesApi(): Promise<Api> {
  const api = { mode: "ok" as Api["mode"], requests: 0 };
  const server: Server = createServer((req, res) => {
    api.requests++;
    if (api.mode === "503") {
      // Retry-After: 0 so the connector's own 503 retries (5) take no time.
      res.writeHead(503, { "content-type": "text/plain", "retry-after": "0" }).end("upstream is down");
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify([{ id: 1, price: "1.5" }]));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(api, {
    url: `http://127.0.0.1:${port}/trades`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  });
}

describe.each(bothStores("analysis"))("failure evidence and analysis on $dialect", (backend) => {
  let shared: StateStore | undefined;
  beforeAll(async () => void (shared = await backend.open()));
  afterAll(async () => {
    await shared?.close();
    await backend.drop();
  });
  const makeEnv = () => (env = testEnv([failing], shared ? { store: shared } : {}));

  it("keeps each attempt's and the step's error details, and hands them to actions as PastError.details", async () => {
    makeEnv();
    const wf = workflow(
      { steps: [{ name: "fetch", agent: "evidence", action: "fail", retry: { limit: 1, backoff: { initial: "10ms", jitter: 0 } } }] },
      env.actions,
    );
    const run = await runWorkflow(env, wf);
    expect(run.status).toBe("failed");
    const attempts = await env.store.getAttempts(run.id);
    expect(attempts.map((a) => a.error?.details)).toEqual([
      { status: 503, url: "http://127.0.0.1:1/x?page=4", page: 4, attempt: 1 },
      { status: 503, url: "http://127.0.0.1:1/x?page=4", page: 4, attempt: 2 },
    ]);
    const [step] = await env.store.getSteps(run.id);
    expect(step!.error).toEqual({
      code: "NETWORK_ERROR",
      message: "GET http://127.0.0.1:1/x?page=4 failed with HTTP 503: the server had an error.",
      details: { status: 503, url: "http://127.0.0.1:1/x?page=4", page: 4, attempt: 2 },
    });
    const past = await runHistoryOf(env.store).run(run.id);
    expect(past!.steps[0]!.uses).toBe("evidence/fail");
    expect(past!.steps[0]!.error!.details).toMatchObject({ status: 503 });
    expect(past!.steps[0]!.attempts[0]!.error!.details).toMatchObject({ status: 503, attempt: 1 });
  });

  it("caps the details it keeps at ~4 KB, evidence first", async () => {
    makeEnv();
    const wf = workflow({ steps: [{ name: "fetch", agent: "evidence", action: "fail", with: { huge: true } }] }, env.actions);
    const run = await runWorkflow(env, wf);
    const [a] = await env.store.getAttempts(run.id);
    const d = a!.error!.details!;
    expect(JSON.stringify(d).length).toBeLessThanOrEqual(MAX_DETAILS_CHARS);
    expect(d).toMatchObject({ status: 503, url: "http://127.0.0.1:1/x?page=4", page: 4 });
    expect(String(d.body).length).toBeLessThan(400);
  });

  it("analyses a real collector's runs: 6 good, then a run failing with 503 twice", async () => {
    makeEnv();
    const api = await tradesApi();
    try {
      const collect = workflow(
        {
          params: { source: { type: "string" } },
          steps: [
            {
              name: "data-collection",
              agent: "data-collector",
              action: "collect_data_from_source",
              with: { source: "${{ params.source }}" },
              retry: { limit: 1, backoff: { initial: "10ms", jitter: 0 } },
            },
          ],
        },
        env.actions,
        "collect-flow",
      );
      for (let i = 0; i < 6; i++) expect((await runWorkflow(env, collect, { params: { source: api.url } })).status).toBe("succeeded");
      api.mode = "503";
      const failed = await runWorkflow(env, collect, { params: { source: api.url } });
      expect(failed.status).toBe("failed");

      // Started as the platform event would start it: the failed run named in the trigger's data.
      const recovery = workflow(
        { steps: [{ name: "failure-analysis", agent: "data-fetch-retry", action: "analyze_failure_patterns", with: { window: "1h" } }] },
        env.actions,
        "recovery-flow",
      );
      const rec = await createRun(env.store, {
        workflow: recovery,
        trigger: { type: "event", name: "data_source_failure", data: { workflow: "collect-flow", runId: failed.id, step: "data-collection" } },
      });
      const done = await executeRun(rec.id, { store: env.store, actions: env.actions, home: env.home });
      expect(done.status).toBe("succeeded");
      const [step] = await env.store.getSteps(rec.id);
      const out = step!.outputs!;
      expect(out).toMatchObject({
        primaryClass: "server_unavailable",
        failures: 2,
        counts: { server_unavailable: 2 },
        failedRun: failed.id,
        primary: api.url,
        sources: [{ source: api.url, attempts: 8, failureRate: 0.25, consecutiveFailures: 2, verdict: "incident" }],
      });

      const doc = JSON.parse(readFileSync(out.analysis as string, "utf8")) as FailureAnalysis;
      expect(out.analysis).toBe(`${env.home}/runs/${rec.id}/artifacts/failure-analysis/analysis.json`);
      expect(doc.kind).toBe("sluice.dev/failure-analysis-v1");
      expect(doc.workflow).toBe("collect-flow");
      expect(doc.failures.map((f) => [f.class, f.evidence.status, f.evidence.url, f.evidence.attempt])).toEqual([
        ["server_unavailable", 503, api.url, 1],
        ["server_unavailable", 503, api.url, 2],
      ]);
      expect(doc.failedRun).toMatchObject({ id: failed.id, workflow: "collect-flow", params: { source: api.url }, step: "data-collection" });
      expect(doc.failedRun!.error!.code).toBe("NETWORK_ERROR");
      const health = doc.sources[0]!;
      const attempts = (await env.store.getAttempts(failed.id)).sort((a, b) => a.n - b.n);
      expect(health.changePoint).toMatchObject({ verdict: "incident", method: "cusum", since: attempts[0]!.endedAt });
      expect(health.latencyP50Ms).not.toBeNull();
      expect(health.latencyP99Ms!).toBeGreaterThanOrEqual(health.latencyP50Ms!);
      // The last good run may end in the very millisecond the failing attempt starts.
      expect(Date.parse(health.lastSuccessAt!)).toBeLessThanOrEqual(Date.parse(attempts[0]!.startedAt));
      expect(api.requests).toBe(6 + 2 * 6); // 6 good runs; 2 attempts of 1 request + 5 connector retries each

      // Another source's view of the same window: none of these failures are its.
      const other = workflow(
        {
          steps: [
            {
              name: "a",
              agent: "data-fetch-retry",
              action: "analyze_failure_patterns",
              with: { workflow: "collect-flow", source: "http://127.0.0.1:1/elsewhere" },
            },
          ],
        },
        env.actions,
        "recovery-flow",
      );
      const filtered = await runWorkflow(env, other);
      expect((await env.store.getSteps(filtered.id))[0]!.outputs).toMatchObject({ primaryClass: null, failures: 0, sources: [] });
    } finally {
      await api.close();
    }
  });

  it("succeeds with primaryClass null for a manual run and a window without failures", async () => {
    makeEnv();
    const recovery = workflow(
      { steps: [{ name: "failure-analysis", agent: "data-fetch-retry", action: "analyze_failure_patterns", with: { workflow: "nothing-here" } }] },
      env.actions,
      "recovery-flow",
    );
    const run = await runWorkflow(env, recovery);
    expect(run.status).toBe("succeeded");
    const [step] = await env.store.getSteps(run.id);
    expect(step!.outputs).toMatchObject({ primaryClass: null, failures: 0, counts: {}, sources: [], failedRun: null });
  });

  it("refuses a failed run that is not in the store, and a window that is not a duration", async () => {
    makeEnv();
    const wf = (w: Record<string, unknown>) =>
      workflow({ steps: [{ name: "a", agent: "data-fetch-retry", action: "analyze_failure_patterns", with: w }] }, env.actions, "recovery-flow");
    const missing = await runWorkflow(env, wf({ runId: "r-nope" }));
    expect(missing.error).toMatchObject({ code: "NOT_FOUND" });
    expect(() => wf({ window: "yesterday" })).toThrow(/duration/);
  });
});

/**
 * select_optimal_retry_strategy: the guardrails decide what may be tried, the bandit chooses among
 * the rest, and the decision record on disk says what was chosen and why (issue 11, tests 2, 6, 7
 * and the strategy half of 1).
 */
import { afterEach, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { selectOptimalRetryStrategy, type SelectStrategyInput } from "../../src/actions/recovery/strategy.js";
import { recordStrategyOutcome } from "../../src/actions/recovery/bandit.js";
import type { DecisionRecord, FailureAnalysis, FailureClass, FailureEvidence } from "../../src/actions/recovery/contract.js";
import type { ActionContext } from "../../src/actions/types.js";
import { sharedStateOf } from "../../src/engine/history.js";
import { actionContext, failure, memoryState, runWorkflow, scratch, testEnv, workflow, type TestEnv } from "../helpers.js";

const dir = scratch();

function analysisFile(cls: FailureClass | null, evidence: Partial<FailureEvidence>[] = [{}], source = "http://primary.test/trades"): string {
  const doc: FailureAnalysis = {
    kind: "sluice.dev/failure-analysis-v1",
    workflow: "standard-ingestion",
    runId: "failed-run",
    window: { since: "2025-01-01T00:00:00.000Z", until: "2025-01-02T00:00:00.000Z" },
    primaryClass: cls,
    failures: cls
      ? evidence.map((e, i) => ({
          class: cls,
          evidence: {
            runId: "failed-run",
            step: "collect",
            attempt: i + 1,
            code: "NETWORK_ERROR",
            message: "planned",
            at: `2025-01-01T10:00:0${i}.000Z`,
            ...e,
          },
        }))
      : [],
    counts: cls ? { [cls]: evidence.length } : {},
    sources: [],
    failedRun: { id: "failed-run", workflow: "standard-ingestion", params: { source }, step: "collect", error: null },
  };
  const path = join(dir("analysis-"), "analysis.json");
  writeFileSync(path, JSON.stringify(doc));
  return path;
}

const ctxFor = (over: Partial<ActionContext> = {}) => actionContext({ artifactsDir: dir("artifacts-"), step: "recovery-strategy-selection", ...over });

async function decide(input: SelectStrategyInput, ctx = ctxFor()) {
  const out = await selectOptimalRetryStrategy(input, ctx);
  const record = JSON.parse(readFileSync(out.decision as string, "utf8")) as DecisionRecord;
  return { out, record, considered: Object.fromEntries(record.considered.map((c) => [c.strategy, c])) };
}

const RETRIES = ["retry_with_backoff", "wait_retry_after", "reduce_page_size", "resume_from_checkpoint"] as const;

describe("guardrails", () => {
  it("never retries auth: falls back when a fallback is declared, gives up when none is", async () => {
    const analysis = analysisFile("auth", [{ status: 401, code: "AUTH_FAILED" }, { status: 401 }]);
    const withFallback = await decide({ analysis, fallbacks: "http://mirror.test/trades" });
    expect(withFallback.out.choice).toBe("switch_to_fallback");
    for (const s of RETRIES) {
      expect(withFallback.considered[s]!.allowed).toBe(false);
      expect(withFallback.considered[s]!.excludedBecause).toMatch(/auth/);
    }
    expect(withFallback.record.why).toMatch(/^auth on http:\/\/primary\.test\/trades: 2 failures, the last HTTP 401/);

    const none = await decide({ analysis, fallbacks: 0 });
    expect(none.out.choice).toBe("give_up");
    expect(none.considered.switch_to_fallback!.excludedBecause).toBe("no fallback source is declared");
    expect(none.considered.give_up!.allowed).toBe(true);
  });

  it("never retries schema_drift or bad_config either", async () => {
    for (const cls of ["schema_drift", "bad_config"] as const) {
      const { out, considered } = await decide({ analysis: analysisFile(cls, [{ columns: { missing: ["price"], added: ["px"], retyped: [] } }]) });
      expect(out.choice).toBe("switch_to_fallback");
      expect(RETRIES.every((s) => !considered[s]!.allowed)).toBe(true);
    }
  });

  it("waits a Retry-After of 2 s that fits before the deadline, and uses no fallback", async () => {
    const analysis = analysisFile("rate_limited", [
      { status: 429, retryAfterSeconds: 2 },
      { status: 429, retryAfterSeconds: 2 },
    ]);
    const { out, record, considered } = await decide({ analysis, fallbacks: ["http://mirror.test/trades"] });
    expect(out.choice).toBe("wait_retry_after");
    expect(out.waitMs).toBe(2000);
    expect(record.waitMs).toBe(2000);
    expect(considered.switch_to_fallback!.allowed).toBe(false);
    expect(considered.switch_to_fallback!.excludedBecause).toMatch(/Retry-After \(2 s\) ends within/);
    expect(considered.retry_with_backoff!.excludedBecause).toMatch(/refused again/);
    expect(out.why).toMatch(/rate_limited .* HTTP 429 Retry-After 2 s/);
    expect(out.why).toMatch(/Chose wait_retry_after \(wait 2\.00s\), the only strategy the guardrails allow \(estimated success 0\.80/);
  });

  it("falls back at once when Retry-After (3600 s) is longer than the deadline, and records why", async () => {
    const analysis = analysisFile("rate_limited", [{ status: 429, retryAfterSeconds: 3600 }]);
    const { out, record, considered } = await decide({ analysis, deadline: "30m", fallbacks: 1 });
    expect(out.choice).toBe("switch_to_fallback");
    expect(out.waitMs).toBeUndefined();
    expect(considered.wait_retry_after!.allowed).toBe(false);
    expect(considered.wait_retry_after!.excludedBecause).toBe("the source asked to wait 3600 s (Retry-After), longer than the 30m0s left before the deadline");
    expect(record.why).toContain("wait_retry_after: the source asked to wait 3600 s (Retry-After), longer than the 30m0s left before the deadline");
    // The same 3600 s fits in a 2 h deadline: then it is waited for.
    expect((await decide({ analysis, deadline: "2h", fallbacks: 1 })).out.choice).toBe("wait_retry_after");
  });

  it("with no failure class, resumes from the checkpoint or falls back", async () => {
    const { out, considered, record } = await decide({ analysis: analysisFile(null) });
    expect(["resume_from_checkpoint", "switch_to_fallback"]).toContain(out.choice);
    expect(record.class).toBeNull();
    expect(record.banditKey).toEqual({ source: "http://primary.test/trades", class: "none" });
    for (const s of ["retry_with_backoff", "wait_retry_after", "reduce_page_size"] as const) expect(considered[s]!.allowed).toBe(false);
    expect(out.why).toMatch(/^No failure was classified for http:\/\/primary\.test\/trades\./);
  });

  it("keeps to the step's strategies list", async () => {
    const { out, considered } = await decide({ analysis: analysisFile("server_unavailable", [{ status: 503 }]), strategies: ["retry_with_backoff"] });
    expect(out.choice).toBe("retry_with_backoff");
    expect(considered.switch_to_fallback!.excludedBecause).toMatch(/not among the step's strategies/);
  });

  it("refuses an analysis that is not one", async () => {
    const bad = join(dir("bad-"), "x.json");
    writeFileSync(bad, JSON.stringify({ kind: "something-else" }));
    expect((await failure(selectOptimalRetryStrategy({ analysis: bad }, ctxFor()))).code).toBe("BAD_INPUT");
    expect((await failure(selectOptimalRetryStrategy({ analysis: join(dir("none-"), "missing.json") }, ctxFor()))).message).toMatch(
      /cannot be read \(ENOENT\)/,
    );
  });
});

describe("the bandit's part", () => {
  it("records every strategy with its posterior and sample, names the probabilities in why, and replays with the run id", async () => {
    const analysis = analysisFile("server_unavailable", [
      { status: 503, page: 4 },
      { status: 503, page: 4 },
      { status: 503, page: 4 },
    ]);
    const state = memoryState();
    const a = await decide({ analysis, fallbacks: 1 }, ctxFor({ runId: "run-42", state }));
    expect(a.record.considered.map((c) => c.strategy)).toEqual([
      "retry_with_backoff",
      "wait_retry_after",
      "reduce_page_size",
      "switch_to_fallback",
      "resume_from_checkpoint",
      "give_up",
    ]);
    const allowed = a.record.considered.filter((c) => c.allowed);
    expect(allowed.map((c) => c.strategy)).toEqual(["retry_with_backoff", "reduce_page_size", "switch_to_fallback", "resume_from_checkpoint"]);
    for (const c of allowed) expect(c.estimatedSuccess).toBeCloseTo(c.alpha / (c.alpha + c.beta), 3);
    // Nothing learnt yet for this source and class: the rule's favourite, said so; only it was drawn.
    expect(a.out.choice).toBe("switch_to_fallback");
    expect(allowed.filter((c) => c.sample !== undefined).map((c) => c.strategy)).toEqual(["switch_to_fallback"]);
    expect(a.out.why).toMatch(
      /^server_unavailable on http:\/\/primary\.test\/trades: 3 failures, the last HTTP 503 on page 4\. Chose switch_to_fallback: no outcome has been learnt for this source and class yet, so the rule-based prior decides \(estimated success 0\.75, against /,
    );
    expect(a.record.seed).toBe("run-42");
    // The same run again, same state: the same draws and the same choice.
    const b = await decide({ analysis, fallbacks: 1 }, ctxFor({ runId: "run-42", state }));
    expect(b.record.considered).toEqual(a.record.considered);
    expect(b.out.choice).toBe(a.out.choice);

    // Once an outcome is counted, the draws decide: the largest sample wins, and why names them.
    await recordStrategyOutcome(state, a.record, { succeeded: true, rowsRecovered: 700, seconds: 1, duplicates: 0 });
    const c = await decide({ analysis, fallbacks: 1 }, ctxFor({ runId: "run-43", state }));
    const warm = c.record.considered.filter((x) => x.allowed);
    for (const x of warm) expect(x.sample).toBeGreaterThan(0);
    expect(warm.find((x) => x.strategy === c.out.choice)!.sample).toBe(Math.max(...warm.map((x) => x.sample!)));
    expect(c.out.why).toMatch(
      /^server_unavailable on http:\/\/primary\.test\/trades: 3 failures, the last HTTP 503 on page 4\. Chose \w+: estimated success 0\.\d\d \(drew 0\.\d\d\), against /,
    );
  });

  it("learns across runs through the store: after the fallback keeps working, it is what is chosen", async () => {
    const env = testEnv();
    try {
      const state = sharedStateOf(env.store);
      const analysis = analysisFile("server_unavailable", [{ status: 503 }]);
      const choices: string[] = [];
      let last: DecisionRecord | undefined;
      for (let i = 0; i < 60; i++) {
        const { out, record } = await decide({ analysis, fallbacks: 1 }, ctxFor({ runId: `run-${i}`, state }));
        last = record;
        choices.push(out.choice as string);
        const works = record.choice === "switch_to_fallback";
        await recordStrategyOutcome(state, record, { succeeded: works, rowsRecovered: works ? 700 : 0, seconds: 1, duplicates: 0 });
      }
      // Four arms are allowed and three never work: each is still tried now and then (it fades back
      // towards its prior), so the fallback is chosen most of the time, not always.
      const fallbackShare = (xs: string[]) => xs.filter((c) => c === "switch_to_fallback").length / xs.length;
      expect(fallbackShare(choices.slice(-20))).toBeGreaterThanOrEqual(0.75);
      const mean = Object.fromEntries(last!.considered.map((c) => [c.strategy, c.estimatedSuccess]));
      expect(mean.switch_to_fallback).toBeGreaterThan(0.8);
      expect(mean.retry_with_backoff).toBeLessThan(2 / 3); // below its cold-start prior, 2 of 3
      expect(last!.why).toContain(`estimated success ${mean.switch_to_fallback!.toFixed(2)}`);
    } finally {
      await env.cleanup();
    }
  });
});

describe("in a run", () => {
  let env: TestEnv | undefined;
  afterEach(async () => {
    await env?.cleanup();
    env = undefined;
  });

  const flow = (analysis: string, timeout: string) =>
    workflow({
      timeout,
      steps: [{ name: "pick", agent: "data-fetch-retry", action: "select_optimal_retry_strategy", with: { analysis, fallbacks: 1 } }],
    });

  it("takes the deadline from the run's timeout: Retry-After 3600 s waits under 2h, falls back under 30m", async () => {
    env = testEnv();
    const analysis = analysisFile("rate_limited", [{ status: 429, retryAfterSeconds: 3600 }]);
    const long = await runWorkflow(env, flow(analysis, "2h"));
    const short = await runWorkflow(env, flow(analysis, "30m"));
    expect(long.status).toBe("succeeded");
    expect(short.status).toBe("succeeded");
    const outputs = async (id: string) => (await env!.store.getSteps(id)).find((s) => s.name === "pick")!.outputs!;
    expect(await outputs(long.id)).toMatchObject({ choice: "wait_retry_after", waitMs: 3_600_000, class: "rate_limited" });
    const o = await outputs(short.id);
    expect(o).toMatchObject({ choice: "switch_to_fallback", class: "rate_limited" });
    // What is left of the 30 minutes when the step runs: all of it (rounded) on a fast machine.
    expect(o.why).toMatch(/longer than the (29m\d+s|30m0s) left before the deadline/);
    expect(String(o.decision)).toBe(join(env.home, "runs", short.id, "artifacts", "pick", "decision.json"));
    const record = JSON.parse(readFileSync(String(o.decision), "utf8")) as DecisionRecord;
    expect(record.seed).toBe(short.id);
  });
});

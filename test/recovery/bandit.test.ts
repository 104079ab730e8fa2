/**
 * The strategy bandit (issue 11, test 11): seeded draws, the reward, cold-start priors, discounting,
 * and the simulated incidents, on memory state and on the real stores' shared state.
 */
import { afterAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import {
  BANDIT_NAMESPACE,
  chooseStrategy,
  priorFor,
  readBandit,
  recordStrategyOutcome,
  reward,
  type BanditKey,
  type StrategyOutcome,
} from "../../src/actions/recovery/bandit.js";
import { betaSample, gamma, seededUniform } from "../../src/actions/recovery/random.js";
import { STRATEGIES, type DecisionRecord, type Strategy } from "../../src/actions/recovery/contract.js";
import type { SharedState } from "../../src/actions/types.js";
import { sharedStateOf } from "../../src/engine/history.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { StateStore } from "../../src/store/types.js";
import { memoryState, scratch } from "../helpers.js";
import { bothStores } from "../stores.js";

const dir = scratch();

describe("seeded randomness", () => {
  it("gives the same draws for the same seed and different ones for another", () => {
    const a = seededUniform("run-1");
    const b = seededUniform("run-1");
    const c = seededUniform("run-2");
    const xs = Array.from({ length: 100 }, () => a());
    expect(Array.from({ length: 100 }, () => b())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c())).not.toEqual(xs);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
  });

  it("draws Beta and Gamma variables with the right mean and variance", () => {
    const u = seededUniform("moments");
    const n = 20_000;
    for (const [a, b] of [
      [2, 5],
      [0.5, 0.5],
      [30, 10],
    ] as const) {
      const xs = Array.from({ length: n }, () => betaSample(u, a, b));
      const mean = xs.reduce((s, x) => s + x, 0) / n;
      const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / n;
      expect(mean).toBeCloseTo(a / (a + b), 2);
      expect(variance).toBeCloseTo((a * b) / ((a + b) ** 2 * (a + b + 1)), 2);
      expect(xs.every((x) => x >= 0 && x <= 1)).toBe(true);
    }
    // Gamma(k, 1) has mean k: a shape below 1 takes the boosted path.
    for (const k of [0.3, 1, 4.5]) {
      const xs = Array.from({ length: n }, () => gamma(u, k));
      expect(xs.reduce((s, x) => s + x, 0) / n).toBeCloseTo(k, 1);
    }
  });
});

describe("reward", () => {
  const ok = (rowsRecovered: number, seconds: number, duplicates = 0): StrategyOutcome => ({ succeeded: true, rowsRecovered, seconds, duplicates });
  it("is 0 for a failed recovery, at least 1/2 for a success, more when faster, less with duplicates", () => {
    expect(reward({ succeeded: false, rowsRecovered: 500, seconds: 1, duplicates: 0 })).toBe(0);
    expect(reward(ok(0, 3))).toBe(0.5);
    expect(reward(ok(100, 1))).toBeCloseTo(0.75, 10);
    expect(reward(ok(1000, 1))).toBeCloseTo(0.5 + 0.5 * (1000 / 1100), 10);
    expect(reward(ok(1000, 1))).toBeGreaterThan(reward(ok(1000, 10)));
    // Half of what arrived were duplicates: half the reward.
    expect(reward(ok(100, 1, 100))).toBeCloseTo(0.375, 10);
    for (const o of [ok(1e9, 0), ok(-5, -1), ok(Number.NaN, 1)]) (expect(reward(o)).toBeGreaterThanOrEqual(0), expect(reward(o)).toBeLessThanOrEqual(1));
  });
});

const decisionFor = (key: BanditKey, choice: Strategy, seed: string, decidedAt: string): DecisionRecord => ({
  kind: "sluice.dev/recovery-decision-v1",
  banditKey: key,
  class: key.class === "none" ? null : key.class,
  evidence: [],
  considered: [],
  choice,
  why: "",
  seed,
  decidedAt,
});

describe("cold start and discounting", () => {
  it("starts from the rule-based priors: a rate-limited source is waited for, a 5xx one falls back", async () => {
    const state = memoryState();
    const arms = STRATEGIES.filter((s) => s !== "give_up");
    const best = async (cls: BanditKey["class"]) => {
      const { considered } = await chooseStrategy(state, { source: "s", class: cls }, [...arms], "seed");
      return [...considered].sort((a, b) => b.estimatedSuccess - a.estimatedSuccess)[0]!.strategy;
    };
    expect(await best("rate_limited")).toBe("wait_retry_after");
    expect(await best("server_unavailable")).toBe("switch_to_fallback");
    expect(await best("network")).toBe("retry_with_backoff");
    expect(await best("none")).toBe("resume_from_checkpoint");
    expect(["resume_from_checkpoint", "reduce_page_size"]).toContain(await best("truncated_body"));
    // Nothing was written: choosing teaches nothing.
    expect(await state.list(BANDIT_NAMESPACE)).toEqual([]);
  });

  it("chooses give_up only when it is the only thing allowed, and learns nothing from it", async () => {
    const state = memoryState();
    const key: BanditKey = { source: "s", class: "auth" };
    expect((await chooseStrategy(state, key, ["give_up"], "x")).choice).toBe("give_up");
    expect((await chooseStrategy(state, key, ["give_up", "switch_to_fallback"], "x")).choice).toBe("switch_to_fallback");
    const r = await recordStrategyOutcome(state, decisionFor(key, "give_up", "x", "t"), { succeeded: true, rowsRecovered: 0, seconds: 1, duplicates: 0 });
    expect(r.counted).toBe(false);
    expect(await state.list(BANDIT_NAMESPACE)).toEqual([]);
  });

  it("fades old outcomes towards the prior, never below it, and counts a decision once", async () => {
    const state = memoryState();
    const key: BanditKey = { source: "http://primary", class: "server_unavailable" };
    const prior = priorFor("server_unavailable", "retry_with_backoff");
    for (let i = 0; i < 10; i++)
      await recordStrategyOutcome(state, decisionFor(key, "retry_with_backoff", `s${i}`, `t${i}`), {
        succeeded: false,
        rowsRecovered: 0,
        seconds: 1,
        duplicates: 0,
      });
    const after10 = (await readBandit(state, key)).state.arms.retry_with_backoff;
    expect(after10.alpha).toBeCloseTo(prior.alpha, 10); // failures add nothing to alpha; decay never goes below the prior
    expect(after10.beta).toBeGreaterThan(prior.beta + 5);
    // Two hundred successes of another arm: the old failures of this one fade.
    for (let i = 0; i < 200; i++)
      await recordStrategyOutcome(state, decisionFor(key, "switch_to_fallback", `f${i}`, `t${i}`), {
        succeeded: true,
        rowsRecovered: 500,
        seconds: 1,
        duplicates: 0,
      });
    const faded = (await readBandit(state, key)).state;
    expect(faded.arms.retry_with_backoff.beta - prior.beta).toBeLessThan((after10.beta - prior.beta) * 0.2);
    expect(faded.arms.retry_with_backoff.beta).toBeGreaterThanOrEqual(prior.beta);
    expect(faded.updates).toBe(210);
    // The same decision again (a retried last step): not counted twice.
    const again = await recordStrategyOutcome(state, decisionFor(key, "switch_to_fallback", "f199", "t199"), {
      succeeded: false,
      rowsRecovered: 0,
      seconds: 1,
      duplicates: 0,
    });
    expect(again.counted).toBe(false);
    expect((await readBandit(state, key)).state.updates).toBe(210);
  });
});

/**
 * Test 11: incidents on one (source, class) where retry succeeds 10% and the fallback 80%, the
 * world drawn by a generator of its own; after `swapAt` the odds swap.
 */
async function incidents(state: SharedState, seed: string, n: number, swapAt: number): Promise<Strategy[]> {
  const key: BanditKey = { source: "http://primary.test/trades", class: "server_unavailable" };
  const world = seededUniform(`world:${seed}`);
  const choices: Strategy[] = [];
  for (let i = 1; i <= n; i++) {
    const odds: Partial<Record<Strategy, number>> =
      i < swapAt ? { retry_with_backoff: 0.1, switch_to_fallback: 0.8 } : { retry_with_backoff: 0.8, switch_to_fallback: 0.1 };
    const { choice } = await chooseStrategy(state, key, ["retry_with_backoff", "switch_to_fallback"], `${seed}:${i}`);
    choices.push(choice);
    const ok = world() < odds[choice]!;
    await recordStrategyOutcome(state, decisionFor(key, choice, `${seed}:${i}`, `incident-${i}`), {
      succeeded: ok,
      rowsRecovered: ok ? 700 : 0,
      seconds: 2,
      duplicates: 0,
    });
  }
  return choices;
}

const share = (xs: Strategy[], s: Strategy) => xs.filter((x) => x === s).length / xs.length;
/** Incidents after the swap until the new best arm is chosen in at least 8 of the next 10. */
function followedAfter(choices: Strategy[], swapAt: number, best: Strategy): number {
  for (let j = swapAt - 1; j + 10 <= choices.length; j++) if (choices.slice(j, j + 10).filter((c) => c === best).length >= 8) return j - (swapAt - 1);
  return Infinity;
}

describe("test 11: the bandit learns, follows a change, and replays", () => {
  const SWAP = 101;
  const stores: StateStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.close();
  });

  it("chooses the fallback in ≥ 90% of incidents 51–100 and follows the swap within 30 incidents", async () => {
    for (const seed of ["test-11", "another seed", "third"]) {
      const choices = await incidents(memoryState(), seed, 160, SWAP);
      expect(share(choices.slice(50, 100), "switch_to_fallback"), seed).toBeGreaterThanOrEqual(0.9);
      expect(followedAfter(choices, SWAP, "retry_with_backoff"), seed).toBeLessThanOrEqual(30);
    }
  });

  it("makes the same choices for the same seed, in memory and in the SQLite store, and other choices for another seed", async () => {
    const sqlite = openSqliteStore(join(dir("bandit-"), "sluice.db"));
    stores.push(sqlite);
    const inMemory = await incidents(memoryState(), "replay", 120, SWAP);
    const again = await incidents(memoryState(), "replay", 120, SWAP);
    const stored = await incidents(sharedStateOf(sqlite), "replay", 120, SWAP);
    expect(again).toEqual(inMemory);
    expect(stored).toEqual(inMemory);
    expect(await incidents(memoryState(), "other", 120, SWAP)).not.toEqual(inMemory);
    // The learning is in the store, for the next run and every process.
    const kept = await sqlite.getState(BANDIT_NAMESPACE, "http://primary.test/trades|server_unavailable");
    expect(kept?.version).toBe(120);
    expect((kept?.value as { updates: number }).updates).toBe(120);
  });
});

describe.each(bothStores("bandit"))("recording outcomes concurrently on $dialect", (backend) => {
  let store: StateStore;
  afterAll(async () => {
    await store?.close();
    await backend.drop();
  });

  it("loses no update when many writers record at once (compare-and-set)", async () => {
    store = (await backend.open()) ?? openSqliteStore(join(dir("bandit-cas-"), "sluice.db"));
    const key: BanditKey = { source: `cas-${backend.dialect}`, class: "timeout" };
    // Two views of the store, as two processes would have; count the writes that lost the race.
    let lost = 0;
    const view = (): SharedState => {
      const v = sharedStateOf(store);
      return { ...v, put: async (...a) => (await v.put(...a)) ?? (lost++, null) };
    };
    const views = [view(), view()];
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        recordStrategyOutcome(views[i % 2]!, decisionFor(key, "reduce_page_size", `c${i}`, `t${i}`), {
          succeeded: true,
          rowsRecovered: 100,
          seconds: 1,
          duplicates: 0,
        }),
      ),
    );
    expect(results.every((r) => r.counted)).toBe(true);
    const { state } = await readBandit(views[0]!, key);
    expect(state.updates).toBe(24);
    expect(state.recorded).toHaveLength(24);
    expect(lost).toBeGreaterThan(0); // the compare-and-set did refuse writers, and they retried
  });
});

/** The work queue alone: keys not events, one reconcile per key at a time, backoff per key, delayed requeues. */
import { describe, expect, it } from "vitest";
import { workQueue } from "../../src/operator/queue.js";
import { fakeClock } from "./fake-clock.js";

describe("the operator's work queue", () => {
  it("folds repeated adds of a waiting key into one reconcile, and runs a key added while running once more after", async () => {
    const clock = fakeClock();
    const seen: string[] = [];
    let release!: () => void;
    const q = workQueue({
      clock,
      concurrency: 1,
      reconcile: async (k) => {
        seen.push(k);
        if (k === "a" && seen.filter((x) => x === "a").length === 1) await new Promise<void>((r) => (release = r));
        return {};
      },
      onError: () => {},
    });
    q.add("a");
    await clock.advance(0);
    q.add("a");
    q.add("a");
    q.add("b");
    q.add("b");
    await clock.advance(0);
    release();
    await q.idle();
    expect(seen).toEqual(["a", "b", "a"]);
  });

  it("backs a failing key off exponentially, alone, and forgets its failures once it succeeds", async () => {
    const clock = fakeClock(0);
    const at: Record<string, number[]> = { bad: [], good: [] };
    let fail = 3;
    const retries: number[] = [];
    const q = workQueue({
      clock,
      concurrency: 1,
      baseDelayMs: 100,
      maxDelayMs: 1000,
      random: () => 0.5,
      reconcile: async (k) => {
        at[k]!.push(clock.now());
        if (k === "bad" && fail-- > 0) throw new Error("boom");
        return {};
      },
      onError: (_k, _e, ms) => retries.push(ms),
    });
    q.add("bad");
    q.add("good");
    await clock.advance(10_000);
    expect(retries).toEqual([100, 200, 400]);
    expect(at.bad).toEqual([0, 100, 300, 700]);
    expect(at.good).toEqual([0]);
  });

  it("a delayed requeue runs at its time; an earlier add wins over a later one", async () => {
    const clock = fakeClock(0);
    const at: number[] = [];
    const q = workQueue({ clock, concurrency: 1, reconcile: async () => (at.push(clock.now()), {}), onError: () => {} });
    q.add("k", 5000);
    q.add("k", 1000);
    q.add("k", 9000);
    expect([...q.delayed().values()]).toEqual([1000]);
    await clock.advance(20_000);
    expect(at).toEqual([1000]);
    await q.stop();
    q.add("k");
    await clock.advance(1000);
    expect(at).toEqual([1000]);
  });
});

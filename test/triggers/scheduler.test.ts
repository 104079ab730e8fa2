import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { StateStore } from "../../src/store/types.js";
import { startWorkflowRun } from "../../src/control/runs.js";
import { startScheduler, type FireReport, type Scheduler } from "../../src/triggers/scheduler.js";
import { fireRunId, triggerKey } from "../../src/triggers/schedule.js";
import { scratch, workflow } from "../helpers.js";

const dirs = scratch();
const T0 = Date.parse("2026-03-01T00:00:00Z");
const MIN = 60_000;
const EVERY5 = "*/5 * * * *";
const KEY = triggerKey(EVERY5);

let open: { store: StateStore; schedulers: Scheduler[] }[] = [];
afterEach(async () => {
  for (const o of open) {
    for (const s of o.schedulers) await s.stop();
    await o.store.close();
  }
  open = [];
});

function env() {
  const store = openSqliteStore(join(dirs("sluice-sched-"), "sluice.db"));
  const o = { store, schedulers: [] as Scheduler[] };
  open.push(o);
  let t = T0;
  const clock = { set: (ms: number) => (t = ms), now: () => t };
  const fires: FireReport[] = [];
  const scheduler = (owner: string, extra: { leaseTtlMs?: number } = {}) => {
    const s = startScheduler({ store, owner, autoStart: false, now: clock.now, onFire: (f) => fires.push(f), ...extra });
    o.schedulers.push(s);
    return s;
  };
  return { store, clock, fires, scheduler };
}

async function apply(store: StateStore, name: string, trigger: Record<string, unknown>, at = T0): Promise<void> {
  const wf = workflow({ triggers: [trigger, { manual: {} }], steps: [{ name: "a", agent: "test", action: "echo", with: { value: 1 } }] }, undefined, name);
  await store.saveWorkflow({ name, spec: wf, yaml: JSON.stringify(wf), source: null, createdAt: new Date(at).toISOString() });
}

const runsOf = async (store: StateStore, workflow: string) => (await store.listRuns({ workflow, limit: 1000 })).sort((a, b) => (a.id < b.id ? -1 : 1));

describe("the scheduler", () => {
  it("fires a due schedule once, recording the fire before the run, with a run id derived from the fire", async () => {
    const { store, clock, fires, scheduler } = env();
    await apply(store, "every5", { schedule: EVERY5 });
    const s = scheduler("a");
    clock.set(T0 + 4 * MIN);
    await s.tick();
    expect(s.isLeader()).toBe(true);
    expect(await runsOf(store, "every5")).toEqual([]);

    clock.set(T0 + 5 * MIN + 1500);
    await s.tick();
    const runs = await runsOf(store, "every5");
    expect(runs).toHaveLength(1);
    const fireAt = new Date(T0 + 5 * MIN).toISOString();
    expect(runs[0]!.id).toBe(fireRunId("every5", KEY, T0 + 5 * MIN));
    expect(runs[0]!.trigger).toMatchObject({ type: "schedule", name: EVERY5, fireAt });
    expect(await store.listFires({ workflow: "every5" })).toMatchObject([{ triggerKey: KEY, fireAt, outcome: "started", runId: runs[0]!.id }]);
    expect(fires).toEqual([{ workflow: "every5", trigger: KEY, fireAt, lagMs: 1500, outcome: "started", runId: runs[0]!.id }]);

    // The same tick again, and a restarted scheduler (fresh memory) at the same time: nothing new.
    await s.tick();
    await s.stop();
    await scheduler("a").tick();
    expect(await runsOf(store, "every5")).toHaveLength(1);
    expect(await store.listFires({ workflow: "every5" })).toHaveLength(1);
  });

  it("never counts from the epoch: a new workflow's first fire is the first after it was applied", async () => {
    const { store, clock, scheduler } = env();
    await apply(store, "late", { schedule: EVERY5 }, T0 + 7 * MIN);
    const s = scheduler("a");
    clock.set(T0 + 7 * MIN + 10_000);
    await s.tick();
    expect(await store.listFires({ workflow: "late" })).toEqual([]);
    clock.set(T0 + 10 * MIN + 1000);
    await s.tick();
    expect((await store.listFires({ workflow: "late" })).map((f) => [f.fireAt, f.outcome])).toEqual([[new Date(T0 + 10 * MIN).toISOString(), "started"]]);
  });

  it("a fire recorded by another scheduler is left to it", async () => {
    const { store, clock, scheduler } = env();
    await apply(store, "every5", { schedule: EVERY5 });
    const fireAt = new Date(T0 + 5 * MIN).toISOString();
    expect(await store.recordFire({ workflow: "every5", triggerKey: KEY, fireAt, recordedAt: fireAt })).toBe(true);
    // Settled by the other one too (otherwise the leader would finish it as an interrupted fire).
    await store.settleFire("every5", KEY, fireAt, "started", "r-elsewhere");
    clock.set(T0 + 5 * MIN + 1000);
    await scheduler("a").tick();
    expect(await runsOf(store, "every5")).toEqual([]);
  });

  it("fires only as the leader; another takes over after a stop or an expired lease, never firing a tick twice", async () => {
    const { store, clock, scheduler } = env();
    await apply(store, "every5", { schedule: EVERY5 });
    const a = scheduler("a", { leaseTtlMs: 10_000 });
    const b = scheduler("b", { leaseTtlMs: 10_000 });

    clock.set(T0 + 5 * MIN + 1000);
    await a.tick();
    await b.tick();
    expect(a.isLeader()).toBe(true);
    expect(b.isLeader()).toBe(false);
    expect(await runsOf(store, "every5")).toHaveLength(1);

    // A stops: it gives the lease up, B leads at once and does not fire 5 min again.
    await a.stop();
    await b.tick();
    expect(b.isLeader()).toBe(true);
    expect(await runsOf(store, "every5")).toHaveLength(1);
    clock.set(T0 + 10 * MIN + 1000);
    await b.tick();
    expect(await runsOf(store, "every5")).toHaveLength(2);

    // B goes silent (no more ticks): C waits until B's lease expires, then takes over.
    const c = scheduler("c", { leaseTtlMs: 10_000 });
    clock.set(T0 + 10 * MIN + 5000);
    await c.tick();
    expect(c.isLeader()).toBe(false);
    clock.set(T0 + 10 * MIN + 12_000);
    expect(b.isLeader()).toBe(false); // its lease ran out by its own clock too
    await c.tick();
    expect(c.isLeader()).toBe(true);
    expect(await runsOf(store, "every5")).toHaveLength(2);
    clock.set(T0 + 15 * MIN + 1000);
    await c.tick();
    await b.tick(); // B wakes up: C holds the lease, B fires nothing
    expect(b.isLeader()).toBe(false);
    expect(c.isLeader()).toBe(true);
    const runs = await runsOf(store, "every5");
    expect(runs.map((r) => r.trigger?.fireAt)).toEqual([5, 10, 15].map((m) => new Date(T0 + m * MIN).toISOString()));
  });

  it("after downtime with catchUp skip: the newest fire runs if within the grace, else one skipped row", async () => {
    const { store, clock, scheduler, fires } = env();
    await apply(store, "skipper", { schedule: EVERY5 });
    clock.set(T0 + 5 * MIN + 1000);
    await scheduler("a").tick();

    // Down from 5 to 60 min + 30 s: 11 fires missed; 60 min is 30 s late, so it still runs.
    clock.set(T0 + 60 * MIN + 30_000);
    await scheduler("a2").tick(); // the old process's lease expired long ago
    expect(fires.at(-1)).toMatchObject({
      fireAt: new Date(T0 + 60 * MIN).toISOString(),
      outcome: "started (skipped 10 earlier fires missed while down)",
      lagMs: 30_000,
    });

    // Down from 60 to 92 min: the newest, 90, is 2 min late: nothing runs, one row says why.
    clock.set(T0 + 92 * MIN);
    await scheduler("a3").tick();
    const f = await store.listFires({ workflow: "skipper" });
    expect(f.map((x) => [x.fireAt, x.outcome, x.runId === null])).toEqual([
      [new Date(T0 + 90 * MIN).toISOString(), "skipped: missed 6 fires while down", true],
      [new Date(T0 + 60 * MIN).toISOString(), "started (skipped 10 earlier fires missed while down)", false],
      [new Date(T0 + 5 * MIN).toISOString(), "started", false],
    ]);
    expect(await runsOf(store, "skipper")).toHaveLength(2);

    // And the schedule goes on from there.
    clock.set(T0 + 95 * MIN + 1000);
    await scheduler("a4").tick();
    expect(await runsOf(store, "skipper")).toHaveLength(3);
  });

  it("after downtime with catchUp runOnce: exactly one run for the newest missed fire", async () => {
    const { store, clock, scheduler } = env();
    await apply(store, "catcher", { schedule: EVERY5, catchUp: "runOnce" });
    clock.set(T0 + 5 * MIN + 1000);
    await scheduler("a").tick();
    clock.set(T0 + 62 * MIN);
    const s = scheduler("a2");
    await s.tick();
    await s.tick();
    const f = await store.listFires({ workflow: "catcher" });
    expect(f.map((x) => [x.fireAt, x.outcome])).toEqual([
      [new Date(T0 + 60 * MIN).toISOString(), "caught up 11 missed fires"],
      [new Date(T0 + 5 * MIN).toISOString(), "started"],
    ]);
    const runs = await runsOf(store, "catcher");
    expect(runs).toHaveLength(2);
    expect(runs.map((r) => r.id)).toContain(f[0]!.runId);
  });

  it("finishes a fire left unsettled by a crash, without a duplicate run", async () => {
    const { store, clock, scheduler } = env();
    await apply(store, "crashy", { schedule: EVERY5 });
    const at5 = new Date(T0 + 5 * MIN).toISOString();
    const at10 = new Date(T0 + 10 * MIN).toISOString();
    // Crash 1: fire recorded, run never started.
    await store.recordFire({ workflow: "crashy", triggerKey: KEY, fireAt: at5, recordedAt: at5 });
    // Crash 2: fire recorded and its run started, but never settled.
    await store.recordFire({ workflow: "crashy", triggerKey: KEY, fireAt: at10, recordedAt: at10 });
    const started = await startWorkflowRun(store, {
      workflow: "crashy",
      trigger: { type: "schedule", name: EVERY5, fireAt: at10 },
      id: fireRunId("crashy", KEY, T0 + 10 * MIN),
    });
    expect(await store.unsettledFires()).toHaveLength(2);

    clock.set(T0 + 10 * MIN + 3000);
    const s = scheduler("after-restart");
    await s.tick();
    await s.tick();
    expect(await store.unsettledFires()).toEqual([]);
    const runs = await runsOf(store, "crashy");
    expect(runs.map((r) => r.id).sort()).toEqual([fireRunId("crashy", KEY, T0 + 5 * MIN), started.id].sort());
    const f = await store.listFires({ workflow: "crashy" });
    expect(f.map((x) => [x.fireAt, x.outcome, x.runId])).toEqual([
      [at10, "started", started.id],
      [at5, "started", fireRunId("crashy", KEY, T0 + 5 * MIN)],
    ]);
  });

  it("concurrencyPolicy Forbid skips while a scheduled run is active; a manual run does not count", async () => {
    const { store, clock, scheduler } = env();
    await apply(store, "forbid", { schedule: EVERY5, concurrencyPolicy: "Forbid" });
    await startWorkflowRun(store, { workflow: "forbid", trigger: { type: "manual" } });
    const s = scheduler("a");
    clock.set(T0 + 5 * MIN + 1000);
    await s.tick();
    const first = fireRunId("forbid", KEY, T0 + 5 * MIN);
    expect(await store.getRun(first)).toBeDefined(); // the manual run did not block it

    clock.set(T0 + 10 * MIN + 1000);
    await s.tick();
    expect(await store.lastFire("forbid", KEY)).toMatchObject({ outcome: `skipped: previous run ${first} still running`, runId: null });
    expect(await store.getRun(fireRunId("forbid", KEY, T0 + 10 * MIN))).toBeUndefined();

    await store.finishRun(first, null, "succeeded", new Date(clock.now()).toISOString(), null);
    clock.set(T0 + 15 * MIN + 1000);
    await s.tick();
    expect(await store.lastFire("forbid", KEY)).toMatchObject({ outcome: "started", runId: fireRunId("forbid", KEY, T0 + 15 * MIN) });
  });

  it("concurrencyPolicy Replace cancels the active scheduled run and starts the new one", async () => {
    const { store, clock, scheduler } = env();
    await apply(store, "replace", { schedule: EVERY5, concurrencyPolicy: "Replace" });
    const s = scheduler("a");
    clock.set(T0 + 5 * MIN + 1000);
    await s.tick();
    const first = fireRunId("replace", KEY, T0 + 5 * MIN);
    clock.set(T0 + 10 * MIN + 1000);
    await s.tick();
    const second = fireRunId("replace", KEY, T0 + 10 * MIN);
    expect((await store.getRun(first))!.cancelRequested).toBe(true);
    expect((await store.getRun(second))!.cancelRequested).toBe(false);
    expect(await store.lastFire("replace", KEY)).toMatchObject({ outcome: `started; replaced ${first}`, runId: second });
  });

  it("runs its own timer and releases the lease on stop", async () => {
    const store = openSqliteStore(join(dirs("sluice-sched-"), "sluice.db"));
    open.push({ store, schedulers: [] });
    const s = startScheduler({ store, owner: "timer", tickMs: 10 });
    await new Promise((r) => setTimeout(r, 60));
    expect(s.isLeader()).toBe(true);
    expect(await store.acquireLease("scheduler", "other", 10_000, Date.now())).toBe(false);
    await s.stop();
    expect(s.isLeader()).toBe(false);
    expect(await store.acquireLease("scheduler", "other", 10_000, Date.now())).toBe(true);
  });
});

/**
 * The store methods behind the service (queue, registry, events, fires, leases) and the file
 * ledger (ingested and rejected files), the same contract on SQLite and PostgreSQL.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createRun } from "../../src/engine/index.js";
import type { StateStore } from "../../src/store/types.js";
import { bothStores } from "../stores.js";
import { failure, testEnv, workflow, type TestEnv } from "../helpers.js";

let env: TestEnv;
afterEach(async () => env?.cleanup());

const wf = (name = "svc-flow") =>
  workflow(
    {
      steps: [
        { name: "a", agent: "test", action: "echo", with: { value: 1 } },
        { name: "b", agent: "test", action: "echo", with: { value: 2 }, dependsOn: ["a"] },
      ],
    },
    undefined,
    name,
  );

describe.each(bothStores("svc"))("service store on $dialect", (backend) => {
  let shared: StateStore | undefined;
  beforeAll(async () => void (shared = await backend.open()));
  afterAll(async () => {
    await shared?.close();
    await backend.drop();
  });
  const makeEnv = () => (env = testEnv([], shared ? { store: shared } : {}));

  it("hands each queued run to one claimer, skips leased ones, and takes over expired leases", async () => {
    const { store } = makeEnv();
    const now = Date.now();
    const queued = await Promise.all([1, 2, 3].map(() => createRun(store, { workflow: wf("claim-flow") })));
    const leased = await createRun(store, { workflow: wf("claim-flow"), lease: { owner: "cli", expiresAt: now + 60_000 } });
    const [a, b] = await Promise.all([store.claimRuns("w1", 10_000, now, 2), store.claimRuns("w2", 10_000, now, 5)]);
    const mine = [...a, ...b].map((r) => r.id).filter((id) => queued.some((q) => q.id === id) || id === leased.id);
    expect(new Set(mine).size).toBe(mine.length); // nobody got a run twice
    expect(mine.sort()).toEqual(queued.map((r) => r.id).sort()); // the leased run was not taken
    // The CLI's lease expires: the run is claimable again.
    const later = await store.claimRuns("w3", 10_000, now + 61_000, 50);
    expect(later.map((r) => r.id)).toContain(leased.id);
    expect(later.find((r) => r.id === leased.id)!.leaseOwner).toBe("w3");
  });

  it("keeps shared state with a compare-and-set on its version: of two writers on one version exactly one wins", async () => {
    const { store } = makeEnv();
    const ns = `breaker-${Date.now()}`;
    expect(await store.getState(ns, "http://a")).toBeUndefined();
    expect(await store.putState(ns, "http://a", { state: "closed", failures: 1 }, 0, "2026-01-01T00:00:00Z")).toBe(1);
    expect(await store.putState(ns, "http://a", { state: "closed" }, 0, "2026-01-01T00:00:01Z")).toBeNull(); // someone wrote first
    const wins = await Promise.all([
      store.putState(ns, "http://a", { state: "open", by: 1 }, 1, "2026-01-01T00:00:02Z"),
      store.putState(ns, "http://a", { state: "open", by: 2 }, 1, "2026-01-01T00:00:02Z"),
    ]);
    expect(wins.filter((v) => v === 2)).toHaveLength(1);
    expect(wins.filter((v) => v === null)).toHaveLength(1);
    const now = await store.getState(ns, "http://a");
    expect(now).toMatchObject({ namespace: ns, key: "http://a", version: 2, value: { state: "open" } });
    await store.putState(ns, "b", "a plain string", 0, "2026-01-01T00:00:03Z");
    expect((await store.listState(ns)).map((r) => [r.key, r.value])).toEqual([
      ["b", "a plain string"],
      ["http://a", now!.value as object],
    ]);
  });

  it("refuses a second run with the same id", async () => {
    const { store } = makeEnv();
    await createRun(store, { workflow: wf(), id: "r-fixed-1" + backend.dialect });
    const err = await failure(createRun(store, { workflow: wf(), id: "r-fixed-1" + backend.dialect }));
    expect(err.code).toBe("CONFLICT");
  });

  it("wakes listeners when a run is queued", async () => {
    const { store } = makeEnv();
    let woke = 0;
    const off = await store.onRunsQueued(() => woke++);
    await createRun(store, { workflow: wf() });
    for (let i = 0; i < 50 && woke === 0; i++) await new Promise((r) => setTimeout(r, 20));
    await off();
    expect(woke).toBeGreaterThan(0);
  });

  it("reopens a failed run with a fresh retry budget", async () => {
    const { store } = makeEnv();
    const run = await createRun(store, { workflow: wf(), lease: { owner: "me", expiresAt: Date.now() + 10_000 } });
    await store.markRunStarted(run.id, "me", new Date().toISOString(), new Date(Date.now() + 1000).toISOString());
    await store.beginAttempt(run.id, "a", 1, "me", new Date().toISOString());
    await store.endAttempt({
      runId: run.id,
      step: "a",
      n: 1,
      owner: "me",
      status: "failed",
      endedAt: new Date().toISOString(),
      error: { code: "INTERNAL", message: "x" },
      outputs: null,
      stepStatus: "failed",
      notBefore: null,
    });
    await store.settleSteps(run.id, ["b"], "skipped", new Date().toISOString(), null);
    await store.finishRun(run.id, "me", "failed", new Date().toISOString(), { code: "INTERNAL", message: "x" });
    expect(await store.reopenRun(run.id, ["a", "b"])).toBe(true);
    expect(await store.reopenRun(run.id, ["a", "b"])).toBe(false); // already pending
    const again = (await store.getRun(run.id))!;
    expect([again.status, again.error, again.deadlineAt, again.leaseOwner]).toEqual(["pending", null, null, null]);
    const steps = await store.getSteps(run.id);
    expect(steps.map((s) => [s.name, s.status, s.attempts, s.retryBase])).toEqual([
      ["a", "pending", 1, 1],
      ["b", "pending", 0, 0],
    ]);
  });

  it("keeps workflow versions, rolls back and retires", async () => {
    const { store } = makeEnv();
    const w = wf("registry-flow");
    const at = new Date().toISOString();
    expect(await store.saveWorkflow({ name: "registry-flow", spec: w, yaml: "v1", source: "/x/a.yaml", createdAt: at })).toEqual({ version: 1, created: true });
    expect(await store.saveWorkflow({ name: "registry-flow", spec: w, yaml: "v1", source: "/x/a.yaml", createdAt: at })).toEqual({
      version: 1,
      created: false,
    });
    expect(await store.saveWorkflow({ name: "registry-flow", spec: w, yaml: "v2", source: "/x/a.yaml", createdAt: at })).toEqual({ version: 2, created: true });
    expect((await store.getWorkflow("registry-flow"))!.yaml).toBe("v2");
    expect(await store.setCurrentWorkflow("registry-flow", 1)).toBe(true);
    expect(await store.setCurrentWorkflow("registry-flow", 9)).toBe(false);
    expect((await store.getWorkflow("registry-flow"))!.version).toBe(1);
    expect((await store.workflowHistory("registry-flow")).map((v) => [v.version, v.current])).toEqual([
      [1, true],
      [2, false],
    ]);
    await store.retireWorkflow("registry-flow");
    expect((await store.listWorkflows()).map((v) => v.name)).not.toContain("registry-flow");
    expect((await store.getWorkflow("registry-flow", 2))!.yaml).toBe("v2");
  });

  it("stores events with the runs they started, and counts runs", async () => {
    const { store } = makeEnv();
    const id = `e-test-${backend.dialect}-${Date.now()}`;
    await store.recordEvent({ id, name: "source_data_updated", data: { n: 1 }, source: "test", createdAt: new Date().toISOString() });
    const r1 = await createRun(store, { workflow: wf("count-flow"), trigger: { type: "event", name: "source_data_updated", eventId: id } });
    const r2 = await createRun(store, { workflow: wf("count-flow"), trigger: { type: "event", name: "source_data_updated", eventId: id } });
    const ev = (await store.getEvent(id))!;
    expect(ev.data).toEqual({ n: 1 });
    expect(ev.runIds).toEqual([r1.id, r2.id].sort());
    expect((await store.listEvents({ name: "source_data_updated" })).map((e) => e.id)).toContain(id);
    const counts = await store.countRuns();
    expect(counts.find((c) => c.workflow === "count-flow" && c.status === "pending")?.count).toBe(2);
  });

  it("records a cron fire once and lists unsettled fires", async () => {
    const { store } = makeEnv();
    const f = {
      workflow: `fire-flow-${Date.now()}`,
      triggerKey: "schedule:0 * * * *@UTC",
      fireAt: "2026-11-27T10:00:00.000Z",
      recordedAt: new Date().toISOString(),
    };
    expect(await store.recordFire(f)).toBe(true);
    expect(await store.recordFire(f)).toBe(false);
    expect((await store.unsettledFires()).some((u) => u.workflow === f.workflow)).toBe(true);
    await store.settleFire(f.workflow, f.triggerKey, f.fireAt, "started", "r-1");
    expect((await store.unsettledFires()).some((u) => u.workflow === f.workflow)).toBe(false);
    expect((await store.lastFire(f.workflow, f.triggerKey))!.runId).toBe("r-1");
  });

  it("file ledger: a rejected file is remembered by checksum with its reason until its content is read after all", async () => {
    const { store } = makeEnv();
    const scope = `bulk:/data/in-${backend.dialect}-${Date.now()}`;
    const r1 = await createRun(store, { workflow: wf("ledger-flow") });
    const r2 = await createRun(store, { workflow: wf("ledger-flow") });
    await store.recordIngested(scope, [{ checksum: "good", path: "/data/in/a.csv", size: 5_000_000_000 }], r1.id);
    const reason = "/data/in/x.parquet: not a readable Parquet file: parquet file invalid (footer != PAR1)";
    // The same content under two names is one entry; an ingested checksum is never turned rejected.
    await store.recordRejected(
      scope,
      [
        { checksum: "bad", path: "/data/in/x.parquet", size: 7, reason },
        { checksum: "bad", path: "/data/in/x-copy.parquet", size: 7, reason },
        { checksum: "good", path: "/data/in/a.csv", size: 5_000_000_000, reason: "should not stick" },
      ],
      r1.id,
    );
    await store.recordRejected(scope, [], r1.id);

    expect(await store.ingestedChecksums(scope, ["good", "bad", "new"])).toEqual(new Set(["good"]));
    const [bad, ...more] = await store.rejectedFiles(scope, ["good", "bad", "bad", "new"]);
    expect(more).toEqual([]);
    expect(bad).toMatchObject({ checksum: "bad", path: "/data/in/x.parquet", size: 7, reason, runId: r1.id });
    expect(Date.parse(bad!.rejectedAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(await store.rejectedFiles(scope, [])).toEqual([]);
    expect(await store.rejectedFiles("other-scope", ["bad"])).toEqual([]);

    // Rejected again by a later run: the new reason, the first run and date.
    await store.recordRejected(scope, [{ checksum: "bad", path: "/data/in/x.parquet", size: 7, reason: "still unreadable" }], r2.id);
    expect(await store.rejectedFiles(scope, ["bad"])).toEqual([{ ...bad, reason: "still unreadable" }]);

    // Read after all (skipIngested: false, a newer reader): ingested, no longer rejected.
    await store.recordIngested(
      scope,
      [
        { checksum: "bad", path: "/data/in/x.parquet", size: 7 },
        { checksum: "bad", path: "/data/in/x-copy.parquet", size: 7 },
      ],
      r2.id,
    );
    expect(await store.ingestedChecksums(scope, ["good", "bad"])).toEqual(new Set(["good", "bad"]));
    expect(await store.rejectedFiles(scope, ["bad"])).toEqual([]);
  });

  it("gives a named lease to one owner until it expires or is released", async () => {
    const { store } = makeEnv();
    const name = `leader-${backend.dialect}-${Date.now()}`;
    expect(await store.acquireLease(name, "a", 1000, 0)).toBe(true);
    expect(await store.acquireLease(name, "b", 1000, 500)).toBe(false);
    expect(await store.acquireLease(name, "a", 1000, 900)).toBe(true); // renewal
    expect(await store.acquireLease(name, "b", 1000, 1500)).toBe(false);
    expect(await store.acquireLease(name, "b", 1000, 2000)).toBe(true); // a's lease expired at 1900
    await store.releaseNamedLease(name, "b");
    expect(await store.acquireLease(name, "a", 1000, 2001)).toBe(true);
  });
});

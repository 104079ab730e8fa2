/**
 * Workers taking runs from the queue: every run once, graceful drain, takeover after a grace
 * period, runs created by `sluice run` left alone. On both stores.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { spawnSync } from "node:child_process";
import { hostname } from "node:os";
import { defineAction } from "../../src/actions/types.js";
import { createRun, executeRun, startWorker, type Worker } from "../../src/engine/index.js";
import type { StateStore } from "../../src/store/types.js";
import { bothStores } from "../stores.js";
import { testEnv, workflow, type TestEnv } from "../helpers.js";

let env: TestEnv;
const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop(0)));
  await env?.cleanup();
});

/** Counts executions per (run, step) so a double execution shows. */
function counter() {
  const seen = new Map<string, number>();
  const def = defineAction({
    kind: "agent",
    owner: "count",
    action: "hit",
    description: "count executions",
    input: z.object({ ms: z.number().default(0) }).strict(),
    run: async ({ ms }, ctx) => {
      const k = `${ctx.runId}/${ctx.step}`;
      seen.set(k, (seen.get(k) ?? 0) + 1);
      if (ms) await new Promise((r) => setTimeout(r, ms));
      return { ok: true };
    },
  });
  return { seen, def };
}

async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(bothStores("worker"))("workers on $dialect", (backend) => {
  let shared: StateStore | undefined;
  beforeAll(async () => void (shared = await backend.open()));
  afterAll(async () => {
    await shared?.close();
    await backend.drop();
  });

  it("takes over at once a run whose lease a dead process of this host holds", async () => {
    const c = counter();
    env = testEnv([c.def], shared ? { store: shared } : {});
    const wf = workflow({ steps: [{ name: "a", agent: "count", action: "hit" }] }, env.actions);
    // A process that has exited: its pid names nobody, as after a kill -9.
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    const deadOwner = `${hostname()}:${gone.stdout}:dead00`;
    const run = await createRun(env.store, { workflow: wf, lease: { owner: deadOwner, expiresAt: Date.now() + 600_000 } });
    const t0 = Date.now();
    workers.push(await startWorker({ store: env.store, actions: env.actions, home: env.home, pollMs: 50 }));
    await until(async () => (await env.store.getRun(run.id))?.status === "succeeded");
    expect(Date.now() - t0).toBeLessThan(3_000); // not the ten minutes the lease had left
    expect(c.seen.get(`${run.id}/a`)).toBe(1);
  });

  it("two workers execute 40 queued runs, each step exactly once", async () => {
    const c = counter();
    env = testEnv([c.def], shared ? { store: shared } : {});
    const wf = workflow(
      {
        steps: [
          { name: "a", agent: "count", action: "hit" },
          { name: "b", agent: "count", action: "hit", dependsOn: ["a"] },
        ],
      },
      env.actions,
      "wq-flow",
    );
    const runs = await Promise.all(Array.from({ length: 40 }, () => createRun(env.store, { workflow: wf })));
    for (let i = 0; i < 2; i++) workers.push(await startWorker({ store: env.store, actions: env.actions, home: env.home, pollMs: 50, maxRuns: 8 }));
    const ids = new Set(runs.map((r) => r.id));
    await until(
      async () =>
        runs.every((r) => c.seen.get(`${r.id}/b`) === 1) &&
        (await Promise.all(runs.map((r) => env.store.getRun(r.id)))).every((r) => r!.status === "succeeded"),
    );
    expect([...c.seen].filter(([k]) => ids.has(k.split("/")[0]!)).every(([, n]) => n === 1)).toBe(true);
    const owners = new Set((await Promise.all(runs.map((r) => env.store.getAttempts(r.id)))).flat().map((a) => a.owner));
    expect(owners.size).toBe(2); // both workers took part
  });

  it("leaves a run created by `sluice run` (leased) to its creator", async () => {
    const c = counter();
    env = testEnv([c.def], shared ? { store: shared } : {});
    const wf = workflow({ steps: [{ name: "a", agent: "count", action: "hit" }] }, env.actions, "wq-leased");
    const run = await createRun(env.store, { workflow: wf, lease: { owner: "cli-owner", expiresAt: Date.now() + 60_000 } });
    workers.push(await startWorker({ store: env.store, actions: env.actions, home: env.home, pollMs: 20 }));
    await new Promise((r) => setTimeout(r, 200));
    expect(c.seen.get(`${run.id}/a`)).toBeUndefined();
    const done = await executeRun(run.id, { store: env.store, actions: env.actions, home: env.home, owner: "cli-owner" });
    expect(done.status).toBe("succeeded");
  });

  it("drains on stop: the running step finishes, the next one runs on another worker", async () => {
    const c = counter();
    env = testEnv([c.def], shared ? { store: shared } : {});
    const wf = workflow(
      {
        steps: [
          { name: "slow", agent: "count", action: "hit", with: { ms: 400 } },
          { name: "after", agent: "count", action: "hit", dependsOn: ["slow"] },
        ],
      },
      env.actions,
      "wq-drain",
    );
    const first = await startWorker({ store: env.store, actions: env.actions, home: env.home, pollMs: 20 });
    const run = await createRun(env.store, { workflow: wf });
    await until(async () => c.seen.get(`${run.id}/slow`) === 1);
    await first.stop(5_000);
    let steps = await env.store.getSteps(run.id);
    expect(steps.map((s) => s.status)).toEqual(["succeeded", "pending"]);
    expect((await env.store.getRun(run.id))!.leaseOwner).toBeNull(); // handed back at once
    workers.push(await startWorker({ store: env.store, actions: env.actions, home: env.home, pollMs: 20 }));
    await until(async () => (await env.store.getRun(run.id))!.status === "succeeded");
    steps = await env.store.getSteps(run.id);
    expect(steps.map((s) => s.attempts)).toEqual([1, 1]);
  });

  it("interrupts what is still running when the grace period ends; another worker retries it", async () => {
    const c = counter();
    env = testEnv([c.def], shared ? { store: shared } : {});
    const wf = workflow({ steps: [{ name: "long", agent: "test", action: "sleep", with: { ms: 1500 } }] }, env.actions, "wq-grace");
    const first = await startWorker({ store: env.store, actions: env.actions, home: env.home, pollMs: 20 });
    const run = await createRun(env.store, { workflow: wf });
    await until(async () => (await env.store.getAttempts(run.id)).length === 1);
    await first.stop(50);
    expect((await env.store.getAttempts(run.id)).map((a) => a.status)).toEqual(["running"]);
    workers.push(await startWorker({ store: env.store, actions: env.actions, home: env.home, pollMs: 20 }));
    await until(async () => (await env.store.getRun(run.id))!.status === "succeeded");
    expect((await env.store.getAttempts(run.id)).map((a) => a.status)).toEqual(["interrupted", "succeeded"]);
  });
});

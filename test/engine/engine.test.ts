import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { defineAction } from "../../src/actions/types.js";
import { createLimiter, createRun, executeRun, runDetail, type EngineEvent } from "../../src/engine/index.js";
import { retryDelayMs } from "../../src/engine/backoff.js";
import type { StateStore } from "../../src/store/types.js";
import { bothStores } from "../stores.js";
import { concurrencyProbe, runWorkflow, tempDir, testEnv, workflow, type TestEnv } from "../helpers.js";

let env: TestEnv;
afterEach(async () => env?.cleanup());

/** The same behaviours on both state stores. */
const STORES = bothStores("engine");
/** A workflow validated against this test's action catalogue. */
const flow = (spec: Record<string, unknown>) => workflow(spec, env.actions);

describe.each(STORES)("engine on $dialect", (backend) => {
  let shared: StateStore | undefined;
  beforeAll(async () => {
    shared = await backend.open();
  });
  afterAll(async () => {
    await shared?.close();
    await backend.drop();
  });
  /** A test environment on this backend's store (SQLite: a fresh file per test). */
  const makeEnv = (extra: Parameters<typeof testEnv>[0] = []) => testEnv(extra, shared ? { store: shared } : {});

  describe("scheduling", () => {
    it("runs independent steps concurrently and dependent steps in order", async () => {
      const probe = concurrencyProbe();
      env = makeEnv([probe.def]);
      const wf = flow({
        steps: [
          { name: "a", agent: "probe", action: "work", with: { ms: 150 } },
          { name: "b", agent: "probe", action: "work", with: { ms: 150 } },
          { name: "c", agent: "probe", action: "work", with: { ms: 150 } },
          { name: "d", agent: "probe", action: "work", with: { ms: 10 }, dependsOn: ["a", "b", "c"] },
        ],
      });
      const t0 = Date.now();
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("succeeded");
      expect(probe.state.max).toBe(3);
      expect(Date.now() - t0).toBeLessThan(450); // three 150 ms steps overlapped, not 450 ms in a row
      const dStart = probe.state.order.indexOf("start:d");
      for (const s of ["a", "b", "c"]) expect(probe.state.order.indexOf(`end:${s}`)).toBeLessThan(dStart);
    });

    it("honours the per-run parallelism and the process-wide limit", async () => {
      const probe = concurrencyProbe();
      env = makeEnv([probe.def]);
      const steps = Array.from({ length: 8 }, (_, i) => ({ name: `s${i}`, agent: "probe", action: "work", with: { ms: 40 } }));
      expect((await runWorkflow(env, flow({ parallelism: 2, steps }))).status).toBe("succeeded");
      expect(probe.state.max).toBe(2);

      probe.state.max = 0;
      const limiter = createLimiter(3);
      const runs = await Promise.all([1, 2].map(() => runWorkflow(env, flow({ steps }), { limiter })));
      expect(runs.map((r) => r.status)).toEqual(["succeeded", "succeeded"]);
      expect(probe.state.max).toBe(3); // two runs of 8 independent steps, never more than 3 at once
    });

    it("passes params and step outputs through expressions", async () => {
      env = makeEnv();
      const wf = flow({
        params: { greeting: { type: "string", default: "hello" }, n: { type: "integer", default: 3 } },
        steps: [
          { name: "first", agent: "test", action: "echo", with: { value: "${{ params.greeting }} world" } },
          {
            name: "second",
            agent: "test",
            action: "echo",
            dependsOn: ["first"],
            with: { value: { text: "${{ steps.first.outputs.value }}!", n: "${{ params.n }}" } },
          },
        ],
      });
      const run = await runWorkflow(env, wf, { params: { n: "7" } });
      const d = await runDetail(env.store, run.id);
      expect(d.steps.find((s) => s.name === "second")!.outputs).toEqual({ value: { text: "hello world!", n: 7 } });
      expect(d.params).toEqual({ greeting: "hello", n: 7 });
    });
  });

  describe("durable attempts", () => {
    it("writes the attempt before the action starts and finishes it after", async () => {
      let seenWhileRunning: unknown;
      const spy = defineAction({
        kind: "agent",
        owner: "probe",
        action: "look",
        description: "read the store from inside an attempt",
        input: z.object({}).strict(),
        run: async (_i, ctx) => {
          seenWhileRunning = (await env.store.getAttempts(ctx.runId)).map((a) => ({ step: a.step, n: a.n, status: a.status }));
          return {};
        },
      });
      env = makeEnv([spy]);
      const run = await runWorkflow(env, flow({ steps: [{ name: "look", agent: "probe", action: "look" }] }));
      expect(seenWhileRunning).toEqual([{ step: "look", n: 1, status: "running" }]);
      const attempts = await env.store.getAttempts(run.id);
      expect(attempts).toHaveLength(1);
      expect(attempts[0]).toMatchObject({ status: "succeeded", n: 1 });
      expect(Date.parse(attempts[0]!.endedAt!)).toBeGreaterThanOrEqual(Date.parse(attempts[0]!.startedAt));
    });
  });

  describe("timeouts", () => {
    it("aborts an in-process action at its timeout and records the attempt as timed out", async () => {
      env = makeEnv();
      const wf = flow({ steps: [{ name: "slow", agent: "test", action: "sleep", with: { ms: 5_000 }, timeout: "200ms" }] });
      const t0 = Date.now();
      const run = await runWorkflow(env, wf);
      expect(Date.now() - t0).toBeLessThan(2_000);
      expect(run.status).toBe("failed");
      const d = await runDetail(env.store, run.id);
      expect(d.steps[0]!.attempts).toEqual([expect.objectContaining({ status: "timedOut", error: expect.objectContaining({ code: "TIMEOUT" }) })]);
    });

    it("does not wait for an action that ignores its signal", async () => {
      env = makeEnv();
      const run = await runWorkflow(env, flow({ steps: [{ name: "stuck", agent: "test", action: "hang", timeout: "150ms" }] }));
      expect(run.status).toBe("failed");
      expect((await env.store.getAttempts(run.id))[0]!.status).toBe("timedOut");
    });

    it("kills the whole process group of an exec step on timeout", async () => {
      env = makeEnv();
      const dir = tempDir();
      const pidFile = join(dir, "grandchild.pid");
      // The shell starts a background grandchild and waits: both must die with the group.
      const wf = flow({
        steps: [{ name: "sh", exec: { command: ["sh", "-c", `sleep 30 & echo $! > ${pidFile}; wait`] }, timeout: "300ms" }],
      });
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("failed");
      expect((await env.store.getAttempts(run.id))[0]!.status).toBe("timedOut");
      const pid = Number(readFileSync(pidFile, "utf8"));
      await new Promise((r) => setTimeout(r, 100));
      expect(isAlive(pid)).toBe(false);
    });

    it("stops the run at the whole-run timeout", async () => {
      env = makeEnv();
      const wf = flow({
        timeout: "300ms",
        steps: [
          { name: "long", agent: "test", action: "sleep", with: { ms: 10_000 } },
          { name: "after", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["long"] },
        ],
      });
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("failed");
      expect(run.error?.code).toBe("RUN_TIMEOUT");
      const d = await runDetail(env.store, run.id);
      expect(d.steps.map((s) => [s.name, s.status])).toEqual([
        ["long", "cancelled"],
        ["after", "skipped"],
      ]);
    });
  });

  describe("retries", () => {
    it("retries with growing backoff and succeeds on the third attempt", async () => {
      env = makeEnv();
      const events: EngineEvent[] = [];
      const wf = flow({
        steps: [
          { name: "flaky", agent: "test", action: "flaky", with: { failures: 2 }, retry: { limit: 3, backoff: { initial: "50ms", factor: 3, jitter: 0 } } },
        ],
      });
      const run = await runWorkflow(env, wf, { events });
      expect(run.status).toBe("succeeded");
      const attempts = await env.store.getAttempts(run.id);
      expect(attempts.map((a) => a.status)).toEqual(["failed", "failed", "succeeded"]);
      const delays = events.flatMap((e) => (e.type === "step-ended" && e.retryInMs !== null ? [e.retryInMs] : []));
      expect(delays).toEqual([50, 150]);
      // The waits really happened between attempts.
      expect(Date.parse(attempts[2]!.startedAt) - Date.parse(attempts[1]!.endedAt!)).toBeGreaterThanOrEqual(140);
    });

    it("gives up after retry.limit retries", async () => {
      env = makeEnv();
      const wf = flow({
        steps: [{ name: "flaky", agent: "test", action: "flaky", with: { failures: 10 }, retry: { limit: 2, backoff: { initial: "10ms" } } }],
      });
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("failed");
      expect((await env.store.getAttempts(run.id)).length).toBe(3);
    });

    it("does not retry errors that retrying cannot fix", async () => {
      env = makeEnv();
      const wf = flow({
        steps: [
          { name: "bad", agent: "test", action: "flaky", with: { failures: 1, retryable: false }, retry: { limit: 5, backoff: { initial: "10ms" } } },
          { name: "badinput", agent: "test", action: "sleep", with: { ms: "${{ params.ms }}" }, retry: { limit: 5, backoff: { initial: "10ms" } } },
        ],
        params: { ms: { type: "string", default: "soon" } },
      });
      const run = await runWorkflow(env, wf);
      const d = await runDetail(env.store, run.id);
      expect(d.steps.map((s) => s.attempts.length)).toEqual([1, 1]);
      expect(d.steps[1]!.attempts[0]!.error?.code).toBe("BAD_INPUT");
      expect(d.steps[1]!.attempts[0]!.error?.message).toMatch(/input "ms" of test\/sleep/);
    });

    it("computes exponential delays with jitter inside the spread and under the cap", () => {
      const p = { limit: 10, initialMs: 1000, factor: 2, maxMs: 5000, jitter: 0.2 };
      expect(retryDelayMs(p, 1, () => 0.5)).toBe(1000);
      expect(retryDelayMs(p, 3, () => 0.5)).toBe(4000);
      expect(retryDelayMs(p, 6, () => 0.5)).toBe(5000);
      for (let i = 0; i < 100; i++) {
        const d = retryDelayMs(p, 2);
        expect(d).toBeGreaterThanOrEqual(1600);
        expect(d).toBeLessThanOrEqual(2400);
      }
    });
  });

  describe("failure and cancellation", () => {
    it("fails the run after running steps finish and skips the dependents", async () => {
      const probe = concurrencyProbe();
      env = makeEnv([probe.def]);
      const wf = flow({
        steps: [
          { name: "boom", exec: { command: ["sh", "-c", "echo nope >&2; exit 3"] } },
          { name: "sibling", agent: "probe", action: "work", with: { ms: 200 } },
          { name: "child", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["boom"] },
        ],
      });
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("failed");
      expect(run.error?.message).toMatch(/step boom failed: command "sh" exited with code 3: nope/);
      const d = await runDetail(env.store, run.id);
      expect(Object.fromEntries(d.steps.map((s) => [s.name, s.status]))).toEqual({ boom: "failed", sibling: "succeeded", child: "skipped" });
    });

    it("lets the run go on past a step with continueOnError", async () => {
      env = makeEnv();
      const wf = flow({
        steps: [
          { name: "optional", exec: { command: ["false"] }, continueOnError: true },
          { name: "next", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["optional"] },
        ],
      });
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("succeeded");
      const d = await runDetail(env.store, run.id);
      expect(d.steps.map((s) => s.status)).toEqual(["failed", "succeeded"]);
    });

    it("cancels a running run when another process asks through the store", async () => {
      env = makeEnv();
      const wf = flow({
        steps: [
          { name: "long", agent: "test", action: "sleep", with: { ms: 10_000 } },
          { name: "later", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["long"] },
        ],
      });
      const created = await createRun(env.store, { workflow: wf });
      const done = executeRun(created.id, { store: env.store, actions: env.actions, home: env.home });
      await new Promise((r) => setTimeout(r, 200));
      await env.store.requestCancel(created.id);
      const run = await done;
      expect(run.status).toBe("cancelled");
      const d = await runDetail(env.store, created.id);
      expect(d.steps.map((s) => s.status)).toEqual(["cancelled", "cancelled"]);
      expect(d.steps[0]!.attempts[0]!.status).toBe("cancelled");
    });
  });

  describe("exec steps", () => {
    it("captures stdout, exit code and SLUICE_OUTPUT values, and keeps the attempt log", async () => {
      env = makeEnv();
      const wf = flow({
        steps: [{ name: "hi", exec: { command: ["sh", "-c", 'echo "hello $WHO"; echo "rows=42" >> "$SLUICE_OUTPUT"'], env: { WHO: "sluice" } } }],
      });
      const run = await runWorkflow(env, wf);
      const d = await runDetail(env.store, run.id);
      expect(d.steps[0]!.outputs).toEqual({ exitCode: 0, stdout: "hello sluice", rows: "42" });
      const log = join(env.home, "runs", run.id, "logs", "hi.1.log");
      expect(existsSync(log) && readFileSync(log, "utf8")).toBe("hello sluice\n");
    });

    it("reports a missing program as a configuration error without retries", async () => {
      env = makeEnv();
      const wf = flow({ steps: [{ name: "x", exec: { command: ["no-such-program-xyz"] }, retry: { limit: 3 } }] });
      const run = await runWorkflow(env, wf);
      const attempts = await env.store.getAttempts(run.id);
      expect(attempts).toHaveLength(1);
      expect(attempts[0]!.error).toMatchObject({ code: "BAD_CONFIG", message: expect.stringMatching(/no-such-program-xyz" was not found/) });
    });
  });

  describe("detach and resume in-process", () => {
    it("leaves the run resumable on detach and resumes without re-running finished steps", async () => {
      let runsOfFirst = 0;
      const counter = defineAction({
        kind: "agent",
        owner: "probe",
        action: "count",
        description: "count executions",
        input: z.object({}).strict(),
        run: async () => ({ n: ++runsOfFirst }),
      });
      env = makeEnv([counter]);
      const wf = flow({
        steps: [
          { name: "first", agent: "probe", action: "count" },
          { name: "second", agent: "test", action: "sleep", with: { ms: 1_000 }, dependsOn: ["first"] },
        ],
      });
      const created = await createRun(env.store, { workflow: wf });
      const stop = new AbortController();
      const pending = executeRun(created.id, { store: env.store, actions: env.actions, home: env.home, signal: stop.signal });
      await new Promise((r) => setTimeout(r, 200));
      stop.abort();
      const detached = await pending;
      expect(detached.status).toBe("running");
      expect(detached.leaseOwner).toBeNull();

      // Resume: the sleep step was interrupted and runs again as attempt 2; "first" is not run again.
      const resumed = executeRun(created.id, { store: env.store, actions: env.actions, home: env.home });
      const run = await resumed;
      expect(run.status).toBe("succeeded");
      expect(runsOfFirst).toBe(1);
      const attempts = await env.store.getAttempts(created.id);
      expect(attempts.filter((a) => a.step === "second").map((a) => [a.n, a.status])).toEqual([
        [1, "interrupted"],
        [2, "succeeded"],
      ]);
    });

    it("refuses to resume a run whose lease is still held", async () => {
      env = makeEnv();
      const wf = flow({ steps: [{ name: "long", agent: "test", action: "sleep", with: { ms: 600 } }] });
      const created = await createRun(env.store, { workflow: wf });
      const first = executeRun(created.id, { store: env.store, actions: env.actions, home: env.home });
      await new Promise((r) => setTimeout(r, 100));
      await expect(executeRun(created.id, { store: env.store, actions: env.actions, home: env.home })).rejects.toMatchObject({ code: "CONFLICT" });
      expect((await first).status).toBe("succeeded");
    });
  });
});

/** Alive and not a zombie (a killed orphan may wait unreaped under a container's init). */
function isAlive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * Engine features beyond single steps, on both stores: fan-out (forEach), conditions (when),
 * trigger rules (runIf), finally steps and workflow steps (child runs).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { defineAction } from "../../src/actions/types.js";
import { createRun, executeRun, runDetail } from "../../src/engine/index.js";
import type { StateStore } from "../../src/store/types.js";
import { bothStores } from "../stores.js";
import { concurrencyProbe, runWorkflow, testEnv, waitUntil, workflow, type TestEnv } from "../helpers.js";

let env: TestEnv;
afterEach(async () => env?.cleanup());
const flow = (spec: Record<string, unknown>, name?: string) => workflow(spec, env.actions, name);

/** An action that fails for the items named in `fail` and returns its item otherwise. */
const itemAction = defineAction({
  kind: "agent",
  owner: "probe",
  action: "item",
  description: "fail on demand",
  input: z.object({ value: z.unknown(), fail: z.boolean().default(false) }).strict(),
  run: async ({ value, fail }) => {
    if (fail) {
      const { SluiceError } = await import("../../src/errors.js");
      throw new SluiceError("BAD_INPUT", `item ${JSON.stringify(value)} refused`, { retryable: false });
    }
    return { value };
  },
});

describe.each(bothStores("features"))("engine features on $dialect", (backend) => {
  let shared: StateStore | undefined;
  beforeAll(async () => {
    shared = await backend.open();
  });
  afterAll(async () => {
    await shared?.close();
    await backend.drop();
  });
  const makeEnv = () => {
    const probe = concurrencyProbe();
    env = testEnv([probe.def, itemAction], shared ? { store: shared } : {});
    return probe;
  };
  const statuses = async (runId: string) => Object.fromEntries((await runDetail(env.store, runId)).steps.map((s) => [s.name, s.status]));

  describe("forEach", () => {
    it("runs one child step per item, at most `parallelism` at once, and lists their outputs in item order", async () => {
      const probe = makeEnv();
      const wf = flow({
        steps: [
          { name: "discover", agent: "test", action: "echo", with: { value: Array.from({ length: 12 }, (_, i) => ({ path: `f${i}.csv` })) } },
          {
            name: "load",
            forEach: "${{ steps.discover.outputs.value }}",
            parallelism: 3,
            agent: "probe",
            action: "work",
            with: { ms: 30, tag: "${{ item.path }}#${{ index }}" },
            dependsOn: ["discover"],
          },
          { name: "after", agent: "test", action: "echo", with: { value: "${{ steps.load.outputs.items[11].tag }}" }, dependsOn: ["load"] },
        ],
      });
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("succeeded");
      expect(probe.state.max).toBe(3);
      const d = await runDetail(env.store, run.id);
      const load = d.steps.find((s) => s.name === "load")!;
      expect(load.status).toBe("succeeded");
      expect((load.outputs!.items as { tag: string }[]).map((o) => o.tag)).toEqual(Array.from({ length: 12 }, (_, i) => `f${i}.csv#${i}`));
      expect(load.outputs).toMatchObject({ count: 12, succeeded: 12, failed: 0 });
      // Each item is a step of its own in the store, with its own attempt, in item order.
      const items = d.steps.filter((s) => s.name.startsWith("load["));
      expect(items.map((s) => s.name)).toEqual(Array.from({ length: 12 }, (_, i) => `load[${i}]`));
      expect(items.every((s) => s.status === "succeeded" && s.attempts.length === 1)).toBe(true);
      expect(d.steps.find((s) => s.name === "after")!.outputs).toEqual({ value: "f11.csv#11" });
    });

    it("isolates failing items with continueOnError and fails the step past failureThreshold", async () => {
      makeEnv();
      const items = Array.from({ length: 10 }, (_, i) => ({ n: i, bad: i % 5 === 0 }));
      const tolerant = flow({
        steps: [
          {
            name: "load",
            forEach: items,
            continueOnError: true,
            failureThreshold: 0.2,
            agent: "probe",
            action: "item",
            with: { value: "${{ item.n }}", fail: "${{ item.bad }}" },
          },
        ],
      });
      const ok = await runWorkflow(env, tolerant);
      expect(ok.status).toBe("succeeded");
      const d = await runDetail(env.store, ok.id);
      expect(d.steps.find((s) => s.name === "load")!.outputs).toMatchObject({ count: 10, succeeded: 8, failed: 2 });
      expect(d.steps.filter((s) => s.status === "failed").map((s) => s.name)).toEqual(["load[0]", "load[5]"]);

      const strict = flow({
        steps: [
          {
            name: "load",
            forEach: items,
            continueOnError: true,
            failureThreshold: 1,
            parallelism: 1,
            agent: "probe",
            action: "item",
            with: { value: "${{ item.n }}", fail: "${{ item.bad }}" },
          },
          { name: "next", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["load"] },
        ],
      });
      const bad = await runWorkflow(env, strict);
      expect(bad.status).toBe("failed");
      expect(bad.error?.message).toMatch(/step load failed: 2 of 10 items failed \(more than failureThreshold 1\); first: load\[0\]: item 0 refused/);
      const s = await statuses(bad.id);
      expect(s.load).toBe("failed");
      expect(s.next).toBe("skipped");
      // Items after the second failure never started.
      expect(Object.entries(s).filter(([k, v]) => k.startsWith("load[") && v === "skipped").length).toBe(4);
    });

    it("fails the step at the first failed item without continueOnError", async () => {
      makeEnv();
      const run = await runWorkflow(
        env,
        flow({
          steps: [
            { name: "load", forEach: [1, 2, 3], parallelism: 1, agent: "probe", action: "item", with: { value: "${{ item }}", fail: "${{ item == 2 }}" } },
          ],
        }),
      );
      expect(run.status).toBe("failed");
      expect(await statuses(run.id)).toEqual({ load: "failed", "load[0]": "succeeded", "load[1]": "failed", "load[2]": "skipped" });
    });

    it("fails clearly when the list is not a list, and succeeds with nothing to do on an empty one", async () => {
      makeEnv();
      const wf = flow({
        params: { files: { type: "string", default: "not a list" } },
        steps: [{ name: "load", forEach: "${{ params.files }}", agent: "test", action: "echo", with: { value: "${{ item }}" } }],
      });
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("failed");
      expect(run.error?.message).toBe('step load failed: forEach of step load gave string "not a list", not a list');
      const fromJson = await runWorkflow(env, wf, { params: { files: '["a","b"]' } });
      expect(fromJson.status).toBe("succeeded");
      expect((await runDetail(env.store, fromJson.id)).steps.find((s) => s.name === "load")!.outputs).toMatchObject({
        items: [{ value: "a" }, { value: "b" }],
      });
      const empty = await runWorkflow(env, wf, { params: { files: "[]" } });
      expect(empty.status).toBe("succeeded");
      expect((await runDetail(env.store, empty.id)).steps.find((s) => s.name === "load")!.outputs).toMatchObject({ count: 0, items: [] });
    });

    it("resumes a fan-out running only the items that had not finished", async () => {
      makeEnv();
      const marks = join(env.home, "marks");
      mkdirSync(marks);
      const wf = flow({
        steps: [
          {
            name: "load",
            forEach: Array.from({ length: 6 }, (_, i) => i),
            parallelism: 2,
            exec: { command: ["sh", "-c", `echo x >> ${marks}/$0; [ $0 -lt 2 ] || [ -e ${marks}/fast ] || sleep 5`, "${{ item }}"] },
          },
        ],
      });
      const run = await createRun(env.store, { workflow: wf });
      const stop = new AbortController();
      const first = executeRun(run.id, { store: env.store, actions: env.actions, home: env.home, signal: stop.signal });
      // Items 0 and 1 finish at once; 2 and 3 start and are interrupted. A step is "running" in
      // the store before its process has spawned, so wait for the processes' own marks too:
      // under load the abort could otherwise land before item 2 had written anything.
      await waitUntil(
        async () => (await statuses(run.id))["load[3]"] === "running" && existsSync(join(marks, "2")) && existsSync(join(marks, "3")),
        10_000,
        "items 2 and 3 to run",
      );
      stop.abort();
      expect((await first).status).toBe("running");
      // The next owner: items 2..5 run (fast now), 0 and 1 are not executed again.
      writeFileSync(join(marks, "fast"), "");
      const wf2Sleep = await executeRun(run.id, { store: env.store, actions: env.actions, home: env.home, owner: "next-owner", leaseTtlMs: 15_000 }).catch(
        (e: Error) => e,
      );
      // The first owner released its lease on detach, so the second takes over at once.
      expect(wf2Sleep).not.toBeInstanceOf(Error);
      const d = await runDetail(env.store, run.id);
      expect(d.status).toBe("succeeded");
      expect(readFileSync(join(marks, "0"), "utf8")).toBe("x\n");
      expect(readFileSync(join(marks, "1"), "utf8")).toBe("x\n");
      expect(readFileSync(join(marks, "2"), "utf8")).toBe("x\nx\n");
      expect(d.steps.find((s) => s.name === "load[2]")!.attempts.map((a) => a.status)).toEqual(["interrupted", "succeeded"]);
      expect(d.steps.find((s) => s.name === "load[0]")!.attempts.map((a) => a.status)).toEqual(["succeeded"]);
    }, 30_000);
  });

  describe("when and runIf", () => {
    it("skips a step whose condition is false, with the reason, and its dependents still run", async () => {
      makeEnv();
      const wf = flow({
        params: { n: { type: "integer", default: 1 } },
        steps: [
          { name: "check", agent: "test", action: "echo", with: { value: 0 } },
          {
            name: "big",
            when: "${{ params.n > 2 && steps.check.outputs.value != 0 }}",
            agent: "test",
            action: "echo",
            with: { value: "big" },
            dependsOn: ["check"],
          },
          { name: "small", when: "params.n <= 2", agent: "test", action: "echo", with: { value: "small" }, dependsOn: ["check"] },
          { name: "after", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["big", "small"] },
        ],
      });
      const run = await runWorkflow(env, wf);
      expect(run.status).toBe("succeeded");
      const d = await runDetail(env.store, run.id);
      const big = d.steps.find((s) => s.name === "big")!;
      expect(big.status).toBe("skipped");
      expect(big.error?.message).toBe("condition ${{ params.n > 2 && steps.check.outputs.value != 0 }} is false");
      expect(big.attempts).toEqual([]);
      expect(Object.fromEntries(d.steps.map((s) => [s.name, s.status]))).toEqual({
        check: "succeeded",
        big: "skipped",
        small: "succeeded",
        after: "succeeded",
      });
      const again = await runWorkflow(env, wf, { params: { n: 5 } });
      expect(await statuses(again.id)).toEqual({ check: "succeeded", big: "skipped", small: "skipped", after: "succeeded" });
    });

    it("runs an anyFailed fallback only when something upstream failed", async () => {
      makeEnv();
      const wf = (fail: boolean) =>
        flow({
          steps: [
            { name: "fetch", agent: "probe", action: "item", with: { value: 1, fail } },
            { name: "parse", agent: "test", action: "echo", with: { value: 2 }, dependsOn: ["fetch"] },
            { name: "fallback", runIf: "anyFailed", agent: "test", action: "echo", with: { value: "fallback" }, dependsOn: ["parse"] },
            { name: "report", runIf: "always", agent: "test", action: "echo", with: { value: "report" }, dependsOn: ["fallback"] },
          ],
        });
      const good = await runWorkflow(env, wf(false));
      expect(good.status).toBe("succeeded");
      expect(await statuses(good.id)).toEqual({ fetch: "succeeded", parse: "succeeded", fallback: "skipped", report: "succeeded" });
      const bad = await runWorkflow(env, wf(true));
      expect(bad.status).toBe("failed"); // the run's status stays that of its main steps
      expect(await statuses(bad.id)).toEqual({ fetch: "failed", parse: "skipped", fallback: "succeeded", report: "succeeded" });
      const parse = (await runDetail(env.store, bad.id)).steps.find((s) => s.name === "parse")!;
      expect(parse.error?.message).toBe("dependency fetch failed");
    });

    it("fails a step whose condition cannot be evaluated, naming it", async () => {
      makeEnv();
      const run = await runWorkflow(
        env,
        flow({
          steps: [
            { name: "a", agent: "test", action: "echo", with: { value: "text" } },
            { name: "b", when: "steps.a.outputs.value > 3", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["a"] },
          ],
        }),
      );
      expect(run.status).toBe("failed");
      expect(run.error?.message).toBe('step b failed: expression "steps.a.outputs.value > 3" at column 23: cannot order the string "text" and number 3 with >');
    });
  });

  describe("finally", () => {
    const withFinally = (main: Record<string, unknown>[], timeout?: string) =>
      flow({
        ...(timeout ? { timeout } : {}),
        steps: main,
        finally: [
          { name: "cleanup", agent: "test", action: "echo", with: { value: "${{ run.status }}" } },
          { name: "after-cleanup", agent: "test", action: "echo", with: { value: "done" }, dependsOn: ["cleanup"] },
        ],
      });
    const cleanupSaw = async (runId: string) => (await runDetail(env.store, runId)).steps.find((s) => s.name === "cleanup")!.outputs?.value;

    it("runs after success and after failure, with run.status, and the run keeps its main steps' status", async () => {
      makeEnv();
      const ok = await runWorkflow(env, withFinally([{ name: "work", agent: "test", action: "echo", with: { value: 1 } }]));
      expect(ok.status).toBe("succeeded");
      expect(await cleanupSaw(ok.id)).toBe("succeeded");
      expect((await statuses(ok.id))["after-cleanup"]).toBe("succeeded");
      const bad = await runWorkflow(env, withFinally([{ name: "work", agent: "probe", action: "item", with: { value: 1, fail: true } }]));
      expect(bad.status).toBe("failed");
      expect(bad.error?.message).toMatch(/^step work failed/);
      expect(await cleanupSaw(bad.id)).toBe("failed");
    });

    it("runs after a cancel and after the run's timeout", async () => {
      makeEnv();
      const timedOut = await runWorkflow(env, withFinally([{ name: "work", agent: "test", action: "sleep", with: { ms: 10_000 } }], "300ms"));
      expect(timedOut.status).toBe("failed");
      expect(timedOut.error?.code).toBe("RUN_TIMEOUT");
      expect(await cleanupSaw(timedOut.id)).toBe("failed");

      const wf = withFinally([{ name: "work", agent: "test", action: "sleep", with: { ms: 10_000 } }]);
      const run = await createRun(env.store, { workflow: wf });
      const done = executeRun(run.id, { store: env.store, actions: env.actions, home: env.home, leaseTtlMs: 600 });
      await waitUntil(async () => (await statuses(run.id)).work === "running", 10_000, "the step to run");
      await env.store.requestCancel(run.id);
      const cancelled = await done;
      expect(cancelled.status).toBe("cancelled");
      expect(await cleanupSaw(run.id)).toBe("cancelled");
      expect((await statuses(run.id))["after-cleanup"]).toBe("succeeded");
    });
  });

  describe("workflow steps", () => {
    it("runs a child workflow from a file, takes its outputs, and lists the child with its parent", async () => {
      makeEnv();
      const dir = join(env.home, "flows");
      mkdirSync(dir);
      const child = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: child-flow }
spec:
  params: { greeting: { type: string } }
  steps:
    - name: say
      agent: test
      action: echo
      with: { value: "\${{ params.greeting }} from the child" }
`;
      writeFileSync(join(dir, "child-flow.yaml"), child);
      const parent = flow(
        {
          steps: [
            { name: "call", workflow: "child-flow", with: { greeting: "hello" } },
            { name: "use", agent: "test", action: "echo", with: { value: "${{ steps.call.outputs.steps.say.value }}" }, dependsOn: ["call"] },
          ],
        },
        "parent-flow",
      );
      const run = await createRun(env.store, { workflow: parent, source: join(dir, "parent.yaml") });
      const done = await executeRun(run.id, { store: env.store, actions: env.actions, home: env.home });
      expect(done.status, JSON.stringify(done.error)).toBe("succeeded");
      const d = await runDetail(env.store, run.id);
      expect(d.steps.find((s) => s.name === "use")!.outputs).toEqual({ value: "hello from the child" });
      const childId = `${run.id}.call.1`;
      const childRun = await env.store.getRun(childId);
      expect(childRun).toMatchObject({
        workflow: "child-flow",
        status: "succeeded",
        trigger: { type: "workflow", parent: { runId: run.id, step: "call", depth: 1 } },
      });
    });

    it("stops workflows that call each other across files at the depth limit", async () => {
      makeEnv();
      const dir = join(env.home, "loop");
      mkdirSync(dir);
      const doc = (name: string, other: string) =>
        `apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata: { name: ${name} }\nspec:\n  steps:\n    - { name: call, workflow: ./${other}.yaml }\n`;
      writeFileSync(join(dir, "ping.yaml"), doc("ping", "pong"));
      writeFileSync(join(dir, "pong.yaml"), doc("pong", "ping"));
      const { loadWorkflowFile } = await import("../../src/spec/load.js");
      const loaded = await loadWorkflowFile(join(dir, "ping.yaml"));
      expect(loaded.problems).toEqual([]); // across files the cycle cannot be seen at load time
      const run = await createRun(env.store, { workflow: loaded.workflows[0]!.workflow, source: join(dir, "ping.yaml") });
      const done = await executeRun(run.id, { store: env.store, actions: env.actions, home: env.home });
      expect(done.status).toBe("failed");
      expect(done.error?.message).toMatch(/would start a child run 9 calls deep \(at most 8\): workflows calling each other in a cycle\?/);
      // Eight child runs were started, each failing in turn; none beyond the limit.
      const children = (await env.store.listRuns({ limit: 50 })).filter((r) => r.id.startsWith(run.id + "."));
      expect(children).toHaveLength(8);
    });
  });
});

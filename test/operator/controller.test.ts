/**
 * Layer 2 of the operator's tests: the controller loop against an in-memory API server (with
 * injected 409, 410 and 500 answers) and a fake clock, on the real state stores (SQLite and
 * PostgreSQL). What is checked is what a user sees: the registry's versions, the runs in the
 * store, and the status on the resources.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { applyWorkflowText, rollbackWorkflow } from "../../src/control/workflows.js";
import { startWorkflowRun } from "../../src/control/runs.js";
import { executeRun } from "../../src/engine/index.js";
import { startOperator, type Operator } from "../../src/operator/controller.js";
import { startLeaderElection } from "../../src/operator/leader.js";
import type { StateStore } from "../../src/store/types.js";
import { testEnv, waitUntil, type TestEnv } from "../helpers.js";
import { bothStores } from "../stores.js";
import { fakeClock, type FakeClock } from "./fake-clock.js";
import { memoryApi, type MemoryApi } from "./memory-api.js";
import { cond, echoSpec } from "./resources.js";

const wf = (name: string, spec: Record<string, unknown> = echoSpec(), namespace = "data") => ({ metadata: { name, namespace }, spec });
const wfRun = (name: string, spec: Record<string, unknown>, namespace = "data") => ({ metadata: { name, namespace }, spec });

for (const backend of bothStores("operator")) {
  describe(`the operator's controller on ${backend.dialect}`, () => {
    let shared: StateStore | undefined;
    let env: TestEnv;
    let kube: MemoryApi;
    let clock: FakeClock;
    const ops: Operator[] = [];
    let n = 0;

    afterAll(async () => {
      await shared?.close();
      await backend.drop();
    });
    afterEach(async () => {
      for (const op of ops.splice(0)) await op.stop();
      await env.cleanup();
    });

    /** A fresh environment; on PostgreSQL one shared schema, so workflow names are made unique per test. */
    async function setup() {
      shared ??= await backend.open();
      env = testEnv([], { store: shared });
      kube = memoryApi();
      clock = fakeClock();
      n++;
      return `greet-${n}`;
    }
    function operator(over: Partial<Parameters<typeof startOperator>[0]> = {}): Operator {
      const log = {
        info: (m: string, f?: object) => process.env.OPERATOR_DEBUG && console.log(m, f),
        warn: (m: string, f?: object) => process.env.OPERATOR_DEBUG && console.log(m, f),
        error: (m: string, f?: object) => process.env.OPERATOR_DEBUG && console.log(m, f),
      };
      const op = startOperator({ api: kube.api, store: env.store, actions: env.actions, namespaces: ["data"], clock, random: () => 0.5, log, ...over });
      ops.push(op);
      return op;
    }
    const until = (what: string, f: () => boolean | Promise<boolean>) => waitUntil(f, 10_000, what);

    it("a Workflow applied, changed, made invalid and deleted: registry versions, finalizer and status follow", async () => {
      const name = await setup();
      operator();
      kube.apply("workflows", wf(name));
      await until("Ready", () => cond(kube.object("workflows", "data", name), "Ready")?.status === "True");
      let obj = kube.object("workflows", "data", name)!;
      expect(obj.metadata.finalizers).toEqual(["sluice.dev/registry"]);
      expect(obj.status).toMatchObject({ observedGeneration: 1, registryVersion: 1 });
      const v1 = await env.store.getWorkflow(name);
      expect(v1).toMatchObject({ version: 1, source: `k8s/data/${name}`, current: true });
      expect(v1!.spec.spec.steps[0]).toMatchObject({ name: "say", action: "echo" });

      kube.apply("workflows", wf(name, echoSpec("changed")));
      await until("generation 2 observed", () => kube.object("workflows", "data", name)!.status?.observedGeneration === 2);
      expect(kube.object("workflows", "data", name)!.status).toMatchObject({ registryVersion: 2 });
      expect((await env.store.getWorkflow(name))!.version).toBe(2);

      kube.apply("workflows", wf(name, { steps: [{ name: "say", agent: "test", action: "nope" }] }));
      await until("SpecInvalid", () => cond(kube.object("workflows", "data", name), "Ready")?.reason === "SpecInvalid");
      obj = kube.object("workflows", "data", name)!;
      expect(cond(obj, "Accepted")).toMatchObject({ status: "False", reason: "SpecInvalid", observedGeneration: 3 });
      expect(cond(obj, "Accepted")!.message).toMatch(/^line \d+, column \d+: /);
      expect(cond(obj, "Ready")!.message).toContain("Version 2 stays current");
      expect((await env.store.getWorkflow(name))!.version).toBe(2);

      // The CLI cannot change what the operator manages.
      const cli = await applyWorkflowText(
        env.store,
        env.actions,
        `apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata: {name: ${name}}\nspec: {steps: [{name: a, agent: test, action: echo, with: {value: 1}}]}\n`,
        "mine.yaml",
        "/tmp/mine.yaml",
      );
      expect(cli).toEqual({
        ok: false,
        problems: [
          {
            file: "mine.yaml",
            line: 1,
            col: 1,
            message: `workflow ${name} is managed by the Kubernetes operator from k8s/data/${name}; change the Workflow resource with kubectl instead`,
          },
        ],
      });

      await expect(rollbackWorkflow(env.store, name, 1)).rejects.toThrow(`workflow ${name} is managed by the Kubernetes operator from k8s/data/${name}`);

      kube.remove("workflows", "data", name);
      await until("resource gone", () => kube.object("workflows", "data", name) === undefined);
      expect(await env.store.getWorkflow(name)).toBeUndefined();
      expect((await env.store.workflowHistory(name)).map((v) => v.version)).toEqual([1, 2]);
    });

    it("a WorkflowRun starts one run (id from its uid), mirrors its life, and a restarted operator never starts it twice", async () => {
      const name = await setup();
      const op = operator();
      kube.apply("workflows", wf(name));
      kube.apply("workflowruns", wfRun(`${name}-run`, { workflowRef: { name }, params: {} }));
      await until("run started", () => kube.object("workflowruns", "data", `${name}-run`)?.status?.runId !== undefined);
      const res = kube.object("workflowruns", "data", `${name}-run`)!;
      const runId = `k8s-${res.metadata.uid}`;
      expect(res.status).toMatchObject({ phase: "Pending", runId, workflowVersion: 1 });
      expect(await env.store.getRun(runId)).toMatchObject({ workflow: name, trigger: { type: "kubernetes", name: `data/${name}-run` } });

      await op.stop();
      ops.splice(ops.indexOf(op), 1);
      const again = operator();
      await until("second operator synced", () => again.synced());
      await again.idle();
      expect((await env.store.listRuns({ workflow: name })).map((r) => r.id)).toEqual([runId]);

      await executeRun(runId, { store: env.store, actions: env.actions, home: env.home });
      await clock.advance(2000);
      await until("Succeeded", () => kube.object("workflowruns", "data", `${name}-run`)!.status?.phase === "Succeeded");
      const done = kube.object("workflowruns", "data", `${name}-run`)!;
      expect(cond(done, "Complete")).toMatchObject({ status: "True", reason: "Succeeded" });
      expect(done.status).toMatchObject({ runId, startedAt: expect.any(String), finishedAt: expect.any(String) });
    });

    it("waits for a Workflow applied after its WorkflowRun; refuses bad params for good; cancel: true cancels", async () => {
      const name = await setup();
      operator({ waitMs: 1000 });
      kube.apply("workflowruns", wfRun(`${name}-early`, { workflowRef: { name } }));
      await until("Pending", () => cond(kube.object("workflowruns", "data", `${name}-early`), "Accepted")?.reason === "WorkflowNotFound");
      kube.apply("workflows", wf(name, { params: { day: { type: "string", required: true } }, ...echoSpec() }));
      await until("Ready", () => cond(kube.object("workflows", "data", name), "Ready")?.status === "True");
      await clock.advance(1000);
      await until("still pending: day is required", () => cond(kube.object("workflowruns", "data", `${name}-early`), "Accepted")?.reason === "InvalidParams");
      expect(kube.object("workflowruns", "data", `${name}-early`)!.status).toMatchObject({ phase: "Failed" });
      expect(cond(kube.object("workflowruns", "data", `${name}-early`), "Accepted")!.message).toMatch(/day/);

      kube.apply("workflowruns", wfRun(`${name}-c`, { workflowRef: { name }, params: { day: "2026-12-01" } }));
      await until("started", () => kube.object("workflowruns", "data", `${name}-c`)?.status?.runId !== undefined);
      const runId = kube.object("workflowruns", "data", `${name}-c`)!.status!.runId as string;
      kube.apply("workflowruns", wfRun(`${name}-c`, { workflowRef: { name }, params: { day: "2026-12-01" }, cancel: true }));
      await until("Cancelled", () => kube.object("workflowruns", "data", `${name}-c`)!.status?.phase === "Cancelled");
      expect((await env.store.getRun(runId))!.status).toBe("cancelled");
      expect(cond(kube.object("workflowruns", "data", `${name}-c`), "Failed")).toMatchObject({ reason: "Cancelled" });
    });

    it("status writes that meet 409 conflicts are read again and retried; 500s back off and recover", async () => {
      const name = await setup();
      kube.failNext("patchStatus", 409, 2);
      kube.failNext("patchMetadata", 500, 1);
      operator();
      kube.apply("workflows", wf(name));
      await until("first attempt failed", () => kube.calls.some((c) => c.method === "patchMetadata" && c.status === 500));
      await clock.advance(5000); // the key's backoff
      await until("Ready", () => cond(kube.object("workflows", "data", name), "Ready")?.status === "True");
      const statusCalls = kube.calls.filter((c) => c.method === "patchStatus").map((c) => c.status);
      expect(statusCalls).toEqual([409, 409, 200]);
      expect(kube.calls.filter((c) => c.method === "get").length).toBe(2); // read again after each 409
    });

    it("watches: a normal close resumes, 410 relists (seeing what changed meanwhile), errors back off; nothing is missed", async () => {
      const name = await setup();
      const op = operator();
      await until("synced", () => op.synced());
      kube.closeWatches();
      kube.apply("workflows", wf(`${name}-a`));
      await until("a Ready", () => cond(kube.object("workflows", "data", `${name}-a`), "Ready")?.status === "True");

      // The watch breaks and history is compacted: the reopened watch gets 410 and relists.
      kube.breakWatches();
      kube.compact();
      kube.apply("workflows", wf(`${name}-b`));
      kube.purge("workflows", "data", `${name}-a`); // gone while nobody watched: no DELETED event will ever come
      const listsBefore = kube.calls.filter((c) => c.method === "list").length;
      await clock.advance(2000);
      await until("b Ready", () => cond(kube.object("workflows", "data", `${name}-b`), "Ready")?.status === "True");
      expect(kube.calls.filter((c) => c.method === "list").length).toBeGreaterThan(listsBefore);
      await until("a retired by the sweep after the relist", async () => (await env.store.getWorkflow(`${name}-a`)) === undefined);

      // The list itself fails three times: the informer keeps retrying with backoff.
      kube.failNext("list", 500, 3);
      kube.breakWatches();
      kube.compact();
      kube.apply("workflows", wf(`${name}-c`));
      for (let i = 0; i < 6; i++) await clock.advance(30_000);
      await until("c Ready", () => cond(kube.object("workflows", "data", `${name}-c`), "Ready")?.status === "True");
      expect(kube.calls.filter((c) => c.method === "list" && c.status === 500).length).toBe(3);
    });

    it("never reconciles one key twice at once, however fast it changes", async () => {
      const name = await setup();
      let inflight = 0;
      let maxInflight = 0;
      const slow = new Proxy(env.store, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (prop !== "getWorkflow" || typeof v !== "function") return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          return async (...args: unknown[]) => {
            inflight++;
            maxInflight = Math.max(maxInflight, inflight);
            await new Promise((r) => setTimeout(r, 5));
            try {
              return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            } finally {
              inflight--;
            }
          };
        },
      });
      operator({ store: slow, concurrency: 8 });
      for (let i = 0; i < 20; i++) kube.apply("workflows", wf(name, echoSpec(`v${i}`)));
      await until("last generation observed", () => kube.object("workflows", "data", name)!.status?.observedGeneration === 20);
      expect(maxInflight).toBe(1);
      expect((await env.store.getWorkflow(name))!.spec.spec.steps[0]).toMatchObject({ with: { value: "v19" } });
    });

    it("deleting a WorkflowRun whose run is still going cancels the run", async () => {
      const name = await setup();
      operator();
      kube.apply("workflows", wf(name));
      kube.apply("workflowruns", wfRun(`${name}-d`, { workflowRef: { name } }));
      await until("started", () => kube.object("workflowruns", "data", `${name}-d`)?.status?.runId !== undefined);
      const runId = kube.object("workflowruns", "data", `${name}-d`)!.status!.runId as string;
      kube.remove("workflowruns", "data", `${name}-d`);
      await until("cancelled", async () => (await env.store.getRun(runId))!.status === "cancelled");
    });

    it("mirrors cron and event runs as WorkflowRuns (opt-in) and deletes them a TTL after they end", async () => {
      const name = await setup();
      operator({ mirror: { ttlSeconds: 60, everyMs: 1000 } });
      kube.apply("workflows", wf(name));
      await until("Ready", () => cond(kube.object("workflows", "data", name), "Ready")?.status === "True");
      const cron = await startWorkflowRun(env.store, { workflow: name, trigger: { type: "schedule", name: "0 * * * *" } });
      await startWorkflowRun(env.store, { workflow: name, trigger: { type: "manual" } }); // not mirrored
      await clock.advance(1000);
      await until("mirror created", () => kube.objects("workflowruns").some((o) => o.spec.runId === cron.id));
      const mirror = kube.objects("workflowruns").find((o) => o.spec.runId === cron.id)!;
      expect(mirror.metadata.labels).toEqual({ "sluice.dev/mirrored": "true", "sluice.dev/workflow": name });
      expect(kube.objects("workflowruns")).toHaveLength(1);
      await until("mirror status", () => cond(kube.object("workflowruns", "data", mirror.metadata.name), "Accepted")?.reason === "Mirrored");

      await executeRun(cron.id, { store: env.store, actions: env.actions, home: env.home });
      await clock.advance(2000);
      await until("Succeeded", () => kube.object("workflowruns", "data", mirror.metadata.name)?.status?.phase === "Succeeded");
      // The TTL counts from the run's end in real time; move the clock past it.
      const ended = Date.parse((await env.store.getRun(cron.id))!.endedAt!);
      await clock.advance(Math.max(0, ended + 61_000 - clock.now()));
      await until("mirror deleted", () => kube.object("workflowruns", "data", mirror.metadata.name) === undefined);
      await clock.advance(3000);
      expect(kube.objects("workflowruns")).toHaveLength(0); // and not mirrored again
    });

    it("one leader at a time: the second operator waits, and takes over when the first stops", async () => {
      const name = await setup();
      const started: string[] = [];
      const lead = (owner: string) => {
        let op: Operator | undefined;
        return startLeaderElection({
          store: env.store,
          owner,
          clock,
          ttlMs: 3000,
          name: `operator-${name}`,
          onElected: () => {
            started.push(owner);
            op = operator();
          },
          onDeposed: async () => {
            await op?.stop();
            ops.splice(ops.indexOf(op!), 1);
            op = undefined;
          },
        });
      };
      const a = lead("a");
      await until("a leads", () => a.leading());
      const b = lead("b");
      await clock.advance(3000);
      expect(b.leading()).toBe(false);
      await a.stop();
      await clock.advance(1000);
      await until("b leads", () => b.leading());
      expect(started).toEqual(["a", "b"]);
      kube.apply("workflows", wf(name));
      await until("b reconciles", () => cond(kube.object("workflows", "data", name), "Ready")?.status === "True");
      await b.stop();
    });
  });
}

/**
 * Continuous groups in the engine: the steps run together as one pipeline, the run stays
 * running until stopped, a stop flushes, the steps end together, a failing stage follows the
 * group's retry policy, a detached pipeline is resumable. In-memory stages; the real brokers and
 * destinations are tested with the stream actions.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { defineAction } from "../../src/actions/types.js";
import type { StreamBatch } from "../../src/actions/stream-types.js";
import { createRun, executeRun, type EngineEvent } from "../../src/engine/index.js";
import { loadWorkflowText } from "../../src/spec/load.js";
import { stringify } from "yaml";
import { testEnv, workflow, type TestEnv } from "../helpers.js";

let env: TestEnv;
afterEach(async () => env?.cleanup());

/** A broker in memory: published values, acknowledged ids, and a knob to fail the sink. */
function memoryBroker() {
  const state = { queue: [] as { id: string; value: string }[], acked: new Set<string>(), stored: [] as string[], failSinkOnce: false, sinkWrites: 0 };
  let seq = 0;
  const publish = (value: string) => state.queue.push({ id: String(++seq), value });
  const defs = [
    defineAction({
      kind: "agent",
      owner: "mem",
      action: "source",
      description: "in-memory source",
      input: z.object({}).strict(),
      run: async () => ({}),
      stream: async () => ({
        kind: "source" as const,
        stage: {
          description: "memory",
          async next(max: number, maxWaitMs: number, signal: AbortSignal): Promise<StreamBatch> {
            const deadline = Date.now() + maxWaitMs;
            while (!state.queue.some((m) => !inFlight.has(m.id)) && Date.now() < deadline && !signal.aborted) await new Promise((r) => setTimeout(r, 2));
            if (signal.aborted) throw signal.reason;
            const take = state.queue.filter((m) => !inFlight.has(m.id)).slice(0, max);
            for (const m of take) inFlight.add(m.id);
            return {
              records: take.map((m) => ({ id: m.id, value: m.value, publishedAt: Date.now() })),
              rejected: [],
              receivedAt: performance.now(),
              ack: async () => {
                for (const m of take) state.acked.add(m.id);
                state.queue = state.queue.filter((q) => !take.includes(q));
              },
            };
          },
          async close() {
            inFlight.clear(); // unacknowledged messages are delivered again to the next consumer
          },
        },
      }),
    }),
    defineAction({
      kind: "agent",
      owner: "mem",
      action: "upper",
      description: "transform",
      input: z.object({}).strict(),
      run: async () => ({}),
      stream: async () => ({
        kind: "transform" as const,
        stage: { process: async (b: StreamBatch) => ({ ...b, records: b.records.map((r) => ({ ...r, value: String(r.value).toUpperCase() })) }) },
        hints: { maxBatch: 10, maxLatencyMs: 5 },
      }),
    }),
    defineAction({
      kind: "agent",
      owner: "mem",
      action: "sink",
      description: "sink",
      input: z.object({}).strict(),
      run: async () => ({}),
      stream: async () => ({
        kind: "sink" as const,
        stage: {
          async write(b: StreamBatch) {
            state.sinkWrites++;
            if (state.failSinkOnce) {
              state.failSinkOnce = false;
              const { SluiceError } = await import("../../src/errors.js");
              throw new SluiceError("NETWORK_ERROR", "planned sink failure");
            }
            let stored = 0;
            for (const r of b.records) if (!state.stored.includes(String(r.value))) (state.stored.push(String(r.value)), stored++);
            return { stored, duplicate: b.records.length - stored, deadLettered: 0 };
          },
        },
      }),
    }),
  ];
  const inFlight = new Set<string>();
  return { state, publish, defs };
}

const pipelineSpec = (extra: Record<string, unknown> = {}) => ({
  ...extra,
  steps: [
    { name: "read", agent: "mem", action: "source", continuous: true },
    { name: "shape", agent: "mem", action: "upper", continuous: true, dependsOn: ["read"] },
    { name: "write", agent: "mem", action: "sink", continuous: true, dependsOn: ["shape"] },
  ],
});

async function until(cond: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("continuous groups", () => {
  it("runs the steps as one pipeline until cancelled, then flushes and ends them together", async () => {
    const b = memoryBroker();
    env = testEnv(b.defs);
    const run = await createRun(env.store, { workflow: workflow(pipelineSpec(), env.actions) });
    const events: EngineEvent[] = [];
    const done = executeRun(run.id, { store: env.store, actions: env.actions, home: env.home, onEvent: (e) => events.push(e) });
    for (let i = 0; i < 250; i++) b.publish(`m${i}`);
    await until(() => b.state.stored.length === 250);
    expect((await env.store.getRun(run.id))!.status).toBe("running");
    expect((await env.store.getSteps(run.id)).map((s) => s.status)).toEqual(["running", "running", "running"]);
    for (let i = 250; i < 300; i++) b.publish(`m${i}`);
    await env.store.requestCancel(run.id);
    const final = await done;
    expect(final.status).toBe("cancelled");
    // What was read before the stop was stored and acknowledged; nothing was acknowledged unstored.
    expect(b.state.acked.size).toBe(b.state.stored.length);
    expect(new Set(b.state.stored).size).toBe(b.state.stored.length);
    const steps = await env.store.getSteps(run.id);
    expect(steps.map((s) => s.status)).toEqual(["cancelled", "cancelled", "cancelled"]);
    expect(steps[0]!.outputs).toMatchObject({ source: "memory", stored: b.state.stored.length });
    // The recent figures, for the UI's Streams chart: the last sample is the final one.
    const recent = steps[0]!.outputs!.recent as { t: number; records: number; rate: number }[];
    expect(recent.length).toBeGreaterThanOrEqual(1);
    expect(recent.at(-1)).toMatchObject({ records: b.state.stored.length });
    expect(recent.every((r, i) => i === 0 || r.t >= recent[i - 1]!.t)).toBe(true);
    expect(events.some((e) => e.type === "stream-stats")).toBe(true);
    const attempts = await env.store.getAttempts(run.id);
    expect(attempts.map((a) => [a.step, a.n])).toEqual([
      ["read", 1],
      ["shape", 1],
      ["write", 1],
    ]);
  });

  it("retries the whole group when a stage fails, and nothing unstored is acknowledged", async () => {
    const b = memoryBroker();
    env = testEnv(b.defs);
    b.state.failSinkOnce = true;
    const wf = workflow({ ...pipelineSpec(), retry: { limit: 2, backoff: { initial: "10ms", jitter: 0 } } }, env.actions);
    const run = await createRun(env.store, { workflow: wf });
    for (let i = 0; i < 40; i++) b.publish(`r${i}`);
    const done = executeRun(run.id, { store: env.store, actions: env.actions, home: env.home });
    await until(() => b.state.stored.length === 40);
    await env.store.requestCancel(run.id);
    expect((await done).status).toBe("cancelled");
    const attempts = await env.store.getAttempts(run.id);
    expect(attempts.filter((a) => a.step === "write").map((a) => a.status)).toEqual(["failed", "cancelled"]);
    expect(b.state.acked.size).toBe(40);
    expect(b.state.stored.length).toBe(40);
  });

  it("detaches with a flush and resumes from where the broker left off", async () => {
    const b = memoryBroker();
    env = testEnv(b.defs);
    const run = await createRun(env.store, { workflow: workflow(pipelineSpec(), env.actions) });
    const detach = new AbortController();
    const first = executeRun(run.id, { store: env.store, actions: env.actions, home: env.home, signal: detach.signal });
    for (let i = 0; i < 50; i++) b.publish(`d${i}`);
    await until(() => b.state.stored.length >= 20);
    detach.abort();
    expect((await first).status).toBe("running");
    expect(b.state.acked.size).toBe(b.state.stored.length);
    for (let i = 50; i < 100; i++) b.publish(`d${i}`);
    const second = executeRun(run.id, { store: env.store, actions: env.actions, home: env.home });
    await until(() => b.state.stored.length === 100);
    await env.store.requestCancel(run.id);
    expect((await second).status).toBe("cancelled");
    const attempts = await env.store.getAttempts(run.id);
    expect(attempts.filter((a) => a.step === "read").map((a) => a.status)).toEqual(["interrupted", "cancelled"]);
  });

  it("refuses groups that are not one chain, with the line of the problem", () => {
    const b = memoryBroker();
    env = testEnv(b.defs);
    const text = (steps: unknown[]) => stringify({ apiVersion: "sluice.dev/v1alpha1", kind: "Workflow", metadata: { name: "c" }, spec: { steps } });
    const problems = (steps: unknown[]) => loadWorkflowText(text(steps), "c.yaml", { actions: env.actions }).problems.map((p) => `${p.line}: ${p.message}`);
    expect(problems([{ name: "read", agent: "mem", action: "source", continuous: true }])).toEqual([
      '10: step "read" is the only continuous step; a continuous pipeline needs a source step and a sink step',
    ]);
    const skip = problems([
      { name: "read", agent: "mem", action: "source", continuous: true },
      { name: "other", agent: "test", action: "echo", with: { value: 1 } },
      { name: "write", agent: "mem", action: "sink", continuous: true, dependsOn: ["read", "other"] },
    ]);
    expect(skip.join("\n")).toContain('continuous step "write" must depend on "read" and nothing else');
    const inner = problems([
      { name: "read", agent: "mem", action: "source", continuous: true },
      { name: "write", agent: "mem", action: "sink", continuous: true, dependsOn: ["read"] },
      { name: "peek", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["read"] },
    ]);
    expect(inner.join("\n")).toContain('step "peek" depends on "read" inside the continuous group; depend on its last step "write"');
    const notStreaming = problems([
      { name: "read", agent: "mem", action: "source", continuous: true },
      { name: "write", agent: "test", action: "echo", with: { value: 1 }, continuous: true, dependsOn: ["read"] },
    ]);
    expect(notStreaming.join("\n")).toContain("test/echo cannot run continuously: it has no streaming stage");
  });
});

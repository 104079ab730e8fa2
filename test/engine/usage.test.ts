/**
 * Resource usage per attempt, on both stores: real exec programs measured from the kernel (a
 * 200 MB allocation, a 50 MB file, a program shorter than the first sample, a timed-out busy
 * loop, a failed attempt and its retry), an in-process action measured as the whole process,
 * the figures in the store, in runDetail and in the Prometheus histograms.
 */
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { defineAction } from "../../src/actions/types.js";
import { createRun, runDetail, type EngineEvent } from "../../src/engine/index.js";
import { createMetrics } from "../../src/observe/metrics.js";
import type { AttemptRecord, AttemptUsage, StateStore } from "../../src/store/types.js";
import { bothStores } from "../stores.js";
import { runWorkflow, testEnv, workflow, type TestEnv } from "../helpers.js";

const MiB = 1024 * 1024;
let env: TestEnv;
afterEach(async () => env?.cleanup());

/** Holds 200 MiB, every page touched, for half a second. */
const ALLOCATE = ["node", "-e", "const b = Buffer.alloc(200 * 1024 * 1024, 1); setTimeout(() => b.length, 500)"];
/** Writes 50 MiB to the file named by $OUT. */
const WRITE = ["node", "-e", "require('fs').writeFileSync(process.env.OUT, Buffer.alloc(50 * 1024 * 1024, 7))"];

/** An in-process action that burns CPU, holds 64 MiB and writes 8 MiB: figures of the whole process. */
const heavy = defineAction({
  kind: "agent",
  owner: "usage",
  action: "heavy",
  description: "burn CPU, hold memory, write a file",
  input: z.object({ file: z.string() }).strict(),
  run: async ({ file }) => {
    const held = Buffer.alloc(64 * MiB, 1);
    const until = Date.now() + 150;
    let x = 0;
    while (Date.now() < until) x += Math.sqrt(x + 1);
    writeFileSync(file, Buffer.alloc(8 * MiB, 2));
    await new Promise((r) => setTimeout(r, 250)); // a sampler tick or two while the memory is held
    return { held: held.length, x: x > 0 };
  },
});

const usageOf = (attempts: AttemptRecord[], step: string, n = 1): AttemptUsage => {
  const a = attempts.find((x) => x.step === step && x.n === n);
  expect(a, `attempt ${n} of ${step}`).toBeDefined();
  expect(a!.usage, `usage of attempt ${n} of ${step}`).not.toBeNull();
  return a!.usage!;
};

describe.each(bothStores("usage"))("resource usage on $dialect", (backend) => {
  let shared: StateStore | undefined;
  beforeAll(async () => void (shared = await backend.open()));
  afterAll(async () => {
    await shared?.close();
    await backend.drop();
  });
  const makeEnv = () => (env = testEnv([heavy], shared ? { store: shared } : {}));

  it("measures each exec program on its own, from the kernel, while two run at once", async () => {
    makeEnv();
    const out = join(env.home, "fifty.bin");
    const wf = workflow({
      steps: [
        { name: "allocate", exec: { command: ALLOCATE } },
        { name: "write", exec: { command: WRITE, env: { OUT: out } } },
      ],
    });
    const events: EngineEvent[] = [];
    const run = await runWorkflow(env, wf, { events });
    expect(run.status).toBe("succeeded");
    expect(statSync(out).size).toBe(50 * MiB);
    const attempts = await env.store.getAttempts(run.id);

    const alloc = usageOf(attempts, "allocate");
    expect(alloc.scope).toBe("process-tree");
    expect(alloc.peakMemoryBytes).toBeGreaterThanOrEqual(200 * MiB);
    expect(alloc.cpuMs).toBeGreaterThan(0);
    expect(alloc.writtenBytes).toBeLessThan(1 * MiB); // the other step's 50 MiB are not in here

    const write = usageOf(attempts, "write");
    expect(write.scope).toBe("process-tree");
    expect(write.writtenBytes).toBeGreaterThanOrEqual(50 * MiB);
    expect(write.writtenBytes).toBeLessThan(51 * MiB);
    expect(write.peakMemoryBytes).toBeLessThan(200 * MiB); // nor the other step's memory
    expect(write.readBytes).toBeGreaterThan(0); // node reads its own startup files

    // The public picture carries the same figures.
    const d = await runDetail(env.store, run.id);
    expect(d.steps.find((s) => s.name === "allocate")!.attempts[0]!.usage).toEqual(alloc);

    // And the histograms, fed from the engine's events as `sluice serve` feeds them.
    const m = createMetrics({ defaultMetrics: false });
    for (const e of events) m.onEngineEvent(e);
    const text = await m.render();
    const labels = (step: string) => `workflow="test-flow",step="${step}",status="succeeded",scope="process-tree"`;
    expect(text).toContain(`sluice_step_cpu_seconds_count{${labels("allocate")}} 1`);
    expect(Number(new RegExp(`^sluice_step_peak_memory_bytes_sum\\{${labels("allocate")}\\} (\\S+)$`, "m").exec(text)?.[1])).toBeGreaterThanOrEqual(200 * MiB);
    expect(Number(new RegExp(`^sluice_step_io_bytes_sum\\{${labels("write")},direction="write"\\} (\\S+)$`, "m").exec(text)?.[1])).toBeGreaterThanOrEqual(
      50 * MiB,
    );
    expect(text).toMatch(new RegExp(`^sluice_step_io_bytes_count\\{${labels("write")},direction="read"\\} 1$`, "m"));
  });

  it("a program shorter than the first sample: exact CPU and I/O, memory at most roughly", async () => {
    makeEnv();
    const run = await runWorkflow(env, workflow({ steps: [{ name: "quick", exec: { command: ["true"] } }] }));
    const u = usageOf(await env.store.getAttempts(run.id), "quick");
    expect(u.scope).toBe("process-tree");
    expect(u.cpuMs).toBeLessThan(50); // whole 10 ms ticks: usually 0
    expect(u.cpuMs % 10).toBe(0);
    // The holder's own few kB of startup reads are in the figure; `true` itself reads little more.
    expect(u.readBytes).toBeGreaterThan(0);
    expect(u.readBytes).toBeLessThan(64 * 1024);
    expect(u.writtenBytes).toBeLessThan(1024);
    if (u.peakMemoryBytes !== null) expect(u.peakMemoryBytes).toBeLessThan(16 * MiB);
  });

  it("a failed attempt and its retry each keep their own figures; a timed-out program keeps what was sampled", async () => {
    makeEnv();
    const marker = join(env.home, "tried");
    const wf = workflow({
      steps: [
        {
          name: "flaky",
          exec: { command: ["sh", "-c", `if [ -e "${marker}" ]; then head -c 3000000 /dev/zero > /dev/null; exit 0; fi; touch "${marker}"; exit 3`] },
          retry: { limit: 1, backoff: { initial: "10ms" } },
        },
        { name: "spin", exec: { command: ["node", "-e", "for (;;) {}"] }, timeout: "800ms", continueOnError: true },
      ],
    });
    const run = await runWorkflow(env, wf);
    const attempts = await env.store.getAttempts(run.id);
    expect(attempts.filter((a) => a.step === "flaky").map((a) => a.status)).toEqual(["failed", "succeeded"]);
    expect(usageOf(attempts, "flaky", 1).writtenBytes).toBeLessThan(1024);
    // head copied 3 MB from /dev/zero to /dev/null: read and written by the second attempt only.
    expect(usageOf(attempts, "flaky", 2).readBytes).toBeGreaterThanOrEqual(3_000_000);
    expect(usageOf(attempts, "flaky", 2).writtenBytes).toBeGreaterThanOrEqual(3_000_000);

    const spin = attempts.find((a) => a.step === "spin")!;
    expect(spin.status).toBe("timedOut");
    // A busy loop for 800 ms (on a shared machine it may get half a core): the last sample, at
    // most 100 ms before the kill, saw the CPU it had by then.
    expect(spin.usage!.cpuMs).toBeGreaterThanOrEqual(100);
    expect(spin.usage!.peakMemoryBytes).toBeGreaterThan(10 * MiB);
  });

  it("an in-process action records the whole process's figures, flagged as such", async () => {
    makeEnv();
    const file = join(env.home, "eight.bin");
    const run = await runWorkflow(env, workflow({ steps: [{ name: "heavy", agent: "usage", action: "heavy", with: { file } }] }, env.actions));
    expect(run.status).toBe("succeeded");
    const u = usageOf(await env.store.getAttempts(run.id), "heavy");
    expect(u.scope).toBe("process");
    expect(u.cpuMs).toBeGreaterThanOrEqual(100);
    expect(u.peakMemoryBytes).toBeGreaterThanOrEqual(64 * MiB);
    expect(u.writtenBytes).toBeGreaterThanOrEqual(8 * MiB);
    expect(u.readBytes).not.toBeNull();
  });

  it("the store records an end's usage, and null for an end without it", async () => {
    makeEnv();
    const wf = workflow({
      steps: [
        { name: "a", agent: "test", action: "echo", with: { value: 1 } },
        { name: "b", agent: "test", action: "echo", with: { value: 2 } },
      ],
    });
    const run = await createRun(env.store, { workflow: wf, lease: { owner: "me", expiresAt: Date.now() + 60_000 } });
    const at = new Date().toISOString();
    const usage: AttemptUsage = { cpuMs: 12.345, peakMemoryBytes: 5 * 1024 ** 3, readBytes: 2 ** 40, writtenBytes: 0, scope: "process" };
    const end = {
      runId: run.id,
      n: 1,
      owner: "me",
      status: "succeeded" as const,
      endedAt: at,
      error: null,
      outputs: {},
      stepStatus: "succeeded" as const,
      notBefore: null,
    };
    await env.store.applyTransitions([
      { kind: "begin", runId: run.id, step: "a", n: 1, owner: "me", startedAt: at },
      { kind: "begin", runId: run.id, step: "b", n: 1, owner: "me", startedAt: at },
    ]);
    await env.store.applyTransitions([{ kind: "end", ...end, step: "a", usage }]);
    await env.store.endAttempt({ ...end, step: "b", usage: { ...usage, peakMemoryBytes: null, readBytes: null, writtenBytes: null, scope: "process-tree" } });
    const attempts = await env.store.getAttempts(run.id);
    expect(attempts.find((a) => a.step === "a")!.usage).toEqual(usage);
    expect(attempts.find((a) => a.step === "b")!.usage).toEqual({
      cpuMs: 12.345,
      peakMemoryBytes: null,
      readBytes: null,
      writtenBytes: null,
      scope: "process-tree",
    });

    const other = await createRun(env.store, { workflow: wf, lease: { owner: "me", expiresAt: Date.now() + 60_000 } });
    await env.store.beginAttempt(other.id, "a", 1, "me", at);
    expect((await env.store.getAttempts(other.id))[0]!.usage).toBeNull(); // running
    await env.store.endAttempt({ ...end, runId: other.id, step: "a" });
    expect((await env.store.getAttempts(other.id))[0]!.usage).toBeNull(); // ended without figures
  });
});

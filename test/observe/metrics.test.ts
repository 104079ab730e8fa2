import { afterAll, describe, expect, it } from "vitest";
import { createMetrics, STEP_BUCKETS } from "../../src/observe/metrics.js";
import type { EngineEvent } from "../../src/engine/events.js";
import { createRun } from "../../src/engine/start.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { StateStore } from "../../src/store/types.js";
import { runWorkflow, testEnv, workflow } from "../helpers.js";

// ---- a small parser of the text exposition format ----

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: m[3] === "+Inf" ? Infinity : Number(m[3]) });
  }
  return out;
}

/** The value of the one series with this name whose labels include `labels`; undefined when none. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${hits.length} series match ${name} ${JSON.stringify(labels)}`);
  return hits[0]?.value;
}

const started = (step: string, attempt = 1, runId = "r-secret-1"): EngineEvent => ({
  type: "step-started",
  runId,
  workflow: "ingest",
  step,
  attempt,
  at: Date.now(),
});

function ended(step: string, over: Partial<Extract<EngineEvent, { type: "step-ended" }>> = {}): EngineEvent {
  return {
    type: "step-ended",
    runId: "r-secret-1",
    workflow: "ingest",
    step,
    attempt: 1,
    status: "succeeded",
    error: null,
    retryInMs: null,
    durationMs: 120,
    outputs: null,
    ...over,
  };
}

describe("metrics from engine events", () => {
  it("counts attempts, retries, durations, rows, quality and finished runs", async () => {
    const m = createMetrics({ process: "worker-a" });
    const feed: EngineEvent[] = [
      { type: "run-started", runId: "r-secret-1", workflow: "ingest", steps: ["fetch", "convert", "quality", "store"], resumed: false },
      started("fetch"),
      ended("fetch", { status: "failed", error: { code: "NETWORK_ERROR", message: "refused" }, retryInMs: 1000, durationMs: 3 }),
      started("fetch", 2),
      ended("fetch", { attempt: 2, status: "timedOut", error: { code: "TIMEOUT", message: "slow" }, retryInMs: 2000, durationMs: 7_200_000 }),
      started("fetch", 3),
      ended("fetch", { attempt: 3, durationMs: 40, outputs: { files: 1 } }),
      started("convert"),
      ended("convert", { durationMs: 97, outputs: { rowsIn: 2000, rowsOut: 1970, rowsQuarantined: 30, rowsRejectedHere: 30 } }),
      started("quality"),
      ended("quality", { durationMs: 47, outputs: { score: 0.985, threshold: 0.95, rowsIn: 2000, rowsOut: 1960, rowsQuarantined: 40 } }),
      started("store"),
      ended("store", { durationMs: 81, outputs: { rowsIn: 2000, rowsStored: 1960, rowsQuarantined: 40, rowsDuplicate: 0, balanced: true } }),
      {
        type: "run-ended",
        runId: "r-secret-1",
        workflow: "ingest",
        status: "succeeded",
        error: null,
        trigger: { type: "manual" },
        startedAt: "2024-05-01T10:00:00.000Z",
        endedAt: "2024-05-01T10:00:02.500Z",
      },
      {
        type: "run-ended",
        runId: "r-secret-2",
        workflow: "ingest",
        status: "failed",
        error: { code: "INTERNAL", message: "x" },
        trigger: null,
        startedAt: null,
        endedAt: "2024-05-01T10:00:02.500Z",
      },
    ];
    for (const e of feed) m.onEngineEvent(e);
    const text = await m.render();
    const s = parse(text);

    expect(m.contentType).toContain("text/plain");
    // Never a run id as a label value.
    expect(text).not.toContain("r-secret");

    const wf = { workflow: "ingest" };
    expect(value(s, "sluice_step_attempts_total", { ...wf, step: "fetch" })).toBe(3);
    expect(value(s, "sluice_step_attempts_total", { ...wf, step: "store" })).toBe(1);
    expect(value(s, "sluice_step_retries_total", { ...wf, step: "fetch" })).toBe(2);
    expect(value(s, "sluice_step_retries_total", { ...wf, step: "store" })).toBeUndefined();

    // Step durations in seconds, by the attempt's outcome.
    expect(value(s, "sluice_step_duration_seconds_count", { ...wf, step: "fetch", status: "failed" })).toBe(1);
    expect(value(s, "sluice_step_duration_seconds_count", { ...wf, step: "fetch", status: "timedOut" })).toBe(1);
    expect(value(s, "sluice_step_duration_seconds_sum", { ...wf, step: "fetch", status: "succeeded" })).toBeCloseTo(0.04);
    expect(value(s, "sluice_step_duration_seconds_bucket", { ...wf, step: "fetch", status: "failed", le: "0.005" })).toBe(1);
    expect(value(s, "sluice_step_duration_seconds_bucket", { ...wf, step: "fetch", status: "timedOut", le: "3600" })).toBe(0);
    expect(value(s, "sluice_step_duration_seconds_bucket", { ...wf, step: "fetch", status: "timedOut", le: "+Inf" })).toBe(1);
    expect(STEP_BUCKETS[0]).toBe(0.005);
    expect(STEP_BUCKETS.at(-1)).toBe(3600);

    // Rows, per step, from the output keys that exist.
    expect(value(s, "sluice_rows_in_total", { ...wf, step: "store" })).toBe(2000);
    expect(value(s, "sluice_rows_stored_total", { ...wf, step: "store" })).toBe(1960);
    expect(value(s, "sluice_rows_quarantined_total", { ...wf, step: "store" })).toBe(40);
    expect(value(s, "sluice_rows_duplicate_total", { ...wf, step: "store" })).toBe(0);
    expect(value(s, "sluice_rows_quarantined_total", { ...wf, step: "convert" })).toBe(30);
    expect(value(s, "sluice_rows_stored_total", { ...wf, step: "convert" })).toBeUndefined();
    expect(value(s, "sluice_rows_in_total", { ...wf, step: "fetch" })).toBeUndefined();

    expect(value(s, "sluice_quality_score", { ...wf, step: "quality" })).toBe(0.985);
    expect(value(s, "sluice_quality_threshold", { ...wf, step: "quality" })).toBe(0.95);
    expect(value(s, "sluice_quality_score", { ...wf, step: "store" })).toBeUndefined();

    expect(value(s, "sluice_runs_finished_total", { ...wf, status: "succeeded" })).toBe(1);
    expect(value(s, "sluice_runs_finished_total", { ...wf, status: "failed" })).toBe(1);
    expect(value(s, "sluice_run_duration_seconds_sum", { ...wf, status: "succeeded" })).toBe(2.5);
    // A run that never started has no duration.
    expect(value(s, "sluice_run_duration_seconds_count", { ...wf, status: "failed" })).toBeUndefined();

    // The process label on everything, default process metrics included.
    expect(s.every((x) => x.labels.process === "worker-a")).toBe(true);
    expect(s.some((x) => x.name === "process_cpu_user_seconds_total")).toBe(true);
    expect(s.some((x) => x.name.startsWith("nodejs_"))).toBe(true);
  });

  it("labels a fan-out's items with their step, one series for all of them, and counts no attempt for the parent", async () => {
    const m = createMetrics({ defaultMetrics: false });
    m.onEngineEvent({ type: "step-started", runId: "r", workflow: "ingest", step: "load", attempt: 0, at: 0, items: 3 });
    for (const i of [0, 1, 2]) {
      m.onEngineEvent({ type: "step-started", runId: "r", workflow: "ingest", step: `load[${i}]`, attempt: 1, at: 0 });
      m.onEngineEvent(ended(`load[${i}]`));
    }
    const s = parse(await m.render());
    expect(value(s, "sluice_step_attempts_total", { workflow: "ingest", step: "load" })).toBe(3);
    expect(value(s, "sluice_step_duration_seconds_count", { workflow: "ingest", step: "load", status: "succeeded" })).toBe(3);
    expect(s.some((x) => x.labels.step?.includes("["))).toBe(false);
  });

  it("takes the quality score from a failing quality step's error", async () => {
    const m = createMetrics({ defaultMetrics: false });
    m.onEngineEvent(
      ended("quality", {
        status: "failed",
        error: { code: "QUALITY_BELOW_THRESHOLD", message: "quality score 0.8123 is under the threshold 0.95: not_null(price) (3 failing)" },
      }),
    );
    const s = parse(await m.render());
    expect(value(s, "sluice_quality_score", { workflow: "ingest", step: "quality" })).toBe(0.8123);
    expect(value(s, "sluice_quality_threshold", { workflow: "ingest", step: "quality" })).toBe(0.95);
    expect(s.some((x) => x.name.startsWith("process_"))).toBe(false);
  });

  it("observes attempts' resource usage by scope, leaving out figures that were not measured", async () => {
    const m = createMetrics({ defaultMetrics: false });
    m.onEngineEvent(ended("convert", { usage: { cpuMs: 250, peakMemoryBytes: null, readBytes: 4096, writtenBytes: null, scope: "process" } }));
    m.onEngineEvent(
      ended("export", {
        status: "failed",
        usage: { cpuMs: 1500, peakMemoryBytes: 300 * 2 ** 20, readBytes: 10, writtenBytes: 2 ** 30, scope: "process-tree" },
      }),
    );
    m.onEngineEvent(ended("export", { attempt: 2 })); // no usage (an older engine, or not measurable)
    const s = parse(await m.render());
    const convert = { workflow: "ingest", step: "convert", status: "succeeded", scope: "process" };
    const exp = { workflow: "ingest", step: "export", status: "failed", scope: "process-tree" };
    expect(value(s, "sluice_step_cpu_seconds_sum", convert)).toBe(0.25);
    expect(value(s, "sluice_step_cpu_seconds_sum", exp)).toBe(1.5);
    expect(value(s, "sluice_step_cpu_seconds_count", { step: "export", status: "succeeded" })).toBeUndefined();
    expect(value(s, "sluice_step_peak_memory_bytes_count", convert)).toBeUndefined();
    expect(value(s, "sluice_step_peak_memory_bytes_bucket", { ...exp, le: String(2 ** 28) })).toBe(0);
    expect(value(s, "sluice_step_peak_memory_bytes_bucket", { ...exp, le: String(2 ** 29) })).toBe(1);
    expect(value(s, "sluice_step_io_bytes_sum", { ...convert, direction: "read" })).toBe(4096);
    expect(value(s, "sluice_step_io_bytes_count", { ...convert, direction: "write" })).toBeUndefined();
    expect(value(s, "sluice_step_io_bytes_bucket", { ...exp, direction: "write", le: String(2 ** 30) })).toBe(1);
    expect(value(s, "sluice_step_io_bytes_bucket", { ...exp, direction: "write", le: String(2 ** 28) })).toBe(0);
  });

  it("records trigger lag and events received; instances do not share series", async () => {
    const m = createMetrics({ defaultMetrics: false });
    const other = createMetrics({ defaultMetrics: false });
    m.observeTriggerLag("ingest", "schedule:0 */6 * * *@UTC", 250);
    m.observeTriggerLag("ingest", "schedule:0 */6 * * *@UTC", 1_500);
    m.observeEvent("source_data_updated");
    m.observeEvent("source_data_updated");
    m.observeEvent("bulk_files_available");
    const s = parse(await m.render());
    const trig = { workflow: "ingest", trigger: "schedule:0 */6 * * *@UTC" };
    expect(value(s, "sluice_trigger_lag_seconds_count", trig)).toBe(2);
    expect(value(s, "sluice_trigger_lag_seconds_sum", trig)).toBe(1.75);
    expect(value(s, "sluice_trigger_lag_seconds_bucket", { ...trig, le: "0.5" })).toBe(1);
    expect(value(s, "sluice_events_total", { name: "source_data_updated" })).toBe(2);
    expect(value(s, "sluice_events_total", { name: "bulk_files_available" })).toBe(1);
    expect(value(parse(await other.render()), "sluice_events_total", { name: "source_data_updated" })).toBeUndefined();
  });

  it("never throws on odd events", () => {
    const m = createMetrics({ defaultMetrics: false });
    expect(() => m.onEngineEvent({ type: "run-detached", runId: "r", reason: "x" })).not.toThrow();
    expect(() => m.onEngineEvent(ended("s", { durationMs: -5, outputs: { rowsIn: "many", score: Number.NaN } }))).not.toThrow();
    expect(() =>
      m.onEngineEvent({ type: "run-ended", runId: "r", workflow: "w", status: "failed", error: null, trigger: null, startedAt: "garbage", endedAt: "x" }),
    ).not.toThrow();
  });
});

describe("gauges from the state store", () => {
  const stores: StateStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.close();
  });
  const wf = (name: string) => workflow({ steps: [{ name: "a", agent: "test", action: "echo", with: { value: 1 } }] }, undefined, name);

  it("reads runs by workflow and status and the queue depth at scrape time", async () => {
    const store = openSqliteStore(":memory:");
    stores.push(store);
    const m = createMetrics({ store, defaultMetrics: false });
    let s = parse(await m.render());
    expect(value(s, "sluice_queue_depth")).toBe(0);
    expect(s.filter((x) => x.name === "sluice_runs")).toEqual([]);

    const ingest = wf("ingest");
    const billing = wf("billing");
    await createRun(store, { workflow: ingest });
    await createRun(store, { workflow: ingest });
    const r3 = await createRun(store, { workflow: ingest });
    await createRun(store, { workflow: billing });
    const now = Date.now();
    expect(await store.claimRun(r3.id, "w1", 60_000, now)).toBe(true);
    await store.markRunStarted(r3.id, "w1", new Date(now).toISOString(), null);

    s = parse(await m.render());
    expect(value(s, "sluice_runs", { workflow: "ingest", status: "pending" })).toBe(2);
    expect(value(s, "sluice_runs", { workflow: "ingest", status: "running" })).toBe(1);
    expect(value(s, "sluice_runs", { workflow: "ingest", status: "failed" })).toBe(0);
    expect(value(s, "sluice_runs", { workflow: "billing", status: "pending" })).toBe(1);
    expect(value(s, "sluice_queue_depth")).toBe(3);

    // A finished run moves between series on the next scrape.
    await store.finishRun(r3.id, "w1", "succeeded", new Date().toISOString(), null);
    s = parse(await m.render());
    expect(value(s, "sluice_runs", { workflow: "ingest", status: "running" })).toBe(0);
    expect(value(s, "sluice_runs", { workflow: "ingest", status: "succeeded" })).toBe(1);
  });

  it("a failing store costs the gauges, not the scrape", async () => {
    const store = openSqliteStore(":memory:");
    stores.push(store);
    const broken = {
      ...store,
      countRuns: async () => {
        throw new Error("db down");
      },
    } as StateStore;
    const m = createMetrics({ store: broken, defaultMetrics: false });
    const s = parse(await m.render());
    expect(value(s, "sluice_metrics_store_errors_total")).toBe(1);
  });

  it("follows a real engine run", async () => {
    const env = testEnv();
    try {
      const m = createMetrics({ store: env.store, defaultMetrics: false });
      const events: EngineEvent[] = [];
      const flow = workflow(
        {
          steps: [
            { name: "flaky", agent: "test", action: "flaky", with: { failures: 1 }, retry: { limit: 2, backoff: { initial: "1ms", jitter: 0 } } },
            { name: "echo", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["flaky"] },
          ],
        },
        undefined,
        "engine-flow",
      );
      const run = await runWorkflow(env, flow, { events });
      expect(run.status).toBe("succeeded");
      for (const e of events) m.onEngineEvent(e);
      const text = await m.render();
      expect(text).not.toContain(run.id);
      const s = parse(text);
      const wf = { workflow: "engine-flow" };
      expect(value(s, "sluice_step_attempts_total", { ...wf, step: "flaky" })).toBe(2);
      expect(value(s, "sluice_step_retries_total", { ...wf, step: "flaky" })).toBe(1);
      expect(value(s, "sluice_step_duration_seconds_count", { ...wf, step: "echo", status: "succeeded" })).toBe(1);
      expect(value(s, "sluice_runs_finished_total", { ...wf, status: "succeeded" })).toBe(1);
      expect(value(s, "sluice_run_duration_seconds_count", { ...wf, status: "succeeded" })).toBe(1);
      expect(value(s, "sluice_runs", { ...wf, status: "succeeded" })).toBe(1);
    } finally {
      await env.cleanup();
    }
  });
});

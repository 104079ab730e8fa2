/**
 * Prometheus metrics for a Sluice process: what the engine did here (runs finished, attempts,
 * retries, step and run durations, rows, quality scores), what the scheduler and event intake
 * saw (trigger lag, events), and, at scrape time, the fleet-wide truth from the state store
 * (runs by workflow and status, queue depth).
 *
 * Each call builds its own prom-client Registry, so two instances (tests, several engines in one
 * process) never collide in the global registry. Labels are bounded: workflow, step, status,
 * trigger and event names, never run ids.
 */
import { maskSecrets } from "../crypto/masker.js";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { EngineEvent } from "../engine/events.js";
import type { QueueStore, RunStatus } from "../store/types.js";
import { fanOutOf } from "../engine/fanout.js";

export interface Metrics {
  contentType: string;
  /** The text exposition format; reads run counts from the store first when one was given. */
  render(): Promise<string>;
  /** Feed from the engine (the executeRun `onEvent` sink). Never throws. */
  onEngineEvent(e: EngineEvent): void;
  /** How late a cron fire started its run, from the scheduler. */
  observeTriggerLag(workflow: string, trigger: string, lagMs: number): void;
  /** An event received (API, CLI, watcher, platform events). */
  observeEvent(name: string): void;
  /** One latency sample of a continuous pipeline: `end-to-end` or a stage (step) name. */
  observeStreamLatency(workflow: string, stage: string, ms: number): void;
}

export interface MetricsOptions {
  /** Source of the fleet-wide gauges (runs by workflow and status, queue depth), read at scrape time. */
  store?: QueueStore;
  /** Added as a `process` label to every series, to tell the processes of a fleet apart. */
  process?: string;
  /** prom-client's default process metrics (CPU, memory, event loop, GC); default true. */
  defaultMetrics?: boolean;
}

const RUN_STATUSES: RunStatus[] = ["pending", "running", "succeeded", "failed", "cancelled"];

/** 5 ms to 1 h: in-process no-op steps up to the long storage and collection steps. */
export const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];
const RUN_BUCKETS = [0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400];
/** 1 MiB to 64 GiB, doubling: a shell one-liner up to a large in-memory job. */
const MEMORY_BUCKETS = Array.from({ length: 17 }, (_, i) => 2 ** (20 + i));
/** 1 KiB to 64 GiB, by fours: a config read up to a large file rewritten. */
const IO_BUCKETS = Array.from({ length: 14 }, (_, i) => 1024 * 4 ** i);
const LAG_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600];

/** Row counts a step reports in its outputs (see actions/batch: convert, quality, merge, store). */
const ROW_KEYS = {
  rowsIn: "in",
  rowsStored: "stored",
  rowsQuarantined: "quarantined",
  rowsDuplicate: "duplicate",
} as const;

/** The sentence validate_data_quality fails with; a failing step carries no outputs, only this. */
const QUALITY_FAILURE = /quality score (\d+(?:\.\d+)?(?:e-?\d+)?) is under the threshold (\d+(?:\.\d+)?)/;

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (opts.process) registry.setDefaultLabels({ process: opts.process });
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const runs = new Gauge({
    name: "sluice_runs",
    help: "Runs in the state store by workflow and status (fleet-wide, read at scrape time).",
    labelNames: ["workflow", "status"] as const,
    registers,
  });
  const queueDepth = new Gauge({
    name: "sluice_queue_depth",
    help: "Pending runs waiting for a worker (fleet-wide, read at scrape time).",
    registers,
  });
  const storeErrors = new Counter({
    name: "sluice_metrics_store_errors_total",
    help: "Scrapes whose run counts could not be read from the state store.",
    registers,
  });
  // Continuous pipelines: figures from the pipeline's once-a-second report, latencies per sample.
  const streamLatency = new Histogram({
    name: "sluice_stream_latency_seconds",
    help: "Continuous pipelines: broker publish to storage commit (stage=end-to-end), or a batch's time in one stage.",
    labelNames: ["workflow", "stage"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const streamRate = new Gauge({
    name: "sluice_stream_records_per_second",
    help: "Continuous pipelines: records per second over the last report window.",
    labelNames: ["workflow"] as const,
    registers,
  });
  const streamLag = new Gauge({
    name: "sluice_stream_lag",
    help: "Continuous pipelines: messages waiting in the broker for the pipeline's consumer.",
    labelNames: ["workflow"] as const,
    registers,
  });
  const streamRecords = new Gauge({
    name: "sluice_stream_records",
    help: "Continuous pipelines: records handled since the pipeline started, by outcome (stored, duplicate, dead_lettered).",
    labelNames: ["workflow", "outcome"] as const,
    registers,
  });
  const runsFinished = new Counter({
    name: "sluice_runs_finished_total",
    help: "Runs this process finished, by workflow and final status.",
    labelNames: ["workflow", "status"] as const,
    registers,
  });
  const runDuration = new Histogram({
    name: "sluice_run_duration_seconds",
    help: "Run duration from start to end, for runs this process finished.",
    labelNames: ["workflow", "status"] as const,
    buckets: RUN_BUCKETS,
    registers,
  });
  const stepDuration = new Histogram({
    name: "sluice_step_duration_seconds",
    help: "Duration of step attempts, by outcome of the attempt.",
    labelNames: ["workflow", "step", "status"] as const,
    buckets: STEP_BUCKETS,
    registers,
  });
  // What attempts consumed (see store/types.ts AttemptUsage). `scope` keeps an exec step's own
  // figures (process-tree) apart from an in-process action's, which are the whole process's.
  const stepCpu = new Histogram({
    name: "sluice_step_cpu_seconds",
    help: "CPU time (user + system) of step attempts; scope=process-tree for an exec step's programs, scope=process for the whole Sluice process during an in-process action.",
    labelNames: ["workflow", "step", "status", "scope"] as const,
    buckets: STEP_BUCKETS,
    registers,
  });
  const stepMemory = new Histogram({
    name: "sluice_step_peak_memory_bytes",
    help: "Peak resident memory of step attempts, scoped as sluice_step_cpu_seconds.",
    labelNames: ["workflow", "step", "status", "scope"] as const,
    buckets: MEMORY_BUCKETS,
    registers,
  });
  const stepIo = new Histogram({
    name: "sluice_step_io_bytes",
    help: "Bytes step attempts read or wrote through system calls (direction=read|write), scoped as sluice_step_cpu_seconds.",
    labelNames: ["workflow", "step", "status", "scope", "direction"] as const,
    buckets: IO_BUCKETS,
    registers,
  });
  const attempts = new Counter({
    name: "sluice_step_attempts_total",
    help: "Step attempts started.",
    labelNames: ["workflow", "step"] as const,
    registers,
  });
  const retries = new Counter({
    name: "sluice_step_retries_total",
    help: "Failed step attempts that will be tried again.",
    labelNames: ["workflow", "step"] as const,
    registers,
  });
  const rows = {
    in: new Counter({
      name: "sluice_rows_in_total",
      help: "Input records a step accounted for (its rowsIn output). Batch steps carry the run's accounting forward, so sum one step (storage), not all.",
      labelNames: ["workflow", "step"] as const,
      registers,
    }),
    stored: new Counter({
      name: "sluice_rows_stored_total",
      help: "Rows written to a destination (rowsStored output of storage steps).",
      labelNames: ["workflow", "step"] as const,
      registers,
    }),
    quarantined: new Counter({
      name: "sluice_rows_quarantined_total",
      help: "Records set aside so far in the run, as a step reports them (rowsQuarantined output).",
      labelNames: ["workflow", "step"] as const,
      registers,
    }),
    duplicate: new Counter({
      name: "sluice_rows_duplicate_total",
      help: "Records counted as duplicates so far in the run, as a step reports them (rowsDuplicate output).",
      labelNames: ["workflow", "step"] as const,
      registers,
    }),
  };
  const qualityScore = new Gauge({
    name: "sluice_quality_score",
    help: "Latest quality score (0..1) of a quality validation step.",
    labelNames: ["workflow", "step"] as const,
    registers,
  });
  const qualityThreshold = new Gauge({
    name: "sluice_quality_threshold",
    help: "Threshold the latest quality score was held to.",
    labelNames: ["workflow", "step"] as const,
    registers,
  });
  const triggerLag = new Histogram({
    name: "sluice_trigger_lag_seconds",
    help: "Delay between a cron fire's scheduled time and its run being started.",
    labelNames: ["workflow", "trigger"] as const,
    buckets: LAG_BUCKETS,
    registers,
  });
  const events = new Counter({
    name: "sluice_events_total",
    help: "Events received, by name.",
    labelNames: ["name"] as const,
    registers,
  });

  async function collectStore(store: QueueStore): Promise<void> {
    let counts;
    try {
      counts = await store.countRuns();
    } catch {
      storeErrors.inc();
      return;
    }
    runs.reset();
    let pending = 0;
    const byWorkflow = new Map<string, Map<string, number>>();
    for (const c of counts) {
      let m = byWorkflow.get(c.workflow);
      if (!m) byWorkflow.set(c.workflow, (m = new Map()));
      m.set(c.status, (m.get(c.status) ?? 0) + c.count);
      if (c.status === "pending") pending += c.count;
    }
    // Every status of a known workflow is present, zero included, so series do not vanish.
    for (const [workflow, m] of byWorkflow) for (const status of RUN_STATUSES) runs.set({ workflow, status }, m.get(status) ?? 0);
    queueDepth.set(pending);
  }

  function onStepEnded(e: Extract<EngineEvent, { type: "step-ended" }>): void {
    const { workflow } = e;
    // Items of a fan-out (`load[17]`) are labelled with their step: one series, not one per item.
    const step = fanOutOf(e.step) ?? e.step;
    stepDuration.observe({ workflow, step, status: e.status }, Math.max(0, e.durationMs) / 1000);
    if (e.retryInMs !== null) retries.inc({ workflow, step });
    const u = e.usage;
    if (u) {
      const labels = { workflow, step, status: e.status, scope: u.scope };
      stepCpu.observe(labels, u.cpuMs / 1000);
      if (u.peakMemoryBytes !== null) stepMemory.observe(labels, u.peakMemoryBytes);
      if (u.readBytes !== null) stepIo.observe({ ...labels, direction: "read" }, u.readBytes);
      if (u.writtenBytes !== null) stepIo.observe({ ...labels, direction: "write" }, u.writtenBytes);
    }
    const out = e.outputs;
    if (out) {
      for (const [key, counter] of Object.entries(ROW_KEYS)) {
        const v = out[key];
        if (isCount(v)) rows[counter].inc({ workflow, step }, v);
      }
      if (isScore(out.score)) {
        qualityScore.set({ workflow, step }, out.score);
        if (isScore(out.threshold)) qualityThreshold.set({ workflow, step }, out.threshold);
      }
    } else if (e.error?.code === "QUALITY_BELOW_THRESHOLD") {
      const m = QUALITY_FAILURE.exec(e.error.message);
      if (m) {
        qualityScore.set({ workflow, step }, Number(m[1]));
        qualityThreshold.set({ workflow, step }, Number(m[2]));
      }
    }
  }

  return {
    contentType: registry.contentType,
    async render() {
      if (opts.store) await collectStore(opts.store);
      // Label values come from workflows, steps and event names: a secret that reached one is masked.
      return maskSecrets(await registry.metrics());
    },
    observeStreamLatency(workflow, stage, ms) {
      streamLatency.observe({ workflow, stage }, ms / 1000);
    },
    onEngineEvent(e) {
      try {
        switch (e.type) {
          case "step-started":
            // A fan-out's parent has no attempt of its own (attempt 0); its items count under its name.
            if (e.attempt > 0) attempts.inc({ workflow: e.workflow, step: fanOutOf(e.step) ?? e.step });
            break;
          case "step-ended":
            onStepEnded(e);
            break;
          case "stream-stats": {
            streamRate.set({ workflow: e.workflow }, e.stats.ratePerSec);
            if (e.stats.lag !== null) streamLag.set({ workflow: e.workflow }, e.stats.lag);
            streamRecords.set({ workflow: e.workflow, outcome: "stored" }, e.stats.stored);
            streamRecords.set({ workflow: e.workflow, outcome: "duplicate" }, e.stats.duplicate);
            streamRecords.set({ workflow: e.workflow, outcome: "dead_lettered" }, e.stats.deadLettered);
            break;
          }
          case "run-ended": {
            runsFinished.inc({ workflow: e.workflow, status: e.status });
            if (e.startedAt) {
              const ms = Date.parse(e.endedAt) - Date.parse(e.startedAt);
              if (Number.isFinite(ms) && ms >= 0) runDuration.observe({ workflow: e.workflow, status: e.status }, ms / 1000);
            }
            break;
          }
        }
      } catch {
        // Metrics must never break a run.
      }
    },
    observeTriggerLag(workflow, trigger, lagMs) {
      if (Number.isFinite(lagMs)) triggerLag.observe({ workflow, trigger }, Math.max(0, lagMs) / 1000);
    },
    observeEvent(name) {
      events.inc({ name });
    },
  };
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0;
}

function isScore(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/**
 * Platform events: the engine's outcomes published on the event coordinator, so one workflow can
 * trigger on another's (the seed's resilient-fetch workflow starts on `data_source_failure`).
 *
 * Published by the process that finished the run (exactly one per run), from its run-ended
 * event:
 * - `run_succeeded` / `run_failed` for every run;
 * - and for a failed run, what failed, classified from the failing steps' errors:
 *   `collection_timeout` (a collection step timed out), `data_source_failure` (a collection step
 *   could not read its source), `quality_threshold_breach` (a quality step scored too low).
 *
 * A run started by a platform event publishes with its chain depth plus one; past MAX_DEPTH
 * nothing is published, so two workflows triggering each other on failure cannot loop forever.
 */
import type { PublishEvent } from "../actions/types.js";
import type { EngineEvent } from "../engine/events.js";
import type { StepRecord, RunStore } from "../store/types.js";
import type { Step } from "../spec/schema.js";

export const PLATFORM_EVENTS = ["run_succeeded", "run_failed", "data_source_failure", "collection_timeout", "quality_threshold_breach"] as const;
export type PlatformEvent = (typeof PLATFORM_EVENTS)[number];

const MAX_DEPTH = 3;
/** Error codes that mean the source itself could not be read. */
const SOURCE_ERRORS = new Set(["NETWORK_ERROR", "FILE_NOT_FOUND", "SOURCE_UNAVAILABLE", "HTTP_ERROR", "AUTH_FAILED", "IO_ERROR", "NOT_FOUND"]);

export interface PlatformPublisher {
  onEngineEvent(e: EngineEvent): void;
  /** Wait for publications in flight (shutdown, tests). */
  flush(): Promise<void>;
}

export function createPlatformPublisher(opts: { store: RunStore; publish: PublishEvent; log?: { warn(o: object, msg?: string): void } }): PlatformPublisher {
  const inFlight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  return {
    onEngineEvent(e) {
      if (e.type !== "run-ended" || (e.status !== "succeeded" && e.status !== "failed")) return;
      const depth = chainDepth(e.trigger) + 1;
      if (depth > MAX_DEPTH) return;
      track(
        publishOutcome(opts.store, opts.publish, e, depth).catch((err: unknown) =>
          opts.log?.warn({ runId: e.runId, err: (err as Error).message }, "could not publish the run's platform events"),
        ),
      );
    },
    async flush() {
      await Promise.all([...inFlight]);
    },
  };
}

async function publishOutcome(store: RunStore, publish: PublishEvent, e: Extract<EngineEvent, { type: "run-ended" }>, depth: number): Promise<void> {
  const base = { workflow: e.workflow, runId: e.runId, status: e.status, platform: { depth } };
  const source = `engine:${e.runId}`;
  if (e.status === "succeeded") {
    await publish("run_succeeded", base, source);
    return;
  }
  await publish("run_failed", { ...base, error: e.error }, source);
  const run = await store.getRun(e.runId);
  if (!run) return;
  const defs = new Map(run.spec.spec.steps.map((s) => [s.name, s]));
  const failed = (await store.getSteps(e.runId)).filter((s) => s.status === "failed");
  const sent = new Set<PlatformEvent>();
  for (const step of failed) {
    const kind = classify(step, defs.get(step.name));
    if (!kind || sent.has(kind)) continue;
    sent.add(kind);
    await publish(kind, { ...base, step: step.name, error: step.error, params: run.params }, source);
  }
}

/** What a failed step's error says about the run, if anything a recovery workflow cares about. */
export function classify(step: Pick<StepRecord, "error">, def: Step | undefined): PlatformEvent | undefined {
  const code = step.error?.code ?? "";
  if (code === "QUALITY_BELOW_THRESHOLD") return "quality_threshold_breach";
  if (!def || !isCollection(def)) return undefined;
  if (code === "TIMEOUT") return "collection_timeout";
  if (SOURCE_ERRORS.has(code) || code.startsWith("HTTP_") || code.startsWith("SOURCE_")) return "data_source_failure";
  return undefined;
}

/** Steps that read from a source: the collectors and the source checks before them. */
function isCollection(s: Step): boolean {
  return s.agent === "data-collector" || s.agent === "data-connector" || s.agent === "data-scheduler" || /collect|fetch|source/.test(s.action ?? "");
}

function chainDepth(trigger: { type: string; data?: unknown } | null): number {
  if (trigger?.type !== "event" || !trigger.data || typeof trigger.data !== "object") return 0;
  const d = (trigger.data as { platform?: { depth?: unknown } }).platform?.depth;
  return typeof d === "number" ? d : 0;
}

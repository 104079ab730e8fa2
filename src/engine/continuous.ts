/**
 * One attempt of a continuous group: every step of the group opens its stage (the first a
 * source, the last a sink), then the pipeline runs until it is told to stop, flushes, and every
 * step of the group ends with the same outcome.
 *
 * The group's first step's `timeout` bounds opening the stages (connecting to the broker and the
 * destination), not the pipeline, which runs for as long as the run does. Stopping (cancel, run
 * timeout, a worker draining or detaching, a lost lease) ends the pipeline after a flush: what it
 * read is stored and acknowledged before the steps end.
 */
import { SluiceError, toErrorInfo } from "../errors.js";
import { parseDuration } from "../spec/duration.js";
import type { Step } from "../spec/schema.js";
import type { Stage, StageHints } from "../actions/stream-types.js";
import { attemptLogFile } from "./attempt-log.js";
import { lazyLog, prepareActionCall, untilAborted, type AttemptInput, type AttemptResult } from "./attempt.js";
import { trackProcessUsage } from "./usage.js";
import { runPipeline, type PipelineStats } from "./pipeline.js";

export interface GroupInput extends Omit<AttemptInput, "step" | "attempt"> {
  members: { step: Step; attempt: number }[];
  /** Aborted to stop the pipeline (with a flush); its reason decides the outcome. */
  stopSignal: AbortSignal;
  onStats?: (stats: PipelineStats) => void;
  onLatency?: (stage: string, ms: number) => void;
}

const DEFAULT_BATCH = 500;
const DEFAULT_LATENCY_MS = 20;

/** The group's steps all record the pipeline's usage: the whole process's, over the group's attempt. */
export async function runContinuousGroup(input: GroupInput): Promise<{ result: AttemptResult; stats: PipelineStats | null }> {
  const usage = trackProcessUsage();
  const out = await runGroup(input);
  return { ...out, result: { ...out.result, usage: usage() } };
}

async function runGroup(input: GroupInput): Promise<{ result: AttemptResult; stats: PipelineStats | null }> {
  const head = input.members[0]!.step;
  const logs = input.members.map((m) => lazyLog(attemptLogFile(input.home, input.run.id, m.step.name, m.attempt)));
  const opened: { name: string; stage: Stage; hints?: StageHints }[] = [];
  const openAbort = new AbortController();
  const onStop = () => openAbort.abort(input.stopSignal.reason);
  input.stopSignal.addEventListener("abort", onStop, { once: true });
  const timeoutMs = head.timeout ? parseDuration(head.timeout)! : null;
  const timer =
    timeoutMs === null
      ? undefined
      : setTimeout(
          () => openAbort.abort(new SluiceError("TIMEOUT", `step ${head.name} could not open its stream within its timeout of ${head.timeout}`)),
          timeoutMs,
        );
  let stats: PipelineStats | null = null;
  try {
    // Open every stage (source first), under the first step's timeout.
    for (const [i, m] of input.members.entries()) {
      const call = prepareActionCall({ ...input, step: m.step, attempt: m.attempt }, input.stopSignal, logs[i]!);
      if (!call.def.stream)
        throw new SluiceError("BAD_CONFIG", `${call.name} cannot run as a continuous step: it has no streaming stage`, { retryable: false });
      const opening = call.def.stream(call.input, call.ctx);
      const stage = await untilAborted(opening, openAbort.signal).catch((err: unknown) => {
        // A stage that finishes opening after we gave up on it is closed, not leaked.
        void opening.then(closeStage, () => undefined);
        throw err;
      });
      opened.push({ name: m.step.name, stage, hints: stage.hints });
    }
    // Opened: from here on a stop means "flush and end", not "give up opening".
    clearTimeout(timer);
    input.stopSignal.removeEventListener("abort", onStop);
    const hints = opened.reduce<StageHints>((h, s) => ({ ...h, ...s.hints }), {});
    stats = await runPipeline({
      stages: opened.map((s) => ({ name: s.name, stage: s.stage })),
      signal: input.stopSignal,
      maxBatch: hints.maxBatch ?? DEFAULT_BATCH,
      maxLatencyMs: hints.maxLatencyMs ?? DEFAULT_LATENCY_MS,
      onStats: (s) => ((stats = s), input.onStats?.(s)),
      onLatency: input.onLatency,
    });
    if (!input.stopSignal.aborted) return { result: { status: "succeeded", outputs: outputsOf(stats), error: null, retryable: false }, stats };
    return { result: stopped(input.stopSignal.reason), stats };
  } catch (err) {
    // Stages opened before the failure are closed by the pipeline, or here when it never started.
    if (!stats) await Promise.allSettled(opened.map((s) => closeStage(s.stage)));
    const reason = openAbort.signal.aborted && !input.stopSignal.aborted ? openAbort.signal.reason : input.stopSignal.aborted ? input.stopSignal.reason : err;
    if (input.stopSignal.aborted) return { result: stopped(reason), stats };
    const info = toErrorInfo(reason);
    logs[0]!.error(info.message, { code: info.code });
    if (info.code === "TIMEOUT") return { result: { status: "timedOut", outputs: null, error: info, retryable: true }, stats };
    return { result: { status: "failed", outputs: null, error: { code: info.code, message: info.message }, retryable: info.retryable }, stats };
  } finally {
    clearTimeout(timer);
    input.stopSignal.removeEventListener("abort", onStop);
    await Promise.all(logs.map((l) => l.close()));
  }
}

/** How a stopped pipeline's steps end, by why it was stopped (as for an ordinary attempt). */
function stopped(reason: unknown): AttemptResult {
  const info = toErrorInfo(reason);
  if (info.code === "INTERRUPTED" || info.code === "LEASE_LOST") return { status: "interrupted", outputs: null, error: info, retryable: false };
  if (info.code === "RUN_TIMEOUT") return { status: "failed", outputs: null, error: info, retryable: false };
  return { status: "cancelled", outputs: null, error: info, retryable: false };
}

/** The figures a finished pipeline leaves as its steps' outputs. */
export function outputsOf(s: PipelineStats): Record<string, unknown> {
  return { ...s };
}

async function closeStage(s: Stage): Promise<void> {
  if (s.kind === "source") await s.stage.close();
  else await s.stage.close?.();
}

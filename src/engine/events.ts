/**
 * What the engine tells its observers (progress display, logs, later metrics) as a run moves.
 */
import type { AttemptUsage, ErrorInfo, RunStatus, RunTrigger, StepStatus } from "../store/types.js";
import type { ProgressUpdate } from "../actions/types.js";
import type { PipelineStats } from "./pipeline.js";

export type EngineEvent =
  | { type: "run-started"; runId: string; workflow: string; steps: string[]; resumed: boolean }
  /** A step's attempt starts; a fan-out's parent starts with attempt 0 and the number of its items. */
  | { type: "step-started"; runId: string; workflow: string; step: string; attempt: number; at: number; items?: number }
  | {
      type: "step-ended";
      runId: string;
      workflow: string;
      step: string;
      attempt: number;
      status: "succeeded" | "failed" | "timedOut" | "cancelled";
      error: ErrorInfo | null;
      /** Set when the step will be tried again after this many ms. */
      retryInMs: number | null;
      durationMs: number;
      /** What the attempt returned (rows counts, quality score, …) when it succeeded. */
      outputs: Record<string, unknown> | null;
      /** What it consumed (CPU, peak memory, bytes read and written), when measured. */
      usage?: AttemptUsage | null;
    }
  | { type: "step-progress"; runId: string; step: string; attempt: number; elapsedMs: number; progress: ProgressUpdate }
  /** An action logged a warning (a file left out, an empty source, pages left unread): worth a user's eye. */
  | { type: "step-warning"; runId: string; step: string; attempt: number; message: string; fields?: Record<string, unknown> }
  /** Steps that ended without an attempt of their own: skipped (with the reason), a fan-out's parent, never-started steps at the end. */
  | { type: "steps-settled"; runId: string; steps: string[]; status: StepStatus; reason?: string }
  /** About once a second while a continuous group runs: throughput, lag, latency. */
  | { type: "stream-stats"; runId: string; workflow: string; steps: string[]; stats: PipelineStats }
  | {
      type: "run-ended";
      runId: string;
      workflow: string;
      status: RunStatus;
      error: ErrorInfo | null;
      /** What started the run (platform events carry their chain depth here). */
      trigger: RunTrigger | null;
      startedAt: string | null;
      endedAt: string;
    }
  | { type: "run-detached"; runId: string; reason: string }
  /** Resuming took the run from its previous owner, a process of this host that no longer exists. */
  | { type: "run-taken-over"; runId: string; previousOwner: string; pid: number };

export type EventSink = (e: EngineEvent) => void;

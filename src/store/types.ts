/**
 * The state store: one interface, two dialects (SQLite now, PostgreSQL with the worker fleet).
 *
 * The store is the run's durable history. The engine writes an attempt row before the attempt
 * starts and finishes it when it ends, so after a crash the store alone says what happened.
 * Every method is async so that a networked database fits behind the same interface.
 */
import type { Workflow } from "../spec/schema.js";

export type RunStatus = "pending" | "running" | "succeeded" | "failed" | "cancelled";
export type StepStatus = "pending" | "running" | "succeeded" | "failed" | "skipped" | "cancelled";
export type AttemptStatus = "running" | "succeeded" | "failed" | "timedOut" | "cancelled" | "interrupted";

export interface ErrorInfo {
  code: string;
  message: string;
}

export interface RunTrigger {
  type: "manual" | "schedule" | "event" | "api";
  name?: string;
  data?: unknown;
}

export interface RunRecord {
  id: string;
  workflow: string;
  spec: Workflow;
  /** The file the workflow came from, when it came from one. */
  source: string | null;
  params: Record<string, unknown>;
  trigger: RunTrigger | null;
  status: RunStatus;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  deadlineAt: string | null;
  error: ErrorInfo | null;
  cancelRequested: boolean;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
}

export interface StepRecord {
  runId: string;
  name: string;
  /** Position in the workflow file, for stable display order. */
  idx: number;
  status: StepStatus;
  /** Number of attempts started so far. */
  attempts: number;
  /** Epoch ms before which the next attempt must not start (retry backoff). */
  notBefore: number | null;
  startedAt: string | null;
  endedAt: string | null;
  outputs: Record<string, unknown> | null;
  error: ErrorInfo | null;
}

export interface AttemptRecord {
  runId: string;
  step: string;
  n: number;
  status: AttemptStatus;
  startedAt: string;
  endedAt: string | null;
  error: ErrorInfo | null;
  owner: string | null;
}

export interface NewRun {
  id: string;
  workflow: Workflow;
  source: string | null;
  params: Record<string, unknown>;
  trigger: RunTrigger | null;
  createdAt: string;
}

export interface RunFilter {
  workflow?: string;
  status?: RunStatus;
  limit?: number;
}

export interface AttemptEnd {
  runId: string;
  step: string;
  n: number;
  owner: string;
  status: Exclude<AttemptStatus, "running" | "interrupted">;
  endedAt: string;
  error: ErrorInfo | null;
  outputs: Record<string, unknown> | null;
  /** What the step becomes: done (succeeded/failed/cancelled) or pending again for a retry. */
  stepStatus: StepStatus;
  notBefore: number | null;
}

export interface LeaseState {
  /** False when another owner holds the run now: the caller must stop at once. */
  held: boolean;
  cancelRequested: boolean;
}

export interface IngestedFile {
  checksum: string;
  path: string;
  size: number;
}

export interface StateStore {
  readonly dialect: "sqlite" | "postgres";
  createRun(run: NewRun): Promise<RunRecord>;
  getRun(id: string): Promise<RunRecord | undefined>;
  listRuns(filter?: RunFilter): Promise<RunRecord[]>;
  getSteps(runId: string): Promise<StepRecord[]>;
  getAttempts(runId: string): Promise<AttemptRecord[]>;

  /** Take the run's lease when nobody holds a live one (or we already do). */
  claimRun(runId: string, owner: string, ttlMs: number, now: number): Promise<boolean>;
  /** Extend our lease; also reports a cancel request made by another process. */
  renewLease(runId: string, owner: string, ttlMs: number, now: number): Promise<LeaseState>;
  releaseLease(runId: string, owner: string): Promise<void>;

  /** Mark attempts left `running` by a dead owner as interrupted and their steps pending again. */
  recoverInterrupted(runId: string, owner: string, endedAt: string): Promise<number>;
  markRunStarted(runId: string, owner: string, startedAt: string, deadlineAt: string | null): Promise<void>;
  finishRun(runId: string, owner: string | null, status: RunStatus, endedAt: string, error: ErrorInfo | null): Promise<void>;

  /** Record an attempt as started. Fenced: fails with LEASE_LOST unless `owner` holds the run. */
  beginAttempt(runId: string, step: string, n: number, owner: string, startedAt: string): Promise<void>;
  endAttempt(end: AttemptEnd): Promise<void>;
  /** Set several steps to a final status at once (skipped after a failure, cancelled on cancel). */
  settleSteps(runId: string, steps: string[], status: StepStatus, endedAt: string, error: ErrorInfo | null): Promise<void>;

  requestCancel(runId: string): Promise<void>;

  /** Which of these checksums were already ingested in a scope (a workflow and its source). */
  ingestedChecksums(scope: string, checksums: string[]): Promise<Set<string>>;
  /** Remember files as ingested once their rows are stored; recording again is harmless. */
  recordIngested(scope: string, files: IngestedFile[], runId: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * What an action is: a named piece of work with a typed input schema, run in-process with a context.
 * Actions know nothing about scheduling; the engine gives them inputs, a signal and a place to work.
 */
import type { z } from "zod";
import type { ActionKind } from "../spec/catalogue.js";
import type { Stage, StageHints } from "./stream-types.js";

export type Outputs = Record<string, unknown>;

export interface ActionLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** A log that drops everything: the default where no logger is given. */
export const QUIET_LOG: ActionLog = { info() {}, warn() {}, error() {} };

/** How far a long action has got; shown as rows, MB/s and ETA on a terminal. All fields optional. */
export interface ProgressUpdate {
  rows?: number;
  bytes?: number;
  totalBytes?: number;
  files?: number;
  totalFiles?: number;
}

/**
 * Which files a workflow has already ingested, and which it found unreadable. A scope names a
 * workflow and its source (`bulk-file-ingestion:/data/in`). Files are recorded as ingested only
 * after their rows are stored, so a run that fails half-way leaves them to be taken again.
 * A file whose CONTENT cannot be read (corrupt Parquet, a JSON file that is not an array) is
 * recorded as rejected, by checksum with its reason, so later runs leave it out until its
 * content changes; a transient failure (an I/O error, a file that vanished) is never recorded.
 */
export interface FileLedger {
  /** The checksums among these that were ingested in the scope. */
  seen(scope: string, checksums: string[]): Promise<Set<string>>;
  record(scope: string, files: { checksum: string; path: string; size: number }[]): Promise<void>;
  /** The checksums among these that were rejected in the scope, with why and since when. */
  rejected(scope: string, checksums: string[]): Promise<Map<string, KnownBadFile>>;
  /** Remember files as unreadable; an ingested checksum stays ingested, a rejected one keeps its first date. */
  reject(scope: string, files: { checksum: string; path: string; size: number; reason: string }[]): Promise<void>;
}

/** A file the ledger knows as unreadable. */
export interface KnownBadFile {
  checksum: string;
  /** The path it had when it was rejected. */
  path: string;
  reason: string;
  /** When it was first rejected (UTC ISO-8601). */
  since: string;
}

/**
 * Small JSON state that outlives a run, shared by every process on the store (the recovery
 * workflow's circuit breakers and bandit). `put` is a compare-and-set on the version read with
 * `get` (0: no entry yet); null means another writer came first: read again and retry.
 */
export interface SharedState {
  get(namespace: string, key: string): Promise<{ value: unknown; version: number; updatedAt: string } | undefined>;
  put(namespace: string, key: string, value: unknown, expectedVersion: number): Promise<number | null>;
  list(namespace: string): Promise<{ key: string; value: unknown; version: number; updatedAt: string }[]>;
}

/** An error as the store recorded it; `details` holds the evidence a connector attached (HTTP status, bytes …). */
export interface PastError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** A run from the store's history, with its steps and their attempts (read by failure analysis). */
export interface PastRun {
  id: string;
  workflow: string;
  status: string;
  params: Record<string, unknown>;
  trigger: { type: string; name?: string; data?: unknown } | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /** When the run's whole-run timeout ends it (null: no timeout; absent: not known to this history). */
  deadlineAt?: string | null;
  error: PastError | null;
  steps: {
    name: string;
    /** What the step runs: `owner/action` (agent or service), `exec` or `workflow`; from the run's spec. */
    uses?: string;
    status: string;
    outputs: Record<string, unknown> | null;
    error: PastError | null;
    attempts: { n: number; status: string; startedAt: string; endedAt: string | null; error: PastError | null }[];
  }[];
}

/** Read-only access to earlier runs. */
export interface RunHistory {
  /** Runs newest first, created at or after `since` (ISO), at most `limit` (default 200). */
  runs(filter: { workflow?: string; since?: string; limit?: number }): Promise<PastRun[]>;
  run(id: string): Promise<PastRun | undefined>;
}

/** What an action records in the audit trail; the engine adds who, where, when, the run and the step. */
export interface AuditRecord {
  /** Dotted: `data.store`, `policy.decision`, `security.incident`. */
  event: string;
  outcome: "success" | "failure";
  /** The object affected: `table:accounts.card`, `source:https://…`, `dataset:…`. */
  resource: string;
  /** Counts, classes, reasons — never a secret or a personal value. */
  details?: Record<string, unknown>;
}

/** The tamper-evident audit trail (hash-chained, checkpointed per run). A failed write throws: the step fails closed. */
export interface AuditTrail {
  append(entry: AuditRecord): Promise<void>;
}

export interface ActionContext {
  runId: string;
  workflow: string;
  step: string;
  attempt: number;
  /** Aborted on step timeout, run timeout or cancel. Long work must check it. */
  signal: AbortSignal;
  /** The run's own folder for datasets it produces (`<home>/runs/<run>/artifacts`), created on first use. */
  artifactsDir: string;
  /** Root of the Sluice home (state, warehouse, runs). */
  home: string;
  params: Readonly<Record<string, unknown>>;
  log: ActionLog;
  /** Files already ingested, by checksum, kept in the state store (see FileLedger). */
  ledger: FileLedger;
  /** State shared across runs and processes (see SharedState). */
  state: SharedState;
  /** Earlier runs, their steps and attempts. */
  history: RunHistory;
  /** Report progress; cheap to call often (the engine throttles what it shows). */
  progress(update: ProgressUpdate): void;
  /** Publish a platform event: stored, and every workflow triggered by it is queued. */
  publish: PublishEvent;
  /** The audit trail (see AuditTrail). */
  audit: AuditTrail;
}

/** Emit an event on behalf of a run (`base-event-coordinator/publish_event`, platform events). */
export type PublishEvent = (name: string, data: Record<string, unknown>, source: string) => Promise<{ eventId: string; runIds: string[] }>;

// `any`, not `unknown`: a catalogue holds definitions of many input types, and run(input: I) is
// contravariant in I, so an ActionDefinition<X> is not an ActionDefinition<unknown>.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
export interface ActionDefinition<I = any> {
  kind: ActionKind;
  owner: string;
  action: string;
  description: string;
  input: z.ZodType<I>;
  run(input: I, ctx: ActionContext): Promise<Outputs>;
  /** Present when the action can run as a stage of a continuous pipeline (see stream-types.ts). */
  stream?: OpenStage<I>;
}

/**
 * The streaming face of an action: open its stage for a continuous pipeline. Declared here, beside
 * ActionDefinition, rather than in stream-types.ts: it takes an ActionContext, and stream-types.ts
 * importing this file while this file imports it was a cycle.
 */
export type OpenStage<I> = (input: I, ctx: ActionContext) => Promise<Stage & { hints?: StageHints }>;

/** A helper that keeps the input type of an action definition. */
export function defineAction<S extends z.ZodType>(def: Omit<ActionDefinition<z.infer<S>>, "input"> & { input: S }): ActionDefinition<z.infer<S>> {
  return def as ActionDefinition<z.infer<S>>;
}

/**
 * The state store: one interface, two dialects (SQLite now, PostgreSQL with the worker fleet).
 *
 * The store is the run's durable history. The engine writes an attempt row before the attempt
 * starts and finishes it when it ends, so after a crash the store alone says what happened.
 * Every method is async so that a networked database fits behind the same interface.
 */
import type { Workflow } from "../spec/schema.js";
import type { ErrorCode } from "../errors.js";
import type { AuditCheckpoint, AuditEntry, AuditEvent } from "../crypto/audit-chain.js";

export type RunStatus = "pending" | "running" | "succeeded" | "failed" | "cancelled";
export type StepStatus = "pending" | "running" | "succeeded" | "failed" | "skipped" | "cancelled";
export type AttemptStatus = "running" | "succeeded" | "failed" | "timedOut" | "cancelled" | "interrupted";

export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  /**
   * The evidence the error carried (SluiceError.details: HTTP status, Retry-After, bytes declared
   * and received, page, url …), plain JSON of at most ~4 KB (errors.ts boundedDetails). Kept for
   * attempts and steps; failure analysis classifies on it.
   */
  details?: Record<string, unknown>;
}

/** What can start a run; the API's schema and the web UI's filter use this list. */
export const TRIGGER_TYPES = ["manual", "schedule", "event", "api", "retry", "workflow", "kubernetes"] as const;

export interface RunTrigger {
  /** `workflow`: a child run started by a `workflow:` step of another run; `kubernetes`: by a WorkflowRun resource (name: namespace/name). */
  type: (typeof TRIGGER_TYPES)[number];
  /** The schedule expression or the event name. */
  name?: string;
  data?: unknown;
  /** The stored event that started the run (event triggers). */
  eventId?: string;
  /** The scheduled time of the cron fire that started the run (schedule triggers). */
  fireAt?: string;
  /** The run and step that started this child run, and how deep in calls it is (workflow triggers). */
  parent?: { runId: string; step: string; depth: number };
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
  /** The registry version the run was started from (null: not from the registry, or recorded before versions were). */
  version?: number | null;
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
  /** Attempts numbered up to this one came before a manual retry and do not count against the retry budget. */
  retryBase: number;
}

/**
 * What an attempt consumed, measured by the engine (see engine/usage.ts and actions/exec-usage.ts).
 * A figure is null when this platform could not measure it.
 */
export interface AttemptUsage {
  /** CPU time, user + system, in milliseconds. */
  cpuMs: number;
  /** Peak resident memory in bytes. */
  peakMemoryBytes: number | null;
  /** Bytes read and written through system calls (files, pipes, sockets; /proc/PID/io rchar and wchar). */
  readBytes: number | null;
  writtenBytes: number | null;
  /**
   * Whose figures these are. `process-tree`: an exec step's program and its descendants, nothing
   * else. `process`: the whole Sluice process while an in-process action ran, shared with every
   * attempt running at the same time in it (and with the engine itself).
   */
  scope: "process-tree" | "process";
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
  /** Null while running, for interrupted attempts, and for attempts recorded before usage was measured. */
  usage: AttemptUsage | null;
}

export interface NewRun {
  id: string;
  workflow: Workflow;
  source: string | null;
  params: Record<string, unknown>;
  trigger: RunTrigger | null;
  createdAt: string;
  /**
   * Created already leased to this owner (for `sluice run`, which executes the run it creates):
   * a worker polling the same store must not take it first. Without it, the run waits in the
   * queue for any worker to claim.
   */
  lease?: { owner: string; expiresAt: number };
  /** The registry version the run was started from, when it came from the registry (shown in the UI). */
  version?: number | null;
}

export interface RunFilter {
  workflow?: string;
  status?: RunStatus;
  /** Runs created at or after this ISO time. */
  since?: string;
  /** Runs created before this ISO time. */
  until?: string;
  limit?: number;
  offset?: number;
}

/** Which runs a page of `listRunsPage` shows; `after` is the previous page's `next` cursor. */
export interface RunPageFilter {
  workflow?: string;
  status?: RunStatus;
  trigger?: RunTrigger["type"];
  /** Runs created at or after this ISO time. */
  since?: string;
  /** Runs created before this ISO time. */
  until?: string;
  after?: string;
  limit: number;
}

/** Records counted by a run's storage steps (summed over them), written when the run ends. */
export interface RunRowCounts {
  in: number;
  stored: number;
  quarantined: number;
  duplicate: number;
}

/** A run as a list shows it: no spec, no params (slim, so a page of 50 costs a few kB). */
export interface RunSummary {
  id: string;
  workflow: string;
  /** The registry version it was started from; null for `sluice run FILE` and runs created before versions were recorded. */
  version: number | null;
  status: RunStatus;
  trigger: RunTrigger | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  error: { code: string; message: string } | null;
  /** Null until the run ends, and for runs with no storage step. */
  rows: RunRowCounts | null;
}

export interface RunPage {
  runs: RunSummary[];
  /** The cursor of the next page (older runs), or null on the last page. */
  next: string | null;
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
  /** What the attempt consumed, when measured. */
  usage?: AttemptUsage | null;
}

/** The start of an attempt (fenced on the run's lease). */
export interface AttemptBegin {
  runId: string;
  step: string;
  n: number;
  owner: string;
  startedAt: string;
}

/**
 * A step transition, for `applyTransitions`: several of them (one step's end and the next
 * step's start, or the ends of many parallel steps) commit together in one transaction.
 */
export type Transition = ({ kind: "begin" } & AttemptBegin) | ({ kind: "end" } & AttemptEnd);

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

/** A file whose content could not be read, for the ledger (see FileLedger in actions/types.ts). */
export interface RejectedFile extends IngestedFile {
  reason: string;
}

export interface RejectedFileRecord extends RejectedFile {
  /** The run that first rejected it. */
  runId: string;
  /** When it was first rejected (ISO). */
  rejectedAt: string;
}

/** One version of a workflow definition kept by the registry (`sluice apply`, `serve --workflows`). */
export interface WorkflowVersion {
  name: string;
  version: number;
  spec: Workflow;
  /** The YAML text as applied, so a rollback restores exactly what was there. */
  yaml: string;
  /** The file it was loaded from, when it came from one. */
  source: string | null;
  createdAt: string;
  /** True for the version triggers and new runs use; at most one per name. */
  current: boolean;
}

export interface EventRecord {
  id: string;
  name: string;
  data: unknown;
  /** Who emitted it: `api`, `cli`, `file-watcher`, `engine` (platform events), … */
  source: string;
  createdAt: string;
  /** Runs the event started (filled by the store from the runs' trigger). */
  runIds: string[];
}

/** A cron fire, recorded before its run starts so a restart never fires twice or drops one. */
export interface FireRecord {
  workflow: string;
  /** Which trigger of the workflow: `schedule:<expr>@<tz>`. */
  triggerKey: string;
  /** The scheduled time (ISO, UTC). */
  fireAt: string;
  /** The run it started, or null while undecided. */
  runId: string | null;
  /** What happened: started, or why not (skipped by Forbid, caught up, …). */
  outcome: string | null;
  recordedAt: string;
}

export interface RunCount {
  workflow: string;
  status: RunStatus;
  count: number;
}

/**
 * The store by role. Each consumer depends on the slices it uses: the engine on runs and the
 * ledger, workers on the queue, the scheduler on fires and named leases, the registry on
 * workflow versions; `StateStore` is all of them, which only the CLI (which opens it), the
 * server and the implementations see whole.
 */

/** Runs, their steps and attempts: what executing a run reads and writes (fenced on its lease). */
export interface RunStore {
  createRun(run: NewRun): Promise<RunRecord>;
  getRun(id: string): Promise<RunRecord | undefined>;
  listRuns(filter?: RunFilter): Promise<RunRecord[]>;
  /**
   * Runs newest first (created_at DESC, id DESC), paged by keyset: a page costs the same at page
   * 500 as at page 1, and a run created while paging never shifts a later page. Slim rows.
   */
  listRunsPage(filter: RunPageFilter): Promise<RunPage>;
  /** The slim rows of these runs (the UI's live status), in no particular order; unknown ids are left out. */
  getRunSummaries(ids: string[]): Promise<RunSummary[]>;
  getSteps(runId: string): Promise<StepRecord[]>;
  getAttempts(runId: string): Promise<AttemptRecord[]>;

  /** Take the run's lease when nobody holds a live one (or we already do). */
  claimRun(runId: string, owner: string, ttlMs: number, now: number): Promise<boolean>;
  /**
   * Take the run's lease from `deadOwner`, a process known to be gone, live lease or not: a
   * compare-and-set on the owner, so of several callers naming the same dead owner exactly one
   * wins, and nothing is taken from an owner that has changed since (or from an ended run).
   */
  takeOverRun(runId: string, deadOwner: string, owner: string, ttlMs: number, now: number): Promise<boolean>;
  /** Extend our lease; also reports a cancel request made by another process. */
  renewLease(runId: string, owner: string, ttlMs: number, now: number): Promise<LeaseState>;
  releaseLease(runId: string, owner: string): Promise<void>;

  /** Mark attempts left `running` by a dead owner as interrupted and their steps pending again. */
  recoverInterrupted(runId: string, owner: string, endedAt: string): Promise<number>;
  /** Mark the run running (first start keeps its time and deadline); returns it as stored. Fenced. */
  markRunStarted(runId: string, owner: string, startedAt: string, deadlineAt: string | null): Promise<RunRecord>;
  /** Record the run's outcome and drop its lease; returns it as stored (undefined when fenced off). */
  finishRun(runId: string, owner: string | null, status: RunStatus, endedAt: string, error: ErrorInfo | null): Promise<RunRecord | undefined>;

  /** Record an attempt as started. Fenced: fails with LEASE_LOST unless `owner` holds the run. */
  beginAttempt(runId: string, step: string, n: number, owner: string, startedAt: string): Promise<void>;
  endAttempt(end: AttemptEnd): Promise<void>;
  /**
   * Apply transitions in order, atomically, in one transaction (one round trip on PostgreSQL).
   * Fails with LEASE_LOST, applying none, when any of them is fenced off.
   */
  applyTransitions(ops: Transition[]): Promise<void>;
  /**
   * A fan-out expands: its item steps are added pending (those already there, after a resume,
   * are kept as they are) and the parent is marked running. Fenced on the lease.
   */
  expandStep(runId: string, owner: string, parent: string, startedAt: string, items: { name: string; idx: number }[]): Promise<void>;
  /**
   * A step reaches a final state without an attempt of its own: a fan-out parent once its items
   * ended, a step skipped by its condition or trigger rule (the reason in `error`). Fenced on the lease.
   */
  completeStep(
    runId: string,
    owner: string,
    step: string,
    status: StepStatus,
    endedAt: string,
    outputs: Record<string, unknown> | null,
    error: ErrorInfo | null,
  ): Promise<void>;
  /** Live figures of a running step (a continuous pipeline's throughput and latency), shown as its outputs. */
  recordStepOutputs(runId: string, step: string, outputs: Record<string, unknown>): Promise<void>;
  /** Set several steps to a final status at once (skipped after a failure, cancelled on cancel). */
  settleSteps(runId: string, steps: string[], status: StepStatus, endedAt: string, error: ErrorInfo | null): Promise<void>;

  requestCancel(runId: string): Promise<void>;
}

/** The run queue workers claim from. */
export interface QueueStore {
  /**
   * Lease up to `limit` runs that need an owner: pending runs nobody holds, and pending or running
   * runs whose owner's lease expired (it died). PostgreSQL uses FOR UPDATE SKIP LOCKED, so
   * workers polling together never take the same run.
   */
  claimRuns(owner: string, ttlMs: number, now: number, limit: number): Promise<RunRecord[]>;
  /**
   * Call `fn` when runs may have been queued (PostgreSQL LISTEN/NOTIFY; in-process for SQLite).
   * Workers poll as well, so a missed wake-up only costs latency. Returns an unsubscribe function.
   */
  onRunsQueued(fn: () => void): Promise<() => Promise<void>>;
  /**
   * Make a failed or cancelled run runnable again from these steps (`retry`): they go back to
   * pending with a fresh retry budget, attempt numbers continue, and the run returns to the queue.
   */
  reopenRun(runId: string, steps: string[]): Promise<boolean>;
  /** Runs by workflow and status, for metrics. */
  countRuns(): Promise<RunCount[]>;
}

/** The workflow registry: versions, the current one, rollbacks. */
export interface RegistryStore {
  /** Store a new version when the YAML differs from the current one; it becomes current. */
  saveWorkflow(w: { name: string; spec: Workflow; yaml: string; source: string | null; createdAt: string }): Promise<{ version: number; created: boolean }>;
  /** The current version, or a given one. */
  getWorkflow(name: string, version?: number): Promise<WorkflowVersion | undefined>;
  /** Every workflow's current version. */
  listWorkflows(): Promise<WorkflowVersion[]>;
  workflowHistory(name: string): Promise<WorkflowVersion[]>;
  /** Make an older (or newer) version current again; false when there is no such version. */
  setCurrentWorkflow(name: string, version: number): Promise<boolean>;
  /** No version is current any more (its file was removed): triggers stop, history stays. */
  retireWorkflow(name: string): Promise<void>;
}

/** Platform events and the runs they started. */
export interface EventStore {
  recordEvent(e: Omit<EventRecord, "runIds">): Promise<void>;
  getEvent(id: string): Promise<EventRecord | undefined>;
  listEvents(filter?: { name?: string; limit?: number }): Promise<EventRecord[]>;
}

/** Cron fires, recorded before their runs start. */
export interface FireStore {
  /** Record a fire; false when this (workflow, trigger, time) was recorded already (by us or another scheduler). */
  recordFire(f: { workflow: string; triggerKey: string; fireAt: string; recordedAt: string }): Promise<boolean>;
  settleFire(workflow: string, triggerKey: string, fireAt: string, outcome: string, runId: string | null): Promise<void>;
  /** The latest recorded fire of a trigger. */
  lastFire(workflow: string, triggerKey: string): Promise<FireRecord | undefined>;
  /** Fires recorded but never settled (the scheduler died between recording and starting). */
  unsettledFires(): Promise<FireRecord[]>;
  listFires(filter?: { workflow?: string; limit?: number }): Promise<FireRecord[]>;
}

/** Named leases (leader election). */
export interface NamedLeaseStore {
  /**
   * A named lease for leader election (one scheduler across the fleet): taken when free, expired
   * or already ours; renewing is taking again. False when another owner holds it.
   */
  acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean>;
  releaseNamedLease(name: string, owner: string): Promise<void>;
}

/** The file ledger: one row per (scope, checksum), ingested or rejected. */
export interface LedgerStore {
  /** Which of these checksums were already ingested in a scope (a workflow and its source). */
  ingestedChecksums(scope: string, checksums: string[]): Promise<Set<string>>;
  /**
   * Remember files as ingested once their rows are stored; recording again is harmless. A file
   * rejected before (and now read after all) becomes ingested.
   */
  recordIngested(scope: string, files: IngestedFile[], runId: string): Promise<void>;
  /** The rejected files among these checksums in a scope. */
  rejectedFiles(scope: string, checksums: string[]): Promise<RejectedFileRecord[]>;
  /**
   * Remember files whose content cannot be read. An ingested checksum stays ingested; a rejected
   * one takes the new path and reason but keeps its run and date (the first rejection).
   */
  recordRejected(scope: string, files: RejectedFile[], runId: string): Promise<void>;
}

/** One entry of shared state (see SharedStateStore). */
export interface SharedStateRecord {
  namespace: string;
  key: string;
  value: unknown;
  /** 1 on first write, +1 on every write after. */
  version: number;
  updatedAt: string;
}

/**
 * Small JSON state that outlives a run and is shared by every process on the store: the recovery
 * workflow's circuit breakers and strategy bandit. Writes are a compare-and-set on the version,
 * so two processes updating one key never lose an update: the loser reads again and retries.
 */
export interface SharedStateStore {
  getState(namespace: string, key: string): Promise<SharedStateRecord | undefined>;
  /** Write when the stored version is `expectedVersion` (0: no entry yet); the new version, or null when another writer came first. */
  putState(namespace: string, key: string, value: unknown, expectedVersion: number, updatedAt: string): Promise<number | null>;
  listState(namespace: string): Promise<SharedStateRecord[]>;
}

/** Which audit entries to list, always in chain order (seq ascending). */
export interface AuditFilter {
  runId?: string;
  /** Entries after this position (paging). */
  afterSeq?: number;
  limit?: number;
}

/**
 * The audit trail (see crypto/audit-chain.ts): append-only, hash-chained entries with PCI DSS
 * 10.2.2 fields, and Ed25519-signed checkpoints kept in a table of their own. The tables refuse
 * UPDATE and DELETE by trigger; that stops mistakes, and the chain with its checkpoints is what
 * shows a deliberate edit (`sluice audit verify`).
 */
export interface AuditStore {
  /**
   * Append one entry. Its position and hashes are computed from the last entry inside one
   * serialised transaction, so writers in several processes never fork the chain. A failed write
   * throws: callers fail closed.
   */
  appendAudit(event: AuditEvent): Promise<AuditEntry>;
  listAudit(filter?: AuditFilter): Promise<AuditEntry[]>;
  /** How many entries there are and the hash of the last (GENESIS when empty): what a checkpoint signs. */
  auditHead(): Promise<{ count: number; head: string }>;
  /** Store a signed checkpoint; storing the same (count, key) again is harmless. */
  appendCheckpoint(c: AuditCheckpoint): Promise<void>;
  listCheckpoints(): Promise<AuditCheckpoint[]>;
}

/** What the engine needs: runs, the ledger, shared state and the audit trail actions use, the registry child runs resolve from, and events it publishes. */
export type EngineStore = RunStore & LedgerStore & SharedStateStore & RegistryStore & EventStore & AuditStore;

export interface StateStore extends RunStore, QueueStore, RegistryStore, EventStore, FireStore, NamedLeaseStore, LedgerStore, SharedStateStore, AuditStore {
  readonly dialect: "sqlite" | "postgres";
  close(): Promise<void>;
}

/**
 * Drive one run to its end: a DAG scheduler over durable step attempts.
 *
 * The store is the source of truth. Each attempt is written before it starts and when it ends;
 * in memory we keep only what the store already says (and counters derived from it), so a
 * resumed run rebuilds the same picture from the store and goes on. A lease, renewed by a
 * heartbeat, marks the process that owns the run: a process that dies stops renewing it, and
 * `resume` may take over once it has expired.
 */
import { setMaxListeners } from "node:events";
import { SluiceError } from "../errors.js";
import { parseDuration } from "../spec/duration.js";
import type { Step, Workflow } from "../spec/schema.js";
import type { ActionRegistry } from "../actions/registry.js";
import type { ProgressUpdate, PublishEvent } from "../actions/types.js";
import type { AttemptRecord, ErrorInfo, RunRecord, StateStore, StepRecord, StepStatus } from "../store/types.js";
import { effectiveRetry, retryDelayMs, type EffectiveRetry } from "./backoff.js";
import type { EventSink } from "./events.js";
import { newOwnerId } from "./ids.js";
import { createLimiter, type Limiter } from "./limiter.js";
import { runStepAttempt } from "./attempt.js";
import { writerFor, type TransitionWriter } from "./writer.js";
import { outputsOf, runContinuousGroup } from "./continuous.js";

export interface EngineOptions {
  store: StateStore;
  actions: ActionRegistry;
  /** Sluice home: attempt logs and artifacts go under `<home>/runs/<id>/`. */
  home: string;
  owner?: string;
  /** How long a lease lasts without renewal (default 15 s, or SLUICE_LEASE_TTL_MS). */
  leaseTtlMs?: number;
  /** Process-wide cap on attempts running at once, shared by all runs of this process. */
  limiter?: Limiter;
  onEvent?: EventSink;
  /** Aborting this detaches: running attempts stop, are marked interrupted, and the run stays resumable. */
  signal?: AbortSignal;
  /**
   * Aborting this drains (graceful shutdown): no new attempt starts, running ones finish and are
   * recorded, then the process lets go of the run so another worker goes on with it at once.
   */
  drain?: AbortSignal;
  /** How runs publish events (default: store them and queue the workflows they trigger). */
  publishEvent?: PublishEvent;
  /** The run as claimed from the queue by `owner` (a worker): saves reading and claiming it again. */
  claimed?: RunRecord;
  /** Every latency sample of a continuous pipeline (end-to-end, per stage), for histograms. */
  onStreamLatency?: (workflow: string, stage: string, ms: number) => void;
}

/** Events go through the control plane (stored, triggered workflows queued); loaded on first use. */
function storePublisher(store: StateStore): PublishEvent {
  return async (name, data, source) => {
    const { emitEvent } = await import("../control/events.js");
    const r = await emitEvent(store, { name, data, source });
    return { eventId: r.event.id, runIds: r.runs.map((x) => x.id) };
  };
}

const DEFAULT_PARALLELISM = 32;
let sharedLimiter: Limiter | undefined;

export function defaultLimiter(): Limiter {
  sharedLimiter ??= createLimiter(Number(process.env.SLUICE_MAX_PARALLEL) || 64);
  return sharedLimiter;
}

export function leaseTtl(): number {
  return Number(process.env.SLUICE_LEASE_TTL_MS) || 15_000;
}

interface StepState {
  def: Step;
  idx: number;
  status: StepStatus;
  attempts: number;
  failures: number;
  notBefore: number | null;
  outputs: Record<string, unknown> | null;
  error: ErrorInfo | null;
  /** Dependencies not yet satisfied. */
  waitingOn: number;
  dependents: string[];
  retry: EffectiveRetry;
  timer?: NodeJS.Timeout;
}

/** Why the run stops early, in order of precedence when several happen. */
type StopReason =
  | { kind: "cancel" }
  | { kind: "runTimeout" }
  | { kind: "leaseLost" }
  | { kind: "detach"; reason: string }
  | { kind: "drain" };

/** Execute (or resume) a run until it ends or this process detaches from it. Returns the run as stored. */
export async function executeRun(runId: string, opts: EngineOptions): Promise<RunRecord> {
  const { store } = opts;
  const owner = opts.owner ?? newOwnerId();
  const ttl = opts.leaseTtlMs ?? leaseTtl();
  if (opts.claimed?.id === runId && opts.claimed.leaseOwner === owner) return new RunDriver(opts.claimed, owner, ttl, opts).drive();
  const run = await store.getRun(runId);
  if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${runId}`);
  if (run.status !== "pending" && run.status !== "running") return run;

  if (!(await store.claimRun(runId, owner, ttl, Date.now()))) {
    const secs = run.leaseExpiresAt ? Math.max(0, Math.ceil((run.leaseExpiresAt - Date.now()) / 1000)) : 0;
    throw new SluiceError(
      "CONFLICT",
      `run ${runId} is being executed by ${run.leaseOwner ?? "another process"}; its lease expires in ${secs}s unless renewed, then it can be resumed`,
      { retryable: false },
    );
  }
  const driver = new RunDriver(run, owner, ttl, opts);
  return driver.drive();
}

class RunDriver {
  private readonly wf: Workflow;
  private readonly states = new Map<string, StepState>();
  private readonly ready: string[] = [];
  private readonly parallelism: number;
  private readonly limiter: Limiter;
  private readonly runAbort = new AbortController();
  private running = 0;
  private stop: StopReason | undefined;
  private failFast = false;
  private heartbeat?: NodeJS.Timeout;
  private deadlineTimer?: NodeJS.Timeout;
  private finished!: () => void;
  private readonly done = new Promise<void>((r) => (this.finished = r));
  private fatal: unknown;
  private readonly writer: TransitionWriter;
  /** The continuous group's steps in chain order (empty when the workflow has none). */
  private group: StepState[] = [];
  /** Stops a running continuous pipeline (with a flush) for any stop, a drain included. */
  private readonly groupStop = new AbortController();

  constructor(
    private readonly run: RunRecord,
    private readonly owner: string,
    private readonly ttl: number,
    private readonly opts: EngineOptions,
  ) {
    this.wf = run.spec;
    this.parallelism = this.wf.spec.parallelism ?? DEFAULT_PARALLELISM;
    this.limiter = opts.limiter ?? defaultLimiter();
    this.writer = writerFor(opts.store);
    // Every running attempt listens on the run's signal; a wide fan-out is not a leak.
    setMaxListeners(0, this.runAbort.signal);
  }

  async drive(): Promise<RunRecord> {
    const { store } = this.opts;
    const id = this.run.id;
    const resumed = this.run.status === "running";
    const now = new Date();
    // Only a run that was running can have attempts left running by a dead owner.
    if (resumed) await store.recoverInterrupted(id, this.owner, now.toISOString());
    const timeoutMs = this.wf.spec.timeout ? parseDuration(this.wf.spec.timeout)! : null;
    const fresh = await store.markRunStarted(id, this.owner, now.toISOString(), timeoutMs ? new Date(now.getTime() + timeoutMs).toISOString() : null);
    // A run that never started has every step pending and no attempts: nothing to read back.
    if (this.run.startedAt === null) this.load([], []);
    else {
      const [steps, attempts] = await Promise.all([store.getSteps(id), store.getAttempts(id)]);
      this.load(steps, attempts);
    }
    this.opts.onEvent?.({ type: "run-started", runId: id, workflow: this.wf.metadata.name, steps: [...this.states.keys()], resumed });

    this.startHeartbeat();
    if (fresh.deadlineAt) this.armDeadline(Date.parse(fresh.deadlineAt));
    if (fresh.cancelRequested) this.requestStop({ kind: "cancel" });
    const onExternal = () => this.requestStop({ kind: "detach", reason: "the process is shutting down" });
    const onDrain = () => this.requestStop({ kind: "drain" });
    if (this.opts.signal?.aborted) onExternal();
    this.opts.signal?.addEventListener("abort", onExternal, { once: true });
    if (this.opts.drain?.aborted) onDrain();
    this.opts.drain?.addEventListener("abort", onDrain, { once: true });

    try {
      this.pump();
      await this.done;
      if (this.fatal) throw this.fatal;
      return await this.finish();
    } finally {
      this.opts.signal?.removeEventListener("abort", onExternal);
      this.opts.drain?.removeEventListener("abort", onDrain);
      clearInterval(this.heartbeat);
      clearTimeout(this.deadlineTimer);
      for (const s of this.states.values()) clearTimeout(s.timer);
    }
  }

  /** Rebuild the in-memory picture from the store. */
  private load(steps: StepRecord[], attempts: AttemptRecord[]): void {
    const byName = new Map(steps.map((s) => [s.name, s]));
    // Failures since the last manual retry count against the retry budget; earlier ones do not.
    const failures = new Map<string, number>();
    for (const a of attempts)
      if ((a.status === "failed" || a.status === "timedOut") && a.n > (byName.get(a.step)?.retryBase ?? 0))
        failures.set(a.step, (failures.get(a.step) ?? 0) + 1);
    this.wf.spec.steps.forEach((def, idx) => {
      const rec = byName.get(def.name);
      this.states.set(def.name, {
        def,
        idx,
        status: rec?.status ?? "pending",
        attempts: rec?.attempts ?? 0,
        failures: failures.get(def.name) ?? 0,
        notBefore: rec?.notBefore ?? null,
        outputs: rec?.outputs ?? null,
        error: rec?.error ?? null,
        waitingOn: 0,
        dependents: [],
        retry: effectiveRetry(this.wf, def),
      });
    });
    for (const s of this.states.values()) {
      for (const dep of s.def.dependsOn ?? []) {
        const d = this.states.get(dep)!;
        d.dependents.push(s.def.name);
        if (!this.satisfies(d)) s.waitingOn++;
      }
      if (isBlocking(s)) this.failFast = true;
    }
    this.group = [...this.states.values()].filter((s) => s.def.continuous);
    for (const s of this.states.values()) if (s.status === "pending" && s.waitingOn === 0) this.ready.push(s.def.name);
  }

  private satisfies(dep: StepState): boolean {
    return dep.status === "succeeded" || (dep.status === "failed" && dep.def.continueOnError === true);
  }

  /** Start every ready step the limits allow; finish when nothing runs and nothing can start. */
  private pump(): void {
    if (!this.stop && !this.failFast) {
      const now = Date.now();
      for (let i = 0; i < this.ready.length && this.running < this.parallelism; ) {
        const s = this.states.get(this.ready[i]!)!;
        if (s.notBefore !== null && s.notBefore > now) {
          if (!s.timer) s.timer = setTimeout(() => ((s.timer = undefined), this.pump()), s.notBefore - now);
          i++;
          continue;
        }
        this.ready.splice(i, 1);
        this.running++;
        void this.attempt(s);
      }
    }
    const waitingRetry = !this.stop && !this.failFast && this.ready.some((n) => this.states.get(n)!.timer);
    if (this.running === 0 && !waitingRetry && (this.ready.length === 0 || this.stop || this.failFast)) this.finished();
  }

  private async attempt(s: StepState): Promise<void> {
    const { store } = this.opts;
    const id = this.run.id;
    const name = s.def.name;
    await this.limiter.acquire();
    try {
      if (this.stop || this.failFast) {
        this.ready.unshift(name);
        return;
      }
      if (s === this.group[0]) return await this.attemptGroup();
      const n = s.attempts + 1;
      const started = Date.now();
      // The attempt runs only once its start is committed (possibly in one batch with the end of
      // the step that released it).
      await this.writer.write({ kind: "begin", runId: id, step: name, n, owner: this.owner, startedAt: new Date(started).toISOString() });
      s.attempts = n;
      s.status = "running";
      this.opts.onEvent?.({ type: "step-started", runId: id, workflow: this.wf.metadata.name, step: name, attempt: n, at: started });

      const result = await runStepAttempt({
        run: this.run,
        step: s.def,
        attempt: n,
        runSignal: this.runAbort.signal,
        actions: this.opts.actions,
        store: this.opts.store,
        home: this.opts.home,
        outputsOf: (step) => this.states.get(step)?.outputs ?? undefined,
        onProgress: this.opts.onEvent ? throttledProgress(this.opts.onEvent, id, name, n, started) : undefined,
        onWarning: this.opts.onEvent ? (message, fields) => this.opts.onEvent!({ type: "step-warning", runId: id, step: name, attempt: n, message, ...(fields ? { fields } : {}) }) : undefined,
        publish: this.opts.publishEvent ?? storePublisher(store),
      });

      if (result.status === "interrupted") {
        // This process is detaching or lost the run: leave the attempt for the next owner to recover.
        s.status = "running";
        return;
      }
      const ended = Date.now();
      let stepStatus: StepStatus = result.status === "succeeded" ? "succeeded" : result.status === "cancelled" ? "cancelled" : "failed";
      let retryInMs: number | null = null;
      if (result.status === "failed" || result.status === "timedOut") {
        s.failures++;
        if (result.retryable && s.failures <= s.retry.limit && this.mayRetry() && !this.failFast) {
          retryInMs = retryDelayMs(s.retry, s.failures);
          stepStatus = "pending";
        }
      }
      // Queued, not awaited: the dependents released below queue their starts behind this end
      // and commit with it. finish() waits for the queue before recording the run's outcome.
      this.writer.write({
        kind: "end", runId: id, step: name, n, owner: this.owner, status: result.status, endedAt: new Date(ended).toISOString(),
        error: result.error, outputs: result.outputs, stepStatus, notBefore: retryInMs === null ? null : ended + retryInMs, usage: result.usage,
      }).catch((err: unknown) => this.writeFailed(err));
      s.status = stepStatus;
      s.error = result.error;
      if (result.outputs) s.outputs = result.outputs;
      this.opts.onEvent?.({
        type: "step-ended", runId: id, workflow: this.wf.metadata.name, step: name, attempt: n, status: result.status,
        error: result.error, retryInMs, durationMs: ended - started, outputs: result.outputs, usage: result.usage ?? null,
      });
      if (retryInMs !== null) {
        s.notBefore = ended + retryInMs;
        this.ready.push(name);
      } else this.settled(s);
    } catch (err) {
      this.writeFailed(err);
    } finally {
      this.limiter.release();
      this.running--;
      this.pump();
    }
  }

  /**
   * One attempt of the continuous group: all its steps start together, run as one pipeline until
   * the run stops, and end together (one batch of transitions, so the store never shows part of
   * the group ended). The group follows its first step's retry policy.
   */
  private async attemptGroup(): Promise<void> {
    const id = this.run.id;
    const wfName = this.wf.metadata.name;
    const members = this.group;
    const head = members[0]!;
    const started = Date.now();
    const numbers = members.map((m) => m.attempts + 1);
    await Promise.all(members.map((m, k) =>
      this.writer.write({ kind: "begin", runId: id, step: m.def.name, n: numbers[k]!, owner: this.owner, startedAt: new Date(started).toISOString() }),
    ));
    members.forEach((m, k) => {
      m.attempts = numbers[k]!;
      m.status = "running";
      this.opts.onEvent?.({ type: "step-started", runId: id, workflow: wfName, step: m.def.name, attempt: m.attempts, at: started });
    });

    let lastSaved = 0;
    const { result, stats } = await runContinuousGroup({
      run: this.run,
      members: members.map((m) => ({ step: m.def, attempt: m.attempts })),
      runSignal: this.runAbort.signal,
      stopSignal: this.groupStop.signal,
      actions: this.opts.actions,
      store: this.opts.store,
      home: this.opts.home,
      outputsOf: (step) => this.states.get(step)?.outputs ?? undefined,
      publish: this.opts.publishEvent ?? storePublisher(this.opts.store),
      onStats: (stats) => {
        this.opts.onEvent?.({ type: "stream-stats", runId: id, workflow: wfName, steps: members.map((m) => m.def.name), stats });
        // Live figures for `sluice status` and the API, every few seconds.
        if (Date.now() - lastSaved >= 5_000) {
          lastSaved = Date.now();
          void this.opts.store.recordStepOutputs(id, head.def.name, { ...stats }).catch(() => undefined);
        }
      },
      onLatency: this.opts.onStreamLatency ? (stage, ms) => this.opts.onStreamLatency!(wfName, stage, ms) : undefined,
    });
    if (result.status === "interrupted") return; // Left for the next owner, as an ordinary attempt.

    const ended = Date.now();
    let stepStatus: StepStatus = result.status === "succeeded" ? "succeeded" : result.status === "cancelled" ? "cancelled" : "failed";
    let retryInMs: number | null = null;
    if (result.status === "failed" || result.status === "timedOut") {
      head.failures++;
      if (result.retryable && head.failures <= head.retry.limit && this.mayRetry() && !this.failFast) {
        retryInMs = retryDelayMs(head.retry, head.failures);
        stepStatus = "pending";
      }
    }
    // A stopped pipeline's steps keep its final figures as their outputs, whatever the outcome.
    const outputs = result.outputs ?? (stats ? outputsOf(stats) : null);
    for (const m of members) {
      this.writer.write({
        kind: "end", runId: id, step: m.def.name, n: m.attempts, owner: this.owner, status: result.status,
        endedAt: new Date(ended).toISOString(), error: result.error, outputs, stepStatus,
        notBefore: retryInMs === null ? null : ended + retryInMs, usage: result.usage,
      }).catch((err: unknown) => this.writeFailed(err));
      m.status = stepStatus;
      m.error = result.error;
      if (outputs) m.outputs = outputs;
      this.opts.onEvent?.({
        type: "step-ended", runId: id, workflow: wfName, step: m.def.name, attempt: m.attempts, status: result.status,
        error: result.error, retryInMs, durationMs: ended - started, outputs, usage: result.usage ?? null,
      });
    }
    if (retryInMs !== null) {
      head.notBefore = ended + retryInMs;
      this.ready.push(head.def.name);
    } else if (stepStatus === "succeeded") this.settled(members.at(-1)!);
    else this.settled(head);
  }

  /** A transition could not be recorded: another owner took the run, or the store failed. */
  private writeFailed(err: unknown): void {
    if (err instanceof SluiceError && err.code === "LEASE_LOST") this.requestStop({ kind: "leaseLost" });
    else {
      this.fatal ??= err;
      this.requestStop({ kind: "detach", reason: "an internal error" });
    }
  }

  /** A failed step may be tried again unless the run is stopping (a drain only hands it on). */
  private mayRetry(): boolean {
    return !this.stop || this.stop.kind === "drain";
  }

  /** A step reached a final status: release its dependents or stop starting new steps. */
  private settled(s: StepState): void {
    if (isBlocking(s)) {
      this.failFast = true;
      return;
    }
    for (const depName of s.dependents) {
      const d = this.states.get(depName)!;
      if (--d.waitingOn === 0 && d.status === "pending") this.ready.push(depName);
    }
  }

  private requestStop(reason: StopReason): void {
    // A drain lets running attempts finish; anything more urgent that comes after it still stops them.
    if (this.stop && !(this.stop.kind === "drain" && reason.kind !== "drain")) return;
    this.stop = reason;
    if (reason.kind !== "drain") this.runAbort.abort(stopError(reason));
    // A continuous pipeline never ends by itself: every stop, a drain too, flushes and ends it.
    this.groupStop.abort(stopError(reason));
    this.pump();
  }

  private startHeartbeat(): void {
    const every = Math.max(50, Math.min(this.ttl / 3, 1_000));
    this.heartbeat = setInterval(() => {
      this.opts.store.renewLease(this.run.id, this.owner, this.ttl, Date.now()).then(
        (lease) => {
          if (!lease.held) this.requestStop({ kind: "leaseLost" });
          else if (lease.cancelRequested) this.requestStop({ kind: "cancel" });
        },
        () => undefined, // A transient store error: the next beat tries again; the lease has slack.
      );
    }, every);
    this.heartbeat.unref();
  }

  private armDeadline(at: number): void {
    const fire = () => this.requestStop({ kind: "runTimeout" });
    const ms = at - Date.now();
    if (ms <= 0) fire();
    // setTimeout cannot wait longer than ~24.8 days; re-arm in steps for very long deadlines.
    else this.deadlineTimer = setTimeout(() => (Date.now() >= at ? fire() : this.armDeadline(at)), Math.min(ms, 2 ** 31 - 1));
  }

  /** Record the final state of steps that never ran and of the run itself. */
  private async finish(): Promise<RunRecord> {
    const { store } = this.opts;
    await this.writer.idle();
    if (this.fatal) throw this.fatal; // A queued transition failed after the last step ended.
    const id = this.run.id;
    const endedAt = new Date().toISOString();
    const stop = this.stop;

    if (stop?.kind === "leaseLost" || stop?.kind === "detach" || stop?.kind === "drain") {
      if (stop.kind !== "leaseLost") await store.releaseLease(id, this.owner);
      const reason = stop.kind === "detach" ? stop.reason : stop.kind === "drain" ? "the worker is shutting down" : "another process took over the run";
      this.opts.onEvent?.({ type: "run-detached", runId: id, reason });
      return (await store.getRun(id))!;
    }

    const open = [...this.states.values()].filter((s) => s.status === "pending" || s.status === "running").map((s) => s.def.name);
    let status: RunRecord["status"];
    let error: ErrorInfo | null = null;
    if (stop?.kind === "cancel") {
      status = "cancelled";
      error = { code: "CANCELLED", message: "the run was cancelled" };
      await this.settle(open, "cancelled", error);
    } else {
      await this.settle(open, "skipped", null);
      const failed = [...this.states.values()].filter(isBlocking).sort((a, b) => a.idx - b.idx);
      if (stop?.kind === "runTimeout") {
        status = "failed";
        error = { code: "RUN_TIMEOUT", message: `the run exceeded its timeout of ${this.wf.spec.timeout}` };
      } else if (failed.length > 0) {
        status = "failed";
        const first = failed[0]!;
        error = { code: first.error?.code ?? "STEP_FAILED", message: `step ${first.def.name} ${first.status}: ${first.error?.message ?? "no reason recorded"}` };
      } else status = "succeeded";
    }
    const final = (await store.finishRun(id, this.owner, status, endedAt, error)) ?? (await store.getRun(id))!;
    this.opts.onEvent?.({
      type: "run-ended", runId: id, workflow: this.wf.metadata.name, status, error, trigger: final.trigger,
      startedAt: final.startedAt, endedAt,
    });
    return final;
  }

  private async settle(names: string[], status: StepStatus, error: ErrorInfo | null): Promise<void> {
    if (names.length === 0) return;
    await this.opts.store.settleSteps(this.run.id, names, status, new Date().toISOString(), error);
    for (const n of names) this.states.get(n)!.status = status;
    this.opts.onEvent?.({ type: "steps-settled", runId: this.run.id, steps: names, status });
  }
}

/** Progress events at most every 200 ms per attempt: actions may report on every batch. */
function throttledProgress(sink: EventSink, runId: string, step: string, attempt: number, started: number) {
  let last = 0;
  return (progress: ProgressUpdate) => {
    const now = Date.now();
    if (now - last < 200) return;
    last = now;
    sink({ type: "step-progress", runId, step, attempt, elapsedMs: now - started, progress });
  };
}

/** A final step state that stops the run from going on (a failure without continueOnError). */
function isBlocking(s: StepState): boolean {
  return (s.status === "failed" && s.def.continueOnError !== true) || s.status === "cancelled";
}

function stopError(reason: StopReason): SluiceError {
  switch (reason.kind) {
    case "cancel":
      return new SluiceError("CANCELLED", "the run was cancelled");
    case "runTimeout":
      return new SluiceError("RUN_TIMEOUT", "the run exceeded its timeout");
    case "leaseLost":
      return new SluiceError("LEASE_LOST", "another process took over the run");
    case "detach":
      return new SluiceError("INTERRUPTED", `stopped because ${reason.reason}; the run can be resumed`);
    case "drain":
      return new SluiceError("INTERRUPTED", "the worker is shutting down; the run goes on elsewhere");
  }
}

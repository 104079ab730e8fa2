/**
 * Drive one run to its end: a DAG scheduler over durable step attempts.
 *
 * The store is the source of truth. Each attempt is written before it starts and when it ends;
 * in memory we keep only what the store already says (and counters derived from it), so a
 * resumed run rebuilds the same picture from the store and goes on. A lease, renewed by a
 * heartbeat, marks the process that owns the run: a process that dies stops renewing it, and
 * `resume` may take over once it has expired (at once when the owner was a process on this host
 * that is gone: takeover.ts).
 *
 * Beyond single steps: trigger rules and conditions decide whether a released step runs
 * (rules.ts), a `forEach` step expands into item steps released under its own parallelism
 * (fanout.ts), `workflow:` steps run child runs (subworkflow.ts), and `spec.finally` steps run
 * once every main step has ended, whatever the outcome.
 */
import { setMaxListeners } from "node:events";
import { SluiceError } from "../errors.js";
import { parseDuration } from "../spec/duration.js";
import type { Step, Workflow } from "../spec/schema.js";
import type { ActionRegistry } from "../actions/registry.js";
import type { ProgressUpdate, PublishEvent } from "../actions/types.js";
import type { AttemptRecord, EngineStore, ErrorInfo, RunRecord, StepRecord, StepStatus } from "../store/types.js";
import { effectiveRetry, retryDecision, type EffectiveRetry } from "./backoff.js";
import { decide } from "./rules.js";
import { conditionPerItem, failureTolerance, fanOutOutputs, forEachItems, itemName, itemStep } from "./fanout.js";
import { evaluate, evaluateCondition, type ExpressionScope } from "../spec/expressions.js";
import { toErrorInfo } from "../errors.js";
import type { EventSink } from "./events.js";
import { newOwnerId } from "./ids.js";
import { takeOverFromDeadOwner } from "./takeover.js";
import { stopOrphanedPrograms } from "./orphans.js";
import { createLimiter, type Limiter } from "./limiter.js";
import { expressionScope, runStepAttempt } from "./attempt.js";
import { writerFor, type TransitionWriter } from "./writer.js";
import { outputsOf, runContinuousGroup } from "./continuous.js";
import { STREAM_SAMPLES, streamSample, type StreamSample } from "./pipeline.js";
import { closeRunAudit } from "./audit.js";

export interface EngineOptions {
  store: EngineStore;
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
function storePublisher(store: EngineStore): PublishEvent {
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
  /** Dependencies that have not ended yet. */
  waitingOn: number;
  dependents: string[];
  retry: EffectiveRetry;
  timer?: NodeJS.Timeout;
  /** A `spec.finally` step: released only once every main step has ended. */
  final: boolean;
  /** Skipped because something upstream failed (it then counts as failed for its dependents). */
  upstreamFailed: boolean;
  /** An item of a fan-out: its parent and its item. */
  parent?: FanOut;
  item?: { value: unknown; index: number };
  /** A fan-out parent, once expanded. */
  fan?: FanOut;
}

/** A fan-out parent's bookkeeping: its items, how many are in flight, how many failed. */
interface FanOut {
  state: StepState;
  items: StepState[];
  /** Next item not yet released into the ready queue. */
  cursor: number;
  /** Items released and not yet ended (running, or waiting for a retry). */
  inFlight: number;
  limit: number;
  ended: number;
  failed: number;
  tolerance: number;
  /** Too many items failed, or the run stops: no more items start. */
  halted: string | null;
}

/** Why the run stops early, in order of precedence when several happen. */
type StopReason = { kind: "cancel" } | { kind: "runTimeout" } | { kind: "leaseLost" } | { kind: "detach"; reason: string } | { kind: "drain" };

/** How deep workflows may call workflows before a run refuses to start another child. */
const MAX_WORKFLOW_DEPTH = 8;

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
    // A live lease. When its holder is a process of this host that has died (kill -9), the lease
    // is only waiting to run out: take the run over now, a compare-and-set on that very owner so
    // that two resumers cannot both win (takeover.ts). Any other holder: refuse, saying until when.
    const t = await takeOverFromDeadOwner(store, runId, owner, ttl);
    if (!t.taken) throw t.error;
    opts.onEvent?.({ type: "run-taken-over", runId, previousOwner: t.previousOwner, pid: t.pid });
    return new RunDriver(t.run, owner, ttl, opts).drive();
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
  /** Aborted when the run stops; finally steps get a controller of their own. */
  private runAbort = new AbortController();
  private running = 0;
  /** Decisions (skips, fan-out expansions) being recorded: the phase is not over until they are. */
  private deciding = 0;
  private stop: StopReason | undefined;
  /** The first failure that stops the run: no new step starts except anyFailed/always ones. */
  private failFast: { by: string } | undefined;
  private phase: "main" | "finally" = "main";
  /** The main steps' outcome, once they have all ended (`${{ run.status }}` in finally steps). */
  private outcome: { status: RunRecord["status"]; error: ErrorInfo | null } | undefined;
  private heartbeat?: NodeJS.Timeout;
  private deadlineTimer?: NodeJS.Timeout;
  private finished!: () => void;
  private done = new Promise<void>((r) => (this.finished = r));
  private fatal: unknown;
  /** Some step of this run wrote an audit entry: the run ends with a signed checkpoint. */
  private audited = false;
  private readonly writer: TransitionWriter;
  /** Step records read back on resume, for fan-out items created again from the store. */
  private stored = new Map<string, StepRecord>();
  private storedFailures = new Map<string, number>();
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
    // Only a run that was running can have attempts left running by a dead owner; their exec
    // programs may still run on this host (own process groups survive a kill -9): stop them
    // before the interrupted steps run again (orphans.ts).
    if (resumed) {
      const stopped = await stopOrphanedPrograms(id);
      if (stopped)
        this.opts.onEvent?.({
          type: "step-warning",
          runId: id,
          step: "(resume)",
          attempt: 0,
          message: `stopped ${stopped} program${stopped === 1 ? "" : "s"} the previous owner left running`,
        });
      await store.recoverInterrupted(id, this.owner, now.toISOString());
    }
    const timeoutMs = this.wf.spec.timeout ? parseDuration(this.wf.spec.timeout)! : null;
    const fresh = await store.markRunStarted(id, this.owner, now.toISOString(), timeoutMs ? new Date(now.getTime() + timeoutMs).toISOString() : null);
    // A run that never started has every step pending and no attempts: nothing to read back.
    if (this.run.startedAt === null) this.load([], []);
    else {
      const [steps, attempts] = await Promise.all([store.getSteps(id), store.getAttempts(id)]);
      this.load(steps, attempts);
    }
    this.opts.onEvent?.({ type: "run-started", runId: id, workflow: this.wf.metadata.name, steps: this.wf.spec.steps.map((s) => s.name), resumed });

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
      this.releaseInitial();
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
    this.stored = byName;
    // Failures since the last manual retry count against the retry budget; earlier ones do not.
    const failures = new Map<string, number>();
    for (const a of attempts)
      if ((a.status === "failed" || a.status === "timedOut") && a.n > (byName.get(a.step)?.retryBase ?? 0))
        failures.set(a.step, (failures.get(a.step) ?? 0) + 1);
    this.storedFailures = failures;
    const add = (def: Step, idx: number, final: boolean) => {
      const rec = byName.get(def.name);
      this.states.set(def.name, this.newState(def, idx, final, rec, failures.get(def.name) ?? 0));
    };
    this.wf.spec.steps.forEach((def, idx) => add(def, idx, false));
    (this.wf.spec.finally ?? []).forEach((def, i) => add(def, this.wf.spec.steps.length + i, true));
    for (const s of this.states.values()) {
      for (const dep of s.def.dependsOn ?? []) {
        const d = this.states.get(dep)!;
        d.dependents.push(s.def.name);
        if (!isEnded(d.status)) s.waitingOn++;
      }
      if (isBlocking(s) && !s.final) this.failFast ??= { by: s.def.name };
    }
    this.group = [...this.states.values()].filter((s) => s.def.continuous);
  }

  private newState(def: Step, idx: number, final: boolean, rec: StepRecord | undefined, failures: number): StepState {
    return {
      def,
      idx,
      status: rec?.status ?? "pending",
      attempts: rec?.attempts ?? 0,
      failures,
      notBefore: rec?.notBefore ?? null,
      outputs: rec?.outputs ?? null,
      error: rec?.error ?? null,
      waitingOn: 0,
      dependents: [],
      retry: effectiveRetry(this.wf, def),
      final,
      // A skip recorded because of a failure upstream says so in its reason (see rules.ts).
      upstreamFailed: rec?.status === "skipped" && rec.error?.code === "UPSTREAM_FAILED",
    };
  }

  /** Steps of the current phase whose dependencies have all ended: decide each. */
  private releaseInitial(): void {
    for (const s of this.states.values())
      if (s.final === (this.phase === "finally") && s.status === "pending" && s.waitingOn === 0 && !s.parent) this.release(s);
    // A fan-out parent left running by a dead owner was set back to pending and is decided again above.
  }

  /**
   * A step whose dependencies have all ended: run it, or record it skipped with the reason.
   * Skips and fan-out expansions are recorded after everything queued before them (a skip never
   * lands before the end of the step that caused it), so they run as counted async work.
   */
  private release(s: StepState): void {
    // A stopping run starts nothing new; finish() records what never started.
    if (this.stop) return;
    const deps = (s.def.dependsOn ?? []).map((n) => this.states.get(n)!);
    const outcome = decide(
      s.def.runIf ?? "allSucceeded",
      deps.map((d) => ({ name: d.def.name, status: d.status, continueOnError: d.def.continueOnError === true, upstreamFailed: d.upstreamFailed })),
      s.final || this.phase === "finally" ? undefined : this.failFast,
    );
    if (!outcome.run) return this.track(this.skip(s, outcome.reason, outcome.upstreamFailed));
    if (s.def.when !== undefined && !conditionPerItem(s.def)) {
      let holds: boolean;
      try {
        holds = evaluateCondition(s.def.when, this.scopeFor(s));
      } catch (err) {
        return this.track(this.failWithoutAttempt(s, toErrorInfo(err)));
      }
      if (!holds) return this.track(this.skip(s, `condition ${s.def.when} is false`, false));
    }
    if (s.def.forEach !== undefined) return this.track(this.expand(s));
    this.ready.push(s.def.name);
  }

  /** Count async decision work so the phase does not end under it; errors stop the run. */
  private track(work: Promise<void>): void {
    this.deciding++;
    work
      .catch((err: unknown) => this.writeFailed(err))
      .finally(() => {
        this.deciding--;
        this.pump();
      });
  }

  /** What `${{ steps.NAME.outputs }}` reads: the outputs the step has recorded so far. */
  private readonly outputsOfStep = (step: string): Record<string, unknown> | undefined => this.states.get(step)?.outputs ?? undefined;

  private scopeFor(s: StepState): ExpressionScope {
    return expressionScope({
      run: this.run,
      outputsOf: this.outputsOfStep,
      item: s.item,
      runStatus: s.final ? this.outcome?.status : undefined,
    });
  }

  private async skip(s: StepState, reason: string, upstreamFailed: boolean): Promise<void> {
    s.status = "skipped";
    s.upstreamFailed = upstreamFailed;
    const error: ErrorInfo = { code: upstreamFailed ? "UPSTREAM_FAILED" : "SKIPPED", message: reason };
    s.error = error;
    await this.writer.idle();
    await this.opts.store.completeStep(this.run.id, this.owner, s.def.name, "skipped", new Date().toISOString(), null, error);
    this.opts.onEvent?.({ type: "steps-settled", runId: this.run.id, steps: [s.def.name], status: "skipped", reason });
    this.settled(s);
  }

  /** A step that fails before any attempt (its condition or its item list cannot be evaluated). */
  private async failWithoutAttempt(s: StepState, error: ErrorInfo): Promise<void> {
    s.status = "failed";
    s.error = error;
    await this.writer.idle();
    await this.opts.store.completeStep(this.run.id, this.owner, s.def.name, "failed", new Date().toISOString(), null, error);
    this.opts.onEvent?.({ type: "steps-settled", runId: this.run.id, steps: [s.def.name], status: "failed", reason: error.message });
    this.settled(s);
  }

  /** Expand a fan-out: create its items (or find them again on resume) and start releasing them. */
  private async expand(s: StepState): Promise<void> {
    let values: unknown[];
    try {
      values = forEachItems(s.def, this.scopeFor(s));
    } catch (err) {
      return this.failWithoutAttempt(s, toErrorInfo(err));
    }
    const names = values.map((_v, i) => itemName(s.def.name, i));
    await this.writer.idle();
    const startedAt = new Date().toISOString();
    await this.opts.store.expandStep(
      this.run.id,
      this.owner,
      s.def.name,
      startedAt,
      names.map((name) => ({ name, idx: s.idx })),
    );
    s.status = "running";
    const fan: FanOut = {
      state: s,
      items: [],
      cursor: 0,
      inFlight: 0,
      limit: s.def.parallelism ?? this.parallelism,
      ended: 0,
      failed: 0,
      tolerance: failureTolerance(s.def, values.length),
      halted: null,
    };
    s.fan = fan;
    values.forEach((value, index) => {
      const def = itemStep(s.def, index);
      const item = this.newState(def, s.idx, s.final, this.stored.get(def.name), this.storedFailures.get(def.name) ?? 0);
      item.parent = fan;
      item.item = { value, index };
      this.states.set(def.name, item);
      fan.items.push(item);
      if (isEnded(item.status)) {
        fan.ended++;
        if (item.status === "failed") fan.failed++;
      }
    });
    if (fan.failed > fan.tolerance) fan.halted = `${fan.failed} of ${values.length} items failed`;
    this.opts.onEvent?.({
      type: "step-started",
      runId: this.run.id,
      workflow: this.wf.metadata.name,
      step: s.def.name,
      attempt: 0,
      at: Date.now(),
      items: values.length,
    });
    this.releaseItems(fan);
    if (fan.inFlight === 0 && (fan.ended === fan.items.length || fan.halted)) await this.completeFanOut(fan);
  }

  /** Move items into the ready queue while the fan-out's parallelism allows. */
  private releaseItems(fan: FanOut): void {
    while (!fan.halted && !this.stop && fan.inFlight < fan.limit && fan.cursor < fan.items.length) {
      const item = fan.items[fan.cursor++]!;
      if (isEnded(item.status)) continue;
      if (this.failFast && !fan.state.final && (fan.state.def.runIf ?? "allSucceeded") === "allSucceeded") {
        fan.halted = `stopped: step ${this.failFast.by} failed`;
        break;
      }
      fan.inFlight++;
      if (conditionPerItem(fan.state.def)) {
        let holds: boolean;
        try {
          holds = evaluateCondition(fan.state.def.when!, this.scopeFor(item));
        } catch (err) {
          this.track(this.failWithoutAttempt(item, toErrorInfo(err)));
          continue;
        }
        if (!holds) {
          this.track(this.skip(item, `condition ${fan.state.def.when} is false for item ${item.item!.index}`, false));
          continue;
        }
      }
      this.ready.push(item.def.name);
    }
  }

  /** An item ended: count it, release the next, and end the fan-out when nothing is left. */
  private itemEnded(item: StepState): void {
    const fan = item.parent!;
    fan.inFlight--;
    fan.ended++;
    if (item.status === "failed") {
      fan.failed++;
      if (fan.failed > fan.tolerance && !fan.halted) {
        const limit = fan.state.def.failureThreshold;
        fan.halted = `${fan.failed} of ${fan.items.length} items failed (${limit === undefined ? "no item may fail without continueOnError" : `more than failureThreshold ${limit}`}); first: ${firstFailure(fan)}`;
      }
    }
    this.releaseItems(fan);
    if (fan.inFlight === 0 && (fan.ended === fan.items.length || fan.halted || this.stop)) this.track(this.completeFanOut(fan));
  }

  /** Record a fan-out's end: items never started are skipped; outputs list every item's. */
  private async completeFanOut(fan: FanOut): Promise<void> {
    const s = fan.state;
    if (isEnded(s.status)) return;
    if (this.stop && !fan.halted && fan.ended < fan.items.length) return; // Left for the run's own end (cancel) or the next owner.
    const endedAt = new Date().toISOString();
    const unstarted = fan.items.filter((i) => !isEnded(i.status));
    await this.writer.idle();
    if (unstarted.length) {
      const why: ErrorInfo = { code: "UPSTREAM_FAILED", message: `not started: ${fan.halted ?? "the fan-out stopped"}` };
      await this.opts.store.settleSteps(
        this.run.id,
        unstarted.map((i) => i.def.name),
        "skipped",
        endedAt,
        why,
      );
      for (const i of unstarted) ((i.status = "skipped"), (i.error = why), (i.upstreamFailed = true));
    }
    const outputs = fanOutOutputs(fan.items);
    const tooMany = fan.failed > fan.tolerance;
    let status: StepStatus = "succeeded";
    let error: ErrorInfo | null = null;
    if (tooMany) {
      status = "failed";
      error = { code: "ITEMS_FAILED", message: fan.halted ?? `${fan.failed} of ${fan.items.length} items failed` };
    } else if (unstarted.length) {
      // Stopped by a failure elsewhere in the run before every item ran.
      status = "skipped";
      error = { code: "UPSTREAM_FAILED", message: `${fan.halted ?? "stopped"} after ${fan.ended} of ${fan.items.length} items` };
      s.upstreamFailed = true;
    }
    await this.opts.store.completeStep(this.run.id, this.owner, s.def.name, status, endedAt, outputs, error);
    s.status = status;
    s.error = error;
    s.outputs = outputs;
    this.opts.onEvent?.({ type: "steps-settled", runId: this.run.id, steps: [s.def.name], status, ...(error ? { reason: error.message } : {}) });
    this.settled(s);
  }

  /** Start every ready step the limits allow; end the phase when nothing runs and nothing can start. */
  private pump(): void {
    if (!this.stop) {
      const now = Date.now();
      for (let i = 0; i < this.ready.length && this.running < this.parallelism;) {
        const s = this.states.get(this.ready[i]!)!;
        // After a failure that stops the run, a step released before it but not started yet is skipped.
        if (this.failFast && this.phase === "main" && !s.final && !s.parent && (s.def.runIf ?? "allSucceeded") === "allSucceeded") {
          this.ready.splice(i, 1);
          this.track(this.skip(s, `not started: step ${this.failFast.by} failed and the run stops`, true));
          continue;
        }
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
    const waitingRetry = !this.stop && this.ready.some((n) => this.states.get(n)!.timer);
    if (this.running === 0 && this.deciding === 0 && !waitingRetry && (this.ready.length === 0 || this.stop)) this.finished();
  }

  private async attempt(s: StepState): Promise<void> {
    const { store } = this.opts;
    const id = this.run.id;
    const name = s.def.name;
    await this.limiter.acquire();
    try {
      if (this.stop) {
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
        outputsOf: this.outputsOfStep,
        onProgress: this.opts.onEvent ? throttledProgress(this.opts.onEvent, id, name, n, started) : undefined,
        onWarning: this.opts.onEvent
          ? (message, fields) => this.opts.onEvent!({ type: "step-warning", runId: id, step: name, attempt: n, message, ...(fields ? { fields } : {}) })
          : undefined,
        publish: this.opts.publishEvent ?? storePublisher(store),
        onAudit: () => (this.audited = true),
        item: s.item,
        runStatus: s.final ? this.outcome?.status : undefined,
        runChild: s.def.workflow !== undefined ? (signal, scope) => this.runChild(s, signal, scope) : undefined,
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
        const d = retryDecision(s.retry, s.failures, { retryable: result.retryable, stopping: !this.mayRetry() || this.stopsRetries(s) });
        if (d.retry) {
          retryInMs = d.delayMs;
          stepStatus = "pending";
        }
      }
      // Queued, not awaited: the dependents released below queue their starts behind this end
      // and commit with it. finish() waits for the queue before recording the run's outcome.
      this.writer
        .write({
          kind: "end",
          runId: id,
          step: name,
          n,
          owner: this.owner,
          status: result.status,
          endedAt: new Date(ended).toISOString(),
          error: result.error,
          outputs: result.outputs,
          stepStatus,
          notBefore: retryInMs === null ? null : ended + retryInMs,
          usage: result.usage,
        })
        .catch((err: unknown) => this.writeFailed(err));
      s.status = stepStatus;
      s.error = result.error;
      if (result.outputs) s.outputs = result.outputs;
      this.opts.onEvent?.({
        type: "step-ended",
        runId: id,
        workflow: this.wf.metadata.name,
        step: name,
        attempt: n,
        status: result.status,
        error: result.error,
        retryInMs,
        durationMs: ended - started,
        outputs: result.outputs,
        usage: result.usage ?? null,
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

  /** A failure elsewhere that stops the run also stops retries of ordinary main steps. */
  private stopsRetries(s: StepState): boolean {
    return this.failFast !== undefined && this.phase === "main" && !s.final && (s.def.runIf ?? "allSucceeded") === "allSucceeded" && !s.parent;
  }

  /**
   * A `workflow:` step: start the child run (or find it again: its id is derived from this run,
   * the step and the failures so far, so a resumed parent never starts a second one for the same
   * attempt), execute it here, and take its outputs.
   */
  private async runChild(s: StepState, signal: AbortSignal, scope: ExpressionScope): Promise<Record<string, unknown>> {
    const { startChildRun } = await import("./subworkflow.js");
    return startChildRun({
      parent: this.run,
      step: s.def,
      generation: s.failures + 1,
      params: (evaluate(s.def.with ?? {}, scope) ?? {}) as Record<string, unknown>,
      signal,
      maxDepth: MAX_WORKFLOW_DEPTH,
      store: this.opts.store,
      execute: (childId) => executeRun(childId, { ...this.opts, owner: undefined, claimed: undefined, signal: this.opts.signal, drain: this.opts.drain }),
    });
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
    await Promise.all(
      members.map((m, k) =>
        this.writer.write({ kind: "begin", runId: id, step: m.def.name, n: numbers[k]!, owner: this.owner, startedAt: new Date(started).toISOString() }),
      ),
    );
    members.forEach((m, k) => {
      m.attempts = numbers[k]!;
      m.status = "running";
      this.opts.onEvent?.({ type: "step-started", runId: id, workflow: wfName, step: m.def.name, attempt: m.attempts, at: started });
    });

    let lastSaved = 0;
    // The last minutes of figures, saved with them: the UI's Streams view draws its chart from these.
    const recent: StreamSample[] = [];
    const { result, stats } = await runContinuousGroup({
      run: this.run,
      members: members.map((m) => ({ step: m.def, attempt: m.attempts })),
      runSignal: this.runAbort.signal,
      stopSignal: this.groupStop.signal,
      actions: this.opts.actions,
      store: this.opts.store,
      home: this.opts.home,
      outputsOf: this.outputsOfStep,
      publish: this.opts.publishEvent ?? storePublisher(this.opts.store),
      onStats: (stats) => {
        this.opts.onEvent?.({ type: "stream-stats", runId: id, workflow: wfName, steps: members.map((m) => m.def.name), stats });
        // Live figures for `sluice status` and the API, every few seconds.
        if (Date.now() - lastSaved >= 5_000) {
          lastSaved = Date.now();
          recent.push(streamSample(stats, lastSaved));
          if (recent.length > STREAM_SAMPLES) recent.shift();
          void this.opts.store.recordStepOutputs(id, head.def.name, { ...stats, recent: [...recent] }).catch(() => undefined);
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
      const d = retryDecision(head.retry, head.failures, { retryable: result.retryable, stopping: !this.mayRetry() || this.failFast !== undefined });
      if (d.retry) {
        retryInMs = d.delayMs;
        stepStatus = "pending";
      }
    }
    // A stopped pipeline's steps keep its final figures as their outputs, whatever the outcome.
    const final = result.outputs ?? (stats ? outputsOf(stats) : null);
    // With the recent samples and the final one: the Streams view still draws the last minutes afterwards.
    const outputs = final && stats ? { ...final, recent: [...recent, streamSample(stats, ended)].slice(-STREAM_SAMPLES) } : final;
    for (const m of members) {
      this.writer
        .write({
          kind: "end",
          runId: id,
          step: m.def.name,
          n: m.attempts,
          owner: this.owner,
          status: result.status,
          endedAt: new Date(ended).toISOString(),
          error: result.error,
          outputs,
          stepStatus,
          notBefore: retryInMs === null ? null : ended + retryInMs,
          usage: result.usage,
        })
        .catch((err: unknown) => this.writeFailed(err));
      m.status = stepStatus;
      m.error = result.error;
      if (outputs) m.outputs = outputs;
      this.opts.onEvent?.({
        type: "step-ended",
        runId: id,
        workflow: wfName,
        step: m.def.name,
        attempt: m.attempts,
        status: result.status,
        error: result.error,
        retryInMs,
        durationMs: ended - started,
        outputs,
        usage: result.usage ?? null,
      });
    }
    if (retryInMs !== null) {
      head.notBefore = ended + retryInMs;
      this.ready.push(head.def.name);
    } else for (const m of members) this.settled(m); // Inner members' dependents are members, ended with them.
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

  /** A step reached a final status: count it for its fan-out, or release its dependents. */
  private settled(s: StepState): void {
    if (s.parent) return this.itemEnded(s);
    if (isBlocking(s) && !s.final && this.phase === "main") this.failFast ??= { by: s.def.name };
    for (const depName of s.dependents) {
      const d = this.states.get(depName)!;
      if (--d.waitingOn === 0 && d.status === "pending") this.release(d);
    }
  }

  private requestStop(reason: StopReason): void {
    // Finally steps run after a cancel or a run timeout: only losing the process stops them.
    if (this.phase === "finally" && (reason.kind === "cancel" || reason.kind === "runTimeout")) return;
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

  private detaching(): boolean {
    const k = this.stop?.kind;
    return k === "leaseLost" || k === "detach" || k === "drain";
  }

  private async detach(): Promise<RunRecord> {
    const { store } = this.opts;
    const stop = this.stop!;
    const id = this.run.id;
    if (stop.kind !== "leaseLost") await store.releaseLease(id, this.owner);
    const reason = stop.kind === "detach" ? stop.reason : stop.kind === "drain" ? "the worker is shutting down" : "another process took over the run";
    this.opts.onEvent?.({ type: "run-detached", runId: id, reason });
    return (await store.getRun(id))!;
  }

  /** Record the final state of steps that never ran, run the finally steps, then record the run's end. */
  private async finish(): Promise<RunRecord> {
    const { store } = this.opts;
    await this.writer.idle();
    if (this.fatal) throw this.fatal; // A queued transition failed after the last step ended.
    const id = this.run.id;
    if (this.detaching()) return this.detach();

    const stop = this.stop;
    const open = [...this.states.values()].filter((s) => !s.final && (s.status === "pending" || s.status === "running")).map((s) => s.def.name);
    let status: RunRecord["status"];
    let error: ErrorInfo | null = null;
    if (stop?.kind === "cancel") {
      status = "cancelled";
      error = { code: "CANCELLED", message: "the run was cancelled" };
      await this.settle(open, "cancelled", error);
    } else {
      const failed = [...this.states.values()].filter((s) => !s.final && !s.parent && isBlocking(s)).sort((a, b) => a.idx - b.idx);
      if (stop?.kind === "runTimeout") {
        status = "failed";
        error = { code: "RUN_TIMEOUT", message: `the run exceeded its timeout of ${this.wf.spec.timeout}` };
      } else if (failed.length > 0) {
        status = "failed";
        const first = failed[0]!;
        error = {
          code: first.error?.code ?? "STEP_FAILED",
          message: `step ${first.def.name} ${first.status}: ${first.error?.message ?? "no reason recorded"}`,
        };
      } else status = "succeeded";
      await this.settle(open, "skipped", stop?.kind === "runTimeout" ? { code: "RUN_TIMEOUT", message: "not started: the run timed out" } : null);
    }
    this.outcome = { status, error };

    // Finally steps: whatever the outcome, with their own signal (the run's was aborted by a cancel or timeout).
    if ((this.wf.spec.finally ?? []).length > 0) {
      this.phase = "finally";
      this.stop = undefined;
      this.runAbort = new AbortController();
      setMaxListeners(0, this.runAbort.signal);
      this.done = new Promise<void>((r) => (this.finished = r));
      this.releaseInitial();
      this.pump();
      await this.done;
      await this.writer.idle();
      if (this.fatal) throw this.fatal;
      if (this.detaching()) return this.detach();
      const left = [...this.states.values()].filter((s) => s.final && (s.status === "pending" || s.status === "running")).map((s) => s.def.name);
      await this.settle(left, "skipped", null);
    }

    // A run that wrote audit entries ends with a signed checkpoint; one that cannot be written fails the run (fail closed).
    try {
      await closeRunAudit(store, this.opts.home, this.run, status, this.audited);
    } catch (err) {
      status = "failed";
      error = { code: "AUDIT_FAILED", message: `the run's audit checkpoint could not be written: ${(err as Error).message}` };
      this.outcome = { status, error };
    }
    const endedAt = new Date().toISOString();
    const final = (await store.finishRun(id, this.owner, status, endedAt, error)) ?? (await store.getRun(id))!;
    this.opts.onEvent?.({
      type: "run-ended",
      runId: id,
      workflow: this.wf.metadata.name,
      status,
      error,
      trigger: final.trigger,
      startedAt: final.startedAt,
      endedAt,
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

function isEnded(status: StepStatus): boolean {
  return status === "succeeded" || status === "failed" || status === "skipped" || status === "cancelled";
}

function firstFailure(fan: FanOut): string {
  const f = fan.items.find((i) => i.status === "failed");
  return f ? `${f.def.name}: ${f.error?.message ?? "no reason recorded"}` : "none recorded";
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
  // A fan-out's items fail into their parent's tally; only the parent's own failure blocks.
  if (s.parent) return false;
  // continueOnError on a fan-out lets items fail; the step's own failure (too many items) still blocks.
  const tolerated = s.def.continueOnError === true && !(s.def.forEach !== undefined && s.error?.code === "ITEMS_FAILED");
  return (s.status === "failed" && !tolerated) || s.status === "cancelled";
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

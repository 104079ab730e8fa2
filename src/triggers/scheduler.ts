/**
 * The cron scheduler: one per fleet fires the schedule triggers of the current workflows.
 *
 * Leadership is a named lease in the store (`scheduler`), renewed every tick; only the holder
 * fires. Each fire is recorded before its run starts, and its run id is derived from the fire,
 * so neither two schedulers nor a restart after a crash can start a fire twice: recording a fire
 * someone else recorded returns false, and creating a run whose id exists is refused.
 *
 *   tick ─ take/renew the lease ─ finish unsettled fires ─ for each schedule trigger:
 *          due fires since the last one (or since the workflow was applied) ─ catch-up decision
 *          ─ recordFire ─ concurrency policy ─ start the run ─ settleFire ─ onFire (metrics)
 */
import { QUIET_LOG, type ActionLog } from "../actions/types.js";
import { toErrorInfo } from "../errors.js";
import { startWorkflowRun } from "../control/runs.js";
import type { FireStore, NamedLeaseStore, RegistryStore, RunRecord, RunStore, WorkflowVersion } from "../store/types.js";
import {
  cronFor,
  decideFire,
  dueFires,
  fireRunId,
  nextFire,
  scheduleTriggers,
  DEFAULT_GRACE_MS,
  type ConcurrencyPolicy,
  type ScheduleTrigger,
} from "./schedule.js";

/** Message first, fields second: the same shape as an action's log. */
export type SchedulerLog = ActionLog;

/** One settled fire, for metrics (`sluice_schedule_lag_seconds`, fires by outcome). */
export interface FireReport {
  workflow: string;
  /** The trigger key, `schedule:<expr>@<tz>`. */
  trigger: string;
  fireAt: string;
  /** How late the decision was: now − fireAt. */
  lagMs: number;
  outcome: string;
  runId: string | null;
}

export interface SchedulerOptions {
  store: RunStore & RegistryStore & FireStore & NamedLeaseStore;
  /** This process's owner id (engine/ids.ts newOwnerId()). */
  owner: string;
  /** Time between ticks (default 1000 ms). */
  tickMs?: number;
  /** The leader lease's time to live (default 15 s): a dead leader is replaced after this long. */
  leaseTtlMs?: number;
  /** How late the newest fire may be and still run under `catchUp: skip` (default 60 s). */
  graceMs?: number;
  now?: () => number;
  log?: SchedulerLog;
  onFire?: (f: FireReport) => void;
  /** Run a timer (default true); false for tests, which call tick() themselves. */
  autoStart?: boolean;
}

export interface Scheduler {
  /** Stop ticking, wait for the tick in progress, and give up leadership. */
  stop(): Promise<void>;
  /** True while this scheduler holds the leader lease. */
  isLeader(): boolean;
  /** One pass: take or renew the lease and, as leader, fire what is due. */
  tick(now?: number): Promise<void>;
}

export const SCHEDULER_LEASE = "scheduler";

export function startScheduler(opts: SchedulerOptions): Scheduler {
  const { store, owner } = opts;
  const tickMs = opts.tickMs ?? 1000;
  const ttl = opts.leaseTtlMs ?? 15_000;
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  const clock = opts.now ?? Date.now;
  const log = opts.log ?? QUIET_LOG;

  let leaderUntil = 0; // lease expiry as we last took it; 0 when not leader
  let explicitNow: number | undefined; // the time a test passed to tick(now), which then is "now"
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  /** Per trigger, the next time anything can be due; skips the store until then. Cleared on (re)gaining the lease. */
  const nextDue = new Map<string, number>();

  async function pass(now: number): Promise<void> {
    let held: boolean;
    try {
      held = await store.acquireLease(SCHEDULER_LEASE, owner, ttl, now);
    } catch (err) {
      log.error("scheduler: cannot take the leader lease", { error: toErrorInfo(err).message });
      leaderUntil = 0;
      return;
    }
    if (!held) {
      if (leaderUntil) log.info("scheduler: leadership lost", { owner });
      leaderUntil = 0;
      return;
    }
    if (!leaderUntil) {
      log.info("scheduler: leading", { owner });
      nextDue.clear();
    }
    leaderUntil = now + ttl;

    await finishUnsettled(now);
    let workflows: WorkflowVersion[];
    try {
      workflows = await store.listWorkflows();
    } catch (err) {
      log.error("scheduler: cannot list workflows", { error: toErrorInfo(err).message });
      return;
    }
    for (const wf of workflows) {
      for (const trig of scheduleTriggers(wf.spec)) {
        if (stopped) return;
        const slot = `${wf.name}\n${trig.key}`;
        if ((nextDue.get(slot) ?? -Infinity) > now) continue;
        try {
          await fireTrigger(wf, trig, now, slot);
        } catch (err) {
          log.error("scheduler: trigger failed", { workflow: wf.name, trigger: trig.key, error: toErrorInfo(err).message });
        }
      }
    }
  }

  async function fireTrigger(wf: WorkflowVersion, trig: ScheduleTrigger, now: number, slot: string): Promise<void> {
    const cron = cronFor(trig.expr, trig.timezone);
    const since = await watermark(wf, trig);
    if (since === undefined) return;
    const decision = decideFire(dueFires(cron, since, now), now, trig.catchUp, graceMs);
    if (decision) {
      const fireAt = new Date(decision.fireAt).toISOString();
      if (await store.recordFire({ workflow: wf.name, triggerKey: trig.key, fireAt, recordedAt: new Date(now).toISOString() })) {
        if (decision.missed > 0)
          log.warn("scheduler: missed fires", { workflow: wf.name, trigger: trig.key, missed: decision.missed, outcome: decision.outcome });
        if (decision.run) await startFire(wf.name, trig.key, trig.expr, trig.concurrencyPolicy, decision.fireAt, now, decision.outcome, wf.version);
        else await settle(wf.name, trig.key, decision.fireAt, now, decision.outcome, null);
      }
      // Recorded by another scheduler (a stale leader): it starts the run; we move on.
    }
    const next = nextFire(cron, Math.max(now, decision?.fireAt ?? -Infinity));
    nextDue.set(slot, next ?? Infinity);
  }

  /** Fires are due after the last recorded one; with none, after the trigger first appeared. */
  async function watermark(wf: WorkflowVersion, trig: ScheduleTrigger): Promise<number | undefined> {
    const last = await store.lastFire(wf.name, trig.key);
    if (last) return Date.parse(last.fireAt);
    const history = await store.workflowHistory(wf.name);
    const withTrigger = history.filter((v) => scheduleTriggers(v.spec).some((t) => t.key === trig.key));
    const times = (withTrigger.length ? withTrigger : history).map((v) => Date.parse(v.createdAt)).filter(Number.isFinite);
    if (times.length === 0) return Date.parse(wf.createdAt); // never from the epoch
    return Math.min(...times);
  }

  /**
   * Start the run of a recorded fire and settle it. Also used for fires found unsettled after a
   * crash: if the run exists already (the crash came after it started), it is only settled.
   */
  async function startFire(
    workflow: string,
    key: string,
    expr: string,
    policy: ConcurrencyPolicy,
    fireAtMs: number,
    now: number,
    outcome: string,
    version?: number,
  ): Promise<void> {
    const id = fireRunId(workflow, key, fireAtMs);
    const existing = await store.getRun(id);
    if (existing) return settle(workflow, key, fireAtMs, now, outcome, id);

    let replaced: string[] = [];
    if (policy !== "Allow") {
      const active = (await activeScheduledRuns(workflow)).filter((r) => r.id !== id);
      if (active.length && policy === "Forbid")
        return settle(workflow, key, fireAtMs, now, `skipped: previous run ${active.map((r) => r.id).join(", ")} still running`, null);
      if (active.length && policy === "Replace") {
        for (const r of active) await store.requestCancel(r.id);
        replaced = active.map((r) => r.id);
      }
    }

    const fireAt = new Date(fireAtMs).toISOString();
    let runId: string;
    try {
      const run = await startWorkflowRun(store, { workflow, version, trigger: { type: "schedule", name: expr, fireAt }, id });
      runId = run.id;
    } catch (err) {
      // A duplicate id: another scheduler (or our previous life) started it first.
      if (await store.getRun(id).catch(() => undefined)) runId = id;
      else {
        const e = toErrorInfo(err);
        if (e.retryable) {
          // Left unsettled: the next tick tries again with the same id.
          log.error("scheduler: cannot start the run of a fire; will retry", { workflow, trigger: key, fireAt, error: e.message });
          return;
        }
        log.error("scheduler: the run of a fire was refused", { workflow, trigger: key, fireAt, code: e.code, error: e.message });
        return settle(workflow, key, fireAtMs, now, `failed: ${e.message}`, null);
      }
    }
    if (replaced.length) log.info("scheduler: replacing runs", { workflow, cancelled: replaced, runId });
    return settle(workflow, key, fireAtMs, now, replaced.length ? `${outcome}; replaced ${replaced.join(", ")}` : outcome, runId);
  }

  async function activeScheduledRuns(workflow: string): Promise<RunRecord[]> {
    const [pending, running] = await Promise.all([
      store.listRuns({ workflow, status: "pending", limit: 1000 }),
      store.listRuns({ workflow, status: "running", limit: 1000 }),
    ]);
    return [...pending, ...running].filter((r) => r.trigger?.type === "schedule");
  }

  async function settle(workflow: string, key: string, fireAtMs: number, now: number, outcome: string, runId: string | null): Promise<void> {
    const fireAt = new Date(fireAtMs).toISOString();
    await store.settleFire(workflow, key, fireAt, outcome, runId);
    log.info("scheduler: fire", { workflow, trigger: key, fireAt, outcome, runId });
    try {
      opts.onFire?.({ workflow, trigger: key, fireAt, lagMs: now - fireAtMs, outcome, runId });
    } catch (err) {
      log.warn("scheduler: onFire callback failed", { error: toErrorInfo(err).message });
    }
  }

  /** Fires recorded but never settled: the scheduler died between recording and starting. */
  async function finishUnsettled(now: number): Promise<void> {
    let fires;
    try {
      fires = await store.unsettledFires();
    } catch (err) {
      log.error("scheduler: cannot list unsettled fires", { error: toErrorInfo(err).message });
      return;
    }
    if (fires.length === 0) return;
    const current = new Map((await store.listWorkflows()).map((w) => [w.name, w]));
    for (const f of fires) {
      if (stopped) return;
      const fireAtMs = Date.parse(f.fireAt);
      try {
        const wf = current.get(f.workflow);
        const trig = wf ? scheduleTriggers(wf.spec).find((t) => t.key === f.triggerKey) : undefined;
        if (!wf || !trig) {
          const id = fireRunId(f.workflow, f.triggerKey, fireAtMs);
          if (await store.getRun(id)) await settle(f.workflow, f.triggerKey, fireAtMs, now, "started", id);
          else await settle(f.workflow, f.triggerKey, fireAtMs, now, `skipped: ${wf ? "the trigger was removed" : "the workflow is no longer current"}`, null);
          continue;
        }
        log.info("scheduler: finishing an interrupted fire", { workflow: f.workflow, trigger: f.triggerKey, fireAt: f.fireAt });
        await startFire(f.workflow, f.triggerKey, trig.expr, trig.concurrencyPolicy, fireAtMs, now, "started", wf.version);
      } catch (err) {
        log.error("scheduler: cannot finish an interrupted fire", {
          workflow: f.workflow,
          trigger: f.triggerKey,
          fireAt: f.fireAt,
          error: toErrorInfo(err).message,
        });
      }
    }
  }

  function tick(now?: number): Promise<void> {
    // One pass at a time: a timer tick and a test's tick never interleave.
    const p = running.then(() => {
      if (stopped) return;
      explicitNow = now;
      return pass(now ?? clock());
    });
    running = p.catch((err) => log.error("scheduler: tick failed", { error: toErrorInfo(err).message }));
    return p;
  }

  function loop(): void {
    timer = undefined;
    void tick()
      .catch(() => undefined)
      .finally(() => {
        if (!stopped) {
          timer = setTimeout(loop, tickMs);
          timer.unref();
        }
      });
  }

  if (opts.autoStart ?? true) {
    timer = setTimeout(loop, 0);
    timer.unref();
  }

  return {
    tick,
    isLeader: () => leaderUntil > (explicitNow ?? clock()),
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
      if (leaderUntil) {
        leaderUntil = 0;
        await store
          .releaseNamedLease(SCHEDULER_LEASE, owner)
          .catch((err) => log.warn("scheduler: cannot release the leader lease", { error: toErrorInfo(err).message }));
      }
    },
  };
}

/**
 * A worker: takes runs from the store's queue and executes them, as many at once as it is allowed.
 *
 * The unit a worker claims is a run, not a single step: steps of one run hand data to each other
 * through the run's work directory (`<home>/runs/<id>/`), so they execute where that directory is,
 * in parallel up to the run's `parallelism`. The claim is a lease renewed by the run's heartbeat;
 * when a worker dies, its leases expire, another worker's next claim takes the run over, marks the
 * attempts that were running as interrupted and runs those steps again (fenced, so the dead
 * worker's late writes cannot land). Succeeded steps never run again.
 *
 * Workers find queued runs by polling and, on PostgreSQL, by LISTEN/NOTIFY for low latency.
 */
import { setMaxListeners } from "node:events";
import type { ActionRegistry } from "../actions/registry.js";
import type { PublishEvent } from "../actions/types.js";
import type { EngineStore, QueueStore, RunRecord } from "../store/types.js";
import type { EventSink } from "./events.js";
import { executeRun, leaseTtl } from "./execute.js";
import { newOwnerId } from "./ids.js";
import type { Limiter } from "./limiter.js";
import { deadLocalOwner } from "./takeover.js";

export interface WorkerOptions {
  store: EngineStore & QueueStore;
  actions: ActionRegistry;
  home: string;
  owner?: string;
  /** Runs executed at once by this worker (default SLUICE_WORKER_RUNS or 16). */
  maxRuns?: number;
  /** Poll interval when no notification arrives (default 500 ms). */
  pollMs?: number;
  leaseTtlMs?: number;
  limiter?: Limiter;
  onEvent?: EventSink;
  publishEvent?: PublishEvent;
  onStreamLatency?: (workflow: string, stage: string, ms: number) => void;
  log?: { info(o: object, msg?: string): void; warn(o: object, msg?: string): void; error(o: object, msg?: string): void };
}

export interface Worker {
  readonly owner: string;
  /** Runs this worker is executing now. */
  active(): number;
  /**
   * Stop taking runs; let running attempts finish for up to `graceMs`, then interrupt what is
   * left. Either way the runs are released at once for other workers (or a restart) to go on with.
   */
  stop(graceMs?: number): Promise<void>;
}

/** How often a worker looks for runs held by dead processes of its host. */
const DEAD_OWNER_SWEEP_MS = 5_000;

export async function startWorker(opts: WorkerOptions): Promise<Worker> {
  const { store } = opts;
  const owner = opts.owner ?? newOwnerId();
  const maxRuns = opts.maxRuns ?? (Number(process.env.SLUICE_WORKER_RUNS) || 16);
  const pollMs = opts.pollMs ?? 500;
  const ttl = opts.leaseTtlMs ?? leaseTtl();
  const drain = new AbortController();
  const detach = new AbortController();
  // Every run this worker executes listens on both: many runs at once are not a leak.
  setMaxListeners(0, drain.signal, detach.signal);
  const running = new Map<string, Promise<void>>();
  let stopping = false;
  let polling = false;
  let again = false;
  let timer: NodeJS.Timeout | undefined;

  const execute = (claimed: RunRecord) => {
    const runId = claimed.id;
    const done = executeRun(runId, {
      claimed,
      store,
      actions: opts.actions,
      home: opts.home,
      owner,
      leaseTtlMs: ttl,
      limiter: opts.limiter,
      onEvent: opts.onEvent,
      publishEvent: opts.publishEvent,
      onStreamLatency: opts.onStreamLatency,
      signal: detach.signal,
      drain: drain.signal,
    })
      .then(
        () => undefined,
        (err: unknown) => opts.log?.error({ runId, err: (err as Error).message }, "run failed inside the worker"),
      )
      .finally(() => {
        running.delete(runId);
        poll(); // A slot freed: look for more work.
      });
    running.set(runId, done);
  };

  /** Claim as many runs as there are free slots; coalesce wake-ups that arrive while claiming. */
  const poll = (): void => {
    if (stopping) return;
    if (polling) {
      again = true;
      return;
    }
    const free = maxRuns - running.size;
    if (free <= 0) return;
    polling = true;
    store
      .claimRuns(owner, ttl, Date.now(), free)
      .then(
        async (runs) => {
          for (const r of runs) {
            if (stopping)
              await store.releaseLease(r.id, owner); // Claimed as we stopped: hand it back.
            else if (!running.has(r.id)) execute(r);
          }
        },
        (err: unknown) => opts.log?.warn({ err: (err as Error).message }, "could not poll the run queue; retrying"),
      )
      .finally(() => {
        polling = false;
        if (again) {
          again = false;
          poll();
        }
      });
  };

  /**
   * Runs whose lease a dead process of this host still holds (a `sluice run` or a worker killed
   * with -9, a server restarted after a crash): taken over at once, as `sluice resume` does
   * (takeover.ts), instead of after their lease runs out. Checked at start and every few seconds.
   */
  let lastSweep = 0;
  const sweepDeadOwners = async (): Promise<void> => {
    lastSweep = Date.now();
    const held = [...(await store.listRuns({ status: "running", limit: 500 })), ...(await store.listRuns({ status: "pending", limit: 500 }))];
    for (const r of held) {
      if (stopping || running.size >= maxRuns || running.has(r.id)) continue;
      if (r.leaseOwner === null || r.leaseOwner === owner || (r.leaseExpiresAt ?? 0) < Date.now() || deadLocalOwner(r.leaseOwner) === undefined) continue;
      if (!(await store.takeOverRun(r.id, r.leaseOwner, owner, ttl, Date.now()))) continue;
      opts.log?.info({ runId: r.id, previousOwner: r.leaseOwner }, "took over a run whose process on this host is gone");
      const taken = await store.getRun(r.id);
      if (taken && taken.leaseOwner === owner) execute(taken);
    }
  };

  const unlisten = await store.onRunsQueued(poll);
  const tick = () => {
    poll();
    if (Date.now() - lastSweep >= DEAD_OWNER_SWEEP_MS)
      void sweepDeadOwners().catch((err: unknown) => opts.log?.warn({ err: (err as Error).message }, "could not look for runs of dead processes; retrying"));
    timer = setTimeout(tick, pollMs);
  };
  tick();

  return {
    owner,
    active: () => running.size,
    async stop(graceMs = 30_000) {
      stopping = true;
      clearTimeout(timer);
      await unlisten();
      drain.abort();
      const all = Promise.all(running.values());
      let graceTimer: NodeJS.Timeout | undefined;
      const expired = new Promise<"expired">((r) => (graceTimer = setTimeout(() => r("expired"), graceMs)));
      if ((await Promise.race([all, expired])) === "expired") {
        opts.log?.warn({ runs: [...running.keys()] }, "grace period over: interrupting the attempts still running");
        detach.abort();
        await all;
      }
      clearTimeout(graceTimer);
      // Wait for a claim that was in flight, so no lease is left held by a stopped worker.
      while (polling) await new Promise((r) => setTimeout(r, 5));
    },
  };
}

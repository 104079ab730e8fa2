/**
 * The controller's work queue, after client-go's rate-limited workqueue: keys, not events (ten
 * changes of one object while it waits are one reconcile); never two reconciles of one key at
 * once (a key added while it is being reconciled runs again right after); a failing key backs
 * off exponentially and alone; a key may ask to be looked at again later (an active run).
 */
import { backoffMs, type Clock } from "./clock.js";

export interface ReconcileResult {
  /** Reconcile the key again after this long, even if nothing changes. */
  requeueMs?: number | null;
}

export interface QueueOptions {
  clock: Clock;
  /** Keys reconciled at once (different keys only). */
  concurrency: number;
  reconcile: (key: string) => Promise<ReconcileResult>;
  /** A failed reconcile: logged by the caller; the key is retried with backoff. */
  onError: (key: string, err: unknown, retryInMs: number) => void;
  baseDelayMs?: number;
  maxDelayMs?: number;
  random?: () => number;
}

export interface WorkQueue {
  /** Reconcile `key` after `delayMs` (0: as soon as a slot is free); an earlier time wins. */
  add(key: string, delayMs?: number): void;
  /** Resolves when nothing is queued or running (delayed keys do not count). */
  idle(): Promise<void>;
  /** No new reconciles; waits for those running. */
  stop(): Promise<void>;
  /** Keys waiting for a delay to pass, with their due times (for tests and diagnostics). */
  delayed(): Map<string, number>;
}

export function workQueue(o: QueueOptions): WorkQueue {
  const base = o.baseDelayMs ?? 500;
  const max = o.maxDelayMs ?? 60_000;
  const ready: string[] = [];
  const readySet = new Set<string>();
  const running = new Set<string>();
  /** Keys added again while they were running. */
  const dirty = new Set<string>();
  const timers = new Map<string, { due: number; handle: unknown }>();
  const failures = new Map<string, number>();
  let stopped = false;
  let idleWaiters: (() => void)[] = [];

  const checkIdle = () => {
    if (ready.length === 0 && running.size === 0) {
      const w = idleWaiters;
      idleWaiters = [];
      for (const f of w) f();
    }
  };

  const pump = () => {
    while (!stopped && running.size < o.concurrency) {
      const i = ready.findIndex((k) => !running.has(k));
      if (i < 0) break;
      const key = ready.splice(i, 1)[0]!;
      readySet.delete(key);
      running.add(key);
      void runOne(key);
    }
    checkIdle();
  };

  const runOne = async (key: string) => {
    let retryIn: number | null = null;
    try {
      const r = await o.reconcile(key);
      failures.delete(key);
      retryIn = r.requeueMs ?? null;
    } catch (err) {
      const n = (failures.get(key) ?? 0) + 1;
      failures.set(key, n);
      retryIn = backoffMs(n, base, max, o.random);
      o.onError(key, err, retryIn);
    } finally {
      running.delete(key);
      if (dirty.delete(key)) enqueue(key);
      else if (retryIn !== null) add(key, retryIn);
      pump();
    }
  };

  const enqueue = (key: string) => {
    if (stopped) return;
    if (running.has(key)) {
      dirty.add(key);
      return;
    }
    if (!readySet.has(key)) {
      readySet.add(key);
      ready.push(key);
    }
  };

  const add = (key: string, delayMs = 0) => {
    if (stopped) return;
    if (delayMs <= 0) {
      const t = timers.get(key);
      if (t) (o.clock.clearTimeout(t.handle), timers.delete(key));
      enqueue(key);
      pump();
      return;
    }
    const due = o.clock.now() + delayMs;
    const t = timers.get(key);
    if (t && t.due <= due) return;
    if (t) o.clock.clearTimeout(t.handle);
    const handle = o.clock.setTimeout(() => {
      timers.delete(key);
      enqueue(key);
      pump();
    }, delayMs);
    timers.set(key, { due, handle });
  };

  return {
    add,
    idle: () => new Promise<void>((res) => (idleWaiters.push(res), checkIdle())),
    async stop() {
      stopped = true;
      for (const t of timers.values()) o.clock.clearTimeout(t.handle);
      timers.clear();
      ready.length = 0;
      readySet.clear();
      while (running.size > 0) await new Promise<void>((res) => idleWaiters.push(res));
    },
    delayed: () => new Map([...timers].map(([k, t]) => [k, t.due])),
  };
}

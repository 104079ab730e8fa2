/**
 * Time as the operator sees it: the real clock in production, a fake one in the controller's
 * tests, so backoff, requeues and resyncs are tested without waiting.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * Timers keep the process alive on purpose: a standby operator has nothing else to wait on but
 * its next try for the lease. stop() of each part clears its timers.
 */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Exponential backoff: base·2^failures, capped, with ±20% jitter so restarts do not align. */
export function backoffMs(failures: number, baseMs: number, maxMs: number, random = Math.random): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(raw * (0.8 + 0.4 * random()));
}

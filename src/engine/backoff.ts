/**
 * Retry policy: how many retries a step gets and how long to wait before each.
 * Exponential with jitter and a cap, like Argo's retryStrategy.backoff and Temporal's RetryPolicy.
 */
import { parseDuration } from "../spec/duration.js";
import type { RetryPolicy, Step, Workflow } from "../spec/schema.js";

export interface EffectiveRetry {
  limit: number;
  initialMs: number;
  factor: number;
  maxMs: number;
  jitter: number;
}

const DEFAULTS: EffectiveRetry = { limit: 0, initialMs: 1_000, factor: 2, maxMs: 300_000, jitter: 0.2 };

/** The step's policy over the workflow's defaults over the built-in defaults, field by field. */
export function effectiveRetry(wf: Workflow, step: Step): EffectiveRetry {
  const layers: (RetryPolicy | undefined)[] = [wf.spec.retry, step.retry];
  const out = { ...DEFAULTS };
  for (const p of layers) {
    if (!p) continue;
    out.limit = p.limit;
    const b = p.backoff;
    if (b?.initial) out.initialMs = parseDuration(b.initial)!;
    if (b?.factor !== undefined) out.factor = b.factor;
    if (b?.max) out.maxMs = parseDuration(b.max)!;
    if (b?.jitter !== undefined) out.jitter = b.jitter;
  }
  return out;
}

/** Delay before retry number `retry` (1 for the first retry). */
export function retryDelayMs(policy: EffectiveRetry, retry: number, random = Math.random): number {
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** (retry - 1));
  const spread = base * policy.jitter * (random() * 2 - 1);
  return Math.max(0, Math.min(policy.maxMs, Math.round(base + spread)));
}

/**
 * The one retry decision every execution path makes after a failed or timed-out attempt: retry
 * (after how long) or give up. Pure, so the rule is tested once: a retry needs an error that
 * retrying can fix, budget left (`failures` counts this failure too), and a run that is not
 * stopping (a draining worker still retries: the wait is stored and the next owner honours it).
 */
export function retryDecision(
  policy: EffectiveRetry,
  failures: number,
  o: { retryable: boolean; stopping: boolean },
  random = Math.random,
): { retry: true; delayMs: number } | { retry: false } {
  if (!o.retryable || o.stopping || failures > policy.limit) return { retry: false };
  return { retry: true, delayMs: retryDelayMs(policy, failures, random) };
}

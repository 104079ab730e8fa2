/**
 * The circuit breaker around an action that contacts a source (the standard workflow's
 * collection, batch/collect.ts): refuse at once while the source's breaker is open, so a dead
 * primary is not hammered by every run and every retry, and record how the contact went.
 *
 * Only failures that say the source is unwell count against it: network faults, timeouts, 5xx,
 * 429 and truncated bodies (BREAKER_CLASSES). A 401, a missing table or a renamed column is the
 * workflow's problem, not the source's health: such a failure neither counts nor resets the
 * count, and a probe that ended that way lets the next caller probe instead. A refusal is a
 * NETWORK_ERROR, so triggers/platform.ts publishes `data_source_failure` for it and the recovery
 * workflow starts, with `retryable: false`, so the step's retries do not wait out the cool-down.
 */
import { toErrorInfo } from "../../errors.js";
import { parseDuration } from "../../spec/duration.js";
import type { ActionContext } from "../types.js";
import { breakerOpenError, checkBreaker, recordSourceOutcome, releaseProbe, type BreakerOptions } from "./breaker.js";
import { classifyFailure, isSourceFailure } from "./classify.js";
import type { FailureClass } from "./contract.js";

export const BREAKER_CLASSES: ReadonlySet<FailureClass> = new Set(["network", "timeout", "server_unavailable", "rate_limited", "truncated_body"]);

/** A step's `breaker:` setting: thresholds, or false for none. */
export type BreakerConfig = false | { failures?: number; coolDown?: string };

export function breakerOptions(config: Exclude<BreakerConfig, false> | undefined): BreakerOptions {
  const coolDownMs = config?.coolDown ? parseDuration(config.coolDown) : undefined;
  return { ...(config?.failures ? { failures: config.failures } : {}), ...(coolDownMs !== undefined ? { coolDownMs } : {}) };
}

export interface GuardOptions {
  /**
   * A success says the source is well, and closes the breaker (default true). A one-request
   * availability check passes false: one answered request says little about a walk of many
   * pages (a source whose page 4 fails answers page 1), so its success leaves the count alone;
   * when it was the half-open breaker's probe, it hands the probe on to the next contact.
   */
  successCloses?: boolean;
}

export async function withSourceBreaker<T>(
  source: string,
  config: BreakerConfig | undefined,
  ctx: ActionContext,
  contact: () => Promise<T>,
  guard: GuardOptions = {},
): Promise<T> {
  if (config === false) return contact();
  const opts = breakerOptions(config);
  const check = await checkBreaker(ctx.state, source, Date.now(), opts);
  if (!check.allowed) {
    ctx.log.warn("circuit breaker refused the source", { source: check.source, state: check.state, openedAt: check.openedAt, retryAt: check.retryAt });
    throw breakerOpenError(check, opts);
  }
  if (check.probe) ctx.log.info("circuit breaker half-open: this attempt is its probe", { source: check.source });
  // Recording is bookkeeping: a store hiccup here must neither fail a good collection nor hide the real error.
  const note = (p: Promise<unknown>) =>
    p.catch((err: unknown) =>
      ctx.log.warn("could not record the source's outcome in its circuit breaker", { source: check.source, error: toErrorInfo(err).message }),
    );
  let result: T;
  try {
    result = await contact();
  } catch (err) {
    const info = toErrorInfo(ctx.signal.aborted ? ctx.signal.reason : err);
    const c = classifyFailure(info, { runId: ctx.runId, step: ctx.step, attempt: ctx.attempt, at: new Date().toISOString() });
    if (isSourceFailure(info) && BREAKER_CLASSES.has(c.class))
      await note(recordSourceOutcome(ctx.state, source, false, Date.now(), { ...opts, class: c.class }));
    else if (check.probe) await note(releaseProbe(ctx.state, source));
    throw err;
  }
  if (guard.successCloses === false) {
    if (check.probe) await note(releaseProbe(ctx.state, source));
  } else await note(recordSourceOutcome(ctx.state, source, true, Date.now(), opts));
  return result;
}

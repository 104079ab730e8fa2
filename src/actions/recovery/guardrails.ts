/**
 * The hard rules the strategy selector applies before it lets the bandit choose: which recovery
 * strategies are safe at all for this failure, and for each one that is not, the reason, written
 * for the decision record. Pure: the same facts give the same verdicts.
 *
 * - auth, bad_config, schema_drift: asking the same source again cannot help (same credentials,
 *   same mistake, same shape), so only switch_to_fallback (and give_up) remain.
 * - rate_limited with a Retry-After: the source said when it will answer again. A wait that ends
 *   before the deadline is honoured, and is then the only way to retry: any earlier request is
 *   refused again, and moving to another source is not needed. A wait past the deadline cannot be
 *   honoured: every retry is excluded and the fallback remains.
 * - no class at all (the analysis found no failure): nothing to retry against; resume from the
 *   checkpoint or use a fallback.
 * - switch_to_fallback needs a declared fallback; the step's `strategies` list narrows the rest.
 * - give_up is the last resort: allowed only when nothing else is, whatever `strategies` says,
 *   so that "no recovery is possible" is a decision and not a crash.
 */
import { formatDuration } from "../../spec/duration.js";
import { STRATEGIES, type FailureClass, type Strategy } from "./contract.js";

export interface GuardFacts {
  class: FailureClass | null;
  /** The Retry-After the source sent last, in seconds (rate_limited). */
  retryAfterSeconds?: number;
  /** Time left before the run's deadline. */
  deadlineMs: number;
  /** How many fallback sources are declared; undefined: not known (then not excluded). */
  fallbacks?: number;
  /** The step's allowed subset, when it names one. */
  strategies?: readonly Strategy[];
}

export type Verdicts = Record<Strategy, { allowed: boolean; excludedBecause?: string }>;

const RETRYING: readonly Strategy[] = ["retry_with_backoff", "wait_retry_after", "reduce_page_size", "resume_from_checkpoint"];

const NEVER_RETRIED: Partial<Record<FailureClass, string>> = {
  auth: "the source refused the credentials (auth): asking again sends the same credentials",
  bad_config: "the step's configuration is wrong (bad_config): asking again repeats the same mistake",
  schema_drift: "the source's columns changed (schema_drift): asking again returns the same shape",
};

const seconds = (s: number) => `${Number.isInteger(s) ? s : s.toFixed(1)} s`;

export function guardrails(f: GuardFacts): Verdicts {
  const retryAfterMs = f.retryAfterSeconds !== undefined ? f.retryAfterSeconds * 1000 : undefined;
  const left = formatDuration(Math.max(0, f.deadlineMs));
  const listed = (s: Strategy) => !f.strategies || f.strategies.includes(s);
  const waitFits = f.class === "rate_limited" && retryAfterMs !== undefined && retryAfterMs < f.deadlineMs;

  const reason = (s: Strategy): string | undefined => {
    if (!listed(s)) return `not among the step's strategies (${f.strategies!.join(", ")})`;
    if (s === "switch_to_fallback" && f.fallbacks === 0) return "no fallback source is declared";
    const never = f.class ? NEVER_RETRIED[f.class] : undefined;
    if (never && RETRYING.includes(s)) return never;
    if (f.class === null && s !== "resume_from_checkpoint" && s !== "switch_to_fallback")
      return "no failure was classified, so there is nothing to retry against: resume from the checkpoint or use a fallback";
    if (s === "wait_retry_after") {
      if (f.class !== "rate_limited") return `only for rate_limited failures, and this one is ${f.class}`;
      if (retryAfterMs === undefined) return "the source sent no Retry-After";
      if (!waitFits) return `the source asked to wait ${seconds(f.retryAfterSeconds!)} (Retry-After), longer than the ${left} left before the deadline`;
    }
    if (f.class === "rate_limited" && retryAfterMs !== undefined && RETRYING.includes(s) && s !== "wait_retry_after")
      return waitFits
        ? `the source asked to wait ${seconds(f.retryAfterSeconds!)} (Retry-After): a request sooner is refused again, so waiting is the retry`
        : `the source asked to wait ${seconds(f.retryAfterSeconds!)} (Retry-After), longer than the ${left} left before the deadline: a request sooner is refused again`;
    if (s === "switch_to_fallback" && waitFits && listed("wait_retry_after"))
      return `the source's Retry-After (${seconds(f.retryAfterSeconds!)}) ends within the ${left} left before the deadline: it is honoured rather than leaving the source`;
    return undefined;
  };

  const verdicts = {} as Verdicts;
  for (const s of STRATEGIES) {
    if (s === "give_up") continue;
    const why = reason(s);
    verdicts[s] = why ? { allowed: false, excludedBecause: why } : { allowed: true };
  }
  const any = STRATEGIES.some((s) => s !== "give_up" && verdicts[s].allowed);
  verdicts.give_up = any
    ? { allowed: false, excludedBecause: "a strategy that can recover the data is allowed; giving up is the last resort" }
    : { allowed: true };
  return verdicts;
}

/**
 * Is a source failing because something just broke (an incident), because it always fails now
 * and then (chronic flakiness), or is it fine (healthy)? A CUSUM change-point test over the
 * source's outcomes in order (1 = the attempt failed, 0 = it succeeded). Pure.
 *
 * The test is Page's CUSUM on the Bernoulli log-likelihood ratio: each outcome adds
 *   failure:  ln(p1 / p0)            success:  ln((1 − p1) / (1 − p0))
 * to S (S = max(0, S + step)), where p0 is the source's usual failure rate and p1 a shifted one.
 * S stays near 0 while the source behaves as usual and climbs while it fails more; S ≥ h (in
 * nats, so h = 4 is "the recent outcomes are e⁴ ≈ 55 times likelier under the shifted rate")
 * means the shift is happening NOW: only the end of the sequence is judged, a past streak the
 * source recovered from resets S.
 *
 * p0 comes from the source's own history: the outcomes before its current streak of failures
 * (so an incident does not raise its own baseline), clamped to [minBaseline, 0.9]; when that
 * history is shorter than `minReference` outcomes it says nothing and p0 is `minBaseline`. A
 * flaky source is judged against its flakiness: 35 % failures stays `chronic` until it fails far
 * more than that. p1 = p0 + (1 − p0) × shift: the shift takes away that share of the remaining
 * successes.
 *
 * Verdict: `incident` when S ≥ h at the end (since = the first outcome after S last stood at
 * 0); otherwise `chronic` when at least `chronicRate` of the outcomes (and at least 2) failed;
 * otherwise `healthy`. With the defaults: a healthy source's 2 failures in a row are an incident,
 * a single failure is not evidence of anything, and a source that has failed every attempt in
 * the window (down since before it) is an incident.
 */

export interface ChangePointOptions {
  /** Lowest usual failure rate assumed (also the baseline without enough history). Default 0.05. */
  minBaseline?: number;
  /** Share of the remaining successes the shift takes away (p1 = p0 + (1 − p0) × shift). Default 0.6. */
  shift?: number;
  /** The alarm threshold h, in nats. Default 4. */
  threshold?: number;
  /** Fewest outcomes before the current failure streak to take the baseline from. Default 3. */
  minReference?: number;
  /** Failure rate from which a source without a current shift is chronic. Default 0.2. */
  chronicRate?: number;
}

export const CHANGE_POINT_DEFAULTS: Required<ChangePointOptions> = { minBaseline: 0.05, shift: 0.6, threshold: 4, minReference: 3, chronicRate: 0.2 };

export interface ChangePoint {
  verdict: "incident" | "chronic" | "healthy";
  method: "cusum";
  /** S at the end of the sequence (nats). */
  statistic: number;
  threshold: number;
  /** When the shift began (the time of the outcome at changeIndex), for an incident with times given. */
  since?: string;
  /** Index in the outcomes where the shift began, for an incident. */
  changeIndex?: number;
  /** p0 and p1 the test used. */
  baselineRate: number;
  shiftedRate: number;
}

/** `outcomes` oldest first; `times` (optional, same length) ISO times of each, for `since`. */
export function detectChangePoint(outcomes: readonly (0 | 1)[], times?: readonly string[], options: ChangePointOptions = {}): ChangePoint {
  const o = { ...CHANGE_POINT_DEFAULTS, ...options };
  const n = outcomes.length;
  let streak = 0;
  while (streak < n && outcomes[n - 1 - streak] === 1) streak++;
  const reference = outcomes.slice(0, n - streak);
  const refRate = reference.length >= o.minReference ? reference.filter((x) => x === 1).length / reference.length : 0;
  const p0 = Math.min(0.9, Math.max(o.minBaseline, refRate));
  const p1 = p0 + (1 - p0) * o.shift;
  const up = Math.log(p1 / p0);
  const down = Math.log((1 - p1) / (1 - p0));

  let s = 0;
  let lastZero = -1; // index of the outcome after which S last stood at 0 (-1: before the first)
  for (let i = 0; i < n; i++) {
    s = Math.max(0, s + (outcomes[i] === 1 ? up : down));
    if (s === 0) lastZero = i;
  }
  const base = { method: "cusum" as const, statistic: round(s), threshold: o.threshold, baselineRate: round(p0), shiftedRate: round(p1) };
  if (n > 0 && s >= o.threshold) {
    const changeIndex = lastZero + 1;
    const since = times?.[changeIndex];
    return { verdict: "incident", ...base, changeIndex, ...(since ? { since } : {}) };
  }
  const failures = outcomes.filter((x) => x === 1).length;
  if (failures >= 2 && failures / n >= o.chronicRate) return { verdict: "chronic", ...base };
  return { verdict: "healthy", ...base };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

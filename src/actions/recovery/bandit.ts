/**
 * The strategy bandit: discounted Thompson sampling per (source, failure class), its state in the
 * store's shared state so it learns across runs and processes.
 *
 * Why Thompson sampling: each recovery is one pull of one arm with a noisy outcome, incidents are
 * few (tens, not millions), and the choice must explore a little without a tuning knob. Sampling
 * each arm's Beta posterior and taking the best sample does exactly that, and the posterior mean
 * is a probability a person can read in the decision record.
 *
 * - Arms: every strategy but give_up (it recovers nothing, so there is nothing to learn; the
 *   selector takes it only when the guardrails leave no other).
 * - Cold start: rule-based priors per class (PRIORS), a few pseudo-outcomes, so that a handful of
 *   real outcomes outweigh the rule. Until the first outcome of a key is counted, its choice is
 *   the allowed arm of highest prior mean (the seeded draw decides among equals) rather than a
 *   draw from the priors: a draw from Beta(3,1) against Beta(2,1) and Beta(1,1) takes the rule's
 *   second or third choice about half the time, and the first incident of a source is the
 *   one an operator watches. Exploration starts with the second incident.
 * - Forgetting: before every update each arm's evidence (its counts above the prior) is multiplied
 *   by DISCOUNT = 0.99, and the arm being updated by SUPERSEDE = 0.93 as well, so counts decay
 *   towards the prior, never below it. Two rates, not one: with a single γ = 0.95 on every arm, an
 *   arm that failed and is no longer tried drifts back to its prior within ~20 incidents and is
 *   picked again about 1 time in 10; a single slow γ follows a change too late. Fading the played
 *   arm fast (its last ~13 outcomes count) makes a source that turned bad lose its lead within tens
 *   of incidents, while the slow fade of the others (~100 incidents) keeps their failures in mind
 *   and still lets an arm not tried for long be tried again. Measured on test 11's simulation over
 *   200 seeds: a single γ = 0.95 chose the better arm in ≥ 90% of incidents 51–100 for 92 seeds;
 *   these two rates for 191, and followed the swap within 30 incidents for all 200.
 * - Reward: see reward(); a fractional Bernoulli update, alpha += r, beta += 1 − r.
 * - State: namespace `recovery-bandit`, key `${source}|${class}`, written by compare-and-set.
 */
import { SluiceError } from "../../errors.js";
import type { SharedState } from "../types.js";
import { STRATEGIES, type DecisionRecord, type FailureClass, type Strategy, type StrategyConsidered } from "./contract.js";
import { betaSample, seededUniform } from "./random.js";

export const BANDIT_NAMESPACE = "recovery-bandit";
/** Every arm's evidence is multiplied by this before each update of its key. */
export const DISCOUNT = 0.99;
/** The arm being updated is multiplied by this as well: its own older outcomes give way to the newest. */
export const SUPERSEDE = 0.93;
/** The recovery rate (rows per second) at which the speed part of the reward is one half. */
export const HALF_RATE_ROWS_PER_SECOND = 100;

export type BanditKey = DecisionRecord["banditKey"];
export interface ArmCounts {
  alpha: number;
  beta: number;
}
type Arm = Exclude<Strategy, "give_up">;
const ARMS = STRATEGIES.filter((s): s is Arm => s !== "give_up");

/** What is kept per key. */
export interface BanditState {
  kind: "sluice.dev/recovery-bandit-v1";
  arms: Record<Arm, ArmCounts>;
  /** Outcomes counted so far. */
  updates: number;
  lastUpdated: string | null;
  /** The decisions already counted (seed@decidedAt), newest last, so a retried step counts once. */
  recorded: string[];
}

const STRONG: ArmCounts = { alpha: 3, beta: 1 };
const LIKELY: ArmCounts = { alpha: 2, beta: 1 };
const UNLIKELY: ArmCounts = { alpha: 1, beta: 2 };
const NEUTRAL: ArmCounts = { alpha: 1, beta: 1 };

/**
 * What an operator would try first for each class, as pseudo-outcomes (alpha, beta): STRONG
 * reads "3 of 4 worked", LIKELY "2 of 3", UNLIKELY "1 of 3"; an arm not named is NEUTRAL.
 * Deliberately weak: four real outcomes move a mean by more than the prior's whole spread.
 */
const PRIORS: Record<FailureClass | "none", Partial<Record<Arm, ArmCounts>>> = {
  // A dropped connection usually clears; a second source is the next best thing.
  network: { retry_with_backoff: STRONG, resume_from_checkpoint: LIKELY, switch_to_fallback: LIKELY },
  // Slow pages time out: ask for smaller ones, or simply again.
  timeout: { reduce_page_size: STRONG, retry_with_backoff: LIKELY, resume_from_checkpoint: LIKELY, switch_to_fallback: LIKELY },
  // A 5xx primary may be down for a while: a fallback serves now, a retry may serve later.
  server_unavailable: { switch_to_fallback: STRONG, retry_with_backoff: LIKELY, resume_from_checkpoint: LIKELY },
  // The source said how long to wait; anything sooner is refused again.
  rate_limited: { wait_retry_after: { alpha: 4, beta: 1 }, switch_to_fallback: LIKELY, retry_with_backoff: UNLIKELY, reduce_page_size: UNLIKELY },
  auth: { switch_to_fallback: LIKELY },
  not_found: { switch_to_fallback: STRONG, retry_with_backoff: UNLIKELY },
  // A cut body: refetch from the last good page, smaller pages cut less often.
  truncated_body: { resume_from_checkpoint: STRONG, reduce_page_size: STRONG, retry_with_backoff: LIKELY },
  schema_drift: { switch_to_fallback: LIKELY },
  // Bad or old data from the primary is the same data when asked again.
  quality_breach: { switch_to_fallback: STRONG, retry_with_backoff: UNLIKELY, resume_from_checkpoint: UNLIKELY },
  stale_data: { switch_to_fallback: STRONG, retry_with_backoff: UNLIKELY, resume_from_checkpoint: UNLIKELY },
  bad_config: { switch_to_fallback: LIKELY },
  // Nothing classified: carry on where the run stopped, or use another source.
  none: { resume_from_checkpoint: STRONG, switch_to_fallback: LIKELY },
};

export function priorFor(cls: BanditKey["class"], strategy: Arm): ArmCounts {
  return { ...(PRIORS[cls][strategy] ?? NEUTRAL) };
}

export const banditKeyString = (key: BanditKey) => `${key.source}|${key.class}`;

function freshState(cls: BanditKey["class"]): BanditState {
  const arms = Object.fromEntries(ARMS.map((a) => [a, priorFor(cls, a)])) as Record<Arm, ArmCounts>;
  return { kind: "sluice.dev/recovery-bandit-v1", arms, updates: 0, lastUpdated: null, recorded: [] };
}

/** The stored state, with any arm it lacks (a strategy added later) at its prior. */
function stateOf(value: unknown, cls: BanditKey["class"]): BanditState {
  const base = freshState(cls);
  if (!value || typeof value !== "object" || (value as { kind?: unknown }).kind !== base.kind) return base;
  const v = value as Partial<BanditState>;
  const arms = { ...base.arms };
  for (const a of ARMS) {
    const c = v.arms?.[a];
    if (c && Number.isFinite(c.alpha) && Number.isFinite(c.beta) && c.alpha > 0 && c.beta > 0) arms[a] = { alpha: c.alpha, beta: c.beta };
  }
  return {
    ...base,
    arms,
    updates: typeof v.updates === "number" ? v.updates : 0,
    lastUpdated: typeof v.lastUpdated === "string" ? v.lastUpdated : null,
    recorded: Array.isArray(v.recorded) ? v.recorded.filter((r): r is string => typeof r === "string") : [],
  };
}

/** The current posterior of every arm of a key (priors when nothing was learnt yet). */
export async function readBandit(state: SharedState, key: BanditKey): Promise<{ state: BanditState; version: number }> {
  const got = await state.get(BANDIT_NAMESPACE, banditKeyString(key));
  return { state: stateOf(got?.value, key.class), version: got?.version ?? 0 };
}

const mean = (c: ArmCounts) => c.alpha / (c.alpha + c.beta);
const round = (n: number) => Math.round(n * 1e4) / 1e4;

/**
 * Sample every allowed arm's posterior with the seeded generator and take the best sample.
 * `considered` lists every strategy: allowed arms with their sample, the rest with their posterior
 * only (the caller adds why they were excluded). give_up is chosen only when no arm is allowed.
 */
export async function chooseStrategy(
  state: SharedState,
  key: BanditKey,
  allowed: Strategy[],
  seed: string,
): Promise<{ choice: Strategy; considered: StrategyConsidered[]; coldStart: boolean }> {
  const { state: bandit } = await readBandit(state, key);
  // One stream per key: two keys seeded alike still draw independently.
  const u = seededUniform(`${seed}|${banditKeyString(key)}`);
  const cold = bandit.updates === 0;
  const topPrior = Math.max(...allowed.filter((s): s is Arm => s !== "give_up").map((s) => mean(bandit.arms[s])));
  const considered: StrategyConsidered[] = [];
  let best: { arm: Arm; sample: number } | undefined;
  for (const s of STRATEGIES) {
    const ok = allowed.includes(s);
    if (s === "give_up") {
      considered.push({ strategy: s, allowed: ok, estimatedSuccess: 0, alpha: 0, beta: 0 });
      continue;
    }
    const c = bandit.arms[s];
    const entry: StrategyConsidered = { strategy: s, allowed: ok, estimatedSuccess: round(mean(c)), alpha: round(c.alpha), beta: round(c.beta) };
    // At a cold start only the arms of highest prior mean are drawn (to break their tie).
    if (ok && (!cold || mean(c) >= topPrior - 1e-12)) {
      const sample = betaSample(u, c.alpha, c.beta);
      entry.sample = round(sample);
      if (!best || sample > best.sample) best = { arm: s, sample };
    }
    considered.push(entry);
  }
  if (best) return { choice: best.arm, considered, coldStart: cold };
  if (allowed.includes("give_up")) return { choice: "give_up", considered, coldStart: cold };
  throw new SluiceError("BAD_INPUT", `no strategy is allowed for ${banditKeyString(key)}: the allowed list is empty`);
}

export interface StrategyOutcome {
  succeeded: boolean;
  /** Distinct rows the recovery stored. */
  rowsRecovered: number;
  seconds: number;
  /** Rows that arrived more than once (the same key fetched or stored again). */
  duplicates: number;
}

/**
 * The reward of one recovery, in [0, 1]:
 *
 *   r = 0                                              when the recovery failed
 *   r = (1/2 + 1/2 · rate / (rate + H)) · rows / (rows + duplicates)   otherwise
 *
 * with rate = rows / seconds and H = HALF_RATE_ROWS_PER_SECOND. A success is worth at least 1/2
 * (so the posterior mean stays close to a success probability, which the decision record calls
 * it), faster successes up to 1 (100 rows/s: 0.75; 1,000 rows/s: 0.95), and the share of
 * duplicates scales it down (half the rows duplicated: half the reward). A success with nothing
 * to recover (0 rows, 0 duplicates) is worth 1/2.
 */
export function reward(o: StrategyOutcome): number {
  if (!o.succeeded) return 0;
  const rows = Math.max(0, Number.isFinite(o.rowsRecovered) ? o.rowsRecovered : 0);
  const dups = Math.max(0, Number.isFinite(o.duplicates) ? o.duplicates : 0);
  const seconds = Math.max(0.001, Number.isFinite(o.seconds) ? o.seconds : 0);
  const rate = rows / seconds;
  const speed = rate / (rate + HALF_RATE_ROWS_PER_SECOND);
  const clean = rows + dups === 0 ? 1 : rows / (rows + dups);
  return Math.min(1, Math.max(0, (0.5 + 0.5 * speed) * clean));
}

/** Discount every arm towards its prior (the chosen one more), then add the reward to the chosen arm. Pure. */
export function updatedBandit(b: BanditState, key: BanditKey, arm: Arm, r: number, id: string, at: string): BanditState {
  const arms = { ...b.arms };
  for (const a of ARMS) {
    const p = priorFor(key.class, a);
    const c = b.arms[a];
    const g = a === arm ? DISCOUNT * SUPERSEDE : DISCOUNT;
    arms[a] = { alpha: p.alpha + g * Math.max(0, c.alpha - p.alpha), beta: p.beta + g * Math.max(0, c.beta - p.beta) };
  }
  arms[arm] = { alpha: arms[arm].alpha + r, beta: arms[arm].beta + (1 - r) };
  return { ...b, arms, updates: b.updates + 1, lastUpdated: at, recorded: [...b.recorded, id].slice(-RECORDED_KEPT) };
}

const RECORDED_KEPT = 100;
const CAS_TRIES = 50;

/**
 * Count the outcome of a decision into its key's posterior. A decision counted before (the same
 * seed and time: a retried or resumed last step) is not counted again. give_up teaches nothing.
 * Compare-and-set: when another process wrote in between, read again and redo the update.
 */
export async function recordStrategyOutcome(
  state: SharedState,
  decision: DecisionRecord,
  outcome: StrategyOutcome,
): Promise<{ counted: boolean; reward: number; arm?: ArmCounts }> {
  const r = reward(outcome);
  if (decision.choice === "give_up") return { counted: false, reward: r };
  const arm = decision.choice;
  const key = decision.banditKey;
  const id = `${decision.seed}@${decision.decidedAt}`;
  for (let i = 0; i < CAS_TRIES; i++) {
    const { state: now, version } = await readBandit(state, key);
    if (now.recorded.includes(id)) return { counted: false, reward: r, arm: now.arms[arm] };
    const next = updatedBandit(now, key, arm, r, id, new Date().toISOString());
    if ((await state.put(BANDIT_NAMESPACE, banditKeyString(key), next, version)) !== null) return { counted: true, reward: r, arm: next.arms[arm] };
    // Another writer came first: back off a little (jittered, so two losers do not collide again).
    await new Promise((res) => setTimeout(res, Math.random() * 5 * (i + 1)));
  }
  throw new SluiceError("CONFLICT", `the strategy bandit for ${banditKeyString(key)} kept changing under ${CAS_TRIES} attempts to record an outcome`, {
    retryable: true,
  });
}

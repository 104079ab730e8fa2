/**
 * A circuit breaker per source, kept in the shared state (namespace `circuit-breaker`, key: the
 * source without credentials, source-key.ts), so it holds across runs, processes and a fleet of
 * workers on one store — unlike in-memory breakers (opossum, cockatiel), which forget on every
 * `sluice run`.
 *
 *   closed ──N failures in a row──▶ open ──cool-down over──▶ half-open (one probe let through)
 *     ▲                              ▲                           │
 *     └──────── probe succeeds ──────┼───────────────────────────┤
 *                                    └──────── probe fails ──────┘
 *
 * Every change is a compare-and-set on the record's version (SharedState.put returns null when
 * another writer came first: read again and decide again), so two processes checking the same
 * open breaker after its cool-down cannot both probe: one claims the probe, the other is refused.
 * A probe whose process died would hold the half-open breaker shut forever; after
 * `probeTimeoutMs` another caller may probe instead.
 */
import { SluiceError } from "../../errors.js";
import { formatDuration } from "../../spec/duration.js";
import type { SharedState } from "../types.js";
import type { FailureClass } from "./contract.js";
import { sourceKey } from "./source-key.js";

export const BREAKER_NAMESPACE = "circuit-breaker";

export interface BreakerOptions {
  /** Failures in a row that open the breaker. Default 5. */
  failures?: number;
  /** How long an open breaker refuses before it lets one probe through. Default 60 s. */
  coolDownMs?: number;
  /** How long a half-open breaker waits for its probe before another caller may probe. Default 10 min. */
  probeTimeoutMs?: number;
}

export const BREAKER_DEFAULTS: Required<BreakerOptions> = { failures: 5, coolDownMs: 60_000, probeTimeoutMs: 600_000 };

export type BreakerState = "closed" | "open" | "half-open";

/** The stored record (plain JSON). */
export interface BreakerRecord {
  source: string;
  state: BreakerState;
  /** Failures in a row, counted since the last success. */
  failures: number;
  /** When it last opened (ISO); null while closed. */
  openedAt: string | null;
  /** Half-open: when the probe was let through. */
  probeAt: string | null;
  lastFailureAt: string | null;
  lastSuccessAt: string | null;
  /** The class of the last failure counted, for the refusal's evidence. */
  lastClass: FailureClass | null;
  /** How many times it has opened. */
  trips: number;
}

export interface BreakerCheck {
  allowed: boolean;
  state: BreakerState;
  source: string;
  openedAt: string | null;
  failures: number;
  /** This caller is the half-open breaker's one probe: report its outcome. */
  probe: boolean;
  /** When a refused caller may next get through (ISO). */
  retryAt: string | null;
  lastClass: FailureClass | null;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** May this caller contact the source now? Claims the probe when the cool-down is over. */
export async function checkBreaker(state: SharedState, source: string, now: number = Date.now(), options: BreakerOptions = {}): Promise<BreakerCheck> {
  const o = { ...BREAKER_DEFAULTS, ...options };
  const key = sourceKey(source);
  return update(state, key, (rec) => {
    const verdict = (allowed: boolean, r: BreakerRecord | undefined, probe: boolean, retryAt: number | null): BreakerCheck => ({
      allowed,
      state: r?.state ?? "closed",
      source: key,
      openedAt: r?.openedAt ?? null,
      failures: r?.failures ?? 0,
      probe,
      retryAt: retryAt === null ? null : iso(retryAt),
      lastClass: r?.lastClass ?? null,
    });
    if (!rec || rec.state === "closed") return { result: verdict(true, rec, false, null) };
    if (rec.state === "open") {
      const until = Date.parse(rec.openedAt ?? iso(now)) + o.coolDownMs;
      if (now < until) return { result: verdict(false, rec, false, until) };
      const next: BreakerRecord = { ...rec, state: "half-open", probeAt: iso(now) };
      return { write: next, result: verdict(true, next, true, null) };
    }
    const probeUntil = rec.probeAt ? Date.parse(rec.probeAt) + o.probeTimeoutMs : now;
    if (now < probeUntil) return { result: verdict(false, rec, false, probeUntil) };
    const next: BreakerRecord = { ...rec, probeAt: iso(now) };
    return { write: next, result: verdict(true, next, true, null) };
  });
}

/**
 * Record how contacting the source went. A success closes the breaker; a failure counts, opens a
 * closed breaker at `failures` in a row, and re-opens a half-open one (its probe failed).
 */
export async function recordSourceOutcome(
  state: SharedState,
  source: string,
  ok: boolean,
  now: number = Date.now(),
  options: BreakerOptions & { class?: FailureClass } = {},
): Promise<BreakerRecord> {
  const o = { ...BREAKER_DEFAULTS, ...options };
  const key = sourceKey(source);
  return update(state, key, (rec) => {
    const cur = rec ?? closed(key);
    if (ok) {
      const next: BreakerRecord = { ...cur, state: "closed", failures: 0, openedAt: null, probeAt: null, lastSuccessAt: iso(now) };
      return { write: next, result: next };
    }
    const failures = cur.failures + 1;
    const opens = cur.state === "half-open" || (cur.state === "closed" && failures >= o.failures);
    const next: BreakerRecord = {
      ...cur,
      failures,
      lastFailureAt: iso(now),
      lastClass: options.class ?? cur.lastClass,
      ...(opens ? { state: "open" as const, openedAt: iso(now), probeAt: null, trips: cur.trips + 1 } : {}),
    };
    return { write: next, result: next };
  });
}

/** The probe ended without saying anything about the source (cancelled, bad configuration): let another caller probe. */
export async function releaseProbe(state: SharedState, source: string): Promise<void> {
  await update(state, sourceKey(source), (rec) =>
    rec?.state === "half-open" && rec.probeAt ? { write: { ...rec, probeAt: null }, result: undefined } : { result: undefined },
  );
}

/** The error a refused caller fails with: a source failure (NETWORK_ERROR) that retrying now cannot help. */
export function breakerOpenError(check: BreakerCheck, options: BreakerOptions = {}): SluiceError {
  const o = { ...BREAKER_DEFAULTS, ...options };
  const why =
    check.state === "open"
      ? `it opened at ${check.openedAt} after ${check.failures} failures in a row and lets one probe through after its cool-down of ${formatDuration(o.coolDownMs)}, at ${check.retryAt}`
      : `a probe is testing the source since the cool-down ended; the next caller may try at ${check.retryAt} at the latest`;
  return new SluiceError("NETWORK_ERROR", `The circuit breaker of source ${check.source} is ${check.state}, so it was not contacted: ${why}.`, {
    retryable: false,
    details: {
      circuit: check.state,
      source: check.source,
      openedAt: check.openedAt,
      failures: check.failures,
      retryAt: check.retryAt,
      ...(check.lastClass ? { lastClass: check.lastClass } : {}),
    },
  });
}

function closed(source: string): BreakerRecord {
  return { source, state: "closed", failures: 0, openedAt: null, probeAt: null, lastFailureAt: null, lastSuccessAt: null, lastClass: null, trips: 0 };
}

/** Read, decide, compare-and-set; again from the read when another writer came first. */
async function update<T>(state: SharedState, key: string, decide: (rec: BreakerRecord | undefined) => { write?: BreakerRecord; result: T }): Promise<T> {
  for (let i = 0; i < 50; i++) {
    const cur = await state.get(BREAKER_NAMESPACE, key);
    const { write, result } = decide(cur ? (cur.value as BreakerRecord) : undefined);
    if (!write) return result;
    if ((await state.put(BREAKER_NAMESPACE, key, write, cur?.version ?? 0)) !== null) return result;
  }
  throw new SluiceError("CONFLICT", `the circuit breaker of source ${key} changed under 50 writes in a row; giving up on this update`, { retryable: true });
}

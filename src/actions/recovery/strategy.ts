/**
 * data-fetch-retry/select_optimal_retry_strategy: read the failure analysis, apply the hard
 * guardrails (guardrails.ts), let the bandit (bandit.ts) choose among what is left, and write the
 * decision record a person and the later steps read: `<artifacts>/<step>/decision.json`.
 *
 * Seeded by the run id unless told otherwise, so replaying a run against the same bandit state
 * makes the same choice. The outcome is counted later, by the step that knows it
 * (recordStrategyOutcome), not here: choosing teaches the bandit nothing.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SluiceError } from "../../errors.js";
import { readStepDocument } from "../batch/dataset.js";
import { formatDuration, parseDuration } from "../../spec/duration.js";
import type { ActionContext, Outputs } from "../types.js";
import { chooseStrategy, type BanditKey } from "./bandit.js";
import { STRATEGIES, type DecisionRecord, type FailureAnalysis, type FailureEvidence, type Strategy, type StrategyConsidered } from "./contract.js";
import { guardrails, type Verdicts } from "./guardrails.js";
import { sourceKey } from "./source-key.js";

export interface SelectStrategyInput {
  analysis: string;
  strategies?: Strategy[];
  deadline?: string;
  fallbacks?: number | string | string[];
  seed?: string;
  source?: string | null;
}

/** When neither the step nor the run says: the resilient-fetch workflow's own bound. */
const DEFAULT_DEADLINE_MS = 2 * 3_600_000;
/** Evidence items kept in the record: the newest, enough to see a pattern. */
const EVIDENCE_KEPT = 20;

export async function selectOptimalRetryStrategy(input: SelectStrategyInput, ctx: ActionContext): Promise<Outputs> {
  const analysis = await readAnalysis(input.analysis);
  const cls = analysis.primaryClass;
  const evidence = analysis.failures
    .filter((f) => cls === null || f.class === cls)
    .map((f) => f.evidence)
    .sort((a, b) => (a.at ?? "").localeCompare(b.at ?? ""))
    .slice(-EVIDENCE_KEPT);
  const retryAfterSeconds = evidence.findLast((e) => e.retryAfterSeconds !== undefined)?.retryAfterSeconds;
  const deadlineMs = await deadlineOf(input, ctx);
  const verdicts = guardrails({ class: cls, retryAfterSeconds, deadlineMs, fallbacks: fallbackCount(input.fallbacks), strategies: input.strategies });

  const key: BanditKey = { source: sourceOf(input, analysis, ctx), class: cls ?? "none" };
  const seed = input.seed ?? ctx.runId;
  const allowed = STRATEGIES.filter((s) => verdicts[s].allowed);
  const picked = await chooseStrategy(ctx.state, key, allowed, seed);
  const considered = picked.considered.map((c) => ({ ...c, ...verdicts[c.strategy] }));
  const waitMs = picked.choice === "wait_retry_after" && retryAfterSeconds !== undefined ? Math.round(retryAfterSeconds * 1000) : undefined;

  const record: DecisionRecord = {
    kind: "sluice.dev/recovery-decision-v1",
    banditKey: key,
    class: cls,
    evidence,
    considered,
    choice: picked.choice,
    why: explain(key, cls, evidence, considered, picked.choice, waitMs, verdicts, picked.coldStart),
    ...(waitMs !== undefined ? { waitMs } : {}),
    seed,
    decidedAt: new Date().toISOString(),
  };
  const dir = join(ctx.artifactsDir, ctx.step);
  await mkdir(dir, { recursive: true });
  const path = join(dir, "decision.json");
  await writeFile(`${path}.tmp`, JSON.stringify(record, null, 2));
  await rename(`${path}.tmp`, path);
  ctx.log.info("recovery strategy chosen", { choice: record.choice, class: cls, source: key.source, why: record.why });
  return { decision: path, choice: record.choice, class: cls, why: record.why, ...(waitMs !== undefined ? { waitMs } : {}) };
}

async function readAnalysis(ref: string): Promise<FailureAnalysis> {
  const doc = (await readStepDocument(ref, "failure analysis", "pass the analysis output of analyze_failure_patterns")) as Partial<FailureAnalysis> | null;
  if (doc?.kind !== "sluice.dev/failure-analysis-v1" || !Array.isArray(doc.failures))
    throw new SluiceError("BAD_INPUT", `${ref} is not a failure analysis (kind sluice.dev/failure-analysis-v1)`);
  return { ...doc, primaryClass: doc.primaryClass ?? null } as FailureAnalysis;
}

/** The decision record a later step was handed (discovery, reconstruction, storage); BAD_INPUT when it is not one. */
export async function readDecisionRecord(path: string): Promise<DecisionRecord> {
  try {
    const doc = JSON.parse(await readFile(path, "utf8")) as DecisionRecord;
    if (doc.kind !== "sluice.dev/recovery-decision-v1") throw new Error("not a decision record");
    return doc;
  } catch (err) {
    throw new SluiceError("BAD_INPUT", `decision ${path} cannot be read as a decision record: ${(err as Error).message}`, { retryable: false });
  }
}

/** The step's deadline, else what is left of the run's timeout, else the workflow's 2 h bound. */
async function deadlineOf(input: SelectStrategyInput, ctx: ActionContext): Promise<number> {
  if (input.deadline !== undefined) {
    const ms = parseDuration(input.deadline);
    if (ms === undefined) throw new SluiceError("BAD_INPUT", `deadline ${input.deadline} is not a duration such as 30m or 2h`);
    return ms;
  }
  const at = (await ctx.history.run(ctx.runId))?.deadlineAt;
  return at ? Math.max(0, Date.parse(at) - Date.now()) : DEFAULT_DEADLINE_MS;
}

/** A count, or the fallback list itself (a comma-separated param or an array) to count. */
function fallbackCount(f: SelectStrategyInput["fallbacks"]): number | undefined {
  if (f === undefined || typeof f === "number") return f;
  const list = typeof f === "string" ? f.split(",") : f;
  return list.map((s) => s.trim()).filter(Boolean).length;
}

/** The bandit learns per source: the step's, else the failed run's, else the recovery run's primary. */
function sourceOf(input: SelectStrategyInput, a: FailureAnalysis, ctx: ActionContext): string {
  const text = (v: unknown) => (typeof v === "string" && v.trim() ? v.trim() : undefined);
  const raw = text(input.source) ?? text(a.failedRun?.params?.source) ?? text(ctx.params.primary);
  // The store, the record and logs name a source without its credentials.
  return raw !== undefined ? sourceKey(raw) : (a.sources?.[0]?.source ?? "unknown");
}

/** One failure's facts in a few words: `HTTP 503 on page 4`, `1200 of 5000 bytes`. */
export function describeEvidence(e: FailureEvidence): string {
  const parts = [e.status !== undefined ? `HTTP ${e.status}` : e.code];
  if (e.retryAfterSeconds !== undefined) parts.push(`Retry-After ${e.retryAfterSeconds} s`);
  if (e.bytesDeclared !== undefined && e.bytesReceived !== undefined) parts.push(`${e.bytesReceived} of ${e.bytesDeclared} bytes`);
  if (e.columns) {
    const c = e.columns;
    const cols = [
      c.missing.length ? `missing ${c.missing.join(", ")}` : "",
      c.added.length ? `added ${c.added.join(", ")}` : "",
      c.retyped.length ? `retyped ${c.retyped.join(", ")}` : "",
    ];
    parts.push(cols.filter(Boolean).join("; "));
  }
  if (e.page !== undefined) parts.push(`on page ${e.page}`);
  if (e.latencyMs !== undefined) parts.push(`after ${formatDuration(e.latencyMs)}`);
  return parts.filter(Boolean).join(" ");
}

const p2 = (n: number) => n.toFixed(2);

function explain(
  key: BanditKey,
  cls: DecisionRecord["class"],
  evidence: FailureEvidence[],
  considered: StrategyConsidered[],
  choice: Strategy,
  waitMs: number | undefined,
  verdicts: Verdicts,
  coldStart: boolean,
): string {
  const last = evidence.at(-1);
  const what = cls
    ? `${cls} on ${key.source}: ${evidence.length} failure${evidence.length === 1 ? "" : "s"}${last ? `, the last ${describeEvidence(last)}` : ""}.`
    : `No failure was classified for ${key.source}.`;
  const allowed = considered.filter((c) => c.allowed && c.strategy !== "give_up");
  const chosen = considered.find((c) => c.strategy === choice)!;
  const wait = waitMs !== undefined ? ` (wait ${formatDuration(waitMs)})` : "";
  let how: string;
  if (choice === "give_up") how = "Giving up: the guardrails allow no strategy that could recover the data.";
  else if (allowed.length === 1)
    how = `Chose ${choice}${wait}, the only strategy the guardrails allow (estimated success ${p2(chosen.estimatedSuccess)}, from alpha ${p2(chosen.alpha)}, beta ${p2(chosen.beta)}).`;
  else if (coldStart) {
    const others = allowed
      .filter((c) => c.strategy !== choice)
      .sort((a, b) => b.estimatedSuccess - a.estimatedSuccess)
      .map((c) => `${c.strategy} ${p2(c.estimatedSuccess)}`);
    how = `Chose ${choice}${wait}: no outcome has been learnt for this source and class yet, so the rule-based prior decides (estimated success ${p2(chosen.estimatedSuccess)}, against ${others.join(", ")}).`;
  } else {
    const others = allowed
      .filter((c) => c.strategy !== choice)
      .sort((a, b) => b.estimatedSuccess - a.estimatedSuccess)
      .map((c) => `${c.strategy} ${p2(c.estimatedSuccess)} (drew ${p2(c.sample ?? 0)})`);
    how = `Chose ${choice}${wait}: estimated success ${p2(chosen.estimatedSuccess)} (drew ${p2(chosen.sample ?? 0)}), against ${others.join(", ")}.`;
  }
  // The exclusions that decided something, grouped by reason; the routine ones stay in `considered`.
  const byReason = new Map<string, Strategy[]>();
  for (const s of STRATEGIES) {
    const r = verdicts[s].excludedBecause;
    if (!r || s === "give_up" || r.startsWith("not among the step's strategies") || r.startsWith("only for rate_limited")) continue;
    byReason.set(r, [...(byReason.get(r) ?? []), s]);
  }
  const excluded = [...byReason].map(([r, ss]) => `${ss.join(", ")}: ${r}`);
  return [what, how, excluded.length ? `Excluded ${excluded.join("; ")}.` : ""].filter(Boolean).join(" ");
}

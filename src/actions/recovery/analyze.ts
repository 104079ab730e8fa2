/**
 * data-fetch-retry/analyze_failure_patterns: what went wrong, from the store's history.
 *
 * Reads the failed run (its id from the input, else from the platform event that started this
 * run) and every run of its workflow in the window; classifies every failed attempt
 * (classify.ts) and sums, per source, how its attempts went: failure rate, failures in a row,
 * last success, latency p50/p99 (attempt durations) and the change-point verdict
 * (changepoint.ts: a new incident, chronic flakiness, or healthy). The result is a
 * FailureAnalysis document (contract.ts) in `<artifacts>/<step>/analysis.json`; the outputs
 * carry its path and a summary.
 *
 * A source's outcomes are the attempts of the steps that contact it: the collectors and the
 * source checks before them (data-collector, data-connector, data-scheduler, or an action named
 * like collect/fetch/source), or any step that recorded a `source` in its outputs. Its name is
 * that output, else the run's `source` param, without credentials (source-key.ts). Failures of
 * other steps (a destination refusing rows) are classified and counted but say nothing about
 * the source. An open circuit breaker's refusal did not contact the source either: counted as a
 * failure, left out of the source's outcomes. The engine's own verdicts (cancelled, upstream
 * failed, lost lease) are not failures of anything and are left out.
 *
 * It is also the one place where the recovery's "default: the failed run's" is decided: the
 * outputs `primary`, `destination`, `table` and `schema` are the inputs when given, else the
 * failed run's params `source`, `destination` (else the embedded warehouse), `table` and
 * `schema` (the rows are typed as the failed run would have typed them); and `manifest` is
 * the page manifest the failed run's HTTP collection left (a copy in this step's folder, its
 * `file`s still naming the stored pages), so reconstruction starts where the primary stopped.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SluiceError } from "../../errors.js";
import { parseDuration } from "../../spec/duration.js";
import type { ActionContext, Outputs, PastError, PastRun } from "../types.js";
import { readPageManifest } from "../batch/page-checkpoint.js";
import { defaultDestination } from "../batch/store.js";
import type { ClassifiedFailure, FailureAnalysis, FailureClass, SourceHealth } from "./contract.js";
import { classifyFailure, isSourceFailure, refusedByBreaker } from "./classify.js";
import { detectChangePoint } from "./changepoint.js";
import { sourceKey } from "./source-key.js";

export interface AnalyzeInput {
  workflow?: string;
  runId?: string;
  /** How far back to read, a duration (`24h`, `90m`). Default 24h. */
  window?: string;
  /** Only this source's failures and health. */
  source?: string;
  /** The recovery's primary source, destination and table: given, else the failed run's. */
  primary?: string;
  destination?: string;
  table?: string;
  schema?: string;
}

/** Runs read from the window at most: the newest, which say most about now. */
const MAX_RUNS = 500;
/** Failures listed in the document at most (the newest); counts cover all of them. */
const MAX_LISTED = 1000;

interface Outcome {
  ok: boolean;
  at: string;
  latencyMs: number | null;
}

export async function analyzeFailurePatterns(input: AnalyzeInput, ctx: ActionContext): Promise<Outputs> {
  const windowText = input.window ?? "24h";
  const windowMs = parseDuration(windowText);
  if (windowMs === undefined || windowMs <= 0)
    throw new SluiceError("BAD_CONFIG", `window ${JSON.stringify(windowText)} is not a duration; write it like 24h, 90m or 7d`, { retryable: false });
  const until = new Date();
  const since = new Date(until.getTime() - windowMs);

  const self = await ctx.history.run(ctx.runId);
  const event = eventData(self?.trigger ?? null);
  const failedId = text(input.runId) ?? event.runId;
  let failed: PastRun | undefined;
  if (failedId) {
    failed = await ctx.history.run(failedId);
    if (!failed) throw new SluiceError("NOT_FOUND", `run ${failedId} is not in the store: there is no failed run to analyse`, { retryable: false });
  }
  const workflow = text(input.workflow) ?? failed?.workflow ?? event.workflow;
  const runs = (await ctx.history.runs({ ...(workflow ? { workflow } : {}), since: since.toISOString(), limit: MAX_RUNS })).filter(
    // Without a workflow every run counts, except this recovery workflow's own.
    (r) => r.id !== ctx.runId && (workflow !== undefined || r.workflow !== ctx.workflow),
  );
  if (failed && !runs.some((r) => r.id === failed.id)) runs.push(failed);
  runs.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  const only = text(input.source) ? sourceKey(input.source!) : undefined;

  const failures: ClassifiedFailure[] = [];
  const outcomes = new Map<string, Outcome[]>();
  for (const run of runs)
    for (const step of run.steps) {
      const source = sourceOf(run, step);
      if (only && source !== only) continue;
      const contacts = source !== undefined && touchesSource(step);
      for (const a of [...step.attempts].sort((x, y) => x.n - y.n)) {
        if (!a.endedAt) continue;
        const latencyMs = Math.max(0, Date.parse(a.endedAt) - Date.parse(a.startedAt));
        if (a.status === "succeeded") {
          if (contacts) push(outcomes, source, { ok: true, at: a.endedAt, latencyMs });
          continue;
        }
        if ((a.status !== "failed" && a.status !== "timedOut") || !a.error || !isSourceFailure(a.error)) continue;
        const c = classifyFailure(a.error, { runId: run.id, step: step.name, attempt: a.n, at: a.endedAt, latencyMs });
        failures.push(c);
        if (contacts && !refusedByBreaker(a.error)) push(outcomes, source, { ok: false, at: a.endedAt, latencyMs });
      }
    }
  failures.sort((a, b) => a.evidence.at.localeCompare(b.evidence.at));

  const counts: Partial<Record<FailureClass, number>> = {};
  for (const f of failures) counts[f.class] = (counts[f.class] ?? 0) + 1;
  const sources = [...outcomes]
    .map(([source, list]) => healthOf(source, list))
    .sort((a, b) => b.failureRate - a.failureRate || a.source.localeCompare(b.source));
  const root = failed ? rootFailure(failed) : undefined;
  const primaryClass = root?.classified.class ?? mostFrequent(failures);

  const analysis: FailureAnalysis = {
    kind: "sluice.dev/failure-analysis-v1",
    workflow: workflow ?? "*",
    runId: failed?.id ?? null,
    window: { since: since.toISOString(), until: until.toISOString() },
    primaryClass,
    failures: failures.slice(-MAX_LISTED),
    counts,
    sources,
    failedRun: failed
      ? {
          id: failed.id,
          workflow: failed.workflow,
          params: failed.params,
          step: root?.step ?? null,
          error: root
            ? { code: root.error.code, message: root.error.message }
            : failed.error
              ? { code: failed.error.code, message: failed.error.message }
              : null,
        }
      : null,
  };
  const dir = join(ctx.artifactsDir, ctx.step);
  await mkdir(dir, { recursive: true });
  const path = join(dir, "analysis.json");
  await writeFile(path, JSON.stringify(analysis, null, 2) + "\n");

  const primarySource = failed ? sourceOfRun(failed, root?.step) : undefined;
  const resolved = await resolveTargets(input, failed, root?.step, dir, ctx.home);
  ctx.log.info("failure analysis", {
    workflow: analysis.workflow,
    failedRun: analysis.runId,
    primaryClass,
    failures: failures.length,
    sources: sources.length,
  });
  return {
    analysis: path,
    primaryClass,
    ...(root?.classified.why ? { why: root.classified.why } : {}),
    failures: failures.length,
    counts,
    sources: sources.map((s) => ({
      source: s.source,
      attempts: s.attempts,
      failureRate: s.failureRate,
      consecutiveFailures: s.consecutiveFailures,
      lastSuccessAt: s.lastSuccessAt,
      verdict: s.changePoint.verdict,
    })),
    failedRun: failed?.id ?? null,
    failedSource: primarySource ?? null,
    ...resolved,
  };
}

/**
 * What the recovery works on: each given input, else the failed run's param; the destination
 * defaults further to the embedded warehouse, as the standard workflow's does. `manifest`: the
 * failed run's page manifest copied into `dir` (the failing step's first, else any step's).
 */
async function resolveTargets(
  input: AnalyzeInput,
  failed: PastRun | undefined,
  failedStep: string | undefined,
  dir: string,
  home: string,
): Promise<{ primary: string | null; destination: string; table: string | null; schema: string | null; manifest: string | null }> {
  const param = (name: string) => text(failed?.params[name]);
  let manifest: string | null = null;
  if (failed) {
    const artifacts = join(home, "runs", failed.id, "artifacts");
    const names = [...(failedStep ? [failedStep] : []), ...failed.steps.map((s) => s.name).filter((n) => n !== failedStep)];
    for (const name of names) {
      const m = await readPageManifest(artifacts, name);
      if (!m || m.pages.length === 0) continue;
      manifest = join(dir, "failed-run-manifest.json");
      await writeFile(manifest, JSON.stringify({ ...m, step: name, runId: failed.id }, null, 2) + "\n");
      break;
    }
  }
  return {
    primary: text(input.primary) ?? param("source") ?? null,
    destination: text(input.destination) ?? param("destination") ?? defaultDestination(home),
    table: text(input.table) ?? param("table") ?? null,
    schema: text(input.schema) ?? param("schema") ?? null,
    manifest,
  };
}

/** The platform event's payload (triggers/platform.ts): the failed run and its workflow. */
function eventData(trigger: PastRun["trigger"]): { runId?: string; workflow?: string } {
  if (trigger?.type !== "event" || !trigger.data || typeof trigger.data !== "object") return {};
  const d = trigger.data as Record<string, unknown>;
  return { ...(text(d.runId) ? { runId: text(d.runId)! } : {}), ...(text(d.workflow) ? { workflow: text(d.workflow)! } : {}) };
}

/** A non-empty string, else undefined (a `${{ params.runId }}` left empty means "not given"). */
function text(v: unknown): string | undefined {
  return typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;
}

type PastStep = PastRun["steps"][number];

const SOURCE_AGENTS = /^(data-collector|data-connector|data-scheduler)\//;

function touchesSource(step: PastStep): boolean {
  if (typeof step.outputs?.source === "string") return true;
  return step.uses !== undefined && (SOURCE_AGENTS.test(step.uses) || /collect|fetch|source/.test(step.uses.split("/")[1] ?? ""));
}

function sourceOf(run: PastRun, step: PastStep): string | undefined {
  const out = step.outputs?.source;
  if (typeof out === "string" && out) return sourceKey(out);
  const param = run.params.source;
  return typeof param === "string" && param ? sourceKey(param) : undefined;
}

/** The source a failed run was reading: its failing step's, else its param. */
function sourceOfRun(run: PastRun, step: string | undefined): string | undefined {
  const s = run.steps.find((x) => x.name === step);
  return (s ? sourceOf(run, s) : undefined) ?? (typeof run.params.source === "string" && run.params.source ? sourceKey(run.params.source) : undefined);
}

function push(map: Map<string, Outcome[]>, key: string, o: Outcome): void {
  const list = map.get(key);
  if (list) list.push(o);
  else map.set(key, [o]);
}

/**
 * The failure that made the run fail: the earliest-ending failed step whose error is a real
 * failure (not `UPSTREAM_FAILED`), classified from its last attempt's error (which carries the
 * details) or else the step's.
 */
function rootFailure(run: PastRun): { step: string; error: PastError; classified: ReturnType<typeof classifyFailure> } | undefined {
  const candidates = run.steps
    .filter((s) => s.status === "failed" && s.error && isSourceFailure(s.error))
    .map((s) => {
      const last = [...s.attempts].sort((a, b) => b.n - a.n).find((a) => a.error && isSourceFailure(a.error));
      return { step: s, attempt: last, endedAt: last?.endedAt ?? run.endedAt ?? run.createdAt };
    })
    .sort((a, b) => a.endedAt.localeCompare(b.endedAt));
  const first = candidates[0];
  if (!first) return undefined;
  const error = first.attempt?.error ?? first.step.error!;
  const latencyMs = first.attempt?.endedAt ? Date.parse(first.attempt.endedAt) - Date.parse(first.attempt.startedAt) : undefined;
  const classified = classifyFailure(error, {
    runId: run.id,
    step: first.step.name,
    attempt: first.attempt?.n ?? 0,
    at: first.endedAt,
    ...(latencyMs !== undefined ? { latencyMs } : {}),
  });
  return { step: first.step.name, error, classified };
}

/** The most frequent class; a tie goes to the one seen last. */
function mostFrequent(failures: ClassifiedFailure[]): FailureClass | null {
  const tally = new Map<FailureClass, { n: number; last: number }>();
  failures.forEach((f, i) => {
    const t = tally.get(f.class) ?? { n: 0, last: -1 };
    tally.set(f.class, { n: t.n + 1, last: i });
  });
  let best: FailureClass | null = null;
  let bestT = { n: 0, last: -1 };
  for (const [cls, t] of tally)
    if (t.n > bestT.n || (t.n === bestT.n && t.last > bestT.last)) {
      best = cls;
      bestT = t;
    }
  return best;
}

function healthOf(source: string, list: Outcome[]): SourceHealth {
  const ordered = [...list].sort((a, b) => a.at.localeCompare(b.at));
  const failures = ordered.filter((o) => !o.ok).length;
  let consecutive = 0;
  while (consecutive < ordered.length && !ordered[ordered.length - 1 - consecutive]!.ok) consecutive++;
  const lastOk = ordered.filter((o) => o.ok).at(-1);
  const latencies = ordered
    .map((o) => o.latencyMs)
    .filter((x): x is number => x !== null)
    .sort((a, b) => a - b);
  const cp = detectChangePoint(
    ordered.map((o) => (o.ok ? 0 : 1)),
    ordered.map((o) => o.at),
  );
  return {
    source,
    attempts: ordered.length,
    failures,
    failureRate: Math.round((failures / ordered.length) * 10_000) / 10_000,
    consecutiveFailures: consecutive,
    lastSuccessAt: lastOk?.at ?? null,
    latencyP50Ms: percentile(latencies, 0.5),
    latencyP99Ms: percentile(latencies, 0.99),
    changePoint: cp,
  };
}

/** Nearest-rank percentile of sorted values; null for none. */
export function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * What `sluice status` adds for a recovery run (the resilient-fetch workflow): the strategy
 * decision with every strategy's probabilities, the gap ledger before and after, and the
 * conflict count. It reads the documents the steps named in their outputs rather than anything
 * kept in the store, so status shows exactly the record the steps decided on.
 *
 * Outputs looked for, in step order:
 * - `decision`: path of a DecisionRecord (select_optimal_retry_strategy);
 * - `gapsBefore` / `gapsAfter`: KeyRange arrays, or `gapLedgerBefore` / `gapLedgerAfter`: paths of
 *   GapLedger documents; a plain `gapLedger` path is "before" on the first step that has one and
 *   "after" on a later one;
 * - `conflictReport`: path of a ConflictReport, else `conflicts` (a count or a list);
 * - `learned` and `outcome` (validate_and_store_recovered_data): the strategy's outcome as the
 *   bandit counted it.
 * A run with none of these prints nothing extra.
 */
import { readFile } from "node:fs/promises";
import pc from "picocolors";
import type { DecisionRecord, GapLedger, KeyRange } from "../actions/recovery/contract.js";
import type { RunDetail } from "../engine/index.js";

interface Gaps {
  step: string;
  gaps: KeyRange[];
  missing: number;
  path?: string;
}

export interface RecoverySummary {
  decision?: { step: string; path: string; record?: DecisionRecord; problem?: string };
  before?: Gaps | { step: string; path: string; problem: string };
  after?: Gaps | { step: string; path: string; problem: string };
  conflicts?: { step: string; count: number; path?: string } | { step: string; path: string; problem: string };
  /** The strategy's outcome as counted into the bandit by the storing step. */
  learned?: { step: string; strategy: string; succeeded: boolean; reward: number; counted: boolean; rows: number; seconds: number };
}

const RANGES_SHOWN = 8;

async function readJson<T>(path: string, kind: string): Promise<{ doc: T } | { problem: string }> {
  try {
    const doc = JSON.parse(await readFile(path, "utf8")) as { kind?: unknown };
    return doc?.kind === kind ? { doc: doc as T } : { problem: `${path} is not a ${kind} document` };
  } catch (err) {
    return { problem: `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
}

const isRanges = (v: unknown): v is KeyRange[] => Array.isArray(v) && v.every((r) => r && typeof r === "object" && "from" in r && "to" in r);

/** Keys in the ranges: inclusive integer spans, or one partition per range when not numeric. */
function keysIn(ranges: KeyRange[]): number {
  return ranges.reduce((n, r) => n + (typeof r.from === "number" && typeof r.to === "number" ? r.to - r.from + 1 : 1), 0);
}

async function gapsFrom(step: string, value: unknown): Promise<RecoverySummary["before"]> {
  if (isRanges(value)) return { step, gaps: value, missing: keysIn(value) };
  if (typeof value !== "string") return undefined;
  const got = await readJson<GapLedger>(value, "sluice.dev/gap-ledger-v1");
  return "doc" in got ? { step, gaps: got.doc.gaps, missing: got.doc.missing, path: value } : { step, path: value, problem: got.problem };
}

export async function recoverySummary(d: RunDetail): Promise<RecoverySummary> {
  const out: RecoverySummary = {};
  for (const s of d.steps) {
    const o = s.outputs;
    if (!o) continue;
    if (typeof o.decision === "string" && !out.decision) {
      const got = await readJson<DecisionRecord>(o.decision, "sluice.dev/recovery-decision-v1");
      out.decision = "doc" in got ? { step: s.name, path: o.decision, record: got.doc } : { step: s.name, path: o.decision, problem: got.problem };
    }
    // The ledger document first (it is the record, with the exact count), else the ranges.
    if (o.gapsBefore !== undefined || o.gapLedgerBefore !== undefined) out.before = await gapsFrom(s.name, o.gapLedgerBefore ?? o.gapsBefore);
    if (o.gapsAfter !== undefined || o.gapLedgerAfter !== undefined) out.after = await gapsFrom(s.name, o.gapLedgerAfter ?? o.gapsAfter);
    const learned = o.learned as { strategy?: unknown; reward?: unknown; counted?: unknown } | undefined;
    const outcome = o.outcome as { succeeded?: unknown; rowsRecovered?: unknown; seconds?: unknown } | undefined;
    if (learned && typeof learned.strategy === "string" && outcome)
      out.learned = {
        step: s.name,
        strategy: learned.strategy,
        succeeded: outcome.succeeded === true,
        reward: Number(learned.reward),
        counted: learned.counted === true,
        rows: Number(outcome.rowsRecovered ?? 0),
        seconds: Number(outcome.seconds ?? 0),
      };
    if (o.gapLedger !== undefined) {
      if (!out.before) out.before = await gapsFrom(s.name, o.gapLedger);
      else if (out.before.step !== s.name) out.after = await gapsFrom(s.name, o.gapLedger);
    }
    if (typeof o.conflictReport === "string") {
      const got = await readJson<{ conflicts: unknown[] }>(o.conflictReport, "sluice.dev/conflict-report-v1");
      out.conflicts =
        "doc" in got && Array.isArray(got.doc.conflicts)
          ? { step: s.name, count: got.doc.conflicts.length, path: o.conflictReport }
          : { step: s.name, path: o.conflictReport, problem: "problem" in got ? got.problem : `${o.conflictReport} lists no conflicts array` };
    } else if (typeof o.conflicts === "number" || Array.isArray(o.conflicts)) {
      out.conflicts = { step: s.name, count: typeof o.conflicts === "number" ? o.conflicts : o.conflicts.length };
    }
  }
  return out;
}

const range = (r: KeyRange) => (r.from === r.to ? `[${r.from}]` : `[${r.from}–${r.to}]`);
const p2 = (n: number | undefined) => (n === undefined ? "" : n.toFixed(2));

function gapLine(label: string, g: NonNullable<RecoverySummary["before"]>): string {
  if ("problem" in g) return `${label}: ${pc.yellow(g.problem)}`;
  if (g.gaps.length === 0) return `${label}: ${pc.green("none")} (${g.step})`;
  const shown = g.gaps.slice(0, RANGES_SHOWN).map(range).join(", ");
  const more = g.gaps.length > RANGES_SHOWN ? `, … ${g.gaps.length - RANGES_SHOWN} more` : "";
  return `${label}: ${g.missing} missing in ${g.gaps.length} range${g.gaps.length === 1 ? "" : "s"} ${shown}${more} (${g.step})`;
}

/** The lines status prints for a recovery run; none for any other run. */
export function recoveryLines(s: RecoverySummary): string[] {
  const lines: string[] = [];
  if (s.decision) {
    const r = s.decision.record;
    if (!r) lines.push(`strategy (${s.decision.step}): ${pc.yellow(s.decision.problem ?? "")}`);
    else {
      lines.push(
        `strategy (${s.decision.step}): ${pc.bold(r.choice)}${r.waitMs !== undefined ? ` after ${Math.round(r.waitMs / 1000)} s` : ""}  class ${r.class ?? "none"}`,
      );
      lines.push(`  why: ${r.why}`);
      const head = ["", "STRATEGY", "P(SUCCESS)", "SAMPLE", "ALPHA", "BETA", "EXCLUDED BECAUSE"];
      const rows = r.considered.map((c) => [
        c.strategy === r.choice ? "→" : c.allowed ? " " : "✗",
        c.strategy,
        c.strategy === "give_up" ? "" : p2(c.estimatedSuccess),
        p2(c.sample),
        c.strategy === "give_up" ? "" : p2(c.alpha),
        c.strategy === "give_up" ? "" : p2(c.beta),
        c.excludedBecause ?? "",
      ]);
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
      const line = (cells: string[]) =>
        `  ${cells
          .map((c, i) => c.padEnd(widths[i]!))
          .join("  ")
          .trimEnd()}`;
      lines.push(pc.dim(line(head)), ...rows.map(line));
    }
  }
  if (s.before) lines.push(gapLine("gaps before", s.before));
  if (s.after) lines.push(gapLine("gaps after", s.after));
  if (s.conflicts) {
    const c = s.conflicts;
    lines.push("problem" in c ? `conflicts: ${pc.yellow(c.problem)}` : `conflicts: ${c.count}${c.path ? ` (${c.path})` : ""}`);
  }
  if (s.learned) {
    const l = s.learned;
    lines.push(
      `learned (${l.step}): ${l.strategy} ${l.succeeded ? pc.green("succeeded") : pc.red("failed")}, ${l.rows} rows in ${l.seconds.toFixed(1)} s, reward ${l.reward.toFixed(2)}${l.counted ? "" : " (counted before)"}`,
    );
  }
  return lines;
}

/**
 * The documents a run's steps named in their outputs, read for the Run view: a recovery run's
 * decision record, gap ledgers and conflict report (the same outputs `sluice status` reads, see
 * cli/recovery-status.ts), a secure run's classification (classify_sensitive_data's
 * `classification` path, else its `columns` output), and the run's audit trail with the verdict
 * `sluice audit verify` would give for the whole log.
 *
 * The server may not import actions (layers), so the documents are read as untrusted JSON and
 * checked by their `kind`; only the fields shown are typed here. A missing or foreign file is a
 * problem line on the page, never an error page: the run itself is still worth seeing.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { KeyObject } from "node:crypto";
import { verifyChain, type AuditEntry, type ChainVerdict } from "../../crypto/audit-chain.js";
import { loadPublicKey, PUBLIC_KEY_FILE } from "../../crypto/audit-key.js";
import { auditKeyDir } from "../../engine/audit.js";
import type { AuditStore, StepRecord } from "../../store/types.js";

export interface Range {
  from: string | number;
  to: string | number;
}

export interface Considered {
  strategy: string;
  allowed: boolean;
  excludedBecause?: string;
  estimatedSuccess: number;
  sample?: number;
  alpha: number;
  beta: number;
}

export interface Decision {
  choice: string;
  class: string | null;
  why: string;
  waitMs?: number;
  considered: Considered[];
  decidedAt?: string;
}

export interface ConflictDoc {
  key: Record<string, unknown>;
  kept: { source: string; value: Record<string, unknown> };
  other: { source: string; value: Record<string, unknown> };
  fields: string[];
}

type Problem = { step: string; path: string; problem: string };
export type Gaps = { step: string; gaps: Range[]; missing: number; path?: string } | Problem;

export interface RecoveryDocs {
  decision?: { step: string; path: string; record: Decision } | Problem;
  before?: Gaps;
  after?: Gaps;
  conflicts?: { step: string; policy?: string; list?: ConflictDoc[]; count: number; path?: string } | Problem;
}

export interface ClassifiedColumn {
  name: string;
  class: string;
  share: number;
  sampled?: number;
  confident?: boolean;
  action: string;
}

export type Classification = { step: string; path?: string; columns: ClassifiedColumn[]; region?: string; threshold?: number } | Problem;

export interface AuditView {
  entries: AuditEntry[];
  /** The whole log's verdict (a run's entries are only meaningful inside the intact chain). */
  verdict: ChainVerdict;
  /** Entries of the whole log, for the sentence under the verdict. */
  total: number;
  /** Whether a public key was found to check the checkpoints' signatures against. */
  keyed: boolean;
}

const KINDS = {
  decision: "sluice.dev/recovery-decision-v1",
  ledger: "sluice.dev/gap-ledger-v1",
  conflicts: "sluice.dev/conflict-report-v1",
  classification: "sluice.dev/classification-v1",
} as const;

/** Entries of the whole log read per query when verifying. */
const AUDIT_PAGE = 10_000;

async function readDoc<T>(path: string, kind: string): Promise<{ doc: T } | { problem: string }> {
  try {
    const doc = JSON.parse(await readFile(path, "utf8")) as { kind?: unknown };
    return doc?.kind === kind ? { doc: doc as T } : { problem: `${path} is not a ${kind} document` };
  } catch (err) {
    return { problem: `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
}

const isRanges = (v: unknown): v is Range[] => Array.isArray(v) && v.every((r) => r && typeof r === "object" && "from" in r && "to" in r);
const keysIn = (ranges: Range[]) => ranges.reduce((n, r) => n + (typeof r.from === "number" && typeof r.to === "number" ? r.to - r.from + 1 : 1), 0);

async function gapsFrom(step: string, value: unknown): Promise<Gaps | undefined> {
  if (isRanges(value)) return { step, gaps: value, missing: keysIn(value) };
  if (typeof value !== "string") return undefined;
  const got = await readDoc<{ gaps: Range[]; missing: number }>(value, KINDS.ledger);
  return "doc" in got ? { step, gaps: got.doc.gaps, missing: got.doc.missing, path: value } : { step, path: value, problem: got.problem };
}

/** The recovery documents of a run, in step order; undefined when no step named any. */
export async function recoveryDocs(steps: StepRecord[]): Promise<RecoveryDocs | undefined> {
  const out: RecoveryDocs = {};
  for (const s of steps) {
    const o = s.outputs;
    if (!o) continue;
    if (typeof o.decision === "string" && !out.decision) {
      const got = await readDoc<Decision>(o.decision, KINDS.decision);
      out.decision = "doc" in got ? { step: s.name, path: o.decision, record: got.doc } : { step: s.name, path: o.decision, problem: got.problem };
    }
    if (o.gapsBefore !== undefined || o.gapLedgerBefore !== undefined) out.before = await gapsFrom(s.name, o.gapLedgerBefore ?? o.gapsBefore);
    if (o.gapsAfter !== undefined || o.gapLedgerAfter !== undefined) out.after = await gapsFrom(s.name, o.gapLedgerAfter ?? o.gapsAfter);
    if (o.gapLedger !== undefined) {
      if (!out.before) out.before = await gapsFrom(s.name, o.gapLedger);
      else if (out.before.step !== s.name) out.after = await gapsFrom(s.name, o.gapLedger);
    }
    if (typeof o.conflictReport === "string") {
      const got = await readDoc<{ policy?: string; conflicts: ConflictDoc[] }>(o.conflictReport, KINDS.conflicts);
      out.conflicts =
        "doc" in got && Array.isArray(got.doc.conflicts)
          ? { step: s.name, policy: got.doc.policy, list: got.doc.conflicts, count: got.doc.conflicts.length, path: o.conflictReport }
          : { step: s.name, path: o.conflictReport, problem: "problem" in got ? got.problem : `${o.conflictReport} lists no conflicts array` };
    } else if (typeof o.conflicts === "number" || Array.isArray(o.conflicts)) {
      out.conflicts = { step: s.name, count: typeof o.conflicts === "number" ? o.conflicts : o.conflicts.length };
    }
  }
  return Object.keys(out).length ? out : undefined;
}

const isColumns = (v: unknown): v is ClassifiedColumn[] =>
  Array.isArray(v) && v.every((c) => c && typeof c === "object" && typeof c.name === "string" && typeof c.class === "string");

/** Each classifying step's columns: from its classification document, else from its outputs. */
export async function classifications(steps: StepRecord[]): Promise<Classification[]> {
  const out: Classification[] = [];
  for (const s of steps) {
    const o = s.outputs;
    if (!o || (typeof o.classification !== "string" && !isColumns(o.columns))) continue;
    if (typeof o.classification === "string") {
      const got = await readDoc<{ columns: (ClassifiedColumn & { rule?: { action?: string } })[]; region?: string; threshold?: number }>(
        o.classification,
        KINDS.classification,
      );
      if ("doc" in got) {
        const columns = got.doc.columns.map((c) => ({ ...c, action: c.rule?.action ?? c.action ?? "" }));
        out.push({ step: s.name, path: o.classification, columns, region: got.doc.region, threshold: got.doc.threshold });
        continue;
      }
      if (!isColumns(o.columns)) {
        out.push({ step: s.name, path: o.classification, problem: got.problem });
        continue;
      }
    }
    out.push({ step: s.name, columns: o.columns as ClassifiedColumn[] });
  }
  return out;
}

/** The trusted key `sluice audit verify` uses by default: the one beside this home's signing key. */
function localKeys(home: string): KeyObject[] {
  const file = join(auditKeyDir(home), PUBLIC_KEY_FILE);
  return existsSync(file) ? [loadPublicKey(file)] : [];
}

/** The run's audit entries and the verdict on the whole log; undefined when the run wrote none. */
export async function auditView(store: AuditStore, home: string, runId: string, shown = 500): Promise<AuditView | undefined> {
  const entries = await store.listAudit({ runId, limit: shown });
  if (entries.length === 0) return undefined;
  const all: AuditEntry[] = [];
  for (;;) {
    const page = await store.listAudit({ afterSeq: all.at(-1)?.seq ?? 0, limit: AUDIT_PAGE });
    all.push(...page);
    if (page.length < AUDIT_PAGE) break;
  }
  const keys = localKeys(home);
  return { entries, verdict: verifyChain(all, await store.listCheckpoints(), keys), total: all.length, keyed: keys.length > 0 };
}

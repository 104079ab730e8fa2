/**
 * The recovery workflow's vocabulary (founding document, workflow 3: resilient fetch), shared by
 * its five actions. Each action writes one of these documents as JSON into the run's artifacts
 * and passes its path on in its outputs, so a later step (and `sluice status`) reads the exact
 * record the earlier one decided on. Plain data only: the documents are the audit trail.
 *
 *   analyze_failure_patterns        → FailureAnalysis   (outputs.analysis: path)
 *   select_optimal_retry_strategy   → DecisionRecord    (outputs.decision: path)
 *   discover_fallback_sources       → SourceRanking     (outputs.sources: path)
 *   reconstruct_from_multiple_sources → a dataset (outputs.dataset) + GapLedger + ConflictReport
 *   validate_and_store_recovered_data → rows stored with provenance, the gap ledger after, GAPS_REMAIN
 */

/** The fixed vocabulary every failure is classified into. */
export const FAILURE_CLASSES = [
  "network",
  "timeout",
  "server_unavailable",
  "rate_limited",
  "auth",
  "not_found",
  "truncated_body",
  "schema_drift",
  "quality_breach",
  "stale_data",
  "bad_config",
] as const;
export type FailureClass = (typeof FAILURE_CLASSES)[number];

/** What a failure showed: the facts a class was decided on. Every field optional; present when seen. */
export interface FailureEvidence {
  runId: string;
  step: string;
  attempt: number;
  /** The Sluice error code and message as recorded. */
  code: string;
  message: string;
  /** HTTP status, when the source answered. */
  status?: number;
  /** Retry-After the source asked for, in seconds. */
  retryAfterSeconds?: number;
  /** Bytes the response declared (Content-Length) and bytes actually received. */
  bytesDeclared?: number;
  bytesReceived?: number;
  /** The page (1-based) or URL where it happened. */
  page?: number;
  url?: string;
  latencyMs?: number;
  /** schema_drift: the columns missing, added or retyped against the last good run. */
  columns?: { missing: string[]; added: string[]; retyped: string[] };
  at: string;
}

export interface ClassifiedFailure {
  class: FailureClass;
  evidence: FailureEvidence;
  /** The rule that decided the class, as a reader would say it (`HTTP 503`, `ECONNREFUSED: …`). */
  why?: string;
}

/** Health of one source over the analysis window. */
export interface SourceHealth {
  source: string;
  attempts: number;
  failures: number;
  failureRate: number;
  consecutiveFailures: number;
  lastSuccessAt: string | null;
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
  /** The change-point test: `incident` (a new shift), `chronic` (steady flakiness), `healthy`. */
  changePoint: { verdict: "incident" | "chronic" | "healthy"; method: "cusum" | "ewma"; statistic: number; threshold: number; since?: string };
}

/** analyze_failure_patterns' document. */
export interface FailureAnalysis {
  kind: "sluice.dev/failure-analysis-v1";
  workflow: string;
  /** The run whose failure started this recovery, when known. */
  runId: string | null;
  window: { since: string; until: string };
  /** The class the recovery acts on (the failed run's, else the most frequent recent one). */
  primaryClass: FailureClass | null;
  failures: ClassifiedFailure[];
  counts: Partial<Record<FailureClass, number>>;
  sources: SourceHealth[];
  /** The failed run's params (source, destination, table …), so later steps can default to them. */
  failedRun: { id: string; workflow: string; params: Record<string, unknown>; step: string | null; error: { code: string; message: string } | null } | null;
}

export const STRATEGIES = ["retry_with_backoff", "wait_retry_after", "reduce_page_size", "switch_to_fallback", "resume_from_checkpoint", "give_up"] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** One strategy as the selector saw it. */
export interface StrategyConsidered {
  strategy: Strategy;
  /** Allowed by the hard guardrails; when not, why. */
  allowed: boolean;
  excludedBecause?: string;
  /** The bandit's posterior mean success probability and the sample drawn this time. */
  estimatedSuccess: number;
  sample?: number;
  /** Outcomes seen so far (discounted counts of the Beta posterior, prior included). */
  alpha: number;
  beta: number;
}

/** select_optimal_retry_strategy's document. */
export interface DecisionRecord {
  kind: "sluice.dev/recovery-decision-v1";
  /** The bandit arm set this decision belongs to: one per (source, failure class). */
  banditKey: { source: string; class: FailureClass | "none" };
  class: FailureClass | null;
  evidence: FailureEvidence[];
  considered: StrategyConsidered[];
  choice: Strategy;
  /** One or two sentences a person can read. */
  why: string;
  /** Wait before the first fetch (wait_retry_after), in ms. */
  waitMs?: number;
  seed: string;
  decidedAt: string;
}

/** One candidate source as discovery found it. */
export interface SourceCandidate {
  source: string;
  role: "primary" | "fallback";
  rank: number | null;
  accepted: boolean;
  rejectedBecause?: "stale" | "unreachable" | "unauthorized" | "schema_mismatch" | "no_coverage" | "circuit_open";
  detail?: string;
  newestTimestamp?: string | null;
  schemaFingerprint?: string;
  /** Keys (or partitions) this source can serve, as inclusive ranges when numeric. */
  coverage?: KeyRange[];
  latencyMs?: number;
}

/** discover_fallback_sources' document. */
export interface SourceRanking {
  kind: "sluice.dev/source-ranking-v1";
  primary: string;
  candidates: SourceCandidate[];
  decidedAt: string;
}

/** An inclusive range of integer keys, or one time partition / opaque key when `from === to`. */
export interface KeyRange {
  from: string | number;
  to: string | number;
}

/** The exact missing data: expected domain minus what the destination holds. */
export interface GapLedger {
  kind: "sluice.dev/gap-ledger-v1";
  key: string[];
  /** Where the expected domain came from. */
  domain: { from: "declared" | "manifest" | "sources"; ranges: KeyRange[]; count: number };
  held: number;
  gaps: KeyRange[];
  missing: number;
  computedAt: string;
}

/** Where a stored row came from. */
export interface Provenance {
  source: string;
  /** The page (HTTP) or file the row was read from, and its line or index there. */
  page?: number;
  file?: string;
  line?: number;
}

/** Two sources disagreeing on a key. */
export interface Conflict {
  key: Record<string, unknown>;
  kept: { source: string; value: Record<string, unknown> };
  other: { source: string; value: Record<string, unknown> };
  /** The fields that differ. */
  fields: string[];
}

export interface ConflictReport {
  kind: "sluice.dev/conflict-report-v1";
  policy: "priority" | "freshest";
  conflicts: Conflict[];
}

/** One page an HTTP collection stored, in order (see actions/batch/page-checkpoint.ts). */
export interface PageManifestEntry {
  /** 1-based page number of the walk. */
  page: number;
  /** The URL that answered, masked. */
  url: string;
  /** Records of the page (JSON pages; a CSV page's rows are counted when it is parsed). */
  rows?: number;
  /** The key of the page's first and last record (the `key` input, else a column named `id` or `…_id`). */
  firstKey?: string | number;
  lastKey?: string | number;
  /** The stored page file. */
  file?: string;
}

/**
 * collect_data_from_source's page manifest (outputs.manifest, and `<artifacts>/<step>/manifest.json`):
 * the pages stored, whether the walk reached the API's last page, and where it stopped. The
 * gap ledger reads `next` as "where the primary stopped".
 */
export interface PageManifest {
  kind: "sluice.dev/page-manifest-v1";
  /** The source as shown (masked). */
  source: string;
  pages: PageManifestEntry[];
  /** The walk ended on a page with no next page. */
  complete: boolean;
  /** The first page not stored (masked URL), when the walk did not complete. */
  next?: string;
  rows: number;
  /** The checkpoint folder holding the pages and their journal. */
  checkpoint?: string;
  /** Why the walk stopped early, when it failed. */
  error?: { code: string; message: string; page?: number };
}

/**
 * Every agent/action and service/action pair named by the founding document, with its inputs.
 *
 * This is the one list `sluice validate` checks workflows against. Implementations live in
 * their own modules and are attached in builtin.ts, which refuses to build a catalogue with a pair left out.
 */
import { z } from "zod";
import type { ActionKind } from "../spec/catalogue.js";
import { Auth, CsvOptions, Pagination, DatasetRef, Destination, Format, QualityInput, QualityRule, SchemaRef, Source, TargetSchema } from "./inputs.js";
import { parseDuration } from "../spec/duration.js";
import { BROKER_KINDS, connectionShape } from "../connectors/streams/registry.js";
import { streamRuleProblem } from "./stream/rules.js";
import { STRATEGIES } from "./recovery/contract.js";
import { PolicyDocument } from "./security/policy.js";
import { RequirementsInput } from "./security/requirements.js";
import { MfaInput } from "./security/mfa.js";
import { EncryptedConnectionInput } from "./security/tls-check.js";
import { SecureAuth, TlsInput } from "./security/connection.js";

export interface SeedSignature {
  kind: ActionKind;
  owner: string;
  action: string;
  description: string;
  /** The workflow or capability the action belongs to (named in the error when builtin.ts lacks it). */
  capability: string;
  input: z.ZodType;
}

const BATCH = "the batch data plane (standard ingestion and bulk files)";
const STREAM = "the real-time stream workflow";
const RECOVERY = "the resilient fetch recovery workflow";
const SECURE = "the secure API workflow";
const SERVICE = "service mode (events and the event coordinator)";

const obj = <T extends z.ZodRawShape>(shape: T) => z.object(shape).strict();

/** Recovery inputs: key columns (a list or one name), a key range (1-1000, A..B, or a list), a page manifest. */
const KeyColumns = z.union([z.array(z.string().min(1)).min(1), z.string().min(1)]);
const KeyRangeSpec = z.union([z.string().min(1), z.number(), z.array(z.union([z.string().min(1), z.number()])).min(1)]);
const KeyValue = z.union([z.string(), z.number()]).nullable().optional();
const PageManifest = z
  .object({
    pages: z.array(z.object({ page: z.number().int(), url: z.string(), rows: z.number().int().min(0), firstKey: KeyValue, lastKey: KeyValue }).passthrough()),
    complete: z.boolean(),
    next: z.string().nullable().optional(),
  })
  .passthrough();
/** A source's circuit breaker (recovery/breaker.ts), for the steps that contact the source. */
const Breaker = z
  .union([
    z.literal(false),
    obj({
      failures: z.number().int().min(1).optional().describe("Failures in a row that open it (default 5)."),
      coolDown: z
        .string()
        .refine((s) => (parseDuration(s) ?? 0) > 0, "must be a duration such as 30s or 5m")
        .optional()
        .describe("How long it stays open before one probe is let through (default 60s)."),
    }),
  ])
  .optional()
  .describe("The source's circuit breaker, shared by every run on this store; false for none.");
const RecoveryDuration = z.string().refine((s) => parseDuration(s) !== undefined, "must be a duration such as 30m, 6h, 2d");
const sig = (kind: ActionKind, owner: string, action: string, capability: string, description: string, input: z.ZodType): SeedSignature => ({
  kind,
  owner,
  action,
  capability,
  description,
  input,
});

/**
 * How merge_processed_files picks between rows with the same key and different content.
 * `latest`: the greatest value of `column` (timestamp, date, integer or decimal) wins.
 * `priority`: patterns matched against each row's source (a glob when it has `*`, `?` or `[`,
 * else a substring); the earliest matching pattern wins, sources matching none rank last.
 */
const MergeConflict = obj({
  policy: z.enum(["latest", "priority"]),
  column: z.string().min(1).optional(),
  priority: z.array(z.string().min(1)).min(1).optional(),
}).superRefine((c, ctx) => {
  if (c.policy === "latest" && c.column === undefined)
    ctx.addIssue({ code: "custom", path: ["column"], message: "policy latest needs column: the timestamp, date or number whose greatest value wins" });
  if (c.policy === "latest" && c.priority !== undefined)
    ctx.addIssue({ code: "custom", path: ["priority"], message: "priority applies to policy priority only" });
  if (c.policy === "priority" && c.priority === undefined)
    ctx.addIssue({ code: "custom", path: ["priority"], message: "policy priority needs priority: source patterns, best first" });
  if (c.policy === "priority" && c.column !== undefined) ctx.addIssue({ code: "custom", path: ["column"], message: "column applies to policy latest only" });
});

/** The conversion step's inputs (convert_to_standard_format, standardize_file_formats). */
const ConvertInput = {
  dataset: DatasetRef,
  schema: SchemaRef.describe("The target schema inline, or the path of a schema file."),
  maxRejectShare: z
    .number()
    .min(0)
    .max(1)
    .optional()
    .describe("Most rejected records, as a share of the records read, before the step fails (default 0.5; 1 never fails)."),
  allowEmpty: z.boolean().optional().describe("Whether a source with no records succeeds (default true; reported as empty)."),
  failureThreshold: z.number().min(0).max(1).optional().describe("Share of files allowed to fail; default: any, as long as one succeeds."),
  workers: z.number().int().min(1).max(64).optional().describe("Worker threads at most (default: the CPU count)."),
};

export const SEED_SIGNATURES: SeedSignature[] = [
  // Standard ingestion
  sig(
    "agent",
    "data-scheduler",
    "validate_source_availability",
    BATCH,
    "Check that the source exists and answers.",
    obj({ source: Source, auth: Auth.optional(), minFiles: z.number().int().min(0).optional(), breaker: Breaker }),
  ),
  sig(
    "agent",
    "data-connector",
    "establish_secure_connection",
    BATCH,
    "Open and check the connection collection will use.",
    obj({ source: Source, auth: Auth.optional(), sslmode: z.enum(["disable", "require", "verify-full"]).optional() }),
  ),
  sig(
    "agent",
    "data-collector",
    "collect_data_from_source",
    BATCH,
    "Stream the source into a staged dataset.",
    obj({
      source: Source,
      format: Format.optional(),
      csv: CsvOptions.optional(),
      auth: Auth.optional(),
      query: z.string().optional(),
      table: z.string().optional(),
      recordsPath: z.string().optional(),
      pagination: Pagination.optional(),
      maxPages: z.number().int().min(1).optional().describe("HTTP: most pages to read (default 1000)."),
      onMaxPages: z.enum(["error", "stop"]).optional().describe("HTTP: past maxPages with pages left, fail (default) or stop (then pagesLeft: true)."),
      batchSize: z.number().int().min(1).optional(),
      workers: z.number().int().min(1).max(64).optional(),
      key: z.string().optional().describe("HTTP: the key column the page manifest names per page (firstKey, lastKey); default id or a …_id column."),
      timeoutMs: z.number().int().min(1).optional().describe("HTTP: per-request timeout, body included (default 30000)."),
      maxRetries: z.number().int().min(0).optional().describe("HTTP: retries of a 429/503 answer within one attempt (default 5)."),
      maxRetryAfterMs: z.number().int().min(0).optional().describe("HTTP: the longest Retry-After waited out (default 60000); longer fails at once."),
      breaker: Breaker,
    }),
  ),
  sig("agent", "data-converter", "convert_to_standard_format", BATCH, "Type, rename and normalise rows to the target schema.", obj(ConvertInput)),
  sig("service", "base-data-quality", "validate_data_quality", BATCH, "Score the dataset against quality rules; quarantine bad rows.", obj(QualityInput)),
  sig(
    "service",
    "base-data-storage",
    "store_validated_data",
    BATCH,
    "Store rows idempotently in the destination.",
    obj({
      dataset: DatasetRef,
      destination: Destination.optional(),
      table: z.string().min(1),
      key: z.array(z.string()).optional(),
      mode: z.enum(["upsert", "append"]).optional(),
    }),
  ),

  // Bulk files
  sig(
    "agent",
    "file-manager",
    "discover_files_in_directory",
    BATCH,
    "Inventory files with size, checksum and mtime; skip ingested ones.",
    obj({
      directory: z.string().min(1).describe("The folder holding the files."),
      pattern: z
        .string()
        .min(1)
        .optional()
        .describe("A glob relative to the directory, e.g. *.csv; default: every .csv .tsv .ndjson .jsonl .json .parquet file."),
      recursive: z.boolean().optional().describe("Descend into subdirectories (default false)."),
      skipIngested: z.boolean().optional().describe("Leave out files this workflow already ingested from this directory (default true)."),
    }),
  ),
  sig(
    "agent",
    "data-collector",
    "process_files_in_parallel",
    BATCH,
    "Parse files in parallel workers, in record-aligned chunks.",
    obj({
      files: DatasetRef.describe("The file inventory of an earlier step: ${{ steps.NAME.outputs.files }}."),
      workers: z.number().int().min(1).max(64).default(10).describe("Worker threads (never more than work units)."),
      chunkSize: z
        .union([
          z.string().regex(/^\s*\d+(\.\d+)?\s*([KMGT](iB|B)?|B)?\s*$/i, 'a size such as "100MB", "64MiB", "500KB" or a number of bytes'),
          z.number().int().min(1024),
        ])
        .default("100MB")
        .describe("Target size of a CSV/TSV work unit; other formats are one unit per file."),
      failureThreshold: z.number().min(0).max(1).optional().describe("Fraction of files allowed to fail; default: any, as long as one file succeeds."),
      csv: CsvOptions.optional(),
    }),
  ),
  sig("agent", "data-converter", "standardize_file_formats", BATCH, "Bring mixed CSV, NDJSON, JSON and Parquet into one schema.", obj(ConvertInput)),
  sig(
    "agent",
    "data-merger",
    "merge_processed_files",
    BATCH,
    "Consolidate into one dataset, removing duplicates by key.",
    obj({ dataset: DatasetRef, key: z.array(z.string().min(1)).min(1), conflict: MergeConflict.optional() }),
  ),
  sig("service", "base-data-quality", "validate_bulk_data", BATCH, "The quality rules over the consolidated dataset.", obj(QualityInput)),

  // Real-time stream (src/actions/stream/): each is also a stage of a continuous group.
  sig(
    "agent",
    "stream-manager",
    "establish_stream_connection",
    STREAM,
    "Connect to the broker and resume from the last committed position.",
    obj({
      // The brokers and their fields are the stream registry's (src/connectors/streams/registry.ts).
      broker: z.enum(BROKER_KINDS),
      ...connectionShape(),
      redeliverAfter: z
        .string()
        .refine((s) => parseDuration(s) !== undefined, "must be a duration such as 30s")
        .optional()
        .describe(
          "How long a delivered but unacknowledged message waits before it is delivered again after a crash (NATS ack wait, Redis claim idle time; default 30s).",
        ),
      auth: Auth.optional().describe("basic (username, password) or bearer (token), from secret references; put into the URL for the connector."),
    }),
  ),
  sig(
    "agent",
    "data-collector",
    "process_streaming_data",
    STREAM,
    "Decode and convert records as they arrive.",
    obj({
      decode: z.enum(["json", "csv"]).default("json").describe("json: one JSON object per message; csv: one CSV record per message."),
      schema: TargetSchema.optional().describe("The target schema, as for convert_to_standard_format; default the standard trade schema."),
      csv: obj({ delimiter: z.string().length(1).optional(), quote: z.string().length(1).optional(), columns: z.array(z.string().min(1)).min(1).optional() })
        .optional()
        .describe("decode: csv only: delimiter, quote, and the field names (default the schema's column order)."),
      maxBatch: z.number().int().min(1).max(100_000).optional().describe("Most records per batch (default 500)."),
      maxLatency: z
        .string()
        .refine((s) => parseDuration(s) !== undefined, "must be a duration such as 20ms, 1s")
        .optional()
        .describe("Longest wait to fill a batch (default 20ms)."),
    }),
  ),
  sig(
    "service",
    "base-data-quality",
    "validate_streaming_data",
    STREAM,
    "Per-record quality rules; failures to a dead-letter destination.",
    obj({
      rules: z
        .array(
          QualityRule.superRefine((r, c) => {
            const problem = streamRuleProblem(r);
            if (problem) c.addIssue({ code: "custom", message: problem });
          }),
        )
        .default([]),
      deadLetter: Destination.optional().describe("Where rejected records go instead of <table>_quarantine next to the stored rows (a database)."),
    }),
  ),
  sig(
    "service",
    "base-data-storage",
    "store_streaming_data",
    STREAM,
    "Idempotent writes; acknowledge the source only after commit.",
    obj({ destination: Destination.optional(), table: z.string().min(1), key: z.array(z.string().min(1)).min(1).optional() }),
  ),

  // Resilient fetch recovery
  sig(
    "agent",
    "data-fetch-retry",
    "analyze_failure_patterns",
    RECOVERY,
    "Classify recent failures of a workflow or run.",
    obj({
      workflow: z.string().optional().describe("The workflow whose runs are read (default: the failed run's)."),
      runId: z.string().optional().describe("The failed run (default: the one named by the event that started this run)."),
      window: z
        .string()
        .refine((s) => (parseDuration(s) ?? 0) > 0, { message: "window must be a duration such as 24h, 90m or 7d" })
        .optional()
        .describe("How far back to read runs (default 24h)."),
      source: z.string().optional().describe("Only this source's failures and health."),
      primary: z.string().optional().describe("The recovery's primary source (output primary; default: the failed run's source param)."),
      destination: Destination.optional().describe("The recovery's destination (output destination; default: the failed run's, else the embedded warehouse)."),
      table: z.string().optional().describe("The recovery's table (output table; default: the failed run's table param)."),
      schema: z.string().optional().describe("The recovery's schema file (output schema; default: the failed run's schema param)."),
    }),
  ),
  sig(
    "agent",
    "data-fetch-retry",
    "select_optimal_retry_strategy",
    RECOVERY,
    "Choose a recovery strategy from the failure analysis.",
    obj({
      analysis: z.string().min(1).describe("The failure analysis document: ${{ steps.failure-analysis.outputs.analysis }}."),
      strategies: z.array(z.enum(STRATEGIES)).min(1).optional().describe("The strategies allowed at all (default: every one the guardrails allow)."),
      deadline: z
        .string()
        .refine((s) => parseDuration(s) !== undefined, "must be a duration such as 30m or 2h")
        .optional()
        .describe("Time left for the recovery: a longer Retry-After is not waited for (default: what is left of the run's timeout, else 2h)."),
      fallbacks: z
        .union([z.number().int().min(0), z.string(), z.array(z.string())])
        .optional()
        .describe("How many fallback sources are declared, or the list itself; with none, switch_to_fallback is excluded."),
      seed: z.string().min(1).optional().describe("Seed of the bandit's draws (default: the run id, so a replay chooses alike)."),
      source: z.string().min(1).nullable().optional().describe("The source the bandit learns for (default: the failed run's source; null: that default)."),
    }),
  ),
  sig(
    "agent",
    "data-scheduler",
    "discover_fallback_sources",
    RECOVERY,
    "Find and probe backup sources for a failed primary; rank the usable ones.",
    obj({
      primary: Source,
      fallbacks: z
        .union([z.array(Source), z.string()])
        .default([])
        .describe("Fallback sources: a list, or one comma-separated string."),
      maxStaleness: RecoveryDuration.optional().describe("Most a fallback's newest timestamp may lag the primary's (or now); default 1h behind the primary."),
      timestampColumn: z.string().min(1).optional().describe("The column freshness is read from; default updated_at, executed_at, created_at … when present."),
      key: KeyColumns.optional().describe("Key columns; the first one's range is the coverage reported."),
      decision: z
        .string()
        .min(1)
        .optional()
        .describe("A decision record (select_optimal_retry_strategy's decision output); switch_to_fallback ranks the primary last."),
      schema: SchemaRef.nullable().optional().describe("The expected columns; default (or null) the destination table's, else the primary's."),
      destination: Destination.optional(),
      table: z.string().min(1).optional(),
      auth: Auth.optional(),
      recordsPath: z.string().optional(),
      sampleRows: z.number().int().min(1).optional(),
      samplePages: z.number().int().min(1).optional(),
    }),
  ),
  sig(
    "agent",
    "data-collector",
    "reconstruct_from_multiple_sources",
    RECOVERY,
    "Rebuild exactly the missing key ranges from the ranked sources, with provenance and a conflict report.",
    obj({
      sources: DatasetRef.describe("The source ranking: ${{ steps.NAME.outputs.sources }}."),
      key: KeyColumns,
      destination: Destination.optional(),
      table: z.string().min(1),
      range: KeyRangeSpec.optional(),
      manifest: z
        .union([z.string().min(1), PageManifest])
        .nullable()
        .optional()
        .describe("The primary's page manifest (a path or the object; null: none): its stored pages are used and an HTTP source resumes after them."),
      policy: z
        .enum(["priority", "freshest"])
        .optional()
        .describe("Which source wins a disagreement: the higher ranked (default) or the newest timestampColumn."),
      timestampColumn: z.string().min(1).optional(),
      decision: z.string().min(1).optional(),
      crossCheck: z.boolean().optional().describe("Read every fallback for the gaps, to report disagreements (default true)."),
      auth: Auth.optional(),
      recordsPath: z.string().optional(),
    }),
  ),
  sig(
    "agent",
    "data-merger",
    "validate_and_store_recovered_data",
    RECOVERY,
    "Type, validate and store the recovered rows with their lineage; fail with GAPS_REMAIN unless the destination is complete.",
    obj({
      dataset: DatasetRef,
      destination: Destination.optional(),
      table: z.string().min(1),
      key: KeyColumns.optional(),
      rules: z.array(QualityRule).optional(),
      threshold: z.number().min(0).max(1).optional(),
      schema: SchemaRef.nullable()
        .optional()
        .describe("The target schema; default (or null) inferred from the rows and held to the destination table's column types."),
      range: KeyRangeSpec.optional(),
      manifest: z
        .union([z.string().min(1), PageManifest])
        .nullable()
        .optional(),
      decision: z
        .string()
        .min(1)
        .optional()
        .describe("The decision record followed (select_optimal_retry_strategy's decision output): its outcome teaches the strategy bandit."),
    }),
  ),

  // Secure API
  sig(
    "agent",
    "data-security",
    "validate_security_requirements",
    SECURE,
    "Check TLS, hosts, pin, credentials, encryption key and audit trail against a policy; fail listing every unmet requirement.",
    RequirementsInput,
  ),
  sig(
    "agent",
    "data-connector",
    "verify_mfa_authentication",
    SECURE,
    "Prove against the API which independent factors (client certificate, secret, TOTP) it accepts and requires; fewer than two fails.",
    MfaInput,
  ),
  sig(
    "agent",
    "data-connector",
    "establish_encrypted_connection",
    SECURE,
    "Open a verified TLS connection to the API and record protocol, cipher, certificate fingerprint, pin and expiry.",
    EncryptedConnectionInput,
  ),
  sig(
    "agent",
    "data-collector",
    "collect_with_encryption",
    SECURE,
    "Collect over TLS and stage the data encrypted at rest.",
    obj({
      source: Source,
      auth: SecureAuth.optional(),
      tls: TlsInput.optional(),
      recordsPath: z.string().optional(),
      pagination: Pagination.optional(),
      format: Format.optional(),
      csv: CsvOptions.optional(),
      maxPages: z.number().int().min(1).optional().describe("Most pages to read (default 1000)."),
      onMaxPages: z.enum(["error", "stop"]).optional(),
      key: z.string().min(1).describe("The key-encryption key: a keyring file, or env:NAME / file:PATH holding one 32-byte key (base64 or hex)."),
      caFile: z.string().min(1).optional().describe("A private CA (PEM) to trust besides the public roots."),
      minTlsVersion: z.enum(["TLSv1.2", "TLSv1.3"]).optional().describe("Lowest TLS version accepted on any page (default TLSv1.2)."),
      requireTls: z.boolean().optional().describe("Refuse a plain http:// source (default true)."),
      timeoutMs: z.number().int().min(1).optional(),
      maxRetries: z.number().int().min(0).optional(),
      maxRetryAfterMs: z.number().int().min(0).optional(),
    }),
  ),
  sig(
    "agent",
    "data-security",
    "classify_sensitive_data",
    SECURE,
    "Find PII and sensitive columns and classify them.",
    obj({
      dataset: DatasetRef,
      sample: z.number().int().min(1).default(10_000).describe("Rows to sample, spread over the dataset's parts."),
      threshold: z.number().gt(0).max(1).default(0.8).describe("Wilson 95% lower bound of the valid share a column needs for a class."),
      policy: z.union([PolicyDocument, z.string().min(1).describe("The path of a policy file (YAML or JSON).")]).optional(),
      failOnUnclassified: z.boolean().optional().describe("Fail the step when a sensitive column has no rule in the policy."),
      region: z
        .string()
        .regex(/^[A-Za-z]{2}$/)
        .default("US")
        .describe("Region (ISO 3166 alpha-2) of phone numbers written without a country code."),
      format: Format.optional().describe("Format of raw parts whose file extension names none."),
    }),
  ),
  sig(
    "agent",
    "data-security",
    "store_with_encryption",
    SECURE,
    "Store with sensitive columns encrypted (AES-256-GCM) and audited.",
    obj({
      dataset: DatasetRef,
      destination: Destination.optional(),
      table: z.string().min(1),
      key: z.string().min(1).describe("The key-encryption key: a keyring file, or env:NAME / file:PATH holding one 32-byte key (base64 or hex)."),
      primaryKey: z.array(z.string().min(1)).min(1).optional().describe("The record key columns (default the dataset's key, else id)."),
      encryptColumns: z.array(z.string()).optional().describe("Columns encrypted whatever the classification says."),
      format: Format.optional().describe("Format of raw parts whose file extension names none."),
    }),
  ),

  // Event coordination between workflows
  sig(
    "service",
    "base-event-coordinator",
    "publish_event",
    SERVICE,
    "Publish a platform event that other workflows may trigger on.",
    obj({ event: z.string().min(1), data: z.record(z.string(), z.unknown()).optional() }),
  ),
];

/**
 * The built-in catalogue: the founding document's actions, attached to their implementations.
 */
import { SluiceError } from "../errors.js";
import { createRegistry, type ActionRegistry } from "./registry.js";
import { SEED_SIGNATURES, type SeedSignature } from "./seed-catalogue.js";
import type { ActionContext, ActionDefinition } from "./types.js";

/** Implementations by `owner/action`, filled in as capabilities land. */
const IMPLEMENTATIONS: Record<string, ActionDefinition["run"]> = {
  "data-scheduler/validate_source_availability": lazy(() => import("./batch/source-checks.js").then((m) => m.validateSourceAvailability)),
  "data-connector/establish_secure_connection": lazy(() => import("./batch/source-checks.js").then((m) => m.establishSecureConnection)),
  "data-collector/collect_data_from_source": lazy(() => import("./batch/collect.js").then((m) => m.collectDataFromSource)),
  "data-converter/convert_to_standard_format": lazy(() => import("./batch/standardize.js").then((m) => m.convertToStandardFormat)),
  "base-data-quality/validate_data_quality": lazy(() => import("./batch/validate.js").then((m) => m.validateDataQuality)),
  "base-data-storage/store_validated_data": lazy(() => import("./batch/store.js").then((m) => m.storeValidatedData)),
  "file-manager/discover_files_in_directory": lazy(() => import("./batch/discover.js").then((m) => m.discoverFilesInDirectory)),
  "data-collector/process_files_in_parallel": lazy(() => import("./batch/parallel.js").then((m) => m.processFilesInParallel)),
  "data-merger/merge_processed_files": lazy(() => import("./batch/merge.js").then((m) => m.mergeProcessedFiles)),
  // The bulk workflow reuses the same typing and quality code over its consolidated dataset.
  "data-converter/standardize_file_formats": lazy(() => import("./batch/standardize.js").then((m) => m.convertToStandardFormat)),
  "base-data-quality/validate_bulk_data": lazy(() => import("./batch/validate.js").then((m) => m.validateDataQuality)),
  "base-event-coordinator/publish_event": async (input: { event: string; data?: Record<string, unknown> }, ctx) => {
    const r = await ctx.publish(input.event, { ...input.data, publishedBy: { runId: ctx.runId, workflow: ctx.workflow, step: ctx.step } }, `run:${ctx.runId}`);
    return { eventId: r.eventId, runsStarted: r.runIds.length, runIds: r.runIds };
  },
  // Real-time stream, as ordinary steps (check and report); their stages are in STREAMS.
  "stream-manager/establish_stream_connection": lazy(() => import("./stream/source.js").then((m) => m.establishStreamConnection)),
  "data-collector/process_streaming_data": lazy(() => import("./stream/decode.js").then((m) => m.processStreamingData)),
  "base-data-quality/validate_streaming_data": lazy(() => import("./stream/validate.js").then((m) => m.validateStreamingData)),
  "base-data-storage/store_streaming_data": lazy(() => import("./stream/store.js").then((m) => m.storeStreamingData)),
  // Resilient fetch recovery.
  "data-fetch-retry/select_optimal_retry_strategy": lazy(() => import("./recovery/strategy.js").then((m) => m.selectOptimalRetryStrategy)),
  "data-fetch-retry/analyze_failure_patterns": lazy(() => import("./recovery/analyze.js").then((m) => m.analyzeFailurePatterns)),
  // Secure API
  "data-security/classify_sensitive_data": lazy(() => import("./security/classify-action.js").then((m) => m.classifySensitiveData)),
  // Resilient fetch recovery (src/actions/recovery/).
  "data-scheduler/discover_fallback_sources": lazy(() => import("./recovery/fallbacks.js").then((m) => m.discoverFallbackSources)),
  "data-collector/reconstruct_from_multiple_sources": lazy(() => import("./recovery/reconstruct.js").then((m) => m.reconstructFromMultipleSources)),
  "data-merger/validate_and_store_recovered_data": lazy(() => import("./recovery/store-recovered.js").then((m) => m.validateAndStoreRecoveredData)),
  "data-collector/collect_with_encryption": lazy(() => import("./security/collect-encrypted.js").then((m) => m.collectWithEncryption)),
  "data-security/store_with_encryption": lazy(() => import("./security/store-encrypted.js").then((m) => m.storeWithEncryption)),
  "data-security/validate_security_requirements": lazy(() => import("./security/requirements.js").then((m) => m.validateSecurityRequirements)),
  "data-connector/verify_mfa_authentication": lazy(() => import("./security/mfa.js").then((m) => m.verifyMfaAuthentication)),
  "data-connector/establish_encrypted_connection": lazy(() => import("./security/tls-check.js").then((m) => m.establishEncryptedConnection)),
};

/** Stages for continuous groups (see stream-types.ts), by `owner/action`. */
const STREAMS: Record<string, NonNullable<ActionDefinition["stream"]>> = {
  "stream-manager/establish_stream_connection": lazy(() => import("./stream/source.js").then((m) => m.openConnectionStage)),
  "data-collector/process_streaming_data": lazy(() => import("./stream/decode.js").then((m) => m.openProcessStage)),
  "base-data-quality/validate_streaming_data": lazy(() => import("./stream/validate.js").then((m) => m.openValidateStage)),
  "base-data-storage/store_streaming_data": lazy(() => import("./stream/store.js").then((m) => m.openStoreStage)),
};

export function builtinRegistry(): ActionRegistry {
  return createRegistry(
    SEED_SIGNATURES.map((s) => ({
      kind: s.kind,
      owner: s.owner,
      action: s.action,
      description: s.description,
      input: s.input,
      run: implementationOf(s),
      ...(STREAMS[`${s.owner}/${s.action}`] ? { stream: STREAMS[`${s.owner}/${s.action}`] } : {}),
    })),
  );
}

/**
 * An implementation imported on its first call, so a run loads only the modules of the actions
 * its workflow uses. Importing all of them up front (stream clients, security, recovery) cost
 * every `sluice run` of the standard workflow about 140 ms and 23 MB more than its own five.
 * A failed import is tried again on the next call.
 */
function lazy<I, R>(load: () => Promise<(input: I, ctx: ActionContext) => Promise<R>>): (input: I, ctx: ActionContext) => Promise<R> {
  let loading: Promise<(input: I, ctx: ActionContext) => Promise<R>> | undefined;
  return async (input, ctx) => {
    loading ??= load().catch((err: unknown) => {
      loading = undefined;
      throw err;
    });
    return (await loading)(input, ctx);
  };
}

/**
 * Every pair of the founding document has its implementation; one without would be a programmer's
 * mistake, refused when the catalogue is built (at start-up, by every test) rather than found by
 * a user's run.
 */
function implementationOf(s: SeedSignature): ActionDefinition["run"] {
  const run = IMPLEMENTATIONS[`${s.owner}/${s.action}`];
  if (!run) throw new SluiceError("INTERNAL", `${s.owner}/${s.action} (${s.capability}) has no implementation in builtin.ts`);
  return run;
}

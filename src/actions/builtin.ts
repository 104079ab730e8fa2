/**
 * The built-in catalogue: the founding document's actions, attached to their implementations.
 */
import { SluiceError } from "../errors.js";
import { createRegistry, type ActionRegistry } from "./registry.js";
import { SEED_SIGNATURES, type SeedSignature } from "./seed-catalogue.js";
import type { ActionDefinition } from "./types.js";
import { establishSecureConnection, validateSourceAvailability } from "./batch/source-checks.js";
import { collectDataFromSource } from "./batch/collect.js";
import { convertToStandardFormat } from "./batch/standardize.js";
import { validateDataQuality } from "./batch/validate.js";
import { storeValidatedData } from "./batch/store.js";
import { discoverFilesInDirectory } from "./batch/discover.js";
import { processFilesInParallel } from "./batch/parallel.js";
import { mergeProcessedFiles } from "./batch/merge.js";
import { establishStreamConnection, openConnectionStage } from "./stream/source.js";
import { openProcessStage, processStreamingData } from "./stream/decode.js";
import { openValidateStage, validateStreamingData } from "./stream/validate.js";
import { openStoreStage, storeStreamingData } from "./stream/store.js";
import { selectOptimalRetryStrategy } from "./recovery/strategy.js";
import { analyzeFailurePatterns } from "./recovery/analyze.js";
import { classifySensitiveData } from "./security/classify-action.js";
import { discoverFallbackSources } from "./recovery/fallbacks.js";
import { reconstructFromMultipleSources } from "./recovery/reconstruct.js";
import { validateAndStoreRecoveredData } from "./recovery/store-recovered.js";
import { collectWithEncryption } from "./security/collect-encrypted.js";
import { storeWithEncryption } from "./security/store-encrypted.js";
import { validateSecurityRequirements } from "./security/requirements.js";
import { verifyMfaAuthentication } from "./security/mfa.js";
import { establishEncryptedConnection } from "./security/tls-check.js";

/** Implementations by `owner/action`, filled in as capabilities land. */
const IMPLEMENTATIONS: Record<string, ActionDefinition["run"]> = {
  "data-scheduler/validate_source_availability": validateSourceAvailability,
  "data-connector/establish_secure_connection": establishSecureConnection,
  "data-collector/collect_data_from_source": collectDataFromSource,
  "data-converter/convert_to_standard_format": convertToStandardFormat,
  "base-data-quality/validate_data_quality": validateDataQuality,
  "base-data-storage/store_validated_data": storeValidatedData,
  "file-manager/discover_files_in_directory": discoverFilesInDirectory,
  "data-collector/process_files_in_parallel": processFilesInParallel,
  "data-merger/merge_processed_files": mergeProcessedFiles,
  // The bulk workflow reuses the same typing and quality code over its consolidated dataset.
  "data-converter/standardize_file_formats": convertToStandardFormat,
  "base-data-quality/validate_bulk_data": validateDataQuality,
  "base-event-coordinator/publish_event": async (input: { event: string; data?: Record<string, unknown> }, ctx) => {
    const r = await ctx.publish(input.event, { ...input.data, publishedBy: { runId: ctx.runId, workflow: ctx.workflow, step: ctx.step } }, `run:${ctx.runId}`);
    return { eventId: r.eventId, runsStarted: r.runIds.length, runIds: r.runIds };
  },
  // Real-time stream, as ordinary steps (check and report); their stages are in STREAMS.
  "stream-manager/establish_stream_connection": establishStreamConnection,
  "data-collector/process_streaming_data": processStreamingData,
  "base-data-quality/validate_streaming_data": validateStreamingData,
  "base-data-storage/store_streaming_data": storeStreamingData,
  // Resilient fetch recovery.
  "data-fetch-retry/select_optimal_retry_strategy": selectOptimalRetryStrategy,
  "data-fetch-retry/analyze_failure_patterns": analyzeFailurePatterns,
  // Secure API
  "data-security/classify_sensitive_data": classifySensitiveData,
  // Resilient fetch recovery (src/actions/recovery/).
  "data-scheduler/discover_fallback_sources": discoverFallbackSources,
  "data-collector/reconstruct_from_multiple_sources": reconstructFromMultipleSources,
  "data-merger/validate_and_store_recovered_data": validateAndStoreRecoveredData,
  "data-collector/collect_with_encryption": collectWithEncryption,
  "data-security/store_with_encryption": storeWithEncryption,
  "data-security/validate_security_requirements": validateSecurityRequirements,
  "data-connector/verify_mfa_authentication": verifyMfaAuthentication,
  "data-connector/establish_encrypted_connection": establishEncryptedConnection,
};

/** Stages for continuous groups (see stream-types.ts), by `owner/action`. */
const STREAMS: Record<string, NonNullable<ActionDefinition["stream"]>> = {
  "stream-manager/establish_stream_connection": openConnectionStage,
  "data-collector/process_streaming_data": openProcessStage,
  "base-data-quality/validate_streaming_data": openValidateStage,
  "base-data-storage/store_streaming_data": openStoreStage,
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
 * Every pair of the founding document has its implementation; one without would be a programmer's
 * mistake, refused when the catalogue is built (at start-up, by every test) rather than found by
 * a user's run.
 */
function implementationOf(s: SeedSignature): ActionDefinition["run"] {
  const run = IMPLEMENTATIONS[`${s.owner}/${s.action}`];
  if (!run) throw new SluiceError("INTERNAL", `${s.owner}/${s.action} (${s.capability}) has no implementation in builtin.ts`);
  return run;
}

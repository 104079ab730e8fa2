/**
 * Which quality rules apply to a stream. Kept apart from validate.ts (and free of heavy imports)
 * because the seed catalogue uses it too, so `sluice validate` reports such a rule at its line.
 */
import type { QualityRuleSpec } from "../batch/model.js";

/** Why a rule cannot apply to single records of an endless stream, or undefined when it can. */
export function streamRuleProblem(rule: QualityRuleSpec): string | undefined {
  if (rule.unique !== undefined)
    return "unique is a dataset-level rule and a stream has no end to check it over; declare key on store_streaming_data, which keeps one row per key";
  if (rule.rowCount !== undefined) return "rowCount is a dataset-level rule and does not apply to a stream";
  if (rule.freshness !== undefined)
    return "freshness is a dataset-level rule (the newest value's age) and does not apply to a stream; use min on the timestamp column for a per-record bound";
  return undefined;
}

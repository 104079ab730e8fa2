/**
 * A continuous pipeline's figures in one line, for the progress display and `sluice status`.
 */
import type { PipelineStats } from "../engine/pipeline.js";

/** A continuous pipeline in one line: records, rate, lag, latency. */
export function describeStream(s: PipelineStats): string {
  // The last window's latency while running; once stopped, the whole run's.
  const e2e = s.endToEndMs ?? s.endToEndMsOverall ?? null;
  const lat = e2e ? `, end-to-end p50 ${e2e.p50} ms p99 ${e2e.p99} ms` : "";
  const lag = s.lag !== null ? `, lag ${s.lag}` : "";
  return `${s.records.toLocaleString("en-US")} records (${s.stored} stored, ${s.deadLettered} dead-lettered), ${s.ratePerSec}/s${lag}${lat}`;
}

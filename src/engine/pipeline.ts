/**
 * The continuous pipeline: source → transforms → sink, batch by batch, until stopped.
 *
 * One loop pulls a batch from the source (closed by size or by the maximum wait), runs it through
 * the transforms, and hands it to the sink; up to `inFlight` sink writes overlap, so the next
 * batch is read and converted while the previous one commits. When that many writes are pending
 * the loop waits: the source is not read faster than the sink commits (backpressure), and memory
 * holds at most `inFlight + 1` batches (plus those committed and waiting for their ack). A batch
 * is acknowledged to the broker only after its write committed, in commit order.
 *
 * Stopping (the signal aborts) ends the loop at the next batch boundary; batches already read are
 * still written and acknowledged (the flush) before the pipeline returns. A failing stage stops
 * the pipeline with its error after the writes in flight have settled; what was not acknowledged
 * is redelivered by the broker to the next attempt.
 */
import type { SinkStage, SourceStage, Stage, StreamBatch, TransformStage } from "../actions/stream-types.js";

export interface PipelineStage {
  /** The step name, for figures and errors. */
  name: string;
  stage: Stage;
}

export interface LatencySummary {
  p50: number;
  p99: number;
  max: number;
}

export interface PipelineStats {
  /** Source description. */
  source: string;
  batches: number;
  records: number;
  stored: number;
  duplicate: number;
  deadLettered: number;
  /** Records per second over the last report window. */
  ratePerSec: number;
  /** Messages waiting in the broker, when it says. */
  lag: number | null;
  /** Broker publish time → storage commit, ms, over the last window. */
  endToEndMs: LatencySummary | null;
  /** Per stage (transform and sink), time a batch spent in it, ms, over the last window. */
  stageMs: Record<string, LatencySummary>;
  /** Publish → commit since the pipeline started (a uniform sample of at most 20,000). */
  endToEndMsOverall: LatencySummary | null;
  uptimeMs: number;
}

export interface PipelineOptions {
  stages: PipelineStage[];
  /** Aborting stops the pipeline after a flush. */
  signal: AbortSignal;
  maxBatch: number;
  maxLatencyMs: number;
  /** Sink writes overlapping (default 4). */
  inFlight?: number;
  /** Called with fresh figures about once a second, and at the end. */
  onStats?: (s: PipelineStats) => void;
  /** Every end-to-end latency sample (ms) and every stage's batch time, for histograms. */
  onLatency?: (stage: string | "end-to-end", ms: number) => void;
  statsEveryMs?: number;
}

/** Committed batches whose acknowledgement may still be on its way before reading pauses. */
const MAX_AWAITING_ACK = 64;

/** Samples kept per window for percentiles: enough for p99 at any rate, bounded in memory. */
const WINDOW_SAMPLES = 20_000;

export async function runPipeline(opts: PipelineOptions): Promise<PipelineStats> {
  const [first, ...rest] = opts.stages;
  const last = rest.at(-1);
  if (!first || first.stage.kind !== "source") throw new Error("a continuous group must start with a source stage");
  if (!last || last.stage.kind !== "sink") throw new Error("a continuous group must end with a sink stage");
  const source: SourceStage = first.stage.stage;
  const transforms = rest.slice(0, -1).map((s) => {
    if (s.stage.kind !== "transform") throw new Error(`step ${s.name} must be a transform stage in the middle of a continuous group`);
    return { name: s.name, stage: s.stage.stage as TransformStage };
  });
  const sink: SinkStage = last.stage.stage;
  const inFlightMax = opts.inFlight ?? 4;
  const started = performance.now();

  const totals = { batches: 0, records: 0, stored: 0, duplicate: 0, deadLettered: 0 };
  let window = newWindow();
  let lag: number | null = null;
  const overall: number[] = [];
  let overallSeen = 0;
  const sample = (key: string, ms: number) => {
    opts.onLatency?.(key, ms);
    keep((window.samples[key] ??= []), ms, (window.seen[key] = (window.seen[key] ?? 0) + 1));
    if (key === "end-to-end") keep(overall, ms, ++overallSeen);
  };
  const snapshot = (): PipelineStats => {
    const now = performance.now();
    const secs = Math.max(0.001, (now - window.startedAt) / 1000);
    const { "end-to-end": e2e, ...stages } = window.samples;
    return {
      source: source.description,
      ...totals,
      ratePerSec: Math.round(window.records / secs),
      lag,
      endToEndMs: e2e?.length ? summarize(e2e) : null,
      stageMs: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, summarize(v)])),
      endToEndMsOverall: overall.length ? summarize(overall) : null,
      uptimeMs: Math.round(now - started),
    };
  };
  const report = () => {
    opts.onStats?.(snapshot());
    window = newWindow();
    if (source.lag)
      source.lag().then(
        (l) => void (lag = l ?? null),
        () => undefined,
      );
  };
  const timer = setInterval(report, opts.statsEveryMs ?? 1_000);
  timer.unref();

  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  // Acknowledgements go out in commit order, one batch after another, off the write slots: a
  // slot is free again once its batch committed, not once the broker confirmed the ack.
  let acking: Promise<void> = Promise.resolve();
  let awaitingAck = 0;
  const write = (batch: StreamBatch, sinkName: string) => {
    const t0 = performance.now();
    const p = sink.write(batch).then((counts) => {
      // End-to-end is publish → commit: the acknowledgement that follows is the broker's business.
      const committed = Date.now();
      sample(sinkName, performance.now() - t0);
      totals.stored += counts.stored;
      totals.duplicate += counts.duplicate;
      totals.deadLettered += counts.deadLettered;
      for (const r of batch.records) if (r.publishedAt !== undefined) sample("end-to-end", Math.max(0, committed - r.publishedAt));
      for (const r of batch.rejected) if (r.record.publishedAt !== undefined) sample("end-to-end", Math.max(0, committed - r.record.publishedAt));
      awaitingAck++;
      acking = acking
        .then(() => batch.ack())
        .catch((err: unknown) => void (failure ??= err))
        .finally(() => void awaitingAck--);
    });
    const tracked = p.catch((err: unknown) => void (failure ??= err)).finally(() => inflight.delete(tracked));
    inflight.add(tracked);
  };

  try {
    while (!opts.signal.aborted && failure === undefined) {
      let batch: StreamBatch;
      try {
        batch = await source.next(opts.maxBatch, opts.maxLatencyMs, opts.signal);
      } catch (err) {
        if (opts.signal.aborted) break;
        throw err;
      }
      const size = batch.records.length + batch.rejected.length;
      if (size === 0) continue;
      totals.batches++;
      totals.records += size;
      window.records += size;
      for (const t of transforms) {
        const t0 = performance.now();
        batch = await t.stage.process(batch);
        sample(t.name, performance.now() - t0);
      }
      while (inflight.size >= inFlightMax && failure === undefined) await Promise.race(inflight);
      // A broker slow to confirm acks slows the reading too, instead of queueing batches without end.
      while (awaitingAck > MAX_AWAITING_ACK && failure === undefined) await acking;
      if (failure !== undefined) break;
      write(batch, last.name);
    }
    // The flush: what was read is written and acknowledged before the pipeline stops.
    while (inflight.size) await Promise.race(inflight);
    await acking;
    if (failure !== undefined) throw failure;
    return snapshot();
  } finally {
    clearInterval(timer);
    while (inflight.size) await Promise.race(inflight).catch(() => undefined);
    await acking;
    opts.onStats?.(snapshot());
    await Promise.allSettled([source.close(), ...transforms.map((t) => t.stage.close?.()), sink.close?.()]);
  }
}

function newWindow() {
  return { startedAt: performance.now(), records: 0, samples: {} as Record<string, number[]>, seen: {} as Record<string, number> };
}

/** Reservoir sampling (Algorithm R): every sample seen so far is kept with the same chance. */
function keep(arr: number[], ms: number, seen: number): void {
  if (arr.length < WINDOW_SAMPLES) arr.push(ms);
  else {
    const j = Math.floor(Math.random() * seen);
    if (j < WINDOW_SAMPLES) arr[j] = ms;
  }
}

function summarize(xs: number[]): LatencySummary {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(s.at(-1)!) };
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** One point of a continuous run's recent figures (kept with its recorded outputs as `recent`). */
export interface StreamSample {
  /** Epoch ms. */
  t: number;
  records: number;
  rate: number;
  lag: number | null;
  p50: number | null;
  p99: number | null;
}

/** Samples kept: one every five seconds, so about five minutes. */
export const STREAM_SAMPLES = 60;

export function streamSample(s: PipelineStats, t: number): StreamSample {
  return { t, records: s.records, rate: s.ratePerSec, lag: s.lag, p50: s.endToEndMs?.p50 ?? null, p99: s.endToEndMs?.p99 ?? null };
}

/**
 * Continuous (streaming) stages: what an action offers when its step is marked `continuous`.
 *
 * A continuous group of steps runs as one pipeline instead of one step after another: the first
 * stage is a source that yields batches of records as they arrive, the middle stages transform
 * each batch, the last stage is a sink that commits it. Batches are small (closed by size or by a
 * maximum wait) and flow through bounded buffers, so a slow sink slows the source instead of
 * filling memory. A batch carries its acknowledgement: the sink commits, then the pipeline
 * acknowledges the batch to the broker, so what was acknowledged is stored.
 */
import type { Column } from "./batch/model.js";

/** A record on its way through the pipeline. */
export interface StreamRecord {
  /** The decoded value (after a decode stage: a row object). */
  value: unknown;
  /** The broker's message id: the dead-letter key, and a fallback idempotency key. */
  id: string;
  /** When the broker received it (epoch ms), for end-to-end latency. */
  publishedAt?: number;
  /** The payload as received (UTF-8 text), kept by the decode stage so a later rejection can dead-letter the original. */
  raw?: string;
}

export interface RejectedRecord {
  record: StreamRecord;
  /** Raw text when decoding failed, for the dead-letter table. */
  raw?: string;
  reasons: string[];
  /** The step that rejected it (part of the dead-letter key); the sink's own step when absent. */
  step?: string;
}

export interface StreamBatch {
  /** Records still going on. */
  records: StreamRecord[];
  /** Records that failed decoding, typing or validation: the sink dead-letters them with the batch. */
  rejected: RejectedRecord[];
  /** When the source handed the batch over (performance.now() ms): per-stage latency. */
  receivedAt: number;
  /** Acknowledge every message of the batch to the broker (called by the pipeline after the sink). */
  ack(): Promise<void>;
  /** The typed columns of `records[].value` (set by the decode stage): the sink creates its table from them. */
  columns?: Column[];
  /** The schema's key, when it declares one: the sink's default upsert key. */
  key?: string[];
  /** A stable name of the stream the messages come from (`nats:TRADES`): with the message id, the dead-letter key. */
  origin?: string;
  /** Where the sink dead-letters `rejected` instead of the destination's quarantine table (validate_streaming_data's `deadLetter`). */
  deadLetter?: string;
}

export interface SourceStage {
  /** Wait for records: resolves with at most `max` once at least one arrived, or an empty batch after `maxWaitMs`. */
  next(max: number, maxWaitMs: number, signal: AbortSignal): Promise<StreamBatch>;
  /** Messages waiting in the broker, when it can say. */
  lag?(): Promise<number | undefined>;
  /** Close the connection; unacknowledged messages are redelivered later. */
  close(): Promise<void>;
  /** What the source is (broker, address, names) for status and logs. */
  readonly description: string;
}

export interface TransformStage {
  process(batch: StreamBatch): Promise<StreamBatch>;
  close?(): Promise<void>;
}

export interface SinkStage {
  /** Commit the batch's records and rejects (one transaction where the destination allows); then the pipeline acks. */
  write(batch: StreamBatch): Promise<{ stored: number; duplicate: number; deadLettered: number }>;
  close?(): Promise<void>;
}

export type Stage = { kind: "source"; stage: SourceStage } | { kind: "transform"; stage: TransformStage } | { kind: "sink"; stage: SinkStage };

/** Batching knobs a stage may declare (the decode stage's `maxBatch` and `maxLatency`). */
export interface StageHints {
  maxBatch?: number;
  maxLatencyMs?: number;
}

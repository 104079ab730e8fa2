/**
 * data-collector/process_streaming_data: decode each message and type it to the schema.
 *
 * `decode: json`: one JSON object per message. `decode: csv`: one CSV record per message, its
 * fields named by the schema's column order (each column's `from`, else its name), or by
 * `csv.columns`. The record is typed by the batch plane's own converter (`compileSchema`), so a
 * value means the same in a stream as in a file. Without `schema`, the standard trade schema the
 * batch workflows convert to is used (DEFAULT_STREAM_SCHEMA).
 *
 * Every row gains `_ingested_at` (timestamp, UTC): the broker's receive time of the message, or,
 * when the broker does not say, the time this stage handled the batch. The broker's time is the
 * same on every delivery of a message, so a redelivered message is the very same row (a
 * duplicate, whatever the key), and the column says when the record entered the stream.
 *
 * A message that cannot be decoded or typed goes to `batch.rejected` with every reason (typing
 * reasons name the column: `quantity: "abc" is not a valid integer`) and its raw text.
 */
import { SluiceError } from "../../errors.js";
import { parseDuration } from "../../spec/duration.js";
import { CsvParser } from "../../formats/csv-parser.js";
import type { RecordBatch } from "../../formats/types.js";
import type { Column, TargetSchemaSpec, TypedRow } from "../batch/model.js";
import { compileSchema } from "../batch/typing.js";
import type { RejectedRecord, Stage, StageHints, StreamBatch, StreamRecord, TransformStage } from "../stream-types.js";
import type { ActionContext, Outputs } from "../types.js";

export const INGESTED_AT = "_ingested_at";

/**
 * The standard trade schema: what the batch conversion step of the standard ingestion workflow
 * (examples/schemas/trades.yaml, the standard workflow's default schema file) types
 * records to. A test keeps the two equal.
 */
export const DEFAULT_STREAM_SCHEMA: TargetSchemaSpec = {
  key: ["trade_id"],
  columns: [
    { name: "trade_id", type: "string", required: true, trim: true },
    { name: "executed_at", type: "timestamp", required: true },
    { name: "symbol", type: "string", required: true, trim: true },
    { name: "side", type: "string", required: true },
    { name: "quantity", type: "integer", required: true },
    { name: "price", type: "decimal", scale: 4, required: true },
    { name: "account", type: "string", required: true },
    { name: "trader_email", type: "string" },
    { name: "notes", type: "string" },
  ],
};

export interface ProcessStreamInput {
  decode: "json" | "csv";
  schema?: TargetSchemaSpec;
  csv?: { delimiter?: string; quote?: string; columns?: string[] };
  maxBatch?: number;
  maxLatency?: string;
}

/** Everything the stage needs, compiled once: the converter, the columns (with `_ingested_at`), the hints. */
export function compileDecoder(input: ProcessStreamInput, step: string) {
  const spec = input.schema ?? DEFAULT_STREAM_SCHEMA;
  if (spec.columns.some((c) => c.name === INGESTED_AT)) {
    throw new SluiceError("BAD_CONFIG", `column ${INGESTED_AT} is added by process_streaming_data (the ingest time); leave it out of the schema`, {
      retryable: false,
    });
  }
  const schema = compileSchema(spec);
  const columns: Column[] = [...schema.columns, { name: INGESTED_AT, type: "timestamp" }];
  const hints: StageHints = {};
  if (input.maxBatch !== undefined) hints.maxBatch = input.maxBatch;
  if (input.maxLatency !== undefined) {
    const ms = parseDuration(input.maxLatency);
    if (ms === undefined)
      throw new SluiceError("BAD_CONFIG", `maxLatency ${JSON.stringify(input.maxLatency)} is not a duration (e.g. 20ms, 1s)`, { retryable: false });
    hints.maxLatencyMs = ms;
  }
  if (input.decode !== "csv" && input.csv !== undefined) throw new SluiceError("BAD_CONFIG", "csv options apply to decode: csv only", { retryable: false });
  const parse = input.decode === "csv" ? csvDecoder(input, spec) : jsonDecoder;
  // Messages of a batch mostly share their receive millisecond: the ISO text of the last one is
  // kept rather than a Date and a string made per record.
  let isoMs = NaN;
  let isoText = "";
  const isoOf = (ms: number): string => {
    if (ms !== isoMs) {
      isoText = new Date(ms).toISOString();
      isoMs = ms;
    }
    return isoText;
  };
  // Only a rejected record needs this (a closure made per record would be garbage for every good one).
  const reject = (record: StreamRecord, raw: string, reasons: string[]) => ({ ok: false as const, rejected: { record: { ...record }, raw, reasons, step } });
  const convert = (record: StreamRecord, now: number): { ok: true; record: StreamRecord } | { ok: false; rejected: RejectedRecord } => {
    const raw = typeof record.value === "string" ? record.value : jsonOrString(record.value);
    const decoded = parse(record.value, record.id);
    if (typeof decoded === "string") return reject(record, raw, [decoded]);
    const r = schema.convert(decoded);
    if (!r.ok) return reject(record, raw, r.reasons);
    const row = r.row as TypedRow;
    row[INGESTED_AT] = isoOf(record.publishedAt ?? now);
    const out: StreamRecord = { value: row, id: record.id, raw };
    if (record.publishedAt !== undefined) out.publishedAt = record.publishedAt;
    return { ok: true, record: out };
  };
  return { columns, key: schema.key, hints, convert };
}

export async function openProcessStage(input: ProcessStreamInput, ctx: ActionContext): Promise<Stage & { hints?: StageHints }> {
  const d = compileDecoder(input, ctx.step);
  const stage: TransformStage = {
    async process(batch: StreamBatch): Promise<StreamBatch> {
      const now = Date.now();
      const records: StreamRecord[] = [];
      const rejected: RejectedRecord[] = [...batch.rejected];
      for (const rec of batch.records) {
        const r = d.convert(rec, now);
        if (r.ok) records.push(r.record);
        else rejected.push(r.rejected);
      }
      const out: StreamBatch = { ...batch, records, rejected, columns: d.columns };
      if (d.key) out.key = d.key;
      return out;
    },
  };
  return { kind: "transform", stage, hints: d.hints };
}

/** As an ordinary step: check the decoding configuration (schema, durations) and say what the stage will do. */
export async function processStreamingData(input: ProcessStreamInput, ctx: ActionContext): Promise<Outputs> {
  const d = compileDecoder(input, ctx.step);
  return {
    mode: "check",
    note: "records are processed only when this step runs in a continuous group; this run checked the configuration",
    decode: input.decode,
    columns: d.columns.map((c) => c.name),
    key: d.key ?? null,
    maxBatch: d.hints.maxBatch ?? null,
    maxLatencyMs: d.hints.maxLatencyMs ?? null,
  };
}

// ---------------------------------------------------------------------------------------------

type Decoded = Record<string, unknown> | string;

function jsonDecoder(value: unknown, id: string): Decoded {
  if (value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof Uint8Array)) return value as Record<string, unknown>;
  if (typeof value !== "string") return `message ${id}: expected the payload as text, found ${kind(value)}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    return value.trim() === "" ? `message ${id}: the payload is empty` : `message ${id}: not valid JSON (${(err as Error).message})`;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return `message ${id}: expected one JSON object, found ${kind(parsed)}`;
  return parsed as Record<string, unknown>;
}

function csvDecoder(input: ProcessStreamInput, spec: TargetSchemaSpec): (value: unknown, id: string) => Decoded {
  const names = input.csv?.columns ?? spec.columns.map((c) => c.from ?? c.name);
  const delimiter = input.csv?.delimiter ?? ",";
  const quote = input.csv?.quote ?? '"';
  if (delimiter === quote) throw new SluiceError("BAD_CONFIG", "csv delimiter and quote must differ", { retryable: false });
  if (new Set(names).size !== names.length) throw new SluiceError("BAD_CONFIG", `csv columns name a field twice (${names.join(", ")})`, { retryable: false });
  // One parser for the whole stage: each message is appended and parsed to its end (final), so
  // nothing carries over from one message to the next.
  const parser = new CsvParser({ file: "message", delimiter, quote, columns: names, firstLine: 1, maxRecordChars: 1 << 24 });
  return (value, id) => {
    if (typeof value !== "string") return `message ${id}: expected the payload as text, found ${kind(value)}`;
    const batch: RecordBatch = { rows: [], lines: [], errors: [] };
    parser.append(value);
    parser.parse(batch, Number.MAX_SAFE_INTEGER, true);
    const n = batch.rows.length + batch.errors.length;
    if (n === 0) return `message ${id}: the payload is empty`;
    if (n > 1) return `message ${id}: expected one CSV record per message, found ${n}`;
    if (batch.errors.length) return `message ${id}: ${batch.errors[0]!.reason}`;
    return batch.rows[0]!;
  };
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (v instanceof Uint8Array) return "bytes";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

function jsonOrString(v: unknown): string {
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

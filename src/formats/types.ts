/**
 * The record model shared by every file format.
 *
 * Readers stream: they yield `RecordBatch`es whose size is bounded by `batchSize`, so memory
 * depends on the batch size and never on the file size. Malformed records are data, not
 * exceptions: they travel in `errors` next to the good rows so the caller can quarantine them
 * and keep going (`rows_in = rows_stored + rows_quarantined`). Only problems that make the
 * whole file unreadable (no header, not a JSON array, not a Parquet file) are thrown, as
 * `SluiceError("BAD_INPUT")`.
 */

/** The file formats Sluice reads and writes. `tsv` is CSV with a tab delimiter. */
import type { Keyring } from "../crypto/keyring.js";
import type { EnvelopeContext } from "../crypto/envelope.js";
export type FileFormat = "csv" | "tsv" | "ndjson" | "json" | "parquet" | "arrow";

/** One record that could not be parsed. Reported, never thrown, so the rest of the file goes on. */
export interface RecordError {
  /** The file the record came from: the reader's `name` option (the user's path or URL), else its path. */
  file: string;
  /**
   * Text formats: the 1-based line where the record STARTS (a CSV record with quoted newlines
   * spans several lines; this is the first). Parquet: the 0-based row index.
   */
  line: number;
  /** A human sentence, e.g. `expected 9 fields, found 7`. */
  reason: string;
  /** The original text of the record, truncated to `MAX_RAW_CHARS`. */
  raw: string;
}

/** A slice of a file: good rows with their positions, plus the malformed records met on the way. */
export interface RecordBatch {
  rows: Record<string, unknown>[];
  /**
   * `lines[i]` is the source position of `rows[i]`: the 1-based line where the record starts
   * for text formats, the 0-based row index for Parquet.
   */
  lines: number[];
  errors: RecordError[];
  /**
   * The column names known for this file, in file order, when the format declares them
   * (CSV header or declared columns, Parquet schema). Absent for NDJSON / JSON, whose rows
   * may each carry different keys.
   */
  columns?: readonly string[];
}

/** Options understood by every reader. */
export interface ReadOptions {
  /** Maximum rows + errors per batch. Default 1,000. */
  batchSize?: number;
  /** Bytes read from disk at a time. Default 1 MiB. Tests use tiny values to split records. */
  highWaterMark?: number;
  /** The text encoding, default "utf-8"; see encoding.ts. */
  encoding?: string;
  /** The name used for this input in errors and RecordError.file (the user's path or URL when the file read is a staged copy); default the path. */
  name?: string;
  /**
   * The file is in the envelope format (crypto/envelope.ts): read its plaintext through a
   * decrypting stream, authenticated chunk by chunk, never written back to disk. Text formats only.
   */
  decrypt?: DecryptWith;
}

/** How to open an encrypted file: the keyring holding its KEK, and the run and dataset it must belong to. */
export interface DecryptWith {
  keyring: Keyring;
  expect?: Partial<EnvelopeContext>;
}

/** What a writer reports when it is closed. */
export interface WriteResult {
  rows: number;
  bytes: number;
}

/**
 * A streaming writer. `write` may be called any number of times; it resolves when the data has
 * been handed to the file (respecting back-pressure), so memory stays bounded by one batch.
 * Row values are taken in `columns` order; keys not in `columns` are ignored.
 */
export interface RecordWriter {
  /** The output columns, in order; fixed once the first row is written (or at open). */
  readonly columns: readonly string[] | undefined;
  write(rows: readonly Record<string, unknown>[]): Promise<void>;
  close(): Promise<WriteResult>;
}

/**
 * Default batch size. Small on purpose: rows that live through several young-generation GCs
 * get promoted and copied, and with 10,000-row batches the CSV reader ran at less than half the
 * speed it reaches with 1,000 (measured on a 100 MB file). Consumers that want bigger units
 * (e.g. one COPY per 50k rows) should gather batches themselves.
 */
export const DEFAULT_BATCH_SIZE = 1_000;
/** Default read size. Large reads are what make the CSV parser fast. */
export const DEFAULT_HIGH_WATER_MARK = 1 << 20;
/** How much of a bad record's text is kept in `RecordError.raw`. */
export const MAX_RAW_CHARS = 4096;
/**
 * A single record (or NDJSON line, or JSON element) larger than this is treated as a broken
 * file rather than buffered without limit, e.g. a quote that never closes in a 10 GB CSV.
 */
export const DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024;

/** Truncate the text of a bad record for `RecordError.raw`. */
export function truncateRaw(text: string): string {
  return text.length <= MAX_RAW_CHARS ? text : text.slice(0, MAX_RAW_CHARS);
}

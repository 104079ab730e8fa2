/**
 * NDJSON (JSON Lines): one JSON object per line. Blank lines are skipped; a line that is not
 * valid JSON, or is valid JSON but not an object, is a malformed record and the rest go on.
 */
import { SluiceError } from "../errors.js";
import { addInvalid, nextInvalidAt, pendingInvalid, takeInvalid } from "./encoding.js";
import { TextFileWriter, decodeChunks, fieldOf, readTextChunks, setField, stringifyJson, type DecodedChunk } from "./io.js";
import { DEFAULT_BATCH_SIZE, DEFAULT_MAX_RECORD_BYTES, type ReadOptions, type RecordBatch, type RecordWriter, type WriteResult, truncateRaw } from "./types.js";

export interface NdjsonReadOptions extends ReadOptions {
  /** A single line longer than this is a broken file (BAD_INPUT). Default 64 MiB. */
  maxRecordBytes?: number;
}

export function readNdjson(path: string, options: NdjsonReadOptions = {}): AsyncGenerator<RecordBatch> {
  const name = options.name ?? path;
  return parseNdjsonChunks(
    readTextChunks(path, { highWaterMark: options.highWaterMark, encoding: options.encoding, name, decrypt: options.decrypt }),
    name,
    options,
  );
}

/**
 * Parse NDJSON from any source of text or byte chunks (an HTTP body, a socket): the same rules
 * and malformed-record reporting as `readNdjson`, bytes decoded in `options.encoding`.
 * `options.name ?? source` names the input in errors.
 */
export function parseNdjsonStream(chunks: AsyncIterable<string | Uint8Array>, source: string, options: NdjsonReadOptions = {}): AsyncGenerator<RecordBatch> {
  const name = options.name ?? source;
  return parseNdjsonChunks(decodeChunks(chunks, { encoding: options.encoding, name }), name, options);
}

async function* parseNdjsonChunks(chunks: AsyncIterable<DecodedChunk>, path: string, options: NdjsonReadOptions): AsyncGenerator<RecordBatch> {
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const maxChars = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  let batch = emptyBatch();
  let rest = ""; // an incomplete last line, carried to the next chunk
  let restAt = 0; // text position of rest[0]
  let line = 1;
  // Marks of bytes not valid in the encoding; `bad` is the text index of the next one (Infinity: none).
  const invalid = pendingInvalid();
  let bad = Infinity;
  const undecodable = (text: string, end: number, base: number): void => {
    const reason = takeInvalid(invalid, base + end)!;
    batch.errors.push({ file: path, line, reason, raw: truncateRaw(stripCr(text)) });
  };

  for await (const chunk of chunks) {
    const text = rest.length > 0 ? rest + chunk.text : chunk.text;
    const base = restAt;
    if (chunk.invalid) bad = addInvalid(invalid, chunk.invalid);
    let p = 0;
    for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", p)) {
      if (bad < base + nl) {
        undecodable(text.slice(p, nl), nl, base);
        bad = nextInvalidAt(invalid);
      } else {
        parseLine(path, text.slice(p, nl), line, batch);
      }
      line++;
      p = nl + 1;
      if (batch.rows.length + batch.errors.length >= batchSize) {
        yield batch;
        batch = emptyBatch();
      }
    }
    rest = text.slice(p);
    restAt = base + p;
    if (rest.length > maxChars) {
      throw new SluiceError("BAD_INPUT", `${path}: line ${line} is longer than ${maxChars} characters`, {
        details: { file: path, line },
      });
    }
  }
  if (rest.length > 0) {
    if (bad < restAt + rest.length) undecodable(rest, rest.length, restAt);
    else parseLine(path, rest, line, batch);
  }
  if (batch.rows.length > 0 || batch.errors.length > 0) yield batch;
}

function parseLine(file: string, text: string, line: number, batch: RecordBatch): void {
  // Cheap blank test first: JSON.parse would reject it anyway, and most lines are not blank.
  const c = text.charCodeAt(0);
  if (text.length === 0 || ((c === 32 || c === 9 || c === 13) && text.trim().length === 0)) return;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    batch.errors.push({ file, line, reason: `invalid JSON: ${(err as Error).message}`, raw: truncateRaw(stripCr(text)) });
    return;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    batch.errors.push({ file, line, reason: `expected a JSON object, found ${jsonKind(value)}`, raw: truncateRaw(stripCr(text)) });
    return;
  }
  batch.rows.push(value as Record<string, unknown>);
  batch.lines.push(line);
}

function stripCr(text: string): string {
  return text.endsWith("\r") ? text.slice(0, -1) : text;
}

/** "an array", "a string", "null"... for error messages. */
export function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  const t = typeof value;
  return t === "object" ? "an object" : `a ${t}`;
}

function emptyBatch(): RecordBatch {
  return { rows: [], lines: [], errors: [] };
}

/**
 * Open a streaming NDJSON writer. With `columns`, each object has exactly those keys in that
 * order (missing values become null); without, rows are written as they are.
 */
export async function openNdjsonWriter(path: string, columns?: readonly string[]): Promise<RecordWriter> {
  const file = new TextFileWriter(path);
  const cols = columns ? [...columns] : undefined;
  let rowsWritten = 0;
  return {
    columns: cols,
    async write(rows) {
      let out = "";
      for (const row of rows) out += stringifyJson(cols ? pick(row, cols) : row) + "\n";
      rowsWritten += rows.length;
      await file.write(out);
    },
    async close(): Promise<WriteResult> {
      return { rows: rowsWritten, bytes: await file.close() };
    },
  };
}

/** A copy of `row` with exactly `columns`, in order; absent values become null. */
export function pick(row: Record<string, unknown>, columns: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of columns) {
    const v = fieldOf(row, c);
    setField(out, c, v === undefined ? null : v);
  }
  return out;
}

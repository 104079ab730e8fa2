/**
 * CSV / TSV reading and writing (RFC 4180). Values are read as strings exactly as they appear
 * (typing is a later layer's job); header names are kept exactly, with no trimming or renaming.
 * Files are decoded in `options.encoding` (encoding.ts); a record holding bytes that are not
 * valid in it is quarantined with their byte offset, never stored altered. Errors and
 * `RecordError.file` name the input as `options.name ?? path`.
 */
import { SluiceError } from "../errors.js";
import { CsvParser } from "./csv-parser.js";
import type { InvalidBytes } from "./encoding.js";
import { TextFileWriter, cellText, decodeChunks, fieldOf, keysOf, readTextChunks, type DecodedChunk } from "./io.js";
import { DEFAULT_BATCH_SIZE, DEFAULT_MAX_RECORD_BYTES, type ReadOptions, type RecordBatch, type RecordWriter, type WriteResult } from "./types.js";

export interface CsvDialect {
  /** One ASCII character. Default `,` (`\t` for .tsv through `openReader`). */
  delimiter?: string;
  /** One ASCII character. Default `"`. */
  quote?: string;
}

export interface CsvReadOptions extends ReadOptions, CsvDialect {
  /**
   * Default true: the first record names the columns. With `header: false`, `columns` must be
   * given and every record is data. With `header: true` and `columns`, the file's header record
   * is skipped and `columns` are used instead.
   */
  header?: boolean;
  columns?: readonly string[];
  /** Records longer than this are a broken file (BAD_INPUT). Default 64 MiB. */
  maxRecordBytes?: number;
}

/** A byte range of a CSV file that starts and ends at record boundaries (see `splitCsv`). */
export interface CsvRange {
  /** First byte (inclusive). */
  start: number;
  /** Byte after the last one (exclusive). */
  end: number;
  /** 1-based line number of the byte at `start`. */
  firstLine: number;
}

/** Check a dialect once, up front: the scanners rely on single-byte ASCII separators. */
export function resolveDialect(opts: CsvDialect): { delimiter: string; quote: string } {
  const delimiter = opts.delimiter ?? ",";
  const quote = opts.quote ?? '"';
  for (const [name, ch] of [
    ["delimiter", delimiter],
    ["quote", quote],
  ] as const) {
    if (ch.length !== 1 || ch.charCodeAt(0) > 127 || ch === "\n" || ch === "\r") {
      throw new SluiceError("BAD_CONFIG", `CSV ${name} must be one ASCII character other than CR/LF, got ${JSON.stringify(ch)}`);
    }
  }
  if (delimiter === quote) throw new SluiceError("BAD_CONFIG", "CSV delimiter and quote must differ");
  return { delimiter, quote };
}

/** Read a whole CSV file as batches of rows (strings), with exact record start lines. */
export function readCsv(path: string, options: CsvReadOptions = {}): AsyncIterable<RecordBatch> {
  return readCsvText(path, options, { start: 0, firstLine: 1, columns: undefined });
}

/**
 * Read only `range` of a CSV file, e.g. one worker's share from `splitCsv`. The header is taken
 * from the file's first record, and line numbers are those of the whole file.
 */
export async function* readCsvRange(path: string, range: CsvRange, options: CsvReadOptions = {}): AsyncGenerator<RecordBatch> {
  if (range.start === 0) {
    yield* readCsvText(path, options, { start: 0, end: range.end, firstLine: 1, columns: undefined });
    return;
  }
  const columns = options.header === false || options.columns ? declaredColumns(options.name ?? path, options) : await readCsvHeader(path, options);
  yield* readCsvText(path, options, { start: range.start, end: range.end, firstLine: range.firstLine, columns });
}

/** The column names of a CSV file: its first record (which may span lines), read alone. */
export async function readCsvHeader(path: string, options: CsvReadOptions = {}): Promise<string[]> {
  const name = options.name ?? path;
  const dialect = resolveDialect(options);
  const parser = new CsvParser({
    file: name,
    ...dialect,
    firstLine: 1,
    maxRecordChars: options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES,
  });
  const batch = emptyBatch();
  const chunks = readTextChunks(path, { highWaterMark: options.highWaterMark ?? 64 * 1024, encoding: options.encoding, name, decrypt: options.decrypt });
  for await (const chunk of chunks) {
    parser.append(chunk.text, chunk.invalid);
    // A limit of one record: the parser stops soon after it has taken the header.
    parser.parse(batch, 1, false);
    if (parser.columns) return [...parser.columns];
  }
  parser.parse(batch, 1, true);
  if (parser.columns) return [...parser.columns];
  throw new SluiceError("BAD_INPUT", `${name}: the file is empty, so it has no header row`, { details: { file: name } });
}

function declaredColumns(path: string, options: CsvReadOptions): readonly string[] {
  if (!options.columns || options.columns.length === 0) {
    throw new SluiceError("BAD_CONFIG", `${path}: header: false needs a declared list of columns`);
  }
  return options.columns;
}

interface TextSlice {
  start: number;
  end?: number;
  firstLine: number;
  /** Columns already known (a range after the first); undefined: from options or the header. */
  columns: readonly string[] | undefined;
}

function readCsvText(path: string, options: CsvReadOptions, slice: TextSlice): AsyncGenerator<RecordBatch> {
  const name = options.name ?? path;
  const chunks = readTextChunks(path, {
    start: slice.start,
    end: slice.end,
    highWaterMark: options.highWaterMark,
    encoding: options.encoding,
    name,
    decrypt: options.decrypt,
  });
  return parseCsvChunks(chunks, name, options, slice);
}

/**
 * Parse CSV from any source of text or byte chunks (an HTTP body, a socket, a file): the same
 * parser and malformed-record reporting as `readCsv`, bytes decoded in `options.encoding`.
 * `options.name ?? source` names the input in errors. A BOM at the very start is dropped.
 */
export function parseCsvStream(chunks: AsyncIterable<string | Uint8Array>, source: string, options: CsvReadOptions = {}): AsyncGenerator<RecordBatch> {
  const name = options.name ?? source;
  return parseCsvChunks(decodeChunks(chunks, { encoding: options.encoding, name }), name, options, { start: 0, firstLine: 1, columns: undefined });
}

async function* parseCsvChunks(chunks: AsyncIterable<DecodedChunk>, name: string, options: CsvReadOptions, slice: TextSlice): AsyncGenerator<RecordBatch> {
  const dialect = resolveDialect(options);
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const header = options.header ?? true;
  let columns = slice.columns;
  let skipFirstRecord = false;
  if (!columns) {
    if (!header) columns = declaredColumns(name, options);
    else if (options.columns) {
      columns = declaredColumns(name, options);
      skipFirstRecord = true;
    }
  }
  const parser = new CsvParser({
    file: name,
    ...dialect,
    columns,
    skipFirstRecord,
    firstLine: slice.firstLine,
    maxRecordChars: options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES,
  });

  let batch = emptyBatch(parser.columns);
  let yielded = false;
  // Text held back while a record is incomplete: the parser is re-run only once the held text
  // has doubled, so a record spanning many small reads costs linear, not quadratic, time.
  // (The decoder has already dropped a BOM at the start of the file.)
  let held: string[] = [];
  let heldInvalid: InvalidBytes[] | undefined;
  let heldChars = 0;
  for await (const chunk of chunks) {
    held.push(chunk.text);
    heldChars += chunk.text.length;
    if (chunk.invalid) heldInvalid = heldInvalid ? heldInvalid.concat(chunk.invalid) : chunk.invalid;
    if (heldChars < parser.pendingChars) continue;
    parser.append(held.length === 1 ? held[0]! : held.join(""), heldInvalid);
    held = [];
    heldInvalid = undefined;
    heldChars = 0;
    while (parser.parse(batch, batchSize, false) === "full") {
      yield batch;
      yielded = true;
      batch = emptyBatch(parser.columns);
    }
  }
  if (held.length > 0) parser.append(held.join(""), heldInvalid);
  while (parser.parse(batch, batchSize, true) === "full") {
    yield batch;
    yielded = true;
    batch = emptyBatch(parser.columns);
  }
  batch.columns = parser.columns;
  // Always yield once when the columns are known, so a header-only file still tells the caller
  // its columns (a converter writes them to the output).
  if (batch.rows.length > 0 || batch.errors.length > 0 || (!yielded && batch.columns)) yield batch;
}

function emptyBatch(columns?: readonly string[]): RecordBatch {
  const batch: RecordBatch = { rows: [], lines: [], errors: [] };
  if (columns) batch.columns = columns;
  return batch;
}

export interface CsvWriteOptions extends CsvDialect {
  /** Write a header row. Default true. */
  header?: boolean;
  /** Default `\n`. */
  lineEnding?: "\n" | "\r\n";
}

/**
 * Open a streaming CSV writer. Fields are quoted only when they contain the delimiter, the
 * quote char, CR or LF (RFC 4180), so plain values round-trip byte for byte. `null` and
 * `undefined` are written as empty fields. Without `columns`, the columns are the keys of the
 * first batch written.
 */
export async function openCsvWriter(path: string, columns?: readonly string[], options: CsvWriteOptions = {}): Promise<RecordWriter> {
  const { delimiter, quote } = resolveDialect(options);
  const eol = options.lineEnding ?? "\n";
  const writeHeader = options.header ?? true;
  const needsQuote = new RegExp(`[${escapeRegex(delimiter)}${escapeRegex(quote)}\\r\\n]`);
  const doubled = new RegExp(escapeRegex(quote), "g");
  const qq = quote + quote;
  const file = new TextFileWriter(path);
  let cols = columns ? [...columns] : undefined;
  let rowsWritten = 0;
  let headerDone = false;

  const field = (value: unknown): string => {
    const text = cellText(value);
    return needsQuote.test(text) ? quote + text.replace(doubled, qq) + quote : text;
  };
  const startIfNeeded = async (rows: readonly Record<string, unknown>[]): Promise<readonly string[]> => {
    cols ??= keysOf(rows);
    if (!headerDone) {
      headerDone = true;
      if (writeHeader && cols.length > 0) await file.write(cols.map(field).join(delimiter) + eol);
    }
    return cols;
  };

  return {
    get columns() {
      return cols;
    },
    async write(rows) {
      if (rows.length === 0) return;
      const c = await startIfNeeded(rows);
      let out = "";
      for (const row of rows) {
        let line = "";
        for (let i = 0; i < c.length; i++) {
          if (i > 0) line += delimiter;
          line += field(fieldOf(row, c[i]!));
        }
        out += line + eol;
      }
      rowsWritten += rows.length;
      await file.write(out);
    },
    async close(): Promise<WriteResult> {
      if (cols) await startIfNeeded([]);
      const bytes = await file.close();
      return { rows: rowsWritten, bytes };
    },
  };
}

/** Escape a character for use in a RegExp, inside or outside a character class. */
function escapeRegex(ch: string): string {
  return ch.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

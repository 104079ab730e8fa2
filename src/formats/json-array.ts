/**
 * A JSON file holding one top-level array of objects: `[ {...}, {...} ]`.
 *
 * Reading streams: instead of JSON.parse on the whole file, a small scanner walks the text
 * tracking string/escape state and bracket depth to find where each top-level element starts
 * and ends, then JSON.parses that element alone. So memory is bounded by one element plus one
 * batch, and a bad element is reported (file, line where it starts, JSON.parse's reason) while
 * the rest are read. Element boundaries come from brackets and strings only, so an element whose
 * brackets do not balance can swallow what follows it: that is reported as one bad element.
 * Anything other than a top-level array (an object, a scalar, an empty file) is a BAD_INPUT
 * error naming the file. An element holding bytes that are not valid in `options.encoding` is a
 * bad element whose reason names their offset (encoding.ts). Errors name the input as
 * `options.name ?? path`.
 */
import { SluiceError } from "../errors.js";
import { addInvalid, nextInvalidAt, pendingInvalid, takeInvalid } from "./encoding.js";
import { TextFileWriter, readTextChunks, stringifyJson } from "./io.js";
import { jsonKind, pick } from "./ndjson.js";
import { DEFAULT_BATCH_SIZE, DEFAULT_MAX_RECORD_BYTES, type ReadOptions, type RecordBatch, type RecordWriter, type WriteResult, truncateRaw } from "./types.js";

export interface JsonArrayReadOptions extends ReadOptions {
  /** One element longer than this is a broken file (BAD_INPUT). Default 64 MiB. */
  maxRecordBytes?: number;
}

const QUOTE = 34; // "
const BACKSLASH = 92;
const COMMA = 44;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;

/** Before the opening `[`, inside the array, or after its closing `]`. */
type Phase = "start" | "array" | "end";

export async function* readJsonArray(path: string, options: JsonArrayReadOptions = {}): AsyncGenerator<RecordBatch> {
  const name = options.name ?? path;
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const maxChars = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  let batch: RecordBatch = { rows: [], lines: [], errors: [] };

  let buf = "";
  let i = 0; // scan position in buf
  let phase: Phase = "start";
  let depth = 0; // bracket depth inside the current element
  let inString = false;
  let elemStart = -1; // index in buf of the current element's first character, -1 if none yet
  let elemLine = 0;
  let trailing = false; // text after the closing bracket was reported
  let afterComma = false; // a comma was seen and no element has started since
  let base = 0; // text position of buf[0]
  // Marks of bytes not valid in the encoding; `bad` is the text position of the next (Infinity: none).
  const invalid = pendingInvalid();
  let bad = Infinity;
  /** The reason for the marks in buf[.., end), consumed; undefined when there are none. */
  const undecodable = (end: number): string | undefined => {
    if (bad >= base + end) return undefined;
    const reason = takeInvalid(invalid, base + end);
    bad = nextInvalidAt(invalid);
    return reason;
  };
  // Lines are counted lazily: `line` is the line number at buf index `linePos`.
  let line = 1;
  let linePos = 0;
  const lineAt = (idx: number): number => {
    for (let k = buf.indexOf("\n", linePos); k !== -1 && k < idx; k = buf.indexOf("\n", k + 1)) line++;
    linePos = idx;
    return line;
  };
  const finishElement = (end: number): void => {
    if (elemStart === -1) {
      batch.errors.push({ file: name, line: lineAt(end), reason: "empty array element (a stray comma?)", raw: "" });
      return;
    }
    const text = buf.slice(elemStart, end).trimEnd();
    const undecoded = undecodable(end);
    if (undecoded !== undefined) {
      batch.errors.push({ file: name, line: elemLine, reason: undecoded, raw: truncateRaw(text) });
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      batch.errors.push({ file: name, line: elemLine, reason: `invalid JSON: ${(err as Error).message}`, raw: truncateRaw(text) });
      return;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      batch.errors.push({ file: name, line: elemLine, reason: `expected a JSON object, found ${jsonKind(value)}`, raw: truncateRaw(text) });
      return;
    }
    batch.rows.push(value as Record<string, unknown>);
    batch.lines.push(elemLine);
  };

  // (The decoder has already dropped a BOM at the start of the file.)
  for await (const chunk of readTextChunks(path, { highWaterMark: options.highWaterMark, encoding: options.encoding, name, decrypt: options.decrypt })) {
    if (chunk.invalid) bad = addInvalid(invalid, chunk.invalid);
    // Drop what has been consumed, keeping the current element's text.
    const keep = elemStart !== -1 ? elemStart : i;
    lineAt(keep);
    buf = buf.slice(keep) + chunk.text;
    base += keep;
    i -= keep;
    if (elemStart !== -1) elemStart -= keep;
    linePos = 0;

    const len = buf.length;
    while (i < len) {
      if (phase === "array") {
        if (inString) {
          // Jump to the next quote and check whether it is escaped (odd run of backslashes).
          const k = buf.indexOf('"', i);
          if (k === -1) {
            // Stop before a trailing run of backslashes, so that when the next chunk arrives the
            // run is counted whole and an escaped quote is not taken for the closing one.
            i = len;
            while (i > 0 && buf.charCodeAt(i - 1) === BACKSLASH) i--;
            break;
          }
          let b = k - 1;
          while (b >= i && buf.charCodeAt(b) === BACKSLASH) b--;
          if ((k - 1 - b) % 2 === 1) {
            i = k + 1; // an escaped quote: still inside the string
            continue;
          }
          inString = false;
          i = k + 1;
          continue;
        }
        const c = buf.charCodeAt(i);
        if (depth === 0) {
          if (c === COMMA) {
            finishElement(i);
            elemStart = -1;
            afterComma = true;
            i++;
            if (batch.rows.length + batch.errors.length >= batchSize) {
              yield batch;
              batch = { rows: [], lines: [], errors: [] };
            }
            continue;
          }
          if (c === CLOSE_BRACKET) {
            if (elemStart !== -1 || afterComma) finishElement(i);
            elemStart = -1;
            phase = "end";
            i++;
            continue;
          }
          if (c === 32 || c === 10 || c === 13 || c === 9) {
            i++;
            continue;
          }
        }
        if (elemStart === -1) {
          elemStart = i;
          elemLine = lineAt(i);
          afterComma = false;
        }
        if (c === QUOTE) inString = true;
        else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
        else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && depth > 0) depth--;
        i++;
      } else if (phase === "start") {
        const c = buf.charCodeAt(i);
        if (c === 32 || c === 10 || c === 13 || c === 9) {
          i++;
          continue;
        }
        if (c !== OPEN_BRACKET) {
          const undecoded = undecodable(i + 1);
          if (undecoded !== undefined) {
            throw new SluiceError("BAD_INPUT", `${name}: the file cannot be read as a JSON array: ${undecoded}`, {
              details: { file: name, line: lineAt(i) },
            });
          }
          throw new SluiceError("BAD_INPUT", `${name}: expected a JSON array of objects, but the file starts with ${JSON.stringify(buf.slice(i, i + 20))}`, {
            details: { file: name, line: lineAt(i) },
          });
        }
        phase = "array";
        i++;
      } else {
        // After the closing bracket only whitespace may follow.
        const c = buf.charCodeAt(i);
        if (c === 32 || c === 10 || c === 13 || c === 9) {
          i++;
          continue;
        }
        batch.errors.push({
          file: name,
          line: lineAt(i),
          reason: "unexpected text after the end of the top-level array",
          raw: truncateRaw(buf.slice(i)),
        });
        i = len;
        trailing = true;
        break;
      }
    }
    if (elemStart !== -1 && len - elemStart > maxChars) {
      throw new SluiceError("BAD_INPUT", `${name}: the array element starting at line ${elemLine} is longer than ${maxChars} characters`, {
        details: { file: name, line: elemLine },
      });
    }
    if (batch.rows.length + batch.errors.length >= batchSize) {
      yield batch;
      batch = { rows: [], lines: [], errors: [] };
    }
    if (trailing) break; // the array is over; ignore (and stop reading) the rest of the file
  }

  if (phase === "start") {
    throw new SluiceError("BAD_INPUT", `${name}: expected a JSON array of objects, but the file is empty`, { details: { file: name } });
  }
  if (phase === "array") {
    const at = elemStart !== -1 ? elemLine : lineAt(buf.length);
    const reason = elemStart !== -1 ? "unterminated array element at end of file" : "the top-level array is not closed at end of file";
    const undecoded = undecodable(buf.length);
    batch.errors.push({
      file: name,
      line: at,
      reason: undecoded === undefined ? reason : `${undecoded}; ${reason}`,
      raw: elemStart !== -1 ? truncateRaw(buf.slice(elemStart)) : "",
    });
  }
  if (batch.rows.length > 0 || batch.errors.length > 0) yield batch;
}

/**
 * Open a streaming JSON array writer: `[\n{...},\n{...}\n]\n`. With `columns`, each object has
 * exactly those keys in that order (missing values become null).
 */
export async function openJsonArrayWriter(path: string, columns?: readonly string[]): Promise<RecordWriter> {
  const file = new TextFileWriter(path);
  const cols = columns ? [...columns] : undefined;
  let rowsWritten = 0;
  await file.write("[");
  return {
    columns: cols,
    async write(rows) {
      let out = "";
      for (const row of rows) {
        out += (rowsWritten === 0 ? "\n" : ",\n") + stringifyJson(cols ? pick(row, cols) : row);
        rowsWritten++;
      }
      await file.write(out);
    },
    async close(): Promise<WriteResult> {
      await file.write("\n]\n");
      return { rows: rowsWritten, bytes: await file.close() };
    },
  };
}

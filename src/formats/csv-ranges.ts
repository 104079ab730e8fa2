/**
 * Split a CSV file into byte ranges of about N bytes that start at record boundaries, so that
 * parallel workers can each parse one range (`readCsvRange`) with the file's own line numbers.
 *
 * One sequential pass over the bytes, tracking the same quote rules as the parser
 * (`csv-parser.ts`): a quote opens a quoted field only as the first character of a field, so a
 * newline inside a quoted field is never taken for a record boundary, and a stray quote in the
 * middle of an unquoted field does not flip the state. Both sides must agree, otherwise a range
 * could begin in the middle of a record. Works on bytes (the delimiter and quote are ASCII, and
 * no byte of a multi-byte UTF-8 character is ASCII), so no text decoding is needed.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { resolveDialect, type CsvDialect, type CsvRange } from "./csv.js";

export interface SplitCsvOptions extends CsvDialect {
  /** Target range size in bytes (ranges end at the first record boundary past it). Default 100 MiB. */
  targetBytes?: number;
  highWaterMark?: number;
}

const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
/** Just saw a quote inside a quoted field at the very end of a chunk: doubled, or closing? */
const QUOTE_IN_QUOTED = 3;
const LF = 10;

export async function splitCsv(path: string, options: SplitCsvOptions = {}): Promise<CsvRange[]> {
  const { delimiter, quote } = resolveDialect(options);
  const D = delimiter.charCodeAt(0);
  const Q = quote.charCodeAt(0);
  const target = Math.max(1, options.targetBytes ?? 100 * 1024 * 1024);
  const size = (await stat(path)).size;
  const ranges: CsvRange[] = [];
  if (size === 0) return [{ start: 0, end: 0, firstLine: 1 }];

  let state = FIELD_START;
  let line = 1;
  let rangeStart = 0;
  let rangeLine = 1;
  let offset = 0; // file offset of chunk[0]
  let first = true;

  for await (const chunk of createReadStream(path, { highWaterMark: options.highWaterMark ?? 1 << 20 }) as AsyncIterable<Buffer>) {
    const n = chunk.length;
    let i = 0;
    // A UTF-8 BOM is not part of the first field (the parser strips it too).
    if (first && n >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) i = 3;
    first = false;
    // Jump between the bytes that matter with Buffer.indexOf (native memchr) rather than
    // visiting every byte: ~5x faster than a byte loop.
    let nl = -2; // cached next LF at or after i (-1: none in chunk)
    let q = -2; // cached next quote at or after i
    if (state === QUOTE_IN_QUOTED && i < n) {
      // Resolve the quote that ended the previous chunk.
      if (chunk[i] === Q) {
        state = QUOTED;
        i++;
      } else {
        state = UNQUOTED; // it closed the field; continue as after a closing quote
      }
    }
    while (i < n) {
      if (state === QUOTED) {
        if (q !== -1 && q < i) q = chunk.indexOf(Q, i);
        const stop = q === -1 ? n : q;
        // Newlines inside the quoted field count as lines but are not boundaries.
        if (nl !== -1 && nl < i) nl = chunk.indexOf(LF, i);
        while (nl !== -1 && nl < stop) {
          line++;
          nl = chunk.indexOf(LF, nl + 1);
        }
        if (q === -1) break; // the field goes on in the next chunk
        if (q + 1 >= n) {
          state = QUOTE_IN_QUOTED;
          break;
        }
        if (chunk[q + 1] === Q) {
          i = q + 2; // a doubled quote
        } else {
          // The closing quote. What follows (delimiter, line end or junk) is handled as
          // unquoted text, exactly as the parser does.
          state = UNQUOTED;
          i = q + 1;
        }
        continue;
      }
      // FIELD_START or UNQUOTED: only the next LF and the next quote matter.
      if (nl !== -1 && nl < i) nl = chunk.indexOf(LF, i);
      if (q !== -1 && q < i) q = chunk.indexOf(Q, i);
      if (q !== -1 && (nl === -1 || q < nl)) {
        // A quote opens a quoted field only as the field's first byte.
        const atFieldStart = q === i ? state === FIELD_START : chunk[q - 1] === D;
        state = atFieldStart ? QUOTED : UNQUOTED;
        i = q + 1;
        continue;
      }
      if (nl === -1) {
        // No more LF or quote in this chunk: note whether it ends at a field start.
        state = chunk[n - 1] === D ? FIELD_START : UNQUOTED;
        break;
      }
      // A record boundary: cut here if the current range is big enough.
      line++;
      state = FIELD_START;
      i = nl + 1;
      const at = offset + i;
      if (at - rangeStart >= target && at < size) {
        ranges.push({ start: rangeStart, end: at, firstLine: rangeLine });
        rangeStart = at;
        rangeLine = line;
      }
    }
    offset += n;
  }
  ranges.push({ start: rangeStart, end: size, firstLine: rangeLine });
  return ranges;
}

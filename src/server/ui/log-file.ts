/**
 * Reading windows of an attempt's log file without reading the file: the last N lines before a
 * byte offset (the page, and "load earlier"), and the complete lines after one (the live tail).
 *
 * Airflow froze on an 8 MB log (#52772) and Dagster hung on large ones (#7821) because the whole
 * log went to the browser. Here a page holds at most a few hundred lines of at most LINE_MAX
 * characters, found by reading the file backwards in 64 kB blocks, so the cost of a page follows
 * the lines shown, not the size of the log. Offsets are byte positions at line starts: they are
 * the cursor of "load earlier" and the SSE event ids a reconnecting tail resumes from.
 */
import { open } from "node:fs/promises";

/** Characters shown of one line; the rest is counted ("… 12,345 more bytes"). */
export const LINE_MAX = 2_000;
const BLOCK = 64 * 1024;
/** Bytes read back at most for one window: a single 8 MB line must not be read whole either. */
const SCAN_MAX = 1024 * 1024;

export interface LogLine {
  /** Byte offset of the line's start. */
  at: number;
  text: string;
  /** Bytes of the line left out past LINE_MAX characters (0: whole). */
  cut: number;
}

export interface LogWindow {
  lines: LogLine[];
  /** Offset of the first line shown: "load earlier" reads before it; 0 at the start of the file. */
  start: number;
  /** Offset just past the last line shown. */
  end: number;
}

export function capLine(text: string, max = LINE_MAX): { text: string; cut: number } {
  return text.length > max ? { text: text.slice(0, max), cut: text.length - max } : { text, cut: 0 };
}

function toLines(buf: Buffer, base: number): LogLine[] {
  const out: LogLine[] = [];
  let from = 0;
  while (from < buf.length) {
    let nl = buf.indexOf(10, from);
    if (nl === -1) nl = buf.length;
    let stop = nl;
    if (stop > from && buf[stop - 1] === 13) stop--; // CRLF
    // Decoding at most a little past LINE_MAX characters: a 5 MB line costs no 5 MB string.
    const limit = Math.min(stop, from + LINE_MAX * 4);
    const decoded = buf.toString("utf8", from, limit);
    const c = capLine(decoded);
    const cut = c.cut === 0 && stop === limit ? 0 : stop - from - Buffer.byteLength(c.text);
    out.push({ at: base + from, text: c.text, cut });
    from = nl + 1;
  }
  return out;
}

/** The file's size, and the end of its last complete line (what a tail has safely shown). */
export async function logSize(file: string): Promise<{ size: number; complete: number } | undefined> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch {
    return undefined;
  }
  try {
    const { size } = await fh.stat();
    if (size === 0) return { size, complete: 0 };
    const from = Math.max(0, size - BLOCK);
    const buf = Buffer.alloc(size - from);
    await fh.read(buf, 0, buf.length, from);
    const nl = buf.lastIndexOf(10);
    return { size, complete: nl === -1 ? (from === 0 ? 0 : size) : from + nl + 1 };
  } finally {
    await fh.close();
  }
}

/** At most `n` lines ending at byte `before` (a line start, or the end of the file). */
export async function linesBefore(file: string, before: number, n: number): Promise<LogWindow> {
  const fh = await open(file, "r");
  try {
    const end = Math.min(before, (await fh.stat()).size);
    let start = end;
    let chunks: Buffer[] = [];
    let newlines = 0;
    // Back block by block until n line starts are known (n + 1 newlines, the last one ending our window).
    while (start > 0 && newlines <= n && end - start < SCAN_MAX) {
      const from = Math.max(0, start - BLOCK);
      const buf = Buffer.alloc(start - from);
      await fh.read(buf, 0, buf.length, from);
      chunks = [buf, ...chunks];
      for (let i = 0; i < buf.length; i++) if (buf[i] === 10) newlines++;
      start = from;
    }
    let data = Buffer.concat(chunks);
    // The window starts at a line start: drop the partial first line unless we reached the file's start.
    if (start > 0) {
      const nl = data.indexOf(10);
      if (nl !== -1 && nl < data.length - 1) {
        data = data.subarray(nl + 1);
        start += nl + 1;
      }
    }
    if (data.length > 0 && data[data.length - 1] === 10) data = data.subarray(0, data.length - 1);
    let lines = data.length > 0 || end > start ? toLines(data, start) : [];
    if (lines.length > n) lines = lines.slice(lines.length - n);
    return { lines, start: lines[0]?.at ?? end, end };
  } finally {
    await fh.close();
  }
}

/** The complete lines from byte `from`, reading at most `maxBytes`; `final` also takes a last line without its newline. */
export async function linesFrom(file: string, from: number, maxBytes: number, final: boolean): Promise<LogWindow> {
  const fh = await open(file, "r");
  try {
    const size = (await fh.stat()).size;
    const len = Math.max(0, Math.min(size - from, maxBytes));
    const buf = Buffer.alloc(len);
    if (len > 0) await fh.read(buf, 0, len, from);
    let cut = buf.lastIndexOf(10) + 1;
    if (final && from + len === size) cut = len;
    else if (cut === 0 && len === maxBytes) cut = len; // One line longer than a whole read: show it in parts.
    const data = buf.subarray(0, cut);
    const body = data.length && data[data.length - 1] === 10 ? data.subarray(0, data.length - 1) : data;
    return { lines: data.length ? toLines(body, from) : [], start: from, end: from + cut };
  } finally {
    await fh.close();
  }
}

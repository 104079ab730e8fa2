/**
 * The stage format: typed rows between the steps of a batch run, one line per row.
 *
 *   header:  _line <TAB> col1 <TAB> … <TAB> colN <TAB> _sluice_hash
 *   row:     1234  <TAB> v1   <TAB> … <TAB> vN   <TAB> 3q2+7wGl…     (27 base64 characters)
 *
 * Values are PostgreSQL COPY text (`\N` null, `t`/`f` booleans, `\\` `\t` `\n` `\r` escaped
 * inside strings), so a raw newline only ever ends a row and a stored row is the line with its
 * first field cut off. `_line` is the record's position in its source; the hash is the row's
 * content hash (`_sluice_hash` of every destination), computed once, by the step that types the
 * rows, instead of by every store. Two kinds (see `rowHashKind`): without a key the hash is the
 * row's identity and stays the canonical-text SHA-1 earlier versions wrote; with a key it only
 * tells a changed row from an unchanged one and is the SHA-1 of the row's stage text.
 *
 * Why this shape (measured on 1M trade rows, 2 cores): writing rows through a writer generated
 * per schema costs about a third of the generic per-value writer it replaced, since types are
 * known when the code is built (only string columns are ever escaped, and one regular-expression
 * test per row decides whether any value needs it); the store step moves the lines to the
 * destination without building an object per row; the quality step splits each line once and
 * looks only at the columns its rules name.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { once } from "node:events";
import * as crypto from "node:crypto";
import { SluiceError } from "../errors.js";
import type { Column, TypedRow, TypedValue } from "./typed.js";

export const STAGE_FORMAT = "stage" as const;
export const LINE_FIELD = "_line";
export const HASH_FIELD = "_sluice_hash";
/** Characters of a content hash (SHA-1 in base64 without padding). */
export const HASH_CHARS = 27;

const FLUSH_BYTES = 1 << 20;
const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPES = /[\\\t\n\r]/g;

/** COPY text escaping of one string value. */
export function escapeCopy(v: string): string {
  return NEEDS_ESCAPE.test(v) ? v.replace(ESCAPES, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r")) : v;
}

/** The inverse of escapeCopy (also reads the other backslash escapes COPY writes). */
export function unescapeCopy(v: string): string {
  if (v.indexOf("\\") === -1) return v;
  return v.replace(/\\(.)/g, (_m, c: string) =>
    c === "t" ? "\t" : c === "n" ? "\n" : c === "r" ? "\r" : c === "b" ? "\b" : c === "f" ? "\f" : c === "v" ? "\v" : c,
  );
}

const hashText: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === "function"
    ? (text) => crypto.hash("sha1", text, "base64").slice(0, HASH_CHARS)
    : (text) => crypto.createHash("sha1").update(text).digest("base64").slice(0, HASH_CHARS);

/**
 * The canonical text of a row's values in column order: null `~`, true `T`, false `F`, a string
 * as `<length>:<text>`. Each token starts with a distinct character and strings carry their
 * length, so two different rows never have the same text. (Kept as it was before the stage
 * format existed, so tables loaded by earlier versions keep matching their hashes.)
 */
export function canonicalText(values: readonly TypedValue[]): string {
  let s = "";
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    s += typeof v === "string" ? v.length + ":" + v : v === true ? "T" : v === false ? "F" : "~";
  }
  return s;
}

/** SHA-1 (base64, 27 characters) of a row's canonical text: the `_sluice_hash` column of a keyless table. */
export function contentHash(values: readonly TypedValue[]): string {
  return hashText(canonicalText(values));
}

/**
 * Which content hash a row gets. `canonical`: SHA-1 of `canonicalText`, the hash of a table
 * without a key, where it is the row's identity (`on conflict (_sluice_hash) do nothing`), so it
 * must not change between versions. `text`: SHA-1 of the row's values as stage text (COPY text,
 * tab-separated, exactly what a stage line holds between `_line` and the hash), for a table with
 * a key, where the hash only tells a changed row from an unchanged one. The text is already
 * built for the stage line, so this kind skips building a second string per row: on 300k trade
 * rows a stage line took 1,040 ns instead of 1,750 (the canonical text and its hashing were
 * 40% of the line). Both are injective for a given schema (COPY text escapes its separators),
 * so `text` would do as an identity too; it is not used as one only so that keyless tables
 * loaded by earlier versions keep matching.
 */
export type RowHashKind = "canonical" | "text";

export function rowHashKind(key: readonly string[] | undefined): RowHashKind {
  return key !== undefined && key.length > 0 ? "text" : "canonical";
}

/** The `text` hash of typed values (the one the stage writer computes for keyed rows), for rows that were not staged. */
export function textHash(values: readonly TypedValue[], columns: readonly Column[]): string {
  return hashText(copyText(values, columns));
}

/**
 * Values in column order as the COPY text of a stage line between `_line` and the hash, value by
 * value (strings escaped): the stage writer's rules written out once, for its slow path and for
 * `textHash`. A boolean column's text that is not a boolean is null, as on the writer's fast path.
 */
function copyText(values: readonly (TypedValue | undefined)[], columns: readonly Column[]): string {
  let t = "";
  for (let i = 0; i < columns.length; i++) {
    const v = values[i];
    if (i > 0) t += "\t";
    if (v === null || v === undefined) t += "\\N";
    else if (columns[i]!.type === "boolean") {
      const b = typeof v === "boolean" ? v : booleanText(v);
      t += b === null ? "\\N" : b ? "t" : "f";
    } else t += escapeCopy(String(v));
  }
  return t;
}

/** Turns a typed row into its stage line (with the trailing newline). */
export type StageLineWriter = (row: TypedRow, line: number) => string;

/**
 * A stage line writer for `columns`, generated once per schema: one straight-line block per
 * column, reading a constant property name, with the escaping and canonical-text rules of its
 * type. Non-string values are canonical typed text that never holds a tab, newline or
 * backslash, so only string columns are checked, all with one test per row.
 */
export function compileStageLineWriter(columns: readonly Column[], hashKind: RowHashKind = "canonical"): StageLineWriter {
  const body: string[] = ["let t = ''; let c = ''; let s = ''; let v;"];
  columns.forEach((col, i) => {
    const key = JSON.stringify(col.name);
    const get = col.name in Object.prototype ? `Object.hasOwn(row, ${key}) ? row[${key}] : undefined` : `row[${key}]`;
    body.push(`v = ${get};`);
    const sep = i === 0 ? "" : "\\t";
    // The canonical text is built only for the `canonical` hash kind.
    const canon = (expr: string): string => (hashKind === "canonical" ? ` c += ${expr};` : "");
    if (col.type === "boolean") {
      body.push(
        `if (v === true) { t += "${sep}t";${canon(`"T"`)} } else if (v === false) { t += "${sep}f";${canon(`"F"`)} } else if (typeof v === "string") { const b = bool(v); t += "${sep}" + (b === null ? "\\\\N" : b ? "t" : "f");${canon(`b === null ? "~" : b ? "T" : "F"`)} } else { t += "${sep}\\\\N";${canon(`"~"`)} }`,
      );
    } else {
      const text = col.type === "string" ? "(s += v, v)" : "v";
      body.push(
        `if (typeof v === "string") { t += "${sep}" + ${text};${canon(`v.length + ":" + v`)} } else if (v === null || v === undefined) { t += "${sep}\\\\N";${canon(`"~"`)} } else { v = String(v); t += "${sep}" + ${text};${canon(`v.length + ":" + v`)} }`,
      );
    }
  });
  const strings = columns.filter((c) => c.type === "string");
  // Only when some string value holds a special character is the line rebuilt value by value.
  if (strings.length > 0) body.push(`if (NEEDS.test(s)) t = slow(row);`);
  body.push(`return line + "\\t" + t + "\\t" + hash(${hashKind === "text" ? "t" : "c"}) + "\\n";`);
  const factory = new Function("NEEDS", "hash", "bool", "slow", `return function stageLine(row, line) {\n${body.join("\n")}\n};`) as (
    needs: RegExp,
    hash: (s: string) => string,
    bool: (s: string) => boolean | null,
    slow: (row: TypedRow) => string,
  ) => StageLineWriter;
  const names = columns.map((c) => c.name);
  const slow = (row: TypedRow): string =>
    copyText(
      names.map((n) => (Object.hasOwn(row, n) ? row[n] : undefined)),
      columns,
    );
  return factory(NEEDS_ESCAPE, hashText, booleanText, slow);
}

/** A boolean given as text (t/f, true/false, 1/0) as staged by earlier writers; null otherwise. */
function booleanText(s: string): boolean | null {
  const l = s.toLowerCase();
  if (l === "t" || l === "true" || l === "1") return true;
  if (l === "f" || l === "false" || l === "0") return false;
  return null;
}

/** The header line of a stage file for `columns`. */
export function stageHeader(columns: readonly Column[]): string {
  return [LINE_FIELD, ...columns.map((c) => escapeCopy(c.name)), HASH_FIELD].join("\t") + "\n";
}

export interface StageWriter {
  /** Append typed rows; `lines[i]` is the source position of `rows[i]`. */
  write(rows: readonly TypedRow[], lines: readonly number[]): Promise<void>;
  /** Append lines already in stage form (from another stage file). */
  writeLines(text: string, rows: number): Promise<void>;
  /** The same, as bytes: whole stage lines, copied as they are. */
  writeBytes(pieces: readonly Buffer[], rows: number): Promise<void>;
  close(): Promise<{ rows: number; bytes: number }>;
}

/** `hashKind`: the content hash of the rows written as typed rows (`rowHashKind` of the schema's key). */
export async function openStageWriter(path: string, columns: readonly Column[], hashKind: RowHashKind = "canonical"): Promise<StageWriter> {
  const out = createWriteStream(path);
  const failure: { err?: Error } = {};
  out.on("error", (err) => (failure.err = err));
  const lineOf = compileStageLineWriter(columns, hashKind);
  // Each line is encoded into the buffer as soon as it is made, so the strings it was built
  // from die young: gathering a megabyte of lines as one string first kept ~400k rope nodes
  // alive across scavenges and the garbage collector took a third of the conversion's time.
  let buf = Buffer.allocUnsafe(FLUSH_BYTES);
  let pos = buf.write(stageHeader(columns));
  let rows = 0;
  let bytes = 0;
  const flush = async () => {
    if (failure.err) throw ioError(path, failure.err);
    if (pos === 0) return;
    const chunk = buf.subarray(0, pos);
    bytes += pos;
    buf = Buffer.allocUnsafe(FLUSH_BYTES);
    pos = 0;
    if (!out.write(chunk)) await once(out, "drain");
  };
  const put = async (text: string) => {
    // A UTF-16 unit takes at most 3 bytes in UTF-8.
    if (pos + text.length * 3 > buf.length) {
      await flush();
      if (text.length * 3 > buf.length) buf = Buffer.allocUnsafe(text.length * 3);
    }
    pos += buf.write(text, pos);
  };
  return {
    async write(batch, lines) {
      for (let i = 0; i < batch.length; i++) {
        const line = lineOf(batch[i]!, lines[i]!);
        if (pos + line.length * 3 > buf.length) await put(line);
        else pos += buf.write(line, pos);
      }
      rows += batch.length;
    },
    async writeLines(text, n) {
      await put(text);
      rows += n;
    },
    async writeBytes(pieces, n) {
      for (const piece of pieces) {
        for (let at = 0; at < piece.length;) {
          if (pos === buf.length) await flush();
          const copied = piece.copy(buf, pos, at, Math.min(piece.length, at + buf.length - pos));
          pos += copied;
          at += copied;
        }
      }
      rows += n;
    },
    async close() {
      await flush();
      await new Promise<void>((res, rej) => (out.once("error", rej), out.end(res)));
      return { rows, bytes };
    },
  };
}

function ioError(path: string, cause: Error): SluiceError {
  return new SluiceError("IO_ERROR", `cannot write ${path}: ${cause.message}`, { cause });
}

/** A chunk of whole stage lines, as bytes. */
export interface StageChunk {
  /** Complete lines, each ending in "\n". */
  data: Buffer;
  rows: number;
}

/**
 * The rows of a stage file as chunks of whole lines (bytes, undecoded), the header checked
 * against `columns` and left out. `exclude` drops the rows whose `_line` it holds (rows a
 * quality step set aside without rewriting the file).
 */
export async function* readStageChunks(path: string, columns: readonly Column[], exclude?: ReadonlySet<number>): AsyncGenerator<StageChunk> {
  let rest: Buffer | undefined;
  let header = true;
  const expected = stageHeader(columns);
  for await (const piece of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let data = rest ? Buffer.concat([rest, piece]) : piece;
    rest = undefined;
    if (header) {
      const nl = data.indexOf(10);
      if (nl === -1) {
        rest = data;
        continue;
      }
      const found = data.toString("utf8", 0, nl + 1);
      if (found !== expected) throw damaged(path, `its header is ${JSON.stringify(found.trim())}, expected ${JSON.stringify(expected.trim())}`);
      data = data.subarray(nl + 1);
      header = false;
    }
    const last = data.lastIndexOf(10);
    if (last === -1) {
      rest = data;
      continue;
    }
    if (last < data.length - 1) rest = Buffer.from(data.subarray(last + 1));
    const whole = data.subarray(0, last + 1);
    yield exclude && exclude.size > 0 ? filterLines(whole, exclude) : { data: whole, rows: countLines(whole) };
  }
  if (rest && rest.length > 0) throw damaged(path, "its last line is incomplete");
  if (header) throw damaged(path, "it has no header line");
}

function damaged(path: string, why: string): SluiceError {
  return new SluiceError("INTERNAL", `staged file ${path} is damaged: ${why}`, { retryable: false });
}

function countLines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
  return n;
}

/** The `_line` at the start of the line that begins at `start`. */
export function lineNumberAt(b: Buffer, start: number): number {
  let n = 0;
  for (let i = start; ; i++) {
    const c = b[i]!;
    if (c === 9) return n;
    n = n * 10 + (c - 48);
  }
}

function filterLines(b: Buffer, exclude: ReadonlySet<number>): StageChunk {
  const keep: Buffer[] = [];
  let rows = 0;
  let runStart = 0;
  let p = 0;
  while (p < b.length) {
    const nl = b.indexOf(10, p);
    if (exclude.has(lineNumberAt(b, p))) {
      if (p > runStart) keep.push(b.subarray(runStart, p));
      runStart = nl + 1;
    } else rows++;
    p = nl + 1;
  }
  if (b.length > runStart) keep.push(b.subarray(runStart));
  return { data: keep.length === 1 ? keep[0]! : Buffer.concat(keep), rows };
}

export interface StageRowsOptions {
  /** Only these columns are decoded into the rows (default: all). */
  only?: readonly string[];
  /** Keep each row's stage line in `text` (to decode the whole row later, e.g. to quarantine it). */
  keepText?: boolean;
  exclude?: ReadonlySet<number>;
  batchSize?: number;
}

/** A staged row: typed values, plus its source position and content hash. */
export interface StagedRow {
  row: TypedRow;
  line: number;
  hash: string;
  /** The stage line, without its newline (with `keepText`). */
  text?: string;
}

/**
 * Decodes stage lines into typed rows. `only` limits the work to the columns a caller looks at
 * (a quality step with rules on two columns of forty decodes two).
 */
export function compileStageDecoder(columns: readonly Column[], only?: readonly string[], keepText = false): (text: string, into: StagedRow[]) => void {
  const want = only ? new Set(only) : undefined;
  const picked = columns.map((c) => !want || want.has(c.name));
  const kinds = columns.map((c) => (c.type === "boolean" ? 1 : c.type === "string" ? 2 : 0));
  const names = columns.map((c) => c.name);
  // Fields are cut with indexOf up to the last one asked for: a quality step with rules on two
  // columns of forty reads two (splitting every line whole cost a quarter of that step).
  let last = -1;
  picked.forEach((p, i) => (p ? (last = i) : undefined));
  const whole = want === undefined;
  return (text, into) => {
    let p = 0;
    while (p < text.length) {
      let nl = text.indexOf("\n", p);
      if (nl === -1) nl = text.length;
      let tab = text.indexOf("\t", p);
      if (tab === -1 || tab > nl) throw damagedLine(text, p, nl);
      const line = Number(text.slice(p, tab));
      const row: TypedRow = {};
      let start = tab + 1;
      for (let c = 0; c <= last; c++) {
        tab = text.indexOf("\t", start);
        if (tab === -1 || tab > nl) throw damagedLine(text, p, nl);
        if (picked[c]) {
          const k = kinds[c];
          if (tab - start === 2 && text.charCodeAt(start) === 92 && text.charCodeAt(start + 1) === 78) row[names[c]!] = null;
          else if (k === 1) row[names[c]!] = text.charCodeAt(start) === 116;
          else {
            const v = text.slice(start, tab);
            row[names[c]!] = k === 2 ? unescapeCopy(v) : v;
          }
        }
        start = tab + 1;
      }
      let hash = "";
      if (whole) {
        // After the values, exactly the hash.
        if (text.indexOf("\t", start) !== -1 && text.indexOf("\t", start) < nl) throw damagedLine(text, p, nl);
        hash = text.slice(start, nl);
      }
      into.push(keepText ? { row, line, hash, text: text.slice(p, nl) } : { row, line, hash });
      p = nl + 1;
    }
  };
}

/** A row decoded by `compileStageFieldDecoder`: the columns asked for, and where its line is in the chunk. */
export interface StagedFields {
  row: TypedRow;
  line: number;
  /** Byte offsets of the line (without its newline) in the chunk's data. */
  start: number;
  end: number;
}

/**
 * The `only` columns of every line of a chunk, read from the bytes: for a step that needs one or
 * two columns of each row (the quality step over rows the conversion step screened, which needs
 * the `unique` column alone), decoding the whole chunk to a string first was most of its work
 * (0.26 s of 0.92 on 1M trade rows). Fields are found with Buffer.indexOf (memchr) and only the
 * values asked for become strings; a line is decoded whole later, from `start`/`end`, when needed.
 */
export function compileStageFieldDecoder(columns: readonly Column[], only: readonly string[]): (data: Buffer, into: StagedFields[]) => void {
  const want = new Set(only);
  const picked = columns.map((c) => want.has(c.name));
  const kinds = columns.map((c) => (c.type === "boolean" ? 1 : c.type === "string" ? 2 : 0));
  const names = columns.map((c) => c.name);
  let last = -1;
  picked.forEach((p, i) => (p ? (last = i) : undefined));
  return (data, into) => {
    let p = 0;
    const len = data.length;
    while (p < len) {
      let nl = data.indexOf(10, p);
      if (nl === -1) nl = len;
      let line = 0;
      let q = p;
      for (; q < nl; q++) {
        const b = data[q]!;
        if (b === 9) break;
        if (b < 48 || b > 57) throw damagedLine(data.toString("utf8", p, nl), 0, nl - p);
        line = line * 10 + (b - 48);
      }
      if (q === nl || q === p) throw damagedLine(data.toString("utf8", p, nl), 0, nl - p);
      const row: TypedRow = {};
      let start = q + 1;
      for (let c = 0; c <= last; c++) {
        const tab = data.indexOf(9, start);
        if (tab === -1 || tab > nl) throw damagedLine(data.toString("utf8", p, nl), 0, nl - p);
        if (picked[c]) {
          const k = kinds[c];
          if (tab - start === 2 && data[start] === 92 && data[start + 1] === 78) row[names[c]!] = null;
          else if (k === 1) row[names[c]!] = data[start] === 116;
          else {
            const v = data.toString("utf8", start, tab);
            row[names[c]!] = k === 2 ? unescapeCopy(v) : v;
          }
        }
        start = tab + 1;
      }
      into.push({ row, line, start: p, end: nl });
      p = nl + 1;
    }
  };
}

function damagedLine(text: string, from: number, to: number): SluiceError {
  return new SluiceError("INTERNAL", `a staged line does not have the header's fields: ${JSON.stringify(text.slice(from, Math.min(to, from + 200)))}`, {
    retryable: false,
  });
}

/** A stage file as batches of typed rows (with positions and hashes). */
export async function* readStageRows(path: string, columns: readonly Column[], opts: StageRowsOptions = {}): AsyncGenerator<StagedRow[]> {
  const decode = compileStageDecoder(columns, opts.only, opts.keepText);
  const batchSize = opts.batchSize ?? 2_000;
  let batch: StagedRow[] = [];
  for await (const chunk of readStageChunks(path, columns, opts.exclude)) {
    decode(chunk.data.toString("utf8"), batch);
    while (batch.length >= batchSize) {
      yield batch.slice(0, batchSize);
      batch = batch.slice(batchSize);
    }
  }
  if (batch.length > 0) yield batch;
}

/** Every value of one stage line (as kept by `keepText`). */
export function decodeStageLine(text: string, columns: readonly Column[]): TypedRow {
  const into: StagedRow[] = [];
  compileStageDecoder(columns)(text, into);
  return into[0]!.row;
}

/**
 * A chunk's lines with their hashes recomputed as `canonical` (values, positions and order
 * kept): for a keyless target fed rows staged with `text` hashes (a store step that drops the
 * schema's key), where the hash is the row's identity and must match what earlier loads wrote.
 */
export function rehashStageChunk(chunk: StageChunk, columns: readonly Column[]): StageChunk {
  const rows: StagedRow[] = [];
  compileStageDecoder(columns, undefined, true)(chunk.data.toString("utf8"), rows);
  let out = "";
  for (const r of rows) {
    const text = r.text!;
    out += text.slice(0, text.lastIndexOf("\t") + 1) + contentHash(columns.map((c) => (Object.hasOwn(r.row, c.name) ? r.row[c.name]! : null))) + "\n";
  }
  return { data: Buffer.from(out), rows: rows.length };
}

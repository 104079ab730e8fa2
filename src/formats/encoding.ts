/**
 * Text encodings for the text readers: names, decoding that never hides a bad byte, detection.
 *
 * Why: decoding everything as UTF-8 with replacement stored a Latin-1 `München` as
 * `M\uFFFDnchen` without a word. Here every byte sequence that is not valid in the declared
 * encoding becomes one U+FFFD in the text AND an `InvalidBytes` mark (its text position, its
 * byte offset in the file, a reason); the readers quarantine the record a mark falls in. A
 * U+FFFD that the bytes really encode (EF BF BD in UTF-8) carries no mark and is data.
 *
 * Speed: valid text must cost what plain decoding costs. Per 1 MiB chunk (measured here, on
 * the 100 MB trades sample): `buffer.isUtf8` 12 GB/s, then a non-fatal `TextDecoder` 905 MB/s;
 * the same decoder in fatal mode runs at 557 MB/s, so "validate natively, then decode" beats
 * "decode fatally and catch". Decoding each chunk whole (not `stream: true`) also matters:
 * Node's streaming path goes through ICU and returns a two-byte external string, the
 * one-shot path a one-byte string when the text fits Latin-1, and the parser's indexOf/slice
 * and every row value are cheaper on those (readCsv: 141 → 189 MB/s, see io.ts). So an
 * incomplete character at the end of a chunk (≤ 3 bytes) is carried to the next chunk by
 * hand. Only a chunk that fails the check is walked byte by byte (the slow path) to find each
 * invalid sequence as the WHATWG decoder does (maximal subparts), decoding the valid runs
 * between them.
 * - UTF-16: Buffer's utf16le keeps lone surrogates, `isWellFormed` (2.4 GB/s) finds them.
 * - Single-byte encodings: a 256-entry table into a Uint16Array read as UTF-16 (885 MB/s;
 *   two-byte strings, so readCsv runs at ~0.7x of Latin-1 on windows-1252), `latin1` straight
 *   from Buffer (5 GB/s) and ASCII-only chunks likewise. Tables are built from ICU once, then
 *   corrected: Node 20's one-shot TextDecoder decodes "windows-1252" (and the label "latin1",
 *   which WHATWG maps to it) as ISO-8859-1 (nodejs/node#56542: 0x80 gives U+0080, not €), so
 *   the 32 windows-1252 positions 0x80–0x9F are written out here (its 5 unassigned ones are C1
 *   controls, as in WHATWG); ISO-8859-1 is exact (every byte is its code point) and so are
 *   ISO-8859-9 / -11, which WHATWG also folds into windows-1254 / -874; ICU's ibm866 rotates
 *   0x1A/0x1C/0x7F, so ASCII is forced to identity; ICU maps windows-874's 8 unassigned bytes
 *   to private-use code points, which WHATWG calls errors, and so do we.
 * - Shift_JIS, EUC-JP, EUC-KR, GBK, GB18030, Big5 (ICU, 130–350 MB/s): their repertoires have
 *   no U+FFFD except GB18030's 84 31 A4 37, so a chunk whose output has no U+FFFD is valid
 *   (`indexOf`, 33 GB/s); otherwise the chunk is cut into characters and each is checked with a
 *   fatal decoder. "gbk" is decoded with the GB18030 decoder, as WHATWG specifies. These are
 *   ICU's tables, which differ from WHATWG's in corners (Shift_JIS 0x80 is an error; Big5
 *   without the HKSCS additions).
 * Stateful encodings (ISO-2022-*, UTF-7) are not offered: a chunk could not be checked alone.
 */
import { isAscii, isUtf8 } from "node:buffer";
import { open } from "node:fs/promises";
import { analyse } from "chardet";
import { SluiceError } from "../errors.js";

/** The encodings the text readers accept, by canonical name (see `normalizeEncoding`). */
export const SUPPORTED_ENCODINGS: readonly string[] = [
  "utf-8",
  "utf-16le",
  "utf-16be",
  "utf-16",
  "iso-8859-1",
  "us-ascii",
  "windows-1250",
  "windows-1251",
  "windows-1252",
  "windows-1253",
  "windows-1254",
  "windows-1255",
  "windows-1256",
  "windows-1257",
  "windows-1258",
  "windows-874",
  "iso-8859-2",
  "iso-8859-3",
  "iso-8859-4",
  "iso-8859-5",
  "iso-8859-6",
  "iso-8859-7",
  "iso-8859-8",
  "iso-8859-9",
  "iso-8859-10",
  "iso-8859-11",
  "iso-8859-13",
  "iso-8859-14",
  "iso-8859-15",
  "koi8-r",
  "koi8-u",
  "macintosh",
  "x-mac-cyrillic",
  "ibm866",
  "shift_jis",
  "euc-jp",
  "euc-kr",
  "gbk",
  "gb18030",
  "big5",
];

/** Other spellings, keyed like `spellingKey` (lowercase, no `-`, `_`, `.` or spaces). */
const OTHER_SPELLINGS: Readonly<Record<string, string>> = {
  utf8: "utf-8",
  utf8sig: "utf-8",
  utf8bom: "utf-8",
  utf8withbom: "utf-8",
  unicode11utf8: "utf-8",
  utf16le: "utf-16le",
  ucs2: "utf-16le",
  ucs2le: "utf-16le",
  utf16be: "utf-16be",
  utf16: "utf-16",
  latin1: "iso-8859-1",
  l1: "iso-8859-1",
  iso88591: "iso-8859-1",
  cp819: "iso-8859-1",
  ibm819: "iso-8859-1",
  ascii: "us-ascii",
  usascii: "us-ascii",
  latin2: "iso-8859-2",
  latin3: "iso-8859-3",
  latin4: "iso-8859-4",
  latin5: "iso-8859-9",
  latin6: "iso-8859-10",
  latin7: "iso-8859-13",
  latin8: "iso-8859-14",
  latin9: "iso-8859-15",
  iso88598i: "iso-8859-8",
  cp874: "windows-874",
  tis620: "windows-874",
  koi8: "koi8-r",
  koi8ru: "koi8-u",
  mac: "macintosh",
  macroman: "macintosh",
  xmacroman: "macintosh",
  maccyrillic: "x-mac-cyrillic",
  xmacukrainian: "x-mac-cyrillic",
  cp866: "ibm866",
  sjis: "shift_jis",
  xsjis: "shift_jis",
  mskanji: "shift_jis",
  windows31j: "shift_jis",
  cp932: "shift_jis",
  ms932: "shift_jis",
  xeucjp: "euc-jp",
  cp949: "euc-kr",
  windows949: "euc-kr",
  uhc: "euc-kr",
  gb2312: "gbk",
  cp936: "gbk",
  ms936: "gbk",
  windows936: "gbk",
  xgbk: "gbk",
  big5hkscs: "big5",
  cp950: "big5",
  csbig5: "big5",
};
const ALIASES = new Map<string, string>(Object.entries(OTHER_SPELLINGS));
for (let n = 0; n <= 8; n++) {
  ALIASES.set(`cp125${n}`, `windows-125${n}`);
  ALIASES.set(`win125${n}`, `windows-125${n}`);
}
for (const name of SUPPORTED_ENCODINGS) ALIASES.set(spellingKey(name), name);

function spellingKey(name: string): string {
  return name.toLowerCase().replace(/[-_.\s]/g, "");
}

/**
 * The canonical name of an encoding (one of `SUPPORTED_ENCODINGS`) from any common spelling:
 * `UTF8`, `utf-8-sig` / `UTF-8 with BOM` (read like utf-8, whose leading BOM is dropped
 * anyway), `latin-1`, `cp1252`, `Shift-JIS` … An unknown name is a BAD_CONFIG error listing
 * the accepted names.
 */
export function normalizeEncoding(name: string): string {
  const found = ALIASES.get(spellingKey(name));
  if (found === undefined) {
    throw new SluiceError(
      "BAD_CONFIG",
      `unknown text encoding ${JSON.stringify(name)}; accepted: ${SUPPORTED_ENCODINGS.join(", ")} ` +
        `(also spelled utf8, utf-8-sig, latin1, cp1252, sjis, gb2312 …)`,
      { details: { encoding: name } },
    );
  }
  return found;
}

/** `normalizeEncoding(name ?? "utf-8")`, with the input's name at the front of the error. */
export function resolveEncoding(name: string | undefined, file: string): string {
  if (name === undefined) return "utf-8";
  try {
    return normalizeEncoding(name);
  } catch (err) {
    if (err instanceof SluiceError) throw new SluiceError(err.code, `${file}: ${err.message}`, { details: { ...err.details, file } });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** One byte sequence that is not valid in the declared encoding; the text holds one U+FFFD for it. */
export interface InvalidBytes {
  /** Position of its U+FFFD in the decoded text, counted from the first character decoded. */
  at: number;
  /** Byte offset of its first byte in the file (or stream). */
  offset: number;
  /** E.g. `byte 0xFC at offset 1234 is not valid UTF-8 (is the file latin1 or windows-1252? set encoding)`. */
  reason: string;
}

/** Text decoded from one chunk of bytes, with the invalid sequences met (undefined: none, the common case). */
export interface DecodedChunk {
  text: string;
  invalid: InvalidBytes[] | undefined;
}

/** A streaming decoder: bytes in (any chunking), text out, never a character split in two. */
export interface TextDecoding {
  push(bytes: Uint8Array): DecodedChunk;
  /** Text that is already text (a string chunk of a stream); an incomplete character held back is flushed as invalid first. */
  text(text: string): DecodedChunk;
  /** The end of the input: an incomplete character still held is invalid. */
  end(): DecodedChunk;
}

export interface DecoderOptions {
  /** Byte offset of the first byte pushed (a range of a file). Default 0. */
  offset?: number;
  /** True when the first byte pushed is the start of the file: a leading BOM is dropped. Default true. */
  atStart?: boolean;
  /** The input's name, for the errors that fail the whole input (a UTF-16 file without BOM…). */
  name?: string;
}

/** Part of a chunk decoded by one encoding; `invalid[i].at` is relative to `text`. */
type Piece = DecodedChunk;
interface Inner {
  push(bytes: Uint8Array): Piece;
  end(): Piece;
}

const NONE: Piece = { text: "", invalid: undefined };
const UTF8_HINT = "is the file latin1 or windows-1252? set encoding";
const OTHER_HINT = "is the file in another encoding? set encoding";

/**
 * A decoder for `encoding` (any spelling `normalizeEncoding` accepts). Invalid sequences come
 * out as U+FFFD plus an `InvalidBytes` mark; valid text is decoded exactly.
 */
export function createDecoder(encoding: string, options: DecoderOptions = {}): TextDecoding {
  const enc = normalizeEncoding(encoding);
  const offset = options.offset ?? 0;
  const atStart = options.atStart ?? true;
  const name = options.name ?? "input";
  const inner = innerDecoder(enc, offset, atStart, name);
  // A leading U+FEFF is a byte order mark in the Unicode encodings (and GB18030's 84 31 95 33).
  let dropBom = atStart && (enc === "utf-8" || enc.startsWith("utf-16") || enc === "gb18030");
  let pos = 0; // characters handed out so far
  const out = (p: Piece): DecodedChunk => {
    let text = p.text;
    const invalid = p.invalid;
    if (dropBom && text.length > 0) {
      dropBom = false;
      if (text.charCodeAt(0) === 0xfeff) {
        text = text.slice(1);
        if (invalid) for (const m of invalid) m.at -= 1;
      }
    }
    if (invalid) for (const m of invalid) m.at += pos;
    pos += text.length;
    return { text, invalid };
  };
  return {
    push: (bytes) => out(bytes.length === 0 ? NONE : inner.push(bytes)),
    text(text) {
      const held = inner.end();
      return out(held.text.length === 0 ? { text, invalid: undefined } : { text: held.text + text, invalid: held.invalid });
    },
    end: () => out(inner.end()),
  };
}

function innerDecoder(enc: string, offset: number, atStart: boolean, name: string): Inner {
  if (enc === "utf-8") return utf8Decoder(offset, atStart, name);
  if (enc === "utf-16le") return utf16Decoder(true, offset, atStart, name);
  if (enc === "utf-16be") return utf16Decoder(false, offset, atStart, name);
  if (enc === "utf-16") {
    if (!atStart) throw new SluiceError("BAD_CONFIG", `${name}: encoding utf-16 needs the start of the file for its byte order mark`);
    return utf16AutoDecoder(offset, name);
  }
  const table = singleByteTable(enc);
  if (table) return singleByteDecoder(table, enc, offset);
  return legacyDecoder(enc as LegacyKind, offset);
}

/** The reason sentence for an invalid sequence. */
function describe(bytes: ArrayLike<number>, offset: number, label: string, note: string): string {
  const hex: string[] = [];
  for (let i = 0; i < bytes.length; i++) hex.push("0x" + bytes[i]!.toString(16).toUpperCase().padStart(2, "0"));
  const what = bytes.length === 1 ? `byte ${hex[0]} at offset ${offset} is` : `bytes ${hex.join(" ")} at offset ${offset} are`;
  return `${what} not valid ${label} (${note})`;
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

// --- UTF-8 -----------------------------------------------------------------------------------

/**
 * The UTF-8 sequence at b[i]: its length when valid, minus the length of its maximal invalid
 * subpart (WHATWG: the bytes one U+FFFD replaces), or 0 when b ends before it is complete and
 * every byte so far is a valid prefix.
 */
function utf8Seq(b: Uint8Array, i: number, n: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  let need: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) need = 1;
  else if (c >= 0xe0 && c <= 0xef) {
    need = 2;
    if (c === 0xe0) lo = 0xa0;
    else if (c === 0xed) hi = 0x9f; // no surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 3;
    if (c === 0xf0) lo = 0x90;
    else if (c === 0xf4) hi = 0x8f; // nothing above U+10FFFF
  } else return -1;
  let j = i + 1;
  for (let k = 0; k < need; k++, j++) {
    if (j >= n) return 0;
    const x = b[j]!;
    if (x < lo || x > hi) return -(j - i);
    lo = 0x80;
    hi = 0xbf;
  }
  return j - i;
}

/** Where an incomplete (but so far valid) sequence at the end of b[start, end) begins; `end` if none. */
function utf8TailStart(b: Uint8Array, start: number, end: number): number {
  for (let k = end - 1; k >= start && k >= end - 3; k--) {
    const c = b[k]!;
    if (c < 0x80) return end;
    if (c >= 0xc0) return utf8Seq(b, k, end) === 0 ? k : end;
  }
  return end;
}

function utf8Decoder(offset: number, atStart: boolean, name: string): Inner {
  const td = new TextDecoder("utf-8", { ignoreBOM: true });
  let carry: Uint8Array | undefined; // an incomplete sequence from the end of the previous chunk (≤ 3 bytes)
  let next = offset; // offset of the next byte pushed
  // The first two bytes of the file, gathered however small the reads: FF FE / FE FF are never
  // UTF-8 but a UTF-16 byte order mark, and then every record would be lost: refuse the file.
  let probe: number[] | undefined = atStart ? [] : undefined;
  const mark = (at: number, off: number, bytes: Uint8Array, note = UTF8_HINT): InvalidBytes => ({
    at,
    offset: off,
    reason: describe(bytes, off, "UTF-8", note),
  });
  return {
    push(b) {
      if (probe) {
        for (let k = 0; k < b.length && probe.length < 2; k++) probe.push(b[k]!);
        if (probe.length === 2) {
          const [x, y] = probe;
          probe = undefined;
          if ((x === 0xff && y === 0xfe) || (x === 0xfe && y === 0xff)) {
            throw new SluiceError(
              "BAD_INPUT",
              `${name}: the file starts with a ${x === 0xff ? "UTF-16LE" : "UTF-16BE"} byte order mark but is read as utf-8; set encoding: utf-16`,
              { details: { file: name, offset: 0 } },
            );
          }
        }
      }
      const chunkOffset = next;
      next += b.length;
      let head = "";
      let invalid: InvalidBytes[] | undefined;
      let start = 0;
      if (carry) {
        // Complete the character held back with the first bytes of this chunk.
        const carryOffset = chunkOffset - carry.length;
        const piece = concatBytes(carry, b.subarray(0, Math.min(3, b.length)));
        const r = utf8Seq(piece, 0, piece.length);
        if (r === 0) {
          carry = piece; // still incomplete: all of b (< 3 bytes) is in it
          return NONE;
        }
        const len = r > 0 ? r : -r;
        if (r > 0) head = td.decode(piece.subarray(0, len));
        else {
          head = "\uFFFD";
          invalid = [mark(0, carryOffset, piece.subarray(0, len))];
        }
        start = len - carry.length;
        carry = undefined;
      }
      let end = b.length;
      const tail = utf8TailStart(b, start, end);
      if (tail < end) {
        carry = b.slice(tail, end);
        end = tail;
      }
      if (start >= end) return { text: head, invalid };
      const body = start === 0 && end === b.length ? b : b.subarray(start, end);
      if (isUtf8(body)) {
        const text = td.decode(body);
        return { text: head.length > 0 ? head + text : text, invalid };
      }
      // Slow path: find each invalid sequence, decode the valid runs between them.
      const out = replacedText(head, invalid);
      let run = 0;
      let i = 0;
      const n = body.length;
      const base = chunkOffset + start;
      while (i < n) {
        if (body[i]! < 0x80) {
          i++;
          continue;
        }
        const r = utf8Seq(body, i, n);
        if (r > 0) {
          i += r;
          continue;
        }
        const len = r < 0 ? -r : n - i;
        out.valid(td, body.subarray(run, i));
        out.invalid((at) => mark(at, base + i, body.subarray(i, i + len)));
        i += len;
        run = i;
      }
      out.valid(td, body.subarray(run));
      return out.done();
    },
    end() {
      if (!carry) return NONE;
      const m = mark(0, next - carry.length, carry, "the input ends in the middle of a character");
      carry = undefined;
      return { text: "\uFFFD", invalid: [m] };
    },
  };
}

// --- UTF-16 ----------------------------------------------------------------------------------

interface WellFormed {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

function utf16Decoder(le: boolean, offset: number, atStart: boolean, name: string): Inner {
  const label = le ? "UTF-16LE" : "UTF-16BE";
  let carry: Uint8Array | undefined; // an odd byte and/or a high surrogate waiting for its pair
  let next = offset;
  let first = atStart;
  const unitAt = (b: Uint8Array, i: number): number => (le ? b[i]! | (b[i + 1]! << 8) : (b[i]! << 8) | b[i + 1]!);
  return {
    push(chunk) {
      let b = chunk;
      if (carry) {
        b = concatBytes(carry, chunk);
        carry = undefined;
      }
      const chunkOffset = next - (b.length - chunk.length);
      next += chunk.length;
      if (first && b.length >= 2) {
        first = false;
        // A BOM of another encoding: every character would be read wrong, yet "valid".
        let other: string | undefined;
        if (b[0] === 0xef && b[1] === 0xbb) other = "UTF-8";
        else if (le && b[0] === 0xfe && b[1] === 0xff) other = "UTF-16BE";
        else if (!le && b[0] === 0xff && b[1] === 0xfe) other = "UTF-16LE";
        if (other !== undefined) {
          throw new SluiceError(
            "BAD_INPUT",
            `${name}: the file starts with a ${other} byte order mark but is read as ${label.toLowerCase()}; set encoding: ${other === "UTF-8" ? "utf-8" : "utf-16"}`,
            { details: { file: name, offset: 0 } },
          );
        }
      }
      let n = b.length & ~1;
      if (n >= 2) {
        const last = unitAt(b, n - 2);
        if (last >= 0xd800 && last <= 0xdbff) n -= 2;
      }
      if (n < b.length) carry = b.slice(n);
      if (n === 0) return NONE;
      const units = n === b.length ? b : b.subarray(0, n);
      const buf = le ? asBuffer(units) : Buffer.from(units).swap16();
      const text = buf.toString("utf16le") as string & WellFormed;
      if (text.isWellFormed()) return { text, invalid: undefined };
      const invalid: InvalidBytes[] = [];
      for (let k = 0; k < text.length; k++) {
        const c = text.charCodeAt(k);
        if (c < 0xd800 || c > 0xdfff) continue;
        if (c <= 0xdbff && k + 1 < text.length) {
          const d = text.charCodeAt(k + 1);
          if (d >= 0xdc00 && d <= 0xdfff) {
            k++;
            continue;
          }
        }
        const off = chunkOffset + 2 * k;
        invalid.push({ at: k, offset: off, reason: describe(units.subarray(2 * k, 2 * k + 2), off, label, "an unpaired surrogate") });
      }
      return { text: text.toWellFormed(), invalid };
    },
    end() {
      if (!carry) return NONE;
      const c = carry;
      carry = undefined;
      const invalid: InvalidBytes[] = [];
      let text = "";
      const base = next - c.length;
      if (c.length >= 2) {
        invalid.push({ at: 0, offset: base, reason: describe(c.subarray(0, 2), base, label, "an unpaired surrogate at the end of the input") });
        text += "\uFFFD";
      }
      if (c.length % 2 === 1) {
        const off = base + c.length - 1;
        invalid.push({ at: text.length, offset: off, reason: describe(c.subarray(c.length - 1), off, label, "the input ends in the middle of a code unit") });
        text += "\uFFFD";
      }
      return { text, invalid };
    },
  };
}

/** "utf-16": the byte order mark says which; without one the input is refused. */
function utf16AutoDecoder(offset: number, name: string): Inner {
  let held: Uint8Array = new Uint8Array(0);
  let inner: Inner | undefined;
  return {
    push(b) {
      if (inner) return inner.push(b);
      held = concatBytes(held, b);
      if (held.length < 2) return NONE;
      inner = utf16Decoder(utf16ByteOrder(held, name) === "utf-16le", offset, true, name);
      return inner.push(held);
    },
    end() {
      if (inner) return inner.end();
      if (held.length > 0) utf16ByteOrder(held, name); // throws: one byte cannot be a BOM
      return NONE;
    },
  };
}

/** The byte order of a UTF-16 file from its first two bytes, its BOM (a range read that starts later needs it too). */
export function utf16ByteOrder(firstBytes: Uint8Array, name: string): "utf-16le" | "utf-16be" {
  if (firstBytes[0] === 0xff && firstBytes[1] === 0xfe) return "utf-16le";
  if (firstBytes[0] === 0xfe && firstBytes[1] === 0xff) return "utf-16be";
  throw new SluiceError(
    "BAD_INPUT",
    `${name}: encoding utf-16 needs a byte order mark (FF FE or FE FF) at the start of the file, and there is none; set encoding: utf-16le or utf-16be`,
    { details: { file: name, offset: 0 } },
  );
}

// --- Single-byte encodings -------------------------------------------------------------------

interface SingleByteTable {
  /** Code unit for each byte; U+FFFD for a byte with no character. */
  units: Uint16Array;
  /** True for ISO-8859-1: every byte is its code point, Buffer decodes it natively. */
  latin1: boolean;
  hasInvalid: boolean;
}

/** Windows-1252 0x80–0x9F (WHATWG index; Node 20's TextDecoder gets these wrong, see the top). */
const WINDOWS_1252_C1 = [
  0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019,
  0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
];

const LEGACY = new Set(["shift_jis", "euc-jp", "euc-kr", "gbk", "gb18030", "big5"]);
const tables = new Map<string, SingleByteTable>();

function singleByteTable(enc: string): SingleByteTable | undefined {
  if (LEGACY.has(enc)) return undefined;
  const cached = tables.get(enc);
  if (cached) return cached;
  const units = new Uint16Array(256);
  if (enc === "iso-8859-1") {
    for (let i = 0; i < 256; i++) units[i] = i;
  } else if (enc === "us-ascii") {
    for (let i = 0; i < 256; i++) units[i] = i < 0x80 ? i : 0xfffd;
  } else {
    const source = enc === "iso-8859-9" ? "windows-1254" : enc === "iso-8859-11" ? "windows-874" : enc;
    // Streaming decode, one byte at a time: a stateless single-byte decoder has nothing to carry.
    const td = new TextDecoder(source, { ignoreBOM: true });
    for (let i = 0; i < 256; i++) {
      const s = td.decode(Uint8Array.of(i), { stream: true });
      units[i] = s.length === 1 ? s.charCodeAt(0) : 0xfffd;
    }
    for (let i = 0; i < 0x80; i++) units[i] = i; // ASCII is ASCII in all of them (ICU's ibm866 is not)
    if (enc === "windows-1252") for (let i = 0; i < 32; i++) units[0x80 + i] = WINDOWS_1252_C1[i]!;
    // The ISO sets keep 0x80–0x9F as the C1 controls, unlike the Windows pages folded into them.
    if (enc === "iso-8859-9" || enc === "iso-8859-11") for (let i = 0x80; i < 0xa0; i++) units[i] = i;
    if (source === "windows-874") for (let i = 0xa0; i < 256; i++) if (units[i]! >= 0xe000 && units[i]! <= 0xf8ff) units[i] = 0xfffd;
  }
  let hasInvalid = false;
  for (let i = 0; i < 256; i++) if (units[i] === 0xfffd) hasInvalid = true;
  const table = { units, latin1: enc === "iso-8859-1", hasInvalid };
  tables.set(enc, table);
  return table;
}

let scratch = new Uint16Array(0);

function singleByteDecoder(table: SingleByteTable, label: string, offset: number): Inner {
  let next = offset;
  const units = table.units;
  return {
    push(b) {
      const chunkOffset = next;
      next += b.length;
      const buf = asBuffer(b);
      if (table.latin1 || isAscii(b)) return { text: buf.toString("latin1"), invalid: undefined };
      const n = b.length;
      if (scratch.length < n) scratch = new Uint16Array(Math.max(n, 1 << 16));
      const out = scratch;
      for (let i = 0; i < n; i++) out[i] = units[b[i]!]!;
      const text = Buffer.from(out.buffer, 0, 2 * n).toString("utf16le");
      if (!table.hasInvalid || text.indexOf("\uFFFD") === -1) return { text, invalid: undefined };
      const invalid: InvalidBytes[] = [];
      for (let i = 0; i < n; i++) {
        if (units[b[i]!] === 0xfffd) {
          invalid.push({ at: i, offset: chunkOffset + i, reason: describe([b[i]!], chunkOffset + i, label, OTHER_HINT) });
        }
      }
      return { text, invalid };
    },
    end: () => NONE,
  };
}

// --- Legacy multi-byte encodings -------------------------------------------------------------

type LegacyKind = "shift_jis" | "euc-jp" | "euc-kr" | "gbk" | "gb18030" | "big5";

/** The smallest byte that can be a trail byte: anything below starts (and is) a one-byte character. */
const MIN_TRAIL: Readonly<Record<LegacyKind, number>> = {
  shift_jis: 0x40,
  big5: 0x40,
  "euc-kr": 0x41,
  "euc-jp": 0x80,
  gbk: 0x30,
  gb18030: 0x30,
};

/** The lowest byte that can appear inside a multi-byte character (for the CSV splitter). */
export function minTrailByte(encoding: string): number | undefined {
  return MIN_TRAIL[encoding as LegacyKind];
}

/**
 * How many bytes the character at b[i] takes (WHATWG's decoders), whether or not it is valid;
 * 0 when b ends before it does.
 */
function legacyLength(kind: LegacyKind, b: Uint8Array, i: number, n: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  switch (kind) {
    case "shift_jis":
      if ((c >= 0x81 && c <= 0x9f) || (c >= 0xe0 && c <= 0xfc)) return i + 1 < n ? 2 : 0;
      return 1;
    case "big5":
    case "euc-kr":
      if (c >= 0x81 && c <= 0xfe) return i + 1 < n ? 2 : 0;
      return 1;
    case "euc-jp":
      if (c === 0x8f) {
        if (i + 1 >= n) return 0;
        const d = b[i + 1]!;
        if (d >= 0xa1 && d <= 0xfe) return i + 2 < n ? 3 : 0;
        return 2;
      }
      if (c === 0x8e || (c >= 0xa1 && c <= 0xfe)) return i + 1 < n ? 2 : 0;
      return 1;
    case "gbk":
    case "gb18030": {
      if (c === 0x80 || c === 0xff) return 1;
      if (i + 1 >= n) return 0;
      const d = b[i + 1]!;
      if (d < 0x30 || d > 0x39) return 2;
      if (i + 2 >= n) return 0;
      const e = b[i + 2]!;
      if (e < 0x81 || e > 0xfe) return 1;
      if (i + 3 >= n) return 0;
      const f = b[i + 3]!;
      return f < 0x30 || f > 0x39 ? 1 : 4;
    }
  }
}

function legacyDecoder(kind: LegacyKind, offset: number): Inner {
  const icu = kind === "gbk" ? "gb18030" : kind;
  const td = new TextDecoder(icu, { ignoreBOM: true });
  const fatal = new TextDecoder(icu, { ignoreBOM: true, fatal: true });
  const minTrail = MIN_TRAIL[kind];
  let carry: Uint8Array | undefined;
  let next = offset;
  const invalidAt = (bytes: Uint8Array, off: number, at: number, note = OTHER_HINT): InvalidBytes => ({
    at,
    offset: off,
    reason: describe(bytes, off, kind, note),
  });
  return {
    push(chunk) {
      let b = chunk;
      if (carry) {
        b = concatBytes(carry, chunk);
        carry = undefined;
      }
      const chunkOffset = next - (b.length - chunk.length);
      next += chunk.length;
      // The chunk starts at a character boundary (we carry). Find the last byte that can only be
      // a whole character, and cut the characters after it to see whether the last is complete.
      let s = b.length - 1;
      while (s >= 0 && b[s]! >= minTrail) s--;
      let end = b.length;
      for (let i = s + 1; i < b.length;) {
        const len = legacyLength(kind, b, i, b.length);
        if (len === 0) {
          end = i;
          break;
        }
        i += len;
      }
      if (end < b.length) carry = b.slice(end);
      if (end === 0) return NONE;
      const body = end === b.length ? b : b.subarray(0, end);
      const text = td.decode(body);
      if (text.indexOf("\uFFFD") === -1) return { text, invalid: undefined };
      // Slow path: check character by character.
      const out = replacedText("", undefined);
      let run = 0;
      let i = 0;
      const n = body.length;
      while (i < n) {
        if (body[i]! < 0x80) {
          i++;
          continue;
        }
        const len = legacyLength(kind, body, i, n) || n - i;
        let ok = true;
        try {
          fatal.decode(body.subarray(i, i + len));
        } catch {
          ok = false;
        }
        if (ok) {
          i += len;
          continue;
        }
        // As WHATWG: an ASCII byte after a bad lead byte is not part of the error.
        const errLen = len > 1 && body[i + 1]! < 0x80 ? 1 : len;
        out.valid(td, body.subarray(run, i));
        out.invalid((at) => invalidAt(body.subarray(i, i + errLen), chunkOffset + i, at));
        i += errLen;
        run = i;
      }
      out.valid(td, body.subarray(run));
      return out.done();
    },
    end() {
      if (!carry) return NONE;
      const c = carry;
      carry = undefined;
      const off = next - c.length;
      return { text: "\uFFFD", invalid: [invalidAt(c, off, 0, "the input ends in the middle of a character")] };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// For the readers: which marks fall inside a record.

/** The invalid-byte marks a reader has been given and not yet attributed to a record, in text order. */
export interface PendingInvalid {
  list: InvalidBytes[];
  /** Index of the first mark not yet attributed. */
  head: number;
}

export function pendingInvalid(): PendingInvalid {
  return { list: [], head: 0 };
}

/** Queue marks; returns the `at` of the first pending one (Infinity when none). */
export function addInvalid(p: PendingInvalid, marks: readonly InvalidBytes[] | undefined): number {
  if (marks) for (const m of marks) p.list.push(m);
  return nextInvalidAt(p);
}

export function nextInvalidAt(p: PendingInvalid): number {
  return p.head < p.list.length ? p.list[p.head]!.at : Infinity;
}

/**
 * Attribute the pending marks before text position `end` to one record: the reason sentence
 * (undefined when there are none). Marks are consumed.
 */
export function takeInvalid(p: PendingInvalid, end: number): string | undefined {
  const first = p.list[p.head];
  if (first === undefined || first.at >= end) return undefined;
  let n = 0;
  while (p.head < p.list.length && p.list[p.head]!.at < end) {
    p.head++;
    n++;
  }
  if (p.head === p.list.length) {
    p.list.length = 0;
    p.head = 0;
  }
  return n === 1 ? first.reason : `${first.reason}; and ${n - 1} more invalid byte sequence${n === 2 ? "" : "s"} in this record`;
}

// ---------------------------------------------------------------------------------------------
// Detection

export interface DetectedEncoding {
  /** A canonical name from `SUPPORTED_ENCODINGS`. */
  encoding: string;
  /** "bom": from a byte order mark; "valid": the sample is valid UTF-8 (pure ASCII included); "guess": statistics. */
  confidence: "bom" | "valid" | "guess";
  bom: boolean;
}

/** How much of a file `detectFileEncoding` samples. */
export const DETECT_SAMPLE_BYTES = 256 * 1024;

/**
 * The likely encoding of a text sample (the first few hundred KB of a file; a character cut at
 * its end is fine). A byte order mark decides first (UTF-8, UTF-16LE/BE, GB18030); then UTF-16
 * without BOM from the pattern of zero bytes; then valid UTF-8; otherwise a guess among the
 * legacy encodings by chardet, keeping only a candidate that decodes the sample without an
 * invalid byte. For Western text, windows-1252 when bytes 0x80–0x9F occur (in ISO-8859-1 they
 * are control characters no text uses), ISO-8859-1 otherwise; the Western pick also wins over
 * another single-byte guess that reads the sample as the same text.
 */
export function detectEncoding(sample: Uint8Array): DetectedEncoding {
  const s = sample;
  if (s.length >= 3 && s[0] === 0xef && s[1] === 0xbb && s[2] === 0xbf) return { encoding: "utf-8", confidence: "bom", bom: true };
  if (s.length >= 2 && s[0] === 0xff && s[1] === 0xfe) return { encoding: "utf-16le", confidence: "bom", bom: true };
  if (s.length >= 2 && s[0] === 0xfe && s[1] === 0xff) return { encoding: "utf-16be", confidence: "bom", bom: true };
  if (s.length >= 4 && s[0] === 0x84 && s[1] === 0x31 && s[2] === 0x95 && s[3] === 0x33) {
    return { encoding: "gb18030", confidence: "bom", bom: true };
  }
  const utf16 = utf16FromZeros(s);
  if (utf16) return { encoding: utf16, confidence: "guess", bom: false };
  if (isUtf8(s.subarray(0, utf8TailStart(s, 0, s.length)))) return { encoding: "utf-8", confidence: "valid", bom: false };

  let c1 = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c >= 0x80 && c <= 0x9f) {
      c1 = true;
      break;
    }
  }
  const western = c1 ? "windows-1252" : "iso-8859-1";
  let matches: { name: string }[] = [];
  try {
    matches = analyse(s);
  } catch {
    matches = [];
  }
  for (const m of matches) {
    const candidate = fromChardet(m.name, c1, western);
    if (!candidate || !decodesCleanly(candidate, s)) continue;
    // chardet's n-grams need more than a few words: on a short Latin-1 sample it may pick
    // windows-1257, where ü and é are the same bytes. When the Western reading is the same
    // text, it is the likelier one.
    if (candidate !== western && singleByteTable(candidate) && sameText(candidate, western, s)) break;
    return { encoding: candidate, confidence: "guess", bom: false };
  }
  return { encoding: western, confidence: "guess", bom: false };
}

function sameText(a: string, b: string, sample: Uint8Array): boolean {
  return createDecoder(a).push(sample).text === createDecoder(b).push(sample).text;
}

/** `detectEncoding` on the first `sampleBytes` of a file. */
export async function detectFileEncoding(path: string, sampleBytes = DETECT_SAMPLE_BYTES): Promise<DetectedEncoding> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(sampleBytes);
    const { bytesRead } = await fh.read(buf, 0, sampleBytes, 0);
    return detectEncoding(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** Names chardet reports, as ours; undefined for what the readers do not offer (ISO-2022, UTF-32). */
function fromChardet(name: string, c1: boolean, western: string): string | undefined {
  const n = name.toLowerCase();
  if (n === "iso-8859-1" || n === "windows-1252") return western;
  if (n === "iso-8859-9" || n === "windows-1254") return c1 ? "windows-1254" : "iso-8859-9";
  if (n === "utf-8" || n === "ascii" || n.startsWith("utf-16") || n.startsWith("utf-32")) return undefined;
  return ALIASES.get(spellingKey(n));
}

function decodesCleanly(encoding: string, sample: Uint8Array): boolean {
  try {
    // The sample's last character may be cut: end() is not called.
    return createDecoder(encoding).push(sample).invalid === undefined;
  } catch {
    return false;
  }
}

/**
 * UTF-16 without a BOM: text in Latin scripts has a zero in every other byte (the high byte of
 * ASCII code units). At least a fifth of the code units must show it, on one side only, and the
 * sample must decode without an unpaired surrogate.
 */
function utf16FromZeros(s: Uint8Array): "utf-16le" | "utf-16be" | undefined {
  const units = s.length >> 1;
  if (units < 2) return undefined;
  let even = 0;
  let odd = 0;
  for (let i = 0; i + 1 < s.length; i += 2) {
    if (s[i] === 0) even++;
    if (s[i + 1] === 0) odd++;
  }
  let guess: "utf-16le" | "utf-16be" | undefined;
  if (odd >= units / 5 && even <= units / 50) guess = "utf-16le";
  else if (even >= units / 5 && odd <= units / 50) guess = "utf-16be";
  if (guess === undefined) return undefined;
  return decodesCleanly(guess, s.subarray(0, units * 2)) ? guess : undefined;
}

/**
 * The text of a chunk's slow path: its valid runs decoded, one U+FFFD for each invalid sequence,
 * and the mark of each at its place in the text (the UTF-8 and the legacy multi-byte decoders
 * both find their invalid sequences their own way, then build the chunk alike).
 */
function replacedText(head: string, marks: InvalidBytes[] | undefined) {
  const parts: string[] = head.length > 0 ? [head] : [];
  let textLen = head.length;
  let invalid = marks;
  return {
    valid(td: { decode(b: Uint8Array): string }, bytes: Uint8Array): void {
      if (bytes.length === 0) return;
      const t = td.decode(bytes);
      parts.push(t);
      textLen += t.length;
    },
    invalid(make: (textPos: number) => InvalidBytes): void {
      (invalid ??= []).push(make(textLen));
      parts.push("\uFFFD");
      textLen++;
    },
    done(): DecodedChunk {
      return { text: parts.join(""), invalid };
    },
  };
}

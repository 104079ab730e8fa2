/**
 * Schema inference over sampled records: for every column, the narrowest Sluice type that every
 * sampled value fits — integer, decimal (with its scale), boolean, date or timestamp (with the
 * format that reads them all, and whether they carry a zone), else string — and the null
 * markers it uses.
 *
 * How a column is decided (values are what the readers give: strings from CSV, JSON values from
 * NDJSON and JSON arrays):
 * - Null markers. "" is null. "NA", "N/A", "null", "None", "NaN", "-", "#N/A" … count as nulls of
 *   a column only when every other value of it has one non-string type (a string column keeps
 *   "NA" as text: it may be Namibia); they become that column's `nullValues`.
 * - Candidates are tried in order: boolean (true/false, t/f, yes/no, y/n — not 0/1, which are
 *   integers), integer (64-bit; digits with a leading zero, such as ids "007", stay strings so
 *   the zeros are kept), decimal (the largest number of fraction digits is the scale; exponents
 *   give a decimal without a scale), date and timestamp (each format in FORMATS, kept when the
 *   typing layer reads every value with it), string.
 * - Ambiguous day/month orders (every value has both fields ≤ 12) take month first, as DuckDB
 *   and most US exports do, and say so in the column's notes.
 * - JSON numbers are integers when every one is a safe integer, else decimals; objects and
 *   arrays are strings holding JSON; a column mixing numbers and strings is a string.
 *
 * The typing layer's own parsers decide whether a value fits (compileValueParser), so what
 * inference accepts is exactly what conversion will accept.
 */
import type { ColumnTypeName } from "./model.js";
import { compileValueParser, Invalid, type ValueParser } from "./typing.js";

export interface InferredColumn {
  name: string;
  type: ColumnTypeName;
  scale?: number;
  format?: string;
  /** Null markers other than "" seen in the column. */
  nullValues?: string[];
  /** Sampled values that were not null. */
  nonNull: number;
  nulls: number;
  distinct: number;
  /** Whether every non-null sampled value is different (a key candidate). */
  unique: boolean;
  notes: string[];
}

/** Values read as null when a column is otherwise typed (case-sensitive, as written by common tools). */
export const NULL_MARKERS = ["NA", "N/A", "n/a", "na", "null", "NULL", "Null", "None", "none", "NaN", "nan", "-", "--", "#N/A", "(null)", "nil", "?", "."] as const;
const MARKERS = new Set<string>(NULL_MARKERS);

/** Date formats tried, most common first; the first that reads every value wins. */
export const DATE_FORMATS = [
  "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%Y.%m.%d",
  "%b %e %Y", "%b %e, %Y", "%e %b %Y", "%d-%b-%Y", "%d-%b-%y", "%B %e %Y", "%B %e, %Y", "%e %B %Y",
  "%a %b %e %Y", "%a, %e %b %Y", "%A, %B %e, %Y", "%m/%d/%y", "%d/%m/%y", "%d.%m.%y", "%Y%m%d",
] as const;

/** Timestamp formats tried after ISO-8601 (which the default parser reads, zone or not). */
export const TIMESTAMP_FORMATS = [
  "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p",
  "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M",
  "%d-%m-%Y %H:%M:%S", "%b %e %Y %H:%M:%S", "%b %e %Y %I:%M %p", "%d %b %Y %H:%M:%S", "%d-%b-%Y %H:%M:%S",
  "%a, %d %b %Y %H:%M:%S %z", "%a %b %e %H:%M:%S %Y", "%a %b %e %H:%M:%S %Z %Y", "%d/%b/%Y:%H:%M:%S %z",
  "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S %Z", "%Y%m%dT%H%M%S", "%m/%d/%y %H:%M", "%m/%d/%y %I:%M %p",
] as const;

const BOOLEAN_WORDS = new Set(["true", "false", "t", "f", "yes", "no", "y", "n"]);

/** Infers the columns of sampled records (`names` in file order; records as read). */
export function inferColumns(names: readonly string[], records: readonly Record<string, unknown>[]): InferredColumn[] {
  return names.map((name) => inferColumn(name, records.map((r) => (Object.hasOwn(r, name) ? r[name] : undefined))));
}

export function inferColumn(name: string, values: readonly unknown[]): InferredColumn {
  const notes: string[] = [];
  const markers = new Set<string>();
  const strings: string[] = [];
  let nulls = 0;
  let numbers = 0;
  let safeIntegers = 0;
  let booleans = 0;
  let nested = 0;
  let exponent = false;
  let scale = 0;
  for (const v of values) {
    if (v === null || v === undefined || v === "") {
      nulls++;
      continue;
    }
    if (typeof v === "string") {
      strings.push(v);
      continue;
    }
    if (typeof v === "number") {
      numbers++;
      if (Number.isSafeInteger(v)) safeIntegers++;
      else {
        const text = String(v);
        if (/e/i.test(text)) exponent = true;
        const dot = text.indexOf(".");
        if (dot >= 0) scale = Math.max(scale, text.length - dot - 1);
      }
      continue;
    }
    if (typeof v === "boolean") {
      booleans++;
      continue;
    }
    nested++;
  }
  const seen = new Set(values.filter((v) => v !== null && v !== undefined && v !== "").map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))));
  const base = { name, nulls, nonNull: values.length - nulls, distinct: seen.size, unique: seen.size === values.length - nulls && seen.size > 0, notes };

  // JSON values that are not strings decide on their own, unless strings are mixed in.
  const kinds = (numbers > 0 ? 1 : 0) + (booleans > 0 ? 1 : 0) + (nested > 0 ? 1 : 0) + (strings.length > 0 ? 1 : 0);
  if (kinds === 0) {
    notes.push("every sampled value is empty: typed as string");
    return { ...base, type: "string" };
  }
  if (nested > 0) {
    notes.push(kinds > 1 ? "mixes nested values with others: kept as text" : "nested JSON values: kept as JSON text");
    return { ...base, type: "string" };
  }
  if (kinds > 1 && !(strings.length > 0 && strings.every((s) => MARKERS.has(s)))) {
    notes.push("mixes JSON numbers, booleans and strings: kept as text");
    return { ...base, type: "string" };
  }
  if (numbers > 0) {
    for (const s of strings) markers.add(s);
    const withMarkers = markers.size ? { nullValues: ["", ...markers] } : {};
    if (safeIntegers === numbers) return { ...base, ...withMarkers, type: "integer" };
    if (exponent) {
      notes.push("numbers written with exponents: a decimal without a fixed scale");
      return { ...base, ...withMarkers, type: "decimal" };
    }
    return { ...base, ...withMarkers, type: "decimal", scale: Math.min(scale, 18) };
  }
  if (booleans > 0) {
    for (const s of strings) markers.add(s);
    return { ...base, ...(markers.size ? { nullValues: ["", ...markers] } : {}), type: "boolean" };
  }

  // Strings (CSV, or JSON text): markers first, then the candidates.
  const candidates = strings.filter((s) => {
    if (MARKERS.has(s.trim())) {
      markers.add(s.trim());
      return false;
    }
    return true;
  });
  if (candidates.length === 0) {
    notes.push(`only null markers (${[...markers].join(", ")}) in the sample: typed as string`);
    return { ...base, type: "string" };
  }
  const typed = decideStrings(candidates, notes);
  if (typed.type === "string") {
    // Markers are text in a string column: keep them as data.
    return { ...base, type: "string" };
  }
  const withMarkers = markers.size ? { nullValues: ["", ...markers] } : {};
  return { ...base, ...typed, ...withMarkers, nulls: nulls + (strings.length - candidates.length), nonNull: candidates.length + numbers };
}

/** The narrowest type (and scale or format) every string fits. */
function decideStrings(values: readonly string[], notes: string[]): { type: ColumnTypeName; scale?: number; format?: string } {
  const trimmed = values.map((v) => v.trim());
  if (trimmed.every((v) => BOOLEAN_WORDS.has(v.toLowerCase()))) return { type: "boolean" };
  const int = integerShape(trimmed);
  if (int === "integer") return { type: "integer" };
  if (int === "leading-zero") {
    notes.push("digits with leading zeros (such as ids or codes): kept as text so the zeros stay");
    return { type: "string" };
  }
  const dec = decimalShape(trimmed);
  if (dec !== undefined) {
    if (dec.exponent) notes.push("numbers written with exponents: a decimal without a fixed scale");
    if (dec.tooLong) notes.push("more than 18 fraction digits: a decimal without a fixed scale");
    return dec.exponent || dec.tooLong ? { type: "decimal" } : { type: "decimal", scale: dec.scale };
  }
  const date = firstFormat("date", trimmed, ["iso", ...DATE_FORMATS]);
  if (date !== undefined) {
    if (date === "%m/%d/%Y" || date === "%m/%d/%y" || date === "%m-%d-%Y") {
      if (fitsAll("date", trimmed, date.replace("%m", "%X").replace("%d", "%m").replace("%X", "%d")))
        notes.push(`every day and month is 12 or less: read as month first (${date}); change format if the file is day first`);
    }
    return date === "iso" ? { type: "date" } : { type: "date", format: date };
  }
  const ts = firstFormat("timestamp", trimmed, ["iso", ...TIMESTAMP_FORMATS]);
  if (ts !== undefined) {
    const zoned = ts === "iso" ? trimmed.every(hasIsoZone) : /%[zZ]/.test(ts);
    if (!zoned) notes.push("no time zone in the values: read as UTC (set timezone: to the zone they were written in)");
    return ts === "iso" ? { type: "timestamp" } : { type: "timestamp", format: ts };
  }
  return { type: "string" };
}

function integerShape(values: readonly string[]): "integer" | "leading-zero" | undefined {
  let leadingZero = false;
  for (const v of values) {
    let i = v.charCodeAt(0) === 45 || v.charCodeAt(0) === 43 ? 1 : 0;
    if (i >= v.length) return undefined;
    const start = i;
    for (; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c < 48 || c > 57) return undefined;
    }
    const digits = v.length - start;
    if (digits > 1 && v.charCodeAt(start) === 48) leadingZero = true;
    if (digits > 18 && compileValueParser({ type: "integer" })(v) instanceof Invalid) return undefined;
  }
  return leadingZero ? "leading-zero" : "integer";
}

function decimalShape(values: readonly string[]): { scale: number; exponent: boolean; tooLong: boolean } | undefined {
  const parse = compileValueParser({ type: "decimal" });
  let scale = 0;
  let exponent = false;
  let leadingZero = false;
  for (const v of values) {
    // A plain decimal: digits, one point, digits; an exponent form; nothing else (no thousands separators).
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) return undefined;
    if (parse(v) instanceof Invalid) return undefined;
    if (/[eE]/.test(v)) exponent = true;
    const dot = v.indexOf(".");
    if (dot >= 0 && !/[eE]/.test(v)) scale = Math.max(scale, v.length - dot - 1);
    if (/^[+-]?0\d/.test(v)) leadingZero = true;
  }
  if (leadingZero) return undefined;
  return { scale, exponent, tooLong: scale > 18 };
}

const parsers = new Map<string, ValueParser | null>();

function parserFor(type: "date" | "timestamp", format: string): ValueParser | null {
  const k = `${type}\0${format}`;
  let p = parsers.get(k);
  if (p === undefined) {
    try {
      p = compileValueParser({ type, ...(format === "iso" ? {} : { format }) });
    } catch {
      p = null; // a format the typing layer does not support: not a candidate
    }
    parsers.set(k, p);
  }
  return p;
}

function fitsAll(type: "date" | "timestamp", values: readonly string[], format: string): boolean {
  const p = parserFor(type, format);
  if (!p) return false;
  for (const v of values) if (p(v) instanceof Invalid) return false;
  return true;
}

function firstFormat(type: "date" | "timestamp", values: readonly string[], formats: readonly string[]): string | undefined {
  // Cheap shape test before trying formats: a date or time has digits and some separator.
  if (!values.every((v) => /\d/.test(v) && v.length >= 6 && v.length <= 40)) return undefined;
  return formats.find((f) => fitsAll(type, values, f));
}

function hasIsoZone(v: string): boolean {
  return /(?:Z|[+-]\d\d(?::?\d\d)?)$/i.test(v) && v.length > 10;
}

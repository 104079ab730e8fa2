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
export const NULL_MARKERS = [
  "NA",
  "N/A",
  "n/a",
  "na",
  "null",
  "NULL",
  "Null",
  "None",
  "none",
  "NaN",
  "nan",
  "-",
  "--",
  "#N/A",
  "(null)",
  "nil",
  "?",
  ".",
] as const;
const MARKERS = new Set<string>(NULL_MARKERS);

/** Date formats tried, most common first; the first that reads every value wins. */
export const DATE_FORMATS = [
  "%m/%d/%Y",
  "%d/%m/%Y",
  "%Y/%m/%d",
  "%d.%m.%Y",
  "%d-%m-%Y",
  "%m-%d-%Y",
  "%Y.%m.%d",
  "%b %e %Y",
  "%b %e, %Y",
  "%e %b %Y",
  "%d-%b-%Y",
  "%d-%b-%y",
  "%B %e %Y",
  "%B %e, %Y",
  "%e %B %Y",
  "%a %b %e %Y",
  "%a, %e %b %Y",
  "%A, %B %e, %Y",
  "%m/%d/%y",
  "%d/%m/%y",
  "%d.%m.%y",
  "%Y%m%d",
] as const;

/** Timestamp formats tried after ISO-8601 (which the default parser reads, zone or not). */
export const TIMESTAMP_FORMATS = [
  "%m/%d/%Y %H:%M:%S",
  "%m/%d/%Y %H:%M",
  "%m/%d/%Y %I:%M:%S %p",
  "%m/%d/%Y %I:%M %p",
  "%d/%m/%Y %H:%M:%S",
  "%d/%m/%Y %H:%M",
  "%Y/%m/%d %H:%M:%S",
  "%Y/%m/%d %H:%M",
  "%d.%m.%Y %H:%M:%S",
  "%d.%m.%Y %H:%M",
  "%d-%m-%Y %H:%M:%S",
  "%b %e %Y %H:%M:%S",
  "%b %e %Y %I:%M %p",
  "%d %b %Y %H:%M:%S",
  "%d-%b-%Y %H:%M:%S",
  "%a, %d %b %Y %H:%M:%S %z",
  "%a %b %e %H:%M:%S %Y",
  "%a %b %e %H:%M:%S %Z %Y",
  "%d/%b/%Y:%H:%M:%S %z",
  "%Y-%m-%dT%H:%M:%S%z",
  "%Y-%m-%d %H:%M:%S %z",
  "%Y-%m-%d %H:%M:%S %Z",
  "%Y%m%dT%H%M%S",
  "%m/%d/%y %H:%M",
  "%m/%d/%y %I:%M %p",
] as const;

const BOOLEAN_WORDS = new Set(["true", "false", "t", "f", "yes", "no", "y", "n"]);

/** Infers the columns of sampled records (`names` in file order; records as read). */
export function inferColumns(names: readonly string[], records: readonly Record<string, unknown>[]): InferredColumn[] {
  return names.map((name) =>
    inferColumn(
      name,
      records.map((r) => (Object.hasOwn(r, name) ? r[name] : undefined)),
    ),
  );
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

/**
 * Up to this share of a column's sampled values may not fit its type (the rest deciding it):
 * their rows are then quarantined, with the reason, rather than the whole column read as text.
 * Real exports carry a few broken values; a type that fits every value always wins over one
 * that fits most.
 */
export const MISFIT_SHARE = 0.01;

interface Candidate {
  type: ColumnTypeName;
  scale?: number;
  format?: string;
  misfits: string[];
}

/** The narrowest type (and scale or format) the strings fit. */
function decideStrings(values: readonly string[], notes: string[]): { type: ColumnTypeName; scale?: number; format?: string } {
  const v = values.map((x) => x.trim());
  const allowed = Math.floor(v.length * MISFIT_SHARE);
  const fitting = (ok: (x: string) => boolean): string[] | undefined => {
    const bad: string[] = [];
    for (const x of v) if (!ok(x) && bad.push(x) > allowed) return undefined;
    return bad;
  };
  const found: Candidate[] = [];
  const consider = (c: Candidate | undefined): boolean => {
    if (c) found.push(c);
    return c !== undefined && c.misfits.length === 0;
  };
  const pick = (): { type: ColumnTypeName; scale?: number; format?: string } => {
    const best = found.find((c) => c.misfits.length === 0) ?? found[0];
    if (!best) return { type: "string" };
    if (best.misfits.length > 0) {
      const shown = [...new Set(best.misfits)]
        .slice(0, 3)
        .map((x) => JSON.stringify(x.length > 30 ? `${x.slice(0, 30)}…` : x))
        .join(", ");
      notes.push(
        `${best.misfits.length} of ${v.length} sampled values are not ${best.type === "integer" ? "an integer" : `a ${best.type}`} (${shown}): their rows will be quarantined`,
      );
    }
    const { misfits: _m, ...t } = best;
    return t;
  };

  const boolean = fitting((x) => BOOLEAN_WORDS.has(x.toLowerCase()));
  if (consider(boolean && { type: "boolean", misfits: boolean })) return pick();
  const ints = fitting(isIntegerText);
  if (ints && v.some((x) => /^[+-]?0\d/.test(x))) {
    notes.push("digits with leading zeros (such as ids or codes): kept as text so the zeros stay");
    return { type: "string" };
  }
  if (consider(ints && { type: "integer", misfits: ints })) return pick();
  const decs = fitting(isDecimalText);
  if (decs && !v.some((x) => /^[+-]?0\d/.test(x))) {
    const bad = new Set(decs);
    const ok = v.filter((x) => !bad.has(x));
    if (ok.some((x) => /[eE]/.test(x))) {
      notes.push("numbers written with exponents: a decimal without a fixed scale");
      if (consider({ type: "decimal", misfits: decs })) return pick();
    } else {
      // The scale that covers the values, less the few the tolerance still allows (a stray long fraction).
      const fractions = ok.map((x) => (x.indexOf(".") < 0 ? 0 : x.length - x.indexOf(".") - 1)).sort((a, b) => b - a);
      const spare = allowed - decs.length;
      const scale = fractions[Math.min(spare, fractions.length - 1)] ?? 0;
      const tooFine = ok.filter((x) => x.indexOf(".") >= 0 && x.length - x.indexOf(".") - 1 > scale);
      if (scale > 18) notes.push("more than 18 fraction digits: a decimal without a fixed scale");
      if (consider(scale > 18 ? { type: "decimal", misfits: decs } : { type: "decimal", scale, misfits: [...decs, ...tooFine] })) return pick();
    }
  }
  if (shapedLikeTime(v)) {
    for (const f of ["iso", ...DATE_FORMATS]) {
      const p = parserFor("date", f);
      const bad = p ? fitting((x) => !(p(x) instanceof Invalid)) : undefined;
      if (!bad) continue;
      const monthFirst = f === "%m/%d/%Y" || f === "%m/%d/%y" || f === "%m-%d-%Y";
      if (monthFirst && fitsAll("date", v, f.replace("%m", "%X").replace("%d", "%m").replace("%X", "%d")))
        notes.push(`every day and month is 12 or less: read as month first (${f}); change format if the file is day first`);
      if (consider(f === "iso" ? { type: "date", misfits: bad } : { type: "date", format: f, misfits: bad })) return pick();
      break;
    }
    if (found.length === 0)
      for (const f of ["iso", ...TIMESTAMP_FORMATS]) {
        const p = parserFor("timestamp", f);
        const bad = p ? fitting((x) => !(p(x) instanceof Invalid)) : undefined;
        if (!bad) continue;
        const badSet = new Set(bad);
        const zoned = f === "iso" ? v.filter((x) => !badSet.has(x)).every(hasIsoZone) : /%[zZ]/.test(f);
        if (!zoned) notes.push("no time zone in the values: read as UTC (set timezone: to the zone they were written in)");
        if (consider(f === "iso" ? { type: "timestamp", misfits: bad } : { type: "timestamp", format: f, misfits: bad })) return pick();
        break;
      }
  }
  return pick();
}

function isIntegerText(x: string): boolean {
  let i = x.charCodeAt(0) === 45 || x.charCodeAt(0) === 43 ? 1 : 0;
  if (i >= x.length) return false;
  for (; i < x.length; i++) {
    const c = x.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return x.length < 19 || !(compileValueParser({ type: "integer" })(x) instanceof Invalid);
}

const DECIMAL_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const decimalParser = compileValueParser({ type: "decimal" });

/** A plain decimal: digits, one point, digits, or an exponent form; no thousands separators. */
function isDecimalText(x: string): boolean {
  return DECIMAL_TEXT.test(x) && !(decimalParser(x) instanceof Invalid);
}

/** Nearly every value could be a date or time: it has digits and a sensible length. */
function shapedLikeTime(values: readonly string[]): boolean {
  let ok = 0;
  for (const x of values) if (/\d/.test(x) && x.length >= 6 && x.length <= 40) ok++;
  return ok >= values.length * (1 - MISFIT_SHARE);
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

function hasIsoZone(v: string): boolean {
  return /(?:Z|[+-]\d\d(?::?\d\d)?)$/i.test(v) && v.length > 10;
}

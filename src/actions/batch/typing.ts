/**
 * Typing: raw records (strings from CSV, JSON values from NDJSON / JSON / Parquet) → typed rows,
 * per a target schema written in a workflow's `with: schema:` block.
 *
 * Everything a value needs is compiled once per schema (parsers, time zones, strftime patterns,
 * defaults); `convert()` is generated code (one straight-line block per column, the row built
 * as an object literal) calling hand-rolled parsers over character codes: no regular
 * expressions (except to word a rejection), no `Date`/`Intl` parsing (time zone offsets are
 * cached per wall-clock hour) and no allocation per value beyond the output strings (a value
 * already in canonical form is returned as the very same string).
 *
 * Bad DATA is never thrown: it comes back as reasons, one per failing column, each naming the
 * column, the value (truncated to 60 characters) and why. Bad CONFIGURATION (an unknown time
 * zone, an unsupported format token, a default that does not fit its column) throws
 * `SluiceError("BAD_CONFIG")` from `compileSchema`; `TargetSchema` (inputs.ts) asks the same
 * questions (`formatProblem`, `timezoneProblem`, `typeDefault`), so `sluice validate` refuses
 * such a schema at the field's FILE:LINE:COL before anything runs.
 *
 * Empty values and null markers: a missing key, null or undefined is empty, and so is a raw
 * STRING equal to one of the column's null markers: its `nullValues`, else the schema's
 * `nullValues`, else [""] (an empty cell). Values are compared after trimming for every type but
 * `string` and for `trim: true` string columns (markers are trimmed too), exactly otherwise, so
 * " NA" is a marker of an integer column but not of an untrimmed string column. Non-string raw
 * values (JSON numbers, booleans) are never markers. A non-string column has no empty value, so
 * "" (and whitespace) is empty there whatever the list; a string column whose list lacks "" keeps
 * "" as an empty string (and a string column without `trim` keeps "   " as it is). An empty
 * value takes the column's `default` (typed like any value, once, at compile time), else is a
 * reason when `required` (`trade_id: required but empty`), else null. The columns of
 * `schema.key` are required whatever they say, and "" is empty there whatever the list
 * (`trade_id: required (key column) but empty`, unless they have a default): a record without
 * its key would fail the whole store step.
 * A string value holding U+0000 is a reason (`notes: contains a NUL character (U+0000), which
 * databases cannot store`): PostgreSQL refuses it in text, and it nearly always means a corrupt
 * or binary file.
 *
 * Accepted inputs, per type (surrounding whitespace is ignored for every type but `string`):
 * - string: strings as given (trimmed when `trim: true`); numbers, booleans and bigints via
 *   `String()`; Dates as ISO-8601; other objects and arrays as JSON text.
 * - integer: `[+-]digits` (leading zeros allowed, dropped), safe-integer JS numbers, bigints.
 *   Rejected: fractions ("42.0" too), exponents ("1e3"), thousands separators ("1,000"),
 *   numbers beyond 2^53 (they may already have been rounded), values outside signed 64-bit.
 *   Output: canonical digits, no "+", no leading zeros, "-0" → "0".
 * - decimal: `[+-][digits][.digits]` with at least one digit (".5", "5.", "+1.0"), an optional
 *   exponent ("1.5E-3") expanded exactly, JS numbers through their shortest round-trip text
 *   (`String(n)`, exponent forms expanded exactly), bigints. Never through a float.
 *   With `scale`: padded with zeros to `scale` fraction digits; more fraction digits than
 *   `scale` is a reason (`price: 1.23456 has more than 4 decimal places`) unless the extra
 *   digits are all zeros ("1.50" fits scale 1: no value is lost). Without `scale`: the input's
 *   own fraction digits, trailing zeros kept ("5." → "5", "+01.50" → "1.50").
 *   At most 38 significant digits (integer digits + fraction digits), like NUMERIC(38, s).
 * - boolean: true/false, "true"/"false", "t"/"f", "yes"/"no", "y"/"n", "1"/"0" in any case,
 *   and the numbers 1/0.
 * - timestamp (default): `YYYY-MM-DD[T| ]HH:MM[:SS[.f{1,9}]][Z|±hh:mm|±hhmm|±hh]`, or a bare
 *   `YYYY-MM-DD` (midnight). Without an offset the wall time is read in the column's `timezone`
 *   (IANA name or a fixed `±hh:mm`; default UTC), DST included. A wall time that occurs twice
 *   (autumn) takes the earlier instant; one that does not exist (spring gap) is moved forward by
 *   the gap, as JavaScript `Date` and Temporal's default "compatible" disambiguation do.
 *   Fractions beyond microseconds are TRUNCATED, not rounded: truncation never carries into
 *   the next second (or day, or year: "23:59:59.9999999" stays on its day), keeps the
 *   instant's calendar fields exactly as written, and is what PostgreSQL-bound pipelines need
 *   (its timestamptz holds microseconds). Also JS Dates (Parquet). Numbers are refused
 *   without a format (seconds or milliseconds? the schema must say). With `format`:
 *   - `epoch_s` / `epoch_ms`: a number or numeric string (optional fraction, sub-microsecond
 *     digits truncated);
 *   - a strftime-like pattern (compiled once per column; names matched in any letter case):
 *     %Y 4-digit year; %y 2-digit year (POSIX pivot: 69–99 → 1969–1999, 00–68 → 2000–2068);
 *     %m %d %H %M %S 1–2 digits, exactly 2 when next to another numeric field (%Y%m%d);
 *     %-m %-d %-H %-I %-M %-S the same (glibc's no-padding flag); %e day, maybe space-padded;
 *     %j day of the year (1–3 digits); %I hour 1–12 with %p (AM, PM, a.m., p.m.; 12 AM is
 *     midnight; %I without %p is refused); %b %h Jan…Dec (and "Sept"); %B January…December;
 *     %a Mon…Sun; %A Monday…Sunday (a weekday that does not match the date is a reason);
 *     %f 1–9 fraction digits (truncated to microseconds); %z Z, ±hh:mm, ±hhmm or ±hh;
 *     %Z a zone: UTC, GMT, Z, an IANA Area/Location name, or one of the unambiguous
 *     North-American EST EDT CST CDT MST MDT PST PDT AKST AKDT HST (fixed offsets); other
 *     abbreviations (IST, BST, CET…) are ambiguous and refused; %s seconds since the epoch
 *     (alone, or with %f); %T = %H:%M:%S, %R = %H:%M, %D = %m/%d/%y, %F = %Y-%m-%d; %n %t
 *     whitespace; %% a literal "%". A space matches one or more whitespace characters
 *     ("%b %e %Y" reads "Jun 12 1998" and "Jun  2 1998"); any other character must match
 *     itself. Required: a year and either a month and day or %j (or %s alone). An offset in
 *     the value (%z) wins over a zone in it (%Z), which wins over the column's `timezone`.
 *   Output: UTC `YYYY-MM-DDTHH:MM:SS.sssZ`, six fraction digits when the (truncated) value has
 *   a non-zero sub-millisecond part, so one instant has exactly one text (keys, uniqueness).
 *   Calendar-validated: month 1–12, day within the month (Feb 29 on leap years only),
 *   hour 0–23, minute and second 0–59 (no leap seconds), UTC years 0000–9999.
 * - date: `YYYY-MM-DD` (or a `format` of date fields only: no %H %I %M %S %f %p %z %Z %s),
 *   calendar-validated; a value with a time of day is a reason, never truncated. JS Dates at
 *   UTC midnight.
 */
import { SluiceError } from "../../errors.js";
import type { Column, ColumnTypeName, TargetSchemaSpec, TypedRow, TypedValue } from "./model.js";
import { daysFromCivil } from "../../formats/values.js";

type ColumnSpec = TargetSchemaSpec["columns"][number];

export interface CompiledSchema {
  /** Output columns in schema order (name, type, scale). */
  columns: Column[];
  /** schema.key */
  key: string[] | undefined;
  /** Convert one raw record (values usually strings from CSV, or JSON values from NDJSON/JSON/Parquet). */
  convert(raw: Record<string, unknown>): { ok: true; row: TypedRow } | { ok: false; reasons: string[] };
}

/** Why a (non-empty) value does not fit a type. Allocated only for bad values. */
export class Invalid {
  constructor(
    /** The end of the sentence after the value, e.g. `is not a valid timestamp (month 13)`. */
    readonly why: string,
    /** Whether the value is shown in quotes (false for well-formed numbers out of range). */
    readonly quoted: boolean = true,
  ) {}
}

/** Types one non-empty value; returns the typed value or an `Invalid`. */
export type ValueParser = (value: unknown) => TypedValue | Invalid;

/** What a value parser needs to know about its column. */
export interface ValueParserSpec {
  type: ColumnTypeName;
  scale?: number | undefined;
  format?: string | undefined;
  timezone?: string | undefined;
  /** For configuration error messages. */
  name?: string | undefined;
}

const MAX_SHOWN = 60;

/** A value as shown in a reason: strings quoted and truncated to 60 characters. */
export function showValue(value: unknown, quoted = true): string {
  let text: string;
  if (typeof value === "string") text = value;
  else if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  else if (value instanceof Date) text = Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
    quoted = false;
  }
  if (text.length > MAX_SHOWN) text = text.slice(0, MAX_SHOWN) + "…";
  return quoted ? JSON.stringify(text) : text;
}

/** The reason sentence for a value a parser rejected, e.g. `price: 1.23456 has more than 4 decimal places`. */
export function describeInvalid(column: string, value: unknown, invalid: Invalid): string {
  return `${column}: ${showValue(value, invalid.quoted)} ${invalid.why}`;
}

function badConfig(message: string): SluiceError {
  return new SluiceError("BAD_CONFIG", message, { retryable: false });
}

// ---------------------------------------------------------------------------------------------
// Whitespace

function isWs(c: number): boolean {
  return (
    c <= 32 ||
    (c >= 0xa0 &&
      (c === 0xa0 ||
        c === 0xfeff ||
        c === 0x3000 ||
        (c >= 0x2000 && c <= 0x200a) ||
        c === 0x2028 ||
        c === 0x2029 ||
        c === 0x202f ||
        c === 0x205f ||
        c === 0x1680))
  );
}

/** `s` without surrounding whitespace; the same string when there is none (the usual case). */
function trimIfNeeded(s: string): string {
  const n = s.length;
  if (n === 0) return s;
  return isWs(s.charCodeAt(0)) || isWs(s.charCodeAt(n - 1)) ? s.trim() : s;
}

// ---------------------------------------------------------------------------------------------
// string

function parseStringValue(v: unknown): TypedValue | Invalid {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? new Invalid("is not a valid date") : v.toISOString();
  try {
    const json = JSON.stringify(v);
    return json === undefined ? String(v) : json;
  } catch {
    return String(v);
  }
}

// ---------------------------------------------------------------------------------------------
// integer

const INT64_MAX = "9223372036854775807";
const INT64_MIN_ABS = "9223372036854775808";
const BIG_MAX = 9223372036854775807n;
const BIG_MIN = -9223372036854775808n;
const RANGE_WHY = "is out of the 64-bit integer range";

function integerSyntaxWhy(s: string): Invalid {
  let hint = "";
  if (/^[+-]?\d+\.\d*$/.test(s)) hint = " (a fraction)";
  else if (/^[+-]?[\d.]+[eE][+-]?\d+$/.test(s)) hint = " (exponent notation is not accepted)";
  else if (/^[+-]?\d{1,3}([,_ ]\d{3})+$/.test(s)) hint = " (thousands separators are not accepted)";
  return new Invalid(`is not a valid integer${hint}`);
}

function parseIntegerString(s: string): string | Invalid {
  const n = s.length;
  let i = 0;
  let neg = false;
  const c0 = s.charCodeAt(0);
  if (c0 === 45) {
    neg = true;
    i = 1;
  } else if (c0 === 43) i = 1;
  if (i >= n) return integerSyntaxWhy(s);
  for (let j = i; j < n; j++) {
    const d = s.charCodeAt(j);
    if (d < 48 || d > 57) return integerSyntaxWhy(s);
  }
  let start = i;
  while (start < n - 1 && s.charCodeAt(start) === 48) start++;
  const digits = n - start;
  if (digits >= 19) {
    if (digits > 19) return new Invalid(RANGE_WHY, false);
    const limit = neg ? INT64_MIN_ABS : INT64_MAX;
    for (let k = 0; k < 19; k++) {
      const a = s.charCodeAt(start + k);
      const b = limit.charCodeAt(k);
      if (a !== b) {
        if (a > b) return new Invalid(RANGE_WHY, false);
        break;
      }
    }
  }
  if (digits === 1 && s.charCodeAt(start) === 48) return "0";
  if (start === 0) return s; // already canonical: no sign, no leading zero
  if (neg) return start === 1 ? s : "-" + s.slice(start);
  return s.slice(start);
}

function parseIntegerValue(v: unknown): TypedValue | Invalid {
  if (typeof v === "string") return parseIntegerString(trimIfNeeded(v));
  if (typeof v === "number") {
    if (Number.isSafeInteger(v)) return String(v); // String(-0) === "0"
    if (!Number.isFinite(v)) return new Invalid("is not a valid integer");
    if (Number.isInteger(v)) return new Invalid("is beyond 2^53 and may already have been rounded; send it as a string", false);
    return new Invalid("is not an integer", false);
  }
  if (typeof v === "bigint") return v > BIG_MAX || v < BIG_MIN ? new Invalid(RANGE_WHY, false) : String(v);
  return new Invalid("is not a valid integer");
}

// ---------------------------------------------------------------------------------------------
// decimal

const MAX_PRECISION = 38;
const ZEROS = "0".repeat(64);

function zeros(k: number): string {
  return k <= 64 ? ZEROS.slice(0, k) : "0".repeat(k);
}

/**
 * Canonical decimal text of `s` (already trimmed). `scale` undefined keeps the input's fraction
 * digits. Exponents are expanded exactly by moving the point, then parsed again.
 */
function parseDecimalString(s: string, scale: number | undefined): string | Invalid {
  const n = s.length;
  let i = 0;
  let neg = false;
  const c0 = s.charCodeAt(0);
  if (c0 === 45) {
    neg = true;
    i = 1;
  } else if (c0 === 43) i = 1;
  const intStart = i;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) break;
    i++;
  }
  const intEnd = i;
  let fracStart = i;
  let fracEnd = i;
  let dot = false;
  if (i < n && s.charCodeAt(i) === 46) {
    dot = true;
    i++;
    fracStart = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      i++;
    }
    fracEnd = i;
  }
  if (intEnd === intStart && fracEnd === fracStart) return new Invalid("is not a valid decimal");
  if (i < n) {
    const c = s.charCodeAt(i);
    if (c !== 101 && c !== 69) {
      return new Invalid(c === 44 ? 'is not a valid decimal (use "." as the decimal point, no thousands separators)' : "is not a valid decimal");
    }
    return expandExponent(s, neg, intStart, intEnd, fracStart, fracEnd, i + 1, scale);
  }
  // Leading zeros of the integer part (keep one digit).
  let is = intStart;
  while (is < intEnd - 1 && s.charCodeAt(is) === 48) is++;
  const intZero = intEnd === intStart || (intEnd - is === 1 && s.charCodeAt(is) === 48);
  const fracLen = fracEnd - fracStart;
  let outFracLen = fracLen;
  let cutFrac = fracEnd; // fraction digits kept
  if (scale !== undefined) {
    if (fracLen > scale) {
      for (let k = fracStart + scale; k < fracEnd; k++) {
        if (s.charCodeAt(k) !== 48) return new Invalid(`has more than ${scale} decimal place${scale === 1 ? "" : "s"}`, false);
      }
      cutFrac = fracStart + scale;
    }
    outFracLen = scale;
  }
  const intDigits = intZero ? 0 : intEnd - is;
  if (intDigits + outFracLen > MAX_PRECISION) return new Invalid(`has more than ${MAX_PRECISION} digits of precision`, false);
  let isZero = intZero;
  if (isZero) {
    for (let k = fracStart; k < cutFrac; k++) {
      if (s.charCodeAt(k) !== 48) {
        isZero = false;
        break;
      }
    }
  }
  const signOk = neg ? !isZero && intStart === 1 : intStart === 0;
  // Fast path: the input is already canonical.
  if (signOk && is === intStart && intEnd > intStart && cutFrac === fracEnd && outFracLen === fracLen && (fracLen > 0 || !dot)) return s;
  let out = neg && !isZero ? "-" : "";
  out += intEnd === intStart ? "0" : s.slice(is, intEnd);
  if (outFracLen > 0) {
    out += "." + s.slice(fracStart, cutFrac);
    if (outFracLen > cutFrac - fracStart) out += zeros(outFracLen - (cutFrac - fracStart));
  }
  return out;
}

function expandExponent(
  s: string,
  neg: boolean,
  intStart: number,
  intEnd: number,
  fracStart: number,
  fracEnd: number,
  expStart: number,
  scale: number | undefined,
): string | Invalid {
  const n = s.length;
  let i = expStart;
  let expNeg = false;
  if (i < n && (s.charCodeAt(i) === 43 || s.charCodeAt(i) === 45)) {
    expNeg = s.charCodeAt(i) === 45;
    i++;
  }
  if (i >= n) return new Invalid("is not a valid decimal");
  let exp = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return new Invalid("is not a valid decimal");
    if (exp < 100_000) exp = exp * 10 + (c - 48);
  }
  if (expNeg) exp = -exp;
  const digits = s.slice(intStart, intEnd) + s.slice(fracStart, fracEnd);
  const point = intEnd - intStart + exp;
  if (point > MAX_PRECISION + digits.length || point < -(MAX_PRECISION + 64)) {
    return new Invalid(`has more than ${MAX_PRECISION} digits of precision`, false);
  }
  let plain: string;
  if (point <= 0) plain = "0." + zeros(-point) + digits;
  else if (point >= digits.length) plain = digits + zeros(point - digits.length);
  else plain = digits.slice(0, point) + "." + digits.slice(point);
  return parseDecimalString(neg ? "-" + plain : plain, scale);
}

function makeDecimalParser(scale: number | undefined): ValueParser {
  return (v) => {
    if (typeof v === "string") return parseDecimalString(trimIfNeeded(v), scale);
    if (typeof v === "number") {
      if (!Number.isFinite(v)) return new Invalid("is not a valid decimal");
      return parseDecimalString(String(v), scale);
    }
    if (typeof v === "bigint") return parseDecimalString(String(v), scale);
    return new Invalid("is not a valid decimal");
  };
}

// ---------------------------------------------------------------------------------------------
// boolean

/** Every spelling in every letter case, so lookup never allocates a lower-cased copy. */
const BOOLEANS = new Map<string, boolean>();
for (const [word, value] of [
  ["true", true],
  ["false", false],
  ["t", true],
  ["f", false],
  ["yes", true],
  ["no", false],
  ["y", true],
  ["n", false],
  ["1", true],
  ["0", false],
] as const) {
  const letters = [...word];
  for (let mask = 0; mask < 1 << letters.length; mask++) {
    BOOLEANS.set(letters.map((ch, k) => (mask & (1 << k) ? ch.toUpperCase() : ch)).join(""), value);
  }
}

function parseBooleanValue(v: unknown): TypedValue | Invalid {
  if (typeof v === "boolean") return v;
  if (typeof v === "string") {
    const b = BOOLEANS.get(trimIfNeeded(v));
    return b === undefined ? new Invalid("is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)") : b;
  }
  if (v === 1 || v === 0 || v === 1n || v === 0n) return v === 1 || v === 1n;
  return new Invalid("is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)");
}

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic (proleptic Gregorian, days since 1970-01-01; H. Hinnant's algorithms)

// civilFromDays writes here (no allocation).
let cy = 0;
let cm = 0;
let cd = 0;
function civilFromDays(days: number): void {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  cd = doy - Math.floor((153 * mp + 2) / 5) + 1;
  cm = mp < 10 ? mp + 3 : mp - 9;
  cy = yoe + era * 400 + (cm <= 2 ? 1 : 0);
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

const MONTH_DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(y: number, m: number): number {
  return m === 2 && isLeap(y) ? 29 : MONTH_DAYS[m]!;
}

const PAD2: string[] = Array.from({ length: 100 }, (_, k) => String(k).padStart(2, "0"));
const PAD3: string[] = Array.from({ length: 1000 }, (_, k) => String(k).padStart(3, "0"));

function pad4(y: number): string {
  return y >= 1000 ? String(y) : String(y).padStart(4, "0");
}

// Earliest and latest representable UTC seconds (0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z).
const MIN_SEC = daysFromCivil(0, 1, 1) * 86400;
const MAX_SEC = daysFromCivil(9999, 12, 31) * 86400 + 86399;

/** ".sssZ" for every millisecond, and "HH:MM:SS" for every second of the day (filled lazily). */
const MS_Z: string[] = PAD3.map((ms) => "." + ms + "Z");
const HMS: (string | undefined)[] = new Array<string | undefined>(86400);
// "YYYY-MM-DDT" of recently formatted days, in a small direct-mapped cache: the rows of one
// file mostly fall on a few days.
const DAY_SLOTS = 256;
const dayKeys = new Float64Array(DAY_SLOTS).fill(NaN);
const dayTexts: string[] = new Array<string>(DAY_SLOTS).fill("");

/** UTC text for whole seconds since the epoch plus microseconds, or undefined out of range. */
function formatUtc(sec: number, micros: number): string | undefined {
  if (sec < MIN_SEC || sec > MAX_SEC) return undefined;
  const days = Math.floor(sec / 86400);
  const sod = sec - days * 86400;
  const slot = days & (DAY_SLOTS - 1);
  let dayText = dayTexts[slot]!;
  if (dayKeys[slot] !== days) {
    civilFromDays(days);
    dayKeys[slot] = days;
    dayText = dayTexts[slot] = pad4(cy) + "-" + PAD2[cm]! + "-" + PAD2[cd]! + "T";
  }
  let hms = HMS[sod];
  if (hms === undefined) {
    const h = (sod / 3600) | 0;
    const mi = ((sod - h * 3600) / 60) | 0;
    hms = HMS[sod] = PAD2[h]! + ":" + PAD2[mi]! + ":" + PAD2[sod - h * 3600 - mi * 60]!;
  }
  const ms = (micros / 1000) | 0;
  const sub = micros - ms * 1000;
  return dayText + hms + (sub === 0 ? MS_Z[ms]! : "." + PAD3[ms]! + PAD3[sub]! + "Z");
}

// ---------------------------------------------------------------------------------------------
// Time zones

/** Offsets (seconds east of UTC) of an IANA zone, with a cache of wall-clock hours. */
class Zone {
  private readonly dtf: Intl.DateTimeFormat;
  /** Local hour number → offset, stored only when the offset is the same for the whole hour. */
  private readonly hours = new Map<number, number>();

  constructor(dtf: Intl.DateTimeFormat) {
    this.dtf = dtf;
  }

  /** Offset in force at a UTC instant (whole seconds). */
  offsetAt(utcSec: number): number {
    let y = 0;
    let mo = 1;
    let d = 1;
    let h = 0;
    let mi = 0;
    let s = 0;
    for (const p of this.dtf.formatToParts(utcSec * 1000)) {
      switch (p.type) {
        case "year":
          y = Number(p.value);
          break;
        case "month":
          mo = Number(p.value);
          break;
        case "day":
          d = Number(p.value);
          break;
        case "hour":
          h = Number(p.value) % 24;
          break;
        case "minute":
          mi = Number(p.value);
          break;
        case "second":
          s = Number(p.value);
          break;
        default:
          break;
      }
    }
    return daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - utcSec;
  }

  /**
   * Offset for a wall-clock time (seconds since the epoch as if the wall time were UTC).
   * Repeated wall times (autumn) take the earlier instant; skipped ones (spring) the offset
   * before the gap, which moves them forward by the gap ("compatible", as JS Date and Temporal).
   */
  private resolve(local: number): number {
    const before = this.offsetAt(local - 86400);
    const after = this.offsetAt(local + 86400);
    if (before === after) return before;
    const beforeOk = this.offsetAt(local - before) === before;
    const afterOk = this.offsetAt(local - after) === after;
    if (beforeOk && afterOk) return Math.max(before, after);
    if (afterOk) return after;
    return before;
  }

  offsetForLocal(local: number): number {
    const hour = Math.floor(local / 3600);
    const cached = this.hours.get(hour);
    if (cached !== undefined) return cached;
    const first = this.resolve(hour * 3600);
    const last = this.resolve(hour * 3600 + 3599);
    if (first === last) {
      if (this.hours.size >= 200_000) this.hours.clear();
      this.hours.set(hour, first);
      return first;
    }
    return this.resolve(local); // a transition inside this hour: exact, uncached
  }
}

/** A time zone: a fixed offset (seconds) or an IANA zone. */
type ZoneRef = number | Zone;

const zones = new Map<string, ZoneRef | string>();
const FIXED_ZONE = /^(?:UTC|GMT)?([+-])(\d{2}):?(\d{2})?$/;
const ZONE_HELP = "(use an IANA name such as America/New_York, a fixed offset such as +05:30, or UTC)";

/** A column's `timezone`, or the reason it is not one (cached either way). */
function lookupZone(name: string): ZoneRef | string {
  const known = zones.get(name);
  if (known !== undefined) return known;
  let ref: ZoneRef | string;
  const fixed = FIXED_ZONE.exec(name);
  if (/^(?:UTC|GMT|Z|Etc\/UTC|Etc\/GMT)$/i.test(name)) ref = 0;
  else if (fixed) {
    const hh = Number(fixed[2]);
    const mm = Number(fixed[3] ?? "0");
    ref = hh > 23 || mm > 59 ? "is not a valid offset (hours 00–23, minutes 00–59)" : (fixed[1] === "-" ? -1 : 1) * (hh * 3600 + mm * 60);
  } else ref = ianaZone(name) ?? `does not exist ${ZONE_HELP}`;
  if (zones.size < 10_000) zones.set(name, ref);
  return ref;
}

/** An IANA zone by name, or undefined when the runtime does not know it. */
function ianaZone(name: string): ZoneRef | undefined {
  let dtf: Intl.DateTimeFormat;
  try {
    dtf = new Intl.DateTimeFormat("en-US", {
      timeZone: name,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
  } catch {
    return undefined;
  }
  const resolved = dtf.resolvedOptions().timeZone;
  return resolved === "UTC" || resolved === "Etc/UTC" || resolved === "Etc/GMT" ? 0 : new Zone(dtf);
}

/**
 * Why a column's `timezone` is not usable (e.g. `does not exist (use an IANA name …)`), or
 * undefined when it is. `sluice validate` and `compileSchema` both ask this.
 */
export function timezoneProblem(name: string): string | undefined {
  const ref = lookupZone(name);
  return typeof ref === "string" ? ref : undefined;
}

function resolveZone(name: string | undefined, column: string): ZoneRef {
  if (name === undefined) return 0;
  const ref = lookupZone(name);
  if (typeof ref === "string") throw badConfig(`column ${column}: time zone "${name}" ${ref}`);
  return ref;
}

/**
 * Zones a `%Z` field accepts in a value: UTC, GMT, UT, Z, an IANA Area/Location name, or one of
 * the North-American abbreviations below, each a fixed offset ("EST" is UTC-5 even in July).
 * Every other abbreviation is refused: IST is India, Israel or Ireland, CST China or Cuba too,
 * BST British Summer or Bangladesh, so no reading of them would be safe.
 */
const ZONE_ABBREVIATIONS = new Map<string, number>([
  ["UTC", 0],
  ["GMT", 0],
  ["UT", 0],
  ["Z", 0],
  ["EST", -5 * 3600],
  ["EDT", -4 * 3600],
  ["CST", -6 * 3600],
  ["CDT", -5 * 3600],
  ["MST", -7 * 3600],
  ["MDT", -6 * 3600],
  ["PST", -8 * 3600],
  ["PDT", -7 * 3600],
  ["AKST", -9 * 3600],
  ["AKDT", -8 * 3600],
  ["HST", -10 * 3600],
]);

/** The zone a `%Z` field names, or why it cannot be used (the end of an `is not a valid timestamp (…)`). */
function valueZone(text: string): ZoneRef | string {
  const abbreviation = ZONE_ABBREVIATIONS.get(text.toUpperCase());
  if (abbreviation !== undefined) return abbreviation;
  if (text.includes("/")) {
    const ref = lookupZone(text);
    return typeof ref === "string" ? `time zone ${JSON.stringify(text)} does not exist` : ref;
  }
  return `time zone ${JSON.stringify(text)} is ambiguous or unknown: only UTC, GMT, the North-American EST EDT CST CDT MST MDT PST PDT AKST AKDT HST and IANA names such as Europe/Paris are read`;
}

// ---------------------------------------------------------------------------------------------
// Timestamps and dates: field parsing into scratch variables, then validation and formatting

let fy = 0;
let fmo = 0;
let fd = 0;
let fh = 0;
let fmi = 0;
let fs = 0;
let fmicro = 0;
/** Parsed offset in seconds; NaN when the text has none. */
let foff = NaN;

function d2(s: string, i: number): number {
  const a = s.charCodeAt(i) - 48;
  const b = s.charCodeAt(i + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Reads 1–9 fraction digits at i into fmicro (truncated to microseconds); returns the end, or -1. */
function readFraction(s: string, i: number): number {
  const n = s.length;
  let k = i;
  let micro = 0;
  while (k < n && isDigit(s.charCodeAt(k))) {
    if (k - i < 6) micro = micro * 10 + (s.charCodeAt(k) - 48);
    k++;
  }
  const len = k - i;
  if (len === 0 || len > 9) return -1;
  for (let p = len; p < 6; p++) micro *= 10;
  fmicro = micro;
  return k;
}

/** Reads an offset (Z, ±hh:mm, ±hhmm, ±hh) at i into foff; returns the end, or -1. */
function readOffset(s: string, i: number): number {
  const n = s.length;
  const c = s.charCodeAt(i);
  if (c === 90 || c === 122) {
    foff = 0;
    return i + 1;
  }
  if (c !== 43 && c !== 45) return -1;
  if (i + 3 > n) return -1;
  const hh = d2(s, i + 1);
  if (hh < 0 || hh > 23) return -1;
  let k = i + 3;
  let mm = 0;
  if (k < n) {
    if (s.charCodeAt(k) === 58) k++;
    if (k + 2 > n) return -1;
    mm = d2(s, k);
    if (mm < 0 || mm > 59) return -1;
    k += 2;
  }
  foff = (c === 45 ? -1 : 1) * (hh * 3600 + mm * 60);
  return k;
}

const ISO_SHAPE = "expected YYYY-MM-DDTHH:MM:SS[.fff][Z|±hh:mm]";

/**
 * Parses ISO-8601 / RFC 3339 into the scratch fields. Returns undefined on success, "" for a
 * shape error, or a calendar complaint such as "month 13".
 * `dateOnly` reports whether the text was a bare date.
 */
let fDateOnly = false;
function parseIsoFields(s: string): string | undefined {
  const n = s.length;
  if (n < 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return "";
  const y1 = d2(s, 0);
  const y2 = d2(s, 2);
  if (y1 < 0 || y2 < 0) return "";
  fy = y1 * 100 + y2;
  fmo = d2(s, 5);
  fd = d2(s, 8);
  if (fmo < 0 || fd < 0) return "";
  fh = 0;
  fmi = 0;
  fs = 0;
  fmicro = 0;
  foff = NaN;
  fDateOnly = n === 10;
  if (!fDateOnly) {
    const sep = s.charCodeAt(10);
    if ((sep !== 84 && sep !== 32 && sep !== 116) || n < 16 || s.charCodeAt(13) !== 58) return "";
    fh = d2(s, 11);
    fmi = d2(s, 14);
    if (fh < 0 || fmi < 0) return "";
    let i = 16;
    if (i < n && s.charCodeAt(i) === 58) {
      if (i + 3 > n) return "";
      fs = d2(s, i + 1);
      if (fs < 0) return "";
      i += 3;
      if (i < n && s.charCodeAt(i) === 46) {
        i = readFraction(s, i + 1);
        if (i < 0) return "";
      }
    }
    if (i < n) {
      i = readOffset(s, i);
      if (i !== n) return "";
    }
  }
  return checkCalendar();
}

function checkCalendar(): string | undefined {
  if (fmo < 1 || fmo > 12) return `month ${fmo}`;
  if (fd < 1 || fd > daysInMonth(fy, fmo)) return `${pad4(fy)}-${PAD2[fmo]} has no day ${fd}`;
  if (fh > 23) return `hour ${fh}`;
  if (fmi > 59) return `minute ${fmi}`;
  if (fs > 59) return `second ${fs}`;
  return undefined;
}

/** The UTC text for the scratch fields, reading offset-less wall times in `zone`. */
function fieldsToUtc(zone: ZoneRef): string | Invalid {
  const local = daysFromCivil(fy, fmo, fd) * 86400 + fh * 3600 + fmi * 60 + fs;
  const off = foff === foff ? foff : typeof zone === "number" ? zone : zone.offsetForLocal(local);
  const out = formatUtc(local - off, fmicro);
  return out === undefined ? new Invalid("is not a valid timestamp (outside the years 0000–9999 in UTC)") : out;
}

function invalidTimestamp(detail: string, shape: string): Invalid {
  return new Invalid(`is not a valid timestamp (${detail === "" ? shape : detail})`);
}

function parseIsoTimestamp(s: string, zone: ZoneRef): TypedValue | Invalid {
  const problem = parseIsoFields(s);
  if (problem !== undefined) return invalidTimestamp(problem, ISO_SHAPE);
  const n = s.length;
  // Fast path: already canonical UTC text.
  if (foff === 0 && s.charCodeAt(n - 1) === 90 && s.charCodeAt(10) === 84 && s.charCodeAt(19) === 46) {
    if (n === 24) return s;
    if (n === 27 && fmicro % 1000 !== 0) return s;
  }
  return fieldsToUtc(zone);
}

function dateText(): string {
  return pad4(fy) + "-" + PAD2[fmo]! + "-" + PAD2[fd]!;
}

function parseIsoDate(s: string): TypedValue | Invalid {
  if (s.length !== 10) {
    const sep = s.charCodeAt(10);
    const timed = s.length > 10 && (sep === 84 || sep === 116 || sep === 32) && parseIsoFields(s.slice(0, 10)) === undefined;
    return new Invalid(timed ? "is not a valid date (it has a time of day; use a timestamp column)" : "is not a valid date (expected YYYY-MM-DD)");
  }
  const problem = parseIsoFields(s);
  if (problem !== undefined) {
    if (problem !== "") return new Invalid(`is not a valid date (${problem})`);
    return new Invalid("is not a valid date (expected YYYY-MM-DD)");
  }
  return s;
}

// strftime-like patterns, compiled once per column to (kind, argument) pairs that a single
// switch walks over character codes: no regular expression, no substring and no lower-cased
// copy per value (names are found through a 26×26×26 table of their first three letters, case
// folded with `| 32`, exact for ASCII letters). Measured converting 1,000,000 one-column records
// (compileSchema().convert, best of 7 runs a process, min over 8 processes alternating old and
// new code, on the shared 2-core machine), before → after this parser and the null markers:
// "%d/%m/%Y %H:%M:%S" 126 → 127 ms, "%Y%m%d%H%M%S" 100 → 100 ms, date "%d.%m.%Y" 71 → 71 ms,
// ISO timestamps 101 → 98 ms (with an offset 120 → 118), ISO dates 36 → 36 ms, integers 29 → 23
// ms and strings 7 → 7 ms (noise: the default [""] markers generate the same code as before);
// the new "%b %e %Y %I:%M %p" 211–219 ms, an integer column with 4 markers (10% "NA") 31 ms.
// Kinds 1–7 read 1–2 digits: one range test sends them all to one reader (the common case).
const K_LIT = 0; // argument: the character code
const K_MO = 1;
const K_D = 2;
const K_H = 3;
const K_MI = 4;
const K_S = 5;
const K_I = 6; // hour 1–12, with K_P
const K_Y2 = 7; // 2-digit year, POSIX pivot
const K_Y = 8; // 4-digit year
const K_WS = 9; // one or more whitespace characters
const K_F = 10; // fraction of a second
const K_Z = 11; // offset
const K_E = 12; // day of the month, maybe space-padded
const K_J = 13; // day of the year
const K_P = 14; // AM / PM
const K_MON = 15; // month name; argument 1 for full names
const K_WDAY = 16; // weekday name; argument 1 for full names
const K_ZN = 17; // zone name
const K_EPOCH = 18; // seconds since the epoch

/** What each token reads, and the field it sets (a field may be set once). */
const TOKEN_KINDS: Record<string, [kind: number, arg: number, field: string]> = {
  Y: [K_Y, 0, "year"],
  y: [K_Y2, 0, "year"],
  m: [K_MO, 0, "month"],
  b: [K_MON, 0, "month"],
  h: [K_MON, 0, "month"],
  B: [K_MON, 1, "month"],
  d: [K_D, 0, "day"],
  e: [K_E, 0, "day"],
  j: [K_J, 0, "day of the year"],
  H: [K_H, 0, "hour"],
  I: [K_I, 0, "hour"],
  M: [K_MI, 0, "minute"],
  S: [K_S, 0, "second"],
  f: [K_F, 0, "fraction"],
  p: [K_P, 0, "AM/PM"],
  a: [K_WDAY, 0, "weekday"],
  A: [K_WDAY, 1, "weekday"],
  z: [K_Z, 0, "offset"],
  Z: [K_ZN, 0, "time zone"],
  s: [K_EPOCH, 0, "seconds since the epoch"],
};
/** Tokens that stand for several (glibc's). */
const TOKEN_EXPANSIONS: Record<string, string> = { T: "%H:%M:%S", R: "%H:%M", D: "%m/%d/%y", F: "%Y-%m-%d" };
/** Tokens that take glibc's "-" (no padding) flag; the flag changes nothing when reading. */
const DASH_TOKENS = "mdHIMS";
const SUPPORTED = "%Y %y %m %-m %d %-d %e %j %H %-H %I %-I %M %-M %S %-S %p %b %h %B %a %A %f %z %Z %s %T %R %D %F %n %t %%";
const TIME_KINDS = new Set([K_H, K_I, K_MI, K_S, K_F, K_P, K_Z, K_ZN, K_EPOCH]);
const NUMERIC_KINDS = new Set([K_Y, K_Y2, K_MO, K_D, K_E, K_J, K_H, K_I, K_MI, K_S, K_F, K_EPOCH]);
const SIZED_KINDS = new Set([K_Y2, K_MO, K_D, K_E, K_J, K_H, K_I, K_MI, K_S]);

interface Pattern {
  ops: Int32Array;
  /** Only numbers and literals: no %I/%p, %j, weekday or %s to resolve after reading. */
  plain: boolean;
  twelveHour: boolean;
  dayOfYear: boolean;
  epoch: boolean;
  weekday: boolean;
  /** The value names its zone (%Z): read into `fzone`. */
  zoned: boolean;
  /** Zone names met in this column's values, with what they resolved to (a few, usually one). */
  zoneNames: string[];
  zoneRefs: ZoneRef[];
}

/**
 * Compiles a strftime-like pattern, or says what is wrong with it: the sentence's end after
 * `format "…"`, naming the token and its (1-based) character position.
 */
function compilePattern(format: string, dateOnly: boolean): Pattern | string {
  const ops: number[] = [];
  const fields = new Map<string, string>(); // field → `%m at character 4`
  const kinds = new Map<number, string>(); // kind → `%I at character 12`
  const ws = (): void => {
    if (ops.length < 2 || ops[ops.length - 2] !== K_WS) ops.push(K_WS, 0);
  };
  const walk = (text: string, outer: { token: string; pos: number } | undefined): string | undefined => {
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 37) {
        if (isWs(c)) ws();
        else ops.push(K_LIT, c);
        continue;
      }
      const pos = outer?.pos ?? i + 1;
      let t = text[i + 1];
      if (t === undefined) return `ends with a lone % at character ${pos} (write %% for a literal %)`;
      i++;
      let token = "%" + t;
      if (t === "-") {
        const u = text[i + 1];
        if (u === undefined || !DASH_TOKENS.includes(u)) return `uses %-${u ?? ""} at character ${pos}, which is not supported (supported: ${SUPPORTED})`;
        t = u;
        token = "%-" + u;
        i++;
      }
      if (t === "%") {
        ops.push(K_LIT, 37);
        continue;
      }
      if (t === "n" || t === "t") {
        ws();
        continue;
      }
      const shown = outer?.token ?? token;
      const expansion = Object.hasOwn(TOKEN_EXPANSIONS, t) ? TOKEN_EXPANSIONS[t] : undefined;
      if (expansion !== undefined) {
        const problem = walk(expansion, { token: shown, pos });
        if (problem !== undefined) return problem;
        continue;
      }
      const def = Object.hasOwn(TOKEN_KINDS, t) ? TOKEN_KINDS[t] : undefined;
      if (def === undefined) return `uses ${token} at character ${pos}, which is not supported (supported: ${SUPPORTED})`;
      const [kind, arg, field] = def;
      const here = `${shown} at character ${pos}`;
      if (dateOnly && TIME_KINDS.has(kind)) return `uses ${here}, a time field, but the column is a date (use a timestamp column, or date fields only)`;
      const before = fields.get(field);
      if (before !== undefined) return `sets the ${field} twice (${before} and ${here})`;
      fields.set(field, here);
      kinds.set(kind, here);
      ops.push(kind, arg);
    }
    return undefined;
  };
  const problem = walk(format, undefined);
  if (problem !== undefined) return problem;
  // Values are trimmed before they are read: whitespace at either end of the format matches nothing.
  if (ops[0] === K_WS) ops.splice(0, 2);
  if (ops.length >= 2 && ops[ops.length - 2] === K_WS) ops.length -= 2;

  const epoch = kinds.get(K_EPOCH);
  if (epoch !== undefined) {
    for (const [field, at] of fields) {
      if (field !== "seconds since the epoch" && field !== "fraction")
        return `uses ${epoch} together with ${at}; %s (seconds since the epoch) stands alone (with %f at most)`;
    }
  } else {
    const hour12 = kinds.get(K_I);
    const ampm = kinds.get(K_P);
    if (hour12 !== undefined && ampm === undefined) return `uses ${hour12} (hour 1–12) without %p (AM or PM)`;
    if (ampm !== undefined && hour12 === undefined) {
      const hour24 = kinds.get(K_H);
      return hour24 !== undefined ? `uses ${ampm} with ${hour24} (a 24-hour clock); use %I for hours 1–12` : `uses ${ampm} without %I (hour 1–12)`;
    }
    const doy = kinds.get(K_J);
    if (doy !== undefined && (fields.has("month") || fields.has("day")))
      return `uses ${doy} (day of the year) together with ${fields.get("month") ?? fields.get("day")}`;
    if (!fields.has("year") || (doy === undefined && (!fields.has("month") || !fields.has("day")))) {
      const start = format.includes("%")
        ? ""
        : `has no % fields (write strftime tokens such as %d/%m/%Y${dateOnly ? " or iso" : ", or iso, epoch_s or epoch_ms"}); it `;
      return `${start}must contain a year (%Y or %y) and either a month and a day (%m, %b or %B with %d or %e) or a day of the year (%j)${dateOnly ? "" : ", or else %s alone"}`;
    }
  }
  // A variable-width numeric field right next to another numeric field ("%Y%m%d", "%H%M") must
  // have its full width (2 digits, 3 for %j); elsewhere ("%d/%m/%Y") one digit is fine.
  const numeric = (k: number): boolean => k >= 0 && k < ops.length && NUMERIC_KINDS.has(ops[k]!);
  for (let k = 0; k < ops.length; k += 2) {
    if (SIZED_KINDS.has(ops[k]!) && (numeric(k - 2) || numeric(k + 2))) ops[k + 1] = 1;
  }
  const twelveHour = kinds.has(K_I);
  const dayOfYear = kinds.has(K_J);
  const weekday = kinds.has(K_WDAY);
  return {
    ops: Int32Array.from(ops),
    plain: !twelveHour && !dayOfYear && !weekday && epoch === undefined,
    twelveHour,
    dayOfYear,
    epoch: epoch !== undefined,
    weekday,
    zoned: kinds.has(K_ZN),
    zoneNames: [],
    zoneRefs: [],
  };
}

/** The keyword formats (`iso`, `epoch_s`, `epoch_ms`) or undefined for a strftime pattern. */
function formatKeyword(format: string | undefined): "iso" | "epoch_s" | "epoch_ms" | undefined {
  if (format === undefined) return "iso";
  const kind = format.trim().toLowerCase();
  if (kind === "iso" || kind === "iso8601" || kind === "iso-8601" || kind === "rfc3339") return "iso";
  if (kind === "epoch_s" || kind === "epoch_ms") return kind;
  return undefined;
}

/**
 * What is wrong with a column's `format:`, as the end of a sentence after the format (e.g.
 * `uses %Q at character 4, which is not supported (supported: …)`), or undefined when it is
 * usable. The very check `compileSchema` makes, so `sluice validate` and a run never disagree.
 */
export function formatProblem(format: string, type: "timestamp" | "date"): string | undefined {
  const keyword = formatKeyword(format);
  if (keyword !== undefined) {
    if (type === "date" && keyword !== "iso")
      return `is for timestamps (numbers since the epoch); a date column takes iso or a pattern of date fields such as %d/%m/%Y`;
    if (type === "date" && format.trim().toLowerCase() === "rfc3339")
      return `is for timestamps; a date column takes iso or a pattern of date fields such as %d/%m/%Y`;
    return undefined;
  }
  const pattern = compilePattern(format, type === "date");
  return typeof pattern === "string" ? pattern : undefined;
}

function compileFormat(format: string, dateOnly: boolean, column: string): Pattern {
  const pattern = compilePattern(format, dateOnly);
  if (typeof pattern === "string") throw badConfig(`column ${column}: format ${JSON.stringify(format)} ${pattern}`);
  return pattern;
}

/** Reads 1–2 digits (greedy) at i into `num2`; returns the end or -1. */
let num2 = 0;
function read12(s: string, i: number): number {
  const n = s.length;
  if (i >= n || !isDigit(s.charCodeAt(i))) return -1;
  let v = s.charCodeAt(i) - 48;
  i++;
  if (i < n && isDigit(s.charCodeAt(i))) {
    v = v * 10 + (s.charCodeAt(i) - 48);
    i++;
  }
  num2 = v;
  return i;
}

// Names, lower case; index 0 = January, Monday. A name is found by its first three letters.
const MONTH_NAMES = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"];
const WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const WEEKDAY_LOWER = WEEKDAY_NAMES.map((w) => w.toLowerCase());
/** Three lower-case letters → 1 + index of the name they begin (0 = none): a flat table, no hashing. */
function nameTable(names: string[]): Uint8Array {
  const table = new Uint8Array(26 * 26 * 26);
  names.forEach((name, k) => (table[(name.charCodeAt(0) - 97) * 676 + (name.charCodeAt(1) - 97) * 26 + (name.charCodeAt(2) - 97)] = k + 1));
  return table;
}
const MONTH_TABLE = nameTable(MONTH_NAMES);
const WEEKDAY_TABLE = nameTable(WEEKDAY_LOWER);

/** Index of the name (by its first three letters, any case) at i, or -1. */
function nameAt(s: string, i: number, table: Uint8Array): number {
  if (i + 3 > s.length) return -1;
  const a = (s.charCodeAt(i) | 32) - 97;
  const b = (s.charCodeAt(i + 1) | 32) - 97;
  const c = (s.charCodeAt(i + 2) | 32) - 97;
  if (a < 0 || a > 25 || b < 0 || b > 25 || c < 0 || c > 25) return -1;
  return table[a * 676 + b * 26 + c]! - 1;
}

/** The end of the rest of a full name (letters 4…) at i, or -1. */
function restOfName(s: string, i: number, name: string): number {
  const n = name.length;
  if (i + n > s.length) return -1;
  for (let k = 3; k < n; k++) if ((s.charCodeAt(i + k) | 32) !== name.charCodeAt(k)) return -1;
  return i + n;
}

/** A zone name's characters: letters, digits, "/", "_", "-", "+". */
function isZoneChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 47 && c <= 57) || c === 95 || c === 45 || c === 43;
}

// More scratch fields for patterns.
let fdoy = 0;
/** Weekday named in the value (0 = Monday). */
let fwd = 0;
let fpm = 0;
let fzone: ZoneRef | undefined;
let fepoch = 0;
let fneg = false;
/** Why a %Z value was refused (when parsePatternFields returns it). */
let fzoneWhy = "";

/** Reads a zone name at i into fzone; returns the end, -1 (no name) or -2 (fzoneWhy says why). */
function readZoneName(s: string, i: number, p: Pattern): number {
  const n = s.length;
  let j = i;
  while (j < n && isZoneChar(s.charCodeAt(j))) j++;
  if (j === i) return -1;
  const names = p.zoneNames;
  for (let z = 0; z < names.length; z++) {
    const name = names[z]!;
    if (name.length === j - i && s.startsWith(name, i)) {
      fzone = p.zoneRefs[z];
      return j;
    }
  }
  // The first value of this column in this zone.
  const text = s.slice(i, j);
  const ref = valueZone(text);
  if (typeof ref === "string") {
    fzoneWhy = ref;
    return -2;
  }
  if (names.length < 32) {
    names.push(text);
    p.zoneRefs.push(ref);
  }
  fzone = ref;
  return j;
}

/** Weekday of a civil date, 0 = Monday (1970-01-01 was a Thursday). */
function weekdayOf(y: number, m: number, d: number): number {
  return (((daysFromCivil(y, m, d) + 3) % 7) + 7) % 7;
}

/**
 * Parses `s` with a compiled pattern into the scratch fields; same result convention as
 * parseIsoFields. The loop handles the common fields itself; names, %e, %j, %p, %Z and %s go
 * through `readOtherField`, their checks through `finishPattern`. `ops` is passed apart from
 * its Pattern: loading it from `p.ops` here measured 10–15% slower on "%d/%m/%Y %H:%M:%S".
 */
function parsePatternFields(s: string, ops: Int32Array, p: Pattern): string | undefined {
  fh = 0;
  fmi = 0;
  fs = 0;
  fmicro = 0;
  foff = NaN;
  const n = s.length;
  let i = 0;
  for (let k = 0; k < ops.length; k += 2) {
    const kind = ops[k]!;
    switch (kind) {
      case K_LIT:
        if (i >= n || s.charCodeAt(i) !== ops[k + 1]) return "";
        i++;
        break;
      case K_Y: {
        if (i + 4 > n) return "";
        const a = d2(s, i);
        const b = d2(s, i + 2);
        if (a < 0 || b < 0) return "";
        fy = a * 100 + b;
        i += 4;
        break;
      }
      case K_F:
        i = readFraction(s, i);
        if (i < 0) return "";
        break;
      case K_Z:
        if (i >= n) return "";
        i = readOffset(s, i);
        if (i < 0) return "";
        break;
      case K_WS:
        if (i >= n || !isWs(s.charCodeAt(i))) return "";
        i++;
        while (i < n && isWs(s.charCodeAt(i))) i++;
        break;
      default: {
        if (kind > K_Y2) {
          i = readOtherField(s, i, kind, ops[k + 1]!, p);
          if (i < 0) return i === -2 ? fzoneWhy : "";
          break;
        }
        // 1–2 digits; exactly 2 when marked (next to another numeric field).
        const from = i;
        i = read12(s, i);
        if (i < 0 || (ops[k + 1] === 1 && i - from !== 2)) return "";
        if (kind === K_MO) fmo = num2;
        else if (kind === K_D) fd = num2;
        else if (kind === K_H) fh = num2;
        else if (kind === K_MI) fmi = num2;
        else if (kind === K_S) fs = num2;
        else if (kind === K_I) fh = num2;
        else fy = num2 < 69 ? 2000 + num2 : 1900 + num2; // %y, POSIX: 69–99 → 19xx, 00–68 → 20xx
      }
    }
  }
  if (i !== n) return "";
  return p.plain ? checkCalendar() : finishPattern(p);
}

/** Reads a name, %e, %j, %p, %Z or %s field at i; returns the end, -1 (no match) or -2 (fzoneWhy says why). */
function readOtherField(s: string, i: number, kind: number, arg: number, p: Pattern): number {
  const n = s.length;
  switch (kind) {
    case K_E: {
      // A space-padded day (" 5") counts its space as the first of two characters.
      const from = i;
      if (i < n && s.charCodeAt(i) === 32) i++;
      i = read12(s, i);
      if (i < 0 || (arg === 1 && i - from !== 2)) return -1;
      fd = num2;
      return i;
    }
    case K_MON: {
      const m = nameAt(s, i, MONTH_TABLE);
      if (m < 0) return -1;
      fmo = m + 1;
      if (arg === 1) return restOfName(s, i, MONTH_NAMES[m]!);
      return i + (m === 8 && (s.charCodeAt(i + 3) | 32) === 116 ? 4 : 3); // "Sept"
    }
    case K_P: {
      const c = s.charCodeAt(i) | 32;
      if (c !== 97 && c !== 112) return -1;
      fpm = c === 112 ? 1 : 0;
      if ((s.charCodeAt(i + 1) | 32) === 109) return i + 2; // AM, pm
      if (s.charCodeAt(i + 1) === 46 && (s.charCodeAt(i + 2) | 32) === 109 && s.charCodeAt(i + 3) === 46) return i + 4; // a.m.
      return -1;
    }
    case K_WDAY: {
      const w = nameAt(s, i, WEEKDAY_TABLE);
      if (w < 0) return -1;
      fwd = w;
      return arg === 1 ? restOfName(s, i, WEEKDAY_LOWER[w]!) : i + 3;
    }
    case K_ZN:
      return readZoneName(s, i, p);
    case K_EPOCH: {
      fneg = false;
      const c = s.charCodeAt(i);
      if (c === 45 || c === 43) {
        fneg = c === 45;
        i++;
      }
      const from = i;
      let v = 0;
      while (i < n && isDigit(s.charCodeAt(i))) {
        v = v * 10 + (s.charCodeAt(i) - 48);
        i++;
      }
      if (i === from || i - from > 12) return -1;
      fepoch = v;
      return i;
    }
    case K_J: {
      const from = i;
      let v = 0;
      while (i < n && i - from < 3 && isDigit(s.charCodeAt(i))) {
        v = v * 10 + (s.charCodeAt(i) - 48);
        i++;
      }
      if (i === from || (arg === 1 && i - from !== 3)) return -1;
      fdoy = v;
      return i;
    }
    default:
      return -1;
  }
}

/** The checks after reading a pattern with %I/%p, %j, a weekday or %s. */
function finishPattern(p: Pattern): string | undefined {
  if (p.epoch) return undefined;
  if (p.twelveHour) {
    if (fh < 1 || fh > 12) return `hour ${fh} on a 12-hour clock`;
    fh = fh === 12 ? fpm * 12 : fh + fpm * 12; // 12 AM is midnight, 12 PM noon
  }
  if (p.dayOfYear) {
    if (fdoy < 1 || fdoy > (isLeap(fy) ? 366 : 365)) return `${pad4(fy)} has no day ${fdoy}`;
    civilFromDays(daysFromCivil(fy, 1, 1) + fdoy - 1);
    fmo = cm;
    fd = cd;
  }
  const problem = checkCalendar();
  if (problem !== undefined) return problem;
  if (p.weekday) {
    const wd = weekdayOf(fy, fmo, fd);
    if (wd !== fwd) return `${dateText()} is a ${WEEKDAY_NAMES[wd]}, not a ${WEEKDAY_NAMES[fwd]}`;
  }
  return undefined;
}

/** The UTC text of a parsed %s[.%f] value. */
function epochFieldsToUtc(): string | Invalid {
  let sec = fneg ? -fepoch : fepoch;
  let micro = fmicro;
  if (fneg && micro > 0) {
    sec -= 1;
    micro = 1_000_000 - micro;
  }
  return formatUtc(sec, micro) ?? new Invalid("is not a valid timestamp (outside the years 0000–9999)");
}

// Epoch numbers.
const EPOCH_MIN_SEC = MIN_SEC;
const EPOCH_MAX_SEC = MAX_SEC;

function parseEpoch(text: string, millis: boolean): TypedValue | Invalid {
  const shape = millis ? "expected milliseconds since 1970-01-01T00:00:00Z" : "expected seconds since 1970-01-01T00:00:00Z";
  const n = text.length;
  let i = 0;
  let neg = false;
  if (text.charCodeAt(0) === 45) {
    neg = true;
    i = 1;
  } else if (text.charCodeAt(0) === 43) i = 1;
  let whole = 0;
  const start = i;
  while (i < n && isDigit(text.charCodeAt(i))) {
    whole = whole * 10 + (text.charCodeAt(i) - 48);
    i++;
  }
  if (i === start || i - start > 16) return invalidTimestamp(i === start ? "" : "out of range", shape);
  // Fraction: up to 6 digits of seconds (epoch_s) or 3 digits of milliseconds (epoch_ms) are kept.
  let frac = 0;
  let fracDigits = 0;
  const keep = millis ? 3 : 6;
  if (i < n && text.charCodeAt(i) === 46) {
    i++;
    const fstart = i;
    while (i < n && isDigit(text.charCodeAt(i))) {
      if (fracDigits < keep) {
        frac = frac * 10 + (text.charCodeAt(i) - 48);
        fracDigits++;
      }
      i++;
    }
    if (i === fstart) return invalidTimestamp("", shape);
  }
  if (i !== n) return invalidTimestamp("", shape);
  for (; fracDigits < keep; fracDigits++) frac *= 10;
  // Total microseconds as (seconds, micros) without floating error.
  let sec: number;
  let micro: number;
  if (millis) {
    sec = Math.floor(whole / 1000);
    micro = (whole - sec * 1000) * 1000 + frac;
  } else {
    sec = whole;
    micro = frac;
  }
  if (neg) {
    // -(sec + micro/1e6) = -(sec + 1) + (1e6 - micro)/1e6
    if (micro === 0) sec = -sec;
    else {
      sec = -sec - 1;
      micro = 1_000_000 - micro;
    }
  }
  if (sec < EPOCH_MIN_SEC || sec > EPOCH_MAX_SEC) return invalidTimestamp("outside the years 0000–9999", shape);
  return formatUtc(sec, micro)!;
}

function fromDate(v: Date): TypedValue | Invalid {
  const ms = v.getTime();
  if (Number.isNaN(ms)) return new Invalid("is not a valid timestamp (an invalid Date)");
  const sec = Math.floor(ms / 1000);
  const out = formatUtc(sec, (ms - sec * 1000) * 1000);
  return out === undefined ? new Invalid("is not a valid timestamp (outside the years 0000–9999)") : out;
}

function makeTimestampParser(format: string | undefined, zone: ZoneRef, column: string): ValueParser {
  const kind = formatKeyword(format);
  if (kind === "epoch_ms" || kind === "epoch_s") {
    const millis = kind === "epoch_ms";
    return (v) => {
      if (typeof v === "string") return parseEpoch(trimIfNeeded(v), millis);
      if (typeof v === "number") return Number.isFinite(v) ? parseEpoch(String(v), millis) : new Invalid("is not a valid timestamp");
      if (typeof v === "bigint") return parseEpoch(String(v), millis);
      if (v instanceof Date) return fromDate(v);
      return new Invalid("is not a valid timestamp");
    };
  }
  const notString = (v: unknown, shape: string): Invalid => {
    if (typeof v === "number" || typeof v === "bigint") return new Invalid("is not a valid timestamp (a number; set format: epoch_s or epoch_ms)", false);
    return new Invalid(`is not a valid timestamp (${shape})`);
  };
  // ISO keeps a closure of its own, as small as before patterns grew: with the pattern code in
  // the same closure, converting 1M canonical ISO values measured ~10% slower (105 → 115 ms).
  if (kind === "iso") {
    return (v) => {
      if (typeof v === "string") return parseIsoTimestamp(trimIfNeeded(v), zone);
      if (v instanceof Date) return fromDate(v);
      return notString(v, ISO_SHAPE);
    };
  }
  const pattern = compileFormat(format!, false, column);
  const shape = `expected format ${format}`;
  return (v) => {
    if (typeof v === "string") {
      const problem = parsePatternFields(trimIfNeeded(v), pattern.ops, pattern);
      if (problem !== undefined) return invalidTimestamp(problem, shape);
      return pattern.epoch ? epochFieldsToUtc() : fieldsToUtc(pattern.zoned ? fzone! : zone);
    }
    if (v instanceof Date) return fromDate(v);
    if (pattern.epoch && (typeof v === "bigint" || (typeof v === "number" && Number.isFinite(v)))) {
      const problem = parsePatternFields(String(v), pattern.ops, pattern);
      return problem !== undefined ? invalidTimestamp(problem, shape) : epochFieldsToUtc();
    }
    return notString(v, shape);
  };
}

function makeDateParser(format: string | undefined, column: string): ValueParser {
  const problem = format === undefined ? undefined : formatProblem(format, "date");
  if (problem !== undefined) throw badConfig(`column ${column}: format ${JSON.stringify(format)} ${problem}`);
  const pattern = formatKeyword(format) === "iso" ? undefined : compileFormat(format!, true, column);
  return (v) => {
    if (typeof v === "string") {
      const s = trimIfNeeded(v);
      if (pattern === undefined) return parseIsoDate(s);
      const problem = parsePatternFields(s, pattern.ops, pattern);
      if (problem !== undefined) return new Invalid(`is not a valid date (${problem === "" ? `expected format ${format}` : problem})`);
      return dateText();
    }
    if (v instanceof Date) {
      const ms = v.getTime();
      if (Number.isNaN(ms) || ms % 86_400_000 !== 0) return new Invalid("is not a valid date (not a UTC midnight)");
      const out = fromDate(v);
      return typeof out === "string" ? out.slice(0, 10) : out;
    }
    return new Invalid("is not a valid date (expected YYYY-MM-DD)");
  };
}

// ---------------------------------------------------------------------------------------------
// Public: value parsers and schema compilation

/**
 * A parser for one column type, compiled once (time zone, format). Handles non-empty values;
 * surrounding whitespace is ignored for every type but `string`. Throws BAD_CONFIG for a
 * format, scale or time zone that cannot apply.
 */
export function compileValueParser(spec: ValueParserSpec): ValueParser {
  const column = spec.name ?? "(value)";
  if (spec.scale !== undefined && spec.type !== "decimal") throw badConfig(`column ${column}: scale applies only to decimal columns, not ${spec.type}`);
  if (spec.format !== undefined && spec.type !== "timestamp" && spec.type !== "date") {
    throw badConfig(`column ${column}: format applies only to timestamp and date columns, not ${spec.type}`);
  }
  if (spec.scale !== undefined && (!Number.isInteger(spec.scale) || spec.scale < 0 || spec.scale > MAX_PRECISION)) {
    throw badConfig(`column ${column}: scale ${spec.scale} must be an integer from 0 to ${MAX_PRECISION}`);
  }
  const zone = resolveZone(spec.timezone, column);
  switch (spec.type) {
    case "string":
      return parseStringValue;
    case "integer":
      return parseIntegerValue;
    case "decimal":
      return makeDecimalParser(spec.scale);
    case "boolean":
      return parseBooleanValue;
    case "timestamp":
      return makeTimestampParser(spec.format, zone, column);
    case "date":
      return makeDateParser(spec.format, column);
    default:
      throw badConfig(`column ${column}: unknown type ${String(spec.type)}`);
  }
}

interface CompiledColumn {
  name: string;
  from: string;
  parse: ValueParser;
  /** The output is the raw string itself (string columns), so it is checked for NUL. */
  stringType: boolean;
  /** Trim strings before anything else (string columns with trim: true, and every non-string type). */
  trim: boolean;
  /** Whether "" (after trim) is empty: always, except in a string column whose nullValues lack "". */
  emptyIsNull: boolean;
  /** The other null markers (trimmed when the column trims), besides "". */
  markers: string[];
  markerSet: Set<string>;
  /** The typed default, undefined when none is declared. */
  fallback: TypedValue | undefined;
  required: boolean;
  requiredReason: string;
  nulReason: string;
}

const DEFAULT_NULL_VALUES: readonly string[] = [""];
/** Up to this many markers are compared inline (`v === "NA" || …`); more go through a Set. */
const INLINE_MARKERS = 8;

/** What a column default needs to be typed: its column's type, scale, format, zone and trim. */
export interface DefaultSpec {
  type?: ColumnTypeName | undefined;
  scale?: number | undefined;
  format?: string | undefined;
  timezone?: string | undefined;
  trim?: boolean | undefined;
  default?: string | number | boolean | undefined;
}

/**
 * A column's `default` typed like any value of the column (or why it does not fit), given a
 * parser already compiled for the column; `sluice validate` and `compileSchema` both ask this.
 */
export function typeDefault(spec: DefaultSpec, parse?: ValueParser): TypedValue | Invalid | undefined {
  const value = spec.default;
  if (value === undefined) return undefined;
  const type = spec.type ?? "string";
  const p = parse ?? compileValueParser({ type, scale: spec.scale, format: spec.format, timezone: spec.timezone });
  const v = typeof value === "string" && type === "string" && spec.trim ? value.trim() : value;
  if (typeof v === "string" && v.indexOf("\u0000") !== -1) return new Invalid(NUL_WHY);
  return p(v);
}

const NUL_WHY = "contains a NUL character (U+0000), which databases cannot store";

/** Compiles a target schema (as validated by `TargetSchema`) into a fast row converter. */
export function compileSchema(schema: TargetSchemaSpec): CompiledSchema {
  const specs: ColumnSpec[] = schema.columns;
  if (specs.length === 0) throw badConfig("the target schema has no columns");
  const names = new Set<string>();
  const keys = new Set(schema.key ?? []);
  const compiled: CompiledColumn[] = [];
  const columns: Column[] = [];
  for (const spec of specs) {
    const name = spec.name;
    const type: ColumnTypeName = spec.type ?? "string";
    if (name === "__proto__") throw badConfig(`column name "__proto__" is not allowed`);
    if (names.has(name)) throw badConfig(`column ${name} is declared twice in the target schema`);
    names.add(name);
    const parse = compileValueParser({ type, scale: spec.scale, format: spec.format, timezone: spec.timezone, name });
    const fallback = typeDefault({ ...spec, type }, parse);
    if (fallback instanceof Invalid) throw badConfig(`column ${name}: default ${describeInvalid("", spec.default, fallback).slice(2)}`);
    const stringType = type === "string";
    const trim = !stringType || spec.trim === true;
    const isKey = keys.has(name);
    // A key column and a non-string column have no empty value: "" is empty there whatever the list.
    let emptyIsNull = !stringType || isKey;
    const markers = new Set<string>();
    for (const raw of spec.nullValues ?? schema.nullValues ?? DEFAULT_NULL_VALUES) {
      const m = trim ? raw.trim() : raw;
      if (m.length === 0) emptyIsNull = true;
      else markers.add(m);
    }
    compiled.push({
      name,
      from: spec.from ?? name,
      parse,
      stringType,
      trim,
      emptyIsNull,
      markers: [...markers],
      markerSet: markers,
      fallback,
      required: isKey || spec.required === true,
      requiredReason: isKey ? `${name}: required (key column) but empty` : `${name}: required but empty`,
      nulReason: `${name}: ${NUL_WHY}`,
    });
    columns.push(type === "decimal" && spec.scale !== undefined ? { name, type, scale: spec.scale } : { name, type });
  }
  for (const k of keys) {
    if (!names.has(k)) throw badConfig(`key column ${k} is not in the target schema (columns: ${[...names].join(", ")})`);
  }
  const convert = generateConverter(compiled);
  const key = schema.key;
  return { columns, key: key === undefined ? undefined : [...key], convert };
}

type Converter = CompiledSchema["convert"];

/**
 * Generates the row converter as straight-line code, one block per column: constant property
 * names (monomorphic property loads), one call site per column parser, and the output row as an
 * object literal, so every row shares one hidden class. Only JSON-quoted names reach the code.
 * With the default null markers ([""]) a column's block is what it was before markers existed
 * (one `length === 0` test); each further marker adds one string comparison, inline (1M integer
 * values, a fifth of them empty: 29 ms; with five markers, a fifth of them "NA": 31 ms).
 */
function generateConverter(columns: CompiledColumn[]): Converter {
  const lines: string[] = ["let reasons;"];
  columns.forEach((col, i) => {
    const from = JSON.stringify(col.from);
    // A name like "constructor" would read Object.prototype's member when the key is missing.
    lines.push(col.from in Object.prototype ? `let v${i} = Object.hasOwn(raw, ${from}) ? raw[${from}] : undefined;` : `let v${i} = raw[${from}];`);
    lines.push(`let o${i} = null;`);
    lines.push(`if (typeof v${i} === "string") {`);
    if (col.trim) lines.push(`  v${i} = trim(v${i});`);
    const empty: string[] = col.emptyIsNull ? [`v${i}.length === 0`] : [];
    if (col.markers.length > INLINE_MARKERS) empty.push(`c[${i}].markerSet.has(v${i})`);
    else for (const m of col.markers) empty.push(`v${i} === ${JSON.stringify(m)}`);
    if (empty.length > 0) {
      lines.push(`  if (${empty.join(" || ")}) v${i} = undefined;`);
      if (col.stringType) lines.push(`  else o${i} = v${i};`);
    } else if (col.stringType) lines.push(`  o${i} = v${i};`);
    lines.push(`}`);
    lines.push(`if (v${i} === undefined || v${i} === null) {`);
    if (col.fallback !== undefined) lines.push(`  o${i} = c[${i}].fallback;`);
    else if (col.required) lines.push(`  (reasons ??= []).push(c[${i}].requiredReason);`);
    lines.push(`} else${col.stringType ? ` if (o${i} === null)` : ""} {`);
    lines.push(`  const t = p${i}(v${i});`);
    lines.push(`  if (t instanceof Invalid) (reasons ??= []).push(describe(${JSON.stringify(col.name)}, v${i}, t));`);
    lines.push(`  else o${i} = t;`);
    lines.push(`}`);
    // PostgreSQL refuses U+0000 in text; it is almost always a corrupt file. indexOf is the
    // cheapest scan measured (a charCodeAt loop is 6× slower on 60 characters, a regex 1.3×):
    // 1M string values 9 → 11 ms (5 characters), 10 → 17 ms (60 characters).
    if (col.stringType) lines.push(`else if (o${i}.indexOf("\\u0000") !== -1) (reasons ??= []).push(c[${i}].nulReason);`);
  });
  lines.push(`if (reasons !== undefined) return { ok: false, reasons };`);
  lines.push(`return { ok: true, row: { ${columns.map((col, i) => `${JSON.stringify(col.name)}: o${i}`).join(", ")} } };`);
  const params = ["c", "Invalid", "trim", "describe", ...columns.map((_, i) => `p${i}`)];
  const body = `return function convert(raw) {\n${lines.join("\n")}\n};`;
  const factory = new Function(...params, body) as (...args: unknown[]) => Converter;
  return factory(columns, Invalid, trimIfNeeded, describeInvalid, ...columns.map((c) => c.parse));
}

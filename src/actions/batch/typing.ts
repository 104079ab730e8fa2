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
 * `SluiceError("BAD_CONFIG")` from `compileSchema`.
 *
 * Empty values: a missing key, null, undefined or "" (after `trim` for strings; for the other
 * types a whitespace-only string too) takes the column's `default` (typed like any value, once,
 * at compile time), else is a reason when `required` (`trade_id: required but empty`), else null.
 * A string column without `trim` keeps "   " as it is.
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
 *   - a strftime-like pattern with the tokens %Y (4 digits) %m %d %H %M %S (1–2 digits;
 *     exactly 2 when next to another numeric field, as in %Y%m%d) %f (1–9 fraction digits)
 *     %z (Z, ±hh:mm, ±hhmm, ±hh) and %% (a literal "%");
 *     any other character must match itself. %Y %m %d are required.
 *   Output: UTC `YYYY-MM-DDTHH:MM:SS.sssZ`, six fraction digits when the (truncated) value has
 *   a non-zero sub-millisecond part, so one instant has exactly one text (keys, uniqueness).
 *   Calendar-validated: month 1–12, day within the month (Feb 29 on leap years only),
 *   hour 0–23, minute and second 0–59 (no leap seconds), UTC years 0000–9999.
 * - date: `YYYY-MM-DD` (or `format` with %Y %m %d and literals), calendar-validated; a value
 *   with a time of day is a reason, never truncated. JS Dates at UTC midnight.
 */
import { SluiceError } from "../../errors.js";
import type { Column, ColumnTypeName, TargetSchemaSpec, TypedRow, TypedValue } from "./model.js";

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
  return c <= 32 || (c >= 0xa0 && (c === 0xa0 || c === 0xfeff || c === 0x3000 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x1680));
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
      return new Invalid(c === 44 ? "is not a valid decimal (use \".\" as the decimal point, no thousands separators)" : "is not a valid decimal");
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

function daysFromCivil(y: number, m: number, d: number): number {
  if (m <= 2) y -= 1;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

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

const zones = new Map<string, ZoneRef>();
const FIXED_ZONE = /^(?:UTC|GMT)?([+-])(\d{2}):?(\d{2})?$/;

function resolveZone(name: string | undefined, column: string): ZoneRef {
  if (name === undefined) return 0;
  const known = zones.get(name);
  if (known !== undefined) return known;
  let ref: ZoneRef;
  const fixed = FIXED_ZONE.exec(name);
  if (/^(?:UTC|GMT|Z|Etc\/UTC|Etc\/GMT)$/i.test(name)) ref = 0;
  else if (fixed) {
    const hh = Number(fixed[2]);
    const mm = Number(fixed[3] ?? "0");
    if (hh > 23 || mm > 59) throw badConfig(`column ${column}: time zone "${name}" is not a valid offset`);
    ref = (fixed[1] === "-" ? -1 : 1) * (hh * 3600 + mm * 60);
  } else {
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
      throw badConfig(`column ${column}: time zone "${name}" does not exist (use an IANA name such as America/New_York, or UTC)`);
    }
    const resolved = dtf.resolvedOptions().timeZone;
    ref = resolved === "UTC" || resolved === "Etc/UTC" || resolved === "Etc/GMT" ? 0 : new Zone(dtf);
  }
  zones.set(name, ref);
  return ref;
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

// strftime-like patterns, compiled to (kind, argument) pairs.
const K_LIT = 0;
const K_Y = 1;
const K_MO = 2;
const K_D = 3;
const K_H = 4;
const K_MI = 5;
const K_S = 6;
const K_F = 7;
const K_Z = 8;
const TOKENS: Record<string, number> = { Y: K_Y, m: K_MO, d: K_D, H: K_H, M: K_MI, S: K_S, f: K_F, z: K_Z };
const SUPPORTED = "%Y %m %d %H %M %S %f %z %%";

function compilePattern(format: string, column: string, dateOnly: boolean): Int32Array {
  const ops: number[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < format.length; i++) {
    const ch = format[i]!;
    if (ch !== "%") {
      ops.push(K_LIT, format.charCodeAt(i));
      continue;
    }
    const t = format[++i];
    if (t === "%") {
      ops.push(K_LIT, 37);
      continue;
    }
    const kind = t === undefined ? undefined : TOKENS[t];
    if (kind === undefined) throw badConfig(`column ${column}: format "${format}" uses %${t ?? ""}, which is not supported (supported: ${SUPPORTED})`);
    if (dateOnly && kind >= K_H) throw badConfig(`column ${column}: format "${format}" has a time of day (%${t}) but the column is a date; use %Y %m %d only`);
    if (seen.has(kind)) throw badConfig(`column ${column}: format "${format}" uses %${t} twice`);
    seen.add(kind);
    ops.push(kind, 0);
  }
  if (!seen.has(K_Y) || !seen.has(K_MO) || !seen.has(K_D)) throw badConfig(`column ${column}: format "${format}" must contain %Y, %m and %d`);
  // A 1–2 digit field right next to another numeric field ("%Y%m%d") must have exactly 2
  // digits; elsewhere ("%d/%m/%Y") one digit is fine.
  const numeric = (k: number): boolean => k >= 0 && k < ops.length && ops[k] !== K_LIT && ops[k] !== K_Z;
  for (let k = 0; k < ops.length; k += 2) {
    if (ops[k]! >= K_MO && ops[k]! <= K_S && (numeric(k - 2) || numeric(k + 2))) ops[k + 1] = 1;
  }
  return Int32Array.from(ops);
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

/** Parses `s` with a compiled pattern into the scratch fields; same result convention as parseIsoFields. */
function parsePatternFields(s: string, ops: Int32Array): string | undefined {
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
      default: {
        const from = i;
        i = read12(s, i);
        if (i < 0 || (ops[k + 1] === 1 && i - from !== 2)) return "";
        if (kind === K_MO) fmo = num2;
        else if (kind === K_D) fd = num2;
        else if (kind === K_H) fh = num2;
        else if (kind === K_MI) fmi = num2;
        else fs = num2;
      }
    }
  }
  if (i !== n) return "";
  return checkCalendar();
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
  const kind = format === undefined ? "iso" : format.trim().toLowerCase();
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
  const iso = kind === "iso" || kind === "iso8601" || kind === "iso-8601" || kind === "rfc3339";
  const ops = iso ? undefined : compilePattern(format!, column, false);
  const shape = iso ? ISO_SHAPE : `expected format ${format}`;
  return (v) => {
    if (typeof v === "string") {
      const s = trimIfNeeded(v);
      if (ops === undefined) return parseIsoTimestamp(s, zone);
      const problem = parsePatternFields(s, ops);
      return problem !== undefined ? invalidTimestamp(problem, shape) : fieldsToUtc(zone);
    }
    if (v instanceof Date) return fromDate(v);
    if (typeof v === "number" || typeof v === "bigint") return new Invalid("is not a valid timestamp (a number; set format: epoch_s or epoch_ms)", false);
    return new Invalid(`is not a valid timestamp (${shape})`);
  };
}

function makeDateParser(format: string | undefined, column: string): ValueParser {
  const kind = format === undefined ? "iso" : format.trim().toLowerCase();
  const iso = kind === "iso" || kind === "iso8601" || kind === "iso-8601";
  const ops = iso ? undefined : compilePattern(format!, column, true);
  return (v) => {
    if (typeof v === "string") {
      const s = trimIfNeeded(v);
      if (ops === undefined) return parseIsoDate(s);
      const problem = parsePatternFields(s, ops);
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
  /** Trim strings before anything else (string columns with trim: true, and every non-string type). */
  trim: boolean;
  /** The typed default, undefined when none is declared. */
  fallback: TypedValue | undefined;
  required: boolean;
  requiredReason: string;
}

/** Compiles a target schema (as validated by `TargetSchema`) into a fast row converter. */
export function compileSchema(schema: TargetSchemaSpec): CompiledSchema {
  const specs: ColumnSpec[] = schema.columns;
  if (specs.length === 0) throw badConfig("the target schema has no columns");
  const names = new Set<string>();
  const compiled: CompiledColumn[] = [];
  const columns: Column[] = [];
  for (const spec of specs) {
    const name = spec.name;
    const type: ColumnTypeName = spec.type ?? "string";
    if (name === "__proto__") throw badConfig(`column name "__proto__" is not allowed`);
    if (names.has(name)) throw badConfig(`column ${name} is declared twice in the target schema`);
    names.add(name);
    const parse = compileValueParser({ type, scale: spec.scale, format: spec.format, timezone: spec.timezone, name });
    let fallback: TypedValue | undefined;
    if (spec.default !== undefined) {
      const typed = parse(typeof spec.default === "string" && type === "string" && spec.trim ? spec.default.trim() : spec.default);
      if (typed instanceof Invalid) throw badConfig(`column ${name}: default ${describeInvalid("", spec.default, typed).slice(2)}`);
      fallback = typed;
    }
    compiled.push({
      name,
      from: spec.from ?? name,
      parse,
      trim: type !== "string" || spec.trim === true,
      fallback,
      required: spec.required === true,
      requiredReason: `${name}: required but empty`,
    });
    columns.push(type === "decimal" && spec.scale !== undefined ? { name, type, scale: spec.scale } : { name, type });
  }
  const key = schema.key;
  if (key !== undefined) {
    for (const k of key) {
      if (!names.has(k)) throw badConfig(`key column ${k} is not in the target schema (columns: ${[...names].join(", ")})`);
    }
  }
  const convert = generateConverter(compiled);
  return { columns, key: key === undefined ? undefined : [...key], convert };
}

type Converter = CompiledSchema["convert"];

/**
 * Generates the row converter as straight-line code, one block per column: constant property
 * names (monomorphic property loads), one call site per column parser, and the output row as an
 * object literal, so every row shares one hidden class. Only JSON-quoted names reach the code.
 */
function generateConverter(columns: CompiledColumn[]): Converter {
  const lines: string[] = ["let reasons;"];
  columns.forEach((col, i) => {
    const stringType = col.parse === parseStringValue;
    const from = JSON.stringify(col.from);
    // A name like "constructor" would read Object.prototype's member when the key is missing.
    lines.push(col.from in Object.prototype ? `let v${i} = Object.hasOwn(raw, ${from}) ? raw[${from}] : undefined;` : `let v${i} = raw[${from}];`);
    lines.push(`let o${i} = null;`);
    lines.push(`if (typeof v${i} === "string") {`);
    if (col.trim) lines.push(`  v${i} = trim(v${i});`);
    lines.push(`  if (v${i}.length === 0) v${i} = undefined;`);
    if (stringType) lines.push(`  else o${i} = v${i};`);
    lines.push(`}`);
    lines.push(`if (v${i} === undefined || v${i} === null) {`);
    if (col.fallback !== undefined) lines.push(`  o${i} = c[${i}].fallback;`);
    else if (col.required) lines.push(`  (reasons ??= []).push(c[${i}].requiredReason);`);
    lines.push(`} else${stringType ? ` if (o${i} === null)` : ""} {`);
    lines.push(`  const t = p${i}(v${i});`);
    lines.push(`  if (t instanceof Invalid) (reasons ??= []).push(describe(${JSON.stringify(col.name)}, v${i}, t));`);
    lines.push(`  else o${i} = t;`);
    lines.push(`}`);
  });
  lines.push(`if (reasons !== undefined) return { ok: false, reasons };`);
  lines.push(`return { ok: true, row: { ${columns.map((col, i) => `${JSON.stringify(col.name)}: o${i}`).join(", ")} } };`);
  const params = ["c", "Invalid", "trim", "describe", ...columns.map((_, i) => `p${i}`)];
  const body = `return function convert(raw) {\n${lines.join("\n")}\n};`;
  const factory = new Function(...params, body) as (...args: unknown[]) => Converter;
  return factory(columns, Invalid, trimIfNeeded, describeInvalid, ...columns.map((c) => c.parse));
}

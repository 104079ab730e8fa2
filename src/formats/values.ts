/**
 * Exact text for the typed values of binary formats (Parquet, Arrow), shared by their readers
 * and the Parquet writer.
 *
 * WHY text: Sluice's typed values are JSON-safe and exact (see actions/batch/model.ts): a 64-bit
 * integer or a DECIMAL(38, s) does not fit a JS number, and a JS Date holds milliseconds only, so
 * readers that hand out numbers and Dates (hyparquet's defaults, Arrow's `get()`) round values
 * silently. Here integers and decimals become canonical decimal text computed from the exact
 * integer (BigInt where a number cannot hold it), instants become the canonical UTC text the
 * typing layer produces and accepts — `YYYY-MM-DDTHH:MM:SS.sssZ`, six fraction digits when the
 * sub-millisecond part is not zero, nanoseconds truncated (floored) to microseconds, as
 * actions/batch/typing.ts does — and dates `YYYY-MM-DD`.
 *
 * Calendar arithmetic is Howard Hinnant's days-from-civil algorithm over plain numbers: no Date
 * objects and no string parsing, so a column of timestamps costs one small string per value.
 */

const MICROS_PER_DAY = 86_400_000_000;
const MILLIS_PER_DAY = 86_400_000;
const TWO_53 = 2 ** 53;
const BIG_MICROS_PER_DAY = 86_400_000_000n;
const BIG_SAFE = 2n ** 53n;

/** "00".."99", so formatting a field is one array read. */
const D2: readonly string[] = Array.from({ length: 100 }, (_, i) => (i < 10 ? `0${i}` : String(i)));

/** Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** `YYYY-MM-DD` of a day count since 1970-01-01 (years outside 0..9999 as ±YYYYYY, like toISOString). */
export function dateText(days: number): string {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return `${yearText(y)}-${D2[m]}-${D2[d]}`;
}

function yearText(y: number): string {
  if (y >= 1000 && y <= 9999) return String(y);
  if (y >= 0 && y < 1000) return String(y).padStart(4, "0");
  return (y < 0 ? "-" : "+") + String(Math.abs(y)).padStart(6, "0");
}

/** `HH:MM:SS` plus `.sss` or `.ssssss` (the canonical fraction rule) of microseconds into a day. */
function clockText(microsOfDay: number): string {
  const secs = Math.floor(microsOfDay / 1_000_000);
  const us = microsOfDay - secs * 1_000_000;
  const h = Math.floor(secs / 3600);
  const rest = secs - h * 3600;
  const mi = Math.floor(rest / 60);
  const base = `${D2[h] ?? String(h)}:${D2[mi]}:${D2[rest - mi * 60]}`;
  return us === 0 ? base : `${base}.${fraction(us)}`;
}

/** Three digits when the sub-millisecond part is zero, six otherwise. */
function fraction(us: number): string {
  const ms = Math.floor(us / 1000);
  const sub = us - ms * 1000;
  const ms3 = ms < 10 ? `00${ms}` : ms < 100 ? `0${ms}` : String(ms);
  if (sub === 0) return ms3;
  return ms3 + (sub < 10 ? `00${sub}` : sub < 100 ? `0${sub}` : String(sub));
}

/** Canonical UTC text of a day count and the microseconds into that day (0 ≤ micros < 86,400,000,000). */
function instantText(days: number, microsOfDay: number): string {
  const secs = Math.floor(microsOfDay / 1_000_000);
  const us = microsOfDay - secs * 1_000_000;
  const h = Math.floor(secs / 3600);
  const rest = secs - h * 3600;
  const mi = Math.floor(rest / 60);
  return `${dateText(days)}T${D2[h]}:${D2[mi]}:${D2[rest - mi * 60]}.${fraction(us)}Z`;
}

/** Canonical UTC text of milliseconds since the epoch (an integer number). */
export function timestampTextFromMillis(ms: number): string {
  let days = Math.floor(ms / MILLIS_PER_DAY);
  let rem = ms - days * MILLIS_PER_DAY;
  if (rem < 0) {
    days--;
    rem += MILLIS_PER_DAY;
  } else if (rem >= MILLIS_PER_DAY) {
    days++;
    rem -= MILLIS_PER_DAY;
  }
  return instantText(days, rem * 1000);
}

/** Canonical UTC text of microseconds since the epoch. */
export function timestampTextFromMicros(micros: bigint | number): string {
  if (typeof micros === "number" || (micros > -BIG_SAFE && micros < BIG_SAFE)) {
    const n = Number(micros);
    // Floating division can round to the next integer near a day boundary; fix it up exactly.
    let days = Math.floor(n / MICROS_PER_DAY);
    let rem = n - days * MICROS_PER_DAY;
    if (rem < 0) {
      days--;
      rem += MICROS_PER_DAY;
    } else if (rem >= MICROS_PER_DAY) {
      days++;
      rem -= MICROS_PER_DAY;
    }
    return instantText(days, rem);
  }
  let days = micros / BIG_MICROS_PER_DAY;
  let rem = micros - days * BIG_MICROS_PER_DAY;
  if (rem < 0n) {
    days -= 1n;
    rem += BIG_MICROS_PER_DAY;
  }
  return instantText(Number(days), Number(rem));
}

/** Floor division of a BigInt by a positive BigInt (BigInt `/` truncates toward zero). */
function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a < 0n && q * b !== a ? q - 1n : q;
}

export type TimeUnitName = "SECONDS" | "MILLIS" | "MICROS" | "NANOS";

/** Canonical UTC text of an instant counted in `unit` since the epoch; nanoseconds are truncated (floored) to microseconds. */
export function timestampText(value: bigint | number, unit: TimeUnitName): string {
  switch (unit) {
    case "MILLIS":
      if (typeof value === "number") return timestampTextFromMillis(value);
      return value > -BIG_SAFE && value < BIG_SAFE ? timestampTextFromMillis(Number(value)) : timestampTextFromMicros(value * 1000n);
    case "MICROS":
      return timestampTextFromMicros(value);
    case "NANOS":
      return timestampTextFromMicros(floorDiv(BigInt(value), 1000n));
    case "SECONDS":
      return timestampTextFromMicros(BigInt(value) * 1_000_000n);
  }
}

/** Time of day (no date) as `HH:MM:SS[.sss|.ssssss]`; nanoseconds truncated to microseconds. */
export function timeText(value: bigint | number, unit: TimeUnitName): string {
  const v = typeof value === "bigint" ? value : BigInt(Math.trunc(value));
  const micros = unit === "NANOS" ? floorDiv(v, 1000n) : unit === "MICROS" ? v : unit === "MILLIS" ? v * 1000n : v * 1_000_000n;
  return clockText(Number(micros));
}

/** Days since the epoch counted in milliseconds (Arrow Date64): a date, or a timestamp when not at midnight. */
export function dateTextFromMillis(ms: number): string {
  return ms % MILLIS_PER_DAY === 0 ? dateText(ms / MILLIS_PER_DAY) : timestampTextFromMillis(ms);
}

/**
 * Exact decimal text of `unscaled × 10^-scale`: "1234.5600" for (12345600, 4), "-0.0050" for
 * (-50, 4), "1200" for (12, -2). Never through a float.
 */
export function decimalText(unscaled: bigint | number, scale: number): string {
  const neg = unscaled < 0;
  let digits: string;
  if (typeof unscaled === "number")
    digits = Number.isSafeInteger(unscaled) ? String(Math.abs(unscaled)) : (neg ? -BigInt(unscaled) : BigInt(unscaled)).toString();
  else digits = (neg ? -unscaled : unscaled).toString();
  const sign = neg ? "-" : "";
  if (scale <= 0) return digits === "0" ? "0" : sign + digits + "0".repeat(-scale);
  if (digits.length <= scale) digits = "0".repeat(scale - digits.length + 1) + digits;
  const point = digits.length - scale;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** The signed integer held big-endian, two's complement, in `bytes` (Parquet DECIMAL as (FIXED_LEN_)BYTE_ARRAY). */
export function signedBigEndian(bytes: Uint8Array): bigint | number {
  const n = bytes.length;
  if (n === 0) return 0;
  if (n <= 6) {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + bytes[i]!;
    return bytes[0]! & 0x80 ? v - 2 ** (8 * n) : v;
  }
  // Common case: the upper bytes are sign extension and the value fits 48 bits — numbers only.
  const ext = bytes[0]! & 0x80 ? 0xff : 0;
  let small = (bytes[n - 6]! & 0x80) === (ext & 0x80);
  for (let i = 0; small && i < n - 6; i++) if (bytes[i] !== ext) small = false;
  if (small) {
    let v = 0;
    for (let i = n - 6; i < n; i++) v = v * 256 + bytes[i]!;
    return ext ? v - 281_474_976_710_656 : v;
  }
  let v = 0n;
  let i = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, n);
  for (; i + 8 <= n; i += 8) v = (v << 64n) | view.getBigUint64(i);
  for (; i < n; i++) v = (v << 8n) | BigInt(bytes[i]!);
  return bytes[0]! & 0x80 ? v - (1n << BigInt(8 * n)) : v;
}

/** The signed integer held little-endian in 32-bit words (Arrow Decimal128/256 values). */
export function signedLittleEndianWords(words: Uint32Array, start: number, count: number): bigint | number {
  const top = words[start + count - 1]!;
  // Common case: a value that fits 53 bits, all upper words sign extension.
  let small = true;
  const ext = top & 0x80000000 ? 0xffffffff : 0;
  for (let k = 2; k < count; k++) if (words[start + k] !== ext) small = false;
  if (small && count >= 2) {
    const lo = words[start]!;
    const hi = words[start + 1]!;
    if (ext === 0 && hi < 0x200000) return hi * 4294967296 + lo;
    if (ext !== 0 && hi >= 0xffe00000) return (hi - 4294967296) * 4294967296 + lo;
  }
  let v = 0n;
  for (let k = count - 1; k >= 0; k--) v = (v << 32n) | BigInt(words[start + k]!);
  return top & 0x80000000 ? v - (1n << BigInt(32 * count)) : v;
}

/** Base64 of bytes (binary values without a text annotation). */
export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** A double as JSON can carry it: finite numbers as they are, NaN and ±Infinity as text. */
export function doubleValue(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}

export const SAFE_LIMIT = TWO_53;

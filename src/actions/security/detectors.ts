/**
 * Sensitive-value detectors: each decides whether ONE value is a valid instance of its kind
 * (`detect`), and where instances sit inside free text (`find`). Pure functions, no I/O.
 *
 * WHY checksums and rules, not patterns: a pattern for "16 digits" matches every order id; a
 * card number also passes Luhn and starts with an issuer's range at a length that issuer uses,
 * an IBAN passes mod-97 at its country's length, an ABA routing number passes its 3-7-1
 * checksum. That is what lets the column classifier (classify.ts) tell a card column from an id
 * column by how many values pass. Presidio's card pattern misses Mastercard's 2-series and
 * 19-digit PANs; these ranges include both.
 *
 * Strict and loose forms: some kinds have a bare form that any number can take by chance — a
 * 10-digit integer is a valid US phone number, most 9-digit integers pass the SSN rules. The
 * strict form (`+1 415-555-2671`, `078-05-1121`) counts on its own; the bare one counts only with
 * `loose: true`, which the classifier sets when the column's name says the kind (`phone`, `ssn`).
 * Dates of birth and person names are the same: a value can only be plausible, the name decides.
 */
import { isIP } from "node:net";
import { electronicFormatIBAN, getCountrySpecifications, isValidIBAN } from "ibantools";
import { findPhoneNumbersInText, parsePhoneNumberFromString, type CountryCode } from "libphonenumber-js/max";

/** The kinds of sensitive value a detector recognises. */
export const DETECTOR_KINDS = ["card_number", "iban", "aba_routing", "ssn", "email", "phone", "ip_address", "date_of_birth", "person_name"] as const;
export type DetectorKind = (typeof DETECTOR_KINDS)[number];

export interface DetectOptions {
  /** Accept the bare forms a value of another kind can take by chance (see the file comment). */
  loose?: boolean;
  /** Region for phone numbers written without a country code (ISO 3166 alpha-2). Default US. */
  region?: string;
  /** "Now" for ages (dates of birth); default the current time. */
  now?: Date;
}

/** Where a detector found something in a text: `[start, end)` in UTF-16 code units. */
export interface Span {
  kind: DetectorKind;
  start: number;
  end: number;
  /** Cards only: one of the networks' published test numbers. */
  testPan?: boolean;
}

export interface Detector {
  kind: DetectorKind;
  detect(value: string, opts?: DetectOptions): boolean;
  /** Instances inside free text; absent for kinds only a column name can reveal (dates of birth, names). */
  find?(text: string, opts?: DetectOptions): Span[];
}

// ---------------------------------------------------------------------------------------------
// Payment cards

export type CardIssuer = "visa" | "mastercard" | "amex" | "discover" | "jcb" | "unionpay" | "maestro" | "diners";

interface IssuerRange {
  issuer: CardIssuer;
  /** Inclusive prefix range, compared on the first `low.length` digits. */
  low: string;
  high: string;
  lengths: readonly number[];
}

const span = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/**
 * Issuer identification ranges and PAN lengths (ISO/IEC 7812 as each network publishes them).
 * Order matters where ranges overlap: the first match wins (Discover's co-branded 622126–622925
 * before UnionPay's 62, Maestro's 6759 before nothing else claims it).
 */
const ISSUERS: readonly IssuerRange[] = [
  { issuer: "visa", low: "4", high: "4", lengths: [13, 16, 19] },
  { issuer: "mastercard", low: "51", high: "55", lengths: [16] },
  { issuer: "mastercard", low: "2221", high: "2720", lengths: [16] },
  { issuer: "amex", low: "34", high: "34", lengths: [15] },
  { issuer: "amex", low: "37", high: "37", lengths: [15] },
  { issuer: "discover", low: "6011", high: "6011", lengths: span(16, 19) },
  { issuer: "discover", low: "644", high: "649", lengths: span(16, 19) },
  { issuer: "discover", low: "65", high: "65", lengths: span(16, 19) },
  { issuer: "discover", low: "622126", high: "622925", lengths: span(16, 19) },
  { issuer: "unionpay", low: "62", high: "62", lengths: span(16, 19) },
  { issuer: "jcb", low: "3528", high: "3589", lengths: span(16, 19) },
  { issuer: "diners", low: "300", high: "305", lengths: span(14, 19) },
  { issuer: "diners", low: "3095", high: "3095", lengths: span(14, 19) },
  { issuer: "diners", low: "36", high: "36", lengths: span(14, 19) },
  { issuer: "diners", low: "38", high: "39", lengths: span(14, 19) },
  ...["5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763"].map((p) => ({
    issuer: "maestro" as const,
    low: p,
    high: p,
    lengths: span(13, 19),
  })),
];

/**
 * The networks' and processors' published test numbers (Visa, Mastercard incl. 2-series, Amex,
 * Discover, JCB, Diners, UnionPay, Maestro). Tagged, never exempted: a test number in production
 * data is still a card number where the policy is concerned.
 */
export const TEST_PANS: ReadonlySet<string> = new Set([
  "4111111111111111",
  "4242424242424242",
  "4012888888881881",
  "4222222222222",
  "4000056655665556",
  "4917610000000000",
  "4444333322221111",
  "4000000000000002",
  "4012000033330026",
  "4111111111111111110",
  "5555555555554444",
  "5105105105105100",
  "5200828282828210",
  "5454545454545454",
  "2223003122003222",
  "2222400070000005",
  "2223000048400011",
  "2221000000000009",
  "378282246310005",
  "371449635398431",
  "378734493671000",
  "340000000000009",
  "6011111111111117",
  "6011000990139424",
  "6011000000000004",
  "6445644564456445",
  "3530111333300000",
  "3566002020360505",
  "3566111111111113",
  "30569309025904",
  "38520000023237",
  "36227206271667",
  "3056930009020004",
  "6200000000000005",
  "6205500000000000004",
  "6759649826438453",
]);

/** The digits of a card-number-shaped value: digits with single spaces or hyphens between groups. */
function cardDigits(value: string): string | undefined {
  const v = value.trim();
  if (v.length < 13 || v.length > 23 || !/^\d(?:[ -]?\d)+$/.test(v)) return undefined;
  return v.replace(/[ -]/g, "");
}

/** The Luhn (mod 10) check over a digit string. */
export function luhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** The issuer whose range and length a PAN falls in, else undefined. */
export function cardIssuer(digits: string): CardIssuer | undefined {
  for (const r of ISSUERS) {
    const p = digits.slice(0, r.low.length);
    if (p >= r.low && p <= r.high && r.lengths.includes(digits.length)) return r.issuer;
  }
  return undefined;
}

/** A card number as written (spaces and hyphens allowed), checked by Luhn, issuer range and length. */
export function isCardNumber(value: string): boolean {
  const d = cardDigits(value);
  return d !== undefined && d.length >= 13 && d.length <= 19 && luhn(d) && cardIssuer(d) !== undefined;
}

export function isTestPan(value: string): boolean {
  const d = cardDigits(value);
  return d !== undefined && TEST_PANS.has(d);
}

// Digit groups separated by one space or hyphen, not glued to letters, `_` or `-` (so `ORD-4111…`
// and `id4111…` are ids, not cards in text).
const CARD_IN_TEXT = /(?<![\p{L}\p{N}_-])\d(?:[ -]?\d){11,22}(?![\p{L}\p{N}_])/gu;

function findCards(text: string): Span[] {
  const out: Span[] = [];
  for (const m of text.matchAll(CARD_IN_TEXT)) {
    // A run may swallow a neighbouring number ("4111 1111 1111 1111 12 25", "ref 12 4111…"):
    // cut it into its digit groups and take the longest valid card made of whole groups, then
    // look again left and right of it.
    const groups = [...m[0].matchAll(/\d+/g)].map((g) => ({ start: m.index + g.index, end: m.index + g.index + g[0].length }));
    const scan = (lo: number, hi: number): void => {
      for (let len = hi - lo; len >= 1; len--)
        for (let i = lo; i + len <= hi; i++) {
          const start = groups[i]!.start;
          const end = groups[i + len - 1]!.end;
          const cand = text.slice(start, end);
          if (!isCardNumber(cand)) continue;
          out.push({ kind: "card_number", start, end, ...(isTestPan(cand) ? { testPan: true } : {}) });
          scan(lo, i);
          scan(i + len, hi);
          return;
        }
    };
    scan(0, groups.length);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// IBAN (ibantools: per-country length and BBAN format, mod-97)

const IBAN_LENGTHS: ReadonlyMap<string, number> = new Map(
  Object.entries(getCountrySpecifications())
    .filter(([, s]) => typeof s.chars === "number" && s.chars > 0)
    .map(([cc, s]) => [cc, s.chars as number]),
);

export function isIban(value: string): boolean {
  const v = value.trim();
  if (v.length < 15 || v.length > 42 || !/^[A-Za-z]{2}\d{2}[A-Za-z0-9 ]+$/.test(v)) return false;
  const e = electronicFormatIBAN(v);
  return e !== null && isValidIBAN(e);
}

const IBAN_IN_TEXT = /(?<![\p{L}\p{N}_])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}/gu;

function findIbans(text: string): Span[] {
  const out: Span[] = [];
  for (const m of text.matchAll(IBAN_IN_TEXT)) {
    // Printed IBANs come in groups of four that the pattern may run past ("… 00 BIC COBADEFF"):
    // cut at the country's length in IBAN characters.
    const want = IBAN_LENGTHS.get(m[0].slice(0, 2));
    if (want === undefined) continue;
    let chars = 0;
    let end = 0;
    while (end < m[0].length && chars < want) if (m[0][end++] !== " ") chars++;
    const cand = m[0].slice(0, end);
    if (chars === want && !/[\p{L}\p{N}]/u.test(m[0][end] ?? "") && isIban(cand)) out.push({ kind: "iban", start: m.index, end: m.index + end });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ABA routing numbers: 9 digits, 3-7-1 checksum, a Federal Reserve prefix

export function isAbaRouting(value: string): boolean {
  const v = value.trim();
  if (!/^\d{9}$/.test(v) || v === "000000000") return false;
  const p = Number(v.slice(0, 2));
  // 00 government, 01–12 Federal Reserve districts, 21–32 thrifts, 61–72 electronic, 80 travellers' cheques.
  if (!(p <= 12 || (p >= 21 && p <= 32) || (p >= 61 && p <= 72) || p === 80)) return false;
  const d = [...v].map(Number);
  return (3 * (d[0]! + d[3]! + d[6]!) + 7 * (d[1]! + d[4]! + d[7]!) + (d[2]! + d[5]! + d[8]!)) % 10 === 0;
}

// A bare 9-digit number is a routing number in text only next to a word that says so.
const ABA_IN_TEXT = /\b(?:routing|aba|rtn|transit)\b[^\d\n]{0,24}(\d{9})(?!\d)/giu;

function findAba(text: string): Span[] {
  const out: Span[] = [];
  for (const m of text.matchAll(ABA_IN_TEXT)) {
    const start = m.index + m[0].length - m[1]!.length;
    if (isAbaRouting(m[1]!)) out.push({ kind: "aba_routing", start, end: start + 9 });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// US Social Security numbers

// Numbers the SSA voided after they were published (a wallet insert, an advertisement).
const VOIDED_SSNS: ReadonlySet<string> = new Set(["078051120", "219099999"]);

function ssnRulesHold(area: string, group: string, serial: string): boolean {
  const a = Number(area);
  return a !== 0 && a !== 666 && a < 900 && group !== "00" && serial !== "0000" && !VOIDED_SSNS.has(area + group + serial);
}

/** `123-45-6789` (or with spaces); bare 9 digits only with `loose`. Area not 000/666/900–999, group not 00, serial not 0000. */
export function isSsn(value: string, opts: DetectOptions = {}): boolean {
  const v = value.trim();
  const m = /^(\d{3})([- ])(\d{2})\2(\d{4})$/.exec(v) ?? (opts.loose ? /^(\d{3})()(\d{2})(\d{4})$/.exec(v) : null);
  return m !== null && ssnRulesHold(m[1]!, m[3]!, m[4]!);
}

const SSN_IN_TEXT = /(?<![\p{N}-])(\d{3})-(\d{2})-(\d{4})(?![\p{N}-])/gu;

function findSsns(text: string): Span[] {
  const out: Span[] = [];
  for (const m of text.matchAll(SSN_IN_TEXT)) if (ssnRulesHold(m[1]!, m[2]!, m[3]!)) out.push({ kind: "ssn", start: m.index, end: m.index + m[0].length });
  return out;
}

// ---------------------------------------------------------------------------------------------
// E-mail addresses: the practical subset of RFC 5322 (no quoted local parts), a dotted domain
// whose last label has letters only.

const EMAIL = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;
const EMAIL_IN_TEXT = /[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9-])/g;

export function isEmail(value: string): boolean {
  const v = value.trim();
  return v.length <= 254 && EMAIL.test(v) && !v.startsWith(".") && !v.includes("..");
}

function findEmails(text: string): Span[] {
  const out: Span[] = [];
  for (const m of text.matchAll(EMAIL_IN_TEXT)) if (isEmail(m[0])) out.push({ kind: "email", start: m.index, end: m.index + m[0].length });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Phone numbers (libphonenumber's full metadata: real number plans per country, not lengths)

const PHONE_SHAPE = /^\+?[\d\s().-]{6,24}$/;
// The marks of a written phone number: a leading +, or separators between digit groups.
const PHONE_FORMATTED = /^\+|\d[\s().-]+\d|^\(/;

function region(opts: DetectOptions): CountryCode {
  return (opts.region ?? "US").toUpperCase() as CountryCode;
}

/** A valid phone number; without `loose`, only as written by people (`+…`, or grouped digits). */
export function isPhone(value: string, opts: DetectOptions = {}): boolean {
  const v = value.trim();
  if (!PHONE_SHAPE.test(v) || (!opts.loose && !PHONE_FORMATTED.test(v))) return false;
  // E.164 numbers have at most 15 digits; national ones at least 6 (checked before the costly parse).
  const digits = v.replace(/\D/g, "").length;
  if (digits < 6 || digits > 15) return false;
  const n = parsePhoneNumberFromString(v, region(opts));
  return n !== undefined && n.isValid();
}

const PHONE_CONTEXT = /\b(?:phone|tel|telephone|call|mobile|cell|fax|sms|whatsapp|contact)\b[^\n]{0,24}$/i;

function findPhones(text: string, opts: DetectOptions): Span[] {
  if (!/\d{3}/.test(text.replace(/[\s().-]/g, ""))) return [];
  const out: Span[] = [];
  for (const f of findPhoneNumbersInText(text, { defaultCountry: region(opts) })) {
    const raw = text.slice(f.startsAt, f.endsAt);
    // A bare digit run in text is a phone number only after a word that says so.
    if (!f.number.isValid() || (!PHONE_FORMATTED.test(raw) && !PHONE_CONTEXT.test(text.slice(0, f.startsAt)))) continue;
    out.push({ kind: "phone", start: f.startsAt, end: f.endsAt });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// IP addresses (node:net's parser)

export function isIpAddress(value: string): boolean {
  const v = value.trim();
  return v.length >= 3 && isIP(v) !== 0;
}

const IPV4_IN_TEXT = /(?<![\p{N}.])(?:\d{1,3}\.){3}\d{1,3}(?![\p{N}]|\.\d)/gu;
const IPV6_IN_TEXT = /(?<![\p{L}\p{N}:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\p{L}\p{N}:])/gu;

function findIps(text: string): Span[] {
  const out: Span[] = [];
  for (const re of [IPV4_IN_TEXT, IPV6_IN_TEXT])
    for (const m of text.matchAll(re))
      // "::" alone and clock times ("09:30:00" fails isIP) are not addresses.
      if (m[0] !== "::" && isIP(m[0]) !== 0) out.push({ kind: "ip_address", start: m.index, end: m.index + m[0].length });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dates of birth: a date (ISO, or d/m/y, m/d/y, d.m.y) at a plausible age, 0 to 120 years ago.

function parseDate(value: string): Date | undefined {
  const v = value.trim();
  let y: number, m: number, d: number;
  let r = /^(\d{4})-(\d{2})-(\d{2})(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$/.exec(v);
  if (r) [y, m, d] = [Number(r[1]), Number(r[2]), Number(r[3])];
  else if ((r = /^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$/.exec(v))) {
    // Day-first unless that cannot be a date; either way it only has to be SOME valid date.
    const a = Number(r[1]);
    const b = Number(r[2]);
    [y, m, d] = a > 12 ? [Number(r[3]), b, a] : [Number(r[3]), a, b];
  } else return undefined;
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d ? t : undefined;
}

export function isPlausibleBirthDate(value: string, opts: DetectOptions = {}): boolean {
  const t = parseDate(value);
  if (!t) return false;
  const now = opts.now ?? new Date();
  const age = (now.getTime() - t.getTime()) / (365.2425 * 86_400_000);
  return age >= 0 && age <= 120;
}

// ---------------------------------------------------------------------------------------------
// Person names: text that CAN be a name (letters, marks, apostrophes, hyphens, dots, one to five
// words, no digits). Which text IS a name only the column's name and context say (classify.ts).

const NAME_VALUE = /^[\p{L}][\p{L}\p{M}'’.-]*(?: [\p{L}][\p{L}\p{M}'’.-]*){0,4}$/u;

export function isPlausibleName(value: string): boolean {
  const v = value.trim().replace(/\s+/g, " ");
  return v.length >= 2 && v.length <= 80 && NAME_VALUE.test(v) && /\p{L}{2}/u.test(v);
}

// ---------------------------------------------------------------------------------------------

export const DETECTORS: Readonly<Record<DetectorKind, Detector>> = {
  card_number: { kind: "card_number", detect: isCardNumber, find: findCards },
  iban: { kind: "iban", detect: isIban, find: findIbans },
  aba_routing: { kind: "aba_routing", detect: isAbaRouting, find: findAba },
  ssn: { kind: "ssn", detect: isSsn, find: findSsns },
  email: { kind: "email", detect: isEmail, find: findEmails },
  phone: { kind: "phone", detect: isPhone, find: findPhones },
  ip_address: { kind: "ip_address", detect: isIpAddress, find: findIps },
  date_of_birth: { kind: "date_of_birth", detect: isPlausibleBirthDate },
  person_name: { kind: "person_name", detect: (v) => isPlausibleName(v) },
};

/**
 * Every sensitive span in a text, non-overlapping: where two detections overlap the earlier
 * kind in this order wins (a card number's digits are not also a phone number).
 */
const FIND_ORDER: readonly DetectorKind[] = ["card_number", "iban", "ssn", "email", "aba_routing", "ip_address", "phone"];

export function findSensitiveSpans(text: string, opts: DetectOptions = {}, kinds: readonly DetectorKind[] = FIND_ORDER): Span[] {
  const taken: Span[] = [];
  for (const kind of FIND_ORDER) {
    if (!kinds.includes(kind)) continue;
    for (const s of DETECTORS[kind].find!(text, opts)) if (!taken.some((t) => s.start < t.end && t.start < s.end)) taken.push(s);
  }
  return taken.sort((a, b) => a.start - b.start);
}

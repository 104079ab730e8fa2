/**
 * A column's sensitivity class from a sample of its values. Pure: values in, counts and a class
 * out; no value is kept, so nothing here can leak one.
 *
 * The rule (why not Presidio's): a column is an identifier of kind K when the share of its
 * sampled NON-NULL rows that are valid K values is high — judged by the Wilson score lower bound
 * (95%) against a threshold (default 0.8), not by the point share. Presidio classifies by the
 * share of its *detections*, so a random 16-digit order id column, where about one value in ten
 * passes Luhn by chance, looks like cards; here it has a share near 0.1 and stays `none`.
 * Google DLP profiles by row prevalence too; the bound adds that twelve rows prove less than
 * twelve thousand.
 *
 * "Is PII" and "contains PII" are kept apart. An identifier column (`card_number`, `iban`,
 * `email` …) holds one sensitive value per row and the storage step encrypts or tokenizes the
 * cell. A free-text column with a card number inside a sentence is `free_text_with_pii`, with
 * `contains` listing what was found and in how many rows; the storage step masks the spans.
 * A column of whole sensitive values of several kinds (a `contact` column with e-mails and
 * phones), or too few of one to call it an identifier, is `mixed_pii`.
 *
 * Column-name hints (hints.ts) raise confidence — the bare form of a kind counts (`4155552671`
 * in `phone`), and the threshold is lowered by `hintBoost` (default 0.1, never below 0.5) — but
 * never override the values: a `card_number` column of random digits is not a card column.
 * Dates of birth and person names need a hint: no value alone says "this date is a birthday".
 *
 * Samples too small to prove anything: with every one of n rows valid the bound is below 0.8
 * until n = 16. Below the size at which the bound COULD reach the threshold, the point share
 * decides and the column is reported `confident: false` — over-protecting five card numbers is
 * the safe mistake.
 */
import { DETECTORS, findSensitiveSpans, isTestPan, type DetectOptions, type DetectorKind } from "./detectors.js";
import { columnHints } from "./hints.js";
import type { ColumnClass } from "./column-classes.js";

export { COLUMN_CLASSES, type ColumnClass } from "./column-classes.js";

/** Identifier kinds, in the order that breaks ties between equally supported classes. */
const IDENTIFIER_KINDS: readonly DetectorKind[] = ["card_number", "iban", "ssn", "email", "phone", "aba_routing", "ip_address", "date_of_birth", "person_name"];
/** Kinds with a bare form that counts only under a hint. */
const LOOSE_KINDS: ReadonlySet<DetectorKind> = new Set(["phone", "ssn"]);
/** Kinds no value proves on its own. */
const HINT_ONLY: ReadonlySet<DetectorKind> = new Set(["date_of_birth", "person_name"]);
/**
 * Kinds that random digits pass by chance (Luhn, the ABA checksum: one in ten), so a few whole
 * values of them in another column mean nothing: they count as "contains" only above twice
 * that rate, by the lower bound. Every other kind is so unlikely by chance that one is evidence.
 */
const CHANCE_RATE: Partial<Record<DetectorKind, number>> = { card_number: 0.1, aba_routing: 0.1 };

/** Column types as typed datasets declare them (formats/typed.ts); raw columns have none. */
export type ValueType = "string" | "integer" | "decimal" | "boolean" | "timestamp" | "date";

export interface ClassifyOptions {
  /** Lower bound a class must reach, 0..1. Default 0.8. */
  threshold?: number;
  /** How much a name hint lowers the threshold (never below 0.5). Default 0.1. */
  hintBoost?: number;
  /** Phone numbers without a country code are read in this region. Default US. */
  region?: string;
  now?: Date;
}

/** Running counts for one column while its sample is read. Holds no values. */
export interface ColumnProfile {
  name: string;
  type?: ValueType;
  /** Non-null rows seen. */
  rows: number;
  /** Rows whose whole value is a valid instance (strict form). */
  strict: Partial<Record<DetectorKind, number>>;
  /** Rows whose whole value is valid in the loose form (a superset of strict for LOOSE_KINDS). */
  loose: Partial<Record<DetectorKind, number>>;
  /** Rows holding a sensitive value inside longer text, by kind. */
  embedded: Partial<Record<DetectorKind, number>>;
  /** Rows with any embedded span. */
  embeddedRows: number;
  /** Card values (whole or embedded) that are published test numbers. */
  testPans: number;
  /** Loose kinds the column's name hints at: only those have their bare form tested. */
  looseKinds: DetectorKind[];
}

export interface ContainedKind {
  class: DetectorKind;
  /** Sampled rows holding at least one. */
  rows: number;
}

/** One column's verdict: counts and classes, never values. */
export interface ColumnClassification {
  name: string;
  class: ColumnClass;
  /** Share of sampled non-null rows that are valid detections of `class` (for `none`: 0). */
  share: number;
  /** Non-null rows sampled. */
  sampled: number;
  /** Wilson 95% lower bound of `share`. */
  lowerBound: number;
  /** False when the sample was too small for the bound to decide (see the file comment). */
  confident: boolean;
  /** The column's name suggested the class. */
  hinted: boolean;
  /** Sensitive values found besides (or, for free text and mixed columns, instead of) the class. */
  contains?: ContainedKind[];
  /** Card numbers among the values that are networks' test numbers (still cards). */
  testPans?: number;
  /** For `none`: the best candidate and why it fell short. */
  nearest?: { class: DetectorKind; share: number; lowerBound: number };
}

const Z = 1.959963984540054;

/** Wilson score interval lower bound for `k` successes in `n` trials (95%). */
export function wilsonLowerBound(k: number, n: number, z = Z): number {
  if (n === 0) return 0;
  const p = k / n;
  const z2 = z * z;
  const centre = p + z2 / (2 * n);
  const margin = z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return Math.max(0, (centre - margin) / (1 + z2 / n));
}

export function newProfile(name: string, type?: ValueType): ColumnProfile {
  const hints = columnHints(name);
  const looseKinds = [...LOOSE_KINDS].filter((k) => hints.has(k));
  return { name, ...(type ? { type } : {}), rows: 0, strict: {}, loose: {}, embedded: {}, embeddedRows: 0, testPans: 0, looseKinds };
}

/** Kinds worth testing on a value of this column type. */
function kindsFor(type: ValueType | undefined): readonly DetectorKind[] {
  switch (type) {
    case "boolean":
    case "decimal":
      return [];
    case "date":
    case "timestamp":
      return ["date_of_birth"];
    case "integer":
      return ["card_number", "aba_routing", "ssn", "phone"];
    default:
      return IDENTIFIER_KINDS;
  }
}

const bump = (m: Partial<Record<DetectorKind, number>>, k: DetectorKind) => (m[k] = (m[k] ?? 0) + 1);

/** Count one sampled value (null and blank values are not rows). */
export function observe(p: ColumnProfile, value: string, opts: DetectOptions = {}): void {
  const v = value.trim();
  if (v === "") return;
  p.rows++;
  let whole = false;
  for (const kind of kindsFor(p.type)) {
    const d = DETECTORS[kind];
    if (d.detect(v, { ...opts, loose: false })) {
      bump(p.strict, kind);
      bump(p.loose, kind);
      if (!HINT_ONLY.has(kind)) whole = true;
      if (kind === "card_number" && isTestPan(v)) p.testPans++;
    } else if (p.looseKinds.includes(kind) && d.detect(v, { ...opts, loose: true })) bump(p.loose, kind);
  }
  // Free text: values with words in them, that are not themselves one sensitive value.
  if (whole || (p.type !== undefined && p.type !== "string") || !/\s/.test(v)) return;
  const spans = findSensitiveSpans(v, opts);
  if (spans.length === 0) return;
  p.embeddedRows++;
  for (const kind of new Set(spans.map((s) => s.kind))) bump(p.embedded, kind);
  p.testPans += spans.filter((s) => s.testPan).length;
}

const round = (x: number) => Math.round(x * 10_000) / 10_000;

interface Candidate {
  kind: DetectorKind;
  hits: number;
  share: number;
  lowerBound: number;
  hinted: boolean;
  qualifies: boolean;
  confident: boolean;
}

/** The verdict on a profiled column; `siblings` are the dataset's other column names (context). */
export function classifyProfile(p: ColumnProfile, siblings: readonly string[], opts: ClassifyOptions = {}): ColumnClassification {
  const threshold = opts.threshold ?? 0.8;
  const boost = opts.hintBoost ?? 0.1;
  const hints = columnHints(p.name, siblings);
  const n = p.rows;
  const base = { name: p.name, sampled: n, ...(p.testPans > 0 ? { testPans: p.testPans } : {}) };
  if (n === 0) return { ...base, class: "none", share: 0, lowerBound: 0, confident: true, hinted: false };

  const candidates: Candidate[] = [];
  for (const kind of IDENTIFIER_KINDS) {
    const hinted = hints.has(kind);
    if (HINT_ONLY.has(kind) && !hinted) continue;
    const hits = (hinted && LOOSE_KINDS.has(kind) ? p.loose[kind] : p.strict[kind]) ?? 0;
    if (hits === 0) continue;
    const need = hinted ? Math.max(0.5, threshold - boost) : threshold;
    const lowerBound = wilsonLowerBound(hits, n);
    const share = hits / n;
    const provable = wilsonLowerBound(n, n) >= need;
    const qualifies = provable ? lowerBound >= need : share >= need;
    candidates.push({ kind, hits, share, lowerBound, hinted, qualifies, confident: provable });
  }
  candidates.sort((a, b) => b.lowerBound - a.lowerBound || Number(b.hinted) - Number(a.hinted));
  const chosen = candidates.find((c) => c.qualifies);

  // What else is in the column: embedded spans, and whole values of kinds other than the class
  // (chance-prone kinds only when clearly above their chance rate).
  const contained = new Map<DetectorKind, number>();
  for (const [k, rows] of Object.entries(p.embedded) as [DetectorKind, number][]) contained.set(k, rows);
  for (const c of candidates) {
    if (c === chosen || HINT_ONLY.has(c.kind)) continue;
    const chance = CHANCE_RATE[c.kind];
    if (chance !== undefined && c.lowerBound <= 2 * chance) continue;
    contained.set(c.kind, Math.max(contained.get(c.kind) ?? 0, c.hits));
  }
  const contains = [...contained].map(([k, rows]) => ({ class: k, rows })).sort((a, b) => b.rows - a.rows || a.class.localeCompare(b.class));
  const withContains = contains.length > 0 ? { contains } : {};

  if (chosen)
    return {
      ...base,
      class: chosen.kind,
      share: round(chosen.share),
      lowerBound: round(chosen.lowerBound),
      confident: chosen.confident,
      hinted: chosen.hinted,
      ...withContains,
    };
  if (contains.length > 0) {
    // Rows with something sensitive: embedded rows, or whole values of the contained kinds.
    const rows = Math.min(n, p.embeddedRows + contains.filter((c) => !(c.class in p.embedded)).reduce((s, c) => s + c.rows, 0));
    return {
      ...base,
      class: p.embeddedRows > 0 ? "free_text_with_pii" : "mixed_pii",
      share: round(rows / n),
      lowerBound: round(wilsonLowerBound(rows, n)),
      confident: true,
      hinted: false,
      contains,
    };
  }
  const best = candidates[0];
  return {
    ...base,
    class: "none",
    share: 0,
    lowerBound: 0,
    confident: true,
    hinted: false,
    ...(best ? { nearest: { class: best.kind, share: round(best.share), lowerBound: round(best.lowerBound) } } : {}),
  };
}

/** Classify whole columns of values at once (tests, small samples); the action streams through observe. */
export function classifyColumns(
  columns: readonly { name: string; type?: ValueType; values: readonly (string | null | undefined)[] }[],
  opts: ClassifyOptions = {},
): ColumnClassification[] {
  const names = columns.map((c) => c.name);
  return columns.map((c) => {
    const p = newProfile(c.name, c.type);
    for (const v of c.values) if (v !== null && v !== undefined) observe(p, v, { region: opts.region, now: opts.now });
    return classifyProfile(p, names, opts);
  });
}

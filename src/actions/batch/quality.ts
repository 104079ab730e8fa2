/**
 * Quality rules over typed rows: row-level checks (required, type, unique, min, max, pattern,
 * allowed) that say why each row fails, dataset-level checks (row count, freshness) decided
 * after the last row, a per-check report and one score.
 *
 * Everything is compiled once in `createQualityChecker` (bounds converted to the column's
 * canonical form, regular expressions built, allowed lists turned into sets); a rule naming an
 * unknown column or holding an unusable value throws `SluiceError("BAD_CONFIG")` there, never
 * per row. Bad data is returned as reasons.
 *
 * Null handling: `null`, a missing key and "" are "null". Only `required` fails on null; every
 * other row-level check skips it.
 *
 * Comparisons (`min` / `max`) follow the column type:
 * - integer, decimal: exactly, as decimal numbers (no float): "0.10000000000000000001" > "0.1";
 * - timestamp: as instants (canonical UTC text, a shorter millisecond form sorting before a
 *   longer microsecond one; text that is not canonical is typed first, UTC assumed);
 *   date: as YYYY-MM-DD; bounds are typed like values ("2026-01-01" as a timestamp bound is
 *   midnight UTC);
 * - string: lexicographically, by UTF-16 code units (JavaScript `<`);
 * - boolean: not comparable (BAD_CONFIG).
 * A value that cannot be compared (text that is not a number in a decimal column) fails the
 * check with a reason saying so.
 */
import Database from "better-sqlite3";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { SluiceError } from "../../errors.js";
import { formatDuration, parseDuration } from "../../spec/duration.js";
import type { Column, ColumnTypeName, QualityRuleSpec, TypedRow, TypedValue } from "./model.js";
import { BloomFilter } from "./bloom-filter.js";
import { hashOf, ValueTable } from "./value-table.js";
import { compileValueParser, describeInvalid, Invalid, showValue, type ValueParser } from "./typing.js";

export interface QualityChecker {
  /** Row-level rules; returns every reason the row breaks (empty array = passes). `line` is for messages like "first seen at line N". */
  check(row: TypedRow, line: number): string[];
  /**
   * The same for a row already found to pass every check of `screeningRules(rules)` (by the
   * conversion step, see convert-unit.ts): only the checks that need the rows before it
   * (`unique`) run, and freshness is tracked, so `row` needs only those columns. Counts and
   * reasons are what `check` would give that row.
   */
  checkScreened(row: TypedRow, line: number): string[];
  /** Whether any check looks at a row's values (false: only dataset-level rules, or none). */
  readonly rowLevel: boolean;
  /** Counts `n` rows as checked and passing, unread: for a checker without `rowLevel` checks. */
  countPassing(n: number): void;
  /** After all rows: dataset-level rules and the score. */
  finish(): QualityReport;
}

export interface QualityRuleResult {
  rule: string;
  column?: string;
  kind: "row" | "dataset";
  /** Rows that failed the check (row-level), or 1 / 0 (dataset-level). */
  failures: number;
  passed: boolean;
  detail?: string;
}

export interface QualityReport {
  rowsChecked: number;
  /** Rows with ≥1 row-level reason. */
  rowsFailed: number;
  /** 0..1, rounded to 4 decimals; see `score()` below. */
  score: number;
  rules: QualityRuleResult[];
}

function badConfig(message: string): SluiceError {
  return new SluiceError("BAD_CONFIG", message, { retryable: false });
}

// ---------------------------------------------------------------------------------------------
// Exact decimal comparison over text (no allocation): digits between indices, leading zeros of
// the integer part and trailing zeros of the fraction skipped.

interface Dec {
  s: string;
  neg: boolean;
  is: number;
  ie: number;
  fs: number;
  fe: number;
  zero: boolean;
}

const scratch: Dec = { s: "", neg: false, is: 0, ie: 0, fs: 0, fe: 0, zero: true };

/** Scans plain decimal text (`[+-]digits[.digits]`) into `into`; false when it is not one. */
function scanDecimal(s: string, into: Dec): boolean {
  const n = s.length;
  let i = 0;
  let neg = false;
  const c0 = s.charCodeAt(0);
  if (c0 === 45) {
    neg = true;
    i = 1;
  } else if (c0 === 43) i = 1;
  let is = i;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) break;
    i++;
  }
  const ie = i;
  let fs = i;
  let fe = i;
  if (i < n && s.charCodeAt(i) === 46) {
    i++;
    fs = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      i++;
    }
    fe = i;
  }
  if ((ie === is && fe === fs) || i !== n) return false;
  while (is < ie && s.charCodeAt(is) === 48) is++;
  while (fe > fs && s.charCodeAt(fe - 1) === 48) fe--;
  into.s = s;
  into.neg = neg;
  into.is = is;
  into.ie = ie;
  into.fs = fs;
  into.fe = fe;
  into.zero = is === ie && fs === fe;
  return true;
}

function compareMagnitude(a: Dec, b: Dec): number {
  const la = a.ie - a.is;
  const lb = b.ie - b.is;
  if (la !== lb) return la < lb ? -1 : 1;
  for (let k = 0; k < la; k++) {
    const ca = a.s.charCodeAt(a.is + k);
    const cb = b.s.charCodeAt(b.is + k);
    if (ca !== cb) return ca < cb ? -1 : 1;
  }
  const fa = a.fe - a.fs;
  const fb = b.fe - b.fs;
  const len = fa > fb ? fa : fb;
  for (let k = 0; k < len; k++) {
    const ca = k < fa ? a.s.charCodeAt(a.fs + k) : 48;
    const cb = k < fb ? b.s.charCodeAt(b.fs + k) : 48;
    if (ca !== cb) return ca < cb ? -1 : 1;
  }
  return 0;
}

function compareDec(a: Dec, b: Dec): number {
  const sa = a.zero ? 0 : a.neg ? -1 : 1;
  const sb = b.zero ? 0 : b.neg ? -1 : 1;
  if (sa !== sb) return sa < sb ? -1 : 1;
  if (sa === 0) return 0;
  const m = compareMagnitude(a, b);
  return sa < 0 ? -m : m;
}

/**
 * Compares two decimal numbers given as text, exactly. Accepts `[+-]digits[.digits]`
 * (".5", "5." and leading/trailing zeros too). Throws on text that is not a decimal number.
 */
export function compareDecimals(a: string, b: string): number {
  const da: Dec = { s: "", neg: false, is: 0, ie: 0, fs: 0, fe: 0, zero: true };
  const db: Dec = { ...da };
  if (!scanDecimal(a, da)) throw new TypeError(`not a decimal number: ${a}`);
  if (!scanDecimal(b, db)) throw new TypeError(`not a decimal number: ${b}`);
  return compareDec(da, db);
}

/**
 * Compares canonical UTC timestamps ("…:00.125Z" and "…:00.125001Z"): as text, except that
 * the closing "Z" sorts before any digit, so the millisecond form precedes its microsecond
 * refinements.
 */
function compareTimestamps(a: string, b: string): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let k = 0; k < n; k++) {
    const ca = a.charCodeAt(k);
    const cb = b.charCodeAt(k);
    if (ca !== cb) {
      if (ca === 90) return -1;
      if (cb === 90) return 1;
      return ca < cb ? -1 : 1;
    }
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** compareTimestamps, with the native comparison for the common equal-length case. */
function compareTimestampsFast(a: string, b: string): number {
  if (a.length === b.length) return a === b ? 0 : a < b ? -1 : 1;
  return compareTimestamps(a, b);
}

function compareStrings(a: string, b: string): number {
  return a === b ? 0 : a < b ? -1 : 1;
}

// ---------------------------------------------------------------------------------------------
// Per-column helpers

type Value = string | boolean;

function isNull(v: TypedValue | undefined): v is null | undefined | "" {
  return v === null || v === undefined || v === "";
}

/** Canonical form for equality (unique, allowed): typed by the column's parser, decimals without trailing zeros. */
function makeNormaliser(type: ColumnTypeName): (v: Value | number) => Value {
  if (type === "string") return (v) => (typeof v === "string" ? v : String(v));
  const parse = compileValueParser({ type });
  if (type === "decimal") {
    return (v) => {
      const t = parse(v);
      if (t instanceof Invalid || typeof t !== "string") return typeof v === "number" ? String(v) : v;
      if (t.indexOf(".") < 0) return t;
      let end = t.length;
      while (t.charCodeAt(end - 1) === 48) end--;
      if (t.charCodeAt(end - 1) === 46) end--;
      const out = end === t.length ? t : t.slice(0, end);
      return out === "-0" ? "0" : out;
    };
  }
  return (v) => {
    const t = parse(v);
    return t instanceof Invalid || t === null ? (typeof v === "number" ? String(v) : v) : t;
  };
}

/** A comparator of a column's values against a bound compiled from the rule. */
interface Bound {
  text: string;
  /** <0, 0, >0 for value vs bound; undefined when the value cannot be compared. */
  compare(v: Value): number | undefined;
}

function makeBound(type: ColumnTypeName, raw: number | string, rule: string, column: string): Bound {
  const given = typeof raw === "number" ? String(raw) : raw;
  switch (type) {
    case "integer":
    case "decimal": {
      const canonical = compileValueParser({ type: "decimal" })(raw);
      const b: Dec = { s: "", neg: false, is: 0, ie: 0, fs: 0, fe: 0, zero: true };
      if (canonical instanceof Invalid || typeof canonical !== "string" || !scanDecimal(canonical, b)) {
        throw badConfig(`quality rule "${rule}": ${showValue(raw)} is not a number, but column ${column} is ${type}`);
      }
      const parse = compileValueParser({ type: "decimal" });
      return {
        text: given,
        compare(v) {
          if (typeof v !== "string") return undefined;
          if (!scanDecimal(v, scratch)) {
            const t = parse(v); // whitespace, exponents
            if (typeof t !== "string" || !scanDecimal(t, scratch)) return undefined;
          }
          return compareDec(scratch, b);
        },
      };
    }
    case "timestamp":
    case "date": {
      const parse = compileValueParser({ type });
      const canonical = parse(raw);
      if (typeof canonical !== "string") {
        throw badConfig(`quality rule "${rule}": ${showValue(raw)} is not ${a(`valid ${type}`)} bound for column ${column}`);
      }
      if (type === "date") {
        return {
          text: given,
          compare(v) {
            const t = typeof v === "string" && v.length === 10 ? v : parse(v);
            return typeof t === "string" ? compareStrings(t, canonical) : undefined;
          },
        };
      }
      return {
        text: given,
        compare(v) {
          // Typed values are canonical UTC text already: compare those directly.
          const t = typeof v === "string" && (v.length === 24 || v.length === 27) && v.charCodeAt(v.length - 1) === 90 ? v : parse(v);
          return typeof t === "string" ? compareTimestampsFast(t, canonical) : undefined;
        },
      };
    }
    case "string":
      return { text: given, compare: (v) => compareStrings(typeof v === "string" ? v : String(v), given) };
    default:
      throw badConfig(`quality rule "${rule}": min/max do not apply to ${type} column ${column}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Checks

interface RowCheck {
  result: QualityRuleResult;
  column: string;
  /** Fails on null (the `required` check); the others skip nulls. */
  required: boolean;
  /** A reason when the (non-null) value fails. */
  test: ((v: Value, line: number) => string | undefined) | undefined;
  firstLine: number;
  firstReason: string | undefined;
}

interface DatasetCheck {
  result: QualityRuleResult;
  evaluate(rowsChecked: number, now: Date): { passed: boolean; detail: string };
}

/** Where and when the `unique` check moves its values from memory to disk. */
export interface SpillOptions {
  /** A folder for the scratch database (the step's own folder: removed with the run's artifacts). */
  dir: string;
  /** Distinct values kept in memory before spilling (default 1,000,000: about 45 MB for values of 11 characters). */
  maxInMemory?: number;
}

const RECENT_MAX = 100_000;
/** Code units of values kept in memory before spilling whatever their number (64 MB). */
const MAX_UNITS_IN_MEMORY = 32 << 20;

/**
 * Remembers the first line of each value, in memory (ValueTable). Past `maxInMemory` values
 * (when a spill folder is given) everything moves to an on-disk SQLite table, and new values
 * gather in a small in-memory batch written in one transaction, so memory stays bounded whatever
 * the number of rows.
 */
class FirstSeen {
  private table: ValueTable;
  private disk?: { db: Database.Database; get: Database.Statement; put: (entries: [string, number][]) => void; file: string; filter: BloomFilter };

  constructor(
    private readonly spill?: SpillOptions,
    expected?: number,
  ) {
    this.table = new ValueTable(Math.min(expected ?? 0, spill?.maxInMemory ?? 1_000_000));
  }

  /** The first line of `key`, recording `line` when it is new. */
  seen(value: Value, line: number): number | undefined {
    const key = typeof value === "string" ? value : String(value);
    const h = hashOf(key);
    const first = this.table.find(key, h);
    if (first !== -1) return first;
    if (this.disk) {
      // Most values are new: the filter answers "never seen" without touching the disk.
      if (this.disk.filter.mayHave(key)) {
        const row = this.disk.get.get(key) as { line: number } | undefined;
        if (row) return row.line;
      }
      this.disk.filter.add(key);
    }
    this.table.add(key, h, line);
    if (this.disk && this.table.size >= RECENT_MAX) this.flush();
    else if (!this.disk && this.spill && (this.table.size > (this.spill.maxInMemory ?? 1_000_000) || this.table.unitsUsed > MAX_UNITS_IN_MEMORY))
      this.moveToDisk(this.spill.dir);
    return undefined;
  }

  close(): void {
    if (!this.disk) return;
    this.disk.db.close();
    rmSync(this.disk.file, { force: true });
    this.disk = undefined;
  }

  private moveToDisk(dir: string): void {
    const file = join(dir, `unique-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.db`);
    const db = new Database(file);
    db.pragma("journal_mode = OFF");
    db.pragma("synchronous = OFF");
    db.exec("CREATE TABLE seen (k TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID");
    const insert = db.prepare("INSERT OR IGNORE INTO seen (k, line) VALUES (?, ?)");
    const put = db.transaction((entries: [string, number][]) => {
      for (const [k, l] of entries) insert.run(k, l);
    });
    const filter = new BloomFilter();
    for (const k of this.table.keys()) filter.add(k);
    this.disk = { db, get: db.prepare("SELECT line FROM seen WHERE k = ?"), put, file, filter };
    this.flush();
  }

  private flush(): void {
    this.disk!.put(this.table.entries());
    this.table = new ValueTable(RECENT_MAX);
  }
}

/** "a decimal", "an integer". */
function a(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function listText(items: readonly (string | number | boolean)[]): string {
  return `[${items.map((x) => String(x)).join(", ")}]`;
}

/** What a passing row gets: one frozen empty list, not an array per row. */
const PASSES: string[] = Object.freeze([]) as unknown as string[];

/**
 * The part of `rules` a row can be checked against alone: every row-level check but `unique`
 * (which needs the rows before it), without the dataset-level ones. The conversion step checks
 * its rows against these while it has them typed in hand, so the quality step need not decode
 * every column of every row again.
 */
export function screeningRules(rules: readonly QualityRuleSpec[]): QualityRuleSpec[] {
  const out: QualityRuleSpec[] = [];
  for (const r of rules) {
    const { unique: _unique, rowCount: _rowCount, freshness: _freshness, ...rest } = r;
    if (hasRowChecks(rest)) out.push(rest);
  }
  return out;
}

/** Whether a rule holds a row-level check (required, type, unique, min, max, pattern, allowed). */
function hasRowChecks(spec: QualityRuleSpec): boolean {
  return (
    spec.required !== undefined ||
    spec.type !== undefined ||
    spec.unique !== undefined ||
    spec.min !== undefined ||
    spec.max !== undefined ||
    spec.pattern !== undefined ||
    spec.allowed !== undefined
  );
}

/** The columns `checkScreened` reads: those of `unique` and freshness checks. */
export function screenedColumns(rules: readonly QualityRuleSpec[]): string[] {
  const cols = new Set<string>();
  for (const r of rules) {
    if (r.unique === true && r.column !== undefined) cols.add(r.column);
    if (r.freshness !== undefined) cols.add(r.freshness.column);
  }
  return [...cols];
}

/**
 * Builds a checker for `rules` over a dataset with `columns`. Each check of a rule (a rule may
 * combine several on one column) becomes its own report entry, in the order: required, type,
 * unique, min, max, pattern, allowed, row count min, row count max, freshness.
 *
 * `repeats`: for a string column with a `unique` rule, the values that may appear more than once
 * (repeats.ts, found in a pass before the rows are checked); a value outside it is unique without
 * being remembered, so the check holds a few values instead of one per row.
 */
export function createQualityChecker(
  rules: QualityRuleSpec[],
  columns: Column[],
  opts: { now?: Date; spill?: SpillOptions; repeats?: ReadonlyMap<string, ReadonlySet<string>>; expectedRows?: number } = {},
): QualityChecker {
  const uniques: FirstSeen[] = [];
  const byName = new Map(columns.map((c) => [c.name, c] as const));
  const known = columns.map((c) => c.name).join(", ") || "(none)";
  const columnOf = (name: string): Column => {
    const col = byName.get(name);
    if (col === undefined) throw badConfig(`quality rule names column ${name}, which is not in the dataset (columns: ${known})`);
    return col;
  };

  const rowChecks: RowCheck[] = [];
  /** The checks `checkScreened` still runs (unique), in rule order. */
  const unscreened: RowCheck[] = [];
  const datasetChecks: DatasetCheck[] = [];
  const results: QualityRuleResult[] = [];
  const freshness: { column: string; parse: ValueParser | undefined; cmp: (a: string, b: string) => number; newest: string | undefined }[] = [];

  const addRow = (column: string, rule: string, required: boolean, test: RowCheck["test"], needsEarlierRows = false): void => {
    const result: QualityRuleResult = { rule, column, kind: "row", failures: 0, passed: true };
    results.push(result);
    const check = { result, column, required, test, firstLine: 0, firstReason: undefined };
    rowChecks.push(check);
    if (needsEarlierRows) unscreened.push(check);
  };
  const addDataset = (rule: string, column: string | undefined, evaluate: DatasetCheck["evaluate"]): void => {
    const result: QualityRuleResult =
      column === undefined ? { rule, kind: "dataset", failures: 0, passed: true } : { rule, column, kind: "dataset", failures: 0, passed: true };
    results.push(result);
    datasetChecks.push({ result, evaluate });
  };

  rules.forEach((spec, index) => {
    const rowLevel = hasRowChecks(spec);
    if (!rowLevel && spec.rowCount === undefined && spec.freshness === undefined) {
      throw badConfig(`quality rule ${index + 1} has no check (use required, type, unique, min, max, pattern, allowed, rowCount or freshness)`);
    }
    if (rowLevel) {
      if (spec.column === undefined) throw badConfig(`quality rule ${index + 1} has row checks but no column`);
      const col = columnOf(spec.column);
      const name = col.name;
      const quoted = col.type === "string";
      const show = (v: Value): string => showValue(v, quoted);

      if (spec.required === true) addRow(name, `${name} required`, true, undefined);

      if (spec.type !== undefined) {
        const parse = compileValueParser({ type: spec.type, name });
        addRow(name, `${name} is ${spec.type}`, false, (v) => {
          const t = parse(v);
          return t instanceof Invalid ? describeInvalid(name, v, t) : undefined;
        });
      }

      if (spec.unique === true) {
        const norm = makeNormaliser(col.type);
        const seen = new FirstSeen(opts.spill, opts.expectedRows);
        uniques.push(seen);
        const repeats = col.type === "string" ? opts.repeats?.get(name) : undefined;
        addRow(
          name,
          `${name} unique`,
          false,
          (v, line) => {
            const value = norm(v);
            if (repeats && !repeats.has(value as string)) return undefined;
            const first = seen.seen(value, line);
            return first === undefined ? undefined : `${name}: duplicate value ${showValue(v)}, first seen at line ${first}`;
          },
          true,
        );
      }

      if (spec.min !== undefined) {
        const rule = `${name} >= ${spec.min}`;
        const bound = makeBound(col.type, spec.min, rule, name);
        addRow(name, rule, false, (v) => {
          const c = bound.compare(v);
          if (c === undefined) return `${name}: ${show(v)} is not ${a(col.type)}, so it cannot be compared with the minimum ${bound.text}`;
          return c < 0 ? `${name}: ${show(v)} is below the minimum ${bound.text}` : undefined;
        });
      }

      if (spec.max !== undefined) {
        const rule = `${name} <= ${spec.max}`;
        const bound = makeBound(col.type, spec.max, rule, name);
        addRow(name, rule, false, (v) => {
          const c = bound.compare(v);
          if (c === undefined) return `${name}: ${show(v)} is not ${a(col.type)}, so it cannot be compared with the maximum ${bound.text}`;
          return c > 0 ? `${name}: ${show(v)} is above the maximum ${bound.text}` : undefined;
        });
      }

      if (spec.pattern !== undefined) {
        let re: RegExp;
        try {
          re = new RegExp(spec.pattern);
        } catch (err) {
          throw badConfig(`quality rule "${name} matches ${spec.pattern}": the pattern does not compile (${(err as Error).message})`);
        }
        addRow(name, `${name} matches ${spec.pattern}`, false, (v) =>
          re.test(typeof v === "string" ? v : String(v)) ? undefined : `${name}: ${show(v)} does not match ${spec.pattern}`,
        );
      }

      if (spec.allowed !== undefined) {
        const rule = `${name} in ${listText(spec.allowed)}`;
        const norm = makeNormaliser(col.type);
        const parse = col.type === "string" ? undefined : compileValueParser({ type: col.type });
        const allowed = new Set<Value>();
        for (const item of spec.allowed) {
          if (parse !== undefined && parse(item) instanceof Invalid) {
            throw badConfig(`quality rule "${rule}": ${showValue(item)} is not ${a(col.type)}, the type of column ${name}`);
          }
          allowed.add(norm(item));
        }
        addRow(name, rule, false, (v) => (allowed.has(norm(v)) ? undefined : `${name}: ${show(v)} is not allowed (${rule})`));
      }
    }

    if (spec.rowCount !== undefined) {
      const { min, max } = spec.rowCount;
      if (min === undefined && max === undefined) throw badConfig(`quality rule ${index + 1}: rowCount needs min, max or both`);
      if (min !== undefined) {
        addDataset(`row count >= ${min}`, undefined, (count) => ({ passed: count >= min, detail: `${count} row${count === 1 ? "" : "s"}` }));
      }
      if (max !== undefined) {
        addDataset(`row count <= ${max}`, undefined, (count) => ({ passed: count <= max, detail: `${count} row${count === 1 ? "" : "s"}` }));
      }
    }

    if (spec.freshness !== undefined) {
      const { column, maxAge } = spec.freshness;
      const col = columnOf(column);
      if (col.type !== "timestamp" && col.type !== "date" && col.type !== "string") {
        throw badConfig(`quality rule "${column} newer than ${maxAge}": column ${column} is ${col.type}, not a timestamp or date`);
      }
      const maxAgeMs = parseDuration(maxAge);
      if (maxAgeMs === undefined)
        throw badConfig(`quality rule "${column} newer than ${maxAge}": maxAge ${JSON.stringify(maxAge)} is not a duration (e.g. 30m, 24h, 7d)`);
      const type = col.type === "date" ? "date" : "timestamp";
      // Typed timestamp and date columns hold canonical text already; string columns are parsed.
      const parse = col.type === "string" ? compileValueParser({ type }) : undefined;
      const tracker = { column, parse, cmp: type === "date" ? compareStrings : compareTimestampsFast, newest: undefined as string | undefined };
      freshness.push(tracker);
      addDataset(`${column} newer than ${maxAge}`, column, (_count, now) => {
        if (tracker.newest === undefined) return { passed: false, detail: `no ${type} values in ${column}` };
        const newestMs = Date.parse(type === "date" ? `${tracker.newest}T00:00:00Z` : tracker.newest);
        const age = now.getTime() - newestMs;
        return {
          passed: age <= maxAgeMs,
          detail: `newest ${tracker.newest} is ${age < 0 ? `${formatDuration(-age)} in the future` : `${formatDuration(age)} old`} (limit ${maxAge})`,
        };
      });
    }
  });

  const nFresh = freshness.length;

  const counts = { rowsChecked: 0, rowsFailed: 0 };
  const track = (row: TypedRow): void => {
    for (let k = 0; k < nFresh; k++) {
      const f = freshness[k]!;
      const v = row[f.column];
      if (isNull(v)) continue;
      const t = f.parse === undefined ? v : f.parse(v);
      if (typeof t === "string" && (f.newest === undefined || f.cmp(t, f.newest) > 0)) f.newest = t;
    }
  };
  const all = compileRowChecks(rowChecks, counts, nFresh > 0 ? track : undefined);
  const screenedOnly = compileRowChecks(unscreened, counts, nFresh > 0 ? track : undefined);

  return {
    check: all,
    checkScreened: screenedOnly,
    rowLevel: rowChecks.length > 0 || nFresh > 0,
    countPassing(n) {
      counts.rowsChecked += n;
    },

    finish(): QualityReport {
      for (const u of uniques) u.close();
      const now = opts.now ?? new Date();
      for (const c of rowChecks) {
        const failures = c.result.failures;
        c.result.passed = failures === 0;
        if (failures > 0) c.result.detail = `${failures} row${failures === 1 ? "" : "s"} failed, the first at line ${c.firstLine}: ${c.firstReason}`;
        else delete c.result.detail;
      }
      let datasetPassed = 0;
      for (const d of datasetChecks) {
        const { passed, detail } = d.evaluate(counts.rowsChecked, now);
        d.result.passed = passed;
        d.result.failures = passed ? 0 : 1;
        d.result.detail = detail;
        if (passed) datasetPassed++;
      }
      return {
        rowsChecked: counts.rowsChecked,
        rowsFailed: counts.rowsFailed,
        score: score(counts.rowsChecked, counts.rowsFailed, datasetPassed, datasetChecks.length),
        rules: results.map((r) => ({ ...r })),
      };
    },
  };
}

/**
 * The row checks as one generated function: straight-line code per check, reading a constant
 * property name, calling its own test (so every call site sees one function), instead of a loop
 * reading `row[check.column]` for each check. On 300k trade rows the trade schema's four
 * screening checks took 190–255 ns per row in the loop, about 80 of them for any single check.
 * Reasons come in check order; `counts` and each check's result are updated as the loop did.
 */
function compileRowChecks(
  checks: readonly RowCheck[],
  counts: { rowsChecked: number; rowsFailed: number },
  track: ((row: TypedRow) => void) | undefined,
): (row: TypedRow, line: number) => string[] {
  const lines: string[] = ["counts.rowsChecked++;", "let reasons; let v; let t;"];
  checks.forEach((c, k) => {
    const key = JSON.stringify(c.column);
    lines.push(c.column in Object.prototype ? `v = Object.hasOwn(row, ${key}) ? row[${key}] : undefined;` : `v = row[${key}];`);
    const onNull = c.required ? `reasons = fail(${k}, ${JSON.stringify(`${c.column}: required but empty`)}, line, reasons);` : "";
    const onValue = c.test ? `t = test${k}(v, line); if (t !== undefined) reasons = fail(${k}, t, line, reasons);` : "";
    lines.push(`if (v === null || v === undefined || v === "") { ${onNull} } else { ${onValue} }`);
  });
  if (track) lines.push("track(row);");
  lines.push("if (reasons === undefined) return PASSES;", "counts.rowsFailed++;", "return reasons;");
  const fail = (k: number, reason: string, line: number, reasons: string[] | undefined): string[] => {
    const c = checks[k]!;
    if (c.result.failures++ === 0) {
      c.firstLine = line;
      c.firstReason = reason;
    }
    (reasons ??= []).push(reason);
    return reasons;
  };
  const tests = checks.map((c, k) => `test${k}`);
  const factory = new Function("counts", "fail", "track", "PASSES", ...tests, `return function checkRow(row, line) {\n${lines.join("\n")}\n};`) as (
    ...args: unknown[]
  ) => (row: TypedRow, line: number) => string[];
  return factory(counts, fail, track, PASSES, ...checks.map((c) => c.test));
}

/**
 * The quality score, 0..1 rounded to 4 decimals:
 *
 *   score = (rows passing every row-level check / rows checked) × (dataset checks passed / dataset checks)
 *
 * With no rows the row part is 1 (a `rowCount: { min }` check is what fails an empty dataset);
 * with no dataset checks the dataset part is 1. So one failing dataset check out of two halves
 * the score, and 5 bad rows out of 100 take 0.05 off the row part.
 */
export function score(rowsChecked: number, rowsFailed: number, datasetPassed: number, datasetChecks: number): number {
  const rowPart = rowsChecked === 0 ? 1 : (rowsChecked - rowsFailed) / rowsChecked;
  const datasetPart = datasetChecks === 0 ? 1 : datasetPassed / datasetChecks;
  return Math.round(rowPart * datasetPart * 10_000) / 10_000;
}

/**
 * One unit of format conversion: read a file (or a record-aligned byte range of a CSV file),
 * type every record to the target schema and write the good rows as a stage part (see
 * formats/stage.ts) and the rejects as quarantine NDJSON. The conversion step runs units on a
 * pool of worker threads (convert-worker.ts) or, for small inputs, in its own thread.
 *
 * Before the first row is typed, the columns the file declares (CSV header, Parquet/Arrow
 * schema) are checked against the schema: a declared column whose source column is missing
 * (and that has no default) fails the unit with BAD_INPUT naming the file, the missing columns
 * and the closest header names; columns the schema does not use are `extraColumns` (ignored and
 * reported, an error, or kept as string columns). Schemaless formats (NDJSON, JSON arrays) are
 * checked after reading: a declared column no record holds is missing.
 *
 * Unit specs and results are plain data: they cross the thread boundary by structured clone.
 */
import { closest, distance } from "fastest-levenshtein";
import { createWriteStream, type WriteStream } from "node:fs";
import { SluiceError } from "../../errors.js";
import { openReader, readCsvRange, type CsvRange, type FileFormat, type RecordBatch } from "../../formats/index.js";
import { LINE_FIELD, openStageWriter, rowHashKind } from "../../formats/stage.js";
import type { QualityRuleSpec, QuarantinedRecord, TargetSchemaSpec, TypedRow } from "./model.js";
import { createQualityChecker } from "./quality.js";
import { compileSchema } from "./typing.js";

export type ExtraColumns = "ignore" | "error" | "keep";

/** How a raw file is read (format options a dataset part carries). */
export interface ReadSpec {
  delimiter?: string;
  quote?: string;
  header?: boolean;
  columns?: string[];
  encoding?: string;
}

export interface ConvertUnitSpec {
  id: number;
  /** The file read (a staged copy or the original). */
  path: string;
  format: FileFormat;
  /** The user's name for the input: in every reason and error. */
  source: string;
  range?: CsvRange;
  read: ReadSpec;
  /** The effective schema (extra columns already added for `keep`). */
  schema: TargetSchemaSpec;
  extraColumns: ExtraColumns;
  /** Records carry their source position in a `_line` field (parts written by an earlier step). */
  lineField: boolean;
  step: string;
  out: string;
  quarantine: string;
  batchSize: number;
  /**
   * Quality rules to screen the typed rows against (quality.ts `screeningRules`): the `_line`s
   * of the rows that break one come back in `flagged`, so the quality step checks every column
   * of those rows only. The rows are staged either way; quarantining them is the quality step's.
   */
  screen?: QualityRuleSpec[];
}

export interface ConvertUnitResult {
  rowsIn: number;
  rowsOut: number;
  rejected: number;
  partBytes: number;
  /** Columns the file declares (CSV header, Parquet/Arrow schema); for schemaless formats, the fields seen. */
  columns: string[];
  /** Columns of the file the schema does not use. */
  extras: string[];
  /** With `screen`: the `_line`s of the staged rows that break a screening rule (absent when there were too many to list). */
  flagged?: number[];
}

/**
 * Screening stops listing a unit's flagged rows past this share of its rows (and MIN_FLAGGED),
 * so the list stays small beside the data (a rule most rows break would otherwise list millions);
 * that unit's rows are then checked in full by the quality step, as without a screen.
 */
const MAX_FLAGGED_SHARE = 0.02;
const MIN_FLAGGED = 1_000;

/** Most distinct field names remembered per schemaless unit (for the missing-column check). */
const MAX_FIELDS = 10_000;

export async function convertUnit(unit: ConvertUnitSpec, onProgress: (rows: number, bytes: number) => void = () => undefined): Promise<ConvertUnitResult> {
  const schema = compileSchema(unit.schema);
  const check = columnCheck(unit);
  const textual = unit.format === "csv" || unit.format === "tsv";
  const csv = { ...unit.read, ...(unit.format === "tsv" ? { delimiter: unit.read.delimiter ?? "\t" } : {}) };
  const base = { batchSize: unit.batchSize, name: unit.source, ...(unit.read.encoding ? { encoding: unit.read.encoding } : {}) };
  const reader: AsyncIterable<RecordBatch> =
    textual && unit.range
      ? readCsvRange(unit.path, unit.range, { ...csv, ...base })
      : openReader(unit.path, { format: unit.format, ...base, ...(textual ? csv : {}) });

  // Set to undefined once too many rows are flagged: then no list comes back.
  let screen = unit.screen && unit.screen.length > 0 ? createQualityChecker(unit.screen, schema.columns) : undefined;
  const flagged: number[] = [];
  const writer = await openStageWriter(unit.out, schema.columns, rowHashKind(schema.key));
  const quarantine = lazyNdjson(unit.quarantine);
  const seen = new Set<string>();
  let declared: readonly string[] | undefined;
  let rowsIn = 0;
  let rowsOut = 0;
  let rejected = 0;
  let estimated = 0;
  const reject = (line: number, reasons: string[], record: unknown): void => {
    rejected++;
    quarantine.add({ source: unit.source, line, step: unit.step, reasons, record } satisfies QuarantinedRecord);
  };
  try {
    for await (const b of reader) {
      if (b.columns && !declared) {
        declared = b.columns;
        check.header(declared);
      }
      rowsIn += b.rows.length + b.errors.length;
      for (const e of b.errors) {
        reject(e.line, [e.reason], e.raw);
        if (textual) estimated += e.raw.length + 1;
      }
      const good: TypedRow[] = [];
      const lines: number[] = [];
      for (let i = 0; i < b.rows.length; i++) {
        const raw = b.rows[i]!;
        let line = b.lines[i]!;
        if (unit.lineField) {
          // A number in NDJSON parts, text in CSV ones; quarantined records show it as a number.
          const staged = raw[LINE_FIELD];
          const n = typeof staged === "number" ? staged : typeof staged === "string" && staged !== "" ? Number(staged) : NaN;
          if (Number.isInteger(n)) line = raw[LINE_FIELD] = n;
        }
        if (!declared) {
          for (const k in raw) if (seen.size < MAX_FIELDS) seen.add(k);
          const stray = check.stray(raw);
          if (stray !== undefined) {
            reject(line, [stray], raw);
            continue;
          }
        } else if (textual) estimated += rowText(raw);
        const r = schema.convert(raw);
        if (r.ok) {
          good.push(r.row);
          lines.push(line);
          if (screen !== undefined && screen.check(r.row, line).length > 0 && flagged.push(line) > Math.max(MIN_FLAGGED, rowsOut * MAX_FLAGGED_SHARE))
            screen = undefined; // too many to list: the quality step checks this unit's rows in full
        } else reject(line, r.reasons, raw);
      }
      if (good.length > 0) await writer.write(good, lines);
      rowsOut += good.length;
      onProgress(rowsIn, textual ? estimated : 0);
    }
    if (!declared) check.fields(seen);
  } catch (err) {
    await writer.close().catch(() => undefined);
    await quarantine.close().catch(() => undefined);
    throw err;
  }
  const { bytes } = await writer.close();
  await quarantine.close();
  return {
    rowsIn,
    rowsOut,
    rejected,
    partBytes: bytes,
    columns: declared ? [...declared] : [...seen],
    extras: check.extras,
    ...(screen !== undefined ? { flagged } : {}),
  };
}

/** About the bytes a CSV record took in its file: its values plus one separator each. */
export function rowText(row: Record<string, unknown>): number {
  let n = 0;
  for (const k in row) {
    const v = row[k];
    n += (typeof v === "string" ? v.length : 0) + 1;
  }
  return n;
}

interface ColumnCheck {
  /** Checks a declared header (throws BAD_INPUT for missing columns or refused extras). */
  header(columns: readonly string[]): void;
  /** Schemaless records: a reason when the record has a field `keep` cannot hold. */
  stray(raw: Record<string, unknown>): string | undefined;
  /** Schemaless records, after the last one: the fields seen. */
  fields(seen: ReadonlySet<string>): void;
  extras: string[];
}

/** The header-against-schema rules of a unit. */
function columnCheck(unit: ConvertUnitSpec): ColumnCheck {
  const cols = unit.schema.columns;
  const sources = new Set(cols.map((c) => c.from ?? c.name));
  const needed = cols.filter((c) => c.default === undefined).map((c) => c.from ?? c.name);
  const ignore = unit.lineField ? new Set([LINE_FIELD]) : new Set<string>();
  const extras: string[] = [];
  const missingError = (missing: string[], have: readonly string[], how: string): SluiceError => {
    const hints = missing.map((m) => {
      const hint = suggest(m, have);
      return hint ? `${m} (did you mean ${hint}?)` : m;
    });
    const list = have.length > 12 ? `${have.slice(0, 12).join(", ")}, … (${have.length} in all)` : have.join(", ") || "(none)";
    return new SluiceError(
      "BAD_INPUT",
      `${unit.source}: the schema's column${missing.length === 1 ? "" : "s"} ${hints.join(", ")} ${missing.length === 1 ? "is" : "are"} not in the file (${how}: ${list}); ` +
        `rename with from:, give a default:, or fix the file`,
      { retryable: false, details: { file: unit.source, missing, columns: have, added: have.filter((h) => !sources.has(h) && !ignore.has(h)) } },
    );
  };
  const takeExtras = (have: Iterable<string>): void => {
    for (const h of have) if (!sources.has(h) && !ignore.has(h) && !extras.includes(h)) extras.push(h);
    if (extras.length > 0 && unit.extraColumns === "error")
      throw new SluiceError(
        "BAD_INPUT",
        `${unit.source}: column${extras.length === 1 ? "" : "s"} ${extras.join(", ")} ${extras.length === 1 ? "is" : "are"} not in the schema (extraColumns: error); add ${extras.length === 1 ? "it" : "them"} to the schema or set extraColumns: ignore`,
        { retryable: false, details: { file: unit.source, extras } },
      );
  };
  return {
    extras,
    header(have) {
      const present = new Set(have);
      const missing = needed.filter((n) => !present.has(n));
      if (missing.length > 0) throw missingError(missing, have, "its header has");
      takeExtras(have);
    },
    stray(raw) {
      if (unit.extraColumns !== "keep") return undefined;
      for (const k in raw) {
        if (!sources.has(k) && !ignore.has(k))
          return `field ${JSON.stringify(k)} is not in the schema (extraColumns: keep took the extra columns from the first records of each file)`;
      }
      return undefined;
    },
    fields(seen) {
      if (seen.size === 0) return; // no records at all: nothing to hold a column
      const missing = needed.filter((n) => !seen.has(n));
      if (missing.length > 0) throw missingError(missing, [...seen], "its records have the fields");
      takeExtras(seen);
    },
  };
}

/** The header name a user most likely meant: same name in another case, else the closest one. */
export function suggest(name: string, have: readonly string[]): string | undefined {
  if (have.length === 0) return undefined;
  const norm = (s: string) => s.toLowerCase().replace(/[\s_\-.]+/g, "");
  const same = have.find((h) => norm(h) === norm(name));
  if (same !== undefined) return same;
  const best = closest(name, [...have]);
  const d = distance(name.toLowerCase(), best.toLowerCase());
  if (d <= Math.max(2, Math.floor(name.length / 3))) return best;
  // An abbreviation ("tmax" for temp_max): the letters of one, in order, in the other.
  const n = norm(name);
  const abbreviated = have.filter((h) => {
    const m = norm(h);
    const [short, long] = n.length <= m.length ? [n, m] : [m, n];
    return short.length >= 2 && long.length <= short.length * 3 && isSubsequence(short, long);
  });
  return abbreviated.sort((a, b) => a.length - b.length)[0];
}

function isSubsequence(short: string, long: string): boolean {
  let i = 0;
  for (let j = 0; j < long.length && i < short.length; j++) if (long[j] === short[i]) i++;
  return i === short.length;
}

/** NDJSON lines appended to a file opened on the first record. */
function lazyNdjson(path: string): { add(rec: QuarantinedRecord): void; close(): Promise<void> } {
  let out: WriteStream | undefined;
  let failed: Error | undefined;
  return {
    add(rec) {
      if (!out) {
        out = createWriteStream(path);
        out.on("error", (e) => (failed = e));
      }
      out.write(JSON.stringify(rec) + "\n");
    },
    close: () =>
      new Promise<void>((res, rej) => {
        if (!out) return res();
        out.end(() => (failed ? rej(new SluiceError("IO_ERROR", `cannot write ${path}: ${failed.message}`)) : res()));
      }),
  };
}

/**
 * The typed-row vocabulary every layer shares: column types, typed values, quarantined records.
 *
 * It lives in formats/ (the lowest data layer) so that destinations, the stage format and the
 * actions all import it from below; `actions/batch/model.ts` re-exports it for the actions.
 *
 * Typed values are JSON-safe and exact: integers and decimals travel as canonical strings (never
 * through a float), timestamps as UTC ISO-8601 strings, dates as YYYY-MM-DD:
 * - string: text as given (after optional trim)
 * - integer: canonical decimal digits, e.g. "-42" (a string: BIGINT range, no float rounding)
 * - decimal: canonical digits with exactly `scale` fraction digits, e.g. "189.2500"
 * - boolean: true / false
 * - timestamp: UTC ISO-8601 with milliseconds, e.g. "2026-11-02T09:30:00.125Z"
 *   (microseconds kept when the input has them: "2026-11-02T09:30:00.125001Z")
 * - date: "YYYY-MM-DD"
 * - null: absent or empty
 */

export const COLUMN_TYPES = ["string", "integer", "decimal", "boolean", "timestamp", "date"] as const;
export type ColumnTypeName = (typeof COLUMN_TYPES)[number];

export type TypedValue = string | boolean | null;
export type TypedRow = Record<string, TypedValue>;

export interface Column {
  name: string;
  type: ColumnTypeName;
  /** Fraction digits of a decimal. */
  scale?: number;
}

/** A record that did not make it, kept with where it came from and every reason. */
export interface QuarantinedRecord {
  /** Source file (or URL / table) the record came from: the user's name for it, never a staged copy. */
  source: string;
  /** 1-based line where the record starts (row index for Parquet/Arrow/database sources). */
  line: number;
  /** Step that rejected it. */
  step: string;
  reasons: string[];
  /** The record as read (raw text for malformed records, the parsed object otherwise). */
  record: unknown;
}

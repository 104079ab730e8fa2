/**
 * The batch data plane's shared vocabulary: typed values, columns, quarantined records.
 *
 * Typed values are JSON-safe and exact: integers and decimals travel as canonical strings
 * (never through a float), timestamps as UTC ISO-8601 strings, dates as YYYY-MM-DD.
 */
import type { z } from "zod";
import type { ColumnType, QualityRule, TargetSchema } from "../inputs.js";

export type ColumnTypeName = z.infer<typeof ColumnType>;
export type TargetSchemaSpec = z.infer<typeof TargetSchema>;
export type QualityRuleSpec = z.infer<typeof QualityRule>;

/**
 * A typed value as staged between steps and handed to destinations:
 * - string: text as given (after optional trim)
 * - integer: canonical decimal digits, e.g. "-42" (a string: BIGINT range, no float rounding)
 * - decimal: canonical digits with exactly `scale` fraction digits, e.g. "189.2500"
 * - boolean: true / false
 * - timestamp: UTC ISO-8601 with milliseconds, e.g. "2026-11-02T09:30:00.125Z"
 *   (microseconds kept when the input has them: "2026-11-02T09:30:00.125001Z")
 * - date: "YYYY-MM-DD"
 * - null: absent or empty
 */
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
  /** Source file (or URL / table) the record came from. */
  source: string;
  /** 1-based line where the record starts (row index for Parquet/database sources). */
  line: number;
  /** Step that rejected it. */
  step: string;
  reasons: string[];
  /** The record as read (raw text for malformed records, the parsed object otherwise). */
  record: unknown;
}

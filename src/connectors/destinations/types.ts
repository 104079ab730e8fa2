/**
 * The storage-destination contract: where validated, typed rows end up.
 *
 * Every destination adds the metadata columns `_sluice_hash`, `_sluice_run_id` and
 * `_sluice_loaded_at`, upserts by the declared key (or the content hash), and keeps quarantined
 * records next to the data. `stored + duplicate == rows.length` for every `write`.
 */
import type { Column, QuarantinedRecord, TypedRow } from "../../formats/typed.js";
import type { StageChunk } from "../../formats/stage.js";

export interface DestinationTarget {
  /** `table`, or `schema.table` for PostgreSQL. Ignored by file destinations (the file is the target). */
  table: string;
  columns: Column[];
  /** Key columns; `undefined` (or empty) means the content hash `_sluice_hash` is the key. */
  key: string[] | undefined;
}

export interface WriteContext {
  runId: string;
  step: string;
}

export interface WriteCounts {
  /** Rows inserted, or updated because their content changed. */
  stored: number;
  /** Rows already present with the same content, or superseded by a later row of the same batch. */
  duplicate: number;
  /**
   * Rows this destination cannot hold exactly (a decimal with more digits than SQLite's REAL
   * keeps): not written, each with its reasons; `stored + duplicate + rejected.length` is the
   * batch. `index` is the row's place in the batch, `line` its source position (staged rows).
   */
  rejected?: { index: number; line?: number; reasons: string[]; record: TypedRow }[];
}

export type DestinationKind = "sqlite" | "postgres" | "file";

export interface Destination {
  readonly kind: DestinationKind;
  /** URL or path without credentials, for messages. */
  readonly display: string;
  /** Create the table (and its quarantine table) from the columns, or check an existing one is compatible. */
  prepare(target: DestinationTarget): Promise<void>;
  /** Upsert one batch in ONE transaction. */
  write(rows: TypedRow[], ctx: WriteContext): Promise<WriteCounts>;
  /**
   * Upsert staged rows (formats/stage.ts lines whose values are in the target's column order,
   * with their content hashes) in ONE transaction: the batch plane's path, which need not build
   * an object per row.
   */
  writeStaged(chunk: StageChunk, ctx: WriteContext): Promise<WriteCounts>;
  /** Keep quarantined records next to the destination (table `<table>_quarantine`, or `<file>.quarantine.ndjson`). */
  writeQuarantine(records: QuarantinedRecord[], ctx: WriteContext): Promise<void>;
  /** Row count of the target table. */
  count(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Keyset paging of runs, shared by both dialects: the cursor, the slim columns and their mapping.
 *
 * OFFSET paging reads and throws away every row before the page, so page 500 of 50 costs 25,000
 * rows (Airflow's grid timing out at ~8k runs, Argo's list at a few hundred workflows). A keyset
 * cursor is the last row's (created_at, id): the next page is the rows strictly below it in the
 * index order, found by one index seek whatever the page number. Ids break ties between runs
 * created in the same millisecond, so every run is on exactly one page.
 */
import { SluiceError } from "../errors.js";
import type { RunRowCounts, RunStatus, RunSummary } from "./types.js";
import type { Row } from "./rows.js";

/** What a list row needs; the spec (often tens of kB) and the params stay in the table. */
export const SUMMARY_COLUMNS =
  "id, workflow, workflow_version, status, trigger, created_at, started_at, ended_at, error_code, error_message, rows_in, rows_stored, rows_quarantined, rows_duplicate";

export interface Cursor {
  createdAt: string;
  id: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.createdAt}\n${c.id}`, "utf8").toString("base64url");
}

/** A cursor from a URL: anything else than what encodeCursor made is refused, never passed on to SQL as is. */
export function decodeCursor(text: string): Cursor {
  const parts = Buffer.from(text, "base64url").toString("utf8").split("\n");
  if (parts.length !== 2 || !/^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(parts[0]!) || parts[1]!.length === 0)
    throw new SluiceError("BAD_INPUT", "the page cursor is not valid; start again from the first page", { details: { field: "query.after" } });
  return { createdAt: parts[0]!, id: parts[1]! };
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export function toRunSummary(row: Row): RunSummary {
  const counts = [num(row.rows_in), num(row.rows_stored), num(row.rows_quarantined), num(row.rows_duplicate)];
  const rows: RunRowCounts | null =
    counts[0] === null ? null : { in: counts[0]!, stored: counts[1] ?? 0, quarantined: counts[2] ?? 0, duplicate: counts[3] ?? 0 };
  return {
    id: row.id as string,
    workflow: row.workflow as string,
    version: num(row.workflow_version),
    status: row.status as RunStatus,
    trigger: row.trigger ? JSON.parse(row.trigger as string) : null,
    createdAt: row.created_at as string,
    startedAt: (row.started_at as string) ?? null,
    endedAt: (row.ended_at as string) ?? null,
    error: row.error_code ? { code: row.error_code as string, message: (row.error_message as string) ?? "" } : null,
    rows,
  };
}

/** The page from `limit + 1` rows read: the extra row only says that there is a next page. */
export function toPage(rows: Row[], limit: number): { runs: RunSummary[]; next: string | null } {
  const runs = rows.slice(0, limit).map(toRunSummary);
  const last = runs.at(-1);
  return { runs, next: rows.length > limit && last ? encodeCursor({ createdAt: last.createdAt, id: last.id }) : null };
}

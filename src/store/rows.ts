/**
 * Database rows → store records, shared by both dialects (the column names and encodings are
 * the same: ISO text times, JSON text, epoch-ms integers). Only booleans differ: SQLite stores
 * 0/1, PostgreSQL a BOOLEAN, so both are accepted.
 */
import type { Workflow } from "../spec/schema.js";
import type { AttemptRecord, ErrorInfo, RunRecord, RunStatus, StepRecord, StepStatus } from "./types.js";

export type Row = Record<string, unknown>;

const error = (row: Row): ErrorInfo | null =>
  row.error_code ? { code: row.error_code as string, message: (row.error_message as string) ?? "" } : null;

export function toRun(row: Row): RunRecord {
  return {
    id: row.id as string,
    workflow: row.workflow as string,
    spec: JSON.parse(row.spec as string) as Workflow,
    source: (row.source as string) ?? null,
    params: JSON.parse(row.params as string) as Record<string, unknown>,
    trigger: row.trigger ? JSON.parse(row.trigger as string) : null,
    status: row.status as RunStatus,
    createdAt: row.created_at as string,
    startedAt: (row.started_at as string) ?? null,
    endedAt: (row.ended_at as string) ?? null,
    deadlineAt: (row.deadline_at as string) ?? null,
    error: error(row),
    cancelRequested: row.cancel_requested === 1 || row.cancel_requested === true,
    leaseOwner: (row.lease_owner as string) ?? null,
    leaseExpiresAt: (row.lease_expires_at as number) ?? null,
  };
}

export function toStep(row: Row): StepRecord {
  return {
    runId: row.run_id as string,
    name: row.name as string,
    idx: row.idx as number,
    status: row.status as StepStatus,
    attempts: row.attempts as number,
    notBefore: (row.not_before as number) ?? null,
    startedAt: (row.started_at as string) ?? null,
    endedAt: (row.ended_at as string) ?? null,
    outputs: row.outputs ? JSON.parse(row.outputs as string) : null,
    error: error(row),
  };
}

export function toAttempt(row: Row): AttemptRecord {
  return {
    runId: row.run_id as string,
    step: row.step as string,
    n: row.n as number,
    status: row.status as AttemptRecord["status"],
    startedAt: row.started_at as string,
    endedAt: (row.ended_at as string) ?? null,
    error: error(row),
    owner: (row.owner as string) ?? null,
  };
}

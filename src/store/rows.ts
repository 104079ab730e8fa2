/**
 * Database rows → store records, shared by both dialects (the column names and encodings are
 * the same: ISO text times, JSON text, epoch-ms integers). Only booleans differ: SQLite stores
 * 0/1, PostgreSQL a BOOLEAN, so both are accepted.
 */
import type { Workflow } from "../spec/schema.js";
import { asErrorCode, boundedDetails } from "../errors.js";
import type { AuditCheckpoint, AuditEntry, AuditOutcome } from "../crypto/audit-chain.js";
import type {
  AttemptRecord,
  AttemptUsage,
  ErrorInfo,
  EventRecord,
  FireRecord,
  RunRecord,
  RunStatus,
  SharedStateRecord,
  StepRecord,
  StepStatus,
  WorkflowVersion,
} from "./types.js";

export type Row = Record<string, unknown>;

/** The error columns; `error_details` (attempts and steps only) is JSON text, absent on runs. */
const error = (row: Row): ErrorInfo | null => {
  if (!row.error_code) return null;
  const info: ErrorInfo = { code: asErrorCode(row.error_code, "INTERNAL"), message: (row.error_message as string) ?? "" };
  if (typeof row.error_details === "string") info.details = JSON.parse(row.error_details) as Record<string, unknown>;
  return info;
};

/** An error's details as the value of the error_details column (JSON text of at most ~4 KB, or null). */
export function detailsColumn(e: ErrorInfo | null | undefined): string | null {
  const d = e?.details ? boundedDetails(e.details) : undefined;
  return d ? JSON.stringify(d) : null;
}

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
    version: row.workflow_version === null || row.workflow_version === undefined ? null : Number(row.workflow_version),
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
    retryBase: (row.retry_base as number) ?? 0,
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
    usage: usage(row),
  };
}

/** The usage columns (one attempt's resource figures), null when none were recorded. */
const usage = (row: Row): AttemptUsage | null =>
  row.usage_scope
    ? {
        cpuMs: row.cpu_ms as number,
        peakMemoryBytes: (row.peak_memory_bytes as number) ?? null,
        readBytes: (row.read_bytes as number) ?? null,
        writtenBytes: (row.written_bytes as number) ?? null,
        scope: row.usage_scope as AttemptUsage["scope"],
      }
    : null;

/** An attempt end's usage as the values of the usage columns (all null when not measured). */
export function usageColumns(u: AttemptUsage | null | undefined) {
  return {
    cpuMs: u?.cpuMs ?? null,
    peakMemoryBytes: u?.peakMemoryBytes ?? null,
    readBytes: u?.readBytes ?? null,
    writtenBytes: u?.writtenBytes ?? null,
    usageScope: u?.scope ?? null,
  };
}

export function toWorkflowVersion(row: Row): WorkflowVersion {
  return {
    name: row.name as string,
    version: row.version as number,
    spec: JSON.parse(row.spec as string) as Workflow,
    yaml: row.yaml as string,
    source: (row.source as string) ?? null,
    createdAt: row.created_at as string,
    current: row.current === 1 || row.current === true,
  };
}

/** `run_ids` is a comma-joined aggregate of the runs whose event_id is this event. */
export function toEvent(row: Row): EventRecord {
  return {
    id: row.id as string,
    name: row.name as string,
    data: JSON.parse(row.data as string),
    source: row.source as string,
    createdAt: row.created_at as string,
    runIds: row.run_ids ? (row.run_ids as string).split(",").sort() : [],
  };
}

export function toFire(row: Row): FireRecord {
  return {
    workflow: row.workflow as string,
    triggerKey: row.trigger_key as string,
    fireAt: row.fire_at as string,
    runId: (row.run_id as string) ?? null,
    outcome: (row.outcome as string) ?? null,
    recordedAt: row.recorded_at as string,
  };
}

/** The value is JSON text in both dialects (PostgreSQL selects its JSONB `::text`). */
export function toSharedState(row: Row): SharedStateRecord {
  return {
    namespace: row.namespace as string,
    key: row.key as string,
    value: JSON.parse(row.value as string),
    version: Number(row.version),
    updatedAt: row.updated_at as string,
  };
}

export function toAuditEntry(row: Row): AuditEntry {
  return {
    seq: Number(row.seq),
    time: row.time as string,
    actor: row.actor as string,
    event: row.event as string,
    outcome: row.outcome as AuditOutcome,
    origin: row.origin as string,
    resource: row.resource as string,
    runId: (row.run_id as string) ?? null,
    step: (row.step as string) ?? null,
    details: row.details ? (JSON.parse(row.details as string) as Record<string, unknown>) : null,
    prevHash: row.prev_hash as string,
    hash: row.hash as string,
  };
}

export function toAuditCheckpoint(row: Row): AuditCheckpoint {
  return {
    count: Number(row.count),
    head: row.head as string,
    time: row.time as string,
    keyId: row.key_id as string,
    signature: row.signature as string,
    runId: (row.run_id as string) ?? null,
  };
}

/** An entry's columns in insert order (both dialects). */
export function auditColumns(e: AuditEntry): unknown[] {
  return [
    e.seq,
    e.time,
    e.actor,
    e.event,
    e.outcome,
    e.origin,
    e.resource,
    e.runId,
    e.step,
    e.details === null ? null : JSON.stringify(e.details),
    e.prevHash,
    e.hash,
  ];
}

/**
 * The JSON shapes the API returns, as zod schemas (so the OpenAPI document describes exactly
 * what handlers produce), and the mapping from store records to them. Store records carry
 * internals (leases, whole specs) that list endpoints do not need; these views decide what a
 * client sees.
 */
import { z } from "@hono/zod-openapi";
import { TRIGGER_TYPES, type EventRecord, type RunRecord, type WorkflowVersion } from "../store/types.js";

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: "NOT_FOUND" }),
      message: z.string(),
      field: z.string().optional().openapi({ description: "The request field at fault: query.limit, path.id, body.params…" }),
      problems: z
        .array(z.object({ file: z.string(), line: z.number().int(), col: z.number().int(), message: z.string() }))
        .optional()
        .openapi({ description: "Positioned problems of a refused workflow (SPEC_INVALID)." }),
    }),
  })
  .openapi("Error");

export const RUN_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"] as const;
export const RunStatusSchema = z.enum(RUN_STATUSES).openapi("RunStatus");

const ErrorInfo = z.object({ code: z.string(), message: z.string() }).nullable();
const Params = z.record(z.string(), z.unknown());

export const TriggerSchema = z
  .object({
    type: z.enum(TRIGGER_TYPES),
    name: z.string().optional(),
    data: z.unknown().optional(),
    eventId: z.string().optional(),
    fireAt: z.string().optional(),
    parent: z.object({ runId: z.string(), step: z.string(), depth: z.number().int() }).optional(),
  })
  .openapi("RunTrigger");

export const RunSchema = z
  .object({
    id: z.string(),
    workflow: z.string(),
    status: RunStatusSchema,
    params: Params,
    trigger: TriggerSchema.nullable(),
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    endedAt: z.string().nullable(),
    deadlineAt: z.string().nullable(),
    error: ErrorInfo,
    cancelRequested: z.boolean(),
    owner: z.string().nullable().openapi({ description: "The process executing the run, while one holds it." }),
  })
  .openapi("Run");
export type RunView = z.infer<typeof RunSchema>;

export const UsageSchema = z
  .object({
    cpuMs: z.number().openapi({ description: "CPU time, user + system, in milliseconds." }),
    peakMemoryBytes: z.number().int().nullable().openapi({ description: "Peak resident memory in bytes." }),
    readBytes: z.number().int().nullable().openapi({ description: "Bytes read through system calls (files, pipes, sockets)." }),
    writtenBytes: z.number().int().nullable().openapi({ description: "Bytes written through system calls." }),
    scope: z.enum(["process-tree", "process"]).openapi({
      description:
        "process-tree: an exec step's program and its descendants alone. process: the whole Sluice process while an in-process action ran, shared with the attempts running at the same time.",
    }),
  })
  .openapi("AttemptUsage");

export const RunDetailSchema = z
  .object({
    id: z.string(),
    workflow: z.string(),
    status: RunStatusSchema,
    createdAt: z.string(),
    startedAt: z.string().nullable(),
    endedAt: z.string().nullable(),
    params: Params,
    trigger: z.unknown(),
    error: ErrorInfo,
    steps: z.array(
      z.object({
        name: z.string(),
        status: z.enum(["pending", "running", "succeeded", "failed", "skipped", "cancelled"]),
        attempts: z.array(
          z.object({
            n: z.number().int(),
            status: z.string(),
            startedAt: z.string(),
            endedAt: z.string().nullable(),
            error: ErrorInfo,
            usage: UsageSchema.nullable().openapi({
              description: "What the attempt consumed; null while running, when interrupted, or where it cannot be measured.",
            }),
          }),
        ),
        outputs: Params.nullable(),
        error: ErrorInfo.optional().describe("Why the step failed or was skipped (a skipped step's reason: its condition, its dependencies)."),
      }),
    ),
  })
  .openapi("RunDetail");

export const WorkflowSummarySchema = z
  .object({
    name: z.string(),
    version: z.number().int(),
    source: z.string().nullable().openapi({ description: "The file it was loaded from; null when applied through the API." }),
    createdAt: z.string(),
    description: z.string().nullable(),
    triggers: z.array(z.record(z.string(), z.unknown())),
  })
  .openapi("WorkflowSummary");

export const WorkflowDetailSchema = WorkflowSummarySchema.extend({
  spec: z.record(z.string(), z.unknown()).openapi({ description: "The validated workflow document." }),
  yaml: z.string().openapi({ description: "The YAML text as applied." }),
}).openapi("WorkflowDetail");

export const WorkflowVersionSchema = z
  .object({ name: z.string(), version: z.number().int(), source: z.string().nullable(), createdAt: z.string(), current: z.boolean() })
  .openapi("WorkflowVersion");

export const AppliedSchema = z
  .object({
    name: z.string(),
    version: z.number().int(),
    created: z.boolean().openapi({ description: "False when the text equals the current version." }),
    source: z.string().nullable(),
  })
  .openapi("Applied");

export const EventSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    data: z.unknown(),
    source: z.string(),
    createdAt: z.string(),
    runIds: z.array(z.string()),
  })
  .openapi("Event");

export function toRunView(r: RunRecord): RunView {
  return {
    id: r.id,
    workflow: r.workflow,
    status: r.status,
    params: r.params,
    trigger: r.trigger,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    endedAt: r.endedAt,
    deadlineAt: r.deadlineAt,
    error: r.error,
    cancelRequested: r.cancelRequested,
    owner: r.leaseOwner,
  };
}

export function toWorkflowSummary(v: WorkflowVersion): z.infer<typeof WorkflowSummarySchema> {
  return {
    name: v.name,
    version: v.version,
    source: v.source,
    createdAt: v.createdAt,
    description: v.spec.spec.description ?? null,
    triggers: v.spec.spec.triggers ?? [],
  };
}

export function toWorkflowDetail(v: WorkflowVersion): z.infer<typeof WorkflowDetailSchema> {
  return { ...toWorkflowSummary(v), spec: v.spec, yaml: v.yaml };
}

export function toWorkflowVersion(v: WorkflowVersion): z.infer<typeof WorkflowVersionSchema> {
  return { name: v.name, version: v.version, source: v.source, createdAt: v.createdAt, current: v.current };
}

export function toEventView(e: EventRecord): z.infer<typeof EventSchema> {
  return { id: e.id, name: e.name, data: e.data, source: e.source, createdAt: e.createdAt, runIds: e.runIds };
}

type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422;
const ERROR_TEXT: Record<ErrorStatus, string> = {
  400: "The request is malformed; `field` names the part at fault.",
  401: "No bearer token, or an unknown one.",
  403: "The token's role is too low.",
  404: "No such resource.",
  409: "The resource is in the wrong state for this.",
  413: "The body is too large.",
  415: "Unsupported content type.",
  422: "The workflow is invalid; `problems` lists where.",
};
type ErrorResponse = { description: string; content: { "application/json": { schema: typeof ErrorSchema } } };

/** The error responses of an /api/v1 route, for the OpenAPI document; 400 and 401 apply to all. */
export function errorResponses<S extends ErrorStatus = never>(...statuses: S[]): Record<S | 400 | 401, ErrorResponse> {
  const out = {} as Record<S | 400 | 401, ErrorResponse>;
  for (const s of [400, 401, ...statuses] as (S | 400 | 401)[])
    out[s] = { description: ERROR_TEXT[s], content: { "application/json": { schema: ErrorSchema } } };
  return out;
}

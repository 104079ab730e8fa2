/**
 * The Kubernetes side of the schema: the WorkflowRun resource's spec and the status both
 * resources carry. One source for the generated CRDs (generate.ts) and for the operator's types,
 * as WorkflowSpec in schema.ts is for the Workflow resource itself.
 */
import { z } from "zod";

export const RUN_KIND = "WorkflowRun";

export const WorkflowRunSpec = z
  .object({
    workflowRef: z.object({ name: z.string().min(1).describe("a Workflow resource in the WorkflowRun's namespace") }).strict(),
    version: z.number().int().min(1).optional().describe("the registry version to run; the current one when left out"),
    params: z.record(z.string(), z.unknown()).optional().describe("the run's parameters, checked against the workflow's params"),
    cancel: z.boolean().optional().describe("true asks the run to stop (steps end as cancelled)"),
    runId: z
      .string()
      .optional()
      .describe("set by the operator on a WorkflowRun mirroring a run started by cron or an event: the resource follows that run instead of starting one"),
    ttlSecondsAfterFinished: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("delete the resource this long after its run ended (the run's history stays in the store)"),
  })
  .strict();
export type WorkflowRunSpec = z.infer<typeof WorkflowRunSpec>;

/** `metav1.Condition`. */
export const ConditionSchema = z
  .object({
    type: z.string(),
    status: z.enum(["True", "False", "Unknown"]),
    observedGeneration: z.number().int().optional(),
    lastTransitionTime: z.string(),
    reason: z.string(),
    message: z.string(),
  })
  .strict();

export const WorkflowStatus = z
  .object({
    observedGeneration: z.number().int().optional(),
    registryVersion: z.number().int().optional().describe("the registry version this generation of the spec was stored as"),
    conditions: z.array(ConditionSchema).optional(),
  })
  .strict();
export type WorkflowStatus = z.infer<typeof WorkflowStatus>;

export const RUN_PHASES = ["Pending", "Running", "Succeeded", "Failed", "Cancelled"] as const;
export type RunPhase = (typeof RUN_PHASES)[number];

export const WorkflowRunStatus = z
  .object({
    observedGeneration: z.number().int().optional(),
    phase: z.enum(RUN_PHASES).optional(),
    runId: z.string().optional(),
    workflowVersion: z.number().int().optional(),
    startedAt: z.string().optional(),
    finishedAt: z.string().optional(),
    rows: z.object({ in: z.number().int(), stored: z.number().int(), quarantined: z.number().int(), duplicate: z.number().int() }).strict().optional(),
    message: z.string().optional(),
    conditions: z.array(ConditionSchema).optional(),
  })
  .strict();
export type WorkflowRunStatus = z.infer<typeof WorkflowRunStatus>;

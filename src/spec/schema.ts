/**
 * The workflow file format, defined once.
 *
 * Everything else derives from these zod schemas: the TypeScript types (`z.infer`), validation
 * with positions (load.ts), the JSON Schema and the Kubernetes CRD under deploy/ (generate.ts).
 * Objects are strict so that a misspelt field is an error with a suggestion, never silently ignored.
 */
import { z } from "zod";
import { Cron } from "croner";
import { parseDuration } from "./duration.js";

export const API_VERSION = "sluice.dev/v1alpha1";
export const KIND = "Workflow";

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const Duration = z
  .string()
  .refine((s) => parseDuration(s) !== undefined, {
    message: "is not a duration: use a number and a unit, like 500ms, 30s, 5m, 2h or 1h30m",
  })
  .describe("A duration such as 500ms, 30s, 5m, 2h or 1h30m.");

export const TimeZone = z.string().refine(isTimeZone, { message: "is not a known IANA time zone, like UTC or Europe/London" });

export const CronExpression = z
  .string()
  .refine(isCron, { message: "is not a valid cron expression (five fields: minute hour day-of-month month day-of-week; or six with seconds first)" })
  .describe("A cron expression, e.g. 0 */6 * * *; a sixth leading field gives seconds.");

export const Backoff = z
  .object({
    initial: Duration.optional().describe("Delay before the first retry (default 1s)."),
    factor: z.number().min(1).optional().describe("Multiplier per retry (default 2)."),
    max: Duration.optional().describe("Cap on any one delay (default 5m)."),
    jitter: z.number().min(0).max(1).optional().describe("Random spread as a fraction of the delay (default 0.2)."),
  })
  .strict();

export const RetryPolicy = z
  .object({
    limit: z.number().int().min(0).max(100).describe("Retries after the first attempt (Argo's meaning)."),
    backoff: Backoff.optional(),
  })
  .strict();

export const ParamSpec = z
  .object({
    type: z.enum(["string", "integer", "number", "boolean"]).default("string"),
    default: z.union([z.string(), z.number(), z.boolean()]).optional(),
    description: z.string().optional(),
    required: z.boolean().optional(),
  })
  .strict();

export const Trigger = z
  .object({
    schedule: CronExpression.optional(),
    timezone: TimeZone.optional().describe("Time zone of the schedule (default UTC)."),
    catchUp: z.enum(["skip", "runOnce"]).optional().describe("What to do with fires missed while down."),
    concurrencyPolicy: z.enum(["Allow", "Forbid", "Replace"]).optional(),
    event: z.string().regex(IDENT, "must be a name made of letters, digits and underscores").optional(),
    manual: z.object({}).strict().optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    const kinds = ["schedule", "event", "manual"].filter((k) => t[k as keyof typeof t] !== undefined);
    if (kinds.length !== 1) ctx.addIssue({ code: "custom", message: "a trigger needs exactly one of schedule, event or manual" });
    if (t.schedule === undefined && (t.timezone || t.catchUp || t.concurrencyPolicy))
      ctx.addIssue({ code: "custom", message: "timezone, catchUp and concurrencyPolicy apply only to a schedule trigger" });
  });

export const ExecSpec = z
  .object({
    command: z.array(z.string()).min(1).describe("Program and its first arguments; no shell unless you name one."),
    args: z.array(z.string()).optional(),
    env: z.record(z.string(), z.string()).optional(),
    workingDir: z.string().optional(),
  })
  .strict();

export const Step = z
  .object({
    name: z.string().max(63).regex(DNS1123, "must be lowercase letters, digits and '-' (a DNS-1123 label)"),
    description: z.string().optional(),
    agent: z.string().regex(DNS1123, "must be a lowercase agent name like data-collector").optional(),
    service: z.string().regex(DNS1123, "must be a lowercase service name like base-data-quality").optional(),
    action: z.string().regex(IDENT, "must be an action name like collect_data_from_source").optional(),
    exec: ExecSpec.optional(),
    with: z.record(z.string(), z.unknown()).optional().describe("Inputs of the action; may hold ${{ }} expressions."),
    dependsOn: z.array(z.string()).optional(),
    timeout: Duration.optional(),
    retry: RetryPolicy.optional(),
    continueOnError: z.boolean().optional(),
    parallelizable: z.boolean().optional().describe("The action may split its work across parallel workers."),
    continuous: z
      .boolean()
      .optional()
      .describe("Run as a stage of a continuous pipeline with the other continuous steps (a chain: source first, sink last) instead of once."),
    workflow: z
      .string()
      .min(1)
      .optional()
      .describe("Run this workflow (a name in the registry, or a file path relative to this file) as a child run and take its outputs."),
    forEach: z
      .union([z.array(z.unknown()), z.string().regex(/^\s*\$\{\{[\s\S]*\}\}\s*$/)], { error: "must be a list or one ${{ }} expression that gives a list" })
      .optional()
      .describe("Run the step once per item (a list, or an expression giving one); ${{ item }} and ${{ index }} name the current one."),
    parallelism: z.number().int().min(1).max(10_000).optional().describe("With forEach: most items running at once (default: the run's parallelism)."),
    failureThreshold: z
      .number()
      .min(0)
      .optional()
      .describe(
        "With forEach: the step fails when more items than this fail (below 1: a share of the items; 1 or more: a count). Default 0, or no limit with continueOnError.",
      ),
    when: z
      .string()
      .min(1)
      .optional()
      .describe("Run the step only when this condition holds (an expression over params, event data and upstream outputs); otherwise it is skipped."),
    runIf: z
      .enum(["allSucceeded", "anyFailed", "always"])
      .optional()
      .describe("What the dependencies must have done: allSucceeded (default), anyFailed (a fallback or a notification), always."),
  })
  .strict()
  .superRefine((s, ctx) => {
    const kinds = [s.agent !== undefined, s.service !== undefined, s.exec !== undefined, s.workflow !== undefined].filter(Boolean).length;
    if (kinds !== 1) ctx.addIssue({ code: "custom", message: "a step needs exactly one of agent, service, exec or workflow" });
    if (s.workflow !== undefined && s.continuous) ctx.addIssue({ code: "custom", message: "a workflow step cannot be continuous" });
    if (s.forEach !== undefined && s.continuous) ctx.addIssue({ code: "custom", message: "a continuous step cannot have forEach" });
    if (s.forEach === undefined && (s.parallelism !== undefined || s.failureThreshold !== undefined))
      ctx.addIssue({ code: "custom", message: "parallelism and failureThreshold apply only to a step with forEach" });
    if ((s.agent !== undefined || s.service !== undefined) && s.action === undefined)
      ctx.addIssue({ code: "custom", message: `a step with ${s.agent !== undefined ? "agent" : "service"} needs an action` });
    if (s.exec !== undefined && s.action !== undefined) ctx.addIssue({ code: "custom", message: "an exec step takes no action" });
    if (s.exec !== undefined && s.with !== undefined)
      ctx.addIssue({ code: "custom", message: "an exec step takes no with: block; put values in exec.args or exec.env" });
    if (s.exec !== undefined && s.continuous)
      ctx.addIssue({ code: "custom", message: "an exec step cannot be continuous; continuous steps are streaming actions" });
  });

export const WorkflowSpec = z
  .object({
    description: z.string().optional(),
    params: z.record(z.string().regex(IDENT), ParamSpec).optional(),
    triggers: z.array(Trigger).optional(),
    timeout: Duration.optional().describe("Deadline for the whole run."),
    sla: Duration.optional().describe("A run longer than this is reported as an SLA breach."),
    parallelism: z.number().int().min(1).max(1000).optional().describe("Most steps of one run running at once."),
    retry: RetryPolicy.optional().describe("Default retry policy of every step."),
    steps: z.array(Step).min(1),
    finally: z
      .array(Step)
      .optional()
      .describe(
        "Steps run after all the others, whatever the outcome (success, failure, cancel, timeout); ${{ run.status }} says which. They may depend on each other only.",
      ),
  })
  .strict();

export const Metadata = z
  .object({
    name: z.string().max(63).regex(DNS1123, "must be lowercase letters, digits and '-' (a DNS-1123 name)"),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .strict();

export const Workflow = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(KIND),
    metadata: Metadata,
    spec: WorkflowSpec,
  })
  .strict();

export type Workflow = z.infer<typeof Workflow>;
export type WorkflowSpec = z.infer<typeof WorkflowSpec>;
export type Step = z.infer<typeof Step>;
export type Trigger = z.infer<typeof Trigger>;
export type RetryPolicy = z.infer<typeof RetryPolicy>;
export type ParamSpec = z.infer<typeof ParamSpec>;
export type ExecSpec = z.infer<typeof ExecSpec>;

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function isCron(expr: string): boolean {
  // Five fields, or six with seconds first (as Temporal and croner allow) for sub-minute schedules.
  const fields = expr.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) return false;
  try {
    new Cron(expr, { paused: true });
    return true;
  } catch {
    return false;
  }
}

/** Every step of a workflow, the main ones first and then its `finally` steps, in file order. */
export function allSteps(wf: Workflow): Step[] {
  return [...wf.spec.steps, ...(wf.spec.finally ?? [])];
}

/** The names of every step of a workflow, as the store records them when a run is created. */
export function stepNamesOf(wf: Workflow): string[] {
  return allSteps(wf).map((s) => s.name);
}

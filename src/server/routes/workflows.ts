/**
 * /api/v1/workflows: the workflow registry (apply, list, versions, rollback) and starting runs.
 * Validation, versioning and run creation are the control plane's; this file maps HTTP to it.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { SluiceError } from "../../errors.js";
import { applyWorkflowText, rollbackWorkflow } from "../../control/workflows.js";
import { startWorkflowRun } from "../../control/runs.js";
import { formatProblem } from "../../spec/load.js";
import type { ServerDeps } from "../deps.js";
import { requireRole } from "../auth.js";
import { bearer, newRouter } from "../router.js";
import {
  AppliedSchema,
  RunSchema,
  WorkflowDetailSchema,
  WorkflowSummarySchema,
  WorkflowVersionSchema,
  errorResponses,
  toRunView,
  toWorkflowDetail,
  toWorkflowSummary,
  toWorkflowVersion,
} from "../schemas.js";

const NameParam = z.object({
  name: z
    .string()
    .min(1)
    .openapi({ param: { name: "name", in: "path" }, example: "standard-ingestion" }),
});

const list = createRoute({
  method: "get",
  path: "/workflows",
  tags: ["workflows"],
  security: bearer,
  summary: "Every workflow's current version",
  middleware: [requireRole("viewer")] as const,
  responses: {
    200: { description: "Current versions", content: { "application/json": { schema: z.object({ workflows: z.array(WorkflowSummarySchema) }) } } },
    ...errorResponses(),
  },
});

const get = createRoute({
  method: "get",
  path: "/workflows/{name}",
  tags: ["workflows"],
  security: bearer,
  summary: "A workflow's current version, with its spec and YAML",
  middleware: [requireRole("viewer")] as const,
  request: { params: NameParam },
  responses: {
    200: { description: "The current version", content: { "application/json": { schema: WorkflowDetailSchema } } },
    ...errorResponses(404),
  },
});

const versions = createRoute({
  method: "get",
  path: "/workflows/{name}/versions",
  tags: ["workflows"],
  security: bearer,
  summary: "Every version of a workflow, newest first",
  middleware: [requireRole("viewer")] as const,
  request: { params: NameParam },
  responses: {
    200: { description: "Versions", content: { "application/json": { schema: z.object({ versions: z.array(WorkflowVersionSchema) }) } } },
    ...errorResponses(404),
  },
});

const ApplyJson = z
  .object({
    yaml: z.string().min(1).openapi({ description: "The workflow file's text (one or more YAML documents)." }),
    file: z.string().min(1).optional().openapi({ description: "The file name problems are reported under (default: body)." }),
  })
  .strict();
const AppliedList = z.object({ applied: z.array(AppliedSchema) });

const apply = createRoute({
  method: "post",
  path: "/workflows",
  tags: ["workflows"],
  security: bearer,
  summary: "Apply a workflow: validate it and store it as the new current version",
  description: 'The body is the YAML text (application/yaml or text/yaml) or JSON {"yaml": "…"}. A text equal to the current version adds no version (200).',
  middleware: [requireRole("admin")] as const,
  request: {
    body: {
      content: {
        "application/json": { schema: ApplyJson },
        "application/yaml": { schema: z.string() },
        "application/x-yaml": { schema: z.string() },
        "text/yaml": { schema: z.string() },
      },
    },
  },
  responses: {
    201: { description: "At least one new version was stored", content: { "application/json": { schema: AppliedList } } },
    200: { description: "Nothing changed: the text equals the current version", content: { "application/json": { schema: AppliedList } } },
    ...errorResponses(403, 413, 415, 422),
  },
});

const rollback = createRoute({
  method: "post",
  path: "/workflows/{name}/rollback",
  tags: ["workflows"],
  security: bearer,
  summary: "Make an earlier version current again (the one before the current, or `to`)",
  middleware: [requireRole("admin")] as const,
  request: {
    params: NameParam,
    body: { content: { "application/json": { schema: z.object({ to: z.number().int().min(1).optional() }).strict() } } },
  },
  responses: {
    200: { description: "The version now current", content: { "application/json": { schema: WorkflowVersionSchema } } },
    ...errorResponses(403, 404, 409),
  },
});

const StartRun = z
  .object({
    params: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
    version: z.number().int().min(1).optional().openapi({ description: "Run this version instead of the current one." }),
  })
  .strict();

const start = createRoute({
  method: "post",
  path: "/workflows/{name}/runs",
  tags: ["runs"],
  security: bearer,
  summary: "Start a run of the workflow (queued for a worker)",
  middleware: [requireRole("operator")] as const,
  request: { params: NameParam, body: { content: { "application/json": { schema: StartRun } } } },
  responses: {
    201: { description: "The run, pending until a worker claims it", content: { "application/json": { schema: RunSchema } } },
    ...errorResponses(403, 404),
  },
});

const YAML_TYPES = /^(application\/(x-)?yaml|text\/yaml)\b/i;

export function workflowRoutes(deps: ServerDeps) {
  const r = newRouter();

  r.openapi(list, async (c) => {
    const all = await deps.store.listWorkflows();
    return c.json({ workflows: all.map(toWorkflowSummary) }, 200);
  });

  r.openapi(get, async (c) => {
    const { name } = c.req.valid("param");
    const wf = await deps.store.getWorkflow(name);
    if (!wf) throw new SluiceError("NOT_FOUND", `no current workflow named ${name}`);
    return c.json(toWorkflowDetail(wf), 200);
  });

  r.openapi(versions, async (c) => {
    const { name } = c.req.valid("param");
    const history = await deps.store.workflowHistory(name);
    if (history.length === 0) throw new SluiceError("NOT_FOUND", `no workflow named ${name} has been applied`);
    return c.json({ versions: [...history].sort((a, b) => b.version - a.version).map(toWorkflowVersion) }, 200);
  });

  r.openapi(apply, async (c) => {
    // The JSON form is validated by its schema; the YAML forms are the text itself.
    const sent = YAML_TYPES.test(c.req.header("content-type") ?? "") ? await c.req.text() : c.req.valid("json");
    const { yaml, file } = typeof sent === "string" ? { yaml: sent, file: "body" } : { yaml: sent.yaml, file: sent.file ?? "body" };
    if (!yaml?.trim())
      throw new SluiceError("BAD_INPUT", 'body: send the workflow YAML (Content-Type: application/yaml) or JSON {"yaml": "…"}', { details: { field: "body" } });
    const result = await applyWorkflowText(deps.store, deps.actions, yaml, file, null);
    if (!result.ok) {
      const n = result.problems.length;
      throw new SluiceError("SPEC_INVALID", `the workflow is invalid (${n} problem${n === 1 ? "" : "s"}):\n${result.problems.map(formatProblem).join("\n")}`, {
        details: { problems: result.problems },
      });
    }
    deps.log?.info({ applied: result.applied, by: c.get("principal").name }, "workflows applied");
    return c.json({ applied: result.applied }, result.applied.some((a) => a.created) ? 201 : 200);
  });

  r.openapi(rollback, async (c) => {
    const { name } = c.req.valid("param");
    const { to } = c.req.valid("json");
    const now = await rollbackWorkflow(deps.store, name, to);
    deps.log?.info({ workflow: name, version: now.version, by: c.get("principal").name }, "workflow rolled back");
    return c.json(toWorkflowVersion(now), 200);
  });

  r.openapi(start, async (c) => {
    const { name } = c.req.valid("param");
    const { params, version } = c.req.valid("json");
    const run = await startWorkflowRun(deps.store, { workflow: name, version, params, trigger: { type: "api" } });
    deps.log?.info({ run: run.id, workflow: name, by: c.get("principal").name }, "run started");
    return c.json(toRunView(run), 201);
  });

  return r;
}

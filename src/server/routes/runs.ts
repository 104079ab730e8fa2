/**
 * /api/v1/runs: list and inspect runs, cancel, resume and retry them, read attempt logs.
 * Runs are executed by workers; these endpoints only read the store or change what the workers
 * will do next.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { createRoute, z } from "@hono/zod-openapi";
import type { TypedResponse } from "hono";
import { SluiceError } from "../../errors.js";
import { cancelRun, resumeRun, retryRun } from "../../control/runs.js";
import { runDetail } from "../../engine/detail.js";
import { attemptLogFile } from "../../engine/attempt-log.js";
import type { ServerDeps } from "../deps.js";
import { requireRole } from "../auth.js";
import { bearer, newRouter } from "../router.js";
import { RunDetailSchema, RunSchema, RunStatusSchema, errorResponses, toRunView } from "../schemas.js";

const IdParam = z.object({
  id: z
    .string()
    .min(1)
    .openapi({ param: { name: "id", in: "path" } }),
});

const ListQuery = z
  .object({
    workflow: z.string().min(1).optional(),
    status: RunStatusSchema.optional(),
    since: z.iso.datetime({ offset: true }).optional().openapi({ description: "Runs created at or after this time." }),
    until: z.iso.datetime({ offset: true }).optional().openapi({ description: "Runs created before this time." }),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    offset: z.coerce.number().int().min(0).default(0),
  })
  .strict();

const list = createRoute({
  method: "get",
  path: "/runs",
  tags: ["runs"],
  security: bearer,
  summary: "Runs, newest first, filtered and paged",
  middleware: [requireRole("viewer")] as const,
  request: { query: ListQuery },
  responses: {
    200: {
      description: "A page of runs",
      content: { "application/json": { schema: z.object({ runs: z.array(RunSchema), limit: z.number().int(), offset: z.number().int() }) } },
    },
    ...errorResponses(),
  },
});

const get = createRoute({
  method: "get",
  path: "/runs/{id}",
  tags: ["runs"],
  security: bearer,
  summary: "A run with its steps and their attempts",
  middleware: [requireRole("viewer")] as const,
  request: { params: IdParam },
  responses: {
    200: { description: "The run", content: { "application/json": { schema: RunDetailSchema } } },
    ...errorResponses(404),
  },
});

/** The three state changes share a shape: POST, no body, 202 with the run, 409 in the wrong state. */
function stateChange(path: string, summary: string) {
  return createRoute({
    method: "post",
    path,
    tags: ["runs"],
    security: bearer,
    summary,
    middleware: [requireRole("operator")] as const,
    request: { params: IdParam },
    responses: {
      202: { description: "Accepted: a worker acts on it", content: { "application/json": { schema: RunSchema } } },
      ...errorResponses(403, 404, 409),
    },
  });
}

const cancel = stateChange("/runs/{id}/cancel", "Ask for the run to be cancelled; its worker stops it at its next heartbeat");
const resume = stateChange("/runs/{id}/resume", "Put a run whose process died back in the queue at once");
const retry = stateChange("/runs/{id}/retry", "Run a failed or cancelled run's unfinished steps again");

const logs = createRoute({
  method: "get",
  path: "/runs/{id}/steps/{step}/attempts/{n}/logs",
  tags: ["runs"],
  security: bearer,
  summary: "The log of one attempt of a step (exec output, or the action's log lines)",
  middleware: [requireRole("viewer")] as const,
  request: {
    params: z.object({
      id: z
        .string()
        .min(1)
        .openapi({ param: { name: "id", in: "path" } }),
      step: z
        .string()
        .min(1)
        .openapi({ param: { name: "step", in: "path" } }),
      n: z.coerce
        .number()
        .int()
        .min(1)
        .openapi({ param: { name: "n", in: "path" }, type: "integer" }),
    }),
  },
  responses: {
    200: { description: "The log text", content: { "text/plain": { schema: z.string() } } },
    ...errorResponses(404),
  },
});

export function runRoutes(deps: ServerDeps) {
  const r = newRouter();

  r.openapi(list, async (c) => {
    const q = c.req.valid("query");
    // The store compares ISO text: normalise any offset to UTC so "+02:00" filters correctly.
    const utc = (t: string | undefined) => (t === undefined ? undefined : new Date(t).toISOString());
    const runs = await deps.store.listRuns({
      workflow: q.workflow,
      status: q.status,
      since: utc(q.since),
      until: utc(q.until),
      limit: q.limit,
      offset: q.offset,
    });
    return c.json({ runs: runs.map(toRunView), limit: q.limit, offset: q.offset }, 200);
  });

  r.openapi(get, async (c) => c.json(await runDetail(deps.store, c.req.valid("param").id), 200));

  r.openapi(cancel, async (c) => {
    const { id } = c.req.valid("param");
    const { run } = await cancelRun(deps.store, id);
    deps.log?.info({ run: id, by: c.get("principal").name }, "run cancel requested");
    return c.json(toRunView(run), 202);
  });

  r.openapi(resume, async (c) => {
    const run = await resumeRun(deps.store, c.req.valid("param").id);
    return c.json(toRunView(run), 202);
  });

  r.openapi(retry, async (c) => {
    const run = await retryRun(deps.store, c.req.valid("param").id);
    deps.log?.info({ run: run.id, by: c.get("principal").name }, "run retried");
    return c.json(toRunView(run), 202);
  });

  r.openapi(logs, async (c) => {
    const { id, step, n } = c.req.valid("param");
    // Only an attempt the store knows is looked up on disk: the step name never reaches a path unchecked.
    const attempt = (await deps.store.getAttempts(id)).find((a) => a.step === step && a.n === n);
    if (!attempt) {
      const run = await deps.store.getRun(id);
      throw new SluiceError("NOT_FOUND", run ? `run ${id} has no attempt ${n} of step ${step}` : `no run with id ${id}`);
    }
    const file = attemptLogFile(deps.home, id, step, n);
    const size = await stat(file).then(
      (s) => (s.isFile() ? s.size : undefined),
      () => undefined,
    );
    if (size === undefined) throw new SluiceError("NOT_FOUND", `attempt ${n} of step ${step} of run ${id} wrote no log`);
    // Streamed: exec logs can be large, and a running attempt's log is read as far as written.
    const body = Readable.toWeb(createReadStream(file, { end: Math.max(0, size - 1) })) as ReadableStream<Uint8Array>;
    const res = c.body(body, 200, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": String(size) });
    // The route's typed text response expects c.text(string); a stream is the same on the wire.
    return res as unknown as TypedResponse<string, 200, "text">;
  });

  return r;
}

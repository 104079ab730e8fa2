/**
 * /api/v1/events: emit an event (starting every current workflow whose trigger names it) and
 * read the events recorded so far.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { SluiceError } from "../../errors.js";
import { emitEvent } from "../../control/events.js";
import type { ServerDeps } from "../deps.js";
import { requireRole } from "../auth.js";
import { bearer, newRouter } from "../router.js";
import { EventSchema, errorResponses, toEventView } from "../schemas.js";

const Emit = z
  .object({
    // The same rule as a workflow's `event:` trigger, so a typo cannot name an event no trigger can match.
    name: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a name made of letters, digits and underscores")
      .openapi({ example: "source_data_updated" }),
    data: z.unknown().optional().openapi({ description: "The payload: `${{ event.data.* }}` in the runs; top-level fields named like a param set it." }),
  })
  .strict();

const emit = createRoute({
  method: "post",
  path: "/events",
  tags: ["events"],
  security: bearer,
  summary: "Emit an event: runs start for every current workflow with a matching event trigger",
  middleware: [requireRole("operator")] as const,
  request: { body: { content: { "application/json": { schema: Emit } }, required: true } },
  responses: {
    202: {
      description: "Recorded; the runs it started are queued",
      content: {
        "application/json": {
          schema: z.object({
            event: EventSchema,
            runs: z.array(z.string()).openapi({ description: "Ids of the runs started." }),
            refused: z.array(z.object({ workflow: z.string(), code: z.string(), message: z.string() })).openapi({
              description: "Workflows whose run could not start (bad params in the payload, …).",
            }),
          }),
        },
      },
    },
    ...errorResponses(403, 415),
  },
});

const list = createRoute({
  method: "get",
  path: "/events",
  tags: ["events"],
  security: bearer,
  summary: "Recent events, newest first",
  middleware: [requireRole("viewer")] as const,
  request: {
    query: z.object({ name: z.string().min(1).optional(), limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
  },
  responses: {
    200: { description: "Events", content: { "application/json": { schema: z.object({ events: z.array(EventSchema) }) } } },
    ...errorResponses(),
  },
});

const get = createRoute({
  method: "get",
  path: "/events/{id}",
  tags: ["events"],
  security: bearer,
  summary: "One event and the runs it started",
  middleware: [requireRole("viewer")] as const,
  request: {
    params: z.object({
      id: z
        .string()
        .min(1)
        .openapi({ param: { name: "id", in: "path" } }),
    }),
  },
  responses: {
    200: { description: "The event", content: { "application/json": { schema: EventSchema } } },
    ...errorResponses(404),
  },
});

export function eventRoutes(deps: ServerDeps) {
  const r = newRouter();

  r.openapi(emit, async (c) => {
    const { name, data } = c.req.valid("json");
    const result = await emitEvent(deps.store, { name, data, source: "api" });
    deps.onEventReceived?.(name);
    deps.log?.info({ event: result.event.id, name, runs: result.event.runIds, by: c.get("principal").name }, "event emitted");
    return c.json({ event: toEventView(result.event), runs: result.runs.map((run) => run.id), refused: result.refused }, 202);
  });

  r.openapi(list, async (c) => {
    const { name, limit } = c.req.valid("query");
    return c.json({ events: (await deps.store.listEvents({ name, limit })).map(toEventView) }, 200);
  });

  r.openapi(get, async (c) => {
    const { id } = c.req.valid("param");
    const event = await deps.store.getEvent(id);
    if (!event) throw new SluiceError("NOT_FOUND", `no event with id ${id}`);
    return c.json(toEventView(event), 200);
  });

  return r;
}

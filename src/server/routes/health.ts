/**
 * Probes and metrics, outside /api/v1 and without authentication: Kubernetes probes and
 * Prometheus scrapers carry no token, and none of these reveals run data (metrics are counts
 * and durations by workflow name and status).
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { ServerDeps } from "../deps.js";
import { newRouter } from "../router.js";

const Status = z.object({ status: z.enum(["ok", "unavailable"]) });

const healthz = createRoute({
  method: "get",
  path: "/healthz",
  tags: ["health"],
  summary: "Liveness: the process answers",
  responses: { 200: { description: "Alive", content: { "application/json": { schema: Status } } } },
});

const readyz = createRoute({
  method: "get",
  path: "/readyz",
  tags: ["health"],
  summary: "Readiness: the server can do its work (store reachable, workflows loaded)",
  responses: {
    200: { description: "Ready", content: { "application/json": { schema: Status } } },
    503: { description: "Not ready yet, or shutting down", content: { "application/json": { schema: Status } } },
  },
});

const metrics = createRoute({
  method: "get",
  path: "/metrics",
  tags: ["health"],
  summary: "Prometheus metrics (text exposition format)",
  responses: { 200: { description: "Metrics", content: { "text/plain": { schema: z.string() } } } },
});

export function healthRoutes(deps: ServerDeps) {
  const r = newRouter();
  r.openapi(healthz, (c) => c.json({ status: "ok" as const }, 200));
  r.openapi(readyz, (c) => (deps.ready() ? c.json({ status: "ok" as const }, 200) : c.json({ status: "unavailable" as const }, 503)));
  // Deliberately unauthenticated (see the header): Prometheus scrapes without a bearer token.
  r.openapi(metrics, async (c) => c.text(await deps.metrics.render(), 200, { "Content-Type": deps.metrics.contentType }));
  return r;
}

/**
 * The HTTP API of `sluice serve`, as a Hono app: routes declared with zod schemas, so the same
 * schemas validate requests and generate the OpenAPI 3.1 document at /api/v1/openapi.json.
 *
 * The app holds no state of its own: everything goes through the store and the control plane,
 * so any number of server processes can answer for the same fleet.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { authenticate, type AppEnv } from "./auth.js";
import type { ServerDeps } from "./deps.js";
import { errorResponse, handleError, notFound } from "./errors.js";
import { newRouter } from "./router.js";
import { decryptRoutes } from "./routes/decrypt.js";
import { eventRoutes } from "./routes/events.js";
import { healthRoutes } from "./routes/health.js";
import { runRoutes } from "./routes/runs.js";
import { workflowRoutes } from "./routes/workflows.js";
import { uiRoutes } from "./ui/routes.js";
import { UI } from "./ui/layout.js";

export const API_PREFIX = "/api/v1";
const OPENAPI_PATH = `${API_PREFIX}/openapi.json`;
/** Workflow files are a few kB; a megabyte leaves room and stops a client from exhausting memory. */
const MAX_BODY = 1024 * 1024;
const QUIET = new Set(["/healthz", "/readyz", "/metrics"]);

export function createApp(deps: ServerDeps): OpenAPIHono<AppEnv> {
  const app = newRouter();
  app.onError(handleError(deps.log));
  app.notFound(notFound);

  if (deps.log) {
    const log = deps.log;
    app.use("*", async (c, next) => {
      const t0 = performance.now();
      await next();
      // Probes and scrapes come every few seconds; logging them would drown the requests that matter.
      if (QUIET.has(c.req.path) && c.res.status < 500) return;
      const who = c.get("principal")?.name;
      log.info({ method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - t0), ...(who && { by: who }) }, "request");
    });
  }

  app.use(
    `${API_PREFIX}/*`,
    bodyLimit({ maxSize: MAX_BODY, onError: (c) => errorResponse(c, 413, { code: "TOO_LARGE", message: `the body is larger than ${MAX_BODY} bytes` }) }),
  );
  const auth = authenticate(deps.auth);
  app.use(`${API_PREFIX}/*`, async (c, next) => {
    // The API description is public, like the probes: it holds no data and clients need it to start.
    if (c.req.path === OPENAPI_PATH) return next();
    return auth(c, next);
  });

  app.route("/", healthRoutes(deps));
  app.route(API_PREFIX, workflowRoutes(deps));
  app.route(API_PREFIX, runRoutes(deps));
  app.route(API_PREFIX, eventRoutes(deps));
  app.route(API_PREFIX, decryptRoutes(deps));
  // The web UI: its own sessions (a cookie from a token) and CSRF checks; forms are small.
  app.use(`${UI}/*`, bodyLimit({ maxSize: 64 * 1024, onError: (c) => c.text("the form is too large", 413) }));
  app.route(UI, uiRoutes(deps));
  app.get(UI, (c) => c.redirect(`${UI}/runs`, 303));

  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    description: "A token from the server config's auth.tokens; its role (viewer < operator < admin) decides what it may do.",
  });
  app.doc31(OPENAPI_PATH, {
    openapi: "3.1.0",
    info: {
      title: "Sluice API",
      version: "v1",
      description: "Apply workflows, start and follow runs, emit events. Errors are {error: {code, message, field?}}.",
    },
  });
  return app;
}

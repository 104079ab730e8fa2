import { expect, test } from "vitest";
import { startApi } from "./api-helpers.js";

const api = await startApi();
const broken = await startApi({
  metrics: {
    contentType: "text/plain",
    render: async () => {
      throw new Error("connection to db-secret-host:5432 refused at Object.<anonymous> (/srv/x.js:1:1)");
    },
  },
});

test("/healthz is always ok; /readyz follows ready()", async () => {
  expect(await api.call("GET", "/healthz")).toMatchObject({ status: 200, json: { status: "ok" } });
  expect(await api.call("GET", "/readyz")).toMatchObject({ status: 200, json: { status: "ok" } });
  api.state.ready = false;
  expect(await api.call("GET", "/readyz")).toMatchObject({ status: 503, json: { status: "unavailable" } });
  expect((await api.call("GET", "/healthz")).status).toBe(200);
  api.state.ready = true;
});

test("/metrics passes the registry's text and content type through", async () => {
  const r = await api.call("GET", "/metrics");
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  expect(r.text).toBe("# HELP sluice_test a stub\nsluice_test 1\n");
});

test("openapi.json is an OpenAPI 3.1 document with every route", async () => {
  const r = await api.call("GET", "/api/v1/openapi.json");
  expect(r.status).toBe(200);
  expect(r.json.openapi).toBe("3.1.0");
  expect(r.json.info.title).toBe("Sluice API");
  expect(Object.keys(r.json.paths).sort()).toEqual([
    "/api/v1/decrypt",
    "/api/v1/events",
    "/api/v1/events/{id}",
    "/api/v1/runs",
    "/api/v1/runs/{id}",
    "/api/v1/runs/{id}/cancel",
    "/api/v1/runs/{id}/resume",
    "/api/v1/runs/{id}/retry",
    "/api/v1/runs/{id}/steps/{step}/attempts/{n}/logs",
    "/api/v1/workflows",
    "/api/v1/workflows/{name}",
    "/api/v1/workflows/{name}/rollback",
    "/api/v1/workflows/{name}/runs",
    "/api/v1/workflows/{name}/versions",
    "/healthz",
    "/metrics",
    "/readyz",
  ]);
  expect(Object.keys(r.json.paths["/api/v1/workflows"])).toEqual(["get", "post"]);
  expect(r.json.paths["/api/v1/workflows"].post.requestBody.content).toHaveProperty("application/yaml");
  const limit = r.json.paths["/api/v1/runs"].get.parameters.find((p: { name: string }) => p.name === "limit");
  expect(limit).toMatchObject({ in: "query", schema: { maximum: 500, default: 50 } });
  expect(r.json.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
  expect(r.json.components.schemas).toHaveProperty("Run");
  expect(r.json.components.schemas).toHaveProperty("Error");
});

test("unknown routes are 404 JSON", async () => {
  const r = await api.call("GET", "/api/v1/nothing");
  expect(r.status).toBe(404);
  expect(r.json.error.code).toBe("NOT_FOUND");
});

test("a 500 says nothing of the error's internals", async () => {
  const r = await broken.call("GET", "/metrics");
  expect(r.status).toBe(500);
  expect(r.json.error.code).toBe("INTERNAL");
  expect(r.text).not.toMatch(/db-secret-host|x\.js|at Object/);
});

import { beforeAll, expect, test } from "vitest";
import { readFileSync } from "node:fs";
import { startApi } from "./api-helpers.js";

const api = await startApi();
const V1 = "/api/v1";

beforeAll(async () => {
  const text = readFileSync("workflows/base-data-ingestion-workflow-standard-ingestion.yaml", "utf8");
  expect((await api.call("POST", `${V1}/workflows`, { body: text })).status).toBe(201);
});

test("an event starts the workflows whose trigger names it, with payload fields as params", async () => {
  const r = await api.call("POST", `${V1}/events`, { json: { name: "source_data_updated", data: { source: "incoming/today.csv" } } });
  expect(r.status).toBe(202);
  expect(r.json.refused).toEqual([]);
  expect(r.json.runs).toHaveLength(1);
  expect(r.json.event).toMatchObject({ name: "source_data_updated", source: "api", data: { source: "incoming/today.csv" }, runIds: r.json.runs });
  const run = await api.call("GET", `${V1}/runs/${r.json.runs[0]}`);
  expect(run.json).toMatchObject({ workflow: "standard-ingestion", status: "pending", params: { source: "incoming/today.csv" } });
  expect(run.json.trigger).toMatchObject({ type: "event", name: "source_data_updated", eventId: r.json.event.id });

  const stored = await api.call("GET", `${V1}/events/${r.json.event.id}`);
  expect(stored.status).toBe(200);
  expect(stored.json.runIds).toEqual(r.json.runs);
});

test("an event no trigger names is recorded and starts nothing; list filters by name", async () => {
  const r = await api.call("POST", `${V1}/events`, { json: { name: "nobody_listens" } });
  expect(r.status).toBe(202);
  expect(r.json.runs).toEqual([]);
  const listed = await api.call("GET", `${V1}/events?name=nobody_listens`);
  expect(listed.json.events.map((e: { id: string }) => e.id)).toEqual([r.json.event.id]);
  const all = await api.call("GET", `${V1}/events?limit=1`);
  expect(all.json.events).toHaveLength(1);
  expect((await api.call("GET", `${V1}/events/e-nope`)).status).toBe(404);
});

test("bad events are 400 naming the field", async () => {
  const badName = await api.call("POST", `${V1}/events`, { json: { name: "source-data updated" } });
  expect(badName.status).toBe(400);
  expect(badName.json.error).toMatchObject({ code: "BAD_INPUT", field: "body.name" });
  expect(badName.json.error.message).toMatch(/letters, digits and underscores/);
  const missing = await api.call("POST", `${V1}/events`, { json: { data: {} } });
  expect(missing.json.error.message).toBe("body.name: is required");
  const notJson = await api.call("POST", `${V1}/events`, { body: "name: x", type: "text/plain" });
  expect(notJson.status).toBe(415);
  const noBody = await api.call("POST", `${V1}/events`);
  expect(noBody.status).toBe(400);
  expect((await api.call("GET", `${V1}/events?limit=1000`)).json.error.field).toBe("query.limit");
});

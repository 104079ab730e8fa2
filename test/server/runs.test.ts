import { spawnSync } from "node:child_process";
import { hostname } from "node:os";
import { beforeAll, describe, expect, test } from "vitest";
import { executeRun } from "../../src/engine/index.js";
import { startApi } from "./api-helpers.js";

const api = await startApi();
const V1 = "/api/v1";

const greet = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: api-greet
spec:
  params:
    who: { type: string, default: world }
    times: { type: integer, default: 1 }
  retry: { limit: 0 }
  steps:
    - name: greet
      exec:
        command: [sh, -c, 'echo "hello $1"', sh, "\${{ params.who }}"]
`;
const fails = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: api-fails
spec:
  retry: { limit: 0 }
  steps:
    - name: boom
      exec:
        command: [sh, -c, "echo going down >&2; exit 3"]
`;

const start = (wf: string, json: unknown = {}) => api.call("POST", `${V1}/workflows/${wf}/runs`, { json });
const execute = (id: string) => executeRun(id, { store: api.env.store, actions: api.env.actions, home: api.env.home });

beforeAll(async () => {
  for (const text of [greet, fails]) expect((await api.call("POST", `${V1}/workflows`, { body: text })).status).toBe(201);
});

describe("starting runs", () => {
  test("201 with a pending run triggered by the API, listed with status pending", async () => {
    const r = await start("api-greet", { params: { who: "api", times: 2 } });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({
      workflow: "api-greet",
      status: "pending",
      params: { who: "api", times: 2 },
      trigger: { type: "api" },
      owner: null,
      cancelRequested: false,
    });
    const list = await api.call("GET", `${V1}/runs?workflow=api-greet&status=pending`);
    expect(list.json.runs.map((x: { id: string }) => x.id)).toContain(r.json.id);
  });

  test("unknown workflow 404, bad params 400, bad body 400 naming the field", async () => {
    expect((await start("nope")).status).toBe(404);
    const unknownParam = await start("api-greet", { params: { whom: "x" } });
    expect(unknownParam.status).toBe(400);
    expect(unknownParam.json.error.code).toBe("USAGE");
    expect(unknownParam.json.error.message).toMatch(/no parameter "whom"/);
    const badType = await start("api-greet", { params: { times: "many" } });
    expect(badType.status).toBe(400);
    const nested = await start("api-greet", { params: { who: { a: 1 } } });
    expect(nested.status).toBe(400);
    expect(nested.json.error.field).toBe("body.params.who");
  });
});

describe("run detail, logs and state changes", () => {
  test("detail has steps and attempts; the attempt log is served as text", async () => {
    const id = (await start("api-greet", { params: { who: "logs" } })).json.id as string;
    expect((await execute(id)).status).toBe("succeeded");
    const detail = await api.call("GET", `${V1}/runs/${id}`);
    expect(detail.status).toBe(200);
    expect(detail.json).toMatchObject({ id, status: "succeeded", steps: [{ name: "greet", status: "succeeded", attempts: [{ n: 1, status: "succeeded" }] }] });
    const log = await api.call("GET", `${V1}/runs/${id}/steps/greet/attempts/1/logs`);
    expect(log.status).toBe(200);
    expect(log.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(log.text).toContain("hello logs");
    for (const path of [
      `/runs/${id}/steps/greet/attempts/2/logs`,
      `/runs/${id}/steps/nope/attempts/1/logs`,
      `/runs/r-nope/steps/greet/attempts/1/logs`,
      `/runs/r-nope`,
    ]) {
      const r = await api.call("GET", V1 + path);
      expect(r.status, path).toBe(404);
      expect(r.json.error.code).toBe("NOT_FOUND");
    }
    const badN = await api.call("GET", `${V1}/runs/${id}/steps/greet/attempts/zero/logs`);
    expect(badN.status).toBe(400);
    expect(badN.json.error.field).toBe("path.n");
  });

  test("every ended attempt carries what it consumed, as the OpenAPI document describes it", async () => {
    const id = (await start("api-greet", { params: { who: "usage" } })).json.id as string;
    expect((await execute(id)).status).toBe("succeeded");
    const attempt = (await api.call("GET", `${V1}/runs/${id}`)).json.steps[0].attempts[0];
    expect(attempt.usage).toEqual({
      cpuMs: expect.any(Number),
      peakMemoryBytes: expect.toBeOneOf([null, expect.any(Number)]),
      readBytes: expect.any(Number),
      writtenBytes: expect.any(Number),
      scope: "process-tree",
    });
    // `sh -c 'echo "hello usage"'`: 12 bytes to stdout, and the program files read at start.
    expect(attempt.usage.writtenBytes).toBeGreaterThanOrEqual("hello usage\n".length);
    expect(attempt.usage.readBytes).toBeGreaterThan(0);

    const doc = (await api.call("GET", `${V1}/openapi.json`)).json;
    const schema = doc.components.schemas.AttemptUsage;
    expect(Object.keys(schema.properties).sort()).toEqual(["cpuMs", "peakMemoryBytes", "readBytes", "scope", "writtenBytes"]);
    expect(schema.properties.scope.enum).toEqual(["process-tree", "process"]);
    const attemptItems = doc.components.schemas.RunDetail.properties.steps.items.properties.attempts.items;
    expect(JSON.stringify(attemptItems.properties.usage)).toContain("#/components/schemas/AttemptUsage");
  });

  test("retry: 202 for a failed run (pending again), 409 otherwise", async () => {
    const id = (await start("api-fails")).json.id as string;
    expect((await api.call("POST", `${V1}/runs/${id}/retry`)).status).toBe(409); // still pending
    expect((await execute(id)).status).toBe("failed");
    const log = await api.call("GET", `${V1}/runs/${id}/steps/boom/attempts/1/logs`);
    expect(log.text).toContain("going down");
    const retry = await api.call("POST", `${V1}/runs/${id}/retry`);
    expect(retry.status).toBe(202);
    expect(retry.json).toMatchObject({ id, status: "pending" });
    expect((await api.call("POST", `${V1}/runs/r-nope/retry`)).status).toBe(404);
  });

  test("cancel: 202 for a pending run, 409 once it ended; resume: 202 when unowned, 409 when ended", async () => {
    const id = (await start("api-greet")).json.id as string;
    const resume = await api.call("POST", `${V1}/runs/${id}/resume`);
    expect(resume.status).toBe(202);
    const cancel = await api.call("POST", `${V1}/runs/${id}/cancel`);
    expect(cancel.status).toBe(202);
    expect(cancel.json).toMatchObject({ id, cancelRequested: true });
    expect((await execute(id)).status).toBe("cancelled");
    const again = await api.call("POST", `${V1}/runs/${id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.json.error.code).toBe("CONFLICT");
    expect((await api.call("POST", `${V1}/runs/${id}/resume`)).status).toBe(409);
    expect((await api.call("POST", `${V1}/runs/r-nope/cancel`)).status).toBe(404);
  });
});

describe("resuming a run whose process died", () => {
  test("resume: 202 when the live lease belongs to a process of this host that is gone, 409 while its owner lives", async () => {
    const id = (await start("api-greet")).json.id as string;
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    expect(await api.env.store.claimRun(id, `${hostname()}:${gone.stdout}:dead00`, 600_000, Date.now())).toBe(true);
    expect((await api.call("POST", `${V1}/runs/${id}/resume`)).status).toBe(202);
    const other = (await start("api-greet")).json.id as string;
    expect(await api.env.store.claimRun(other, `${hostname()}:${process.pid}:live00`, 600_000, Date.now())).toBe(true);
    const refused = await api.call("POST", `${V1}/runs/${other}/resume`);
    expect(refused.status).toBe(409);
    expect(refused.json.error.message).toContain("nothing to resume");
  });
});

describe("listing runs", () => {
  test("pagination, newest first, and filters", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await start("api-greet", { params: { who: `p${i}` } })).json.id);
    const page = async (q: string) => (await api.call("GET", `${V1}/runs?workflow=api-greet&${q}`)).json;
    const all = await page("limit=500");
    const mine = all.runs.map((r: { id: string }) => r.id).filter((id: string) => ids.includes(id));
    expect(mine).toEqual([...ids].reverse());
    const first = await page("limit=2");
    expect(first).toMatchObject({ limit: 2, offset: 0 });
    expect(first.runs).toHaveLength(2);
    const second = await page("limit=2&offset=2");
    expect(second.offset).toBe(2);
    expect(second.runs.map((r: { id: string }) => r.id)).toEqual(all.runs.slice(2, 4).map((r: { id: string }) => r.id));
    expect((await page("")).limit).toBe(50);

    const failed = await api.call("GET", `${V1}/runs?status=failed`);
    expect(failed.json.runs.every((r: { status: string }) => r.status === "failed")).toBe(true);
    expect((await api.call("GET", `${V1}/runs?workflow=nope`)).json.runs).toEqual([]);
    expect((await page("since=2999-01-01T00:00:00Z")).runs).toEqual([]);
    expect((await page("until=2000-01-01T00:00:00%2B02:00")).runs).toEqual([]);
    expect((await page("since=2000-01-01T00:00:00Z&limit=500")).runs.length).toBe(all.runs.length);
  });

  test("bad query values are 400 naming the field", async () => {
    const cases: [string, string, RegExp][] = [
      ["limit=501", "query.limit", /query\.limit: must be ≤ 500/],
      ["limit=0", "query.limit", /query\.limit: must be ≥ 1/],
      ["limit=ten", "query.limit", /query\.limit: must be a number/],
      ["offset=-1", "query.offset", /query\.offset: must be ≥ 0/],
      ["status=done", "query.status", /query\.status: must be one of "pending"/],
      ["since=yesterday", "query.since", /query\.since: must be an ISO 8601 date-time/],
      ["stauts=failed", "query", /unknown field "stauts"/],
    ];
    for (const [q, field, message] of cases) {
      const r = await api.call("GET", `${V1}/runs?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.json.error).toMatchObject({ code: "BAD_INPUT", field });
      expect(r.json.error.message).toMatch(message);
    }
  });
});

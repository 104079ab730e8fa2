import { describe, expect, test } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { startApi } from "./api-helpers.js";

const api = await startApi();
const V1 = "/api/v1";

const flow = (name: string, echo: string) => `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: ${name}
spec:
  description: says ${echo}
  triggers:
    - event: ${name.replace(/-/g, "_")}_ready
  steps:
    - name: say
      exec:
        command: [echo, ${echo}]
`;

describe("applying workflows", () => {
  test("the repository's workflow files and the example apply as YAML", async () => {
    const files = [
      ...readdirSync("workflows")
        .filter((f) => f.endsWith(".yaml"))
        .map((f) => `workflows/${f}`),
      "examples/hello-pipeline.yaml",
    ];
    for (const f of files) {
      const r = await api.call("POST", `${V1}/workflows`, { body: readFileSync(f, "utf8") });
      expect(r.status, `${f}: ${r.text}`).toBe(201);
      expect(r.json.applied[0]).toMatchObject({ version: 1, created: true, source: null });
    }
    const list = await api.call("GET", `${V1}/workflows`);
    expect(list.status).toBe(200);
    const hello = list.json.workflows.find((w: { name: string }) => w.name === "hello-pipeline");
    expect(hello).toMatchObject({ version: 1, source: null, description: "Check, convert and fingerprint the bundled trades sample.", triggers: [] });
    const std = list.json.workflows.find((w: { name: string }) => w.name === "standard-ingestion");
    expect(std.triggers).toContainEqual({ event: "source_data_updated" });
  });

  test("text/yaml and JSON {yaml} bodies; an unchanged text adds no version (200)", async () => {
    const a = await api.call("POST", `${V1}/workflows`, { body: flow("api-flow", "one"), type: "text/yaml" });
    expect(a.status).toBe(201);
    expect(a.json.applied).toEqual([{ name: "api-flow", version: 1, created: true, source: null }]);
    const b = await api.call("POST", `${V1}/workflows`, { json: { yaml: flow("api-flow", "two") } });
    expect(b.status).toBe(201);
    expect(b.json.applied[0]).toMatchObject({ version: 2, created: true });
    const same = await api.call("POST", `${V1}/workflows`, { json: { yaml: flow("api-flow", "two") } });
    expect(same.status).toBe(200);
    expect(same.json.applied[0]).toMatchObject({ version: 2, created: false });
  });

  test("an invalid workflow is refused with 422 and positioned problems", async () => {
    const syntax = await api.call("POST", `${V1}/workflows`, { body: "apiVersion: sluice.dev/v1alpha1\nkind: [Workflow\n" });
    expect(syntax.status).toBe(422);
    expect(syntax.json.error.code).toBe("SPEC_INVALID");
    expect(syntax.json.error.problems[0]).toMatchObject({ file: "body", line: expect.any(Number), col: expect.any(Number) });
    expect(syntax.json.error.problems[0].message).toMatch(/YAML syntax error/);

    const bad = flow("api-bad", "x").replace("      exec:", "      retires: 3\n      exec:");
    const schema = await api.call("POST", `${V1}/workflows`, { json: { yaml: bad, file: "api-bad.yaml" } });
    expect(schema.status).toBe(422);
    expect(schema.json.error.problems).toEqual([{ file: "api-bad.yaml", line: 11, col: 7, message: expect.stringMatching(/unknown field "retires"/) }]);
    expect(schema.json.error.message).toContain("api-bad.yaml:11:7");
    // Nothing was stored.
    expect((await api.call("GET", `${V1}/workflows/api-bad`)).status).toBe(404);
  });

  test("bodies that are not a workflow text: 400 or 415", async () => {
    const empty = await api.call("POST", `${V1}/workflows`, { body: "  \n" });
    expect(empty.status).toBe(400);
    expect(empty.json.error).toMatchObject({ code: "BAD_INPUT", field: "body" });
    const noYaml = await api.call("POST", `${V1}/workflows`, { json: { text: "x" } });
    expect(noYaml.status).toBe(400);
    expect(noYaml.json.error.message).toMatch(/body\.yaml: is required/);
    expect(noYaml.json.error.message).toMatch(/unknown field "text"/);
    const malformed = await api.call("POST", `${V1}/workflows`, { body: "{not json", type: "application/json" });
    expect(malformed.status).toBe(400);
    expect(malformed.json.error.code).toBe("BAD_INPUT");
    const form = await api.call("POST", `${V1}/workflows`, { body: "a=b", type: "application/x-www-form-urlencoded" });
    expect(form.status).toBe(415);
    expect(form.json.error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
  });
});

describe("reading and rolling back", () => {
  test("get returns the current version with spec and yaml; versions lists all, newest first", async () => {
    await api.call("POST", `${V1}/workflows`, { body: flow("api-roll", "v1") });
    await api.call("POST", `${V1}/workflows`, { body: flow("api-roll", "v2") });
    await api.call("POST", `${V1}/workflows`, { body: flow("api-roll", "v3") });
    const cur = await api.call("GET", `${V1}/workflows/api-roll`);
    expect(cur.status).toBe(200);
    expect(cur.json).toMatchObject({ name: "api-roll", version: 3, description: "says v3", triggers: [{ event: "api_roll_ready" }] });
    expect(cur.json.yaml).toBe(flow("api-roll", "v3"));
    expect(cur.json.spec.spec.steps[0].exec.command).toEqual(["echo", "v3"]);
    const versions = await api.call("GET", `${V1}/workflows/api-roll/versions`);
    expect(versions.json.versions.map((v: { version: number; current: boolean }) => [v.version, v.current])).toEqual([
      [3, true],
      [2, false],
      [1, false],
    ]);
  });

  test("rollback to the previous version, or to a given one", async () => {
    const prev = await api.call("POST", `${V1}/workflows/api-roll/rollback`);
    expect(prev.status).toBe(200);
    expect(prev.json).toMatchObject({ name: "api-roll", version: 2, current: true });
    const to = await api.call("POST", `${V1}/workflows/api-roll/rollback`, { json: { to: 1 } });
    expect(to.json.version).toBe(1);
    expect((await api.call("GET", `${V1}/workflows/api-roll`)).json.yaml).toBe(flow("api-roll", "v1"));
    // Nothing before version 1, no version 9, no such workflow, a bad `to`.
    expect((await api.call("POST", `${V1}/workflows/api-roll/rollback`)).status).toBe(409);
    const nine = await api.call("POST", `${V1}/workflows/api-roll/rollback`, { json: { to: 9 } });
    expect(nine.status).toBe(404);
    expect(nine.json.error.code).toBe("NOT_FOUND");
    expect((await api.call("POST", `${V1}/workflows/nope/rollback`)).status).toBe(404);
    const zero = await api.call("POST", `${V1}/workflows/api-roll/rollback`, { json: { to: 0 } });
    expect(zero.status).toBe(400);
    expect(zero.json.error).toMatchObject({ field: "body.to", message: "body.to: must be ≥ 1" });
  });

  test("unknown workflows are 404 JSON", async () => {
    for (const path of ["/workflows/nope", "/workflows/nope/versions"]) {
      const r = await api.call("GET", V1 + path);
      expect(r.status).toBe(404);
      expect(r.json.error.code).toBe("NOT_FOUND");
    }
  });
});

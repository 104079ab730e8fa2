import { describe, expect, test } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { scratch } from "../helpers.js";
import { createApp } from "../../src/server/app.js";
import { AUTH_OFF, identify, resolveAuth, type AuthConfig } from "../../src/server/auth.js";
import { parseServerConfig } from "../../src/server/config.js";
import { startHttpServer } from "../../src/server/listen.js";
import { startApi } from "./api-helpers.js";

const dir = scratch()("sluice-auth-");
writeFileSync(join(dir, "admin.token"), "admin-secret\n");
const configFile = join(dir, "serve.yaml");
const config = parseServerConfig(
  `auth:
  tokens:
    - { name: dash, token: env:TEST_VIEWER_TOKEN, role: viewer }
    - { name: ci, token: env:TEST_OPERATOR_TOKEN, role: operator }
    - { name: ops, token: file:admin.token, role: admin }
`,
  configFile,
);
const auth = await resolveAuth(config.auth, { env: { TEST_VIEWER_TOKEN: "viewer-secret", TEST_OPERATOR_TOKEN: "operator-secret" }, configFile });
const api = await startApi({ auth });
const V1 = "/api/v1";
const wf = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: api-auth }
spec:
  steps:
    - name: one
      exec: { command: ["true"] }
`;

describe("resolving tokens", () => {
  test("tokens are kept as hashes and identified by value", () => {
    expect(auth.tokens.map((t) => [t.name, t.role])).toEqual([
      ["dash", "viewer"],
      ["ci", "operator"],
      ["ops", "admin"],
    ]);
    expect(JSON.stringify(auth)).not.toContain("secret");
    expect(identify(auth, "admin-secret")?.name).toBe("ops");
    expect(identify(auth, "admin-secret\n")).toBeUndefined();
    expect(identify(auth, "")).toBeUndefined();
  });

  test("an unset variable or a shared token is a config error naming the field", async () => {
    await expect(resolveAuth(config.auth, { env: {}, configFile })).rejects.toThrow(/auth\.tokens\[0\]\.token \(dash\).*TEST_VIEWER_TOKEN/);
    await expect(resolveAuth(config.auth, { env: { TEST_VIEWER_TOKEN: "same", TEST_OPERATOR_TOKEN: "same" }, configFile })).rejects.toThrow(
      /"dash" and "ci" resolve to the same token/,
    );
  });
});

describe("roles", () => {
  test("401 without a token or with an unknown one, with a Bearer challenge", async () => {
    for (const token of [undefined, "nope"]) {
      const r = await api.call("GET", `${V1}/runs`, { token });
      expect(r.status).toBe(401);
      expect(r.json.error.code).toBe("UNAUTHENTICATED");
      expect(r.headers.get("www-authenticate")).toMatch(/^Bearer/);
    }
    const basic = await fetch(`${api.server.url}${V1}/runs`, { headers: { authorization: "Basic dXNlcjpwYXNz" } });
    expect(basic.status).toBe(401);
  });

  test("viewer reads; operator runs; admin applies", async () => {
    expect((await api.call("GET", `${V1}/runs`, { token: "viewer-secret" })).status).toBe(200);
    const viewerApply = await api.call("POST", `${V1}/workflows`, { body: wf, token: "viewer-secret" });
    expect(viewerApply.status).toBe(403);
    expect(viewerApply.json.error).toMatchObject({ code: "FORBIDDEN" });
    expect((await api.call("POST", `${V1}/workflows`, { body: wf, token: "operator-secret" })).status).toBe(403);
    expect((await api.call("POST", `${V1}/workflows`, { body: wf, token: "admin-secret" })).status).toBe(201);

    expect((await api.call("POST", `${V1}/workflows/api-auth/runs`, { json: {}, token: "viewer-secret" })).status).toBe(403);
    const run = await api.call("POST", `${V1}/workflows/api-auth/runs`, { json: {}, token: "operator-secret" });
    expect(run.status).toBe(201);
    expect((await api.call("POST", `${V1}/runs/${run.json.id}/cancel`, { token: "viewer-secret" })).status).toBe(403);
    expect((await api.call("POST", `${V1}/runs/${run.json.id}/cancel`, { token: "operator-secret" })).status).toBe(202);
    expect((await api.call("POST", `${V1}/events`, { json: { name: "x" }, token: "viewer-secret" })).status).toBe(403);
    expect((await api.call("POST", `${V1}/events`, { json: { name: "x" }, token: "operator-secret" })).status).toBe(202);
    expect((await api.call("POST", `${V1}/workflows/api-auth/rollback`, { token: "operator-secret" })).status).toBe(403);
    expect((await api.call("POST", `${V1}/workflows/api-auth/rollback`, { token: "admin-secret" })).status).toBe(409);
    expect((await api.call("GET", `${V1}/workflows/api-auth`, { token: "admin-secret" })).status).toBe(200);
  });

  test("authentication comes before validation: no token, no 400", async () => {
    expect((await api.call("GET", `${V1}/runs?limit=9999`)).status).toBe(401);
    expect((await api.call("GET", `${V1}/runs?limit=9999`, { token: "viewer-secret" })).status).toBe(400);
  });

  test("probes, metrics and the API description need no token", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics", `${V1}/openapi.json`]) expect((await api.call("GET", path)).status, path).toBe(200);
  });
});

describe("binding", () => {
  const deps = (a: AuthConfig) =>
    createApp({
      store: undefined as never,
      home: dir,
      actions: undefined as never,
      auth: a,
      ready: () => true,
      metrics: { contentType: "text/plain", render: async () => "" },
    });

  test("without tokens the server binds to loopback even when asked for every interface, and says why", async () => {
    const logged: string[] = [];
    const log = { info: (_: object, m?: string) => void logged.push(m ?? ""), warn: (_: object, m?: string) => void logged.push(m ?? "") };
    const s = await startHttpServer({ app: deps(AUTH_OFF), port: 0, host: "0.0.0.0", auth: AUTH_OFF, log });
    try {
      expect(s.url).toBe(`http://127.0.0.1:${s.port}`);
      expect(logged.join("\n")).toMatch(/authentication is off: listening on 127\.0\.0\.1 only, not 0\.0\.0\.0/);
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    } finally {
      await s.close();
    }
  });

  test("with tokens it binds the host asked for (loopback by default); close waits for requests in flight", async () => {
    const dflt = await startHttpServer({ app: deps(auth), port: 0, auth });
    expect(dflt.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await dflt.close();

    const slow = createApp({
      store: undefined as never,
      home: dir,
      actions: undefined as never,
      auth,
      ready: () => true,
      metrics: { contentType: "text/plain", render: () => new Promise((r) => setTimeout(() => r("slow 1\n"), 200)) },
    });
    const s = await startHttpServer({ app: slow, port: 0, host: "0.0.0.0", auth });
    expect(s.url).toBe(`http://0.0.0.0:${s.port}`);
    const inFlight = fetch(`http://127.0.0.1:${s.port}/metrics`).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 50));
    await s.close();
    expect(await inFlight).toBe("slow 1\n");
    await expect(fetch(`http://127.0.0.1:${s.port}/healthz`)).rejects.toThrow();
  });

  test("a port in use is a clear error", async () => {
    const a = await startHttpServer({ app: deps(AUTH_OFF), port: 0, auth: AUTH_OFF });
    try {
      await expect(startHttpServer({ app: deps(AUTH_OFF), port: a.port, auth: AUTH_OFF })).rejects.toThrow(
        /cannot listen on 127\.0\.0\.1:\d+: the port is in use/,
      );
    } finally {
      await a.close();
    }
  });
});

/**
 * A real API server over loopback on a fresh SQLite home, and a small fetch wrapper for tests.
 */
import { afterAll } from "vitest";
import { testEnv, type TestEnv } from "../helpers.js";
import { createApp } from "../../src/server/app.js";
import type { ServerDeps } from "../../src/server/deps.js";
import { AUTH_OFF, type AuthConfig } from "../../src/server/auth.js";
import { startHttpServer, type HttpServer } from "../../src/server/listen.js";

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export interface TestApi {
  env: TestEnv;
  server: HttpServer;
  call(method: string, path: string, opts?: { json?: unknown; body?: string; type?: string; token?: string }): Promise<Reply>;
  state: { ready: boolean };
}

/** Start a server for this test file; it and its home are removed after the file's tests. */
export async function startApi(opts: { auth?: AuthConfig; metrics?: ServerDeps["metrics"] } = {}): Promise<TestApi> {
  const env = testEnv();
  const state = { ready: true };
  const auth = opts.auth ?? AUTH_OFF;
  const app = createApp({
    store: env.store,
    home: env.home,
    actions: env.actions,
    auth,
    ready: () => state.ready,
    metrics: opts.metrics ?? { contentType: "text/plain; version=0.0.4; charset=utf-8", render: async () => "# HELP sluice_test a stub\nsluice_test 1\n" },
  });
  const server = await startHttpServer({ app, port: 0, auth });
  afterAll(async () => {
    await server.close();
    await env.cleanup();
  });
  return {
    env,
    server,
    state,
    call: (method, path, o = {}) => request(server.url, method, path, o),
  };
}

/** One HTTP request to a Sluice server: a JSON body, or a raw one (YAML by default); bearer token. */
export async function request(
  base: string,
  method: string,
  path: string,
  o: { json?: unknown; body?: string; type?: string; token?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  let body: string | undefined;
  if (o.json !== undefined) ((headers["content-type"] = "application/json"), (body = JSON.stringify(o.json)));
  if (o.body !== undefined) ((headers["content-type"] = o.type ?? "application/yaml"), (body = o.body));
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  const res = await fetch(base + path, { method, headers, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

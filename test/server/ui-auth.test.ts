/**
 * Logging in to the web UI with an API token (a real server with tokens configured): a session
 * cookie that is HTTP-only and SameSite=Strict, refusal without a valid token, role gating of
 * every button on the server, CSRF tokens bound to the session, and bearer tokens for scripts.
 */
import { beforeAll, describe, expect, test } from "vitest";
import { hashToken } from "../../src/server/auth.js";
import { startApi } from "./api-helpers.js";
import { csrfOf, uiClient } from "./ui-helpers.js";

const TOKENS = { viewer: "view-secret-123", operator: "op-secret-456" };
const api = await startApi({
  auth: {
    tokens: [
      { name: "vera", role: "viewer", hash: hashToken(TOKENS.viewer) },
      { name: "otto", role: "operator", hash: hashToken(TOKENS.operator) },
    ],
  },
});
const wf = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: ui-auth
spec:
  steps:
    - name: nap
      agent: test
      action: sleep
      with: { ms: 10 }
`;
let runId: string;

beforeAll(async () => {
  const adminless = await api.call("POST", "/api/v1/workflows", { body: wf, token: TOKENS.operator });
  expect(adminless.status).toBe(403); // applying needs admin: put it in the store directly
  const { applyWorkflowText } = await import("../../src/control/workflows.js");
  expect((await applyWorkflowText(api.env.store, api.env.actions, wf, "ui-auth.yaml")).ok).toBe(true);
  runId = (await api.call("POST", "/api/v1/workflows/ui-auth/runs", { json: {}, token: TOKENS.operator })).json.id;
});

describe("login", () => {
  test("without a session every page sends you to the login page; the login page asks for a token", async () => {
    const ui = uiClient(api.server.url);
    const r = await ui.get(`/ui/runs/${runId}`);
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe(`/ui/login?next=${encodeURIComponent(`/ui/runs/${runId}`)}`);
    const login = await ui.get(r.headers.get("location")!);
    expect(login.status).toBe(200);
    expect(login.text).toContain('data-testid="login-form"');
    expect((await ui.get("/ui/runs/live?ids=x")).status).toBe(303);
    // The assets are public (the login page needs its stylesheet).
    expect((await ui.get("/ui/assets/sluice.css")).status).toBe(200);
  });

  test("a wrong token is refused with 401 and no cookie; the right one gives an HTTP-only, SameSite=Strict session", async () => {
    const ui = uiClient(api.server.url);
    const bad = await ui.post("/ui/login", { token: "guess", next: "/ui/runs" });
    expect(bad.status).toBe(401);
    expect(bad.text).toContain("That token is not valid.");
    expect(ui.jar.size).toBe(0);
    const ok = await ui.post("/ui/login", { token: TOKENS.viewer, next: `/ui/runs/${runId}` });
    expect(ok.status).toBe(303);
    expect(ok.headers.get("location")).toBe(`/ui/runs/${runId}`);
    const cookie = ok.headers.getSetCookie()[0]!;
    expect(cookie).toMatch(/^sluice_session=/);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).not.toContain(TOKENS.viewer);
    const page = await ui.get(`/ui/runs/${runId}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain("vera (viewer)");
  });

  test("a tampered cookie is no session; an open redirect after login is not followed", async () => {
    const ui = uiClient(api.server.url);
    await ui.post("/ui/login", { token: TOKENS.viewer, next: "https://evil.example/" });
    const v = ui.jar.get("sluice_session")!;
    const forged = v.replace(/^v1\.[^.]+/, `v1.${Buffer.from("otto").toString("base64url")}`);
    ui.jar.set("sluice_session", forged);
    expect((await ui.get("/ui/runs")).status).toBe(303);
    const again = uiClient(api.server.url);
    const r = await again.post("/ui/login", { token: TOKENS.viewer, next: "//evil.example/x" });
    expect(r.headers.get("location")).toBe("/ui/runs");
  });

  test("logging out ends the session", async () => {
    const ui = uiClient(api.server.url);
    await ui.post("/ui/login", { token: TOKENS.viewer, next: "/ui/runs" });
    const csrf = csrfOf((await ui.get("/ui/runs")).text);
    expect((await ui.post("/ui/logout", { _csrf: csrf })).status).toBe(303);
    expect((await ui.get("/ui/runs")).status).toBe(303);
  });

  test("a script may use its bearer token directly, without a cookie or CSRF token", async () => {
    const ui = uiClient(api.server.url);
    expect((await ui.get("/ui/runs", { authorization: `Bearer ${TOKENS.viewer}` })).status).toBe(200);
    expect((await ui.get("/ui/runs", { authorization: "Bearer nope" })).status).toBe(303);
  });
});

describe("roles", () => {
  test("a viewer sees no buttons and is refused by the server when posting anyway", async () => {
    const ui = uiClient(api.server.url);
    await ui.post("/ui/login", { token: TOKENS.viewer, next: "/ui/runs" });
    const page = await ui.get(`/ui/runs/${runId}`);
    expect(page.text).not.toContain('data-testid="cancel-run"');
    expect(page.text).toContain("need the operator role");
    const r = await ui.post(`/ui/runs/${runId}/cancel`, { _csrf: csrfOf(page.text) });
    expect(r.status).toBe(403);
    expect(r.text).toContain("This needs the operator role; vera has viewer.");
    expect((await ui.get("/ui/start?workflow=ui-auth")).status).toBe(403);
    expect((await api.env.store.getRun(runId))!.status).toBe("pending");
  });

  test("an operator can cancel, with the CSRF token of their own session only", async () => {
    const otto = uiClient(api.server.url);
    await otto.post("/ui/login", { token: TOKENS.operator, next: "/ui/runs" });
    const vera = uiClient(api.server.url);
    await vera.post("/ui/login", { token: TOKENS.viewer, next: "/ui/runs" });
    const veraCsrf = csrfOf((await vera.get("/ui/runs")).text);
    const page = await otto.get(`/ui/runs/${runId}`);
    expect(page.text).toContain('data-testid="cancel-run"');
    expect((await otto.post(`/ui/runs/${runId}/cancel`, { _csrf: veraCsrf })).status).toBe(403);
    expect((await otto.post(`/ui/runs/${runId}/cancel`, { _csrf: csrfOf(page.text) })).status).toBe(303);
    expect((await api.env.store.getRun(runId))!.status).toBe("cancelled");
  });
});

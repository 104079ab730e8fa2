/**
 * The fake API server's own rules, over raw HTTP (what no KubeApi call can send: a status in a
 * main-endpoint patch, a JSON Patch, a watch without resourceVersion), so the operator's tests
 * built on it rest on checked behaviour.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mergePatch, startFakeApiServer, type FakeApiServer } from "./fake-apiserver.js";

let server: FakeApiServer;
beforeAll(async () => {
  server = await startFakeApiServer();
});
afterAll(() => server.close());

const base = "/apis/sluice.dev/v1alpha1/namespaces/fake";

async function call(method: string, path: string, body?: unknown, contentType = "application/merge-patch+json"): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${server.token}`,
      ...(body === undefined ? {} : { "content-type": method === "POST" ? "application/json" : contentType }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

/** The first `n` events of a watch, then the connection is dropped. */
async function firstEvents(query: string, n: number): Promise<any[]> {
  const ac = new AbortController();
  const res = await fetch(`${server.url}${base}/workflows?watch=true&${query}`, { headers: { authorization: `Bearer ${server.token}` }, signal: ac.signal });
  const reader = res.body!.getReader();
  const events: any[] = [];
  let buffered = "";
  while (events.length < n) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += Buffer.from(value).toString("utf8");
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const l of lines) if (l !== "") events.push(JSON.parse(l));
  }
  ac.abort();
  return events.slice(0, n);
}

describe("the fake API server", () => {
  it("keeps status out of main-endpoint patches and everything but status out of /status patches", async () => {
    server.apply("workflows", "fake", { metadata: { name: "w" }, spec: { steps: [] } });
    const main = await call("PATCH", `${base}/workflows/w`, { spec: { steps: [{ name: "a" }] }, status: { observedGeneration: 7 } });
    expect(main.status).toBe(200);
    expect(main.body.spec).toEqual({ steps: [{ name: "a" }] });
    expect(main.body.status).toBeUndefined();
    expect(main.body.metadata.generation).toBe(2);

    const status = await call("PATCH", `${base}/workflows/w/status`, {
      spec: { steps: [] },
      metadata: { labels: { x: "y" } },
      status: { observedGeneration: 2 },
    });
    expect(status.body).toMatchObject({ spec: { steps: [{ name: "a" }] }, status: { observedGeneration: 2 }, metadata: { generation: 2 } });
    expect(status.body.metadata.labels).toBeUndefined();

    const labels = await call("PATCH", `${base}/workflows/w`, { metadata: { labels: { team: "data" }, generation: 99, uid: "mine" } });
    expect(labels.body.metadata).toMatchObject({ labels: { team: "data" }, generation: 2, uid: status.body.metadata.uid });
  });

  it("writes nothing for a patch that changes nothing", async () => {
    server.apply("workflows", "fake", { metadata: { name: "same" }, spec: { steps: [] } });
    const before = server.resourceVersion();
    const res = await call("PATCH", `${base}/workflows/same`, { spec: { steps: [] } });
    expect(res.body.metadata.resourceVersion).toBe(before);
    expect(server.resourceVersion()).toBe(before);
  });

  it("takes merge patches only (415 for a JSON Patch)", async () => {
    server.apply("workflows", "fake", { metadata: { name: "jp" }, spec: {} });
    const res = await call("PATCH", `${base}/workflows/jp`, [{ op: "add", path: "/spec/x", value: 1 }], "application/json-patch+json");
    expect(res).toMatchObject({ status: 415, body: { kind: "Status", code: 415, reason: "UnsupportedMediaType" } });
  });

  it("starts a watch without resourceVersion with synthetic ADDED events; bookmarks only when asked", async () => {
    server.apply("workflows", "fake", { metadata: { name: "zz-listed" }, spec: {} });
    const events = await firstEvents("", 1);
    expect(events[0]).toMatchObject({ type: "ADDED", object: { kind: "Workflow", metadata: { namespace: "fake" } } });

    while (server.openWatches() > 0) await new Promise((r) => setTimeout(r, 10));
    const rv = server.resourceVersion();
    const withBookmarks = firstEvents(`resourceVersion=${rv}&allowWatchBookmarks=true`, 1);
    const without = firstEvents(`resourceVersion=${rv}`, 1);
    while (server.openWatches() < 2) await new Promise((r) => setTimeout(r, 10));
    server.bookmark();
    expect(await withBookmarks).toEqual([
      { type: "BOOKMARK", object: { kind: "Workflow", apiVersion: "sluice.dev/v1alpha1", metadata: { resourceVersion: rv } } },
    ]);
    server.closeWatches();
    expect(await without).toEqual([]);
  });

  it("logs requests with RBAC verbs, and refuses a missing token", async () => {
    const seen = server.requests().length;
    await call("GET", "/apis/sluice.dev/v1alpha1/workflowruns");
    await call("GET", `${base}/workflowruns/none`);
    await call("DELETE", `${base}/workflowruns/none`);
    expect(server.requests().slice(seen)).toEqual([
      { verb: "list", apiGroup: "sluice.dev", resource: "workflowruns" },
      { verb: "get", apiGroup: "sluice.dev", resource: "workflowruns", namespace: "fake", name: "none" },
      { verb: "delete", apiGroup: "sluice.dev", resource: "workflowruns", namespace: "fake", name: "none" },
    ]);
    const res = await fetch(`${server.url}${base}/workflows`);
    expect(res.status).toBe(401);
  });

  it("merges as RFC 7386 says", () => {
    // RFC 7386, appendix A (a selection).
    expect(mergePatch({ a: "b" }, { a: "c" })).toEqual({ a: "c" });
    expect(mergePatch({ a: "b", b: "c" }, { a: null })).toEqual({ b: "c" });
    expect(mergePatch({ a: ["b"] }, { a: "c" })).toEqual({ a: "c" });
    expect(mergePatch({ a: [{ b: "c" }] }, { a: [1] })).toEqual({ a: [1] });
    expect(mergePatch({ a: { b: "c" } }, { a: { b: "d", c: null } })).toEqual({ a: { b: "d" } });
    expect(mergePatch({ e: null }, { a: 1 })).toEqual({ e: null, a: 1 });
    expect(mergePatch({}, { a: { bb: { ccc: null } } })).toEqual({ a: { bb: {} } });
  });
});

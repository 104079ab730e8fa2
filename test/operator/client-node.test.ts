/**
 * The real KubeApi (src/operator/kube-client.ts, @kubernetes/client-node) against the fake API
 * server: every call over HTTP, every failure as a KubeApiError with the server's status, and the
 * operator's Role checked against every request these tests made.
 */
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { KubeConfig } from "@kubernetes/client-node";
import { SluiceError } from "../../src/errors.js";
import { kubeApiFromConfig, loadKubeConfig } from "../../src/operator/kube-client.js";
import { isKubeApiError, KubeApiError, type KubeApi, type KubeObject, type WatchEvent } from "../../src/operator/kube.js";
import { failure, scratch, waitUntil } from "../helpers.js";
import { API_VERSION, startFakeApiServer, type FakeApiServer } from "./fake-apiserver.js";
import { roleCovers, roleRules } from "./rbac.js";

const FINALIZER = "sluice.dev/operator";
const RBAC_FILE = join(import.meta.dirname, "../../deploy/k8s/base/operator-rbac.yaml");

let server: FakeApiServer;
let api: KubeApi;
const dirs = scratch();

beforeAll(async () => {
  server = await startFakeApiServer();
  api = kubeApiFromConfig(server.kubeConfig());
});
afterAll(() => server.close());

/** Workflows are the user's (kubectl apply), WorkflowRuns the operator's too: tests create them so. */
function userWorkflow(namespace: string, name: string, extra: Partial<KubeObject["metadata"]> = {}): KubeObject {
  return server.apply("workflows", namespace, { metadata: { name, ...extra }, spec: { steps: [{ name: "load", action: "noop" }] } });
}
const run = (name: string, metadata: Partial<KubeObject["metadata"]> = {}) => ({
  apiVersion: API_VERSION,
  kind: "WorkflowRun",
  metadata: { name, ...metadata },
  spec: { workflowRef: { name: "daily" } },
});

function watcher() {
  const events: WatchEvent[] = [];
  const closes: (Error | undefined)[] = [];
  return { events, closes, onEvent: (e: WatchEvent) => void events.push(e), onClose: (err?: Error) => void closes.push(err) };
}

const rejection = (p: Promise<unknown>) => failure(p, KubeApiError);

const names = (items: KubeObject[]) => items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`);

describe("list", () => {
  it("lists one namespace, or all of them, with the resourceVersion to watch from", async () => {
    userWorkflow("list-a", "alpha");
    userWorkflow("list-a", "beta");
    userWorkflow("list-b", "gamma");
    await api.create("workflowruns", "list-a", run("alpha-1"));

    const one = await api.list("workflows", "list-a");
    expect(names(one.items)).toEqual(["list-a/alpha", "list-a/beta"]);
    expect(one.items[0]).toMatchObject({ apiVersion: API_VERSION, kind: "Workflow", metadata: { generation: 1 } });
    expect(one.resourceVersion).toBe(server.resourceVersion());

    const all = await api.list("workflows", null);
    expect(names(all.items).filter((n) => n.startsWith("list-"))).toEqual(["list-a/alpha", "list-a/beta", "list-b/gamma"]);
    expect(names((await api.list("workflowruns", null)).items)).toContain("list-a/alpha-1");
    expect((await api.list("workflows", "list-empty")).items).toEqual([]);
  });
});

describe("watch", () => {
  it("delivers ADDED, MODIFIED and DELETED after the list's resourceVersion, in order, and bookmarks", async () => {
    const from = (await api.list("workflowruns", "watch")).resourceVersion;
    const w = watcher();
    const handle = await api.watch("workflowruns", "watch", from, w.onEvent, w.onClose);

    await api.create("workflowruns", "watch", run("r1"));
    await api.patchStatus("workflowruns", "watch", "r1", { phase: "Running" });
    await api.create("workflowruns", "elsewhere", run("not-mine"));
    await api.delete("workflowruns", "watch", "r1");
    await waitUntil(() => w.events.length >= 3, 5000, "three events");
    expect(w.events.map((e) => (e.type === "BOOKMARK" ? e.type : `${e.type} ${e.object.metadata.name}`))).toEqual(["ADDED r1", "MODIFIED r1", "DELETED r1"]);
    const rvs = w.events.map((e) => Number(e.type === "BOOKMARK" ? e.resourceVersion : e.object.metadata.resourceVersion));
    expect(rvs).toEqual([...rvs].sort((a, b) => a - b));
    expect(w.events[1]).toMatchObject({ type: "MODIFIED", object: { status: { phase: "Running" } } });

    server.bookmark();
    await waitUntil(() => w.events.length === 4, 5000, "the bookmark");
    expect(w.events[3]).toEqual({ type: "BOOKMARK", resourceVersion: server.resourceVersion() });

    // stop(): the watch ends, silently, and delivers nothing more.
    const open = server.openWatches();
    handle.stop();
    await waitUntil(() => server.openWatches() === open - 1, 5000, "the server to see the watch go");
    await api.create("workflowruns", "watch", run("r2"));
    await new Promise((r) => setTimeout(r, 100));
    expect(w.events).toHaveLength(4);
    expect(w.closes).toEqual([]);
  });

  it("watches all namespaces", async () => {
    const from = (await api.list("workflows", null)).resourceVersion;
    const w = watcher();
    const handle = await api.watch("workflows", null, from, w.onEvent, w.onClose);
    await api.patchMetadata("workflows", "all-1", userWorkflow("all-1", "a").metadata.name, { labels: { team: "data" } });
    userWorkflow("all-2", "b");
    await waitUntil(() => w.events.length >= 3, 5000, "events from two namespaces");
    expect(w.events.map((e) => e.type !== "BOOKMARK" && `${e.type} ${e.object.metadata.namespace}/${e.object.metadata.name}`)).toEqual([
      "ADDED all-1/a",
      "MODIFIED all-1/a",
      "ADDED all-2/b",
    ]);
    handle.stop();
  });

  it("ends with the error an event handler throws, instead of losing the event", async () => {
    const closes: (Error | undefined)[] = [];
    const from = (await api.list("workflowruns", "throws")).resourceVersion;
    await api.watch(
      "workflowruns",
      "throws",
      from,
      () => {
        throw new Error("the controller could not take it");
      },
      (err) => void closes.push(err),
    );
    await api.create("workflowruns", "throws", run("r1"));
    await waitUntil(() => closes.length === 1, 5000, "onClose");
    expect(closes[0]?.message).toBe("the controller could not take it");
    await api.delete("workflowruns", "throws", "r1");
  });

  it("ends with KubeApiError 410 when its resourceVersion is older than the server's history", async () => {
    const from = (await api.list("workflowruns", "expired")).resourceVersion;
    await api.create("workflowruns", "expired", run("r1"));
    server.compact();
    const w = watcher();
    await api.watch("workflowruns", "expired", from, w.onEvent, w.onClose);
    await waitUntil(() => w.closes.length === 1, 5000, "onClose");
    expect(w.events).toEqual([]);
    expect(isKubeApiError(w.closes[0], 410)).toBe(true);
    expect(w.closes[0]).toMatchObject({ reason: "Expired" });

    // Relisting gives a resourceVersion the server can watch from again.
    const relisted = await api.list("workflowruns", "expired");
    const again = watcher();
    const handle = await api.watch("workflowruns", "expired", relisted.resourceVersion, again.onEvent, again.onClose);
    await api.delete("workflowruns", "expired", "r1");
    await waitUntil(() => again.events.length === 1, 5000, "the DELETED event");
    expect(again.events[0]).toMatchObject({ type: "DELETED" });
    expect(again.closes).toEqual([]);
    handle.stop();
  });

  it("ends without an error when the server closes it (its timeout)", async () => {
    const w = watcher();
    await api.watch("workflows", "timeout", (await api.list("workflows", "timeout")).resourceVersion, w.onEvent, w.onClose);
    await waitUntil(() => server.openWatches() > 0, 5000, "the watch to be open");
    server.closeWatches();
    await waitUntil(() => w.closes.length === 1, 5000, "onClose");
    expect(w.closes).toEqual([undefined]);
  });

  it("ends with the HTTP status when the server answers the watch with an error", async () => {
    server.failNext(1, 500, { verb: "watch" });
    const w = watcher();
    const handle = await api.watch("workflows", "broken", "1", w.onEvent, w.onClose);
    expect(handle).toBeDefined();
    await waitUntil(() => w.closes.length === 1, 5000, "onClose");
    expect(isKubeApiError(w.closes[0], 500)).toBe(true);
  });
});

describe("writes", () => {
  it("patchStatus changes the status only, and generation stays", async () => {
    const before = userWorkflow("status", "daily");
    const conditions = [
      { type: "Ready", status: "True", observedGeneration: 1, lastTransitionTime: "2025-01-01T00:00:00Z", reason: "Stored", message: "registry version 1" },
    ];
    const after = await api.patchStatus("workflows", "status", "daily", { observedGeneration: 1, registryVersion: 1, conditions });
    expect(after.status).toEqual({ observedGeneration: 1, registryVersion: 1, conditions });
    expect(after.spec).toEqual(before.spec);
    expect(after.metadata.generation).toBe(1);
    expect(Number(after.metadata.resourceVersion)).toBeGreaterThan(Number(before.metadata.resourceVersion));
    expect(await api.get("workflows", "status", "daily")).toEqual(after);

    // A merge patch: fields left out stay, null removes.
    const merged = await api.patchStatus("workflows", "status", "daily", { registryVersion: null });
    expect(merged.status).toEqual({ observedGeneration: 1, conditions });

    // A user's spec change bumps generation; the operator's status writes never do.
    const edited = server.apply("workflows", "status", {
      metadata: { name: "daily" },
      spec: {
        steps: [
          { name: "load", action: "noop" },
          { name: "check", action: "noop" },
        ],
      },
    });
    expect(edited.metadata.generation).toBe(2);
    expect(edited.status).toEqual(merged.status);
  });

  it("refuses a write guarded by a stale resourceVersion with KubeApiError 409", async () => {
    const created = await api.create("workflowruns", "guard", run("r1"));
    const first = await api.patchStatus("workflowruns", "guard", "r1", { phase: "Pending" }, created.metadata.resourceVersion);
    expect(first.status).toEqual({ phase: "Pending" });

    const stale = await rejection(api.patchStatus("workflowruns", "guard", "r1", { phase: "Running" }, created.metadata.resourceVersion));
    expect(stale).toMatchObject({ status: 409, reason: "Conflict" });
    expect(stale.message).toContain("the object has been modified");
    const staleMeta = await rejection(api.patchMetadata("workflowruns", "guard", "r1", { finalizers: [FINALIZER] }, created.metadata.resourceVersion));
    expect(staleMeta.status).toBe(409);
    expect((await api.get("workflowruns", "guard", "r1")).status).toEqual({ phase: "Pending" });

    const current = await api.patchMetadata("workflowruns", "guard", "r1", { finalizers: [FINALIZER] }, first.metadata.resourceVersion);
    expect(current.metadata.finalizers).toEqual([FINALIZER]);
    await api.patchMetadata("workflowruns", "guard", "r1", { finalizers: [] });
    await api.delete("workflowruns", "guard", "r1");
  });

  it("gives the injected status: failNext(1, 500) → KubeApiError 500, then service again", async () => {
    userWorkflow("faults", "daily");
    server.failNext(1, 500);
    const err = await rejection(api.get("workflows", "faults", "daily"));
    expect(err).toMatchObject({ status: 500, reason: "InternalError" });
    expect((await api.get("workflows", "faults", "daily")).metadata.name).toBe("daily");

    server.failNext(1, 409, { method: "PATCH", path: "/apis/sluice.dev/v1alpha1/namespaces/faults/workflows/daily/status" });
    expect((await rejection(api.patchStatus("workflows", "faults", "daily", { observedGeneration: 1 }))).status).toBe(409);
    expect((await api.patchStatus("workflows", "faults", "daily", { observedGeneration: 1 })).status).toEqual({ observedGeneration: 1 });
  });

  it("creates with the server's metadata, and a duplicate name is KubeApiError 409 AlreadyExists", async () => {
    const created = await api.create("workflowruns", "create", run("nightly-1", { labels: { "sluice.dev/workflow": "nightly" } }));
    expect(created.metadata).toMatchObject({ name: "nightly-1", namespace: "create", generation: 1, labels: { "sluice.dev/workflow": "nightly" } });
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(created.metadata.resourceVersion).toBe(server.resourceVersion());

    const dup = await rejection(api.create("workflowruns", "create", run("nightly-1")));
    expect(dup).toMatchObject({ status: 409, reason: "AlreadyExists" });
    const bad = await rejection(api.create("workflowruns", "create", run("Nightly_1")));
    expect(bad).toMatchObject({ status: 422, reason: "Invalid" });
    await api.delete("workflowruns", "create", "nightly-1");
  });

  it("deletes through the finalizer: deletionTimestamp first, DELETED once the finalizers are gone", async () => {
    const from = (await api.list("workflowruns", "finalize")).resourceVersion;
    const w = watcher();
    const handle = await api.watch("workflowruns", "finalize", from, w.onEvent, w.onClose);
    await api.create("workflowruns", "finalize", run("r1", { finalizers: [FINALIZER] }));

    await api.delete("workflowruns", "finalize", "r1");
    const marked = await api.get("workflowruns", "finalize", "r1");
    expect(marked.metadata.deletionTimestamp).toBeDefined();
    expect(marked.metadata.finalizers).toEqual([FINALIZER]);
    await api.delete("workflowruns", "finalize", "r1"); // asking again changes nothing

    // A finalizer cannot be added to an object being deleted, only removed.
    const added = await rejection(api.patchMetadata("workflowruns", "finalize", "r1", { finalizers: [FINALIZER, "other.example/x"] }));
    expect(added.status).toBe(422);

    await api.patchMetadata("workflowruns", "finalize", "r1", { finalizers: [] }, marked.metadata.resourceVersion);
    await waitUntil(() => w.events.length === 3, 5000, "three events");
    expect(w.events.map((e) => e.type)).toEqual(["ADDED", "MODIFIED", "DELETED"]);
    expect(w.events[1]).toMatchObject({ object: { metadata: { deletionTimestamp: marked.metadata.deletionTimestamp } } });
    expect((await rejection(api.get("workflowruns", "finalize", "r1"))).status).toBe(404);
    await api.delete("workflowruns", "finalize", "r1"); // a 404 counts as done
    handle.stop();
  });

  it("reads a missing object as KubeApiError 404 NotFound", async () => {
    const err = await rejection(api.get("workflows", "nowhere", "ghost"));
    expect(err).toMatchObject({ status: 404, reason: "NotFound" });
    expect(err.message).toBe('workflows.sluice.dev "ghost" not found');
  });
});

describe("failures of the connection and the configuration", () => {
  afterEach(() => void vi.unstubAllEnvs());

  it("gives status 0 when the server cannot be reached, for calls and for watches", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "gone", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "c", cluster: "gone", user: "u" }],
      currentContext: "c",
    });
    const unreachable = kubeApiFromConfig(kc);
    const err = await rejection(unreachable.list("workflows", "any"));
    expect(err.status).toBe(0);
    expect(err.message).toContain("could not be reached");
    expect((await rejection(unreachable.patchStatus("workflowruns", "any", "r", { phase: "Running" }))).status).toBe(0);

    const w = watcher();
    await unreachable.watch("workflows", "any", "1", w.onEvent, w.onClose);
    await waitUntil(() => w.closes.length === 1, 5000, "onClose");
    expect(isKubeApiError(w.closes[0], 0)).toBe(true);
  });

  it("refuses a plain-http cluster not marked insecure at once, not at every call", () => {
    const kc = server.kubeConfig();
    kc.clusters = [{ ...kc.clusters[0]!, skipTLSVerify: false }];
    expect(() => kubeApiFromConfig(kc)).toThrow(/plain http/);
  });

  it("gives 401 for a wrong token", async () => {
    const kc = server.kubeConfig();
    kc.users = [{ name: "sluice-operator", token: "wrong" }];
    expect((await rejection(kubeApiFromConfig(kc).get("workflows", "any", "x"))).status).toBe(401);
  });

  it("loadKubeConfig reads KUBECONFIG", async () => {
    const file = server.writeKubeconfig(join(dirs("sluice-kube-"), "config"), "from-file");
    vi.stubEnv("KUBERNETES_SERVICE_HOST", undefined);
    vi.stubEnv("KUBECONFIG", file);
    const kc = loadKubeConfig();
    expect(kc.getCurrentCluster()?.server).toBe(server.url);
    userWorkflow("from-file", "daily");
    expect(names((await kubeApiFromConfig(kc).list("workflows", "from-file")).items)).toEqual(["from-file/daily"]);
  });

  it("loadKubeConfig says so in one sentence when there is no cluster configuration", () => {
    vi.stubEnv("KUBERNETES_SERVICE_HOST", undefined);
    vi.stubEnv("KUBECONFIG", undefined);
    vi.stubEnv("HOME", dirs("sluice-home-"));
    expect(() => loadKubeConfig()).toThrow(SluiceError);
    expect(() => loadKubeConfig()).toThrow(/no Kubernetes cluster configuration/);
    try {
      loadKubeConfig();
    } catch (err) {
      expect((err as SluiceError).code).toBe("BAD_CONFIG");
    }

    vi.stubEnv("KUBECONFIG", join(dirs("sluice-kube-"), "missing"));
    expect(() => loadKubeConfig()).toThrow(/cannot be read/);
  });

  it.skipIf(existsSync("/var/run/secrets/kubernetes.io/serviceaccount/token"))(
    "loadKubeConfig refuses in-cluster configuration without a service-account token",
    () => {
      vi.stubEnv("KUBERNETES_SERVICE_HOST", "10.0.0.1");
      vi.stubEnv("KUBERNETES_SERVICE_PORT", "443");
      expect(() => loadKubeConfig()).toThrow(/no service-account token/);
    },
  );
});

// Last: the requests of all the tests above, against the Role the operator is deployed with.
describe("the operator's Role", () => {
  it("grants every request these tests made through the client", () => {
    const rules = roleRules(readFileSync(RBAC_FILE, "utf8"), "sluice-operator");
    const requests = server.requests();
    const verbs = new Set(requests.map((r) => `${r.verb} ${r.resource}${r.subresource ? `/${r.subresource}` : ""}`));
    for (const v of ["list workflows", "watch workflows", "get workflows", "patch workflows", "patch workflows/status"]) expect(verbs).toContain(v);
    for (const v of [
      "list workflowruns",
      "watch workflowruns",
      "get workflowruns",
      "create workflowruns",
      "patch workflowruns",
      "patch workflowruns/status",
      "delete workflowruns",
    ]) {
      expect(verbs).toContain(v);
    }
    expect(roleCovers(rules, requests)).toEqual([]);
  });

  it("reports what a Role without workflowruns/status patch would forbid", () => {
    const rules = roleRules(readFileSync(RBAC_FILE, "utf8")).map((r) => ({ ...r, resources: (r.resources ?? []).filter((x) => x !== "workflowruns/status") }));
    expect(roleCovers(rules, server.requests())).toEqual([{ verb: "patch", apiGroup: "sluice.dev", resource: "workflowruns", subresource: "status" }]);
  });

  it("grants nothing outside its namespace: cluster-wide list and watch need a ClusterRole", () => {
    const rules = roleRules(readFileSync(RBAC_FILE, "utf8"));
    const inside = server.requests().filter((r) => r.namespace === "watch");
    expect(inside.length).toBeGreaterThan(0);
    expect(roleCovers(rules, inside, { namespace: "watch" })).toEqual([]);
    const clusterWide = server.requests().filter((r) => r.namespace === undefined);
    expect(roleCovers(rules, clusterWide, { namespace: "watch" })).toEqual([
      { verb: "list", apiGroup: "sluice.dev", resource: "workflows" },
      { verb: "list", apiGroup: "sluice.dev", resource: "workflowruns" },
      { verb: "watch", apiGroup: "sluice.dev", resource: "workflows" },
    ]);
  });
});

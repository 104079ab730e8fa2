/**
 * Layer 3, end to end: `sluice operator` and `sluice worker` as real processes, the real
 * @kubernetes/client-node inside the operator, against the local API server of
 * fake-apiserver.ts. A Workflow resource (the standard ingestion workflow, as it is in
 * workflows/) and a WorkflowRun go in; the rows come out in the warehouse and the counts in the
 * WorkflowRun's status; a run started by an event is mirrored as a WorkflowRun and deleted after
 * its TTL. Then a second operator takes over on SIGTERM, and the Role is checked against every
 * request the operators made.
 */
import Database from "better-sqlite3";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { KubeObject } from "../../src/operator/kube.js";
import { cond } from "./resources.js";
import { ROOT } from "../cli/cli-helpers.js";
import { killAll, sluiceCli, spawnSluice, type Proc } from "../cli/serve-helpers.js";
import { scratch, waitUntil } from "../helpers.js";
import { startFakeApiServer } from "./fake-apiserver.js";
import { roleCovers, roleRules } from "./rbac.js";

const tmp = scratch();
const FILE = "base-data-ingestion-workflow-standard-ingestion.yaml";
const STANDARD = "standard-ingestion";

afterAll(() => killAll());

describe("sluice operator against a local Kubernetes API server", () => {
  it("applies a Workflow, runs a WorkflowRun to the warehouse with its counts in status, hands over on SIGTERM, and stays within its Role", async () => {
    const server = await startFakeApiServer();
    const home = tmp("sluice-operator-");
    const env = { SLUICE_HOME: join(home, ".sluice"), KUBECONFIG: server.writeKubeconfig(join(home, "kubeconfig"), "data") };
    const procs: Proc[] = [];
    const start = (args: string[]) => {
      const p = spawnSluice(args, { cwd: ROOT, env });
      procs.push(p);
      return p;
    };
    try {
      const operatorArgs = ["operator", "--namespace", "data", "--poll", "300ms", "--lease-ttl", "3s", "--mirror-runs", "--mirror-ttl", "10s"];
      const first = start(operatorArgs);
      start(["worker"]);
      await waitUntil(() => first.stderr().includes('"msg":"operator: leading"'), 20_000, "the operator to lead");

      const doc = parse(readFileSync(join(ROOT, "workflows", FILE), "utf8")) as KubeObject;
      server.apply("workflows", "data", { apiVersion: doc.apiVersion, kind: doc.kind, metadata: { name: doc.metadata.name }, spec: doc.spec });
      await waitUntil(() => cond(server.object("workflows", "data", STANDARD), "Ready")?.status === "True", 20_000, "the Workflow to be Ready").catch(
        (e: Error) => {
          throw new Error(`${e.message}\n${first.stderr()}\n${JSON.stringify(server.object("workflows", "data", STANDARD))}`);
        },
      );
      const wf = server.object("workflows", "data", STANDARD)!;
      expect(wf.metadata.finalizers).toEqual(["sluice.dev/registry"]);
      expect(wf.status).toMatchObject({ observedGeneration: 1, registryVersion: 1 });

      server.apply("workflowruns", "data", { metadata: { name: "standard-1" }, spec: { workflowRef: { name: STANDARD } } });
      await waitUntil(() => server.object("workflowruns", "data", "standard-1")?.status?.phase === "Succeeded", 60_000, "the run to succeed");
      const run = server.object("workflowruns", "data", "standard-1")!;
      expect(run.status).toMatchObject({
        phase: "Succeeded",
        runId: `k8s-${run.metadata.uid}`,
        workflowVersion: 1,
        rows: { in: 2000, stored: 1960, quarantined: 40, duplicate: 0 },
      });
      expect(cond(run, "Complete")).toMatchObject({ status: "True", reason: "Succeeded", message: "2000 rows in: 1960 stored, 40 quarantined, 0 duplicates" });
      const db = new Database(join(home, ".sluice", "warehouse.db"), { readonly: true });
      expect((db.prepare("SELECT count(*) AS n FROM trades").get() as { n: number }).n).toBe(1960);
      db.close();

      // A run started by an event is mirrored as a WorkflowRun, followed to its end, and deleted
      // its TTL (10 s: the mirror loop looks every 5 s, and a run that ended more than a TTL ago is
      // never mirrored) after it ended.
      const emitted = await sluiceCli(["emit", "source_data_updated"], { cwd: ROOT, env });
      const eventRun = /started 1 run: (\S+)/.exec(emitted.stdout + emitted.stderr)?.[1];
      expect(eventRun, emitted.stdout + emitted.stderr).toBeDefined();
      const mirrorOf = () => server.objects("workflowruns", "data").find((o) => o.spec.runId === eventRun);
      await waitUntil(() => mirrorOf()?.status?.phase === "Succeeded", 60_000, "the mirrored run to succeed");
      expect(mirrorOf()!.metadata.labels).toMatchObject({ "sluice.dev/mirrored": "true", "sluice.dev/workflow": STANDARD });
      expect(cond(mirrorOf(), "Accepted")).toMatchObject({ reason: "Mirrored", message: `follows run ${eventRun} (started by event)` });
      await waitUntil(() => mirrorOf() === undefined, 20_000, "the mirror to be deleted after its TTL");

      // A second operator waits; SIGTERM on the first hands over at once (its lease is released).
      const second = start(operatorArgs);
      await waitUntil(() => second.stderr().includes("operator started"), 20_000, "the second operator to start");
      expect(second.stderr()).not.toContain("operator: leading");
      expect(await first.stop("SIGTERM")).toBe(0);
      await waitUntil(() => second.stderr().includes('"msg":"operator: leading"'), 5_000, "the second operator to lead");
      server.apply("workflowruns", "data", { metadata: { name: "standard-2" }, spec: { workflowRef: { name: STANDARD }, params: { table: "trades_again" } } });
      await waitUntil(() => server.object("workflowruns", "data", "standard-2")?.status?.phase === "Succeeded", 60_000, "the second run to succeed");
      expect(server.object("workflowruns", "data", "standard-2")!.status).toMatchObject({ rows: { stored: 1960 } });
      // The first run was not started again by the new leader.
      expect(server.object("workflowruns", "data", "standard-1")!.status!.runId).toBe(run.status!.runId);

      // Deleting the Workflow retires it: the finalizer goes, then the resource.
      server.remove("workflows", "data", STANDARD);
      await waitUntil(() => server.object("workflows", "data", STANDARD) === undefined, 20_000, "the Workflow to be gone");

      const missing = roleCovers(roleRules(readFileSync(join(ROOT, "deploy", "k8s", "base", "operator-rbac.yaml"), "utf8")), server.requests(), {
        namespace: "data",
      });
      expect(missing).toEqual([]);
      // What it asked for, at the least (a 409 adds a get; mirroring would add create and delete).
      const seen = new Set(server.requests().map((r) => `${r.verb} ${r.resource}${r.subresource ? "/" + r.subresource : ""}`));
      for (const need of [
        "list workflows",
        "watch workflows",
        "list workflowruns",
        "watch workflowruns",
        "patch workflows",
        "patch workflows/status",
        "patch workflowruns/status",
        "create workflowruns",
        "delete workflowruns",
      ])
        expect(seen).toContain(need);
    } finally {
      for (const p of procs) await p.stop("SIGTERM");
      await server.close();
    }
  }, 150_000);

  it("without a cluster configuration, or with a bad flag, says so in one sentence and exits 1", async () => {
    const home = tmp("sluice-operator-");
    const env = { HOME: home, KUBECONFIG: "", KUBERNETES_SERVICE_HOST: "", SLUICE_HOME: join(home, ".sluice") };
    const none = await sluiceCli(["operator"], { cwd: home, env });
    expect(none.code).toBe(1);
    expect(none.stderr.trim().split("\n")).toHaveLength(1);
    expect(none.stderr).toMatch(/^sluice: .*kube/i);
    const bad = await sluiceCli(["operator", "--poll", "often"], { cwd: home, env });
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe('sluice: --poll "often" is not a duration: use a number and a unit, like 2s, 30s or 24h');
  });
});

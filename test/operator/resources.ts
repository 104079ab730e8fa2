/** Builders of Workflow and WorkflowRun resources as an API server returns them, for the operator's tests. */
import type { Condition, KubeObject } from "../../src/operator/kube.js";
import type { WorkflowRunResource } from "../../src/operator/reconcile-run.js";
import type { WorkflowResource } from "../../src/operator/reconcile-workflow.js";
import type { RunRecord, WorkflowVersion } from "../../src/store/types.js";

export const echoSpec = (value = "hello") => ({ steps: [{ name: "say", agent: "test", action: "echo", with: { value } }] });

export function workflowResource(
  over: {
    name?: string;
    namespace?: string;
    spec?: Record<string, unknown>;
    meta?: Partial<WorkflowResource["metadata"]>;
    status?: WorkflowResource["status"];
  } = {},
): WorkflowResource {
  return {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "Workflow",
    metadata: {
      name: over.name ?? "greet",
      namespace: over.namespace ?? "data",
      uid: "uid-wf-1",
      resourceVersion: "10",
      generation: 1,
      finalizers: ["sluice.dev/registry"],
      ...over.meta,
    },
    spec: over.spec ?? echoSpec(),
    ...(over.status ? { status: over.status } : {}),
  };
}

export function runResource(
  over: {
    name?: string;
    namespace?: string;
    spec?: Partial<WorkflowRunResource["spec"]>;
    meta?: Partial<WorkflowRunResource["metadata"]>;
    status?: WorkflowRunResource["status"];
  } = {},
): WorkflowRunResource {
  return {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "WorkflowRun",
    metadata: { name: over.name ?? "greet-1", namespace: over.namespace ?? "data", uid: "uid-run-1", resourceVersion: "20", generation: 1, ...over.meta },
    spec: { workflowRef: { name: "greet" }, ...over.spec },
    ...(over.status ? { status: over.status } : {}),
  };
}

export function registryVersion(over: Partial<WorkflowVersion> = {}): WorkflowVersion {
  return {
    name: "greet",
    version: 3,
    spec: {} as WorkflowVersion["spec"],
    yaml: "",
    source: "k8s/data/greet",
    createdAt: "2026-12-01T00:00:00.000Z",
    current: true,
    ...over,
  };
}

export function runRecord(over: Partial<RunRecord> = {}): RunRecord {
  return {
    id: "k8s-uid-run-1",
    workflow: "greet",
    spec: {} as RunRecord["spec"],
    source: "k8s/data/greet",
    params: {},
    trigger: { type: "kubernetes", name: "data/greet-1" },
    status: "running",
    createdAt: "2026-12-01T10:00:00.000Z",
    startedAt: "2026-12-01T10:00:01.000Z",
    endedAt: null,
    deadlineAt: null,
    error: null,
    cancelRequested: false,
    leaseOwner: "w1",
    leaseExpiresAt: null,
    version: 3,
    ...over,
  };
}

/** A resource's condition of one type, as `kubectl get -o jsonpath='{.status.conditions[?(@.type=="…")]}'` would show it. */
export const cond = (o: KubeObject | undefined, type: string): Condition | undefined =>
  ((o?.status?.conditions ?? []) as Condition[]).find((c) => c.type === type);

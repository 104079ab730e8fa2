/**
 * Reconciling one WorkflowRun resource, as a pure function of the resource and what the store
 * knows: the run it stands for (its id is derived from the resource's uid, so a restarted
 * operator finds the run it started and never starts it twice), the workflow it names and the
 * run's row counts. The answer is one action (start, cancel, delete) and the status to write;
 * after an action the controller reads the store again and calls this once more.
 */
import type { RunPhase, WorkflowRunSpec, WorkflowRunStatus } from "../spec/resources.js";
import type { RunRecord, RunRowCounts, WorkflowVersion } from "../store/types.js";
import { withConditions, withoutConditions, type ConditionInput } from "./conditions.js";
import type { KubeObject } from "./kube.js";
import { managedBy } from "./reconcile-workflow.js";

export type WorkflowRunResource = KubeObject<WorkflowRunSpec, WorkflowRunStatus>;

/** The run a WorkflowRun starts: one per resource uid. */
export function runIdFor(r: WorkflowRunResource): string {
  return r.spec.runId ?? `k8s-${r.metadata.uid}`;
}

export interface RunFacts {
  /** The run with runIdFor(resource), when it exists. */
  run: RunRecord | undefined;
  rows: RunRowCounts | null;
  /** The workflow the resource names (its requested version, else the current one), when the registry has it. */
  workflow: WorkflowVersion | undefined;
  /** Why starting the run was refused (bad params), from the previous pass. */
  startError?: { code: string; message: string };
  now: number;
}

export type RunAction =
  | { kind: "start"; id: string; workflow: string; version: number; params: Record<string, unknown>; resource: string }
  | { kind: "cancel"; runId: string }
  | { kind: "delete" }
  | null;

export interface RunDecision {
  action: RunAction;
  /** The status to write, or null when the action comes first. */
  status: WorkflowRunStatus | null;
  /** Look again after this long (an active run, a workflow not yet applied, a TTL to come). */
  requeueMs: number | null;
}

export interface RunTiming {
  /** How often an active run's status is refreshed. */
  pollMs: number;
  /** How often a WorkflowRun waiting for its Workflow looks again. */
  waitMs: number;
}

const PHASE: Record<RunRecord["status"], RunPhase> = {
  pending: "Pending",
  running: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  cancelled: "Cancelled",
};

export function reconcileRun(r: WorkflowRunResource, facts: RunFacts, timing: RunTiming): RunDecision {
  const gen = r.metadata.generation;
  const at = new Date(facts.now).toISOString();
  const id = runIdFor(r);
  const ref = r.spec.workflowRef.name;
  const ns = r.metadata.namespace;
  const status = (phase: RunPhase, conds: ConditionInput[], extra: Partial<WorkflowRunStatus> = {}, drop: string[] = []): WorkflowRunStatus => ({
    observedGeneration: gen,
    phase,
    ...extra,
    conditions: withConditions(withoutConditions(r.status?.conditions, drop), conds, at, gen),
  });
  const refused = (phase: RunPhase, reason: string, message: string, requeueMs: number | null): RunDecision => ({
    action: null,
    status: status(phase, [{ type: "Accepted", status: "False", reason, message }], { message }),
    requeueMs,
  });

  if (r.metadata.deletionTimestamp) return { action: null, status: null, requeueMs: null };

  const run = facts.run;
  if (!run) {
    if (r.spec.runId) return refused("Failed", "RunNotFound", `run ${r.spec.runId} is not in the store`, null);
    if (facts.startError) return refused("Failed", facts.startError.code === "NOT_FOUND" ? "VersionNotFound" : "InvalidParams", facts.startError.message, null);
    if (r.spec.cancel) return refused("Cancelled", "CancelledBeforeStart", "cancelled before its run started", null);
    const wf = facts.workflow;
    if (!wf || wf.source !== managedBy(ns, ref)) {
      const what = r.spec.version !== undefined ? `workflow ${ref} version ${r.spec.version}` : `workflow ${ref}`;
      const why = wf
        ? `${what} is managed by ${wf.source ?? "an apply without a file"}, not by a Workflow resource in namespace ${ns}`
        : `${what} is not in the registry yet (kubectl apply its Workflow resource in namespace ${ns})`;
      return refused("Pending", "WorkflowNotFound", why, timing.waitMs);
    }
    return {
      action: { kind: "start", id, workflow: ref, version: wf.version, params: r.spec.params ?? {}, resource: `${ns}/${r.metadata.name}` },
      status: null,
      requeueMs: null,
    };
  }

  const phase = PHASE[run.status];
  const ended = run.endedAt !== null && (phase === "Succeeded" || phase === "Failed" || phase === "Cancelled");
  const extra: Partial<WorkflowRunStatus> = {
    runId: run.id,
    ...(run.version != null ? { workflowVersion: run.version } : {}),
    ...(run.startedAt ? { startedAt: run.startedAt } : {}),
    ...(run.endedAt ? { finishedAt: run.endedAt } : {}),
    ...(facts.rows ? { rows: facts.rows } : {}),
    ...(run.error ? { message: `${run.error.code}: ${run.error.message}` } : {}),
  };
  const accepted: ConditionInput = {
    type: "Accepted",
    status: "True",
    reason: r.spec.runId ? "Mirrored" : "RunCreated",
    message: r.spec.runId ? `follows run ${run.id} (started by ${run.trigger?.type ?? "unknown"})` : `started run ${run.id}`,
  };

  if (!ended) {
    const wantCancel = r.spec.cancel === true && !run.cancelRequested;
    return {
      action: wantCancel ? { kind: "cancel", runId: run.id } : null,
      status: status(phase, [accepted], extra, ["Complete", "Failed"]),
      requeueMs: timing.pollMs,
    };
  }

  const endConds: ConditionInput[] =
    phase === "Succeeded"
      ? [{ type: "Complete", status: "True", reason: "Succeeded", message: rowsMessage(facts.rows) }]
      : [
          {
            type: "Failed",
            status: "True",
            reason: phase === "Cancelled" ? "Cancelled" : (run.error?.code ?? "Failed"),
            message: run.error?.message ?? "the run failed",
          },
        ];
  const drop = phase === "Succeeded" ? ["Failed"] : ["Complete"];
  const done = status(phase, [accepted, ...endConds], extra, drop);

  const ttl = r.spec.ttlSecondsAfterFinished;
  if (ttl !== undefined) {
    const due = Date.parse(run.endedAt!) + ttl * 1000;
    if (facts.now >= due) return { action: { kind: "delete" }, status: null, requeueMs: null };
    return { action: null, status: done, requeueMs: due - facts.now };
  }
  return { action: null, status: done, requeueMs: null };
}

function rowsMessage(rows: RunRowCounts | null): string {
  if (!rows) return "the run succeeded";
  return `${rows.in} rows in: ${rows.stored} stored, ${rows.quarantined} quarantined, ${rows.duplicate} duplicates`;
}

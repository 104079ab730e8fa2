/**
 * Starting and reopening runs on behalf of the API, the triggers and the CLI. A run started here
 * is queued: any worker (this process's or another machine's) claims it from the store.
 */
import { SluiceError } from "../errors.js";
import { createRun } from "../engine/start.js";
import { deadLocalOwner } from "../engine/takeover.js";
import type { ErrorInfo, QueueStore, RegistryStore, RunRecord, RunStore, RunTrigger } from "../store/types.js";

export interface StartWorkflowRun {
  /** A workflow in the registry; its current version unless `version` is given. */
  workflow: string;
  version?: number;
  params?: Record<string, unknown>;
  trigger: RunTrigger;
  /** A chosen run id: creating a second run with the same id fails with CONFLICT. */
  id?: string;
}

export async function startWorkflowRun(store: RunStore & RegistryStore, input: StartWorkflowRun): Promise<RunRecord> {
  const wf = await store.getWorkflow(input.workflow, input.version);
  if (!wf) {
    const what = input.version === undefined ? `no current workflow named ${input.workflow}` : `workflow ${input.workflow} has no version ${input.version}`;
    throw new SluiceError("NOT_FOUND", `${what}; apply it first (sluice apply FILE)`);
  }
  return createRun(store, { workflow: wf.spec, params: input.params ?? {}, source: wf.source, trigger: input.trigger, id: input.id, version: wf.version });
}

/**
 * Retry a failed or cancelled run: its failed, cancelled and skipped steps go back to pending
 * (succeeded steps keep their outputs and do not run again) and the run is queued again.
 */
export async function retryRun(store: RunStore & QueueStore, runId: string): Promise<RunRecord> {
  const run = await store.getRun(runId);
  if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${runId}`);
  if (run.status !== "failed" && run.status !== "cancelled")
    throw new SluiceError("CONFLICT", `run ${runId} is ${run.status}; only a failed or cancelled run can be retried`);
  const steps = (await store.getSteps(runId)).filter((s) => s.status !== "succeeded").map((s) => s.name);
  if (!(await store.reopenRun(runId, steps))) throw new SluiceError("CONFLICT", `run ${runId} changed while being retried; try again`);
  return (await store.getRun(runId))!;
}

/**
 * Put a run whose owner is gone back in the queue at once, instead of waiting for its lease to
 * expire. A run that is still owned by a live process is refused.
 */
export async function resumeRun(store: RunStore, runId: string, now = Date.now()): Promise<RunRecord> {
  const run = await store.getRun(runId);
  if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${runId}`);
  if (run.status !== "pending" && run.status !== "running") throw new SluiceError("CONFLICT", `run ${runId} already ended (${run.status}); retry it instead`);
  // A live lease of a process of this host that is gone (kill -9): the workers of this host take
  // such runs over within seconds (engine/worker.ts), so it counts as resumable, not as owned.
  if (run.leaseOwner && run.leaseExpiresAt !== null && run.leaseExpiresAt > now && deadLocalOwner(run.leaseOwner) === undefined)
    throw new SluiceError("CONFLICT", `run ${runId} is being executed by ${run.leaseOwner}; nothing to resume`);
  return run; // Unowned, expired or its owner gone: the next worker that polls (or sweeps) takes it.
}

/**
 * Cancel a run. A live owner is asked (it stops at its next heartbeat and records the outcome);
 * a run nobody owns (queued, or its process died) is marked cancelled here and now.
 * Returns the run as it is after the request, and whether it ended already.
 */
export async function cancelRun(store: RunStore, runId: string, now = Date.now()): Promise<{ run: RunRecord; ended: boolean }> {
  const run = await store.getRun(runId);
  if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${runId}`);
  if (run.status !== "pending" && run.status !== "running") throw new SluiceError("CONFLICT", `run ${runId} already ended (${run.status})`);
  await store.requestCancel(runId);
  const ownerAlive = run.leaseOwner !== null && (run.leaseExpiresAt ?? 0) > now;
  if (!ownerAlive) {
    const at = new Date(now).toISOString();
    const open = (await store.getSteps(runId)).filter((s) => s.status === "pending" || s.status === "running").map((s) => s.name);
    const error: ErrorInfo = { code: "CANCELLED", message: "the run was cancelled" };
    await store.settleSteps(runId, open, "cancelled", at, error);
    await store.finishRun(runId, null, "cancelled", at, error);
  }
  return { run: (await store.getRun(runId))!, ended: !ownerAlive };
}

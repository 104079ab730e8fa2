/**
 * The public picture of a run: the JSON document `sluice status --json` prints and the API returns.
 */
import type { AttemptUsage, RunStatus, StepStatus, RunStore } from "../store/types.js";
import { SluiceError } from "../errors.js";

export interface RunDetail {
  id: string;
  workflow: string;
  status: RunStatus;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  params: Record<string, unknown>;
  trigger: unknown;
  error: { code: string; message: string } | null;
  steps: {
    name: string;
    status: StepStatus;
    attempts: {
      n: number;
      status: string;
      startedAt: string;
      endedAt: string | null;
      error: { code: string; message: string } | null;
      /** What the attempt consumed; null while running, when interrupted, or where not measurable. */
      usage: AttemptUsage | null;
    }[];
    outputs: Record<string, unknown> | null;
    /** Why the step failed or was skipped (its condition, its dependencies, its items). */
    error: { code: string; message: string } | null;
  }[];
}

export async function runDetail(store: RunStore, runId: string): Promise<RunDetail> {
  const run = await store.getRun(runId);
  if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${runId}`);
  const [steps, attempts] = await Promise.all([store.getSteps(runId), store.getAttempts(runId)]);
  return {
    id: run.id,
    workflow: run.workflow,
    status: run.status,
    createdAt: run.createdAt,
    startedAt: run.startedAt,
    endedAt: run.endedAt,
    params: run.params,
    trigger: run.trigger,
    error: run.error,
    steps: steps.map((s) => ({
      name: s.name,
      status: s.status,
      attempts: attempts
        .filter((a) => a.step === s.name)
        .map((a) => ({ n: a.n, status: a.status, startedAt: a.startedAt, endedAt: a.endedAt, error: a.error, usage: a.usage })),
      outputs: s.outputs,
      error: s.error,
    })),
  };
}

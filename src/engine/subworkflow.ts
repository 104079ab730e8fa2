/**
 * `workflow:` steps: a step that runs another workflow as a child run and takes its outputs.
 *
 * The child is an ordinary run in the store (its own steps, attempts, lease; listed by
 * `sluice runs` with its parent in the trigger), executed by the process running the parent.
 * Its id is derived from the parent run, the step and how many times the step failed before,
 * so a parent resumed after a crash finds the child it had started and goes on waiting for it
 * (executing it here once its dead owner's lease is gone) instead of starting a second one;
 * a retry after a failed child starts a fresh child.
 */
import { dirname, resolve } from "node:path";
import { SluiceError, toErrorInfo } from "../errors.js";
import { isWorkflowPath, loadWorkflowFile, formatProblem } from "../spec/load.js";
import type { Step, Workflow } from "../spec/schema.js";
import type { RunRecord, RegistryStore, RunStore } from "../store/types.js";
import { createRun } from "./start.js";

export interface ChildRunInput {
  parent: RunRecord;
  step: Step;
  /** 1 + the step's failures so far: a retry gets a new child, a resume finds the same one. */
  generation: number;
  params: Record<string, unknown>;
  /** The attempt's signal: its timeout or a cancel of the parent cancels the child. */
  signal: AbortSignal;
  maxDepth: number;
  store: RunStore & RegistryStore;
  /** Execute (or resume) the child here; the engine's executeRun. */
  execute(childId: string): Promise<RunRecord>;
}

/** Run the child to its end and return the step's outputs (the child's id, status and its steps' outputs). */
export async function startChildRun(input: ChildRunInput): Promise<Record<string, unknown>> {
  const { parent, step, store } = input;
  const depth = (parent.trigger?.type === "workflow" ? (parent.trigger.parent?.depth ?? 0) : 0) + 1;
  if (depth > input.maxDepth)
    throw new SluiceError(
      "BAD_CONFIG",
      `step ${step.name} would start a child run ${depth} calls deep (at most ${input.maxDepth}): workflows calling each other in a cycle?`,
      { retryable: false },
    );
  const childId = `${parent.id}.${step.name}.${input.generation}`;
  if (!(await store.getRun(childId))) {
    const wf = await resolveChildWorkflow(step.workflow!, parent, store);
    try {
      await createRun(store, {
        id: childId,
        workflow: wf.spec,
        source: wf.source,
        params: input.params,
        trigger: { type: "workflow", name: parent.workflow, parent: { runId: parent.id, step: step.name, depth } },
      });
    } catch (err) {
      // Created meanwhile by another owner of the parent: go on with that one.
      if (!(err instanceof SluiceError && err.code === "CONFLICT")) throw err;
    }
  }

  // The parent's step timing out or being cancelled cancels the child (it sees it within a second).
  const onAbort = () => {
    const code = toErrorInfo(input.signal.reason).code;
    if (code !== "INTERRUPTED" && code !== "LEASE_LOST") void store.requestCancel(childId).catch(() => undefined);
  };
  input.signal.addEventListener("abort", onAbort, { once: true });
  try {
    let child = (await store.getRun(childId))!;
    while (child.status === "pending" || child.status === "running") {
      if (input.signal.aborted) throw input.signal.reason;
      try {
        child = await input.execute(childId);
      } catch (err) {
        // Another process holds the child's lease (a dead owner's, until it expires): wait and try again.
        if (!(err instanceof SluiceError && err.code === "CONFLICT")) throw err;
        await sleep(1_000, input.signal);
        child = (await store.getRun(childId))!;
        continue;
      }
      if ((child.status === "pending" || child.status === "running") && input.signal.aborted) throw input.signal.reason;
      if (child.status === "pending" || child.status === "running") await sleep(200, input.signal);
    }
    if (child.status !== "succeeded") {
      const why = child.error ? `${child.error.message}` : child.status;
      throw new SluiceError("CHILD_RUN_FAILED", `child run ${childId} of workflow ${child.workflow} ${child.status}: ${why}`, {
        retryable: !["BAD_INPUT", "BAD_CONFIG", "NOT_IMPLEMENTED"].includes(child.error?.code ?? ""),
      });
    }
    const steps = await store.getSteps(childId);
    return {
      runId: childId,
      workflow: child.workflow,
      status: child.status,
      steps: Object.fromEntries(steps.filter((s) => s.outputs).map((s) => [s.name, s.outputs])),
    };
  } finally {
    input.signal.removeEventListener("abort", onAbort);
  }
}

/** The workflow a step calls: a file (relative to the parent's file), or a name in the registry, or a file beside the parent named after it. */
async function resolveChildWorkflow(ref: string, parent: RunRecord, store: RunStore & RegistryStore): Promise<{ spec: Workflow; source: string | null }> {
  const base = parent.source ? dirname(parent.source) : process.cwd();
  if (!isWorkflowPath(ref)) {
    const registered = await store.getWorkflow(ref);
    if (registered) return { spec: registered.spec, source: registered.source };
    // Not registered: another workflow of the parent's own file (a multi-document YAML).
    if (parent.source) {
      const same = await fromFile(parent.source, ref).catch(() => undefined);
      if (same && same.spec.metadata.name === ref) return same;
    }
    // Not registered: a file beside the parent's holding it (NAME.yaml), as `sluice run` users keep them.
    for (const ext of [".yaml", ".yml"]) {
      const found = await fromFile(resolve(base, ref + ext), ref).catch(() => undefined);
      if (found) return found;
    }
    throw new SluiceError(
      "BAD_CONFIG",
      `workflow ${ref} is neither registered (sluice apply) nor a file ${ref}.yaml beside ${parent.source ?? "the current folder"}`,
      { retryable: false },
    );
  }
  const file = resolve(base, ref);
  const found = await fromFile(file, undefined);
  if (!found) throw new SluiceError("BAD_CONFIG", `workflow file ${file} holds no workflow`, { retryable: false });
  return found;
}

async function fromFile(file: string, name: string | undefined): Promise<{ spec: Workflow; source: string } | undefined> {
  const loaded = await loadWorkflowFile(file);
  if (loaded.problems.length) {
    if (loaded.problems[0]!.message.startsWith("cannot read workflow file")) return undefined;
    throw new SluiceError("BAD_CONFIG", `the child workflow is not valid: ${formatProblem(loaded.problems[0]!)}`, { retryable: false });
  }
  const w = name === undefined ? loaded.workflows[0] : (loaded.workflows.find((x) => x.workflow.metadata.name === name) ?? loaded.workflows[0]);
  return w ? { spec: w.workflow, source: file } : undefined;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => (signal.removeEventListener("abort", onAbort), resolve()), ms);
    const onAbort = () => (clearTimeout(t), reject(signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

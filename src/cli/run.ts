/**
 * `sluice run` and `sluice resume`: execute in the foreground, show progress, exit 0 on success.
 * Ctrl-C (or SIGTERM) detaches: running attempts stop and the run stays resumable.
 */
import { SluiceError } from "../errors.js";
import { createRun, executeRun, leaseTtl, runDetail } from "../engine/index.js";
import { newOwnerId } from "../engine/ids.js";
import { describeHolder, isLeaseHeld, waitForLease, type LeaseWait } from "../engine/takeover.js";
import { formatProblem, loadWorkflowFile } from "../spec/load.js";
import { formatDuration } from "../spec/duration.js";
import type { StateStore } from "../store/types.js";
import type { Workflow } from "../spec/schema.js";
import type { ActionRegistry } from "../actions/registry.js";
import { loadActions, withStore } from "./context.js";
import { chooseProgressMode, createProgress } from "./progress.js";
import { resolve } from "node:path";

export async function runCommand(file: string, o: { param?: string[]; json?: boolean; actions?: string[] }): Promise<number> {
  return runWorkflowFile(file, parseParams(o.param ?? []), o);
}

/** Creates a run of the workflow in `file` with `params` and drives it in the foreground. */
export async function runWorkflowFile(file: string, params: Record<string, string>, o: { json?: boolean; actions?: string[] }): Promise<number> {
  const actions = await loadActions(o.actions);
  const loaded = await loadWorkflowFile(file, { actions });
  if (loaded.problems.length > 0) {
    for (const p of loaded.problems) process.stderr.write(`${formatProblem(p)}\n`);
    throw new SluiceError("SPEC_INVALID", `${file} is not a valid workflow (${loaded.problems.length} problem${loaded.problems.length > 1 ? "s" : ""} above)`);
  }
  if (loaded.workflows.length !== 1)
    throw new SluiceError("USAGE", `${file} holds ${loaded.workflows.length} workflows; sluice run takes a file with exactly one`);
  return withStore(async (store, home) => {
    // Created already leased to this process: a worker sharing the store must not take it first.
    const owner = newOwnerId();
    const lease = { owner, expiresAt: Date.now() + leaseTtl() };
    const run = await createRun(store, { workflow: loaded.workflows[0]!.workflow, params, source: resolve(file), lease });
    process.stderr.write(`sluice: run ${run.id} created\n`);
    return drive(store, home, actions, run.id, o.json === true, owner);
  });
}

/**
 * A run whose process died is taken over at once when that process was on this host, else once
 * its lease has expired (the engine decides, see engine/takeover.ts). While a live process holds
 * it, resume refuses, or with --wait waits for the lease and then resumes.
 */
export async function resumeCommand(id: string, o: { json?: boolean; wait?: boolean; actions?: string[] }): Promise<number> {
  const actions = await loadActions(o.actions);
  return withStore(async (store, home) => {
    let told = false;
    const onWait = (w: LeaseWait) => {
      if (told) return; // once, even when a lease we waited out went to another process first
      told = true;
      process.stderr.write(
        `sluice: run ${id} is being executed by ${describeHolder(w.owner)}; waiting for its lease to expire at ` +
          `${new Date(w.expiresAt).toISOString()} (later if that process renews it), then resuming\n`,
      );
    };
    for (;;) {
      if (o.wait) await waitForLease(store, id, onWait);
      const run = await store.getRun(id);
      if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${id}; list runs with: sluice runs`);
      if (run.status !== "pending" && run.status !== "running")
        process.stderr.write(`sluice: run ${id} ${told ? "ended while we waited" : "already ended"} (${run.status}); nothing to resume\n`);
      try {
        return await drive(store, home, actions, id, o.json === true);
      } catch (err) {
        // Lost the race for an expired lease to another resumer or worker: wait for that one too.
        if (!o.wait || !isLeaseHeld(err)) throw err;
      }
    }
  });
}

async function drive(store: StateStore, home: string, actions: ActionRegistry, runId: string, json: boolean, owner?: string): Promise<number> {
  const progress = createProgress(chooseProgressMode());
  const detach = new AbortController();
  const onSignal = () => detach.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const run = await executeRun(runId, { store, actions, home, owner, onEvent: (e) => progress.onEvent(e), signal: detach.signal });
    progress.stop();
    const detail = await runDetail(store, runId);
    if (json) process.stdout.write(`${JSON.stringify(detail, null, 2)}\n`);
    else printSummary(detail, run.spec);
    if (run.status === "succeeded") return 0;
    return 1;
  } finally {
    progress.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function printSummary(d: Awaited<ReturnType<typeof runDetail>>, spec: Workflow): void {
  const took = d.startedAt && d.endedAt ? ` in ${formatDuration(Date.parse(d.endedAt) - Date.parse(d.startedAt))}` : "";
  const counts = new Map<string, number>();
  for (const s of d.steps) counts.set(s.status, (counts.get(s.status) ?? 0) + 1);
  const tally = [...counts].map(([k, v]) => `${v} ${k}`).join(", ");
  const err = d.error ? `\n  ${d.error.code}: ${d.error.message}` : "";
  process.stdout.write(`run ${d.id} ${d.status}${took} (${tally})${err}\n`);
  // The outputs of the final steps are what the run produced; show them.
  const upstream = new Set(spec.spec.steps.flatMap((s) => s.dependsOn ?? []));
  for (const s of d.steps) {
    if (upstream.has(s.name) || s.status !== "succeeded" || !s.outputs) continue;
    const text =
      typeof s.outputs.stdout === "string" && s.outputs.stdout
        ? s.outputs.stdout
        : Object.entries(s.outputs)
            .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
            .join("\n");
    process.stdout.write(
      `${s.name}:\n${text
        .split("\n")
        .map((l) => `  ${l}`)
        .join("\n")}\n`,
    );
  }
}

function parseParams(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new SluiceError("USAGE", `--param takes key=value, not "${item}"`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

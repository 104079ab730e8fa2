/**
 * What a step does once every dependency has ended: run, or be skipped and why. Pure, so the
 * trigger rules (Airflow's trigger_rule, Argo's `depends`) are tested apart from the scheduler.
 *
 * - allSucceeded (default): every dependency succeeded, was skipped by its own condition, or
 *   failed with continueOnError. A dependency skipped because something upstream failed counts
 *   as failed, so a failure skips the whole chain below it.
 * - anyFailed: some dependency failed (continueOnError or not) or was skipped because of a
 *   failure upstream: the place for a fallback or a notification.
 * - always: whatever happened.
 * After a failure that stops the run (`stopping`), only anyFailed and always steps still start.
 */
import type { StepStatus } from "../store/types.js";

export type RunIf = "allSucceeded" | "anyFailed" | "always";

export interface DependencyOutcome {
  name: string;
  status: StepStatus;
  continueOnError: boolean;
  /** A skipped dependency: true when it was skipped because of a failure upstream of it. */
  upstreamFailed: boolean;
}

export type Decision = { run: true } | { run: false; reason: string; upstreamFailed: boolean };

export function decide(rule: RunIf, deps: DependencyOutcome[], stopping: { by: string } | undefined): Decision {
  const failedDep = deps.find((d) => d.status === "failed" || d.status === "cancelled" || (d.status === "skipped" && d.upstreamFailed));
  const blocker = deps.find(
    (d) => !(d.status === "succeeded" || (d.status === "skipped" && !d.upstreamFailed) || (d.status === "failed" && d.continueOnError)),
  );
  if (rule === "always") return { run: true };
  if (rule === "anyFailed") {
    return failedDep ? { run: true } : { run: false, reason: "runIf anyFailed: no dependency failed", upstreamFailed: false };
  }
  if (blocker) {
    const what = blocker.status === "skipped" ? "was skipped after a failure upstream" : blocker.status;
    return { run: false, reason: `dependency ${blocker.name} ${what}`, upstreamFailed: true };
  }
  if (stopping) return { run: false, reason: `not started: step ${stopping.by} failed and the run stops`, upstreamFailed: true };
  return { run: true };
}

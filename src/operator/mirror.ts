/**
 * Runs started by cron or by events, mirrored as WorkflowRun resources (opt-in), so
 * `kubectl get workflowruns` shows every run of a Workflow the operator manages, not only those
 * started with kubectl. A mirror follows its run (spec.runId) and is deleted a TTL after the run
 * ended; a run whose mirror was deleted that way is never mirrored again (it ended too long ago).
 */
import { RUN_KIND } from "../spec/resources.js";
import type { RunRecord, WorkflowVersion } from "../store/types.js";
import { GROUP, VERSION, type KubeObject } from "./kube.js";
import { managedResource } from "./reconcile-workflow.js";

export const MIRROR_LABEL = "sluice.dev/mirrored";

export interface MirrorFacts {
  /** Recent runs (newest first, as listRuns gives them). */
  runs: RunRecord[];
  /** The registry's current workflows. */
  workflows: WorkflowVersion[];
  /** Run ids already followed by a WorkflowRun (mirrors and the runs WorkflowRuns started). */
  followed: Set<string>;
  /** Namespaces watched; null for all. */
  namespaces: string[] | null;
  ttlSeconds: number;
  now: number;
}

export function mirrorsToCreate(
  f: MirrorFacts,
): { namespace: string; body: Omit<KubeObject, "metadata"> & { metadata: { name: string; labels: Record<string, string> } } }[] {
  const sources = new Map(f.workflows.map((w) => [w.name, managedResource(w.source)]));
  const out = [];
  for (const run of f.runs) {
    if (run.trigger?.type !== "schedule" && run.trigger?.type !== "event") continue;
    if (f.followed.has(run.id)) continue;
    const res = sources.get(run.workflow);
    if (!res || (f.namespaces && !f.namespaces.includes(res.namespace))) continue;
    if (run.endedAt && Date.parse(run.endedAt) + f.ttlSeconds * 1000 <= f.now) continue;
    out.push({
      namespace: res.namespace,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: RUN_KIND,
        metadata: { name: mirrorName(run.workflow, run.id), labels: { [MIRROR_LABEL]: "true", "sluice.dev/workflow": run.workflow } },
        spec: { workflowRef: { name: run.workflow }, runId: run.id, ttlSecondsAfterFinished: f.ttlSeconds },
      },
    });
  }
  return out;
}

/** `<workflow>-<run id tail>`: a DNS-1123 name of at most 63 characters, one per run. */
export function mirrorName(workflow: string, runId: string): string {
  const tail = runId
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(-20);
  const head = workflow.slice(0, 62 - tail.length).replace(/-+$/, "");
  return `${head}-${tail}`;
}

/**
 * The workflow registry's operations: apply a YAML text (validated exactly as `sluice validate`
 * does), load a directory of workflow files, roll back to an earlier version.
 *
 * The registry lives in the state store, so every process of a fleet sees the same versions;
 * a refused file never replaces the version that is running.
 */
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { SluiceError } from "../errors.js";
import { loadWorkflowText, type Problem } from "../spec/load.js";
import type { ActionLookup } from "../spec/catalogue.js";
import type { WorkflowVersion, RegistryStore } from "../store/types.js";

export interface Applied {
  name: string;
  version: number;
  /** False when the text equals the current version (nothing changed). */
  created: boolean;
  source: string | null;
}

export type ApplyResult = { ok: true; applied: Applied[] } | { ok: false; problems: Problem[] };

/** Validate a YAML text holding one or more workflows and store each as a new version. */
export async function applyWorkflowText(
  store: RegistryStore,
  actions: ActionLookup,
  yaml: string,
  file: string,
  source: string | null = null,
): Promise<ApplyResult> {
  const loaded = loadWorkflowText(yaml, file, { actions });
  if (loaded.problems.length > 0) return { ok: false, problems: loaded.problems };
  // A workflow the Kubernetes operator manages changes through its resource only: otherwise
  // the operator would put its version back at its next reconcile, and the two would fight.
  const claimed: Problem[] = [];
  for (const { workflow, document } of loaded.workflows) {
    const current = await store.getWorkflow(workflow.metadata.name);
    if (current?.source?.startsWith(K8S_SOURCE) && current.source !== source)
      claimed.push({ file, line: 1, col: 1, message: kubernetesManaged(workflow.metadata.name, current.source, document) });
  }
  if (claimed.length > 0) return { ok: false, problems: claimed };
  const applied: Applied[] = [];
  const createdAt = new Date().toISOString();
  for (const { workflow } of loaded.workflows) {
    // One document per version: a multi-document file stores each workflow's own text.
    const text = loaded.workflows.length === 1 ? yaml : JSON.stringify(workflow);
    const r = await store.saveWorkflow({ name: workflow.metadata.name, spec: workflow, yaml: text, source, createdAt });
    applied.push({ name: workflow.metadata.name, version: r.version, created: r.created, source });
  }
  return { ok: true, applied };
}

/** The source prefix of workflows applied by the Kubernetes operator (`k8s/<namespace>/<name>`). */
export const K8S_SOURCE = "k8s/";

function kubernetesManaged(name: string, source: string, document: number): string {
  const where = document > 0 ? ` (document ${document + 1})` : "";
  return `workflow ${name}${where} is managed by the Kubernetes operator from ${source}; change the Workflow resource with kubectl instead`;
}

export interface DirectorySync {
  applied: Applied[];
  /** Files refused, with their problems; the previous versions of their workflows stay current. */
  refused: { file: string; problems: Problem[] }[];
  /** Workflows whose file disappeared: no longer current, their triggers stop. */
  retired: string[];
}

/**
 * Make the registry match a directory: every `*.yaml`/`*.yml` file applied (unchanged files add
 * no version), workflows that came from this directory but whose file is gone retired.
 */
export async function syncWorkflowDirectory(store: RegistryStore, actions: ActionLookup, dir: string): Promise<DirectorySync> {
  const root = resolve(dir);
  let names: string[];
  try {
    names = (await readdir(root)).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (err) {
    throw new SluiceError("FILE_NOT_FOUND", `cannot read the workflows directory ${dir}: ${(err as Error).message}`);
  }
  const out: DirectorySync = { applied: [], refused: [], retired: [] };
  const seen = new Set<string>();
  for (const n of names) {
    const file = join(root, n);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      continue; // Removed between readdir and read: the next sync sees it gone.
    }
    const r = await applyWorkflowText(store, actions, text, join(dir, n), file);
    if (r.ok) {
      out.applied.push(...r.applied);
      for (const a of r.applied) seen.add(a.name);
    } else {
      out.refused.push({ file: join(dir, n), problems: r.problems });
      // A refused file still claims the workflows it held before: do not retire them.
      for (const w of await store.listWorkflows()) if (w.source === file) seen.add(w.name);
    }
  }
  for (const w of await store.listWorkflows()) {
    if (w.source && w.source.startsWith(root + "/") && !seen.has(w.name)) {
      await store.retireWorkflow(w.name);
      out.retired.push(w.name);
    }
  }
  return out;
}

/** Make an earlier version current again: `to`, or the one before the current version. */
export async function rollbackWorkflow(store: RegistryStore, name: string, to?: number): Promise<WorkflowVersion> {
  const history = await store.workflowHistory(name);
  if (history.length === 0) throw new SluiceError("NOT_FOUND", `no workflow named ${name} has been applied`);
  const current = history.find((v) => v.current);
  if (current?.source?.startsWith(K8S_SOURCE))
    throw new SluiceError("CONFLICT", `${kubernetesManaged(name, current.source, 0)} (apply the version you want to the resource)`);
  let target: WorkflowVersion | undefined;
  if (to !== undefined) {
    target = history.find((v) => v.version === to);
    if (!target) throw new SluiceError("NOT_FOUND", `workflow ${name} has no version ${to} (versions: ${history.map((v) => v.version).join(", ")})`);
  } else {
    const below = history.filter((v) => v.version < (current?.version ?? Infinity)).sort((a, b) => b.version - a.version);
    target = below[0];
    if (!target) throw new SluiceError("CONFLICT", `workflow ${name} has no version before ${current?.version ?? "the current one"} to roll back to`);
  }
  await store.setCurrentWorkflow(name, target.version);
  return { ...target, current: true };
}

/**
 * Reconciling one Workflow resource, as a pure function of what is known: the resource (from the
 * watch cache), the registry's current version of its name, and the resource validated exactly
 * as `sluice validate` validates a file. The answer says what to change (registry, finalizers)
 * and the status to write; the controller applies it, reads the registry again and calls this
 * once more, so the status always describes the registry as it is (level-based, like
 * controller-runtime's Reconcile).
 */
import { stringify } from "yaml";
import { K8S_SOURCE } from "../control/workflows.js";
import type { Problem } from "../spec/load.js";
import type { Workflow } from "../spec/schema.js";
import type { WorkflowStatus } from "../spec/resources.js";
import type { WorkflowVersion } from "../store/types.js";
import { withConditions } from "./conditions.js";
import type { KubeObject } from "./kube.js";

/** The finalizer that keeps a deleted Workflow until its registry entry is retired. */
export const FINALIZER = "sluice.dev/registry";

export type WorkflowResource = KubeObject<Record<string, unknown>, WorkflowStatus>;

/** What the registry records as the source of a workflow the operator manages (the prefix the CLI refuses to overwrite). */
export function managedBy(namespace: string, name: string): string {
  return `${K8S_SOURCE}${namespace}/${name}`;
}

/** `k8s/<namespace>/<name>` back to its parts; undefined for any other source. */
export function managedResource(source: string | null): { namespace: string; name: string } | undefined {
  if (!source?.startsWith(K8S_SOURCE)) return undefined;
  const [namespace, name, ...rest] = source.slice(K8S_SOURCE.length).split("/");
  return namespace && name && rest.length === 0 ? { namespace, name } : undefined;
}

/**
 * The resource as the workflow file it stands for: apiVersion, kind, metadata.name and spec, in
 * the order workflow files are written, so line numbers of problems match a plainly written file.
 */
export function resourceYaml(r: WorkflowResource): string {
  return stringify({ apiVersion: r.apiVersion, kind: r.kind, metadata: { name: r.metadata.name }, spec: r.spec }, { lineWidth: 0 });
}

export type Validation = { ok: true; workflow: Workflow } | { ok: false; problems: Problem[] };

export interface WorkflowFacts {
  /** The registry's current version of the resource's name, whichever source it came from. */
  current: WorkflowVersion | undefined;
  validation: Validation;
  now: string;
}

export type RegistryChange = { kind: "save"; name: string; workflow: Workflow; yaml: string; source: string } | { kind: "retire"; name: string };

export interface WorkflowDecision {
  registry: RegistryChange | null;
  /** The resource's finalizers when they must change. */
  finalizers: string[] | null;
  /** The status to write; null leaves it (a resource being deleted). */
  status: WorkflowStatus | null;
}

export function reconcileWorkflow(r: WorkflowResource, facts: WorkflowFacts): WorkflowDecision {
  const { namespace, name } = r.metadata;
  const source = managedBy(namespace, name);
  const finalizers = r.metadata.finalizers ?? [];
  const ours = facts.current !== undefined && facts.current.source === source;

  if (r.metadata.deletionTimestamp) {
    if (!finalizers.includes(FINALIZER)) return { registry: null, finalizers: null, status: null };
    // Retire first, drop the finalizer after: a crash in between retires again (a no-op).
    if (ours) return { registry: { kind: "retire", name }, finalizers: null, status: null };
    return { registry: null, finalizers: finalizers.filter((f) => f !== FINALIZER), status: null };
  }

  const addFinalizer = finalizers.includes(FINALIZER) ? null : [...finalizers, FINALIZER];
  const gen = r.metadata.generation;
  const status = (accepted: [boolean, string, string], ready: [boolean, string, string], registryVersion?: number): WorkflowStatus => ({
    observedGeneration: gen,
    ...(registryVersion !== undefined ? { registryVersion } : {}),
    conditions: withConditions(
      r.status?.conditions,
      [
        { type: "Accepted", status: accepted[0] ? "True" : "False", reason: accepted[1], message: accepted[2] },
        { type: "Ready", status: ready[0] ? "True" : "False", reason: ready[1], message: ready[2] },
      ],
      facts.now,
      gen,
    ),
  });

  if (facts.current && !ours) {
    const why = `workflow ${name} is managed by ${facts.current.source ?? "an apply without a file"}; retire it there (or rename this resource) so the operator can take it over`;
    return { registry: null, finalizers: addFinalizer, status: status([false, "ManagedElsewhere", why], [false, "ManagedElsewhere", why]) };
  }

  if (!facts.validation.ok) {
    const where = facts.validation.problems.map((p) => `line ${p.line}, column ${p.col}: ${p.message}`).join("; ");
    const keeps = ours ? ` Version ${facts.current!.version} stays current.` : "";
    return {
      registry: null,
      finalizers: addFinalizer,
      status: status([false, "SpecInvalid", where], [false, "SpecInvalid", `the spec has problems (see Accepted).${keeps}`], r.status?.registryVersion),
    };
  }

  const yaml = resourceYaml(r);
  if (!ours || facts.current!.yaml !== yaml) {
    // Stored first; the next pass (with the registry read again) writes the status.
    return { registry: { kind: "save", name, workflow: facts.validation.workflow, yaml, source }, finalizers: addFinalizer, status: null };
  }
  const v = facts.current!.version;
  return {
    registry: null,
    finalizers: addFinalizer,
    status: status(
      [true, "Stored", `stored in the registry as version ${v}`],
      [true, "Current", `version ${v} is current: its triggers are active and new runs use it`],
      v,
    ),
  };
}

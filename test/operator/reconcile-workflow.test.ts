/**
 * Layer 1 of the operator's tests: reconciling a Workflow resource as a pure function, one row
 * per situation (create, update, unchanged, invalid spec, managed elsewhere, delete).
 */
import { describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/actions/builtin.js";
import { FINALIZER, reconcileWorkflow, resourceYaml, type Validation, type WorkflowResource } from "../../src/operator/reconcile-workflow.js";
import { loadWorkflowText } from "../../src/spec/load.js";
import { testActions } from "../helpers.js";
import { echoSpec, registryVersion, workflowResource } from "./resources.js";

const actions = builtinRegistry();
for (const d of testActions()) actions.register(d);
const NOW = "2026-12-04T10:00:00.000Z";

function validate(r: WorkflowResource): Validation {
  const l = loadWorkflowText(resourceYaml(r), "k8s/data/greet", { actions });
  return l.problems.length ? { ok: false, problems: l.problems } : { ok: true, workflow: l.workflows[0]!.workflow };
}

describe("reconcileWorkflow", () => {
  it("a new resource: adds the finalizer and stores it, managed by k8s/<namespace>/<name>; then reports it Ready", () => {
    const r = workflowResource({ meta: { finalizers: [] } });
    const d = reconcileWorkflow(r, { current: undefined, validation: validate(r), now: NOW });
    expect(d.finalizers).toEqual([FINALIZER]);
    expect(d.status).toBeNull();
    expect(d.registry).toMatchObject({ kind: "save", name: "greet", source: "k8s/data/greet" });
    expect(d.registry?.kind === "save" && d.registry.yaml).toBe(resourceYaml(r));

    const stored = registryVersion({ version: 1, yaml: resourceYaml(r) });
    const again = reconcileWorkflow({ ...r, metadata: { ...r.metadata, finalizers: [FINALIZER] } }, { current: stored, validation: validate(r), now: NOW });
    expect(again.registry).toBeNull();
    expect(again.finalizers).toBeNull();
    expect(again.status).toEqual({
      observedGeneration: 1,
      registryVersion: 1,
      conditions: [
        { type: "Accepted", status: "True", observedGeneration: 1, lastTransitionTime: NOW, reason: "Stored", message: "stored in the registry as version 1" },
        {
          type: "Ready",
          status: "True",
          observedGeneration: 1,
          lastTransitionTime: NOW,
          reason: "Current",
          message: "version 1 is current: its triggers are active and new runs use it",
        },
      ],
    });
  });

  it("a changed spec (new generation) is stored as a new version; an unchanged one writes the same status again (transition times kept)", () => {
    const before = workflowResource();
    const stored = registryVersion({ version: 4, yaml: resourceYaml(before) });
    const changed = workflowResource({ spec: echoSpec("bye"), meta: { generation: 2 } });
    expect(reconcileWorkflow(changed, { current: stored, validation: validate(changed), now: NOW }).registry).toMatchObject({ kind: "save" });

    const first = reconcileWorkflow(before, { current: stored, validation: validate(before), now: "2026-12-01T00:00:00.000Z" }).status!;
    const later = reconcileWorkflow({ ...before, status: first }, { current: stored, validation: validate(before), now: NOW }).status!;
    expect(later).toEqual(first);
  });

  it("an invalid spec: Accepted and Ready False with reason SpecInvalid and the positions; the registry is left alone", () => {
    const r = workflowResource({
      spec: {
        steps: [
          { name: "a", agent: "nope", action: "zz" },
          { name: "b", timeout: "5q", exec: { command: ["ls"] } },
        ],
      },
      meta: { generation: 5 },
    });
    const current = registryVersion({ version: 2, yaml: "old" });
    const d = reconcileWorkflow(r, { current, validation: validate(r), now: NOW });
    expect(d.registry).toBeNull();
    const accepted = d.status!.conditions!.find((c) => c.type === "Accepted")!;
    expect(accepted).toMatchObject({ status: "False", reason: "SpecInvalid", observedGeneration: 5 });
    expect(accepted.message).toMatch(/^line 8, column \d+: unknown agent "nope"; line 11, column \d+: spec.steps\[1\].timeout: "5q" is not a duration/);
    expect(d.status!.conditions!.find((c) => c.type === "Ready")).toMatchObject({
      status: "False",
      reason: "SpecInvalid",
      message: "the spec has problems (see Accepted). Version 2 stays current.",
    });
    expect(d.status!.observedGeneration).toBe(5);
  });

  it("a name another source manages (sluice apply FILE, another namespace) is refused, not taken over", () => {
    const r = workflowResource();
    for (const source of ["/srv/workflows/greet.yaml", "k8s/other/greet", null]) {
      const d = reconcileWorkflow(r, { current: registryVersion({ source }), validation: validate(r), now: NOW });
      expect(d.registry).toBeNull();
      expect(d.status!.conditions![0]).toMatchObject({ type: "Accepted", status: "False", reason: "ManagedElsewhere" });
      expect(d.status!.conditions![0]!.message).toContain(`managed by ${source ?? "an apply without a file"}`);
    }
  });

  it("deletion: retires its own workflow first, then drops the finalizer; never retires one it does not manage", () => {
    const deleting = workflowResource({ meta: { deletionTimestamp: NOW } });
    const ours = registryVersion();
    expect(reconcileWorkflow(deleting, { current: ours, validation: validate(deleting), now: NOW })).toEqual({
      registry: { kind: "retire", name: "greet" },
      finalizers: null,
      status: null,
    });
    expect(reconcileWorkflow(deleting, { current: undefined, validation: validate(deleting), now: NOW })).toEqual({
      registry: null,
      finalizers: [],
      status: null,
    });
    const theirs = registryVersion({ source: "/srv/greet.yaml" });
    expect(reconcileWorkflow(deleting, { current: theirs, validation: validate(deleting), now: NOW }).registry).toBeNull();
    const gone = workflowResource({ meta: { deletionTimestamp: NOW, finalizers: ["other.io/x"] } });
    expect(reconcileWorkflow(gone, { current: ours, validation: validate(gone), now: NOW })).toEqual({ registry: null, finalizers: null, status: null });
  });

  it("keeps other controllers' finalizers when adding its own", () => {
    const r = workflowResource({ meta: { finalizers: ["other.io/x"] } });
    expect(reconcileWorkflow(r, { current: undefined, validation: validate(r), now: NOW }).finalizers).toEqual(["other.io/x", FINALIZER]);
  });
});

/**
 * Layer 1 of the operator's tests: reconciling a WorkflowRun as a pure function, one row per
 * moment of a run's life (waiting for its workflow, start, refused params, running, cancel,
 * succeeded, failed, TTL, mirrored run).
 */
import { describe, expect, it } from "vitest";
import { reconcileRun, runIdFor } from "../../src/operator/reconcile-run.js";
import { registryVersion, runRecord, runResource } from "./resources.js";

const T = Date.parse("2026-12-04T10:00:00.000Z");
const timing = { pollMs: 2000, waitMs: 10_000 };
const facts = (over: Partial<Parameters<typeof reconcileRun>[1]> = {}) => ({ run: undefined, rows: null, workflow: undefined, now: T, ...over });

describe("reconcileRun", () => {
  it("derives the run id from the resource's uid, so a restarted operator finds the run it started", () => {
    expect(runIdFor(runResource())).toBe("k8s-uid-run-1");
    expect(runIdFor(runResource({ spec: { runId: "r-abc" } }))).toBe("r-abc");
  });

  it("waits (Pending, requeued) while its workflow is not in the registry, or is not managed from its namespace", () => {
    const d = reconcileRun(runResource(), facts(), timing);
    expect(d.action).toBeNull();
    expect(d.requeueMs).toBe(10_000);
    expect(d.status).toMatchObject({ phase: "Pending", conditions: [{ type: "Accepted", status: "False", reason: "WorkflowNotFound" }] });
    expect(d.status!.message).toBe("workflow greet is not in the registry yet (kubectl apply its Workflow resource in namespace data)");
    const other = reconcileRun(runResource(), facts({ workflow: registryVersion({ source: "k8s/other/greet" }) }), timing);
    expect(other.status!.message).toBe("workflow greet is managed by k8s/other/greet, not by a Workflow resource in namespace data");
    expect(reconcileRun(runResource({ spec: { version: 9 } }), facts(), timing).status!.message).toContain("workflow greet version 9");
  });

  it("starts the run once the workflow is there, with its params and version, the id from the uid", () => {
    const d = reconcileRun(runResource({ spec: { params: { day: "2026-12-01" } } }), facts({ workflow: registryVersion({ version: 3 }) }), timing);
    expect(d).toEqual({
      action: { kind: "start", id: "k8s-uid-run-1", workflow: "greet", version: 3, params: { day: "2026-12-01" }, resource: "data/greet-1" },
      status: null,
      requeueMs: null,
    });
  });

  it("a start refused for its params is Failed with reason InvalidParams, for good", () => {
    const d = reconcileRun(
      runResource(),
      facts({ workflow: registryVersion(), startError: { code: "BAD_INPUT", message: 'param "day" is required' } }),
      timing,
    );
    expect(d.action).toBeNull();
    expect(d.requeueMs).toBeNull();
    expect(d.status).toMatchObject({
      phase: "Failed",
      message: 'param "day" is required',
      conditions: [{ type: "Accepted", status: "False", reason: "InvalidParams" }],
    });
  });

  it("mirrors a running run (phase, run id, version, start time) and looks again after pollMs", () => {
    const d = reconcileRun(runResource(), facts({ run: runRecord() }), timing);
    expect(d.action).toBeNull();
    expect(d.requeueMs).toBe(2000);
    expect(d.status).toEqual({
      observedGeneration: 1,
      phase: "Running",
      runId: "k8s-uid-run-1",
      workflowVersion: 3,
      startedAt: "2026-12-01T10:00:01.000Z",
      conditions: [
        {
          type: "Accepted",
          status: "True",
          observedGeneration: 1,
          lastTransitionTime: "2026-12-04T10:00:00.000Z",
          reason: "RunCreated",
          message: "started run k8s-uid-run-1",
        },
      ],
    });
  });

  it("cancel: true asks the running run to stop once; a cancel before the start never starts it", () => {
    const r = runResource({ spec: { cancel: true } });
    expect(reconcileRun(r, facts({ run: runRecord() }), timing).action).toEqual({ kind: "cancel", runId: "k8s-uid-run-1" });
    expect(reconcileRun(r, facts({ run: runRecord({ cancelRequested: true }) }), timing).action).toBeNull();
    const before = reconcileRun(r, facts({ workflow: registryVersion() }), timing);
    expect(before.action).toBeNull();
    expect(before.status).toMatchObject({ phase: "Cancelled", conditions: [{ reason: "CancelledBeforeStart" }] });
  });

  it("a finished run: Succeeded with rows and Complete=True; Failed/Cancelled with Failed=True and the error", () => {
    const ok = reconcileRun(
      runResource(),
      facts({ run: runRecord({ status: "succeeded", endedAt: "2026-12-04T09:59:00.000Z" }), rows: { in: 100, stored: 97, quarantined: 2, duplicate: 1 } }),
      timing,
    );
    expect(ok.requeueMs).toBeNull();
    expect(ok.status).toMatchObject({
      phase: "Succeeded",
      finishedAt: "2026-12-04T09:59:00.000Z",
      rows: { in: 100, stored: 97, quarantined: 2, duplicate: 1 },
    });
    expect(ok.status!.conditions!.map((c) => [c.type, c.status, c.reason])).toEqual([
      ["Accepted", "True", "RunCreated"],
      ["Complete", "True", "Succeeded"],
    ]);
    expect(ok.status!.conditions![1]!.message).toBe("100 rows in: 97 stored, 2 quarantined, 1 duplicates");

    const bad = reconcileRun(
      runResource(),
      facts({
        run: runRecord({ status: "failed", endedAt: "2026-12-04T09:59:00.000Z", error: { code: "TOO_MANY_REJECTS", message: "60% of rows rejected" } }),
      }),
      timing,
    );
    expect(bad.status).toMatchObject({ phase: "Failed", message: "TOO_MANY_REJECTS: 60% of rows rejected" });
    expect(bad.status!.conditions!.find((c) => c.type === "Failed")).toMatchObject({
      status: "True",
      reason: "TOO_MANY_REJECTS",
      message: "60% of rows rejected",
    });
    const cancelled = reconcileRun(runResource(), facts({ run: runRecord({ status: "cancelled", endedAt: "2026-12-04T09:59:00.000Z" }) }), timing);
    expect(cancelled.status!.conditions!.find((c) => c.type === "Failed")).toMatchObject({ reason: "Cancelled" });
  });

  it("a retried run drops the Failed condition it had while it runs again", () => {
    const failed = reconcileRun(runResource(), facts({ run: runRecord({ status: "failed", endedAt: "2026-12-04T09:00:00.000Z" }) }), timing).status!;
    const again = reconcileRun(runResource({ status: failed }), facts({ run: runRecord({ status: "running" }) }), timing).status!;
    expect(again.phase).toBe("Running");
    expect(again.conditions!.map((c) => c.type)).toEqual(["Accepted"]);
  });

  it("ttlSecondsAfterFinished: requeued until due, then deleted", () => {
    const r = runResource({ spec: { ttlSecondsAfterFinished: 3600 } });
    const endedAt = new Date(T - 600_000).toISOString();
    const early = reconcileRun(r, facts({ run: runRecord({ status: "succeeded", endedAt }) }), timing);
    expect(early.action).toBeNull();
    expect(early.requeueMs).toBe(3_000_000);
    const due = reconcileRun(r, facts({ run: runRecord({ status: "succeeded", endedAt }), now: T + 3_000_000 }), timing);
    expect(due).toEqual({ action: { kind: "delete" }, status: null, requeueMs: null });
  });

  it("a mirror follows its run (Accepted reason Mirrored); a mirror whose run is gone is Failed", () => {
    const r = runResource({ spec: { runId: "r-cron-1" } });
    const d = reconcileRun(r, facts({ run: runRecord({ id: "r-cron-1", trigger: { type: "schedule", name: "0 * * * *" } }) }), timing);
    expect(d.status!.conditions![0]).toMatchObject({ reason: "Mirrored", message: "follows run r-cron-1 (started by schedule)" });
    expect(reconcileRun(r, facts(), timing).status).toMatchObject({ phase: "Failed", conditions: [{ reason: "RunNotFound" }] });
  });

  it("leaves a resource being deleted alone", () => {
    expect(reconcileRun(runResource({ meta: { deletionTimestamp: "x" } }), facts({ run: runRecord() }), timing)).toEqual({
      action: null,
      status: null,
      requeueMs: null,
    });
  });
});

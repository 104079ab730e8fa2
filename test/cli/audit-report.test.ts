/**
 * The record of processing built from runs (processingRecord is pure): only succeeded runs count,
 * retention comes from the newest run's param, else the workflow's label, else "not declared",
 * a broken audit chain is said as such, and the text form names every part.
 */
import { describe, expect, it } from "vitest";
import { formatProcessingRecord, processingRecord, RETENTION_LABEL } from "../../src/cli/audit-report.js";
import type { RunRecord, StepRecord } from "../../src/store/types.js";

const spec = (labels?: Record<string, string>, description?: string) =>
  ({
    apiVersion: "sluice.dev/v1alpha1",
    kind: "Workflow",
    metadata: { name: "wf", ...(labels ? { labels } : {}) },
    spec: {
      ...(description ? { description } : {}),
      steps: [
        { name: "classify", action: "classify_sensitive_data" },
        { name: "store", action: "store_with_encryption" },
      ],
    },
  }) as unknown as RunRecord["spec"];

function run(
  id: string,
  status: RunRecord["status"],
  createdAt: string,
  o: { params?: Record<string, unknown>; labels?: Record<string, string>; table?: string } = {},
) {
  const table = o.table ?? "people";
  const steps = [
    {
      name: "classify",
      outputs: {
        columns: [
          { name: "mail", class: "email", action: "tokenize" },
          { name: "id", class: "none", action: "allow" },
        ],
      },
    },
    {
      name: "store",
      outputs: { destination: "sqlite:/w.db", table, rowsStored: 10, encryption: { algorithm: "AES-256-GCM", keyId: "k", keyVersion: 2 }, columns: [] },
    },
  ] as unknown as StepRecord[];
  return { run: { id, status, createdAt, params: o.params ?? {}, spec: spec(o.labels, "Pay suppliers.") } as unknown as RunRecord, steps };
}

describe("processingRecord", () => {
  it("counts succeeded runs only and takes the newest run's retention, else the label, else not declared", () => {
    const ok = { verified: true, entries: 3, checkpoints: 1 };
    const runs = [
      run("a", "succeeded", "2026-01-01T00:00:00Z", { params: { retention: "1 year" } }),
      run("b", "failed", "2026-02-01T00:00:00Z", { table: "other" }),
    ];
    const r = processingRecord("wf", runs, ok);
    expect(r.runs).toMatchObject({ considered: 2, succeeded: 1 });
    expect(r.recipients).toEqual([{ destination: "sqlite:/w.db", table: "people", rows: 10, runs: 1 }]);
    expect(r.categories).toEqual([{ class: "email", columns: [{ table: "people", column: "mail", action: "tokenize" }] }]);
    expect(r.measures.tokenized).toEqual(["people.mail"]);
    expect(r.measures.encryption).toEqual([{ algorithm: "AES-256-GCM", keyId: "k", keyVersion: 2 }]);
    expect(r.retention).toBe("1 year");
    expect(r.purposes).toEqual(["Pay suppliers."]);
    expect(processingRecord("wf", [run("c", "succeeded", "2026-03-01T00:00:00Z", { labels: { [RETENTION_LABEL]: "90 days" } })], ok).retention).toBe("90 days");
    expect(processingRecord("wf", [run("d", "succeeded", "2026-03-01T00:00:00Z")], ok).retention).toBe("not declared");
  });

  it("says when the audit chain does not hold, and counts audited reads of its tables only", () => {
    const broken = { verified: false, entries: 5, checkpoints: 1, problem: "audit log broken: entry 3 was edited" };
    const trail: { event: string; time: string; resource: string; outcome: "success" | "failure" }[] = [
      { event: "data.decrypt", time: "t1", resource: "table:people", outcome: "success" },
      { event: "data.decrypt", time: "t2", resource: "table:elsewhere", outcome: "success" },
      { event: "key.rotate", time: "t3", resource: "keyring:/k.json", outcome: "success" },
    ];
    const r = processingRecord("wf", [run("a", "succeeded", "2026-01-01T00:00:00Z")], broken, trail);
    expect(r.measures.decrypts).toBe(1);
    expect(r.measures.keyEvents).toEqual([{ event: "key.rotate", time: "t3", resource: "keyring:/k.json", outcome: "success" }]);
    const text = formatProcessingRecord(r);
    expect(text).toContain("audit chain: NOT intact: audit log broken: entry 3 was edited");
    expect(text).toContain("  email: people.mail (tokenize)");
    expect(text).toContain("Retention: not declared");
    expect(text).toContain("key management: rotate t3");
  });
});

/**
 * The CLI as a user meets it: real processes, a real SQLite store, exit codes and output text.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir, workflow } from "../helpers.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import { createRun } from "../../src/engine/index.js";
import { FIXTURE_ACTIONS, ROOT, sluice, sluiceAsync, waitForStderr } from "./cli-helpers.js";

let cwd: string;
beforeAll(() => {
  cwd = tempDir("sluice-cli-");
});
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

const write = (name: string, text: string) => {
  const p = join(cwd, name);
  writeFileSync(p, text);
  return p;
};

const header = (name: string) => `apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: ${name}\nspec:\n`;

describe("sluice validate", () => {
  it("accepts the five workflows of the founding document", () => {
    const files = [
      "standard-ingestion", "bulk-file", "realtime-stream", "resilient-fetch", "secure-api",
    ].map((n) => join(ROOT, "workflows", `base-data-ingestion-workflow-${n}.yaml`));
    const r = sluice(["validate", ...files], { cwd });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n")).toHaveLength(5);
    for (const line of r.stdout.trim().split("\n")) expect(line).toMatch(/\.yaml: ok \(/);
  });

  it("reports every problem of every file as FILE:LINE:COL and exits 1", () => {
    const a = write("a.yaml", `${header("a")}  steps:\n    - name: one\n      exec: { command: [echo] }\n      timout: 5m\n`);
    const b = write("b.yaml", `${header("b")}  steps:\n    - name: one\n      agent: data-collector\n      action: collect_data_from_sorce\n`);
    const r = sluice(["validate", a, b], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${a}:9:7: unknown field "timout" in spec.steps[0]; did you mean "timeout"?`);
    expect(r.stderr).toContain(`${b}:9:15: agent "data-collector" has no action "collect_data_from_sorce"; did you mean "collect_data_from_source"?`);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
  });
});

describe("sluice run", () => {
  it("exits 0 with the documented JSON document for a successful run", () => {
    const wf = write("ok.yaml", `${header("ok-flow")}  params:\n    who: { type: string, default: world }\n  steps:
    - name: hello
      exec: { command: [sh, -c, 'echo "hello $1"', sh, "\${{ params.who }}"] }
    - name: after
      dependsOn: [hello]
      exec: { command: [echo, "\${{ steps.hello.outputs.stdout }}!"] }
`);
    const r = sluice(["run", wf, "--param", "who=sluice", "--json"], { cwd });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/run r-[a-z0-9]+-[0-9a-f]+ created/);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc)).toEqual(expect.arrayContaining(["id", "workflow", "status", "startedAt", "endedAt", "params", "steps"]));
    expect(doc).toMatchObject({ workflow: "ok-flow", status: "succeeded", params: { who: "sluice" } });
    expect(doc.steps).toEqual([
      expect.objectContaining({ name: "hello", status: "succeeded", outputs: { exitCode: 0, stdout: "hello sluice" },
        attempts: [expect.objectContaining({ n: 1, status: "succeeded", startedAt: expect.any(String), endedAt: expect.any(String), error: null })] }),
      expect.objectContaining({ name: "after", status: "succeeded", outputs: { exitCode: 0, stdout: "hello sluice!" } }),
    ]);

    const listed = JSON.parse(sluice(["runs", "--json"], { cwd }).stdout);
    expect(listed[0]).toMatchObject({ id: doc.id, status: "succeeded", workflow: "ok-flow" });
    const status = JSON.parse(sluice(["status", doc.id, "--json"], { cwd }).stdout);
    expect(status).toEqual(doc);
  });

  it("exits 1 when the run fails, naming the step and the reason", () => {
    const wf = write("fail.yaml", `${header("fail-flow")}  steps:\n    - name: broken\n      exec: { command: [sh, -c, "echo disk full >&2; exit 4"] }\n`);
    const r = sluice(["run", wf], { cwd });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/failed/);
    expect(r.stdout).toContain('step broken failed: command "sh" exited with code 4: disk full');
  });

  it("exits 2 on usage errors with one sentence and no stack trace", () => {
    const wf = write("p.yaml", `${header("p-flow")}  params:\n    count: { type: integer, default: 1 }\n  steps:\n    - name: x\n      exec: { command: ["true"] }\n`);
    for (const [args, msg] of [
      [["run", wf, "--param", "cuont=1"], /has no parameter "cuont"; did you mean "count"\? \(it takes: count\)/],
      [["run", wf, "--param", "count=abc"], /parameter "count" must be an integer, not "abc"/],
      [["run", wf, "--param", "count"], /--param takes key=value, not "count"/],
      [["run", wf, "--bogus"], /unknown option '--bogus'/],
      [["frobnicate"], /unknown command 'frobnicate'/],
    ] as const) {
      const r = sluice([...args], { cwd });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("prints the validation problems and exits 1 for an invalid workflow", () => {
    const wf = write("bad.yaml", `${header("bad")}  steps:\n    - name: x\n      exec: { command: ["true"] }\n      dependsOn: [y]\n`);
    const r = sluice(["run", wf], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${wf}:9:19: step "x" depends on "y", which is not a step of this workflow`);
  });

  it("reports an unknown run id clearly", () => {
    const r = sluice(["status", "r-nope"], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("sluice: no run with id r-nope");
  });
});

describe("sluice convert", () => {
  it("types to a schema file, reports each rejected record with file and line, and exits 1", () => {
    const input = write("in.csv", "id,when,amount\nA,2026-11-02T10:00:00+01:00,1.5\nB,yesterday,2\nC,2026-11-02 12:00:00Z,3.14159\n");
    const schema = write("schema.yaml", "columns:\n  - { name: id, type: string }\n  - { name: at, from: when, type: timestamp }\n  - { name: amount, type: decimal, scale: 2 }\n");
    const out = join(cwd, "out.ndjson");
    const r = sluice(["convert", input, out, "--schema", schema], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${input}:3: at: "yesterday" is not a valid timestamp`);
    expect(r.stderr).toContain(`${input}:4: amount: 3.14159 has more than 2 decimal places`);
    expect(r.stdout).toContain("1 rows written (3 read, 2 malformed), 3 columns");
    expect(readFileSync(out, "utf8")).toBe('{"id":"A","at":"2026-11-02T09:00:00.000Z","amount":"1.50"}\n');
  });
});

describe("durability across kill -9", () => {
  it("resumes a killed run without re-running succeeded steps; attempt numbers continue", async () => {
    const marks = tempDir("sluice-marks-");
    const mark = (n: string) => join(marks, `${n}.txt`);
    const wf = write("durable.yaml", `${header("durable")}  steps:
    - name: first
      agent: fixture
      action: mark
      with: { file: "${mark("first")}" }
    - name: second
      agent: fixture
      action: mark
      dependsOn: [first]
      with: { file: "${mark("second")}" }
    - name: slow
      agent: fixture
      action: sleep
      dependsOn: [second]
      with: { ms: 1500 }
    - name: last
      agent: fixture
      action: mark
      dependsOn: [slow]
      with: { file: "${mark("last")}" }
`);
    const env = { SLUICE_ACTIONS: FIXTURE_ACTIONS, SLUICE_LEASE_TTL_MS: "1500" };
    const child = sluiceAsync(["run", wf], { cwd, env });
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/)) as RegExpMatchArray;
    await waitForStderr(child, /step slow started/);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));

    // The dead process's lease has not expired yet: resume refuses rather than guessing.
    const early = sluice(["resume", runId!], { cwd, env });
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/is being executed by .*lease expires in \d+s/);

    await new Promise((r) => setTimeout(r, 1_700));
    const r = sluice(["resume", runId!, "--json"], { cwd, env });
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.status).toBe("succeeded");
    const attempts = Object.fromEntries(doc.steps.map((s: { name: string; attempts: { n: number; status: string }[] }) =>
      [s.name, s.attempts.map((a) => `${a.n}:${a.status}`)]));
    expect(attempts).toEqual({
      first: ["1:succeeded"],
      second: ["1:succeeded"],
      slow: ["1:interrupted", "2:succeeded"],
      last: ["1:succeeded"],
    });
    // Succeeded steps ran exactly once, across both processes.
    expect(readFileSync(mark("first"), "utf8")).toBe("first attempt 1\n");
    expect(readFileSync(mark("second"), "utf8")).toBe("second attempt 1\n");
    expect(readFileSync(mark("last"), "utf8")).toBe("last attempt 1\n");
    rmSync(marks, { recursive: true, force: true });
  });
});

describe("sluice cancel", () => {
  it("cancels a run that a live process is executing", async () => {
    const wf = write("cancel.yaml", `${header("to-cancel")}  steps:\n    - name: wait\n      exec: { command: [sleep, "30"] }\n`);
    const child = sluiceAsync(["run", wf], { cwd });
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/)) as RegExpMatchArray;
    await waitForStderr(child, /step wait started/);
    const r = sluice(["cancel", runId!], { cwd });
    expect(r.stdout.trim()).toBe(`run ${runId} cancelled`);
    const code = await new Promise((res) => child.once("exit", res));
    expect(code).toBe(1);
    const doc = JSON.parse(sluice(["status", runId!, "--json"], { cwd }).stdout);
    expect(doc.status).toBe("cancelled");
    expect(doc.steps[0].attempts[0].status).toBe("cancelled");
  });

  it("cancels a run that no live process owns directly", async () => {
    // A run created but never executed (as a server would queue it): no lease, nobody to ask.
    const store = openSqliteStore(join(cwd, ".sluice", "sluice.db"));
    const run = await createRun(store, { workflow: workflow({ steps: [{ name: "never", exec: { command: ["true"] } }] }) });
    await store.close();
    const r = sluice(["cancel", run.id], { cwd });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`run ${run.id} cancelled`);
    const doc = JSON.parse(sluice(["status", run.id, "--json"], { cwd }).stdout);
    expect(doc).toMatchObject({ status: "cancelled", steps: [{ name: "never", status: "cancelled", attempts: [] }] });
  });
});

/**
 * Fan-out, conditions and child runs through the real CLI: `sluice validate` refusing bad specs
 * with positions, a 200-item exec fan-out whose items measure their own concurrency, and a
 * `kill -9` in the middle of it followed by a resume that runs only the unfinished items.
 */
import { describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { scratch, waitUntil } from "../helpers.js";
import { sluice, sluiceAsync, waitForStderr } from "./cli-helpers.js";

const dirs = scratch();

const HEAD = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: features }
spec:
`;

describe("sluice validate refuses bad engine specs with positions", () => {
  it("a forEach over a non-list, a condition with a syntax error, a missing child workflow, run.status outside finally", () => {
    const cwd = dirs("sluice-feat-validate-");
    writeFileSync(
      join(cwd, "bad.yaml"),
      `${HEAD}  params:
    n: { type: integer, default: 3 }
  steps:
    - name: a
      forEach: "\${{ params.n }}"
      exec: { command: [echo, "\${{ item }}"] }
    - name: b
      when: "params.n >> 2"
      exec: { command: [echo] }
    - name: c
      workflow: ./missing.yaml
    - name: d
      forEach: 5
      exec: { command: [echo] }
    - name: e
      exec: { command: [echo, "\${{ run.status }}"] }
`,
    );
    const r = sluice(["validate", "bad.yaml"], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([
      'bad.yaml:9:16: forEach of step "a" reads params.n, an integer, not a list',
      'bad.yaml:12:13: when expression "params.n >> 2" at column 11: unexpected ">"',
      `bad.yaml:15:17: step "c" calls workflow file ./missing.yaml, which does not exist (looked for ${join(cwd, "missing.yaml")})`,
      "bad.yaml:17:16: spec.steps[3].forEach: must be a list or one ${{ }} expression that gives a list",
      'bad.yaml:20:31: expression "run.status": the run\'s status is known only in spec.finally steps',
    ]);
  });
});

describe("sluice validate refuses workflows that call themselves or a workflow that is nowhere", () => {
  it("a self-call, a cycle between two workflows of one file, an unknown name; a file beside it is found", () => {
    const cwd = dirs("sluice-feat-calls-");
    writeFileSync(
      join(cwd, "known-child.yaml"),
      `apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata: { name: known-child }\nspec:\n  steps:\n    - { name: s, exec: { command: [echo] } }\n`,
    );
    writeFileSync(
      join(cwd, "calls.yaml"),
      `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: ping }
spec:
  steps:
    - name: to-pong
      workflow: pong
    - name: to-self
      workflow: ping
    - name: to-nowhere
      workflow: pongg
    - name: to-file
      workflow: known-child
---
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: pong }
spec:
  steps:
    - name: back
      workflow: ping
`,
    );
    const r = sluice(["validate", "calls.yaml"], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([
      'calls.yaml:7:17: step "to-pong" calls workflow "pong", which calls back: ping → pong → ping',
      'calls.yaml:9:17: step "to-self" calls workflow "ping", the workflow it belongs to: a workflow cannot call itself',
      'calls.yaml:11:17: step "to-nowhere" calls workflow "pongg", which is not in this file, not registered, and not a file pongg.yaml beside it; did you mean "pong"?',
      'calls.yaml:21:17: step "back" calls workflow "ping", which calls back: pong → ping → pong',
    ]);
  });
});

describe("a 200-item exec fan-out through sluice run", () => {
  it("never runs more than `parallelism` items at once, isolates failures, and resumes after kill -9 running only unfinished items", async () => {
    const cwd = dirs("sluice-feat-fanout-");
    const work = join(cwd, "work");
    for (const d of ["alive", "ran"]) mkdirSync(join(work, d), { recursive: true });
    // Each item records how many items are alive when it starts (itself included), appends to
    // its own file, waits a little (longer before the kill), and fails when its index ends in 7.
    const script = [
      `i=$0; touch ${work}/alive/$i; ls ${work}/alive | wc -l >> ${work}/counts`,
      `echo run >> ${work}/ran/$i`,
      `if [ -e ${work}/fast ]; then sleep 0.02; else sleep 0.15; fi`,
      `rm ${work}/alive/$i`,
      `case $i in *7) exit 1;; esac`,
    ].join("; ");
    writeFileSync(
      join(cwd, "fan.yaml"),
      `${HEAD}  steps:
    - name: load
      forEach: [${Array.from({ length: 200 }, (_, i) => i).join(", ")}]
      parallelism: 8
      continueOnError: true
      failureThreshold: 0.2
      exec: { command: [sh, -c, '${script}', "\${{ item }}"] }
    - name: report
      dependsOn: [load]
      exec: { command: [echo, "\${{ steps.load.outputs.failed }} of \${{ steps.load.outputs.count }} failed"] }
`,
    );
    const env = { SLUICE_LEASE_TTL_MS: "1500" };
    const child = sluiceAsync(["run", "fan.yaml"], { cwd, env });
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/)) as RegExpMatchArray;
    // Kill it once a good part of the items has run.
    await waitUntil(() => readdirSync(join(work, "ran")).length >= 60, 30_000, "the fan-out did not get going");
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const ranBefore = readdirSync(join(work, "ran")).length;
    expect(ranBefore).toBeLessThan(200);
    writeFileSync(join(work, "fast"), "");

    await new Promise((r) => setTimeout(r, 1_700)); // the dead process's lease expires
    // Items killed mid-run left their marker: clear them, as their processes are gone.
    for (const f of readdirSync(join(work, "alive"))) rmSync(join(work, "alive", f));
    const r = sluice(["resume", runId!, "--json"], { cwd, env });
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as {
      status: string;
      steps: { name: string; status: string; outputs: Record<string, unknown> | null; attempts: { status: string }[] }[];
    };
    expect(doc.status).toBe("succeeded");
    const load = doc.steps.find((s) => s.name === "load")!;
    expect(load.outputs).toMatchObject({ count: 200, succeeded: 180, failed: 20 });
    expect(doc.steps.find((s) => s.name === "report")!.status).toBe("succeeded");

    // The items measured it themselves: never more than 8 alive at once.
    const counts = readFileSync(join(work, "counts"), "utf8").trim().split("\n").map(Number);
    expect(Math.max(...counts)).toBeLessThanOrEqual(8);
    expect(Math.max(...counts)).toBeGreaterThan(1);
    // Every item ran; an item ran twice only when its first attempt was interrupted by the kill.
    const items = doc.steps.filter((s) => s.name.startsWith("load["));
    expect(items).toHaveLength(200);
    for (const it of items) {
      const i = Number(/\[(\d+)\]/.exec(it.name)![1]);
      const runs = readFileSync(join(work, "ran", String(i)), "utf8")
        .trim()
        .split("\n").length;
      const interrupted = it.attempts.filter((a) => a.status === "interrupted").length;
      // (An interrupted attempt may have been killed before its command got to run at all.)
      if (interrupted === 0) expect(runs, it.name).toBe(1);
      else expect(runs, it.name).toBeLessThanOrEqual(1 + interrupted);
      expect(it.status).toBe(i % 10 === 7 ? "failed" : "succeeded");
    }
    const reRun = items.filter((it) => it.attempts.some((a) => a.status === "interrupted")).length;
    expect(reRun).toBeGreaterThan(0);
    expect(reRun).toBeLessThanOrEqual(8);
  }, 90_000);
});

describe("conditions, trigger rules, finally and child runs through sluice run", () => {
  it("skips by condition, runs the anyFailed fallback and the finally step, and fails the run", () => {
    const cwd = dirs("sluice-feat-rules-");
    writeFileSync(
      join(cwd, "rules.yaml"),
      `${HEAD}  params:
    mode: { type: string, default: full }
  steps:
    - name: fetch
      exec: { command: [sh, -c, "echo primary down >&2; exit 2"] }
    - name: truncate
      when: "params.mode == 'full'"
      exec: { command: [echo, truncated] }
    - name: incremental
      when: "params.mode != 'full'"
      exec: { command: [echo, incremental] }
    - name: fallback
      dependsOn: [fetch]
      runIf: anyFailed
      exec: { command: [echo, "fallback ran"] }
  finally:
    - name: cleanup
      exec: { command: [echo, "status=\${{ run.status }}"] }
`,
    );
    const r = sluice(["run", "rules.yaml", "--json"], { cwd });
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as {
      status: string;
      error: { message: string };
      steps: { name: string; status: string; error: { message: string } | null; outputs: { stdout?: string } | null }[];
    };
    expect(doc.status).toBe("failed");
    expect(doc.error.message).toMatch(/^step fetch failed: command "sh" exited with code 2: primary down/);
    const by = Object.fromEntries(doc.steps.map((s) => [s.name, s]));
    expect(Object.fromEntries(doc.steps.map((s) => [s.name, s.status]))).toEqual({
      fetch: "failed",
      truncate: "succeeded",
      incremental: "skipped",
      fallback: "succeeded",
      cleanup: "succeeded",
    });
    expect(by.incremental!.error?.message).toBe("condition params.mode != 'full' is false");
    expect(by.fallback!.outputs?.stdout).toBe("fallback ran");
    expect(by.cleanup!.outputs?.stdout).toBe("status=failed");
  });

  it("resumes a parent killed while its child run works: the child is started once and the parent takes its outputs", async () => {
    const cwd = dirs("sluice-feat-child-");
    const marks = join(cwd, "marks");
    mkdirSync(marks);
    writeFileSync(
      join(cwd, "child-flow.yaml"),
      `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: child-flow }
spec:
  params: { label: { type: string } }
  steps:
    - name: first
      exec: { command: [sh, -c, "echo first >> ${marks}/first; echo \${{ params.label }}"] }
    - name: slow
      dependsOn: [first]
      exec: { command: [sh, -c, "echo slow >> ${marks}/slow; [ -e ${marks}/fast ] || sleep 30; echo done"] }
`,
    );
    writeFileSync(
      join(cwd, "parent.yaml"),
      `${HEAD}  steps:
    - name: call
      workflow: child-flow
      with: { label: from-parent }
    - name: use
      dependsOn: [call]
      exec: { command: [echo, "child said \${{ steps.call.outputs.steps.first.stdout }}"] }
`,
    );
    const env = { SLUICE_LEASE_TTL_MS: "1500" };
    const child = sluiceAsync(["run", "parent.yaml"], { cwd, env });
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/)) as RegExpMatchArray;
    await waitUntil(() => existsSync(join(marks, "slow")), 20_000, "the child run did not reach its slow step");
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    writeFileSync(join(marks, "fast"), "");
    await new Promise((r) => setTimeout(r, 1_700));

    const r = sluice(["resume", runId!, "--json"], { cwd, env });
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { status: string; steps: { name: string; status: string; outputs: { stdout?: string } | null }[] };
    expect(doc.status).toBe("succeeded");
    expect(doc.steps.find((s) => s.name === "use")!.outputs?.stdout).toBe("child said from-parent");
    // One child run, its first step run once, its interrupted step run again.
    const runs = sluice(["runs", "--json"], { cwd });
    const list = JSON.parse(runs.stdout) as { id: string; workflow: string; trigger?: { type: string; parent?: { runId: string } } }[];
    const children = list.filter((x) => x.workflow === "child-flow");
    expect(children).toHaveLength(1);
    expect(children[0]!.id).toBe(`${runId}.call.1`);
    expect(children[0]!.trigger).toMatchObject({ type: "workflow", parent: { runId } });
    expect(readFileSync(join(marks, "first"), "utf8")).toBe("first\n");
    expect(readFileSync(join(marks, "slow"), "utf8")).toBe("slow\nslow\n");
  }, 60_000);
});

describe("resuming stops the programs the dead owner left running", () => {
  it("an exec step's program that outlived its kill -9'd sluice run is stopped before the step runs again", async () => {
    const cwd = dirs("sluice-feat-orphans-");
    const work = join(cwd, "work");
    mkdirSync(work);
    // Attempt 1 records its pid and sleeps long; attempt 2 finishes at once.
    writeFileSync(
      join(cwd, "orphan.yaml"),
      `${HEAD}  steps:
    - name: long
      exec: { command: [sh, -c, 'echo $$ > ${work}/pid.$SLUICE_ATTEMPT; [ "$SLUICE_ATTEMPT" = 1 ] && sleep 60; echo done'] }
`,
    );
    const child = sluiceAsync(["run", "orphan.yaml"], { cwd });
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/)) as RegExpMatchArray;
    await waitUntil(() => existsSync(join(work, "pid.1")), 20_000, "the step did not start");
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const orphan = Number(readFileSync(join(work, "pid.1"), "utf8"));
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(alive(orphan)).toBe(true); // its own process group outlived the kill -9

    const r = sluice(["resume", runId!, "--json"], { cwd });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/stopped 1 program the previous owner left running/);
    expect(alive(orphan)).toBe(false);
    const doc = JSON.parse(r.stdout) as { status: string; steps: { name: string; attempts: { status: string }[] }[] };
    expect(doc.status).toBe("succeeded");
    expect(doc.steps[0]!.attempts.map((a) => a.status)).toEqual(["interrupted", "succeeded"]);
  }, 60_000);
});

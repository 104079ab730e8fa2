/**
 * `sluice resume` as a user meets it, on both state stores: real `sluice run` processes killed
 * with SIGKILL (resumed at once: the owner is a dead process of this host) or stopped with
 * SIGSTOP (alive, but no longer renewing: resume refuses, `--wait` waits out the lease), and
 * the history those processes and the resumer leave in the store.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { StateStore } from "../../src/store/types.js";
import { bothStores, PG_URL } from "../stores.js";
import { scratch } from "../helpers.js";
import { sluice, sluiceAsync, waitForStderr, type CliResult } from "./cli-helpers.js";

const fresh = scratch();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise<number | null>((r) => child.once("exit", (code) => r(code)));

/** Resolves with the finished child's result (stdout collected from the start). */
function finished(child: ChildProcess): Promise<CliResult> {
  let stdout = "";
  child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  return new Promise((res) => child.once("close", (code) => res({ code: code ?? -1, stdout, stderr })));
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe.each(bothStores("resume"))("sluice resume on $dialect", (backend) => {
  let cwd: string;
  let store: StateStore;
  let storeEnv: Record<string, string>;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    cwd = fresh("sluice-resume-");
    storeEnv = backend.schema ? { SLUICE_DATABASE_URL: PG_URL, SLUICE_PG_SCHEMA: backend.schema } : {};
    store = (await backend.open()) ?? openSqliteStore(join(cwd, ".sluice", "sluice.db"));
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await store?.close();
    await backend.drop();
  });

  /**
   * A workflow: `first` appends its attempt number to first.txt; `slow` to slow.txt, then sleeps
   * `firstS` seconds in its first attempt and `laterS` in later ones; `last` to last.txt.
   */
  function slowFlow(name: string, firstS: number, laterS = firstS): { file: string; marks: (m: string) => string[] } {
    const dir = fresh(`sluice-resume-${name}-`);
    const mark = (m: string) => `echo "$SLUICE_ATTEMPT" >> ${join(dir, `${m}.txt`)}`;
    const file = join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: ${name} }
spec:
  steps:
    - { name: first, exec: { command: [sh, -c, '${mark("first")}'] } }
    - { name: slow, dependsOn: [first], exec: { command: [sh, -c, '${mark("slow")}; sleep $(( SLUICE_ATTEMPT == 1 ? ${firstS} : ${laterS} ))'] } }
    - { name: last, dependsOn: [slow], exec: { command: [sh, -c, '${mark("last")}'] } }
`,
    );
    const marks = (m: string) =>
      existsSync(join(dir, `${m}.txt`))
        ? readFileSync(join(dir, `${m}.txt`), "utf8")
            .trim()
            .split("\n")
        : [];
    return { file, marks };
  }

  /** `sluice run` of the flow, once its slow step is under way: the child and the run id. */
  async function runUntilSlow(flow: ReturnType<typeof slowFlow>, env: Record<string, string>) {
    const child = sluiceAsync(["run", flow.file], { cwd, env: { ...storeEnv, ...env } });
    children.push(child);
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/)) as RegExpMatchArray;
    await waitForStderr(child, /step slow started/);
    await until(() => flow.marks("slow").length === 1, 10_000, "the slow step's command to start");
    return { child, runId: runId! };
  }

  const attemptsOf = async (runId: string) => {
    const out: Record<string, string[]> = {};
    for (const a of await store.getAttempts(runId)) (out[a.step] ??= []).push(`${a.n}:${a.status}`);
    return out;
  };

  it("after kill -9 of `sluice run`, resumes at once (the owner's pid is gone), re-running only the interrupted step", async () => {
    const flow = slowFlow("killed", 1);
    // The default 15 s lease: without the takeover, resume would refuse for 15 s.
    const { child, runId } = await runUntilSlow(flow, {});
    const held = (await store.getRun(runId))!;
    expect(held.leaseOwner).toMatch(new RegExp(`:${child.pid}:`));
    child.kill("SIGKILL");
    await exited(child);

    const t0 = Date.now();
    const r = sluice(["resume", runId, "--json"], { cwd, env: storeEnv });
    expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000); // the slow step's 1 s and two process starts, not the lease's 15 s
    expect(held.leaseExpiresAt! - Date.now()).toBeGreaterThan(0); // and the dead owner's lease had not run out
    expect(r.stderr).toContain(`run ${runId} taken over at once: its previous owner ${held.leaseOwner} (pid ${child.pid}) is gone`);
    expect(JSON.parse(r.stdout).status).toBe("succeeded");

    // What the store recorded: the killed attempt interrupted, then one more; nothing else again.
    const run = (await store.getRun(runId))!;
    expect(run).toMatchObject({ status: "succeeded", leaseOwner: null });
    expect(await attemptsOf(runId)).toEqual({ first: ["1:succeeded"], slow: ["1:interrupted", "2:succeeded"], last: ["1:succeeded"] });
    const slow = (await store.getAttempts(runId)).filter((a) => a.step === "slow");
    expect(slow[0]!.owner).toBe(held.leaseOwner);
    expect(slow[1]!.owner).not.toBe(held.leaseOwner);
    expect([flow.marks("first"), flow.marks("slow"), flow.marks("last")]).toEqual([["1"], ["1", "2"], ["1"]]);
  }, 60_000);

  it("a live owner: refused without --wait (the message says so); with --wait, resumed once its lease expires", async () => {
    const flow = slowFlow("stalled", 10, 1); // the owner is stalled before its attempt ends
    const env = { SLUICE_LEASE_TTL_MS: "1500" };
    const { child, runId } = await runUntilSlow(flow, env);

    const refused = sluice(["resume", runId], { cwd, env: { ...storeEnv, ...env } });
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toMatch(
      new RegExp(
        `^sluice: run ${runId} is being executed by \\S+:${child.pid}:\\S+ \\(pid ${child.pid}, alive on this host\\); its lease expires in [12]s unless renewed; ` +
          `to wait for that and resume then: sluice resume ${runId} --wait$`,
      ),
    );

    // Waiting while the owner lives (it renews the lease every second)…
    const waiter = sluiceAsync(["resume", runId, "--wait", "--json"], { cwd, env: { ...storeEnv, ...env } });
    children.push(waiter);
    const result = finished(waiter);
    const [, until] = (await waitForStderr(
      waiter,
      new RegExp(
        `run ${runId} is being executed by \\S+ \\(pid ${child.pid}, alive on this host\\); waiting for its lease to expire at (\\S+) \\(later if that process renews it\\), then resuming`,
      ),
    )) as RegExpMatchArray;
    await sleep(1_500);
    expect(waiter.exitCode).toBeNull();
    expect((await store.getRun(runId))!.leaseExpiresAt).toBeGreaterThan(Date.parse(until!)); // renewed meanwhile
    // …until it stalls (a long pause, a debugger): alive, but its heartbeat no longer renews the lease.
    child.kill("SIGSTOP");
    await sleep(200); // a renewal already sent lands
    const expiry = (await store.getRun(runId))!.leaseExpiresAt!;
    const r = await result;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/waiting for its lease/g)).toHaveLength(1); // said once
    expect(r.stderr).not.toContain("taken over at once"); // the owner was alive: the lease rule, not the takeover
    const doc = JSON.parse(r.stdout);
    expect(doc.status).toBe("succeeded");
    const attempts = (await store.getAttempts(runId)).filter((a) => a.step === "slow");
    expect(Date.parse(attempts[1]!.startedAt)).toBeGreaterThanOrEqual(expiry); // not before the lease ran out
    expect(await attemptsOf(runId)).toEqual({ first: ["1:succeeded"], slow: ["1:interrupted", "2:succeeded"], last: ["1:succeeded"] });

    // The stalled owner wakes up to a run it no longer holds: it records nothing more and gives up.
    child.kill("SIGCONT");
    await waitForStderr(child, new RegExp(`run ${runId} left running because another process took over the run`));
    await exited(child);
    expect(await attemptsOf(runId)).toEqual({ first: ["1:succeeded"], slow: ["1:interrupted", "2:succeeded"], last: ["1:succeeded"] });
    expect((await store.getRun(runId))!.status).toBe("succeeded");
  }, 60_000);

  it("--wait on a run its live owner then finishes: says so and reports the run", async () => {
    const flow = slowFlow("finishing", 3); // long enough for the resumer to start and find it still held
    const { child, runId } = await runUntilSlow(flow, {});
    const r = await finished(sluiceAsync(["resume", runId, "--wait"], { cwd, env: storeEnv }));
    expect(await exited(child)).toBe(0);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/waiting for its lease to expire at \S+/);
    expect(r.stderr).toContain(`sluice: run ${runId} ended while we waited (succeeded); nothing to resume`);
    expect(r.stdout).toMatch(new RegExp(`^run ${runId} succeeded`));
    expect(await attemptsOf(runId)).toEqual({ first: ["1:succeeded"], slow: ["1:succeeded"], last: ["1:succeeded"] });
  }, 60_000);
});

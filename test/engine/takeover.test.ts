/**
 * Taking a run over from a dead process of this host at once (engine/takeover.ts), on both
 * stores: the store's compare-and-set under a race, the engine resuming a run whose owner is gone
 * while its lease is still live, and the refusals when the holder may be alive.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spawnSync, spawn } from "node:child_process";
import { hostname } from "node:os";
import { join } from "node:path";
import { createRun, executeRun, type EngineEvent } from "../../src/engine/index.js";
import { deadLocalOwner, parseOwner, processGone } from "../../src/engine/takeover.js";
import { openPostgresStore } from "../../src/store/postgres.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { StateStore } from "../../src/store/types.js";
import { bothStores, PG_URL } from "../stores.js";
import { failure, testEnv, workflow, type TestEnv } from "../helpers.js";

/** The pid of a process that ran and has been reaped: nothing runs under it now (pids wrap far later). */
function deadPid(): number {
  const r = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  const pid = Number(r.stdout.trim());
  expect(processGone(pid)).toBe(true);
  return pid;
}

describe("owner ids and processes", () => {
  it("reads host and pid from the right of host:pid:random", () => {
    expect(parseOwner("box-1:4242:ab12cd")).toEqual({ host: "box-1", pid: 4242 });
    expect(parseOwner("fe80::1:77:ab12cd")).toEqual({ host: "fe80::1", pid: 77 });
    for (const bad of ["A", "host:notapid:x", "host:0:x", "host:-3:x"]) expect(parseOwner(bad)).toBeUndefined();
  });

  it("tells a dead process from a live one, another user's, and a zombie", async () => {
    expect(processGone(process.pid)).toBe(false);
    expect(processGone(1)).toBe(false); // init: EPERM unless root, alive either way
    expect(processGone(deadPid())).toBe(true);
    // `sleep 0` exits and its parent (sh, then exec'd into `sleep 2`) never reaps it: a zombie.
    const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 2"], { stdio: ["ignore", "pipe", "ignore"] });
    const zombie = Number(await new Promise<string>((r) => parent.stdout.once("data", (b: Buffer) => r(b.toString()))));
    await new Promise((r) => setTimeout(r, 200));
    expect(processGone(zombie)).toBe(true);
    parent.kill("SIGKILL");
  });

  it("only a process of this host counts as dead", () => {
    const pid = deadPid();
    expect(deadLocalOwner(`${hostname()}:${pid}:abc123`)).toBe(pid);
    expect(deadLocalOwner(`some-other-host:${pid}:abc123`)).toBeUndefined();
    expect(deadLocalOwner(`${hostname()}:${process.pid}:abc123`)).toBeUndefined();
    expect(deadLocalOwner(null)).toBeUndefined();
  });
});

let env: TestEnv;
afterEach(async () => env?.cleanup());

describe.each(bothStores("takeover"))("taking over on $dialect", (backend) => {
  let shared: StateStore | undefined;
  beforeAll(async () => {
    shared = await backend.open();
  });
  afterAll(async () => {
    await shared?.close();
    await backend.drop();
  });
  const makeEnv = () => testEnv([], shared ? { store: shared } : {});
  /** Another connection to the same store, as a second resumer process would have. */
  const secondHandle = async (): Promise<StateStore> =>
    backend.schema ? openPostgresStore(PG_URL, { schema: backend.schema, max: 4 }) : openSqliteStore(join(env.home, "sluice.db"));

  /** A run leased for a minute to `owner`, which started it and its first step, then (for the test) died. */
  async function runHeldBy(
    owner: string,
    steps: { name: string; agent: string; action: string; with: Record<string, unknown>; dependsOn?: string[] }[] = [
      { name: "work", agent: "test", action: "sleep", with: { ms: 20 } },
    ],
  ) {
    const wf = workflow({ steps }, env.actions);
    const run = await createRun(env.store, { workflow: wf, lease: { owner, expiresAt: Date.now() + 60_000 } });
    await env.store.markRunStarted(run.id, owner, new Date().toISOString(), null);
    await env.store.beginAttempt(run.id, steps[0]!.name, 1, owner, new Date().toISOString());
    return run;
  }

  it("takeOverRun: of racing resumers naming the same dead owner exactly one wins", async () => {
    env = makeEnv();
    const dead = `${hostname()}:${deadPid()}:dead00`;
    const run = await runHeldBy(dead);
    const other = await secondHandle();
    try {
      const contenders = Array.from({ length: 8 }, (_, i) => ({ store: i % 2 ? other : env.store, owner: `${hostname()}:${i + 1}:new00${i}` }));
      const won = await Promise.all(contenders.map((c) => c.store.takeOverRun(run.id, dead, c.owner, 15_000, Date.now())));
      expect(won.filter(Boolean)).toHaveLength(1);
      const winner = contenders[won.indexOf(true)]!.owner;
      expect((await env.store.getRun(run.id))!.leaseOwner).toBe(winner);
      // The owner has changed: naming the dead one again takes nothing, from either handle.
      expect(await other.takeOverRun(run.id, dead, "late:1:x", 15_000, Date.now())).toBe(false);
      expect((await other.getRun(run.id))!.leaseOwner).toBe(winner);
      // Nor is an ended run taken, whoever is named.
      await env.store.finishRun(run.id, winner, "cancelled", new Date().toISOString(), null);
      expect(await env.store.takeOverRun(run.id, winner, "late:1:x", 15_000, Date.now())).toBe(false);
    } finally {
      await other.close();
    }
  });

  it("executeRun takes a run from a dead local owner at once, live lease or not, and re-runs its interrupted step", async () => {
    env = makeEnv();
    const pid = deadPid();
    const dead = `${hostname()}:${pid}:dead01`;
    const run = await runHeldBy(dead, [
      { name: "work", agent: "test", action: "sleep", with: { ms: 20 } },
      { name: "after", agent: "test", action: "echo", with: { value: 1 }, dependsOn: ["work"] },
    ]);
    const events: EngineEvent[] = [];
    const t0 = Date.now();
    const done = await executeRun(run.id, { store: env.store, actions: env.actions, home: env.home, leaseTtlMs: 60_000, onEvent: (e) => events.push(e) });
    expect(Date.now() - t0).toBeLessThan(5_000); // not the minute the lease had left
    expect(done.status).toBe("succeeded");
    expect(events[0]).toEqual({ type: "run-taken-over", runId: run.id, previousOwner: dead, pid });
    expect(events.find((e) => e.type === "run-started")).toMatchObject({ resumed: true });
    const attempts = await env.store.getAttempts(run.id);
    expect(attempts.map((a) => [a.step, a.n, a.status, a.owner === dead])).toEqual([
      ["after", 1, "succeeded", false],
      ["work", 1, "interrupted", true],
      ["work", 2, "succeeded", false],
    ]);
  });

  it("refuses while the holder may be alive: another host, or a live process here; the message says --wait", async () => {
    env = makeEnv();
    for (const owner of [`some-other-host:${deadPid()}:abc123`, `${hostname()}:${process.pid}:abc123`]) {
      const run = await runHeldBy(owner);
      const err = await failure(executeRun(run.id, { store: env.store, actions: env.actions, home: env.home }));
      expect(err.code).toBe("CONFLICT");
      expect(err.message).toMatch(
        new RegExp(
          `^run ${run.id} is being executed by ${owner}.*; its lease expires in (59|60)s unless renewed; to wait for that and resume then: sluice resume ${run.id} --wait$`,
        ),
      );
      if (owner.startsWith(hostname())) expect(err.message).toContain(`(pid ${process.pid}, alive on this host)`);
      expect((await env.store.getRun(run.id))!.leaseOwner).toBe(owner); // untouched
      expect((await env.store.getAttempts(run.id)).map((a) => a.status)).toEqual(["running"]);
    }
  });
});

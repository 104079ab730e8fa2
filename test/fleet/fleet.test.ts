/**
 * The fleet on the real PostgreSQL, as real processes: 3 `sluice worker`s and 2 `sluice serve
 * --no-worker` schedulers share one store. 200 runs are queued; a worker is killed with -9 in the
 * middle of a step and the leading scheduler is killed with -9 while a 3-second cron schedule
 * ticks. Every run completes, no step succeeds twice (and no execution goes unrecorded), and
 * every cron tick fires exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import pg from "pg";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openPostgresStore } from "../../src/store/postgres.js";
import type { RunRecord, StateStore } from "../../src/store/types.js";
import { applyWorkflowText } from "../../src/control/workflows.js";
import { startWorkflowRun } from "../../src/control/runs.js";
import { builtinRegistry } from "../../src/actions/builtin.js";
import { loadActionModules } from "../../src/actions/registry.js";
import { ROOT, sluiceAsync, waitForStderr } from "../cli/cli-helpers.js";
import { PG_URL, dropSchema } from "../stores.js";
import { scratch } from "../helpers.js";

const fresh = scratch();
const schema = `sluice_fleet_${process.pid}_${Date.now().toString(36)}`;
const RUNS = 200;
const TICK_S = 3;
let dir: string;
let store: StateStore;
let marks: string;
const procs: ChildProcess[] = [];

const env = () => ({
  SLUICE_DATABASE_URL: PG_URL,
  SLUICE_PG_SCHEMA: schema,
  SLUICE_HOME: join(dir, "home"),
  SLUICE_ACTIONS: join(ROOT, "test", "fixtures", "fleet-actions.mjs"),
  SLUICE_LEASE_TTL_MS: "1500",
  SLUICE_LOG_LEVEL: "warn",
});
const pidOf = (owner: string | null | undefined) => Number(owner?.split(":")[1]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

const workYaml = (file: string) => `
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: fleet-work }
spec:
  steps:
    - { name: a, agent: fleet, action: work, with: { file: ${JSON.stringify(file)}, ms: 150 } }
    - { name: b, agent: fleet, action: work, with: { file: ${JSON.stringify(file)}, ms: 150 }, dependsOn: [a] }
    - { name: c, agent: fleet, action: work, with: { file: ${JSON.stringify(file)}, ms: 50 }, dependsOn: [b] }
`;
const cronYaml = `
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: fleet-tick }
spec:
  triggers:
    - schedule: "*/${TICK_S} * * * * *"
  steps:
    - { name: tick, exec: { command: ["true"] } }
`;

beforeAll(async () => {
  dir = fresh("sluice-fleet-");
  marks = join(dir, "marks.txt");
  writeFileSync(marks, "");
  mkdirSync(join(dir, "workflows"));
  writeFileSync(join(dir, "workflows", "work.yaml"), workYaml(marks));
  writeFileSync(join(dir, "workflows", "tick.yaml"), cronYaml);
  store = await openPostgresStore(PG_URL, { schema });
});

afterAll(async () => {
  for (const p of procs) if (alive(p)) p.kill("SIGKILL");
  await store?.close();
  await dropSchema(schema);
});

describe("a fleet of 3 workers and 2 schedulers on PostgreSQL", () => {
  it("completes 200 runs and every cron tick once through kill -9 of a worker and of the leader", async () => {
    const schedulers = [0, 1].map(() => sluiceAsync(["serve", "--no-worker", "--port", "0", "--workflows", join(dir, "workflows")], { cwd: dir, env: env() }));
    procs.push(...schedulers);
    await Promise.all(schedulers.map((s) => waitForStderr(s, /serving on/, 30_000)));
    const workers = [0, 1, 2].map(() => sluiceAsync(["worker", "--max-runs", "8"], { cwd: dir, env: env() }));
    procs.push(...workers);
    await Promise.all(workers.map((w) => waitForStderr(w, /worker .* started/, 30_000)));
    const t0 = Date.now();

    // Queue the runs through the registry the schedulers filled, as the API would.
    const actions = builtinRegistry();
    await loadActionModules(actions, [env().SLUICE_ACTIONS]);
    expect((await applyWorkflowText(store, actions, workYaml(marks), "work.yaml")).ok).toBe(true);
    const runs: RunRecord[] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await startWorkflowRun(store, { workflow: "fleet-work", trigger: { type: "api" } }));

    // kill -9 a worker while it is in the middle of a step: one of the 150 ms steps, started under
    // 60 ms ago, so the step is still running when the signal lands (a step seen running near its
    // end could finish between the look and the kill, and then no attempt is interrupted).
    let victim: ChildProcess | undefined;
    await until(
      async () => {
        const running = (await Promise.all(runs.slice(0, 60).map((r) => store.getAttempts(r.id))))
          .flat()
          .filter((a) => a.status === "running" && a.step !== "c" && a.startedAt !== null && Date.now() - Date.parse(a.startedAt) < 60);
        victim = workers.find((w) => running.some((a) => pidOf(a.owner) === w.pid));
        return victim !== undefined;
      },
      20_000,
      "a worker in the middle of a step",
    );
    victim!.kill("SIGKILL");

    // kill -9 the leading scheduler once the schedule has ticked a few times.
    await until(async () => (await store.listFires({ workflow: "fleet-tick" })).length >= 2, 20_000, "two cron fires");
    const leader = await leaderOf(schedulers);
    expect(schedulers.filter(alive).length).toBe(2);
    leader.kill("SIGKILL");
    const killedAt = Date.now();

    // Every run completes on the surviving workers.
    await until(
      async () => {
        const all = await store.listRuns({ workflow: "fleet-work", limit: 1000 });
        return all.filter((r) => r.status === "succeeded").length === RUNS;
      },
      60_000,
      "all runs to succeed",
    );
    // Let the schedule tick a few more times under the new leader.
    await until(async () => Date.now() - killedAt > 4 * TICK_S * 1000, 30_000, "more cron ticks");
    const endedAt = Date.now();

    // No step succeeded twice; every execution recorded by a step is an attempt in the store.
    const lines = readFileSync(marks, "utf8").trim().split("\n");
    const executions = new Map<string, number>();
    for (const l of lines) {
      const [run, step] = l.split(" ");
      executions.set(`${run}/${step}`, (executions.get(`${run}/${step}`) ?? 0) + 1);
    }
    let interrupted = 0;
    for (const r of runs) {
      const attempts = await store.getAttempts(r.id);
      for (const step of ["a", "b", "c"]) {
        const mine = attempts.filter((a) => a.step === step);
        expect(mine.filter((a) => a.status === "succeeded").length).toBe(1);
        expect(mine.every((a) => a.status === "succeeded" || a.status === "interrupted")).toBe(true);
        expect(executions.get(`${r.id}/${step}`) ?? 0).toBeLessThanOrEqual(mine.length);
        interrupted += mine.filter((a) => a.status === "interrupted").length;
      }
    }
    expect(interrupted).toBeGreaterThan(0); // the kill really hit a step

    // Every cron tick between the first fire and the end fired exactly once, and started a run.
    const fires = (await store.listFires({ workflow: "fleet-tick", limit: 1000 })).sort((a, b) => a.fireAt.localeCompare(b.fireAt));
    const times = fires.map((f) => Date.parse(f.fireAt));
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBe(TICK_S * 1000);
    expect(times.at(-1)!).toBeGreaterThan(endedAt - 3 * TICK_S * 1000);
    expect(times[0]!).toBeLessThan(t0 + TICK_S * 1000);
    expect(fires.every((f) => f.outcome === "started" && f.runId)).toBe(true);
    const tickRuns = await store.listRuns({ workflow: "fleet-tick", limit: 1000 });
    expect(new Set(tickRuns.map((r) => (r.trigger as { fireAt?: string }).fireAt)).size).toBe(tickRuns.length);
    expect(tickRuns.length).toBe(fires.length);
  }, 120_000);
});

/** The scheduler process holding the leader lease. */
async function leaderOf(schedulers: ChildProcess[]): Promise<ChildProcess> {
  let found: ChildProcess | undefined;
  await until(
    async () => {
      const owner = await leaseOwner();
      found = schedulers.find((s) => s.pid === pidOf(owner));
      return found !== undefined;
    },
    10_000,
    "the leading scheduler",
  );
  return found!;
}

async function leaseOwner(): Promise<string | undefined> {
  const c = new pg.Client(PG_URL);
  await c.connect();
  try {
    return (await c.query(`SELECT owner FROM "${schema}".leases WHERE name = 'scheduler'`)).rows[0]?.owner;
  } finally {
    await c.end();
  }
}

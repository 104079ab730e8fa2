/**
 * `sluice serve` end to end, as an operator meets it: the built CLI as real processes on a real
 * SQLite home, a workflows directory, a config file with tokens and alert webhooks, real HTTP
 * receivers for the alerts, `sluice emit/apply/rollback/status/resume/worker` as processes.
 *
 * One server (A) carries most of the tests, in order, and is shut down by the last one with
 * SIGTERM; a second (B) runs with --no-worker beside a separate `sluice worker`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers.js";
import { call, killAll, receiver, sleep, sluiceCli, spawnSluice, startServe, waitFor, type Proc } from "./serve-helpers.js";

const ADMIN = "test-admin-token-7f3a9c";
const VIEWER = "test-viewer-token-1b8e44";

const header = (name: string, description = name) =>
  `apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: ${name}\nspec:\n  description: ${description}\n`;

const WORKFLOWS: Record<string, string> = {
  // Event-triggered; the payload reaches the program through an expression in exec env.
  "greeter.yaml": `${header("greeter")}  triggers:
    - event: greet
  steps:
    - name: say
      exec: { command: ["sh", "-c", "echo got $X"], env: { X: "\${{ event.data.k }}" } }
`,
  // Six-field cron: every two seconds.
  "tick.yaml": `${header("tick")}  triggers:
    - schedule: "*/2 * * * * *"
  steps:
    - name: t
      exec: { command: ["true"] }
`,
  "fail-flow.yaml": `${header("fail-flow")}  triggers:
    - manual: {}
  steps:
    - name: boom
      exec: { command: ["false"] }
`,
  "slow.yaml": `${header("slow")}  steps:
    - name: nap
      exec: { command: ["sleep", "1"] }
    - name: after
      dependsOn: [nap]
      exec: { command: ["sh", "-c", "echo after"] }
`,
  // Started by the file watcher's event.
  "on-files.yaml": `${header("on-files")}  triggers:
    - event: bulk_files_available
  steps:
    - name: count
      exec: { command: ["echo", "count=\${{ event.data.count }}"] }
`,
};

/** `added`, valid (v1 and v2 differ by their description) and invalid (a misspelt field at 10:7). */
const addedValid = (d: string) => `${header("added", d)}  steps:\n    - name: one\n      exec: { command: ["true"] }\n`;
const ADDED_INVALID = `${header("added", "broken")}  steps:\n    - name: one\n      exec: { command: ["true"] }\n      timout: 5m\n`;

let root: string;
let wfDir: string;
let watchDir: string;
let cliEnv: Record<string, string>;
let a: Proc & { url: string };
let b: Proc & { url: string };
let homeB: string;
let jsonHook: Awaited<ReturnType<typeof receiver>>;
let slackHook: Awaited<ReturnType<typeof receiver>>;
const extra: Proc[] = [];

const api = (method: string, path: string, o: { json?: unknown; yaml?: string; token?: string | null } = {}) =>
  call(a.url, method, path, { ...o, token: o.token === null ? undefined : (o.token ?? ADMIN) });
const cli = (args: string[], env: Record<string, string> = {}) => sluiceCli(args, { cwd: root, env: { ...cliEnv, ...env } });
const runDetail = async (id: string) => (await api("GET", `/api/v1/runs/${id}`)).json;
const runsOf = async (workflow: string) => (await api("GET", `/api/v1/runs?workflow=${workflow}&limit=100`)).json.runs as any[];
const ended = (r: any) => ["succeeded", "failed", "cancelled"].includes(r?.status);

beforeAll(async () => {
  root = tempDir("sluice-serve-");
  wfDir = join(root, "workflows");
  watchDir = join(root, "incoming");
  mkdirSync(wfDir);
  mkdirSync(watchDir);
  for (const [f, text] of Object.entries(WORKFLOWS)) writeFileSync(join(wfDir, f), text);
  [jsonHook, slackHook] = await Promise.all([receiver(), receiver()]);
  const config = join(root, "sluice-server.yaml");
  writeFileSync(
    config,
    `auth:
  tokens:
    - { name: ops-admin, token: "env:TEST_ADMIN_TOKEN", role: admin }
    - { name: dashboard, token: "env:TEST_VIEWER_TOKEN", role: viewer }
alerts:
  - { name: json-hook, url: "${jsonHook.url}", format: json, on: [run_failed] }
  - { name: slack-hook, url: "${slackHook.url}", format: slack, on: [run_failed] }
`,
  );
  const home = join(root, "home-a");
  cliEnv = { SLUICE_HOME: home, SLUICE_TOKEN: ADMIN };
  homeB = join(root, "home-b");
  const wfDirB = join(root, "workflows-b");
  mkdirSync(wfDirB);
  writeFileSync(join(wfDirB, "quick.yaml"), `${header("quick")}  steps:\n    - name: q\n      exec: { command: ["sh", "-c", "echo quick"] }\n`);

  [a, b] = await Promise.all([
    startServe(["--workflows", wfDir, "--config", config, "--watch", watchDir, "--grace", "10"], {
      cwd: root,
      env: {
        SLUICE_HOME: home,
        TEST_ADMIN_TOKEN: ADMIN,
        TEST_VIEWER_TOKEN: VIEWER,
        SLUICE_WATCH_INTERVAL_MS: "150",
        SLUICE_WATCH_STABLE_MS: "300",
      },
    }),
    startServe(["--workflows", wfDirB, "--no-worker"], { cwd: root, env: { SLUICE_HOME: homeB } }),
  ]);
}, 30_000);

afterAll(async () => {
  await Promise.all([a, b, ...extra].filter(Boolean).map((p) => p.stop("SIGTERM", 5_000)));
  killAll();
  await Promise.all([jsonHook?.close(), slackHook?.close()]);
  rmSync(root, { recursive: true, force: true });
});

describe("sluice serve (one server, real processes)", () => {
  it("answers health, readiness, the workflow list, the OpenAPI document and Prometheus metrics", async () => {
    expect((await call(a.url, "GET", "/healthz")).status).toBe(200);
    expect((await call(a.url, "GET", "/readyz")).status).toBe(200);
    const list = await api("GET", "/api/v1/workflows");
    expect(list.status).toBe(200);
    expect((list.json.workflows as any[]).map((w) => w.name).sort()).toEqual(["fail-flow", "greeter", "on-files", "slow", "tick"]);
    for (const w of list.json.workflows) expect(w).toMatchObject({ version: 1, source: join(wfDir, `${w.name}.yaml`) });
    const doc = await call(a.url, "GET", "/api/v1/openapi.json"); // public, no token
    expect(doc.status).toBe(200);
    expect(doc.json.openapi).toBe("3.1.0");
    expect(Object.keys(doc.json.paths)).toEqual(expect.arrayContaining(["/api/v1/workflows", "/api/v1/runs", "/api/v1/events"]));
    const metrics = await call(a.url, "GET", "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/^# HELP sluice_runs /m);
    expect(metrics.text).toMatch(/^# TYPE sluice_runs gauge/m);
  });

  it("sluice emit starts the workflow triggered by the event, with the payload in the run", async () => {
    const r = await cli(["emit", "greet", "--data", '{"k":"v-42"}', "--server", a.url]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const m = /^event greet recorded as (e-\S+); started 1 run: (r-\S+)$/m.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const [, eventId, runId] = m!;
    const run = await waitFor("the greeter run to end", async () => {
      const d = await runDetail(runId!);
      return ended(d) && d;
    });
    expect(run).toMatchObject({ workflow: "greeter", status: "succeeded", trigger: { type: "event", name: "greet", eventId, data: { k: "v-42" } } });
    expect(run.steps[0]).toMatchObject({ name: "say", status: "succeeded", outputs: { exitCode: 0, stdout: "got v-42" } });
    // What the attempt consumed: in the run, and in the server's histograms.
    expect(run.steps[0].attempts[0].usage).toMatchObject({ scope: "process-tree", cpuMs: expect.any(Number), writtenBytes: expect.any(Number) });
    const metrics = (await call(a.url, "GET", "/metrics")).text.split("\n");
    const series = (name: string, ...labels: string[]) =>
      metrics.filter((l) => l.startsWith(`${name}{`) && ['workflow="greeter"', 'step="say"', 'scope="process-tree"', ...labels].every((x) => l.includes(x)));
    expect(series("sluice_step_cpu_seconds_count").map((l) => Number(l.split(" ").at(-1)))).toEqual([1]);
    expect(series("sluice_step_io_bytes_count", 'direction="write"').map((l) => Number(l.split(" ").at(-1)))).toEqual([1]);
    expect(series("sluice_step_io_bytes_count", 'direction="read"')).toHaveLength(1);
    const ev = await api("GET", `/api/v1/events/${eventId}`);
    expect(ev.status).toBe(200);
    expect(ev.json).toMatchObject({ id: eventId, name: "greet", data: { k: "v-42" }, source: "api", runIds: [runId] });
  });

  it("follows the directory: a new file is applied, an invalid overwrite is refused; apply and rollback through the server", async () => {
    const file = join(wfDir, "added.yaml");
    writeFileSync(file, addedValid("first"));
    const v1 = await waitFor(
      "added to be listed",
      async () => {
        const w = (await api("GET", "/api/v1/workflows")).json.workflows.find((x: any) => x.name === "added");
        return w;
      },
      8_000,
    );
    expect(v1).toMatchObject({ version: 1, description: "first", source: file });

    writeFileSync(file, ADDED_INVALID);
    // The refusal is logged with the file's position of the problem; the running version stays.
    await waitFor("the refusal on stderr", () => a.stderr().includes(`${file}:10:7: unknown field \\"timout\\"`), 8_000);
    expect(a.stderr()).toMatch(/workflow file refused; the previous version stays current/);
    const still = await api("GET", "/api/v1/workflows/added");
    expect(still.json).toMatchObject({ version: 1, description: "first" });

    const bad = join(root, "added-bad.yaml");
    writeFileSync(bad, ADDED_INVALID);
    const refused = await cli(["apply", bad, "--server", a.url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${bad}:10:7: unknown field "timout" in spec.steps[0]; did you mean "timeout"?`);
    expect(refused.stderr).toContain(`${bad} is not a valid workflow (1 problem above); nothing was applied`);
    expect((await api("GET", "/api/v1/workflows/added")).json.version).toBe(1);

    const good = join(root, "added-v2.yaml");
    writeFileSync(good, addedValid("second"));
    const applied = await cli(["apply", good, "--server", a.url]);
    expect(applied.stderr).toBe("");
    expect(applied.code).toBe(0);
    expect(applied.stdout).toBe("workflow added applied as version 2 (through the server)\n");
    expect((await api("GET", "/api/v1/workflows/added")).json).toMatchObject({ version: 2, description: "second" });

    const back = await cli(["rollback", "added", "--server", a.url]);
    expect(back.code).toBe(0);
    expect(back.stdout).toBe("workflow added is at version 1 again\n");
    expect((await api("GET", "/api/v1/workflows/added")).json).toMatchObject({ version: 1, description: "first" });
    const versions = (await api("GET", "/api/v1/workflows/added/versions")).json.versions as any[];
    expect(versions.map((v) => [v.version, v.current])).toEqual([
      [2, false],
      [1, true],
    ]);
  });

  it("sends run_failed alerts to a JSON and a Slack webhook for a run started through the API", async () => {
    const started = await api("POST", "/api/v1/workflows/fail-flow/runs", { json: {} });
    expect(started.status).toBe(201);
    const id = started.json.id as string;
    const j = await waitFor("the JSON alert", () => jsonHook.bodies.find((x) => x.runId === id), 8_000);
    expect(j).toMatchObject({
      kind: "run_failed",
      workflow: "fail-flow",
      runId: id,
      status: "failed",
      error: { code: "EXEC_FAILED" },
      link: `${a.url}/api/v1/runs/${id}`,
    });
    expect(j.message).toContain(`run ${id} of fail-flow failed`);
    const s = await waitFor("the Slack alert", () => slackHook.bodies.find((x) => typeof x.text === "string" && x.text.includes(id)), 8_000);
    expect(s.text).toMatch(/^:x: Run failed: run r-\S+ of fail-flow failed/);
    expect(JSON.stringify(s.blocks)).toContain("`fail-flow`");
    expect((await runDetail(id)).status).toBe("failed");
    // Once per run and target.
    expect(jsonHook.bodies.filter((x) => x.runId === id)).toHaveLength(1);
  });

  it("checks bearer tokens and roles: 401 without, viewer reads but may not emit or apply, admin applies", async () => {
    expect((await call(a.url, "GET", "/healthz")).status).toBe(200);
    const none = await api("GET", "/api/v1/workflows", { token: null });
    expect(none.status).toBe(401);
    expect(none.json.error.code).toBe("UNAUTHENTICATED");
    expect((await api("GET", "/api/v1/workflows", { token: "not-a-token" })).status).toBe(401);
    expect((await api("GET", "/api/v1/runs", { token: VIEWER })).status).toBe(200);
    const emit = await api("POST", "/api/v1/events", { token: VIEWER, json: { name: "greet", data: { k: "no" } } });
    expect(emit.status).toBe(403);
    expect(emit.json.error.code).toBe("FORBIDDEN");
    const yaml = addedValid("by admin").replace("name: added", "name: admin-made");
    expect((await api("POST", "/api/v1/workflows", { token: VIEWER, yaml })).status).toBe(403);
    const ok = await api("POST", "/api/v1/workflows", { token: ADMIN, yaml });
    expect(ok.status).toBe(201);
    expect(ok.json.applied).toEqual([{ name: "admin-made", version: 1, created: true, source: null }]);
    // The CLI without a token is refused too, with the server's sentence.
    const r = await cli(["emit", "greet", "--server", a.url], { SLUICE_TOKEN: "" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("this API needs a bearer token");
  });

  it("fires a six-field cron schedule every two seconds, each fire once", async () => {
    const runs = await waitFor(
      "two scheduled runs",
      async () => {
        const rs = (await runsOf("tick")).filter((r) => r.trigger?.type === "schedule");
        return rs.length >= 2 && rs;
      },
      8_000,
    );
    const fires = runs.map((r) => r.trigger.fireAt as string);
    expect(new Set(fires).size).toBe(fires.length); // no fire started twice
    for (const f of fires) expect(Date.parse(f) % 2000).toBe(0);
    for (const r of runs) expect(r.trigger.name).toBe("*/2 * * * * *");
    // Removing the file retires the workflow: its schedule stops.
    unlinkSync(join(wfDir, "tick.yaml"));
    await waitFor("tick to be retired", async () => !(await api("GET", "/api/v1/workflows")).json.workflows.some((w: any) => w.name === "tick"), 8_000);
    await sleep(300); // a fire decided just before the retirement may still land
    const after = (await runsOf("tick")).length;
    await sleep(2_200);
    expect((await runsOf("tick")).length).toBe(after);
  });

  it("--watch: a file dropped into the watched directory starts one run of the bulk_files_available workflow", async () => {
    writeFileSync(join(watchDir, "trades-1.csv"), "id,qty\n1,5\n");
    const run = await waitFor(
      "the on-files run to end",
      async () => {
        const rs = await runsOf("on-files");
        return rs.length > 0 && ended(rs[0]) && rs[0];
      },
      8_000,
    );
    expect(run).toMatchObject({ status: "succeeded", trigger: { type: "event", name: "bulk_files_available" } });
    expect((await runDetail(run.id)).steps[0].outputs).toMatchObject({ stdout: "count=1" });
    await sleep(700); // several more scans: the same file is not announced again
    expect(await runsOf("on-files")).toHaveLength(1);
    const events = (await api("GET", "/api/v1/events?name=bulk_files_available")).json.events as any[];
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ source: "file-watcher", runIds: [run.id], data: { directory: watchDir, count: 1 } });
    expect(events[0].data.files[0].path).toBe(join(watchDir, "trades-1.csv"));
  });

  it("SIGTERM lets the running step finish, exits 0 and leaves the run resumable", async () => {
    const started = await api("POST", "/api/v1/workflows/slow/runs", { json: {} });
    expect(started.status).toBe(201);
    const id = started.json.id as string;
    await waitFor(
      "the nap step to run",
      async () => (await runDetail(id)).steps.find((s: any) => s.name === "nap")?.attempts[0]?.status === "running",
      8_000,
      50,
    );
    const t0 = Date.now();
    const code = await a.stop("SIGTERM", 15_000);
    expect(code).toBe(0);
    expect(a.stderr()).toContain("shutting down: no new work; running attempts may finish");
    expect(Date.now() - t0).toBeLessThan(8_000);

    const st = await cli(["status", id, "--json"]);
    expect(st.code).toBe(0);
    const run = JSON.parse(st.stdout);
    expect(run.status).not.toBe("failed");
    expect(["pending", "running"]).toContain(run.status);
    const nap = run.steps.find((s: any) => s.name === "nap");
    expect(nap).toMatchObject({ status: "succeeded", attempts: [{ n: 1, status: "succeeded" }] });
    expect(Date.parse(nap.attempts[0].endedAt)).toBeGreaterThan(t0); // it finished after the signal, not cut short
    expect(run.steps.find((s: any) => s.name === "after")).toMatchObject({ status: "pending", attempts: [] });

    const resumed = await cli(["resume", id, "--json"]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const done = JSON.parse(resumed.stdout);
    expect(done.status).toBe("succeeded");
    expect(done.steps.find((s: any) => s.name === "nap").attempts).toHaveLength(1); // not run again
    expect(done.steps.find((s: any) => s.name === "after")).toMatchObject({ status: "succeeded", outputs: { stdout: "after" } });
  });
});

describe("sluice serve --no-worker with a separate sluice worker", () => {
  it("queues runs until a worker on the same home executes them; SIGTERM stops both with exit 0", async () => {
    const started = await call(b.url, "POST", "/api/v1/workflows/quick/runs", { json: {} });
    expect(started.status).toBe(201);
    const id = started.json.id as string;
    expect(started.json.status).toBe("pending");
    await sleep(1_200);
    expect((await call(b.url, "GET", `/api/v1/runs/${id}`)).json.status).toBe("pending");

    const worker = spawnSluice(["worker", "--grace", "5"], { cwd: root, env: { SLUICE_HOME: homeB } });
    extra.push(worker);
    const run = await waitFor(
      "the worker to execute the run",
      async () => {
        const d = (await call(b.url, "GET", `/api/v1/runs/${id}`)).json;
        return ended(d) && d;
      },
      10_000,
    );
    expect(run.status).toBe("succeeded");
    expect(run.steps[0].outputs).toMatchObject({ stdout: "quick" });
    expect(worker.stderr()).toMatch(/sluice: worker \S+ started on the sqlite store/);
    expect(await worker.stop("SIGTERM")).toBe(0);
    expect(await b.stop("SIGTERM")).toBe(0);
  });
});

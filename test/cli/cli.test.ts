/**
 * The CLI as a user meets it: real processes, a real SQLite store, exit codes and output text.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { tempDir, workflow } from "../helpers.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import { createRun } from "../../src/engine/index.js";
import { BIN, FIXTURE_ACTIONS, ROOT, sluice, sluiceAsync, waitForStderr } from "./cli-helpers.js";
import { call, killAll, spawnSluice, startServe, waitFor } from "./serve-helpers.js";
import { jsonLinesOf } from "./json-lines.js";

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
    const files = ["standard-ingestion", "bulk-file", "realtime-stream", "resilient-fetch", "secure-api"].map((n) =>
      join(ROOT, "workflows", `base-data-ingestion-workflow-${n}.yaml`),
    );
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
    const wf = write(
      "ok.yaml",
      `${header("ok-flow")}  params:\n    who: { type: string, default: world }\n  steps:
    - name: hello
      exec: { command: [sh, -c, 'echo "hello $1"', sh, "\${{ params.who }}"] }
    - name: after
      dependsOn: [hello]
      exec: { command: [echo, "\${{ steps.hello.outputs.stdout }}!"] }
`,
    );
    const r = sluice(["run", wf, "--param", "who=sluice", "--json"], { cwd });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/run r-[a-z0-9]+-[0-9a-f]+ created/);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc)).toEqual(expect.arrayContaining(["id", "workflow", "status", "startedAt", "endedAt", "params", "steps"]));
    expect(doc).toMatchObject({ workflow: "ok-flow", status: "succeeded", params: { who: "sluice" } });
    expect(doc.steps).toEqual([
      expect.objectContaining({
        name: "hello",
        status: "succeeded",
        outputs: { exitCode: 0, stdout: "hello sluice" },
        attempts: [expect.objectContaining({ n: 1, status: "succeeded", startedAt: expect.any(String), endedAt: expect.any(String), error: null })],
      }),
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
    const wf = write(
      "p.yaml",
      `${header("p-flow")}  params:\n    count: { type: integer, default: 1 }\n  steps:\n    - name: x\n      exec: { command: ["true"] }\n`,
    );
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
    const schema = write(
      "schema.yaml",
      "columns:\n  - { name: id, type: string }\n  - { name: at, from: when, type: timestamp }\n  - { name: amount, type: decimal, scale: 2 }\n",
    );
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
    const wf = write(
      "durable.yaml",
      `${header("durable")}  steps:
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
`,
    );
    const env = { SLUICE_ACTIONS: FIXTURE_ACTIONS }; // the default 15 s lease: it must not be waited for
    const child = sluiceAsync(["run", wf], { cwd, env });
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/)) as RegExpMatchArray;
    await waitForStderr(child, /step slow started/);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));

    // Its lease has not expired yet, but its process is gone from this host: taken over at once
    // (test/cli/resume.test.ts has the takeover and the live-owner cases on both stores).
    const r = sluice(["resume", runId!, "--json"], { cwd, env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`(pid ${child.pid}) is gone`);
    const doc = JSON.parse(r.stdout);
    expect(doc.status).toBe("succeeded");
    const attempts = Object.fromEntries(
      doc.steps.map((s: { name: string; attempts: { n: number; status: string }[] }) => [s.name, s.attempts.map((a) => `${a.n}:${a.status}`)]),
    );
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

// ---------------------------------------------------------------------------------------------
// What `sluice run` shows: on a real pseudo-terminal (util-linux `script`), with and without a
// size, in plain lines and in JSON lines.

/**
 * A user's actions module: a conversion of `rows` rows that reports progress as the built-in ones
 * do, per batch. The engine lets one progress event through per 200 ms, so the last one anybody
 * sees says 220,000 while the step goes on to convert all 300,000.
 */
const progressActions = (dir: string) => {
  const file = join(dir, "progress-actions.mjs");
  writeFileSync(
    file,
    `import { z } from ${JSON.stringify(pathToFileURL(join(ROOT, "node_modules", "zod", "index.js")).href)};
export const actions = [{
  kind: "agent", owner: "fixture", action: "convert", description: "Convert rows, reporting progress per batch.",
  input: z.object({ rows: z.number().int() }).strict(),
  async run({ rows }, ctx) {
    for (let n = 220_000; n <= rows; n += 20_000) ctx.progress({ rows: n });
    await new Promise((r) => setTimeout(r, 300));
    return { rowsIn: rows, rowsOut: rows - 7, rowsQuarantined: 7, columns: 9 };
  },
}];
`,
  );
  return file;
};

const hasScript = spawnSync("script", ["--version"], { encoding: "utf8" }).status === 0;

/** `node bin/sluice.js ARGS` on a pseudo-terminal of the given size (none: 0 × 0, as `script` without one). */
function onTerminal(args: string[], o: { cwd: string; size?: { cols: number; rows: number }; env?: Record<string, string> }): { code: number; out: string } {
  const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const stty = o.size ? `stty cols ${o.size.cols} rows ${o.size.rows}; ` : "";
  const env: Record<string, string | undefined> = { ...process.env, SLUICE_HOME: join(o.cwd, ".sluice"), ...o.env };
  delete env.CI; // a terminal, not a CI log
  delete env.SLUICE_LOG_FORMAT;
  const r = spawnSync("script", ["-qfec", `${stty}exec ${quote(process.execPath)} ${quote(BIN)} ${args.map(quote).join(" ")}`, "/dev/null"], {
    cwd: o.cwd,
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 60_000,
  });
  return { code: r.status ?? -1, out: r.stdout.replace(/\r/g, "") };
}

// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
/** What stays on screen of the live table: the text after log-update's last erase. */
const lastFrame = (out: string) => stripAnsi(out.slice(out.lastIndexOf("\x1b[2K\x1b[G")));
const TIME = String.raw`\d\d:\d\d:\d\d\.\d{3}`;

describe.skipIf(!hasScript)("sluice run on a terminal", () => {
  // The README's example as a new user runs it: its relative paths resolve in a folder of its own.
  let hello: string;
  beforeAll(() => {
    hello = tempDir("sluice-hello-");
    symlinkSync(join(ROOT, "bin"), join(hello, "bin"));
    symlinkSync(join(ROOT, "examples"), join(hello, "examples"));
  });
  afterAll(() => rmSync(hello, { recursive: true, force: true }));
  const STEPS = ["check-source", "to-parquet", "to-ndjson", "checksum", "summary"];

  it("of unknown size (0 × 0) shows plain timestamped lines instead of nothing", () => {
    const r = onTerminal(["run", "examples/hello-pipeline.yaml"], { cwd: hello });
    expect(r.code, r.out).toBe(0);
    const out = stripAnsi(r.out);
    expect(out).toMatch(new RegExp(`^${TIME} run r-[a-z0-9]+-[0-9a-f]+ started: hello-pipeline, 5 steps$`, "m"));
    for (const s of STEPS) expect(out).toMatch(new RegExp(`^${TIME} step ${s} succeeded \\(attempt 1, [^)]+\\)$`, "m"));
    expect(out).toMatch(new RegExp(`^${TIME} run r-\\S+ succeeded$`, "m"));
  });

  it("too small for the table (5 rows for 7 lines) shows plain lines too", () => {
    const r = onTerminal(["run", "examples/hello-pipeline.yaml"], { cwd: hello, size: { cols: 100, rows: 5 } });
    expect(r.code, r.out).toBe(0);
    for (const s of STEPS) expect(stripAnsi(r.out)).toMatch(new RegExp(`^${TIME} step ${s} succeeded `, "m"));
  });

  it("with room shows the live table, and leaves its final frame on screen", () => {
    const r = onTerminal(["run", "examples/hello-pipeline.yaml"], { cwd: hello, size: { cols: 100, rows: 30 } });
    expect(r.code, r.out).toBe(0);
    const frame = lastFrame(r.out);
    expect(frame).toMatch(/^hello-pipeline r-\S+ {2}\S+$/m);
    for (const s of STEPS) expect(frame).toMatch(new RegExp(`^  ✔ ${s} +succeeded +\\S+$`, "m"));
    expect(frame).toMatch(/^run succeeded$/m);
    expect(stripAnsi(r.out)).not.toMatch(new RegExp(`^${TIME} step `, "m"));
  });

  it("a finished step keeps its final figures, not the last throttled progress", () => {
    const dir = tempDir("sluice-figures-");
    const wf = join(dir, "convert.yaml");
    writeFileSync(wf, `${header("convert-300k")}  steps:\n    - name: convert\n      agent: fixture\n      action: convert\n      with: { rows: 300000 }\n`);
    const env = { SLUICE_ACTIONS: progressActions(dir) };
    const tty = onTerminal(["run", wf], { cwd: dir, size: { cols: 120, rows: 30 }, env });
    expect(tty.code, tty.out).toBe(0);
    // While it ran, the table showed the last progress event the engine let through …
    expect(stripAnsi(tty.out)).toContain("220,000 rows");
    // … and the frame that stays shows what the step did.
    const row = lastFrame(tty.out)
      .split("\n")
      .find((l) => l.includes(" convert "));
    expect(row).toMatch(/^ {2}✔ convert +succeeded +\S+ {2}299,993 rows · 7 quarantined$/);

    const plain = sluice(["run", wf], { cwd: dir, env });
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toMatch(new RegExp(`^${TIME} step convert succeeded \\(attempt 1, [^)]+\\): 299,993 rows · 7 quarantined$`, "m"));
    rmSync(dir, { recursive: true, force: true });
  });
});

describe("JSON lines carry each key once", () => {
  afterAll(() => killAll());

  it("SLUICE_LOG_FORMAT=json sluice run: every event's line", () => {
    const dir = tempDir("sluice-json-run-");
    const wf = join(dir, "json.yaml");
    writeFileSync(
      wf,
      `${header("json-lines")}  steps:
    - name: convert
      agent: fixture
      action: convert
      with: { rows: 300000 }
    - name: flaky
      exec: { command: ["false"] }
      retry: { limit: 1, backoff: { initial: 10ms, factor: 1, max: 10ms } }
    - name: after
      dependsOn: [convert, flaky]
      exec: { command: ["true"] }
`,
    );
    const r = sluice(["run", wf], { cwd: dir, env: { SLUICE_ACTIONS: progressActions(dir), SLUICE_LOG_FORMAT: "json" } });
    expect(r.code).toBe(1);
    const lines = jsonLinesOf(r.stderr);
    for (const l of lines) expect(l.dups, l.line).toEqual([]);
    expect(lines.map((l) => l.doc.event)).toEqual(
      expect.arrayContaining(["run-started", "step-started", "step-progress", "step-ended", "steps-settled", "run-ended"]),
    );
    expect(lines.find((l) => l.doc.event === "step-progress")!.doc).toMatchObject({ service: "sluice", step: "convert", progress: { rows: 220_000 } });
    expect(lines.find((l) => l.doc.event === "run-ended")!.doc).toMatchObject({ level: 50, status: "failed", msg: "run-ended" });
    rmSync(dir, { recursive: true, force: true });
  });

  it("sluice worker: its own lines and those of the runs it executes; owner is the worker's", async () => {
    const home = join(tempDir("sluice-json-worker-"), ".sluice");
    mkdirSync(home, { recursive: true });
    const store = openSqliteStore(join(home, "sluice.db"));
    const run = await createRun(store, { workflow: workflow({ steps: [{ name: "boom", exec: { command: ["false"] } }] }, undefined, "json-worker") });
    await store.close();
    const worker = spawnSluice(["worker", "--grace", "2"], { cwd: ROOT, env: { SLUICE_HOME: home } });
    await waitFor("the run's end to be logged", () => jsonLinesOf(worker.stderr()).some((l) => l.doc.msg === "run ended"), 20_000);
    expect(await worker.stop("SIGTERM")).toBe(0);
    const owner = /sluice: worker (\S+) started/.exec(worker.stderr())![1];
    const lines = jsonLinesOf(worker.stderr());
    for (const l of lines) expect(l.dups, l.line).toEqual([]);
    expect(lines.map((l) => l.doc.msg)).toEqual(
      expect.arrayContaining(["worker started", "run started", "step attempt did not succeed", "run ended", "stopped"]),
    );
    for (const l of lines) expect(l.doc).toMatchObject({ service: "sluice", role: "worker", owner });
    expect(lines.find((l) => l.doc.msg === "run ended")!.doc).toMatchObject({ runId: run.id, status: "failed" });
    rmSync(join(home, ".."), { recursive: true, force: true });
  });

  it("sluice serve: the scheduler's, the API's and its own lines", async () => {
    const root = tempDir("sluice-json-serve-");
    const wfDir = join(root, "workflows");
    mkdirSync(wfDir);
    writeFileSync(join(wfDir, "hi.yaml"), `${header("hi")}  triggers:\n    - manual: {}\n  steps:\n    - name: say\n      exec: { command: ["true"] }\n`);
    const srv = await startServe(["--workflows", wfDir], { cwd: root, env: { SLUICE_HOME: join(root, ".sluice") } });
    await waitFor("the scheduler to lead", () => jsonLinesOf(srv.stderr()).some((l) => l.doc.msg === "scheduler: leading"), 20_000);
    expect((await call(srv.url, "GET", "/api/v1/workflows")).status).toBe(200);
    await waitFor("the request line", () => jsonLinesOf(srv.stderr()).some((l) => l.doc.msg === "request"));
    expect(await srv.stop("SIGTERM")).toBe(0);
    const lines = jsonLinesOf(srv.stderr());
    for (const l of lines) expect(l.dups, l.line).toEqual([]);
    const owner = lines.find((l) => l.doc.msg === "scheduler: leading")!.doc.owner;
    expect(owner).toMatch(/\S+:\d+:/);
    for (const l of lines) expect(l.doc).toMatchObject({ service: "sluice", role: "serve", owner });
    rmSync(root, { recursive: true, force: true });
  });
});

/**
 * What `sluice run` shows as a run moves, rendered into a stand-in terminal: the final frame
 * keeps each step's final figures (from real engine runs of the standard workflow on a
 * 300,000-row trades file as well as from hand-made events), the table gives way to plain lines
 * when the terminal's size is unknown or too small, and JSON lines carry every key once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { createRun, executeRun, type EngineEvent } from "../../src/engine/index.js";
import { loadWorkflowFile } from "../../src/spec/load.js";
import { writeTradesCsv } from "../../src/samples/trades.js";
import type { Workflow } from "../../src/spec/schema.js";
import { applyEvent, chooseProgressMode, createProgress, describeFinal, fitsTerminal, newRunView, renderTable, type Terminal } from "../../src/cli/progress.js";
import { jsonLogger } from "../../src/cli/json-log.js";
import { scratch, testEnv, type TestEnv } from "../helpers.js";
import { ROOT } from "./cli-helpers.js";
import { duplicateKeys } from "./json-lines.js";

// eslint-disable-next-line no-control-regex
const strip = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");

/** A terminal that keeps what is written to it; `columns`/`rows` as a test sets them. */
function terminal(columns: number | undefined, rows: number | undefined, isTTY = true): Terminal & { text: string; lastFrame(): string } {
  const t = {
    isTTY,
    columns,
    rows,
    text: "",
    write(s: string) {
      t.text += s;
      return true;
    },
    /** What stays on screen of the table: the text after log-update's last erase. */
    lastFrame() {
      const i = t.text.lastIndexOf("\x1b[2K\x1b[G");
      return strip(i < 0 ? t.text : t.text.slice(i));
    },
  };
  return t;
}

const lineOf = (text: string, step: string) => text.split("\n").find((l) => new RegExp(`\\s${step}\\s`).test(l)) ?? "";

// Hand-made events with the timings the brief describes: the last progress event a 300,000-row
// conversion got through the throttle said 220,000; its outputs say what it did.
const T0 = 1_800_000_000_000;
const events: EngineEvent[] = [
  { type: "run-started", runId: "r-1", workflow: "standard-ingestion", steps: ["format-conversion", "data-storage"], resumed: false },
  { type: "step-started", runId: "r-1", workflow: "standard-ingestion", step: "format-conversion", attempt: 1, at: T0 },
  { type: "step-progress", runId: "r-1", step: "format-conversion", attempt: 1, elapsedMs: 1_600, progress: { rows: 220_000, files: 1, totalFiles: 1 } },
  {
    type: "step-ended",
    runId: "r-1",
    workflow: "standard-ingestion",
    step: "format-conversion",
    attempt: 1,
    status: "succeeded",
    error: null,
    retryInMs: null,
    durationMs: 2_000,
    outputs: { rowsIn: 300_000, rowsOut: 299_988, rowsQuarantined: 12, rowsRejectedHere: 12, columns: 9 },
  },
  { type: "step-started", runId: "r-1", workflow: "standard-ingestion", step: "data-storage", attempt: 1, at: T0 + 2_000 },
  { type: "step-progress", runId: "r-1", step: "data-storage", attempt: 1, elapsedMs: 900, progress: { rows: 180_000 } },
  {
    type: "step-ended",
    runId: "r-1",
    workflow: "standard-ingestion",
    step: "data-storage",
    attempt: 1,
    status: "succeeded",
    error: null,
    retryInMs: null,
    durationMs: 1_500,
    outputs: { rowsIn: 300_000, rowsStored: 299_988, rowsQuarantined: 12, rowsDuplicate: 0, balanced: true },
  },
  { type: "run-ended", runId: "r-1", workflow: "standard-ingestion", status: "succeeded", error: null, trigger: null, startedAt: null, endedAt: "" },
];

describe("a finished step's figures", () => {
  it("come from its outputs, not from the last progress event the throttle let through", () => {
    const last = { update: { rows: 220_000, files: 1, totalFiles: 1 }, elapsedMs: 1_600 };
    expect(describeFinal(last, { rowsIn: 300_000, rowsOut: 299_988, rowsQuarantined: 12 }, 2_000)).toBe(
      "299,988 rows · 12 quarantined · 149,994 rows/s · 1/1 files",
    );
    // A store: its stored rows, and the duplicates it did not write again count as its work.
    expect(
      describeFinal({ update: { rows: 51_809 }, elapsedMs: 400 }, { rowsIn: 300_000, rowsStored: 0, rowsQuarantined: 3_000, rowsDuplicate: 297_000 }, 2_000),
    ).toBe("0 rows stored · 3,000 quarantined · 297,000 duplicate · 148,500 rows/s");
    // A fan-out over files: the files that succeeded and failed, bytes over the whole step.
    expect(
      describeFinal(
        { update: { rows: 10, bytes: 1e6, totalBytes: 4e6, files: 1, totalFiles: 4 }, elapsedMs: 500 },
        { rowsIn: 40, rowsOut: 30, rowsQuarantined: 10, files: 3, filesFailed: 1, bytes: 4e6 },
        2_000,
      ),
    ).toBe("30 rows · 10 quarantined · 3 files · 1 failed · 2.0 MB/s");
  });

  it("fall back to the last progress event for what the outputs do not say, without an ETA", () => {
    expect(describeFinal({ update: { files: 3, totalFiles: 4, bytes: 3e6, totalBytes: 4e6 }, elapsedMs: 1_500 }, { exitCode: 0, stdout: "" }, 2_000)).toBe(
      "3/4 files · 2.0 MB/s",
    );
    expect(describeFinal(undefined, { exitCode: 0, stdout: "done" }, 10)).toBe("");
    expect(describeFinal(undefined, null, 10)).toBe("");
    // A rate only where the step reported that quantity as it went (a source check's size is not a rate).
    expect(describeFinal(undefined, { files: 1, bytes: 29_630_000 }, 16)).toBe("1 file");
  });

  it("of a continuous group are its final statistics, shown once for the group", () => {
    const stats = {
      source: "nats trades",
      batches: 10,
      records: 5_000,
      stored: 4_990,
      duplicate: 0,
      deadLettered: 10,
      ratePerSec: 0,
      lag: 0,
      endToEndMs: null,
      stageMs: {},
      endToEndMsOverall: { p50: 3, p99: 9 },
      uptimeMs: 10_000,
    };
    const v = newRunView(T0);
    applyEvent(v, { type: "run-started", runId: "r", workflow: "rt", steps: ["connect", "process", "store"], resumed: false });
    for (const s of ["connect", "process", "store"]) applyEvent(v, { type: "step-started", runId: "r", workflow: "rt", step: s, attempt: 1, at: T0 });
    applyEvent(v, {
      type: "stream-stats",
      runId: "r",
      workflow: "rt",
      steps: ["connect", "process", "store"],
      stats: { ...stats, records: 4_000, stored: 3_990 } as never,
    });
    for (const s of ["connect", "process", "store"])
      applyEvent(v, {
        type: "step-ended",
        runId: "r",
        workflow: "rt",
        step: s,
        attempt: 1,
        status: "succeeded",
        error: null,
        retryInMs: null,
        durationMs: 10_000,
        outputs: stats,
      });
    const text = renderTable(v, T0 + 10_000).map(strip);
    expect(lineOf(text.join("\n"), "connect")).toContain("5,000 records (4990 stored, 10 dead-lettered), 0/s, lag 0, end-to-end p50 3 ms p99 9 ms");
    expect(lineOf(text.join("\n"), "process")).not.toContain("records");
    expect(lineOf(text.join("\n"), "store")).not.toContain("records");
  });
});

describe("the live table", () => {
  it("folds a fan-out's items into its parent's row: counts, not a line per item", () => {
    const v = newRunView(T0);
    const base = { runId: "r-1", workflow: "w" };
    applyEvent(v, { type: "run-started", runId: "r-1", workflow: "w", steps: ["load", "after"], resumed: false });
    applyEvent(v, { type: "step-started", ...base, step: "load", attempt: 0, at: T0, items: 3 });
    for (const i of [0, 1, 2]) applyEvent(v, { type: "step-started", ...base, step: `load[${i}]`, attempt: 1, at: T0 + 10 });
    const end = (i: number, status: "succeeded" | "failed") =>
      applyEvent(v, {
        type: "step-ended",
        ...base,
        step: `load[${i}]`,
        attempt: 1,
        status,
        retryInMs: null,
        durationMs: 5,
        outputs: status === "succeeded" ? {} : null,
        error: status === "failed" ? { code: "BAD_INPUT", message: "no" } : null,
      });
    end(0, "succeeded");
    end(1, "failed");
    const text = strip(renderTable(v, T0 + 500).join("\n"));
    expect(text).not.toMatch(/load\[/);
    expect(lineOf(text, "load")).toMatch(/running\s+500ms\s+2\/3 items · 1 failed · 1 running$/);
  });

  it("keeps each finished step's final figures in the frame left on screen", () => {
    const term = terminal(120, 30);
    const p = createProgress("tty", term);
    for (const e of events) p.onEvent(e);
    p.stop();
    const frame = term.lastFrame();
    expect(lineOf(frame, "format-conversion")).toMatch(
      /✔ format-conversion\s+succeeded\s+2\.00s\s+299,988 rows · 12 quarantined · 149,994 rows\/s · 1\/1 files$/,
    );
    expect(lineOf(frame, "data-storage")).toMatch(/data-storage\s+succeeded\s+1\.50s\s+299,988 rows stored · 12 quarantined · 199,992 rows\/s$/);
    expect(frame).not.toContain("220,000");
    expect(frame).toContain("run succeeded");
  });

  it("shows a running step's latest progress, and an attempt's error once it fails", () => {
    const v = newRunView(T0);
    applyEvent(v, events[0]!);
    applyEvent(v, events[1]!);
    applyEvent(v, events[2]!);
    expect(strip(lineOf(renderTable(v, T0 + 1_700).join("\n"), "format-conversion"))).toMatch(
      /running\s+1\.70s\s+220,000 rows · 137,500 rows\/s · 1\/1 files$/,
    );
    applyEvent(v, {
      type: "step-ended",
      runId: "r-1",
      workflow: "standard-ingestion",
      step: "format-conversion",
      attempt: 1,
      status: "failed",
      error: { code: "IO_ERROR", message: "no space left writing part-0001.ndjson" },
      retryInMs: 1_000,
      durationMs: 1_800,
      outputs: null,
    });
    expect(strip(lineOf(renderTable(v, T0 + 2_000).join("\n"), "format-conversion"))).toMatch(
      /↻ format-conversion\s+retrying\s+1\.80s\s+IO_ERROR: no space left writing part-0001\.ndjson$/,
    );
  });

  // A real run: the standard workflow on a 300,000-row trades file (1 % bad rows), events from the engine.
  describe("on a real 300,000-row standard ingestion", () => {
    const dir = scratch();
    let env: TestEnv;
    let wf: Workflow;
    let seen: EngineEvent[];
    let outputs: Record<string, Record<string, unknown>>;
    beforeAll(async () => {
      env = testEnv();
      const loaded = await loadWorkflowFile(join(ROOT, "workflows", "base-data-ingestion-workflow-standard-ingestion.yaml"), { actions: env.actions });
      wf = loaded.workflows[0]!.workflow;
      const data = dir("sluice-progress-");
      const file = join(data, "trades.csv");
      await writeTradesCsv(file, { rows: 300_000, seed: 11, badShare: 0.01 });
      const run = await createRun(env.store, { workflow: wf, params: { source: file, destination: `sqlite:${join(data, "w.db")}` } });
      seen = [];
      const done = await executeRun(run.id, { store: env.store, actions: env.actions, home: env.home, onEvent: (e) => seen.push(e) });
      expect(done.status, JSON.stringify(done.error)).toBe("succeeded");
      outputs = Object.fromEntries(seen.flatMap((e) => (e.type === "step-ended" && e.outputs ? [[e.step, e.outputs]] : [])));
    }, 120_000);
    afterAll(async () => env?.cleanup());

    const fmt = (n: unknown) => Number(n).toLocaleString("en-US");

    it("the final frame shows what each step did, whatever the last progress event said", () => {
      // The engine throttles progress events, so the last one a step sends is often short of its
      // end (the defect was a final frame showing it). Whether it is depends on timing: keep only
      // the events of the first 200,000 rows so the last one is stale in every run.
      const stale = seen.filter((e) => e.type !== "step-progress" || (e.progress.rows ?? 0) < 200_000);
      expect(stale.some((e) => e.type === "step-progress" && e.step === "format-conversion")).toBe(true);
      const term = terminal(160, 30);
      const p = createProgress("tty", term);
      for (const e of stale) p.onEvent(e);
      p.stop();
      const frame = term.lastFrame();
      const conv = outputs["format-conversion"]!;
      const store = outputs["data-storage"]!;
      expect(Number(conv.rowsOut) + Number(conv.rowsQuarantined)).toBe(300_000);
      expect(lineOf(frame, "format-conversion")).toContain(`${fmt(conv.rowsOut)} rows · ${fmt(conv.rowsQuarantined)} quarantined`);
      expect(lineOf(frame, "data-storage")).toContain(`${fmt(store.rowsStored)} rows stored · ${fmt(store.rowsQuarantined)} quarantined`);
    });

    it("plain lines end each step with the same figures", () => {
      const term = terminal(undefined, undefined, false);
      const p = createProgress("plain", term);
      for (const e of seen) p.onEvent(e);
      p.stop();
      const conv = outputs["format-conversion"]!;
      expect(term.text).toMatch(
        new RegExp(
          `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} step format-conversion succeeded \\(attempt 1, [^)]+\\): ${fmt(conv.rowsOut)} rows · ${fmt(conv.rowsQuarantined)} quarantined · 1 file · [\\d.]+ MB/s$`,
          "m",
        ),
      );
      expect(term.text).toMatch(new RegExp(`step data-storage succeeded \\(attempt 1, [^)]+\\): ${fmt(outputs["data-storage"]!.rowsStored)} rows stored`));
    });
  });
});

describe("a terminal the table does not fit", () => {
  it("is chosen plain up front when its size is unknown or too small", () => {
    expect(chooseProgressMode({}, terminal(0, 0))).toBe("plain");
    expect(chooseProgressMode({}, terminal(undefined, undefined))).toBe("plain");
    expect(chooseProgressMode({}, terminal(20, 40))).toBe("plain");
    expect(chooseProgressMode({}, terminal(100, 30))).toBe("tty");
    expect(chooseProgressMode({ CI: "true" }, terminal(100, 30))).toBe("plain");
    expect(chooseProgressMode({}, terminal(100, 30, false))).toBe("plain");
    expect(chooseProgressMode({ SLUICE_LOG_FORMAT: "json" }, terminal(100, 30))).toBe("json");
  });

  it("counts wrapped lines and keeps the bottom row free", () => {
    const lines = ["header", "  ✔ one", "x".repeat(85)]; // the last wraps into 2 rows of 80
    expect(fitsTerminal(lines, { columns: 80, rows: 5 })).toBe(true);
    expect(fitsTerminal(lines, { columns: 80, rows: 4 })).toBe(false);
    expect(fitsTerminal(lines, { columns: 0, rows: 50 })).toBe(false);
    expect(fitsTerminal(lines, { columns: 80, rows: 0 })).toBe(false);
    expect(fitsTerminal(lines, { columns: 39, rows: 50 })).toBe(false);
  });

  for (const [what, columns, rows] of [
    ["of size 0 × 0", 0, 0],
    ["of unknown size", undefined, undefined],
    ["too short for the steps", 120, 3],
  ] as const) {
    it(`${what} gets plain timestamped lines, never nothing`, () => {
      const term = terminal(columns, rows);
      const p = createProgress("tty", term);
      for (const e of events) p.onEvent(e);
      p.stop();
      const lines = strip(term.text).trimEnd().split("\n");
      expect(lines).toEqual([
        expect.stringMatching(/^\d\d:\d\d:\d\d\.\d{3} run r-1 started: standard-ingestion, 2 steps$/),
        expect.stringMatching(/ step format-conversion started \(attempt 1\)$/),
        expect.stringMatching(/ step format-conversion: 220,000 rows · 137,500 rows\/s · 1\/1 files$/),
        expect.stringMatching(/ step format-conversion succeeded \(attempt 1, 2\.00s\): 299,988 rows · 12 quarantined · 149,994 rows\/s · 1\/1 files$/),
        expect.stringMatching(/ step data-storage started \(attempt 1\)$/),
        expect.stringMatching(/ step data-storage: 180,000 rows$/),
        expect.stringMatching(/ step data-storage succeeded \(attempt 1, 1\.50s\): 299,988 rows stored · 12 quarantined · 199,992 rows\/s$/),
        expect.stringMatching(/ run r-1 succeeded$/),
      ]);
    });
  }

  it("shrunk mid-run: the frame drawn so far stays and plain lines follow", () => {
    const term = terminal(120, 30);
    const p = createProgress("tty", term);
    for (const e of events.slice(0, 4)) p.onEvent(e);
    const before = term.lastFrame();
    expect(lineOf(before, "format-conversion")).toContain("299,988 rows");
    term.rows = 2;
    for (const e of events.slice(4)) p.onEvent(e);
    p.stop();
    const after = strip(term.text.slice(term.text.lastIndexOf("\x1b[2K\x1b[G")));
    expect(after.startsWith(before.trimEnd())).toBe(true);
    expect(after).toMatch(/\n\d\d:\d\d:\d\d\.\d{3} step data-storage started \(attempt 1\)\n/);
    expect(after).toMatch(/step data-storage succeeded \(attempt 1, 1\.50s\): 299,988 rows stored/);
    expect(after).toMatch(/ run r-1 succeeded\n$/);
  });
});

describe("JSON lines", () => {
  it("of every engine event carry each key once", () => {
    const term = terminal(undefined, undefined, false);
    const p = createProgress("json", term);
    const all: EngineEvent[] = [
      ...events,
      { type: "steps-settled", runId: "r-1", steps: ["a", "b"], status: "skipped" },
      { type: "stream-stats", runId: "r-1", workflow: "w", steps: ["s"], stats: { source: "x", records: 1 } as never },
      { type: "run-detached", runId: "r-1", reason: "this process is stopping" },
      // Fields named like the logger's own keys are kept, renamed, not repeated.
      { type: "run-started", runId: "r-2", workflow: "w", steps: [], resumed: false, service: "other", msg: "m", time: 5, level: "x" } as never,
    ];
    for (const e of all) p.onEvent(e);
    p.stop();
    const lines = term.text.trimEnd().split("\n");
    expect(lines).toHaveLength(all.length); // one progress line per step in 5 s: each step has one here
    for (const l of lines) expect(duplicateKeys(l), l).toEqual([]);
    const last = JSON.parse(lines.at(-1)!);
    expect(last).toMatchObject({ level: 30, service: "other", event: "run-started", _msg: "m", _time: 5, _level: "x", msg: "run-started" });
    expect(typeof last.time).toBe("string");
  });

  it("of the service logger name the process once; a call's own owner replaces the base one", () => {
    let text = "";
    const log = jsonLogger({ service: "sluice", role: "worker", owner: "vm:1:aaa" }, { destination: { write: (s: string) => void (text += s) } });
    log.info({ store: "sqlite", owner: "vm:1:aaa" }, "worker started");
    log.info({ owner: "vm:2:bbb" }, "scheduler: leadership lost");
    log.warn("no fields at all");
    log.error(new Error("boom"), "failed");
    log.info({ msg: "inner" }, "outer");
    log.info({ msg: "only" });
    const lines = text.trimEnd().split("\n");
    for (const l of lines) expect(duplicateKeys(l), l).toEqual([]);
    const docs = lines.map((l) => JSON.parse(l));
    expect(docs[0]).toMatchObject({ service: "sluice", role: "worker", owner: "vm:1:aaa", store: "sqlite", msg: "worker started" });
    expect(docs[1]).toMatchObject({ owner: "vm:2:bbb", msg: "scheduler: leadership lost" });
    expect(docs[2]).toMatchObject({ level: 40, owner: "vm:1:aaa", msg: "no fields at all" });
    expect(docs[3]).toMatchObject({ level: 50, owner: "vm:1:aaa", err: { message: "boom", type: "Error" }, msg: "failed" });
    expect(docs[4]).toMatchObject({ _msg: "inner", msg: "outer" });
    expect(docs[5]).toMatchObject({ msg: "only" });
  });
});

describe("warnings of the steps", () => {
  const warning: EngineEvent = {
    type: "step-warning",
    runId: "r-1",
    step: "format-conversion",
    attempt: 1,
    message: "file failed; its other units are skipped",
    fields: { path: "/in/c.csv", reason: "the header is malformed" },
  };
  it("are a line of their own in plain mode, with their fields", () => {
    const term = terminal(undefined, undefined, false);
    const p = createProgress("plain", term);
    p.onEvent(warning);
    p.stop();
    expect(term.text).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} step format-conversion: warning: file failed; its other units are skipped \(path: \/in\/c\.csv, reason: the header is malformed\)\n$/,
    );
  });
  it("are listed under the live table", () => {
    const v = newRunView(T0);
    for (const e of events.slice(0, 2)) applyEvent(v, e);
    applyEvent(v, warning);
    expect(strip(renderTable(v, T0 + 100).join("\n"))).toContain(
      "! format-conversion: file failed; its other units are skipped (path: /in/c.csv, reason: the header is malformed)",
    );
  });
});

describe("a run taken over from a dead process", () => {
  const takeOver: EngineEvent = { type: "run-taken-over", runId: "r-1", previousOwner: "vm:4242:ab12cd", pid: 4242 };
  const resumed: EngineEvent = { type: "run-started", runId: "r-1", workflow: "standard-ingestion", steps: ["data-storage"], resumed: true };
  it("is a line of its own in plain mode, naming the previous owner and its pid", () => {
    const term = terminal(undefined, undefined, false);
    const p = createProgress("plain", term);
    p.onEvent(takeOver);
    p.stop();
    expect(term.text).toMatch(/^\d\d:\d\d:\d\d\.\d{3} run r-1 taken over at once: its previous owner vm:4242:ab12cd \(pid 4242\) is gone\n$/);
  });
  it("is said in the live table's header", () => {
    const v = newRunView(T0);
    applyEvent(v, takeOver);
    applyEvent(v, resumed);
    expect(strip(renderTable(v, T0 + 100)[0]!)).toBe("standard-ingestion r-1 (resumed) (taken over from pid 4242, gone)  100ms");
  });
});

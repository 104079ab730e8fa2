/**
 * Showing a run as it moves: a live step table on a terminal, plain timestamped lines elsewhere,
 * JSON lines with SLUICE_LOG_FORMAT=json. Everything goes to stderr so that stdout stays free for
 * `--json` documents.
 *
 * Two things the display cannot take on trust:
 * - The progress events are throttled (the engine sends at most one per 200 ms per attempt, plain
 *   and JSON output show one per 5 s), so the last one seen can be well short of the end: a
 *   300,000-row conversion ended with its line saying "220,000 rows". A finished step's figures
 *   therefore come from its outputs (rowsStored, rowsOut, records, rowsIn, files, bytes, a
 *   stream's final statistics), and from its last progress event only for what they do not say.
 * - A terminal's size. Under some CI runners, `script` or a serial console stderr is a TTY that
 *   reports 0 × 0 (or nothing); log-update then cuts every line and the table showed nothing at
 *   all. The table is drawn only while all of it fits (at least 40 columns, every line, wrapped,
 *   above the bottom row); otherwise, from then on, the run is shown as plain lines.
 */
import { createLogUpdate } from "log-update";
import { pino } from "pino";
import pc from "picocolors";
import { describeStream } from "./stream-figures.js";
import { jsonLogger } from "./json-log.js";
import type { EngineEvent } from "../engine/events.js";
import type { PipelineStats } from "../engine/pipeline.js";
import { fanOutOf } from "../engine/fanout.js";
import type { ProgressUpdate } from "../actions/types.js";
import { formatDuration } from "../spec/duration.js";

export type ProgressMode = "tty" | "plain" | "json" | "quiet";

/** What the table needs of stderr: process.stderr, or a stand-in in tests. */
export interface Terminal {
  isTTY?: boolean;
  columns?: number;
  rows?: number;
  write(text: string): unknown;
}

/** Narrower than this, a table row (icon, name, state, duration, figures) wraps into a mess. */
export const MIN_TABLE_COLUMNS = 40;

export function chooseProgressMode(env = process.env, stderr: Terminal = process.stderr): ProgressMode {
  if (env.SLUICE_LOG_FORMAT === "json") return "json";
  if (env.SLUICE_PROGRESS === "off") return "quiet";
  if (!stderr.isTTY || env.CI) return "plain";
  // A TTY of unknown size (0 or undefined) gets the same lines as a pipe.
  return fitsTerminal([""], stderr) ? "tty" : "plain";
}

export interface Progress {
  onEvent(e: EngineEvent): void;
  stop(): void;
}

export function createProgress(mode: ProgressMode, out: Terminal = process.stderr): Progress {
  switch (mode) {
    case "tty":
      return ttyProgress(out);
    case "plain":
      return plainProgress(out);
    case "json":
      return jsonProgress(out);
    case "quiet":
      return { onEvent: () => undefined, stop: () => undefined };
  }
}

/** "120,000 rows · 2/4 files · 45.2 MB/s · ETA 3s" */
export function describeProgress(p: ProgressUpdate, elapsedMs: number): string {
  const parts: string[] = [];
  if (p.rows !== undefined) {
    parts.push(`${p.rows.toLocaleString("en-US")} rows`);
    if (p.bytes === undefined && elapsedMs > 1_000) parts.push(`${Math.round(p.rows / (elapsedMs / 1000)).toLocaleString("en-US")} rows/s`);
  }
  if (p.files !== undefined) parts.push(p.totalFiles ? `${p.files}/${p.totalFiles} files` : `${p.files} files`);
  if (p.bytes !== undefined && elapsedMs > 0) {
    const rate = p.bytes / (elapsedMs / 1000);
    parts.push(`${(rate / 1e6).toFixed(1)} MB/s`);
    if (p.totalBytes && rate > 0 && p.bytes < p.totalBytes) parts.push(`ETA ${formatDuration(((p.totalBytes - p.bytes) / rate) * 1000)}`);
  }
  return parts.join(" · ");
}

export interface LastProgress {
  update: ProgressUpdate;
  elapsedMs: number;
}

/**
 * A finished step's figures: "299,988 rows · 12 quarantined · 149,994 rows/s · 1/1 files". Counts stated in
 * the outputs win over the last progress event (which may be up to a throttle interval old); a rate is
 * shown where the step reported that quantity as progress, over its whole duration when the count
 * comes from the outputs. No ETA: the step has ended.
 */
export function describeFinal(last: LastProgress | undefined, outputs: Record<string, unknown> | null, durationMs: number): string {
  if (outputs && isStreamStats(outputs)) return describeStream(outputs);
  const num = (k: string): number | undefined => {
    const v = outputs?.[k];
    return typeof v === "number" && Number.isFinite(v) ? v : undefined;
  };
  const p = last?.update ?? {};
  const parts: string[] = [];
  const fmt = (n: number) => n.toLocaleString("en-US");

  // Stored, else passed on, else counted: the figure a user reads as "what this step did".
  const stored = num("rowsStored");
  const outRows = stored ?? num("rowsOut") ?? num("records") ?? num("rowsIn");
  const unit = stored !== undefined ? "rows stored" : num("rowsOut") === undefined && num("records") !== undefined ? "records" : "rows";
  const rows = outRows ?? p.rows;
  if (rows !== undefined) parts.push(`${fmt(rows)} ${unit}`);
  const quarantined = num("rowsQuarantined");
  if (quarantined) parts.push(`${fmt(quarantined)} quarantined`);
  const duplicate = num("rowsDuplicate");
  if (duplicate) parts.push(`${fmt(duplicate)} duplicate`);
  // Rates (in the live line's order) only where the step reported that quantity as it went: a
  // source check's `bytes` is the size of what it looked at, not bytes it moved in its 16 ms.
  const rowsOver = outRows !== undefined ? durationMs : (last?.elapsedMs ?? 0);
  if (p.rows !== undefined && p.bytes === undefined && rows !== undefined && rowsOver > 1_000) {
    // A store's work is its stored and its duplicate rows (a re-run stores none, quickly).
    const done = rows + (stored !== undefined ? (duplicate ?? 0) : 0);
    parts.push(`${fmt(Math.round(done / (rowsOver / 1000)))} rows/s`);
  }

  const files = num("files");
  if (files !== undefined) {
    parts.push(`${fmt(files)} file${files === 1 ? "" : "s"}`);
    const failed = num("filesFailed");
    if (failed) parts.push(`${fmt(failed)} failed`);
  } else if (p.files !== undefined) parts.push(p.totalFiles ? `${p.files}/${p.totalFiles} files` : `${p.files} files`);

  if (p.bytes !== undefined) {
    const outBytes = num("bytes");
    const over = outBytes !== undefined ? durationMs : last!.elapsedMs;
    if (over > 0) parts.push(`${((outBytes ?? p.bytes) / (over / 1000) / 1e6).toFixed(1)} MB/s`);
  }
  return parts.join(" · ");
}

function isStreamStats(o: Record<string, unknown>): o is Record<string, unknown> & PipelineStats {
  return typeof o.records === "number" && typeof o.stored === "number" && typeof o.deadLettered === "number" && typeof o.ratePerSec === "number";
}

// ---------------------------------------------------------------------------------------------
// One picture of the run, kept by every display mode from the events.

interface StepView {
  status: string;
  attempt: number;
  startedAt?: number;
  durationMs?: number;
  last?: LastProgress;
  /** While running: the last progress or stream figures. */
  live?: string;
  /** Once ended: its final figures, or the error. */
  note?: string;
  /** A fan-out's parent: how many items it runs (its items are folded into its row). */
  items?: number;
}

export interface RunView {
  workflow?: string;
  runId?: string;
  resumed: boolean;
  /** The pid of the dead process the run was taken from, when resuming took it over at once. */
  takenFromPid?: number;
  t0: number;
  steps: Map<string, StepView>;
  footer?: { ok: boolean; text: string; detached?: boolean };
  /** The outputs object a continuous group's members share: its figures go on one row only. */
  streamShown: WeakSet<object>;
  /** Warnings of the steps, shown under the table (the first 20). */
  warnings: string[];
}

export function newRunView(t0 = Date.now()): RunView {
  return { resumed: false, t0, steps: new Map(), streamShown: new WeakSet(), warnings: [] };
}

/** Fold one event into the picture. */
export function applyEvent(v: RunView, e: EngineEvent): void {
  switch (e.type) {
    case "run-started":
      v.workflow = e.workflow;
      v.runId = e.runId;
      v.resumed = e.resumed;
      for (const s of e.steps) if (!v.steps.has(s)) v.steps.set(s, { status: "pending", attempt: 0 });
      return;
    case "step-started":
      v.steps.set(e.step, { status: "running", attempt: e.attempt, startedAt: e.at, ...(e.items !== undefined ? { items: e.items } : {}) });
      return;
    case "step-progress": {
      const row = v.steps.get(e.step);
      if (!row) return;
      row.last = { update: e.progress, elapsedMs: e.elapsedMs };
      row.live = describeProgress(e.progress, e.elapsedMs);
      return;
    }
    case "stream-stats": {
      const row = v.steps.get(e.steps[0]!);
      if (row) row.live = describeStream(e.stats);
      return;
    }
    case "step-ended": {
      const prev = v.steps.get(e.step);
      let note: string | undefined;
      if (e.error) note = `${e.error.code}: ${e.error.message}`.slice(0, 100);
      else if (e.outputs && isStreamStats(e.outputs)) {
        // Every member of a continuous group ends with the same statistics object: show them once.
        if (!v.streamShown.has(e.outputs)) note = describeStream(e.outputs);
        v.streamShown.add(e.outputs);
      } else note = describeFinal(prev?.last, e.outputs, e.durationMs) || undefined;
      v.steps.set(e.step, { status: e.retryInMs !== null ? "retrying" : e.status, attempt: e.attempt, durationMs: e.durationMs, last: prev?.last, note });
      return;
    }
    case "steps-settled":
      for (const s of e.steps) {
        const prev = v.steps.get(s);
        const durationMs = prev?.startedAt !== undefined ? Date.now() - prev.startedAt : prev?.durationMs;
        v.steps.set(s, {
          ...(prev ?? { attempt: 0 }),
          status: e.status,
          ...(durationMs !== undefined ? { durationMs } : {}),
          ...(e.reason ? { note: e.reason } : {}),
        });
      }
      return;
    case "run-ended":
      v.footer = { ok: e.status === "succeeded", text: `run ${e.status}${e.status !== "succeeded" && e.error ? `: ${e.error.message}` : ""}` };
      return;
    case "run-detached":
      v.footer = { ok: false, detached: true, text: `run left running because ${e.reason}; continue it with: sluice resume ${e.runId}` };
      return;
    case "step-warning":
      if (v.warnings.length < 20) v.warnings.push(`${e.step}: ${describeWarning(e)}`);
      return;
    case "run-taken-over":
      v.takenFromPid = e.pid;
      return;
  }
}

/** "run r-… taken over at once: its previous owner h1:4242:ab12cd (pid 4242) is gone" */
function describeTakeOver(e: Extract<EngineEvent, { type: "run-taken-over" }>): string {
  return `run ${e.runId} taken over at once: its previous owner ${e.previousOwner} (pid ${e.pid}) is gone`;
}

// ---------------------------------------------------------------------------------------------
// Plain lines: CI logs, pipes, and terminals the table does not fit.

function describeEnd(e: Extract<EngineEvent, { type: "step-ended" }>, figures: string | undefined): string {
  const err = e.error ? `: ${e.error.code} ${e.error.message}` : figures ? `: ${figures}` : "";
  const retry = e.retryInMs !== null ? `; retrying in ${formatDuration(e.retryInMs)}` : "";
  const what = e.status === "timedOut" ? "timed out" : e.status;
  return `step ${e.step} ${what} (attempt ${e.attempt}, ${formatDuration(e.durationMs)})${err}${retry}`;
}

/** Prints one line per event (progress at most every 5 s per step) from an already updated view. */
function plainPrinter(v: RunView, out: Terminal): (e: EngineEvent) => void {
  const line = (text: string) => out.write(`${new Date().toISOString().slice(11, 23)} ${text}\n`);
  const lastShown = new Map<string, number>();
  return (e) => {
    switch (e.type) {
      case "step-progress": {
        // Plain logs get a progress line every 5 s per step, not every batch.
        const key = `${e.step}#${e.attempt}`;
        if (Date.now() - (lastShown.get(key) ?? 0) < 5_000) return;
        lastShown.set(key, Date.now());
        return void line(`step ${e.step}: ${describeProgress(e.progress, e.elapsedMs)}`);
      }
      case "run-started":
        return void line(`run ${e.runId} ${e.resumed ? "resumed" : "started"}: ${e.workflow}, ${e.steps.length} steps`);
      case "step-started":
        return void line(`step ${e.step} started (attempt ${e.attempt})`);
      case "step-ended":
        return void line(describeEnd(e, e.error ? undefined : v.steps.get(e.step)?.note));
      case "steps-settled":
        return void line(`${e.status}: ${e.steps.join(", ")}${e.reason ? ` (${e.reason})` : ""}`);
      case "run-ended":
        return void line(`run ${e.runId} ${e.status}${e.error ? `: ${e.error.message}` : ""}`);
      case "run-detached":
        return void line(`run ${e.runId} left running because ${e.reason}; continue it with: sluice resume ${e.runId}`);
      case "step-warning":
        return void line(`step ${e.step}: warning: ${describeWarning(e)}`);
      case "run-taken-over":
        return void line(describeTakeOver(e));
      case "stream-stats": {
        if (Date.now() - (lastShown.get("stream") ?? 0) < 5_000) return;
        lastShown.set("stream", Date.now());
        return void line(`stream ${e.steps[0]}…${e.steps.at(-1)}: ${describeStream(e.stats)}`);
      }
    }
  };
}

function plainProgress(out: Terminal): Progress {
  const view = newRunView();
  const print = plainPrinter(view, out);
  return {
    onEvent(e) {
      applyEvent(view, e);
      print(e);
    },
    stop() {},
  };
}

// ---------------------------------------------------------------------------------------------
// JSON lines.

function jsonProgress(out: Terminal): Progress {
  // Asynchronous writes to fd 2 (flushed at stop()); a test's stand-in gets each line as written.
  const destination = out === process.stderr ? pino.destination(2) : { write: (line: string) => void out.write(line) };
  const log = jsonLogger({ service: "sluice" }, { destination });
  const lastShown = new Map<string, number>();
  return {
    onEvent(e) {
      if (e.type === "step-progress" || e.type === "stream-stats") {
        const key = e.type === "stream-stats" ? "stream" : `${e.step}#${e.attempt}`;
        if (Date.now() - (lastShown.get(key) ?? 0) < 5_000) return;
        lastShown.set(key, Date.now());
      }
      const level =
        (e.type === "step-ended" && e.status !== "succeeded") || e.type === "step-warning"
          ? "warn"
          : e.type === "run-ended" && e.status !== "succeeded"
            ? "error"
            : "info";
      const { type, ...fields } = e;
      log[level]({ event: type, ...fields }, type);
    },
    stop() {
      log.flush();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The live table.

const ICON: Record<string, string> = {
  pending: pc.dim("·"),
  running: pc.cyan("▶"),
  succeeded: pc.green("✔"),
  failed: pc.red("✖"),
  timedOut: pc.red("⏱"),
  skipped: pc.dim("↷"),
  cancelled: pc.yellow("■"),
  retrying: pc.yellow("↻"),
};

/** The table's lines, without a trailing newline: header, one line per step, footer. */
export function renderTable(v: RunView, now: number): string[] {
  const header =
    v.workflow !== undefined
      ? `${pc.bold(v.workflow)} ${pc.dim(v.runId ?? "")}${v.resumed ? pc.yellow(" (resumed)") : ""}${v.takenFromPid !== undefined ? pc.yellow(` (taken over from pid ${v.takenFromPid}, gone)`) : ""}${pc.dim(`  ${formatDuration(now - v.t0)}`)}`
      : pc.dim(`  ${formatDuration(now - v.t0)}`);
  // A fan-out's items are folded into their parent's row: counts, not one line per item.
  const tally = new Map<string, { done: number; failed: number; running: number }>();
  const rows = [...v.steps].filter(([name]) => {
    const parent = fanOutOf(name);
    if (parent === undefined || v.steps.get(parent)?.items === undefined) return true;
    const t = tally.get(parent) ?? { done: 0, failed: 0, running: 0 };
    const s = v.steps.get(name)!.status;
    if (s === "running" || s === "retrying") t.running++;
    else if (s === "failed") (t.failed++, t.done++);
    else if (s !== "pending") t.done++;
    tally.set(parent, t);
    return false;
  });
  const width = Math.max(8, ...rows.map(([k]) => k.length));
  const lines = rows.map(([name, r]) => {
    const dur = r.startedAt && r.status === "running" ? now - r.startedAt : r.durationMs;
    const attempt = r.attempt > 1 ? pc.yellow(` attempt ${r.attempt}`) : "";
    const t = r.items !== undefined ? (tally.get(name) ?? { done: 0, failed: 0, running: 0 }) : undefined;
    const items = t
      ? `${t.done.toLocaleString("en-US")}/${r.items!.toLocaleString("en-US")} items${t.failed ? ` · ${t.failed} failed` : ""}${t.running ? ` · ${t.running} running` : ""}`
      : undefined;
    const note = [items, r.status === "running" ? r.live : r.note].filter(Boolean).join(" · ") || undefined;
    return `  ${ICON[r.status] ?? " "} ${name.padEnd(width)} ${pc.dim(r.status.padEnd(9))} ${dur !== undefined ? formatDuration(dur).padStart(7) : "       "}${attempt}${note ? pc.dim("  " + note) : ""}`;
  });
  const f = v.footer;
  const footer = f ? (f.ok ? pc.green(f.text) : f.detached ? pc.yellow(f.text) : pc.red(f.text)) : undefined;
  return [header, ...lines, ...v.warnings.map((w) => pc.yellow(`! ${w}`)), ...(footer ? [footer] : [])];
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

/**
 * Whether `lines` can be drawn and redrawn in place: a known size of at least MIN_TABLE_COLUMNS,
 * and every line, as the terminal wraps it, above the bottom row (log-update ends the frame with
 * a newline, and cuts from the top whatever does not fit, which a redraw cannot erase).
 */
export function fitsTerminal(lines: string[], size: { columns?: number; rows?: number }): boolean {
  const { columns, rows } = size;
  if (!columns || !rows || !Number.isFinite(columns) || !Number.isFinite(rows) || columns < MIN_TABLE_COLUMNS) return false;
  let used = 0;
  for (const l of lines) used += Math.max(1, Math.ceil(l.replace(ANSI, "").length / columns));
  return used + 1 <= rows;
}

/** "file failed (path: /in/c.csv, reason: …)": a warning and its fields, short. */
export function describeWarning(e: Extract<EngineEvent, { type: "step-warning" }>): string {
  const fields = Object.entries(e.fields ?? {}).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  const text = fields.length ? `${e.message} (${fields.join(", ")})` : e.message;
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

function ttyProgress(out: Terminal): Progress {
  const view = newRunView();
  const draw = createLogUpdate(out as NodeJS.WriteStream);
  let print: ((e: EngineEvent) => void) | undefined; // set once the table no longer fits
  let drawn = false;
  let stopped = false;

  /** Draw the table; false (and plain lines from now on) when it does not fit the terminal. */
  const frame = (): boolean => {
    if (print) return false;
    const lines = renderTable(view, Date.now());
    if (fitsTerminal(lines, out)) {
      draw(lines.join("\n"));
      drawn = true;
      return true;
    }
    // Too small, or of unknown size: the last frame (if any) stays as it is, lines follow.
    clearInterval(timer);
    if (drawn) draw.done();
    print = plainPrinter(view, out);
    return false;
  };
  const timer = setInterval(frame, 100);
  timer.unref();
  return {
    onEvent(e) {
      applyEvent(view, e);
      if (print) return print(e);
      if (e.type === "step-progress" || e.type === "stream-stats") return; // the 100 ms timer redraws
      if (!frame()) print!(e);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (print) return;
      // The frame that stays on screen: every finished step with its final figures.
      const lines = renderTable(view, Date.now());
      if (fitsTerminal(lines, out)) draw(lines.join("\n"));
      draw.done();
    },
  };
}

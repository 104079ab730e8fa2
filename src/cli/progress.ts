/**
 * Showing a run as it moves: a live step table on a terminal, plain lines or JSON lines elsewhere.
 * Everything goes to stderr so that stdout stays free for `--json` documents.
 */
import { logUpdateStderr } from "log-update";
import pc from "picocolors";
import { pino } from "pino";
import { describeStream } from "./stream-figures.js";
import type { EngineEvent } from "../engine/events.js";
import type { ProgressUpdate } from "../actions/types.js";
import { formatDuration } from "../spec/duration.js";

export type ProgressMode = "tty" | "plain" | "json" | "quiet";

export function chooseProgressMode(env = process.env): ProgressMode {
  if (env.SLUICE_LOG_FORMAT === "json") return "json";
  if (env.SLUICE_PROGRESS === "off") return "quiet";
  return process.stderr.isTTY && !env.CI ? "tty" : "plain";
}

export interface Progress {
  onEvent(e: EngineEvent): void;
  stop(): void;
}

export function createProgress(mode: ProgressMode): Progress {
  switch (mode) {
    case "tty":
      return ttyProgress();
    case "plain":
      return plainProgress();
    case "json":
      return jsonProgress();
    case "quiet":
      return { onEvent: () => undefined, stop: () => undefined };
  }
}

function describeEnd(e: Extract<EngineEvent, { type: "step-ended" }>): string {
  const err = e.error ? `: ${e.error.code} ${e.error.message}` : "";
  const retry = e.retryInMs !== null ? `; retrying in ${formatDuration(e.retryInMs)}` : "";
  const what = e.status === "timedOut" ? "timed out" : e.status;
  return `step ${e.step} ${what} (attempt ${e.attempt}, ${formatDuration(e.durationMs)})${err}${retry}`;
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

function plainProgress(): Progress {
  const line = (text: string) => process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${text}\n`);
  const lastShown = new Map<string, number>();
  return {
    onEvent(e) {
      switch (e.type) {
        case "step-progress": {
          // Plain logs get a progress line every 5 s per step, not every batch.
          const key = `${e.step}#${e.attempt}`;
          if (Date.now() - (lastShown.get(key) ?? 0) < 5_000) return;
          lastShown.set(key, Date.now());
          return line(`step ${e.step}: ${describeProgress(e.progress, e.elapsedMs)}`);
        }
        case "run-started":
          return line(`run ${e.runId} ${e.resumed ? "resumed" : "started"}: ${e.workflow}, ${e.steps.length} steps`);
        case "step-started":
          return line(`step ${e.step} started (attempt ${e.attempt})`);
        case "step-ended":
          return line(describeEnd(e));
        case "steps-settled":
          return line(`${e.status}: ${e.steps.join(", ")}`);
        case "run-ended":
          return line(`run ${e.runId} ${e.status}${e.error ? `: ${e.error.message}` : ""}`);
        case "run-detached":
          return line(`run ${e.runId} left running because ${e.reason}; continue it with: sluice resume ${e.runId}`);
        case "stream-stats": {
          if (Date.now() - (lastShown.get("stream") ?? 0) < 5_000) return;
          lastShown.set("stream", Date.now());
          return line(`stream ${e.steps[0]}…${e.steps.at(-1)}: ${describeStream(e.stats)}`);
        }
      }
    },
    stop() {},
  };
}

function jsonProgress(): Progress {
  const log = pino({ base: { service: "sluice" }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
  const lastShown = new Map<string, number>();
  return {
    onEvent(e) {
      if (e.type === "step-progress" || e.type === "stream-stats") {
        const key = e.type === "stream-stats" ? "stream" : `${e.step}#${e.attempt}`;
        if (Date.now() - (lastShown.get(key) ?? 0) < 5_000) return;
        lastShown.set(key, Date.now());
      }
      const level = e.type === "step-ended" && e.status !== "succeeded" ? "warn" : e.type === "run-ended" && e.status !== "succeeded" ? "error" : "info";
      const { type, ...fields } = e;
      log[level]({ event: type, ...fields }, type);
    },
    stop() {
      log.flush();
    },
  };
}

interface Row {
  status: string;
  attempt: number;
  startedAt?: number;
  durationMs?: number;
  note?: string;
}

function ttyProgress(): Progress {
  const rows = new Map<string, Row>();
  let header = "";
  let footer = "";
  const t0 = Date.now();
  let stopped = false;
  const icon: Record<string, string> = {
    pending: pc.dim("·"), running: pc.cyan("▶"), succeeded: pc.green("✔"), failed: pc.red("✖"),
    timedOut: pc.red("⏱"), skipped: pc.dim("↷"), cancelled: pc.yellow("■"), retrying: pc.yellow("↻"),
  };
  const render = () => {
    const width = Math.max(8, ...[...rows.keys()].map((k) => k.length));
    const lines = [...rows].map(([name, r]) => {
      const dur = r.startedAt && r.status === "running" ? Date.now() - r.startedAt : r.durationMs;
      const attempt = r.attempt > 1 ? pc.yellow(` attempt ${r.attempt}`) : "";
      return `  ${icon[r.status] ?? " "} ${name.padEnd(width)} ${pc.dim(r.status.padEnd(9))} ${dur !== undefined ? formatDuration(dur).padStart(7) : "       "}${attempt}${r.note ? pc.dim("  " + r.note) : ""}`;
    });
    logUpdateStderr([header + pc.dim(`  ${formatDuration(Date.now() - t0)}`), ...lines, footer].filter(Boolean).join("\n"));
  };
  const timer = setInterval(render, 100);
  timer.unref();
  return {
    onEvent(e) {
      switch (e.type) {
        case "run-started":
          header = `${pc.bold(e.workflow)} ${pc.dim(e.runId)}${e.resumed ? pc.yellow(" (resumed)") : ""}`;
          for (const s of e.steps) if (!rows.has(s)) rows.set(s, { status: "pending", attempt: 0 });
          break;
        case "step-started":
          rows.set(e.step, { status: "running", attempt: e.attempt, startedAt: e.at });
          break;
        case "step-progress": {
          const row = rows.get(e.step);
          if (row) row.note = describeProgress(e.progress, e.elapsedMs);
          return; // the 100 ms timer redraws
        }
        case "step-ended": {
          const status = e.retryInMs !== null ? "retrying" : e.status;
          // A finished step keeps its last progress line (rows, MB/s) as a summary.
          const note = e.error ? `${e.error.code}: ${e.error.message}`.slice(0, 100) : rows.get(e.step)?.note;
          rows.set(e.step, { status, attempt: e.attempt, durationMs: e.durationMs, note });
          break;
        }
        case "steps-settled":
          for (const s of e.steps) rows.set(s, { ...(rows.get(s) ?? { attempt: 0 }), status: e.status });
          break;
        case "run-ended":
          footer = e.status === "succeeded" ? pc.green(`run ${e.status}`) : pc.red(`run ${e.status}${e.error ? `: ${e.error.message}` : ""}`);
          break;
        case "run-detached":
          footer = pc.yellow(`run left running because ${e.reason}; continue it with: sluice resume ${e.runId}`);
          break;
        case "stream-stats": {
          const row = rows.get(e.steps[0]!);
          if (row) row.note = describeStream(e.stats);
          return;
        }
      }
      render();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      render();
      logUpdateStderr.done();
    },
  };
}

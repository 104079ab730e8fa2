/**
 * Generic `exec:` steps: run a program with arguments and environment, no shell unless named.
 *
 * The child gets its own process group so a timeout or cancel kills everything it started
 * (a shell's children too), first with SIGTERM, then SIGKILL after a grace period.
 * Outputs: `exitCode`, `stdout` (trimmed, last 64 KiB), and any `key=value` lines the program
 * writes to the file named by $SLUICE_OUTPUT (as GitHub Actions does with GITHUB_OUTPUT).
 *
 * On Linux the program runs under a small `sh` holder that lets its CPU, memory and I/O be read
 * from the kernel (see exec-usage.ts); the holder passes the exit status on, a status above 128
 * read as the signal it stands for, as shells report it.
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import type { Socket } from "node:net";
import { constants as osConstants } from "node:os";
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { SluiceError } from "../errors.js";
import type { ExecSpec } from "../spec/schema.js";
import type { Outputs } from "./types.js";
import { HOLDER_SCRIPT, resolveProgram, treeUsageSupported, watchTree, type TreeUsage } from "./exec-usage.js";

const STDOUT_KEEP = 64 * 1024;
const KILL_GRACE_MS = 2_000;

export interface ExecOptions {
  signal: AbortSignal;
  /** Attempt log: stdout and stderr are appended here. */
  logFile: string;
  /** Base folder for relative working directories (the workflow file's folder or the cwd). */
  baseDir: string;
  extraEnv?: Record<string, string>;
  /**
   * Called once the program runs with a reader of what it has consumed: the exact figures once
   * it has ended, the latest sample before (an attempt stopped by a timeout is recorded first).
   * Not called where usage cannot be measured (see exec-usage.ts).
   */
  usage?: (read: () => TreeUsage) => void;
}

export async function runExec(spec: ExecSpec, opts: ExecOptions): Promise<Outputs> {
  const [cmd, ...first] = spec.command;
  const argv = [...first, ...(spec.args ?? [])];
  const outputFile = `${opts.logFile}.outputs`;
  const cwd = spec.workingDir ? resolve(opts.baseDir, spec.workingDir) : opts.baseDir;
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.extraEnv, ...spec.env, SLUICE_OUTPUT: outputFile };
  const held = treeUsageSupported();
  let program = cmd!;
  if (held) {
    // The holder would report a missing program as sh's exit 127; find it first, as spawn would.
    const found = resolveProgram(cmd!, cwd, env.PATH);
    if ("problem" in found)
      throw new SluiceError("BAD_CONFIG", `command "${cmd}" ${found.problem === "missing" ? "was not found" : "is not executable"} (working directory ${cwd})`);
    program = found.path;
  }
  await mkdir(dirname(opts.logFile), { recursive: true });
  const log = createWriteStream(opts.logFile, { flags: "a" });

  if (opts.signal.aborted) throw opts.signal.reason;
  const child = held
    ? spawn("/bin/sh", ["-c", HOLDER_SCRIPT, "sluice-exec", program, ...argv], { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe", "pipe"] })
    : spawn(cmd!, argv, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });

  // The holder's report: the program's exit status, once it has been reaped. Its figures are read
  // then, before the holder is let go (the newline back) and its own counters disappear.
  let reported: number | null = null;
  let final: TreeUsage | undefined;
  const watcher = held && child.pid !== undefined ? watchTree(child.pid) : undefined;
  if (watcher) {
    opts.usage?.(() => final ?? watcher.latest());
    const report = child.stdio[3] as Socket;
    let line = "";
    report.on("error", () => undefined); // The holder was killed: the exit event says how.
    report.on("data", (b: Buffer) => {
      line += b.toString("latin1");
      if (final || !line.includes("\n")) return;
      final = watcher.final();
      const status = Number(line.trim());
      reported = Number.isInteger(status) ? status : null;
      report.end("\n");
    });
  }

  let stdout = "";
  // The tail of stderr names the cause in the error message; two lines, since a program often
  // prints the reason and then a hint.
  let stderrTail: string[] = [];
  child.stdout!.on("data", (b: Buffer) => {
    log.write(b);
    stdout = (stdout + b.toString("utf8")).slice(-STDOUT_KEEP);
  });
  child.stderr!.on("data", (b: Buffer) => {
    log.write(b);
    const lines = b
      .toString("utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    stderrTail = [...stderrTail, ...lines].slice(-2);
  });

  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    killGroup(child.pid, "SIGTERM");
    killTimer = setTimeout(() => killGroup(child.pid, "SIGKILL"), KILL_GRACE_MS);
  };
  opts.signal.addEventListener("abort", onAbort, { once: true });

  try {
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res, rej) => {
      child.once("error", rej);
      child.once("close", (code, signal) => res({ code, signal }));
    });
    if (opts.signal.aborted) throw opts.signal.reason;
    const code = reported ?? exit.code;
    if (code !== 0) {
      const signal = exit.code === null ? exit.signal : reported !== null && reported > 128 ? signalName(reported - 128) : undefined;
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      throw new SluiceError("EXEC_FAILED", `command "${cmd}" ${how}${stderrTail.length ? `: ${stderrTail.join(" / ").slice(0, 400)}` : ""}`, {
        details: { exitCode: code },
      });
    }
    return { exitCode: 0, stdout: stdout.trim(), ...(await readOutputs(outputFile)) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !opts.signal.aborted)
      throw new SluiceError("BAD_CONFIG", `command "${cmd}" was not found (working directory ${cwd})`);
    throw err;
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
    watcher?.stop();
    if (killTimer) clearTimeout(killTimer);
    await new Promise<void>((r) => log.end(r));
    await rm(outputFile, { force: true });
  }
}

const SIGNAL_NAMES = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n, name]));

function signalName(n: number): string | undefined {
  return SIGNAL_NAMES.get(n);
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

async function readOutputs(file: string): Promise<Outputs> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return {};
  }
  const out: Outputs = {};
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq).trim()] = line.slice(eq + 1);
  }
  return out;
}
export type { TreeUsage } from "./exec-usage.js";

/**
 * Generic `exec:` steps: run a program with arguments and environment, no shell unless named.
 *
 * The child gets its own process group so a timeout or cancel kills everything it started
 * (a shell's children too), first with SIGTERM, then SIGKILL after a grace period.
 * Outputs: `exitCode`, `stdout` (trimmed, last 64 KiB), and any `key=value` lines the program
 * writes to the file named by $SLUICE_OUTPUT (as GitHub Actions does with GITHUB_OUTPUT).
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { SluiceError } from "../errors.js";
import type { ExecSpec } from "../spec/schema.js";
import type { Outputs } from "./types.js";

const STDOUT_KEEP = 64 * 1024;
const KILL_GRACE_MS = 2_000;

export interface ExecOptions {
  signal: AbortSignal;
  /** Attempt log: stdout and stderr are appended here. */
  logFile: string;
  /** Base folder for relative working directories (the workflow file's folder or the cwd). */
  baseDir: string;
  extraEnv?: Record<string, string>;
}

export async function runExec(spec: ExecSpec, opts: ExecOptions): Promise<Outputs> {
  const [cmd, ...first] = spec.command;
  const argv = [...first, ...(spec.args ?? [])];
  await mkdir(dirname(opts.logFile), { recursive: true });
  const outputFile = `${opts.logFile}.outputs`;
  const log = createWriteStream(opts.logFile, { flags: "a" });
  const cwd = spec.workingDir ? resolve(opts.baseDir, spec.workingDir) : opts.baseDir;

  if (opts.signal.aborted) throw opts.signal.reason;
  const child = spawn(cmd!, argv, {
    cwd,
    env: { ...process.env, ...opts.extraEnv, ...spec.env, SLUICE_OUTPUT: outputFile },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });

  let stdout = "";
  // The tail of stderr names the cause in the error message; two lines, since a program often
  // prints the reason and then a hint.
  let stderrTail: string[] = [];
  child.stdout.on("data", (b: Buffer) => {
    log.write(b);
    stdout = (stdout + b.toString("utf8")).slice(-STDOUT_KEEP);
  });
  child.stderr.on("data", (b: Buffer) => {
    log.write(b);
    const lines = b.toString("utf8").split("\n").map((l) => l.trim()).filter(Boolean);
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
    if (exit.code !== 0) {
      const how = exit.code === null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
      throw new SluiceError("EXEC_FAILED", `command "${cmd}" ${how}${stderrTail.length ? `: ${stderrTail.join(" / ").slice(0, 400)}` : ""}`, {
        details: { exitCode: exit.code },
      });
    }
    return { exitCode: 0, stdout: stdout.trim(), ...(await readOutputs(outputFile)) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !opts.signal.aborted)
      throw new SluiceError("BAD_CONFIG", `command "${cmd}" was not found (working directory ${cwd})`);
    throw err;
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
    if (killTimer) clearTimeout(killTimer);
    await new Promise<void>((r) => log.end(r));
    await rm(outputFile, { force: true });
  }
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

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..", "..");
export const BIN = join(ROOT, "bin", "sluice.js");
export const FIXTURE_ACTIONS = join(ROOT, "test", "fixtures", "test-actions.mjs");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the built CLI to completion, as a user would, in `cwd` with SLUICE_HOME under it. */
export function sluice(args: string[], opts: { cwd: string; env?: Record<string, string> }): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, SLUICE_HOME: join(opts.cwd, ".sluice"), CI: "true", ...opts.env },
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function sluiceAsync(args: string[], opts: { cwd: string; env?: Record<string, string> }): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, SLUICE_HOME: join(opts.cwd, ".sluice"), CI: "true", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Resolve when `pattern` appears in the child's stderr; returns the match. */
export function waitForStderr(child: ChildProcess, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  return new Promise((res, rej) => {
    let buf = "";
    const timer = setTimeout(() => rej(new Error(`timed out waiting for ${pattern}; stderr so far:\n${buf}`)), timeoutMs);
    child.stderr!.on("data", (b: Buffer) => {
      buf += b.toString();
      const m = buf.match(pattern);
      if (m) {
        clearTimeout(timer);
        res(m);
      }
    });
  });
}

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
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, SLUICE_HOME: join(opts.cwd, ".sluice"), CI: "true", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  stderrBuffer(child); // collect from the first byte, before any wait
  return child;
}

/** Everything a child has written to stderr so far, collected from its start. */
const stderrOf = new WeakMap<ChildProcess, { text: string; listeners: Set<() => void> }>();

function stderrBuffer(child: ChildProcess) {
  let b = stderrOf.get(child);
  if (!b) {
    const buf = { text: "", listeners: new Set<() => void>() };
    child.stderr!.on("data", (chunk: Buffer) => {
      buf.text += chunk.toString();
      for (const l of buf.listeners) l();
    });
    stderrOf.set(child, buf);
    b = buf;
  }
  return b;
}

/**
 * Resolve when `pattern` appears in the child's stderr; returns the match. Earlier output counts:
 * two waits in a row on one child must not miss a line that arrived in the same chunk as the first.
 */
export function waitForStderr(child: ChildProcess, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  const buf = stderrBuffer(child);
  return new Promise((res, rej) => {
    const check = () => {
      const m = buf.text.match(pattern);
      if (!m) return;
      clearTimeout(timer);
      buf.listeners.delete(check);
      res(m);
    };
    const timer = setTimeout(() => {
      buf.listeners.delete(check);
      rej(new Error(`timed out waiting for ${pattern}; stderr so far:\n${buf.text}`));
    }, timeoutMs);
    buf.listeners.add(check);
    check();
  });
}

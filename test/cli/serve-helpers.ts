/**
 * Real `sluice serve` / `sluice worker` processes for the service-mode tests: spawn the built CLI,
 * read the URL it prints, call its API, and stop it with a signal, reading the exit code.
 */
import { request } from "../server/api-helpers.js";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { BIN } from "./cli-helpers.js";

export interface Proc {
  child: ChildProcess;
  /** Everything written to stderr so far. */
  stderr(): string;
  stdout(): string;
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  exited: Promise<number | string>;
  /** Send a signal and wait for the exit; SIGKILL after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
}

const live = new Set<ChildProcess>();

/** Spawn `node bin/sluice.js ARGS` with output collected from the first byte. */
export function spawnSluice(args: string[], opts: { cwd: string; env: Record<string, string> }): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, CI: "true", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  let err = "";
  let out = "";
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | string>((res) =>
    child.once("exit", (code, signal) => {
      live.delete(child);
      res(code ?? signal ?? -1);
    }),
  );
  return {
    child,
    stderr: () => err,
    stdout: () => out,
    exited,
    async stop(signal = "SIGTERM", timeoutMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(t);
      }
    },
  };
}

/** Kill whatever is still running (afterAll safety net); each by its own pid. */
export function killAll(): void {
  for (const c of live) c.kill("SIGKILL");
}

/** Run a CLI command to its end without blocking this process's event loop (receivers live here). */
export async function sluiceCli(
  args: string[],
  opts: { cwd: string; env: Record<string, string> },
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = spawnSluice(args, opts);
  const t = setTimeout(() => p.child.kill("SIGKILL"), 20_000);
  const code = await p.exited;
  clearTimeout(t);
  // 'exit' can come before the pipes are drained.
  await Promise.all([
    new Promise((r) => (p.child.stdout!.readableEnded ? r(0) : p.child.stdout!.once("end", r))),
    new Promise((r) => (p.child.stderr!.readableEnded ? r(0) : p.child.stderr!.once("end", r))),
  ]);
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  everyMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await sleep(everyMs);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start `sluice serve` and wait for `sluice: serving on URL`. */
export async function startServe(args: string[], opts: { cwd: string; env: Record<string, string> }): Promise<Proc & { url: string }> {
  const p = spawnSluice(["serve", "--port", "0", ...args], opts);
  const url = await Promise.race([
    waitFor("the serving line", () => /sluice: serving on (http:\/\/\S+)/.exec(p.stderr())?.[1], 15_000, 25),
    p.exited.then((code) => {
      throw new Error(`sluice serve exited with ${code} before serving:\n${p.stderr()}`);
    }),
  ]);
  return Object.assign(p, { url });
}

export interface Reply {
  status: number;
  text: string;
  json: any;
}

export function call(base: string, method: string, path: string, o: { json?: unknown; yaml?: string; token?: string } = {}): Promise<Reply> {
  return request(base, method, path, { json: o.json, body: o.yaml, token: o.token });
}

/** A webhook receiver on a free loopback port, keeping every JSON body it gets. */
export async function receiver(): Promise<{ url: string; bodies: any[]; close(): Promise<void> }> {
  const bodies: any[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    let text = "";
    req.on("data", (b: Buffer) => (text += b.toString()));
    req.on("end", () => {
      try {
        bodies.push(JSON.parse(text));
      } catch {
        bodies.push(text);
      }
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    bodies,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

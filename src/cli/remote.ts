/**
 * `sluice apply`, `rollback` and `emit`: through the running server when one answers at
 * SLUICE_URL (default http://127.0.0.1:8080) or --server, with SLUICE_TOKEN as the bearer token;
 * otherwise straight on the state store this environment names, which is what the server reads
 * too (the same SQLite file under SLUICE_HOME, or the fleet's PostgreSQL).
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { asErrorCode, SluiceError } from "../errors.js";
import { formatProblem, type Problem } from "../spec/load.js";
import { applyWorkflowText, rollbackWorkflow, type Applied } from "../control/workflows.js";
import { emitEvent } from "../control/events.js";
import { loadActions, withStore } from "./context.js";

interface RemoteFlags {
  server?: string;
}

/** What this file reads of the API's JSON answers (the full shapes: src/server/schemas.ts); a plain-text answer has none of it. */
interface AnswerBody {
  error?: { code?: string; message?: string; problems?: Problem[] };
  applied?: Applied[];
  version?: number;
  event?: { id: string };
  runs?: string[];
  refused?: { workflow: string; message: string }[];
}

type Answer = { status: number; body: AnswerBody } | undefined;

/** Call the API; undefined when no server listens there (the caller then uses the store). */
async function callServer(o: RemoteFlags, method: string, path: string, body: unknown, contentType = "application/json"): Promise<Answer> {
  const base = (o.server ?? process.env.SLUICE_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  const headers: Record<string, string> = { "content-type": contentType, accept: "application/json" };
  if (process.env.SLUICE_TOKEN) headers.authorization = `Bearer ${process.env.SLUICE_TOKEN}`;
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { method, headers, body: typeof body === "string" ? body : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const code = (err as { cause?: { code?: string } }).cause?.code;
    // Only "nobody listens" falls back; any other failure is reported, never silently rerouted.
    if (code === "ECONNREFUSED" && !o.server) return undefined;
    throw new SluiceError("NETWORK_ERROR", `cannot reach the Sluice server at ${base}: ${code ?? (err as Error).message}`);
  }
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* plain text answer */
  }
  return { status: res.status, body: typeof parsed === "object" && parsed !== null ? (parsed as AnswerBody) : {} };
}

function serverError(a: NonNullable<Answer>): SluiceError {
  const e = a.body.error;
  // The server's code crossed HTTP as text; API-only codes (UNAUTHENTICATED, …) map to BAD_CONFIG.
  return new SluiceError(asErrorCode(e?.code, e?.code === undefined ? "INTERNAL" : "BAD_CONFIG"), e?.message ?? `the server answered HTTP ${a.status}`);
}

function printApplied(applied: Applied[], via: string): void {
  for (const a of applied)
    process.stdout.write(`workflow ${a.name} ${a.created ? `applied as version ${a.version}` : `unchanged (version ${a.version})`} ${via}\n`);
}

function printProblems(problems: Problem[], file: string): never {
  for (const p of problems) process.stderr.write(`${formatProblem(p)}\n`);
  throw new SluiceError(
    "SPEC_INVALID",
    `${file} is not a valid workflow (${problems.length} problem${problems.length > 1 ? "s" : ""} above); nothing was applied`,
  );
}

export async function applyCommand(file: string, o: RemoteFlags & { actions?: string[] }): Promise<number> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new SluiceError(
      "FILE_NOT_FOUND",
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`,
    );
  }
  const a = await callServer(o, "POST", "/api/v1/workflows", text, "application/yaml");
  if (a) {
    if (a.status === 422)
      printProblems(
        (a.body.error?.problems ?? []).map((p) => ({ ...p, file })),
        file,
      );
    if (a.status >= 400) throw serverError(a);
    printApplied(a.body.applied ?? [], "(through the server)");
    return 0;
  }
  const actions = await loadActions(o.actions);
  return withStore(async (store) => {
    const r = await applyWorkflowText(store, actions, text, file, resolve(file));
    if (!r.ok) printProblems(r.problems, file);
    printApplied(r.applied, "(in the store; no server answered)");
    return 0;
  });
}

export async function rollbackCommand(name: string, o: RemoteFlags & { to?: string }): Promise<number> {
  const to = o.to === undefined ? undefined : Number(o.to);
  if (to !== undefined && !Number.isInteger(to)) throw new SluiceError("USAGE", `--to takes a version number, not "${o.to}"`);
  const a = await callServer(o, "POST", `/api/v1/workflows/${encodeURIComponent(name)}/rollback`, to === undefined ? {} : { to });
  let version: number;
  if (a) {
    if (a.status >= 400) throw serverError(a);
    version = a.body.version as number;
  } else version = (await withStore((store) => rollbackWorkflow(store, name, to))).version;
  process.stdout.write(`workflow ${name} is at version ${version} again\n`);
  return 0;
}

export async function emitCommand(event: string, o: RemoteFlags & { data?: string }): Promise<number> {
  let data: unknown = {};
  if (o.data !== undefined) {
    try {
      data = JSON.parse(o.data);
    } catch (err) {
      throw new SluiceError("USAGE", `--data is not valid JSON: ${(err as Error).message}`);
    }
  }
  const a = await callServer(o, "POST", "/api/v1/events", { name: event, data });
  let id: string;
  let runs: string[];
  let refused: { workflow: string; message: string }[];
  let via: string;
  if (a) {
    if (a.status >= 400) throw serverError(a);
    runs = a.body.runs ?? [];
    refused = a.body.refused ?? [];
    id = a.body.event?.id as string;
    via = "";
  } else {
    const r = await withStore((store) => emitEvent(store, { name: event, data, source: "cli" }));
    id = r.event.id;
    runs = r.runs.map((x) => x.id);
    refused = r.refused;
    via = runs.length ? " (queued in the store; no server answered, so they start when a worker runs)" : "";
  }
  process.stdout.write(
    `event ${event} recorded as ${id}; ${runs.length ? `started ${runs.length} run${runs.length > 1 ? "s" : ""}: ${runs.join(" ")}${via}` : "no workflow is triggered by it"}\n`,
  );
  for (const f of refused) process.stderr.write(`sluice: ${f.workflow} not started: ${f.message}\n`);
  return 0;
}

/**
 * The fault harness of issue 11, shared by its test files: flaky trade APIs (src/samples/flaky-api.ts,
 * real HTTP on 127.0.0.1), the built CLI run as a child process (the APIs live in this process,
 * whose event loop must keep serving while the child runs), the standard workflow failing first,
 * the resilient-fetch workflow after it, and readers for what they leave: the run documents, the
 * decision record, the warehouse and its lineage table.
 */
import Database from "better-sqlite3";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { startFlakyApi, type FlakyApi, type FlakyStats } from "../../src/samples/flaky-api.js";
import type { DecisionRecord, FailureAnalysis, SourceRanking } from "../../src/actions/recovery/contract.js";
import { BIN, ROOT, type CliResult } from "../cli/cli-helpers.js";

export const STANDARD = join(ROOT, "workflows", "base-data-ingestion-workflow-standard-ingestion.yaml");
export const RECOVERY = join(ROOT, "workflows", "base-data-ingestion-workflow-resilient-fetch.yaml");
export const TRADES_SCHEMA = join(ROOT, "examples", "schemas", "flaky-api-trades.yaml");
export const PG_URL = "postgres://postgres@127.0.0.1:5432/test";

export interface RunDoc {
  id: string;
  workflow: string;
  status: string;
  startedAt: string | null;
  endedAt: string | null;
  error: { code: string; message: string } | null;
  steps: {
    name: string;
    status: string;
    outputs: Record<string, unknown> | null;
    error: { code: string; message: string } | null;
    attempts: { n: number; status: string; startedAt: string; endedAt: string | null; error: { code: string; message: string } | null }[];
  }[];
}

/** The built CLI, to its end, in `cwd` with SLUICE_HOME under it; the caller's event loop keeps running. */
export function cli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...process.env, SLUICE_HOME: join(cwd, ".sluice"), CI: "true", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  return new Promise((res) => child.once("close", (code) => res({ code: code ?? -1, stdout, stderr })));
}

/** `sluice run FILE --param … --json`: the finished run's document (and how long it took). */
export async function runJson(file: string, params: Record<string, string | undefined>, cwd: string): Promise<RunDoc & { ms: number; stderr: string }> {
  const args = ["run", file, "--json"];
  for (const [k, v] of Object.entries(params)) if (v !== undefined) args.push("--param", `${k}=${v}`);
  const t0 = Date.now();
  const r = await cli(args, cwd);
  const ms = Date.now() - t0;
  let doc: RunDoc;
  try {
    doc = JSON.parse(r.stdout) as RunDoc;
  } catch {
    throw new Error(`sluice ${args.join(" ")} printed no run document (exit ${r.code}):\n${r.stderr}`);
  }
  return { ...doc, ms, stderr: r.stderr };
}

/** The standard workflow against an API, with the flaky API's schema (its other params as given). */
export function standardRun(cwd: string, source: string, params: Record<string, string> = {}, file = STANDARD) {
  return runJson(file, { source, schema: TRADES_SCHEMA, ...params }, cwd);
}

/** The resilient-fetch workflow. */
export function recoveryRun(cwd: string, params: Record<string, string | undefined>) {
  return runJson(RECOVERY, params, cwd);
}

/**
 * The standard workflow with its collection's step timeout shortened (the only knob a hang
 * needs that its params do not reach: the HTTP timeout is 30 s and the step's 30m), written
 * beside the test; everything else is the file as shipped.
 */
export function standardWithCollectionTimeout(cwd: string, timeout: string): string {
  const doc = parse(readFileSync(STANDARD, "utf8")) as { spec: { steps: { name: string; timeout?: string }[] } };
  doc.spec.steps.find((s) => s.name === "data-collection")!.timeout = timeout;
  const path = join(cwd, "standard-ingestion.yaml");
  writeFileSync(path, stringify(doc));
  return path;
}

export const step = (doc: RunDoc, name: string) => {
  const s = doc.steps.find((x) => x.name === name);
  if (!s) throw new Error(`run ${doc.id} has no step ${name}`);
  return s;
};
export const outputs = (doc: RunDoc, name: string) => step(doc, name).outputs ?? {};
const readJson = <T>(path: unknown): T => JSON.parse(readFileSync(String(path), "utf8")) as T;
export const decisionOf = (doc: RunDoc) => readJson<DecisionRecord>(outputs(doc, "recovery-strategy-selection").decision);
export const analysisOf = (doc: RunDoc) => readJson<FailureAnalysis>(outputs(doc, "failure-analysis").analysis);
export const rankingOf = (doc: RunDoc) => readJson<SourceRanking>(outputs(doc, "alternative-source-discovery").sources);

/** Flaky APIs started by a test file, closed in its afterAll. */
export function flakyApis() {
  const open: FlakyApi[] = [];
  return {
    async start(plan = "", asOf?: string): Promise<FlakyApi> {
      const api = await startFlakyApi({ plan, ...(asOf ? { asOf } : {}) });
      open.push(api);
      return api;
    },
    closeAll: () => Promise.all(open.map((a) => a.close())),
  };
}

/** Requests of page `p` between two stats snapshots. */
export const pageRequests = (after: FlakyStats, before: FlakyStats | undefined, p: number) => (after.pages[p] ?? 0) - (before?.pages[p] ?? 0);

/** The embedded warehouse of a test's home (read only). */
export function warehouse(cwd: string): Database.Database {
  return new Database(join(cwd, ".sluice", "warehouse.db"), { readonly: true });
}

/** Rows, distinct keys and, per source of the lineage table, the key range it provided. */
export function tableFacts(db: Database.Database, table = "trades") {
  const rows = db.prepare(`select count(*) as n, count(distinct trade_id) as d, min(trade_id) as lo, max(trade_id) as hi from "${table}"`).get() as {
    n: number;
    d: number;
    lo: number;
    hi: number;
  };
  const lineage = db
    .prepare(
      `select source, count(*) as n, count(distinct trade_id) as d, min(trade_id) as lo, max(trade_id) as hi from "${table}_lineage" group by source order by lo`,
    )
    .all() as { source: string; n: number; d: number; lo: number; hi: number }[];
  return { rows, lineage };
}

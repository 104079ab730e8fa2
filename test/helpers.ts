/**
 * Shared test scaffolding: a temporary Sluice home with a real SQLite store, workflows written
 * inline, and in-process test actions whose behaviour the test controls.
 */
import { afterAll, afterEach, expect } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { SluiceError } from "../src/errors.js";
import { createRegistry, type ActionRegistry } from "../src/actions/registry.js";
import { defineAction, type ActionContext, type ActionDefinition, type AuditRecord, type AuditTrail, type SharedState } from "../src/actions/types.js";
import { builtinRegistry } from "../src/actions/builtin.js";
import { createRun, executeRun, type createLimiter, type EngineEvent } from "../src/engine/index.js";
import { loadWorkflowText } from "../src/spec/load.js";
import type { Workflow } from "../src/spec/schema.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import type { RunRecord, StateStore } from "../src/store/types.js";
import { stringify } from "yaml";
import { startFlakyApi, type FlakyApi } from "../src/samples/flaky-api.js";

export interface TestEnv {
  home: string;
  store: StateStore;
  actions: ActionRegistry;
  cleanup(): Promise<void>;
}

export function tempDir(prefix = "sluice-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A maker of temporary folders, all removed after the calling test file's tests. */
export function scratch(): (prefix: string) => string {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return (prefix) => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d;
  };
}

/**
 * A temporary home, the test actions plus `extra`, and a store: a fresh SQLite file, or
 * `opts.store` (already open, e.g. PostgreSQL) which cleanup leaves open for its owner to close.
 */
export function testEnv(extra: ActionDefinition[] = [], opts: { store?: StateStore } = {}): TestEnv {
  const home = tempDir();
  const store = opts.store ?? openSqliteStore(join(home, "sluice.db"));
  const actions = builtinRegistry();
  for (const d of [...testActions(), ...extra]) actions.register(d);
  return {
    home,
    store,
    actions,
    async cleanup() {
      if (!opts.store) await store.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

const abortable = (ms: number, signal: AbortSignal) =>
  new Promise<void>((res, rej) => {
    const t = setTimeout(res, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), rej(signal.reason)), { once: true });
  });

/** Actions under `agent: test` for engine tests. */
export function testActions(): ActionDefinition[] {
  return [
    defineAction({
      kind: "agent",
      owner: "test",
      action: "sleep",
      description: "wait, honouring the abort signal",
      input: z.object({ ms: z.number().int().min(0) }).strict(),
      run: async ({ ms }, ctx) => (await abortable(ms, ctx.signal), { slept: ms }),
    }),
    defineAction({
      kind: "agent",
      owner: "test",
      action: "echo",
      description: "return the value",
      input: z.object({ value: z.unknown() }).strict(),
      run: async ({ value }) => ({ value }),
    }),
    defineAction({
      kind: "agent",
      owner: "test",
      action: "flaky",
      description: "fail the first `failures` attempts",
      input: z.object({ failures: z.number().int(), retryable: z.boolean().default(true) }).strict(),
      run: async ({ failures, retryable }, ctx) => {
        if (ctx.attempt <= failures) {
          const { SluiceError } = await import("../src/errors.js");
          throw new SluiceError(retryable ? "NETWORK_ERROR" : "BAD_INPUT", `planned failure on attempt ${ctx.attempt}`, { retryable });
        }
        return { attempt: ctx.attempt };
      },
    }),
    defineAction({
      kind: "agent",
      owner: "test",
      action: "hang",
      description: "never finish and ignore the signal",
      input: z.object({}).strict(),
      run: () => new Promise(() => undefined),
    }),
  ];
}

/** A workflow from a compact object: only spec fields, metadata filled in. */
export function workflow(spec: Record<string, unknown>, actions: ActionRegistry = testActionsLookup, name = "test-flow"): Workflow {
  const text = stringify({ apiVersion: "sluice.dev/v1alpha1", kind: "Workflow", metadata: { name }, spec });
  const { workflows, problems } = loadWorkflowText(text, "inline.yaml", { actions });
  if (problems.length) throw new Error(problems.map((p) => `${p.line}:${p.col} ${p.message}`).join("\n"));
  return workflows[0]!.workflow;
}

const testActionsLookup = (() => {
  const r = createRegistry([...builtinRegistry().all(), ...testActions()]);
  return r;
})();

export async function runWorkflow(
  env: TestEnv,
  wf: Workflow,
  opts: { params?: Record<string, unknown>; limiter?: ReturnType<typeof createLimiter>; events?: EngineEvent[]; signal?: AbortSignal } = {},
): Promise<RunRecord> {
  const run = await createRun(env.store, { workflow: wf, params: opts.params ?? {} });
  return executeRun(run.id, {
    store: env.store,
    actions: env.actions,
    home: env.home,
    limiter: opts.limiter,
    signal: opts.signal,
    onEvent: (e) => opts.events?.push(e),
  });
}

/** An action that records how many of its kind run at once. */
export function concurrencyProbe() {
  const state = { now: 0, max: 0, order: [] as string[] };
  const def = defineAction({
    kind: "agent",
    owner: "probe",
    action: "work",
    description: "count concurrent runs",
    input: z.object({ ms: z.number(), tag: z.string().optional() }).strict(),
    run: async ({ ms, tag }, ctx) => {
      state.now++;
      state.max = Math.max(state.max, state.now);
      state.order.push(`start:${tag ?? ctx.step}`);
      await new Promise((r) => setTimeout(r, ms));
      state.order.push(`end:${tag ?? ctx.step}`);
      state.now--;
      return { tag: tag ?? ctx.step };
    },
  });
  return { state, def };
}

/** The error a promise rejects with (a SluiceError unless `kind` says otherwise); fails the test when it resolves or throws something else. */
export async function failure<E extends Error = SluiceError>(
  p: Promise<unknown>,
  kind: abstract new (...args: never[]) => E = SluiceError as never,
): Promise<E> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(kind);
    return err as E;
  }
  throw new Error("expected a failure");
}

/** Shared state in memory, with the store's compare-and-set semantics (for unit tests of actions). */
export function memoryState(): SharedState {
  const entries = new Map<string, { value: unknown; version: number; updatedAt: string }>();
  return {
    get: async (ns, key) => structuredClone(entries.get(`${ns}\u0000${key}`)),
    async put(ns, key, value, expected) {
      const now = entries.get(`${ns}\u0000${key}`);
      if ((now?.version ?? 0) !== expected) return null;
      entries.set(`${ns}\u0000${key}`, { value: structuredClone(value), version: expected + 1, updatedAt: new Date().toISOString() });
      return expected + 1;
    },
    list: async (ns) =>
      [...entries]
        .filter(([k]) => k.startsWith(`${ns}\u0000`))
        .map(([k, v]) => ({ key: k.slice(ns.length + 1), ...structuredClone(v) }))
        .sort((a, b) => a.key.localeCompare(b.key)),
  };
}

/** An audit trail in memory (for unit tests of actions): the entries appended, in order; `fail` makes every write throw. */
export function memoryAudit(opts: { fail?: boolean } = {}): AuditTrail & { entries: AuditRecord[] } {
  const entries: AuditRecord[] = [];
  return {
    entries,
    async append(e) {
      if (opts.fail) throw new SluiceError("AUDIT_FAILED", `the audit entry ${e.event} could not be written: the test trail refuses writes`);
      entries.push(structuredClone(e));
    },
  };
}

/**
 * A context for calling an action function directly (unit tests of actions): quiet log, no
 * ledger memory, events refused; `over` replaces any of it.
 */
export function actionContext(over: Partial<ActionContext> & { artifactsDir: string }): ActionContext {
  const noop = () => undefined;
  return {
    runId: "r-test",
    workflow: "test-flow",
    step: "step",
    attempt: 1,
    signal: new AbortController().signal,
    home: over.artifactsDir,
    params: {},
    log: { info: noop, warn: noop, error: noop },
    ledger: { seen: async () => new Set<string>(), record: async () => undefined, rejected: async () => new Map(), reject: async () => undefined },
    state: memoryState(),
    history: { runs: async () => [], run: async () => undefined },
    progress: noop,
    publish: async () => {
      throw new SluiceError("NOT_IMPLEMENTED", "this test context publishes no events");
    },
    audit: memoryAudit(),
    ...over,
  };
}

/** Poll `cond` every 20 ms until it holds; fail the test with `what` after `ms`. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Flaky API servers (src/samples/flaky-api.ts) started by a test file, all closed after each test:
 * `const serve = flakyApis(); … const api = await serve("fail status=503 pages=4-")`.
 */
export function flakyApis(): (plan: string) => Promise<FlakyApi> {
  const open: FlakyApi[] = [];
  afterEach(async () => {
    for (const api of open.splice(0)) await api.close();
  });
  return async (plan) => {
    const api = await startFlakyApi({ plan });
    open.push(api);
    return api;
  };
}

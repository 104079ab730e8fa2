/**
 * One attempt of one step: resolve its inputs, run it under its timeout, classify the outcome.
 */
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname, join } from "node:path";
import { SluiceError, toErrorInfo } from "../errors.js";
import { evaluate, type ExpressionScope } from "../spec/expressions.js";
import { parseDuration } from "../spec/duration.js";
import type { ExecSpec, Step } from "../spec/schema.js";
import type { ActionRegistry } from "../actions/registry.js";
import { runExec } from "../actions/exec.js";
import { attemptLogFile } from "./attempt-log.js";
import type { ActionContext, ActionLog, Outputs, ProgressUpdate, PublishEvent } from "../actions/types.js";
import type { AttemptUsage, AuditStore, ErrorInfo, RunRecord, LedgerStore, RunStore, SharedStateStore } from "../store/types.js";
import { maskSecrets } from "../crypto/masker.js";
import { auditTrailOf } from "./audit.js";
import { runHistoryOf, sharedStateOf } from "./history.js";
import type { TreeUsage } from "../actions/exec.js";
import { trackProcessUsage } from "./usage.js";

export interface AttemptInput {
  run: RunRecord;
  step: Step;
  attempt: number;
  /** Aborted when the whole run stops (cancel, run timeout, detach, lost lease). */
  runSignal: AbortSignal;
  actions: ActionRegistry;
  store: RunStore & LedgerStore & SharedStateStore & AuditStore;
  home: string;
  /** Called after each audit entry the action writes (the run then ends with a signed checkpoint). */
  onAudit?: () => void;
  outputsOf(step: string): Record<string, unknown> | undefined;
  onProgress?: (update: ProgressUpdate) => void;
  /** Warnings the action logs, besides the attempt log (shown by `sluice run`, logged by services). */
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
  publish: PublishEvent;
  /** The item of a fan-out this attempt runs (`${{ item }}`, `${{ index }}`). */
  item?: { value: unknown; index: number };
  /** The run's outcome, for finally steps (`${{ run.status }}`). */
  runStatus?: string;
  /** Runs a `workflow:` step (a child run); given by the engine, which owns run execution. */
  runChild?: (signal: AbortSignal, scope: ExpressionScope) => Promise<Outputs>;
}

export type AttemptResult = (
  | { status: "succeeded"; outputs: Outputs; error: null; retryable: false }
  | { status: "failed" | "timedOut" | "cancelled"; outputs: null; error: ErrorInfo; retryable: boolean }
  | { status: "interrupted"; outputs: null; error: ErrorInfo; retryable: false }
) & {
  /** What the attempt consumed (see usage.ts, actions/exec-usage.ts); null where it cannot be measured. */
  usage?: AttemptUsage | null;
};

export async function runStepAttempt(input: AttemptInput): Promise<AttemptResult> {
  const { run, step } = input;
  const controller = new AbortController();
  const timeoutMs = step.timeout ? parseDuration(step.timeout)! : null;
  const onRunAbort = () => controller.abort(input.runSignal.reason);
  if (input.runSignal.aborted) onRunAbort();
  else input.runSignal.addEventListener("abort", onRunAbort, { once: true });
  const timer =
    timeoutMs === null
      ? undefined
      : setTimeout(() => controller.abort(new SluiceError("TIMEOUT", `step ${step.name} did not finish within its timeout of ${step.timeout}`)), timeoutMs);
  const logFile = attemptLogFile(input.home, run.id, step.name, input.attempt);
  const file = lazyLog(logFile);
  const log = input.onWarning ? { ...file, warn: (m: string, f?: Record<string, unknown>) => (file.warn(m, f), input.onWarning!(m, f)) } : file;
  // An exec step's program is measured on its own; an in-process action only as the whole process.
  let execUsage: (() => TreeUsage) | undefined;
  const processUsage = step.exec ? undefined : trackProcessUsage();
  const usage = (): AttemptUsage | null => {
    if (processUsage) return processUsage();
    return execUsage ? { ...execUsage(), scope: "process-tree" } : null;
  };

  try {
    const outputs = await untilAborted(
      perform(input, controller.signal, logFile, log, (read) => (execUsage = read)),
      controller.signal,
    );
    return { status: "succeeded", outputs, error: null, retryable: false, usage: usage() };
  } catch (err) {
    const reason = controller.signal.aborted ? controller.signal.reason : err;
    const info = toErrorInfo(reason);
    // What the store records: the code, the sentence and the evidence the error carried, with
    // every secret value this process resolved masked out.
    const error: ErrorInfo = maskedError({ code: info.code, message: info.message, ...(info.details ? { details: info.details } : {}) });
    if (controller.signal.aborted) {
      if (info.code === "TIMEOUT") return { status: "timedOut", outputs: null, error, retryable: true, usage: usage() };
      if (info.code === "INTERRUPTED" || info.code === "LEASE_LOST") return { status: "interrupted", outputs: null, error, retryable: false, usage: usage() };
      return { status: "cancelled", outputs: null, error, retryable: false, usage: usage() };
    }
    log.error(info.message, { code: info.code, ...(info.details ? { details: info.details } : {}) });
    return { status: "failed", outputs: null, error, retryable: info.retryable, usage: usage() };
  } finally {
    processUsage?.();
    clearTimeout(timer);
    input.runSignal.removeEventListener("abort", onRunAbort);
    await log.close();
  }
}

async function perform(
  input: AttemptInput,
  signal: AbortSignal,
  logFile: string,
  log: ActionLog & { close(): Promise<void> },
  onUsage: (read: () => TreeUsage) => void,
): Promise<Outputs> {
  const { run, step } = input;
  const scope = expressionScope(input);

  if (step.workflow !== undefined) {
    if (!input.runChild) throw new SluiceError("INTERNAL", `step ${step.name} calls a workflow, but this engine cannot start child runs`);
    return input.runChild(signal, scope);
  }

  if (step.exec) {
    const exec = execText(evaluate(step.exec, scope) as ExecSpec);
    return runExec(exec, {
      signal,
      logFile,
      baseDir: process.cwd(),
      extraEnv: { SLUICE_RUN_ID: run.id, SLUICE_STEP: step.name, SLUICE_ATTEMPT: String(input.attempt) },
      usage: onUsage,
    });
  }

  const call = prepareActionCall(input, signal, log, scope);
  const outputs = await call.def.run(call.input, call.ctx);
  if (outputs === null || typeof outputs !== "object" || Array.isArray(outputs))
    throw new SluiceError("ACTION_FAILED", `${call.name} returned ${JSON.stringify(outputs)}, not an outputs object`);
  return outputs;
}

/** Command lines and environments are text: a number or a list from an expression is written out. */
function execText(exec: ExecSpec): ExecSpec {
  const text = (v: unknown) => (typeof v === "string" ? v : v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  return {
    ...exec,
    command: exec.command.map(text),
    ...(exec.args ? { args: exec.args.map(text) } : {}),
    ...(exec.env ? { env: Object.fromEntries(Object.entries(exec.env).map(([k, v]) => [k, text(v)])) } : {}),
  };
}

/** The scope `${{ }}` expressions of a step see: params, upstream outputs, the event, the run. */
export function expressionScope(input: Pick<AttemptInput, "run" | "outputsOf" | "item" | "runStatus">): ExpressionScope {
  const { run } = input;
  return {
    params: run.params,
    steps: new Proxy({} as ExpressionScope["steps"], {
      get: (_t, name: string) => ({ outputs: input.outputsOf(name) }),
    }),
    event: run.trigger?.type === "event" ? { data: run.trigger.data } : undefined,
    run: { id: run.id, workflow: run.workflow, ...(input.runStatus !== undefined ? { status: input.runStatus } : {}) },
    ...(input.item ? { item: input.item.value, index: input.item.index } : {}),
  };
}

/**
 * An agent or service step, ready to call: its action definition, its `with:` inputs evaluated
 * and validated against the action's schema, and the context the action runs with.
 */
export function prepareActionCall(input: AttemptInput, signal: AbortSignal, log: ActionLog, scope = expressionScope(input)) {
  const { run, step } = input;
  const kind = step.agent !== undefined ? "agent" : "service";
  const owner = (step.agent ?? step.service)!;
  const name = `${owner}/${step.action}`;
  const def = input.actions.get(kind, owner, step.action!);
  if (!def) throw new SluiceError("BAD_CONFIG", `no action ${name} is registered in this process`);
  const raw = evaluate(step.with ?? {}, scope);
  const parsed = def.input.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    const where = first.path.length ? `input "${first.path.join(".")}"` : "inputs";
    throw new SluiceError("BAD_INPUT", `${where} of ${name}: ${first.message}`);
  }
  const ctx: ActionContext = {
    runId: run.id,
    workflow: run.workflow,
    step: step.name,
    attempt: input.attempt,
    signal,
    artifactsDir: join(input.home, "runs", run.id, "artifacts"),
    home: input.home,
    params: run.params,
    log,
    progress: input.onProgress ?? (() => undefined),
    publish: input.publish,
    audit: auditTrailOf(input.store, run, step.name, input.onAudit),
    state: sharedStateOf(input.store),
    history: runHistoryOf(input.store),
    ledger: {
      seen: (scope, checksums) => input.store.ingestedChecksums(scope, checksums),
      record: (scope, files) => input.store.recordIngested(scope, files, run.id),
      rejected: async (scope, checksums) =>
        new Map(
          (await input.store.rejectedFiles(scope, checksums)).map((r) => [
            r.checksum,
            { checksum: r.checksum, path: r.path, reason: r.reason, since: r.rejectedAt },
          ]),
        ),
      reject: (scope, files) => input.store.recordRejected(scope, files, run.id),
    },
  };
  return { def, name, input: parsed.data as unknown, ctx };
}

/**
 * Settle as soon as the signal aborts, even if the work ignores it: an in-process action that
 * never checks its signal must not hold the run past its timeout.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => (signal.removeEventListener("abort", onAbort), resolve(v)),
      (e) => (signal.removeEventListener("abort", onAbort), reject(e)),
    );
  });
}

/** An error as the store keeps it, with registered secret values masked in its sentence and evidence. */
function maskedError(e: ErrorInfo): ErrorInfo {
  try {
    return JSON.parse(maskSecrets(JSON.stringify(e))) as ErrorInfo;
  } catch {
    return { code: e.code, message: maskSecrets(e.message) }; // the evidence rather than a secret
  }
}

/** Attempt log lines as JSON (secret values masked), in a file opened only when something is logged. */
export function lazyLog(file: string): ActionLog & { close(): Promise<void> } {
  let stream: WriteStream | undefined;
  const write = (level: string, message: string, fields?: Record<string, unknown>) => {
    if (!stream) {
      mkdirSync(dirname(file), { recursive: true });
      stream = createWriteStream(file, { flags: "a" });
    }
    stream.write(maskSecrets(JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields })) + "\n");
  };
  return {
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
    close: () => new Promise<void>((r) => (stream ? stream.end(r) : r())),
  };
}

/**
 * A pool of worker threads for the batch actions: each worker takes the next unit of a plan as
 * soon as it finishes one, so a few big units and many small ones balance by themselves.
 *
 * Protocol (structured-cloned messages):
 *   main → worker  { type: "unit", unit }
 *   worker → main  { type: "progress", id, rows, bytes } | { type: "done", id, result } | { type: "failed", id, code, message }
 * A crashed worker fails its unit and is replaced; on abort every worker is terminated and the
 * pool rejects with the signal's reason. `serveUnits` is the worker side of the protocol.
 *
 * Threads, not processes: a unit's result is small (counts and file names) while its data goes
 * to files, so nothing large crosses the thread boundary; and the pool is capped at the CPU
 * count by its callers (10 threads on 2 cores measured half the speed of 2).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parentPort, Worker, workerData } from "node:worker_threads";
import { SluiceError } from "../../errors.js";

export interface PoolUnit {
  /** Index in the plan; results are put back in this order by the caller. */
  id: number;
}

export type FromWorker<R> =
  | { type: "progress"; id: number; rows: number; bytes: number }
  | { type: "done"; id: number; result: R }
  | { type: "failed"; id: number; code: string; message: string; details?: Record<string, unknown> };

export interface PoolHandlers<U extends PoolUnit, R> {
  /** True for a unit that should not start (its file already failed). */
  skip?(unit: U): boolean;
  progress?(id: number, rows: number, bytes: number): void;
  done(unit: U, result: R): void;
  /** `details`: the error's evidence when it had any (a missing column's name …), for the step's own error. */
  failed(unit: U, reason: string, code: string, details?: Record<string, unknown>): void;
}

/**
 * Heap limits of a worker. A unit holds one read batch and a 1 MB write buffer at a time, but
 * V8 lets an old generation grow to hundreds of MB before collecting it: capping it keeps the
 * process's peak RSS near what the work needs (env SLUICE_WORKER_HEAP_MB to change).
 */
const LIMITS = { maxOldGenerationSizeMb: Number(process.env.SLUICE_WORKER_HEAP_MB ?? 128) };

/** Marks a worker started by this pool (and not a module merely imported in some thread). */
const WORKER_MARK = "sluicePoolWorker";

/**
 * The compiled worker entry `name` (e.g. "convert-worker.js") next to this module. Under vitest
 * this module runs from TypeScript source, but a worker thread cannot load `.ts` on Node 20
 * without a loader, so the worker comes from the compiled tree (`npm run build` first).
 */
export function compiledWorker(name: string): URL {
  const here = import.meta.url;
  if (!here.endsWith(".ts")) return new URL(`./${name}`, here);
  const compiled = new URL(`../../../dist/actions/batch/${name}`, here);
  if (!existsSync(compiled))
    throw new SluiceError(
      "INTERNAL",
      `the worker ${fileURLToPath(compiled)} is missing; run "npm run build" first (worker threads run the compiled JavaScript)`,
    );
  return compiled;
}

/**
 * `heapMb`: the workers' old-generation cap (default LIMITS); a caller whose unit holds more than
 * one batch at a time (the schema inference's sample) gives its own.
 */
export function runPool<U extends PoolUnit, R>(
  units: readonly U[],
  size: number,
  entry: URL,
  signal: AbortSignal,
  on: PoolHandlers<U, R>,
  opts: { heapMb?: number } = {},
): Promise<void> {
  const limits = opts.heapMb === undefined ? LIMITS : { maxOldGenerationSizeMb: opts.heapMb };
  return new Promise<void>((resolvePool, rejectPool) => {
    const live = new Set<Worker>();
    // Workers told to stop because the plan ran out: the pool settles only once they are gone, so
    // the next step does not start while their heaps are still resident (its own memory would
    // add to theirs in the process's peak).
    const stopping: Promise<number>[] = [];
    let next = 0;
    let running = 0;
    let settled = false;

    const settle = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      const all = [...live];
      live.clear();
      void Promise.allSettled([...all.map((w) => w.terminate()), ...stopping]).then(() => (err === undefined ? resolvePool() : rejectPool(err)));
    };
    const onAbort = (): void => settle(signal.reason ?? new SluiceError("CANCELLED", "the step was cancelled"));
    signal.addEventListener("abort", onAbort, { once: true });

    const takeNext = (): U | undefined => {
      while (next < units.length) {
        const u = units[next++]!;
        if (!on.skip?.(u)) return u;
      }
      return undefined;
    };

    const spawn = (): void => {
      const first = takeNext();
      if (!first) return;
      const worker = new Worker(entry, { workerData: { [WORKER_MARK]: 1 }, resourceLimits: limits });
      live.add(worker);
      let current: U | undefined;
      let crash: string | undefined;
      const give = (u: U | undefined): void => {
        current = u;
        if (!u) {
          live.delete(worker);
          stopping.push(worker.terminate());
          if (running === 0) settle();
          return;
        }
        running++;
        worker.postMessage({ type: "unit", unit: u });
      };
      worker.on("message", (msg: FromWorker<R>) => {
        if (settled || !current || msg.id !== current.id) return;
        if (msg.type === "progress") {
          on.progress?.(msg.id, msg.rows, msg.bytes);
          return;
        }
        const u = current;
        running--;
        try {
          if (msg.type === "done") on.done(u, msg.result);
          else on.failed(u, msg.message, msg.code, msg.details);
        } catch (err) {
          settle(err);
          return;
        }
        give(takeNext());
      });
      worker.on("error", (err) => {
        crash = err.message;
      });
      worker.on("exit", (code) => {
        if (settled || !live.has(worker)) return;
        live.delete(worker);
        if (current) {
          running--;
          on.failed(current, `the worker reading it crashed: ${crash ?? `exit code ${code}`}`, "INTERNAL");
          current = undefined;
        }
        if (next < units.length) spawn();
        if (running === 0 && live.size === 0) settle();
      });
      give(first);
    };

    if (signal.aborted) return onAbort();
    for (let i = 0; i < size && next < units.length; i++) spawn();
    if (running === 0 && live.size === 0) settle();
  });
}

/** Progress reports from a worker, at most this often. */
const PROGRESS_EVERY_MS = 100;

/**
 * The worker side: when this thread was started by `runPool`, process each unit with `work` and
 * answer with its result or failure. Returns without doing anything in any other thread.
 */
export function serveUnits<U extends PoolUnit, R>(work: (unit: U, progress: (rows: number, bytes: number) => void) => Promise<R>): void {
  const port = parentPort;
  if (!port || (workerData as Record<string, unknown> | null)?.[WORKER_MARK] !== 1) return;
  port.on("message", (msg: { type: string; unit: U }) => {
    if (msg.type !== "unit") return;
    const { unit } = msg;
    let last = 0;
    const progress = (rows: number, bytes: number): void => {
      const now = Date.now();
      if (now - last < PROGRESS_EVERY_MS) return;
      last = now;
      port.postMessage({ type: "progress", id: unit.id, rows, bytes } satisfies FromWorker<R>);
    };
    work(unit, progress).then(
      (result) => port.postMessage({ type: "done", id: unit.id, result } satisfies FromWorker<R>),
      (err: unknown) => {
        const e = err as { code?: unknown; message?: unknown; details?: unknown };
        const details = e?.details && typeof e.details === "object" ? (e.details as Record<string, unknown>) : undefined;
        port.postMessage({
          type: "failed",
          id: unit.id,
          code: typeof e?.code === "string" ? e.code : "IO_ERROR",
          message: typeof e?.message === "string" ? e.message : String(err),
          ...(details ? { details } : {}),
        } satisfies FromWorker<R>);
      },
    );
  });
}

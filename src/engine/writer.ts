/**
 * Group commit for step transitions.
 *
 * Transitions queue up while the previous batch is being committed and then go in together, in
 * order, as one transaction. Two things follow:
 * - a step's end and the start of the step it releases share one commit (the driver queues the
 *   end, releases dependents, and their begins join the same batch), so a sequential chain costs
 *   one commit per step instead of two;
 * - many steps ending at once (a fan-out, many runs in one worker) share commits, so throughput
 *   is not bounded by commit latency.
 * The order of the queue is the order of the history: a begin queued after an end never lands
 * without it. An attempt still runs only once its begin has committed.
 *
 * A batch that fails is retried one transition at a time, so a run that lost its lease
 * (LEASE_LOST) fails its own transitions only, not those of other runs in the same batch.
 */
import type { Transition, RunStore } from "../store/types.js";

export interface TransitionWriter {
  write(op: Transition): Promise<void>;
  /** Resolves when everything queued so far has been committed (or failed). */
  idle(): Promise<void>;
}

interface Pending {
  op: Transition;
  resolve(): void;
  reject(err: unknown): void;
}

/** Most transitions in one transaction: bounds the statement and the time a batch holds locks. */
const MAX_BATCH = 500;

export function createTransitionWriter(store: RunStore): TransitionWriter {
  let queue: Pending[] = [];
  let flushing: Promise<void> | null = null;
  let scheduled = false;

  const commit = async (batch: Pending[]): Promise<void> => {
    try {
      await store.applyTransitions(batch.map((p) => p.op));
      for (const p of batch) p.resolve();
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      for (const p of batch) {
        try {
          await store.applyTransitions([p.op]);
          p.resolve();
        } catch (e) {
          p.reject(e);
        }
      }
    }
  };

  const flush = async (): Promise<void> => {
    while (queue.length) {
      const batch = queue.length > MAX_BATCH ? queue.splice(0, MAX_BATCH) : queue;
      if (batch === queue) queue = [];
      await commit(batch);
    }
    flushing = null;
  };

  const schedule = () => {
    if (scheduled || flushing) return;
    scheduled = true;
    // After the current turn's microtasks: the driver releases dependents and queues their
    // begins synchronously after queuing an end, and they should join this batch.
    setImmediate(() => {
      scheduled = false;
      if (!flushing) flushing = flush();
    });
  };

  return {
    write(op) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ op, resolve, reject });
        schedule();
      });
    },
    async idle() {
      while (scheduled || flushing || queue.length) {
        if (flushing) await flushing;
        else await new Promise((r) => setImmediate(r));
      }
    },
  };
}

const writers = new WeakMap<RunStore, TransitionWriter>();

/** One writer per store in a process, so every run this process executes shares its commits. */
export function writerFor(store: RunStore): TransitionWriter {
  let w = writers.get(store);
  if (!w) writers.set(store, (w = createTransitionWriter(store)));
  return w;
}

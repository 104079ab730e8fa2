/**
 * What the stream connectors share, so each broker module holds only what is particular to its
 * broker: reconnect backoff and abortable sleeps, waiting for messages without leaking timers or
 * listeners (Notifier, Inbox), publishes awaiting their confirmation (InFlight), and the errors
 * and payload conversions every connector uses.
 */
import { SluiceError } from "../../errors.js";
import type { StreamLog } from "./types.js";

/** The options every connector's `open…Source` and `open…Publisher` take. */
export interface ConnectorOptions {
  log?: StreamLog;
  /** Aborting closes the source. */
  signal?: AbortSignal;
}

/** The name the broker remembers our position under when the config names no `consumer`. */
export const DEFAULT_CONSUMER = "sluice";

// --- backoff and sleeping ----------------------------------------------------------------------

export interface BackoffOptions {
  /** First delay (default 100 ms). */
  baseMs?: number;
  /** Longest delay (default 5 s). */
  maxMs?: number;
}

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential from `baseMs`, capped at
 * `maxMs`, with "equal jitter" (half fixed, half random) so a fleet of sources that lost the same
 * broker does not come back in lockstep, yet no attempt waits less than half its share.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const base = opts.baseMs ?? 100;
  const max = opts.maxMs ?? 5000;
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** The reconnect period of connectors that double it themselves (MQTT, RabbitMQ), with `withJitter`. */
export const RECONNECT_PERIOD: { readonly initialMs: number; readonly maxMs: number } = { initialMs: 100, maxMs: 5_000 };

/** `ms` give or take `jitter` (a fraction: 0.2 is ±20 %), for reconnect periods a connector doubles itself. */
export function withJitter(ms: number, jitter = 0.2): number {
  return Math.round(ms * (1 - jitter + Math.random() * 2 * jitter));
}

/** Sleep `ms`; resolves false (early) when `signal` aborts, true otherwise. Never rejects. */
export function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(
      () => {
        signal?.removeEventListener("abort", onAbort);
        resolve(true);
      },
      Math.max(0, ms),
    );
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// --- waiting for messages ----------------------------------------------------------------------

/**
 * A wake-up flag for "a consumer waits until a producer has something": `wait(ms, signal)`
 * resolves when `notify()` is called, after `ms`, or when `signal` aborts (whichever is first).
 * Every waiter is woken by one notify; waiters re-check their condition.
 */
export class Notifier {
  private waiters = new Set<() => void>();

  notify(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      this.waiters.add(done);
    });
  }

  /**
   * The wait of a `next`: until `ready()` holds (checked again after every notify) or `maxWaitMs`
   * passed; rejects with `cancelledError(what)` when `signal` aborts.
   */
  async until(ready: () => boolean, maxWaitMs: number, signal: AbortSignal, what: string): Promise<void> {
    if (signal.aborted) throw cancelledError(what);
    const deadline = Date.now() + maxWaitMs;
    while (!ready()) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return;
      await this.wait(remaining, signal);
      if (signal.aborted) throw cancelledError(what);
    }
  }
}

/**
 * Messages waiting for `next`, for connectors whose client library pushes messages at us:
 * `next` returns at once when some are there, else waits for the first one, the deadline, the
 * abort signal or a permanent failure (`fail`), after which every `next` rejects with it.
 */
export class Inbox<T> {
  private items: T[] = [];
  private head = 0;
  private readonly arrived = new Notifier();
  private failure: Error | undefined;

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
    this.arrived.notify();
  }

  /** From now on `next` rejects with `err` (the first failure wins). */
  fail(err: Error): void {
    this.failure ??= err;
    this.arrived.notify();
  }

  /** The source `what` closed: `next` rejects with CANCELLED from now on. */
  close(what: string): void {
    this.fail(new SluiceError("CANCELLED", `${what} is closed.`, { retryable: false }));
  }

  /** Remove waiting items for which `drop` is true; returns how many. */
  remove(drop: (item: T) => boolean): number {
    const before = this.size;
    this.items = this.items.slice(this.head).filter((item) => !drop(item));
    this.head = 0;
    return before - this.size;
  }

  /** Drop every waiting item; returns how many. */
  clear(): number {
    const n = this.size;
    this.items = [];
    this.head = 0;
    return n;
  }

  async next(max: number, maxWaitMs: number, signal: AbortSignal, what: string): Promise<T[]> {
    if (this.size === 0 && !this.failure && !signal.aborted && maxWaitMs > 0) await this.arrived.wait(maxWaitMs, signal);
    if (signal.aborted) throw cancelledError(what);
    if (this.failure) throw this.failure;
    const out = this.items.slice(this.head, this.head + Math.max(0, max));
    this.head += out.length;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return out;
  }
}

// --- publishing --------------------------------------------------------------------------------

/**
 * Publishes awaiting the broker's confirmation. `track` keeps each until it settles and remembers
 * the first failure: `check` (in `publish`) throws it, `flush` waits for every publish and then
 * throws it once.
 */
export class InFlight {
  private readonly pending = new Set<Promise<void>>();
  private failure: SluiceError | undefined;

  get size(): number {
    return this.pending.size;
  }

  /** Throw the failure of an earlier publish, if any (it stays for `flush` to report). */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /** Keep `publish` until it settles; `toError` turns its rejection into the failure to report. */
  track(publish: Promise<unknown>, toError: (err: unknown) => SluiceError): void {
    const p: Promise<void> = publish.then(
      () => void this.pending.delete(p),
      (err: unknown) => {
        this.pending.delete(p);
        this.failure ??= toError(err);
      },
    );
    this.pending.add(p);
  }

  /** Wait until fewer than `limit` publishes are in flight (a pipeline window). */
  async below(limit: number): Promise<void> {
    while (this.pending.size >= limit) await Promise.race(this.pending);
  }

  /** Wait for every publish; then throw the first failure, once. */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    if (this.failure) {
      const f = this.failure;
      this.failure = undefined;
      throw f;
    }
  }

  /** Wait for the publishes in flight, whatever their outcome (closing). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }
}

// --- errors and conversions --------------------------------------------------------------------

/** The error `next` rejects with when the caller's signal aborted. */
export function cancelledError(what: string): SluiceError {
  return new SluiceError("CANCELLED", `Waiting for messages from ${what} was cancelled.`, { retryable: false });
}

/** The error raised by calls on a source or publisher after `close()`. */
export function closedError(what: string): SluiceError {
  return new SluiceError("INTERRUPTED", `${what} is closed.`, { retryable: true });
}

/** Message of any thrown value, for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** UTF-8 bytes of a payload given as text or bytes. */
export function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}

/** A payload as a Buffer for the client libraries that want one (bytes are not copied). */
export function toBuffer(data: Uint8Array | string): Buffer {
  return typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** The log of a connector opened without one. */
export const NOOP_LOG: StreamLog = { info() {}, warn() {}, error() {} };

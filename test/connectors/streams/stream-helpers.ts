/**
 * What the stream connector tests share: run-unique names, reading from a source and publishing
 * to a broker, a log that records, hand-over latency, and the broker-restart scenarios.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { expect } from "vitest";
import type { StreamLog, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import type { PrivateBroker } from "./private-brokers.js";

/** A tag unique to this run of a test file, for stream, queue, topic and client names. */
export const runId = (): string => `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;

/** A signal that never aborts. */
export const never: AbortSignal = new AbortController().signal;

export const quiet: StreamLog = { info() {}, warn() {}, error() {} };

/** A log that keeps every message it is given (any level), to check what a source reported. */
export function recordingLog(): StreamLog & { lines: string[] } {
  const lines: string[] = [];
  const keep = (message: string) => void lines.push(message);
  return { lines, info: keep, warn: keep, error: keep };
}

export const text = (m: StreamMessage): string => Buffer.from(m.data).toString();

/** `prefix-0` … `prefix-(n-1)`. */
export const range = (n: number, prefix: string): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** Call `next` until `n` messages arrived or `ms` passed; it never asks for more than are missing. */
export async function collect(source: StreamSource, n: number, ms = 5000): Promise<StreamMessage[]> {
  const out: StreamMessage[] = [];
  const deadline = Date.now() + ms;
  while (out.length < n && Date.now() < deadline) out.push(...(await source.next(n - out.length, Math.max(1, deadline - Date.now()), never)));
  return out;
}

/** Publish `payloads` through a publisher of its own, flush (the broker confirmed every one) and close it. */
export async function publishAll(
  open: (config: StreamSourceConfig) => Promise<StreamPublisher>,
  config: StreamSourceConfig,
  payloads: string[],
  headers?: Record<string, string>,
): Promise<void> {
  const pub = await open(config);
  try {
    for (const p of payloads) await pub.publish(p, headers);
    await pub.flush();
  } finally {
    await pub.close();
  }
}

/**
 * The median time from sending one message (`send`, which may settle only after the
 * acknowledgement) to `next` handing it over, over `rounds` rounds, each acknowledged; logged as
 * `label`. Each `next` is already waiting when the message is sent.
 */
export async function handOverLatency(label: string, source: StreamSource, send: (payload: string) => Promise<unknown>, rounds = 20): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const payload = `lat-${i}`;
    const waiting = source.next(10, 5000, never);
    await sleep(5); // let next start waiting
    const t0 = performance.now();
    const sent = send(payload);
    const msgs = await waiting;
    times.push(performance.now() - t0);
    expect(msgs.map(text)).toEqual([payload]);
    await source.ack(msgs);
    await sent;
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  console.log(`${label} single-message latency (send to next): median ${median.toFixed(2)} ms, max ${times.at(-1)!.toFixed(2)} ms`);
  return median;
}

/** `handOverLatency` of `source` fed by `pub` stays well under 50 ms; both are closed afterwards. */
export async function expectQuickHandOver(label: string, source: StreamSource, pub: StreamPublisher, rounds?: number): Promise<void> {
  try {
    expect(await handOverLatency(label, source, (p) => pub.publish(p), rounds)).toBeLessThan(50);
    await pub.flush();
  } finally {
    await pub.close();
    await source.close();
  }
}

/**
 * A restart of the source's private broker: "a" and "b" are delivered and only "a" acknowledged;
 * the broker stops while `next` waits, stays down `downMs`, and starts again with its data; then
 * "c" is published. The source must hand over "b" again (a redelivery) and "c": it waited through
 * the restart and lost nothing. Returns what came after the restart (acknowledged), in the order
 * it came.
 */
export async function expectRedeliveryAcrossRestart(o: {
  broker: PrivateBroker;
  source: StreamSource;
  publish: (payloads: string[]) => Promise<void>;
  downMs?: number;
  /** How long the source may take to hand over "b" and "c" once the broker is back (default 15 s). */
  waitMs?: number;
}): Promise<StreamMessage[]> {
  await o.publish(["a", "b"]);
  const first = await collect(o.source, 2);
  expect(first.map(text)).toEqual(["a", "b"]);
  await o.source.ack(first.slice(0, 1)); // "b" stays unacknowledged

  await o.broker.stop();
  const waiting = collect(o.source, 2, o.waitMs ?? 15_000);
  waiting.catch(() => undefined); // awaited below; an early failure must not go unhandled
  if (o.downMs) await sleep(o.downMs);
  await o.broker.start();
  await o.publish(["c"]);
  const got = await waiting;
  expect(got.map(text).sort()).toEqual(["b", "c"]);
  expect(got.find((m) => text(m) === "b")!.deliveries).toBe(2);
  await o.source.ack(got);
  return got;
}

/**
 * A restart of the source's private broker while `next` waits: five messages were delivered
 * before it; five are published after it. The source must hand over the five after; all ten are
 * acknowledged (those before the restart either before it or, `ackAfterRestart`, after it: with
 * handles of the old connection) and nothing is left (lag 0).
 */
export async function expectDeliveryAfterRestart(o: {
  broker: PrivateBroker;
  source: StreamSource;
  pub: StreamPublisher;
  ackAfterRestart?: boolean;
}): Promise<void> {
  const sendFive = async (prefix: string) => {
    for (let i = 0; i < 5; i++) await o.pub.publish(`${prefix}${i}`);
    await o.pub.flush();
  };
  await sendFive("before");
  const before = await collect(o.source, 5);
  expect(before).toHaveLength(5);
  if (!o.ackAfterRestart) await o.source.ack(before);

  const waiting = collect(o.source, 5, 15_000);
  waiting.catch(() => undefined); // awaited below; an early failure must not go unhandled
  await o.broker.stop();
  await o.broker.start();

  if (o.ackAfterRestart) await o.source.ack(before);
  await sendFive("after");
  const after = await waiting;
  expect(after.map(text).sort()).toEqual(["after0", "after1", "after2", "after3", "after4"]);
  await o.source.ack(after);
  expect(await o.source.lag!()).toBe(0);
}

/** A TCP proxy to 127.0.0.1:`targetPort`; `cut` drops every connection and refuses new ones until `restore`. */
export async function tcpProxy(targetPort: number): Promise<{ port: number; cut(): void; restore(): void; close(): Promise<void> }> {
  let down = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = createConnection({ host: "127.0.0.1", port: targetPort });
    for (const [s, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(s);
      s.on("error", () => {});
      // A side that closed normally lets the other flush what it still has to write (the pipe
      // ends it): destroying it at once could drop the last packets sent before a clean
      // disconnect (a source's final acknowledgements). Only `cut` and errors tear both down.
      s.on("close", (hadError) => {
        sockets.delete(s);
        if (hadError) other.destroy();
        else other.end();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      down = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `source`, keeping in `seen` every message its `next` hands over. */
export function recording(source: StreamSource, seen: StreamMessage[]): StreamSource {
  return {
    description: source.description,
    async next(max, maxWaitMs, signal) {
      const got = await source.next(max, maxWaitMs, signal);
      seen.push(...got);
      return got;
    },
    ack: (messages) => source.ack(messages),
    close: () => source.close(),
  };
}

/** `seen` holds each payload of `deliveries` that many times, each time under one id, and no two payloads share an id. */
export function expectStableIds(seen: StreamMessage[], deliveries: Record<string, number>): void {
  const ids = new Map<string, Set<string>>();
  for (const m of seen) ids.set(text(m), (ids.get(text(m)) ?? new Set()).add(m.id));
  expect(Object.fromEntries([...ids].map(([t]) => [t, seen.filter((m) => text(m) === t).length]))).toEqual(deliveries);
  expect([...ids.values()].every((set) => set.size === 1)).toBe(true);
  expect(new Set(seen.map((m) => m.id)).size).toBe(ids.size);
}

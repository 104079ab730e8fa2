/**
 * The checks every broker's source must pass the same way, as tests: a broker's test file calls
 * `sourceContract(...)` inside its describe block, with what is particular to the broker (how to
 * open a source and a publisher, its URLs, a broker that refuses the credentials). Every kind of
 * the registry must have a test file that does (test/connectors/streams/registry.test.ts checks).
 */
import { createServer } from "node:net";
import { expect, it } from "vitest";
import type { StreamPublisher, StreamSource, StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { failure } from "../../helpers.js";
import { freePort } from "./private-brokers.js";
import { collect, expectQuickHandOver, handOverLatency, never, publishAll, range, text } from "./stream-helpers.js";

export interface SourceContract {
  /** The broker's kind in the registry. */
  kind: string;
  /** The broker's name, for the latency log. */
  label: string;
  openSource(config: StreamSourceConfig): Promise<StreamSource>;
  openPublisher(config: StreamSourceConfig): Promise<StreamPublisher>;
  /** A config on the shared broker, unique to `tag`. */
  config(tag: string): StreamSourceConfig | Promise<StreamSourceConfig>;
  /** The source's description for `config`. */
  description(config: StreamSourceConfig): string;
  /** Messages in the "every message" test (default 1,200: more than one buffer or prefetch window). */
  count?: number;
  /** `lag()` counts the messages not yet acknowledged (not only those still waiting in the broker). */
  lagCountsUnacknowledged?: boolean;
  /**
   * The broker keeps only what is published to a subscription that exists (MQTT): the source is
   * opened before publishing. Otherwise publishing comes first, so the source must also read what
   * was there before it first opened.
   */
  subscribeFirst?: boolean;
  /**
   * The source is the server producers send to (HTTP push), so: it is opened before publishing;
   * publishing runs alongside the reading, as a producer's send is confirmed only once the source
   * acknowledged it; the publisher sends when its batch is full or on flush, so the latency test
   * flushes after each message; and an address the source cannot have is one already taken (the
   * contract holds the `unreachable` port while it opens the source).
   */
  listens?: boolean;
  /** The broker does not count deliveries (Kafka): `deliveries` is left out of the messages. */
  uncountedDeliveries?: boolean;
  /** The broker carries bare records (HTTP push): headers are not delivered. */
  noHeaders?: boolean;
  /** A config whose URL is not the broker's (malformed, another scheme) and carries the password "hunter2". */
  badUrl: StreamSourceConfig;
  /** A config for `port`, where nothing listens (or, `listens`, the port is taken), whose URL carries the password "hunter2" when the broker takes one in the URL. */
  unreachable(port: number): StreamSourceConfig;
  /** How errors name the address 127.0.0.1:`port` (`nats://127.0.0.1:4222`). */
  shown(port: number): string;
  /**
   * A broker that refuses the credentials "wrong-pass" (started for the test when it is a
   * private one): the config presenting them, the broker's port, and how to stop the broker.
   * Absent when the source presents no credentials (HTTP push), with `refusingMissing` saying so.
   */
  refusing?(): Promise<{ config: StreamSourceConfig; port: number; dispose(): Promise<void> }>;
  /** Why no such broker can run here, or why there is none (the credentials test is then skipped). */
  refusingMissing?: string | undefined;
  /** What the refusal must also say. */
  refusal?: RegExp;
}

export function sourceContract(c: SourceContract): void {
  it("delivers every message once and in order, with its headers where the broker carries them; after ack a reopened source gets nothing again", async () => {
    const config = await c.config("all");
    const n = c.count ?? 1200;
    const payloads = range(n, "m");
    const opening = c.subscribeFirst || c.listens ? await c.openSource(config) : undefined;
    const publishing = publishAll(c.openPublisher, config, payloads, { "x-origin": "test" });
    if (c.listens)
      publishing.catch(() => undefined); // awaited after the acks it waits for
    else await publishing;

    const source = opening ?? (await c.openSource(config));
    expect(source.description).toBe(c.description(config));
    if (c.lagCountsUnacknowledged && !c.listens) expect(await source.lag!()).toBe(n);
    const got = await collect(source, n);
    expect(got.map(text)).toEqual(payloads);
    expect(new Set(got.map((m) => m.id)).size).toBe(n);
    // Handed out and not yet acknowledged: still owed, for the brokers whose lag counts them.
    if (c.lagCountsUnacknowledged) expect(await source.lag!()).toBe(n);
    if (c.noHeaders) expect(got.every((m) => m.headers === undefined)).toBe(true);
    else expect(got[0]!.headers).toMatchObject({ "x-origin": "test" });
    expect(got.every((m) => m.deliveries === (c.uncountedDeliveries ? undefined : 1))).toBe(true);
    // When the broker says when it received the message.
    if (got[0]!.publishedAt !== undefined) expect(Math.abs(got[0]!.publishedAt - Date.now())).toBeLessThan(60_000);
    for (let i = 0; i < got.length; i += 500) await source.ack(got.slice(i, i + 500));
    await publishing;
    if (source.lag) expect(await source.lag()).toBe(0);
    await source.close();

    const again = await c.openSource(config);
    expect(await again.next(100, 300, never)).toEqual([]);
    if (again.lag) expect(await again.lag()).toBe(0);
    await again.close();
  });

  it("hands over a single message within a few milliseconds of its publication", async () => {
    const config = await c.config("latency");
    const source = await c.openSource(config);
    const pub = await c.openPublisher(config);
    if (!c.listens) return expectQuickHandOver(c.label, source, pub);
    try {
      const send = async (payload: string) => {
        await pub.publish(payload);
        await pub.flush();
      };
      expect(await handOverLatency(c.label, source, send)).toBeLessThan(50);
    } finally {
      await pub.close();
      await source.close();
    }
  });

  it("returns an empty batch after maxWaitMs and rejects when the signal aborts", async () => {
    const source = await c.openSource(await c.config("idle"));
    try {
      const t0 = performance.now();
      expect(await source.next(10, 200, never)).toEqual([]);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 50);
      expect((await failure(source.next(10, 10_000, ac.signal))).code).toBe("CANCELLED");
    } finally {
      await source.close();
    }
  });

  it("reports a bad URL and an unreachable server as SluiceErrors naming the address, never the password", async () => {
    const bad = await failure(c.openSource(c.badUrl));
    expect(bad.code).toBe("BAD_CONFIG");
    expect(bad.retryable).toBe(false);
    expect(bad.message).not.toContain("hunter2");
    const port = await freePort();
    const taken = c.listens ? await hold(port) : undefined;
    const down = await failure(c.openSource(c.unreachable(port))).finally(() => taken?.close());
    expect(down.code).toBe("NETWORK_ERROR");
    expect(down.retryable).toBe(true);
    expect(down.message).toContain(c.shown(port));
    expect(down.message).not.toContain("hunter2");
  });

  it.skipIf(c.refusingMissing || !c.refusing)("refuses bad credentials as a permanent BAD_CONFIG error", async () => {
    const broker = await c.refusing!();
    try {
      const err = await failure(c.openSource(broker.config));
      expect(err.code).toBe("BAD_CONFIG");
      expect(err.retryable).toBe(false);
      expect(err.message).toContain(c.shown(broker.port));
      expect(err.message).not.toContain("wrong-pass");
      if (c.refusal) expect(err.message).toMatch(c.refusal);
    } finally {
      await broker.dispose();
    }
  });
}

/** Listen on 127.0.0.1:`port` (so nothing else can) until closed. */
async function hold(port: number): Promise<{ close(): Promise<void> }> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, "127.0.0.1", resolve));
  return { close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

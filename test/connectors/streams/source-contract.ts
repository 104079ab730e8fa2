/**
 * The checks every broker's source must pass the same way, as tests: a broker's test file calls
 * `sourceContract(...)` inside its describe block, with what is particular to the broker (how to
 * open a source and a publisher, its URLs, a broker that refuses the credentials).
 */
import { expect, it } from "vitest";
import type { StreamPublisher, StreamSource, StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { failure } from "../../helpers.js";
import { freePort } from "./private-brokers.js";
import { collect, expectQuickHandOver, never, publishAll, range, text } from "./stream-helpers.js";

export interface SourceContract {
  /** The broker's name, for the latency log. */
  label: string;
  openSource(config: StreamSourceConfig): Promise<StreamSource>;
  openPublisher(config: StreamSourceConfig): Promise<StreamPublisher>;
  /** A config on the shared broker, unique to `tag`. */
  config(tag: string): StreamSourceConfig;
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
  /** A config whose URL is not the broker's (malformed, another scheme) and carries the password "hunter2". */
  badUrl: StreamSourceConfig;
  /** A config for `port`, where nothing listens, whose URL carries the password "hunter2". */
  unreachable(port: number): StreamSourceConfig;
  /** How errors name the address 127.0.0.1:`port` (`nats://127.0.0.1:4222`). */
  shown(port: number): string;
  /**
   * A broker that refuses the credentials "wrong-pass" (started for the test when it is a
   * private one): the config presenting them, the broker's port, and how to stop the broker.
   */
  refusing(): Promise<{ config: StreamSourceConfig; port: number; dispose(): Promise<void> }>;
  /** Why no such broker can run here (the credentials test is then skipped). */
  refusingMissing?: string | undefined;
  /** What the refusal must also say. */
  refusal?: RegExp;
}

export function sourceContract(c: SourceContract): void {
  it("delivers every message once and in order with its headers; after ack a reopened source gets nothing again", async () => {
    const config = c.config("all");
    const n = c.count ?? 1200;
    const payloads = range(n, "m");
    const opening = c.subscribeFirst ? await c.openSource(config) : undefined;
    await publishAll(c.openPublisher, config, payloads, { "x-origin": "test" });

    const source = opening ?? (await c.openSource(config));
    expect(source.description).toBe(c.description(config));
    if (c.lagCountsUnacknowledged) expect(await source.lag!()).toBe(n);
    const got = await collect(source, n);
    expect(got.map(text)).toEqual(payloads);
    expect(new Set(got.map((m) => m.id)).size).toBe(n);
    expect(got[0]!.headers).toMatchObject({ "x-origin": "test" });
    expect(got.every((m) => m.deliveries === 1)).toBe(true);
    // When the broker says when it received the message.
    if (got[0]!.publishedAt !== undefined) expect(Math.abs(got[0]!.publishedAt - Date.now())).toBeLessThan(60_000);
    for (let i = 0; i < got.length; i += 500) await source.ack(got.slice(i, i + 500));
    if (source.lag) expect(await source.lag()).toBe(0);
    await source.close();

    const again = await c.openSource(config);
    expect(await again.next(100, 300, never)).toEqual([]);
    if (again.lag) expect(await again.lag()).toBe(0);
    await again.close();
  });

  it("hands over a single message within a few milliseconds of its publication", async () => {
    const config = c.config("latency");
    await expectQuickHandOver(c.label, await c.openSource(config), await c.openPublisher(config));
  });

  it("returns an empty batch after maxWaitMs and rejects when the signal aborts", async () => {
    const source = await c.openSource(c.config("idle"));
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
    const down = await failure(c.openSource(c.unreachable(port)));
    expect(down.code).toBe("NETWORK_ERROR");
    expect(down.retryable).toBe(true);
    expect(down.message).toContain(c.shown(port));
    expect(down.message).not.toContain("hunter2");
  });

  it.skipIf(c.refusingMissing)("refuses bad credentials as a permanent BAD_CONFIG error", async () => {
    const broker = await c.refusing();
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

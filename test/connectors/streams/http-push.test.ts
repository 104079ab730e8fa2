/**
 * HTTP / WebSocket push source: the source listens on 127.0.0.1 (port 0, or a free port for the
 * shared source contract) and the tests, or the push publisher, are the producers.
 */
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { openHttpPushPublisher, openHttpPushSource, type HttpPushSource } from "../../../src/connectors/streams/http-push.js";
import type { StreamMessage, StreamSource, StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { failure } from "../../helpers.js";
import { freePort } from "./private-brokers.js";
import { sourceContract } from "./source-contract.js";
import { collect, handOverLatency, never, text } from "./stream-helpers.js";

const config: StreamSourceConfig = { broker: "http", url: "http://127.0.0.1:0/ingest" };
const open: StreamSource[] = [];

async function source(opts: Parameters<typeof openHttpPushSource>[1] = {}): Promise<HttpPushSource> {
  const s = await openHttpPushSource(config, opts);
  open.push(s);
  return s;
}

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

/** Resolves to "pending" if `p` has not settled within `ms`. */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  return Promise.race([p, new Promise<"pending">((r) => setTimeout(() => r("pending"), ms))]);
}

describe("HTTP push source", () => {
  sourceContract({
    kind: "http",
    label: "HTTP push",
    openSource: (config) => openHttpPushSource(config),
    // One request carries a whole publication: push keeps the order within a request (requests
    // sent at once race each other), as Kafka keeps it within a partition.
    openPublisher: (config) => openHttpPushPublisher(config, { batchSize: 10_000 }),
    config: async (tag) => ({ broker: "http", url: `http://127.0.0.1:${await freePort()}/ingest/${tag}` }),
    description: (config) => `${config.url} (HTTP/WebSocket push)`,
    listens: true,
    noHeaders: true,
    lagCountsUnacknowledged: true,
    badUrl: { broker: "http", url: "http://u:hunter2@127.0.0.1:0/x" },
    unreachable: (port) => ({ broker: "http", url: `http://127.0.0.1:${port}/x` }),
    shown: (port) => `http://127.0.0.1:${port}`,
    refusingMissing: "the push source presents no credentials: it checks the producers' bearer token (tested below)",
  });

  it("listens on the bound port and answers a POST only after every record of it is acknowledged", async () => {
    const s = await source();
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/ingest$/);
    expect(s.url).not.toContain(":0/");
    expect(s.description).toContain(s.url);

    const posted = fetch(s.url, { method: "POST", headers: { "content-type": "application/x-ndjson" }, body: '{"a":1}\n{"a":2}\n\n{"a":3}\n' });
    const got = await collect(s, 3);
    expect(got.map(text)).toEqual(['{"a":1}', '{"a":2}', '{"a":3}']);
    expect(got[0]!.deliveries).toBe(1);
    expect(await s.lag!()).toBe(3);

    await s.ack(got.slice(0, 2));
    expect(await settledWithin(posted, 100)).toBe("pending"); // one record is not stored yet
    await s.ack(got.slice(2));
    const res = await posted;
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ accepted: 3 });
    expect(await s.lag!()).toBe(0);
  });

  it("takes a JSON array as one record per element, and refuses bad JSON, other paths and other methods", async () => {
    const s = await source();
    const posted = fetch(s.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify([{ x: 1 }, { x: 2 }]) });
    const got = await collect(s, 2);
    expect(got.map(text)).toEqual(['{"x":1}', '{"x":2}']);
    await s.ack(got);
    expect((await posted).status).toBe(202);

    const bad = await fetch(s.url, { method: "POST", headers: { "content-type": "application/json" }, body: "[1, 2" });
    expect(bad.status).toBe(400);
    expect((await fetch(s.url.replace("/ingest", "/other"), { method: "POST", body: "{}" })).status).toBe(404);
    const get = await fetch(s.url);
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const empty = await fetch(s.url, { method: "POST", body: "" });
    expect(empty.status).toBe(202);
    expect(await empty.json()).toEqual({ accepted: 0 });
  });

  it("answers 429 with Retry-After when the unacknowledged records would exceed the bound", async () => {
    const s = await source({ maxUnacked: 10, retryAfterSeconds: 2 });
    const lines = (n: number, p: string) => Array.from({ length: n }, (_, i) => JSON.stringify({ [p]: i })).join("\n");
    const first = fetch(s.url, { method: "POST", body: lines(8, "a") });
    const got = await collect(s, 8);
    expect(got).toHaveLength(8);

    const busy = await fetch(s.url, { method: "POST", body: lines(5, "b") });
    expect(busy.status).toBe(429);
    expect(busy.headers.get("retry-after")).toBe("2");
    expect(((await busy.json()) as { unacked: number }).unacked).toBe(8);
    const huge = await fetch(s.url, { method: "POST", body: lines(11, "c") });
    expect(huge.status).toBe(413);

    await s.ack(got);
    expect((await first).status).toBe(202);
    const later = fetch(s.url, { method: "POST", body: lines(5, "b") });
    const more = await collect(s, 5);
    await s.ack(more);
    expect((await later).status).toBe(202);
  });

  it("takes WebSocket frames (a record each, or NDJSON lines) and acks each frame after its records are acknowledged", async () => {
    const s = await source();
    const ws = new WebSocket(s.url.replace("http:", "ws:"));
    const acks: unknown[] = [];
    ws.on("message", (d) => acks.push(JSON.parse(String(d))));
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    ws.send(JSON.stringify({ f: 1 }));
    ws.send('{"f":2}\n{"f":3}\n');
    ws.send(JSON.stringify({ pretty: true }, null, 2)); // one JSON value over several lines: one record
    const got = await collect(s, 4);
    expect(got.map(text)).toEqual(['{"f":1}', '{"f":2}', '{"f":3}', JSON.stringify({ pretty: true }, null, 2)]);
    expect(acks).toEqual([]);
    await s.ack([got[1]!, got[0]!]); // frame 1 complete, frame 2 half
    await new Promise((r) => setTimeout(r, 50));
    expect(acks).toEqual([{ ack: 1 }]);
    await s.ack(got.slice(2));
    await new Promise((r) => setTimeout(r, 50));
    expect(acks).toEqual([{ ack: 1 }, { ack: 2 }, { ack: 3 }]);
    ws.close();
  });

  it("refuses WebSocket frames over the bound with a nack", async () => {
    const s = await source({ maxUnacked: 2 });
    const ws = new WebSocket(s.url.replace("http:", "ws:"));
    const replies: { ack?: number; nack?: number; retryAfterMs?: number }[] = [];
    ws.on("message", (d) => replies.push(JSON.parse(String(d))));
    await new Promise((resolve) => ws.once("open", resolve));
    ws.send('{"a":1}\n{"a":2}');
    ws.send('{"a":3}');
    await new Promise((r) => setTimeout(r, 100));
    expect(replies).toEqual([{ nack: 2, error: "more than 2 records waiting to be stored", retryAfterMs: 1000 }]);
    ws.close();
  });

  it("hands over a pushed record within a few milliseconds", async () => {
    const s = await source();
    const post = async (record: string) => expect((await fetch(s.url, { method: "POST", body: record })).status).toBe(202);
    expect(await handOverLatency("HTTP push", s, post)).toBeLessThan(50);
  });

  it("tells waiting producers to send again (503) when it closes before their records are acknowledged", async () => {
    const s = await openHttpPushSource(config);
    const posted = fetch(s.url, { method: "POST", body: '{"a":1}' });
    expect(await collect(s, 1)).toHaveLength(1);
    await s.close();
    const res = await posted;
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
  });

  it("requires the bearer token when one is configured", async () => {
    const s = await source({ token: "env:PUSH_TOKEN", env: { PUSH_TOKEN: "t0ken" } });
    expect((await fetch(s.url, { method: "POST", body: "{}" })).status).toBe(401);
    const ok = fetch(s.url, { method: "POST", body: "{}", headers: { authorization: "Bearer t0ken" } });
    await s.ack(await collect(s, 1));
    expect((await ok).status).toBe(202);
  });

  it("publisher: POSTs NDJSON batches and flush resolves once the source has acknowledged them", async () => {
    const s = await source();
    const pub = await openHttpPushPublisher({ broker: "http", url: s.url }, { batchSize: 100 });
    const received: StreamMessage[] = [];
    const consumer = (async () => {
      while (received.length < 250) {
        const batch = await s.next(500, 2000, never);
        received.push(...batch);
        await s.ack(batch);
      }
    })();
    for (let i = 0; i < 250; i++) await pub.publish(i === 0 ? JSON.stringify({ i, nested: { x: 1 } }, null, 2) : JSON.stringify({ i }));
    await pub.flush();
    await consumer;
    expect(received).toHaveLength(250);
    expect(text(received[0]!)).toBe('{"i":0,"nested":{"x":1}}');
    await pub.close();
  });

  it("reports bad URLs and an address in use as SluiceErrors", async () => {
    expect((await failure(openHttpPushSource({ broker: "http", url: "https://127.0.0.1:0/x" }))).code).toBe("BAD_CONFIG");
    expect((await failure(openHttpPushSource({ broker: "http", url: "not a url" }))).code).toBe("BAD_CONFIG");
    const s = await source();
    const taken = await failure(openHttpPushSource({ broker: "http", url: s.url }));
    expect(taken.code).toBe("NETWORK_ERROR");
    expect(taken.message).toContain(s.url.replace("/ingest", ""));
  });
});

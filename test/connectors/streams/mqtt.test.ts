/**
 * MQTT source and publisher against the shared Mosquitto on 127.0.0.1:1883. The broker-restart
 * and authentication tests run a Mosquitto of their own (own ports, own persistence folder:
 * private-brokers.ts), so the shared broker is never stopped.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, connectAsync } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { openMqttPublisher, openMqttSource } from "../../../src/connectors/streams/mqtt.js";
import type { StreamMessage, StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { failure } from "../../helpers.js";
import { privateBrokerMissing, startPrivateMosquitto } from "./private-brokers.js";
import {
  collect,
  expectRedeliveryAcrossRestart,
  never,
  publishAll,
  quiet,
  range,
  expectStableIds,
  recording,
  recordingLog,
  runId,
  tcpProxy,
  text,
} from "./stream-helpers.js";
import { sourceContract } from "./source-contract.js";

const URL_ = "mqtt://127.0.0.1:1883";
const run = runId();
const usedClients: { url: string; clientId: string }[] = [];
const noMosquitto = privateBrokerMissing("mqtt");

function names(tag: string, url = URL_): StreamSourceConfig {
  const clientId = `sluice-test-${run}-${tag}`;
  if (url === URL_) usedClients.push({ url, clientId });
  return { broker: "mqtt", url, topic: `sluice-test/${run}/${tag}`, consumer: clientId };
}

const publish = (config: StreamSourceConfig, payloads: string[]) => publishAll(openMqttPublisher, config, payloads);

afterAll(async () => {
  // Remove the persistent sessions this file created: connect clean with no session expiry.
  await Promise.all(
    usedClients.map(
      ({ url, clientId }) =>
        new Promise<void>((resolve) => {
          const c = connect(url, {
            protocolVersion: 5,
            clientId,
            clean: true,
            reconnectPeriod: 0,
            connectTimeout: 2000,
            properties: { sessionExpiryInterval: 0 },
          });
          const done = () => c.end(true, () => resolve());
          c.on("connect", done);
          c.on("error", done);
          c.on("close", done);
        }),
    ),
  );
});

describe("MQTT source (Mosquitto 127.0.0.1:1883)", () => {
  sourceContract({
    kind: "mqtt",
    label: "mqtt",
    openSource: (config) => openMqttSource(config, { log: quiet }),
    openPublisher: (config) => openMqttPublisher(config),
    config: (tag) => names(tag),
    description: (config) => `mqtt://127.0.0.1:1883 topic ${config.topic} client ${config.consumer}`,
    // Mosquitto holds at most 1,000 queued messages per client (max_queued_messages) beyond those in flight.
    count: 300,
    subscribeFirst: true,
    badUrl: { broker: "mqtt", url: "http://u:hunter2@127.0.0.1:1883", topic: "x" },
    unreachable: (port) => ({ broker: "mqtt", url: `mqtt://u:hunter2@127.0.0.1:${port}`, topic: "x" }),
    shown: (port) => `mqtt://127.0.0.1:${port}`,
    refusingMissing: noMosquitto,
    async refusing() {
      const broker = await startPrivateMosquitto();
      const config: StreamSourceConfig = {
        broker: "mqtt",
        url: `mqtt://nobody:wrong-pass@127.0.0.1:${broker.authPort}`,
        topic: "t",
        consumer: `sluice-test-${run}-auth`,
      };
      return { config, port: broker.authPort, dispose: () => broker.dispose() };
    },
    refusal: /not authorized|bad user name or password/,
  });

  it("redelivers unacknowledged messages after close and reopen, marked as redeliveries", async () => {
    const config = names("redeliver");
    const source = await openMqttSource(config, { log: quiet });
    await publish(config, range(10, "r"));
    const got = await collect(source, 10);
    expect(got).toHaveLength(10);
    await source.ack(got.slice(0, 4));
    await source.close();

    const again = await openMqttSource(config, { log: quiet });
    const redelivered = await collect(again, 6);
    expect(redelivered.map(text)).toEqual(range(10, "r").slice(4));
    expect(redelivered.every((m) => m.deliveries === 2)).toBe(true);
    expect(redelivered.map((m) => m.id)).toEqual(got.slice(4).map((m) => m.id));
    await again.ack(redelivered);
    await again.close();

    const third = await openMqttSource(config, { log: quiet });
    expect(await third.next(100, 300, never)).toEqual([]);
    await third.close();
  });

  it("sends PUBACKs in arrival order: an ack waits for the earlier unacknowledged messages", async () => {
    const config = names("order");
    const source = await openMqttSource(config, { log: quiet });
    await publish(config, range(5, "o"));
    const got = await collect(source, 5);
    await source.ack(got.slice(3)); // held back: o-0..o-2 are not acknowledged yet
    await source.close();

    const again = await openMqttSource(config, { log: quiet });
    const all = await collect(again, 5);
    expect(all.map(text)).toEqual(range(5, "o"));
    await again.ack(all.slice(3));
    await again.ack(all.slice(0, 3)); // releases all five
    await again.close();

    const third = await openMqttSource(config, { log: quiet });
    expect(await third.next(100, 300, never)).toEqual([]);
    await third.close();
  });

  it("delivers messages published while the source was closed (persistent session)", async () => {
    const config = names("offline");
    const first = await openMqttSource(config, { log: quiet });
    await first.close();
    await publish(config, range(50, "off"));
    const source = await openMqttSource(config, { log: quiet });
    const got = await collect(source, 50);
    expect(got.map(text)).toEqual(range(50, "off"));
    await source.ack(got);
    await source.close();
  });

  it("gives a message the same id on every delivery (after a reconnect, in a new source) and two messages never one", async () => {
    const proxy = await tcpProxy(1883);
    try {
      const config = names("ids");
      const viaProxy = { ...config, url: `mqtt://127.0.0.1:${proxy.port}` };
      const source = await openMqttSource(viaProxy, { log: quiet });
      // Equal payloads are still two messages: our publisher gives each its own id.
      const payloads = ["same", "same", "other", "x", "y"];
      await publish(config, payloads);
      const first = await collect(source, 5);
      expect(first.map(text)).toEqual(payloads);
      expect(new Set(first.map((m) => m.id)).size).toBe(5);
      expect(first.every((m) => /^[0-9a-f-]{36}$/.test(m.id))).toBe(true);

      // A reconnect (the connection drops, the session is resumed): the broker resends all five.
      // (Nothing is acknowledged before the cut: a PUBACK still in the proxy would be lost with it.)
      proxy.cut();
      await sleep(300);
      proxy.restore();
      const again = await collect(source, 5, 10_000);
      expect(again.map(text)).toEqual(payloads);
      expect(again.every((m) => m.deliveries === 2)).toBe(true);
      expect(again.map((m) => m.id)).toEqual(first.map((m) => m.id));
      // Acknowledging the old copies does nothing; the new ones (by their deliveries, not their ids) go out right.
      await source.ack(first);
      await source.ack(again.slice(0, 3));
      await source.close();

      // A new source (as in a new process: packet ids and counters start over): same ids again.
      const reopened = await openMqttSource(config, { log: quiet });
      const third = await collect(reopened, 2);
      expect(third.map(text)).toEqual(payloads.slice(3));
      expect(third.map((m) => m.id)).toEqual(first.slice(3).map((m) => m.id));
      // New messages get new ids, never one handed out before.
      await publish(config, ["x", "z"]);
      const fresh = await collect(reopened, 2);
      expect(fresh.map(text)).toEqual(["x", "z"]);
      expect(new Set([...first, ...fresh].map((m) => m.id)).size).toBe(7);
      await reopened.ack([...third, ...fresh]);
      await reopened.close();

      const last = await openMqttSource(config, { log: quiet });
      expect(await last.next(100, 300, never)).toEqual([]);
      await last.close();
    } finally {
      proxy.restore();
      await proxy.close();
    }
  });

  it("without a message-id property, ids are a hash of topic and payload: stable across deliveries, distinct for distinct payloads", async () => {
    const config = names("hash-ids");
    const source = await openMqttSource(config, { log: quiet });
    await publishRaw(config.topic!, ["p", "q"]);
    const first = await collect(source, 2);
    expect(first.map(text)).toEqual(["p", "q"]);
    const expected = (payload: string) => `sha256:${createHash("sha256").update(`${config.topic}\0${payload}`).digest("hex")}`;
    expect(first.map((m) => m.id)).toEqual([expected("p"), expected("q")]);
    await source.close();

    const again = await openMqttSource(config, { log: quiet });
    const redelivered = await collect(again, 2);
    expect(redelivered.every((m) => m.deliveries === 2)).toBe(true);
    expect(redelivered.map((m) => m.id)).toEqual(first.map((m) => m.id));
    await again.ack(redelivered);
    await again.close();
  });

  it("refuses a missing topic, a publisher to a wildcard filter and an invalid filter", async () => {
    const noTopic = await failure(openMqttSource({ broker: "mqtt", url: URL_ }));
    expect(noTopic.code).toBe("BAD_CONFIG");
    const wildcard = await failure(openMqttPublisher({ broker: "mqtt", url: URL_, topic: "a/+/b" }));
    expect(wildcard.code).toBe("BAD_CONFIG");
    const badFilter = await failure(openMqttSource({ broker: "mqtt", url: URL_, topic: "a/#/b", consumer: `sluice-test-${run}-badfilter` }));
    expect(badFilter.code).toBe("BAD_CONFIG");
  });
});

describe.skipIf(noMosquitto)("MQTT source across a broker restart (a Mosquitto of its own, persistence on)", () => {
  it("keeps waiting while the broker restarts, then gets the unacknowledged and the new messages", async () => {
    const broker = await startPrivateMosquitto();
    try {
      const config = names("restart", broker.url);
      const log = recordingLog();
      const source = await openMqttSource(config, { log });
      // SIGTERM: Mosquitto saves its sessions on the way out; the source notices the outage first.
      const seen: StreamMessage[] = [];
      const got = await expectRedeliveryAcrossRestart({ broker, source: recording(source, seen), publish: (p) => publish(config, p), downMs: 400 });
      expect(got.map(text)).toEqual(["b", "c"]);
      // "b" came twice (before and after the restart, from the broker's persistence file), with one id.
      expectStableIds(seen, { a: 1, b: 2, c: 1 });
      expect(log.lines).toContain("mqtt connection lost; reconnecting");
      await source.close();
    } finally {
      await broker.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** Publish at QoS 1 with a plain client: no message-id user property. */
async function publishRaw(topic: string, payloads: string[]): Promise<void> {
  const c = await connectAsync(URL_, { protocolVersion: 5, clean: true, reconnectPeriod: 0 });
  try {
    for (const p of payloads) await c.publishAsync(topic, p, { qos: 1 });
  } finally {
    await c.endAsync();
  }
}

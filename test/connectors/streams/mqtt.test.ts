/**
 * MQTT source and publisher against the shared Mosquitto on 127.0.0.1:1883. The broker-restart
 * and authentication tests run a Mosquitto of their own (own ports, own persistence folder:
 * private-brokers.ts), so the shared broker is never stopped.
 */
import { connect } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { openMqttPublisher, openMqttSource } from "../../../src/connectors/streams/mqtt.js";
import type { StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { failure } from "../../helpers.js";
import { privateBrokerMissing, startPrivateMosquitto } from "./private-brokers.js";
import { collect, expectRedeliveryAcrossRestart, never, publishAll, quiet, range, recordingLog, runId, text } from "./stream-helpers.js";
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
          const c = connect(url, { protocolVersion: 5, clientId, clean: true, reconnectPeriod: 0, connectTimeout: 2000, properties: { sessionExpiryInterval: 0 } });
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
      const config: StreamSourceConfig = { broker: "mqtt", url: `mqtt://nobody:wrong-pass@127.0.0.1:${broker.authPort}`, topic: "t", consumer: `sluice-test-${run}-auth` };
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
    expect(got[0]!.id.startsWith(`${config.topic}:`)).toBe(true);
    await source.ack(got.slice(0, 4));
    await source.close();

    const again = await openMqttSource(config, { log: quiet });
    const redelivered = await collect(again, 6);
    expect(redelivered.map(text)).toEqual(range(10, "r").slice(4));
    expect(redelivered.every((m) => m.deliveries === 2)).toBe(true);
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
      const got = await expectRedeliveryAcrossRestart({ broker, source, publish: (p) => publish(config, p), downMs: 400 });
      expect(got.map(text)).toEqual(["b", "c"]);
      expect(log.lines).toContain("mqtt connection lost; reconnecting");
      await source.close();
    } finally {
      await broker.dispose();
    }
  });
});

/**
 * NATS JetStream source and publisher against the shared nats-server (127.0.0.1:4222, -js): every
 * run uses its own subjects and streams and deletes them afterwards. The restart and credential
 * tests run a nats-server of their own (private-brokers.ts): the shared one is never stopped.
 */
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, describe, expect, it } from "vitest";
import { defaultStreamName, openNatsPublisher, openNatsSource } from "../../../src/connectors/streams/nats.js";
import type { StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { privateBrokerMissing, startPrivateNats } from "./private-brokers.js";
import { sourceContract } from "./source-contract.js";
import { collect, expectDeliveryAfterRestart, publishAll, runId, text } from "./stream-helpers.js";

const URL = "nats://127.0.0.1:4222";
const RUN = runId();
const streams = new Set<string>();
const noNats = privateBrokerMissing("nats");

function cfg(name: string, url = URL): StreamSourceConfig {
  const subject = `sluicetest.${RUN}.${name}`;
  if (url === URL) streams.add(defaultStreamName(subject));
  return { broker: "nats", url, subject, consumer: "sluice" };
}

afterAll(async () => {
  const nc = await connect({ servers: "127.0.0.1:4222" });
  try {
    const jsm = await jetstreamManager(nc);
    for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  } finally {
    await nc.close();
  }
});

describe("NATS JetStream source", () => {
  sourceContract({
    kind: "nats",
    label: "NATS",
    openSource: (config) => openNatsSource(config),
    openPublisher: (config) => openNatsPublisher(config),
    config: cfg,
    description: (config) => `${URL} stream ${defaultStreamName(config.subject!)} subject ${config.subject} consumer sluice`,
    lagCountsUnacknowledged: true,
    badUrl: { broker: "nats", url: "http://u:hunter2@127.0.0.1:4222", subject: "x" },
    unreachable: (port) => ({ broker: "nats", url: `nats://u:hunter2@127.0.0.1:${port}`, subject: "x" }),
    shown: (port) => `nats://127.0.0.1:${port}`,
    refusingMissing: noNats,
    async refusing() {
      const server = await startPrivateNats({ auth: { user: "right", pass: "secret" } });
      return {
        config: { broker: "nats", url: `nats://right:wrong-pass@127.0.0.1:${server.port}`, subject: "x" },
        port: server.port,
        dispose: () => server.dispose(),
      };
    },
  });

  it("redelivers unacknowledged messages to the reopened consumer after the ack wait", async () => {
    const config = cfg("redeliver");
    await publishAll(openNatsPublisher, config, ["m0", "m1", "m2", "m3", "m4"]);

    const first = await openNatsSource(config, { ackWaitMs: 1000 });
    const got = await collect(first, 5);
    expect(got.map(text)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    await first.close(); // no ack

    const second = await openNatsSource(config, { ackWaitMs: 1000 });
    const again = await collect(second, 5, 5000);
    expect(again.map(text).sort()).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(again.every((m) => m.deliveries === 2)).toBe(true);
    await second.ack(again);
    expect(await second.lag!()).toBe(0);
    await second.close();
  });
});

describe("NATS JetStream source across a server restart (a nats-server of its own)", () => {
  it.skipIf(noNats)("keeps waiting while nats-server restarts and loses nothing; acks of messages delivered before still count", async () => {
    const server = await startPrivateNats();
    const config = cfg("restart", server.url);
    const pub = await openNatsPublisher(config);
    const source = await openNatsSource(config, { ackWaitMs: 30_000 });
    try {
      // JetStream keeps the stream, the consumer and its acknowledgements on disk. An ack lost
      // with the old connection is sent again by the source.
      await expectDeliveryAfterRestart({ broker: server, source, pub, ackAfterRestart: true });
    } finally {
      await source.close();
      await pub.close();
      await server.dispose();
    }
  });
});

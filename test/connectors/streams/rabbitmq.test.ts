/**
 * RabbitMQ source and publisher against the shared broker on 127.0.0.1:5672 (guest/guest).
 *
 * The shared broker serves other test files at the same time, so it is never stopped here. The
 * tests drop our own connection instead: through a TCP proxy the test cuts and restores (network
 * outage), and with `rabbitmqctl close_connection` (CONNECTION_FORCED, the frame a broker
 * shutdown sends). The full restart runs against a RabbitMQ node of its own (private-brokers.ts).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { connect } from "amqplib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeliveryTagTracker, openRabbitMqPublisher, openRabbitMqSource } from "../../../src/connectors/streams/rabbitmq.js";
import type { StreamMessage, StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { failure } from "../../helpers.js";
import { privateBrokerMissing, startPrivateRabbit, type PrivateBroker } from "./private-brokers.js";
import { sourceContract } from "./source-contract.js";
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

const URL_ = "amqp://guest:guest@127.0.0.1:5672";
const run = runId();
const queues = new Set<string>();

function names(tag: string, extra: Partial<StreamSourceConfig> = {}): StreamSourceConfig {
  const queue = `sluice-test-${run}-${tag}`;
  queues.add(queue);
  return { broker: "rabbitmq", url: URL_, queue, ...extra };
}

const publish = (config: StreamSourceConfig, payloads: string[]) => publishAll(openRabbitMqPublisher, config, payloads);

// The private node for the restart test boots (several seconds) while the other tests run.
const noRabbit = privateBrokerMissing("rabbitmq");
let privateRabbit: Promise<PrivateBroker> | undefined;
beforeAll(() => {
  if (noRabbit) return;
  privateRabbit = startPrivateRabbit();
  privateRabbit.catch(() => undefined); // the restart test reports a failed boot
});

afterAll(async () => {
  await (await privateRabbit?.catch(() => undefined))?.dispose();
  const model = await connect(URL_);
  const ch = await model.createChannel();
  for (const q of queues) await ch.deleteQueue(q);
  await model.close();
});

describe("DeliveryTagTracker (pure)", () => {
  it("acknowledges the oldest contiguous run with one multiple ack and the rest one by one", () => {
    const t = new DeliveryTagTracker();
    for (let tag = 1; tag <= 10; tag++) t.delivered(tag);
    expect(t.ack([1, 2, 3, 4])).toEqual({ upTo: 4, single: [] });
    // 5 is still unacknowledged, so 7 and 8 cannot ride on a multiple ack.
    expect(t.ack([7, 8])).toEqual({ upTo: undefined, single: [7, 8] });
    // Acknowledging 5 and 6 completes the run up to 8; 7 and 8 were already sent, so the multiple ack stops at 6.
    expect(t.ack([6, 5])).toEqual({ upTo: 6, single: [] });
    expect(t.ack([10])).toEqual({ upTo: undefined, single: [10] });
    expect(t.ack([9])).toEqual({ upTo: 9, single: [] });
    expect(t.outstanding).toBe(0);
  });

  it("ignores repeated and unknown tags, so a tag is never acknowledged twice", () => {
    const t = new DeliveryTagTracker();
    for (let tag = 1; tag <= 3; tag++) t.delivered(tag);
    expect(t.ack([2])).toEqual({ upTo: undefined, single: [2] });
    expect(t.ack([2, 99])).toEqual({ upTo: undefined, single: [] });
    expect(t.ack([1, 1])).toEqual({ upTo: 1, single: [] });
    expect(t.ack([3])).toEqual({ upTo: 3, single: [] });
    expect(t.ack([3])).toEqual({ upTo: undefined, single: [] });
  });

  it("stays correct across compaction of a long history", () => {
    const t = new DeliveryTagTracker();
    for (let tag = 1; tag <= 20_000; tag++) t.delivered(tag);
    for (let from = 1; from <= 20_000; from += 1000) {
      const batch = Array.from({ length: 1000 }, (_, i) => from + i);
      expect(t.ack(batch)).toEqual({ upTo: from + 999, single: [] });
    }
    expect(t.outstanding).toBe(0);
  });
});

describe("RabbitMQ source (127.0.0.1:5672)", () => {
  sourceContract({
    kind: "rabbitmq",
    label: "rabbitmq",
    openSource: (config) => openRabbitMqSource(config, { log: quiet }),
    openPublisher: (config) => openRabbitMqPublisher(config),
    config: (tag) => names(tag),
    description: (config) => `amqp://127.0.0.1:5672 queue ${config.queue}`,
    badUrl: { broker: "rabbitmq", url: "mqtt://u:hunter2@127.0.0.1:5672", queue: "x" },
    unreachable: (port) => ({ broker: "rabbitmq", url: `amqp://u:hunter2@127.0.0.1:${port}`, queue: "x" }),
    shown: (port) => `amqp://127.0.0.1:${port}`,
    // The shared broker refuses a wrong password for guest.
    refusing: async () => ({ config: { broker: "rabbitmq", url: "amqp://guest:wrong-pass@127.0.0.1:5672", queue: "x" }, port: 5672, dispose: async () => {} }),
    refusal: /refused the login/,
  });

  it("acknowledges out of order and twice without covering what was not asked for (multiple acks)", async () => {
    const config = names("ack-order");
    const source = await openRabbitMqSource(config, { log: quiet });
    await publish(config, range(500, "m"));
    const got = await collect(source, 500);
    expect(got.map(text)).toEqual(range(500, "m"));
    await source.ack(got.slice(250));
    await source.ack(got.slice(0, 250));
    await source.ack(got.slice(0, 10));
    expect(await source.lag!()).toBe(0);
    await source.close();

    const again = await openRabbitMqSource(config, { log: quiet });
    expect(await again.next(100, 300, never)).toEqual([]);
    await again.close();
  });

  it("redelivers unacknowledged messages after close and reopen, marked as redeliveries", async () => {
    const config = names("redeliver");
    const source = await openRabbitMqSource(config, { log: quiet });
    await publish(config, range(10, "r"));
    const got = await collect(source, 10);
    await source.ack(got.slice(0, 4));
    await source.close();

    const again = await openRabbitMqSource(config, { log: quiet });
    const redelivered = await collect(again, 6);
    expect(redelivered.map(text)).toEqual(range(10, "r").slice(4));
    expect(redelivered.every((m) => m.deliveries === 2)).toBe(true);
    expect(redelivered.map((m) => m.id)).toEqual(got.slice(4).map((m) => m.id));
    await again.ack(redelivered);
    await again.close();

    const third = await openRabbitMqSource(config, { log: quiet });
    expect(await third.next(100, 300, never)).toEqual([]);
    await third.close();
  });

  it("gives a message the same id on every delivery (after a reconnect, in a new source) and two messages never one", async () => {
    const proxy = await tcpProxy(5672);
    try {
      const config = names("ids");
      const source = await openRabbitMqSource({ ...config, url: `amqp://guest:guest@127.0.0.1:${proxy.port}` }, { log: quiet });
      // Equal payloads are still two messages: our publisher gives each its own id.
      const payloads = ["same", "same", "other", "x", "y"];
      await publish(config, payloads);
      const first = await collect(source, 5);
      expect(first.map(text)).toEqual(payloads);
      expect(new Set(first.map((m) => m.id)).size).toBe(5);
      expect(first.every((m) => /^[0-9a-f-]{36}$/.test(m.id))).toBe(true);

      // A reconnect (new connection and channel: delivery tags start over at 1): the broker
      // requeues all five and delivers them again, under the same ids.
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
      expect(await source.lag!()).toBe(0);
      await source.close();

      // A new source (as in a new process: generations and delivery tags start over): same ids again.
      const reopened = await openRabbitMqSource(config, { log: quiet });
      const third = await collect(reopened, 2);
      expect(third.map(text)).toEqual(payloads.slice(3));
      expect(third.map((m) => m.id)).toEqual(first.slice(3).map((m) => m.id));
      // New messages get new ids, never one handed out before (their delivery tags were 1 and 2 before).
      await publish(config, ["x", "z"]);
      const fresh = await collect(reopened, 2);
      expect(fresh.map(text)).toEqual(["x", "z"]);
      expect(new Set([...first, ...fresh].map((m) => m.id)).size).toBe(7);
      await reopened.ack([...fresh, ...third]); // out of order: one multiple ack cannot cover it wrongly
      await reopened.close();

      const last = await openRabbitMqSource(config, { log: quiet });
      expect(await last.next(100, 300, never)).toEqual([]);
      await last.close();
    } finally {
      proxy.restore();
      await proxy.close();
    }
  });

  it("without a message-id property, ids are a hash of the body: stable across deliveries, distinct for distinct bodies", async () => {
    const config = names("hash-ids");
    await (await openRabbitMqSource(config, { log: quiet })).close(); // declares the queue
    const model = await connect(URL_);
    const ch = await model.createConfirmChannel();
    for (const body of ["p", "q"]) ch.sendToQueue(config.queue!, Buffer.from(body), { persistent: true });
    await ch.waitForConfirms();
    await model.close();

    const source = await openRabbitMqSource(config, { log: quiet });
    const first = await collect(source, 2);
    expect(first.map(text)).toEqual(["p", "q"]);
    const expected = (body: string) => `sha256:${createHash("sha256").update(body).digest("hex")}`;
    expect(first.map((m) => m.id)).toEqual([expected("p"), expected("q")]);
    await source.close();

    const again = await openRabbitMqSource(config, { log: quiet });
    const redelivered = await collect(again, 2);
    expect(redelivered.every((m) => m.deliveries === 2)).toBe(true);
    expect(redelivered.map((m) => m.id)).toEqual(first.map((m) => m.id));
    await again.ack(redelivered);
    await again.close();
  });

  it("delivers messages published while the source was closed (durable queue)", async () => {
    const config = names("offline");
    await (await openRabbitMqSource(config, { log: quiet })).close();
    await publish(config, range(100, "off"));
    const source = await openRabbitMqSource(config, { log: quiet });
    const got = await collect(source, 100);
    expect(got.map(text)).toEqual(range(100, "off"));
    await source.ack(got);
    await source.close();
  });

  it("binds the queue to amq.topic when a subject is given; a publisher to an unbound key fails its flush", async () => {
    const subject = `sluice.test.${run}.bound`;
    const config = names("bound", { subject });
    const source = await openRabbitMqSource(config, { log: quiet });
    expect(source.description).toBe(`amqp://127.0.0.1:5672 queue ${config.queue} exchange amq.topic routing key ${subject}`);
    await publish({ broker: "rabbitmq", url: URL_, subject }, ["via-exchange"]);
    const [m] = await collect(source, 1);
    expect(m && text(m)).toBe("via-exchange");
    await source.ack([m!]);
    await source.close();

    const pub = await openRabbitMqPublisher({ broker: "rabbitmq", url: URL_, subject: `sluice.test.${run}.nobody` });
    await pub.publish("lost");
    const err = await failure(pub.flush());
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).toContain("unroutable");
    await pub.close();
  });

  it("reports lag: the ready messages beyond the prefetch window", async () => {
    const config = names("lag");
    const source = await openRabbitMqSource(config, { log: quiet });
    await publish(config, range(2500, "l"));
    const until = Date.now() + 5000;
    let lag = await source.lag!();
    while (lag !== 500 && Date.now() < until) {
      await sleep(50);
      lag = await source.lag!();
    }
    expect(lag).toBe(500); // 2,000 are with us (prefetch), 500 wait in the queue
    let seen = 0;
    while (seen < 2500) {
      const batch = await source.next(1000, 2000, never);
      expect(batch.length).toBeGreaterThan(0);
      seen += batch.length;
      await source.ack(batch);
    }
    expect(await source.lag!()).toBe(0);
    await source.close();
  });

  it("reconnects after a network outage and gets the unacknowledged and the new messages", async () => {
    const proxy = await tcpProxy(5672);
    try {
      const config = names("outage");
      const log = recordingLog();
      const source = await openRabbitMqSource({ ...config, url: `amqp://guest:guest@127.0.0.1:${proxy.port}` }, { log });
      await publish(config, range(5, "before"));
      const first = await collect(source, 5);
      await source.ack(first.slice(0, 2));

      proxy.cut();
      const waiting = source.next(20, 10_000, never);
      await publish(config, range(3, "during"));
      await sleep(500);
      // Acknowledging a message of the lost connection is harmless: it comes back anyway.
      await source.ack(first.slice(2, 3));
      proxy.restore();

      const got = [...(await waiting)];
      got.push(...(await collect(source, 6 - got.length)));
      expect(got.map(text)).toEqual([...range(5, "before").slice(2), ...range(3, "during")]);
      expect(got.slice(0, 3).every((m) => m.deliveries === 2)).toBe(true);
      expect(got.slice(3).every((m) => m.deliveries === 1)).toBe(true);
      expect(log.lines).toContain("rabbitmq connection lost; reconnecting");
      await source.ack(got);
      await source.close();
    } finally {
      proxy.restore();
      await proxy.close();
    }
  });

  it("survives the broker closing the connection (CONNECTION_FORCED, as on shutdown)", async () => {
    const config = names("forced");
    const source = await openRabbitMqSource(config, { log: quiet });
    await publish(config, ["x"]);
    const [x] = await collect(source, 1);
    await closeConnectionNamed(`sluice ${config.queue}`);
    const waiting = source.next(10, 10_000, never);
    await publish(config, ["y"]);
    const got = [...(await waiting)];
    got.push(...(await collect(source, 2 - got.length)));
    expect(got.map(text)).toEqual(["x", "y"]);
    expect(got[0]!.deliveries).toBe(2);
    expect(x!.deliveries).toBe(1);
    await source.ack(got);
    await source.close();
  });

  it.skipIf(noRabbit)(
    "keeps waiting across a full broker restart (a RabbitMQ node of its own: the shared one is never stopped)",
    async () => {
      const broker = await privateRabbit!;
      const config: StreamSourceConfig = { broker: "rabbitmq", url: broker.url, queue: `sluice-test-${run}-restart` };
      const log = recordingLog();
      const source = await openRabbitMqSource(config, { log });
      try {
        const seen: StreamMessage[] = [];
        const got = await expectRedeliveryAcrossRestart({ broker, source: recording(source, seen), publish: (p) => publish(config, p), waitMs: 25_000 });
        expect(got.map(text)).toEqual(["b", "c"]);
        // "b" came twice (before and after the restart, from the durable queue), with one id.
        expectStableIds(seen, { a: 1, b: 2, c: 1 });
        expect(log.lines).toContain("rabbitmq connection lost; reconnecting");
      } finally {
        await source.close();
      }
    },
    90_000,
  );

  it("refuses an unknown virtual host, a missing queue name and a queue declared with other arguments", async () => {
    const vhost = await failure(openRabbitMqSource({ broker: "rabbitmq", url: `${URL_}/no-such-vhost-${run}`, queue: "x" }));
    expect(vhost.code).toBe("BAD_CONFIG");
    expect(vhost.message).toContain(`no-such-vhost-${run}`);

    expect((await failure(openRabbitMqSource({ broker: "rabbitmq", url: URL_ }))).code).toBe("BAD_CONFIG");

    // A queue that exists with other arguments (not durable) cannot be consumed as configured.
    const config = names("transient");
    const model = await connect(URL_);
    const ch = await model.createChannel();
    await ch.assertQueue(config.queue!, { durable: false });
    await model.close();
    const mismatch = await failure(openRabbitMqSource(config, { log: quiet }));
    expect(mismatch.code).toBe("BAD_CONFIG");
    expect(mismatch.message).toContain(config.queue!);
  });
});

// ---------------------------------------------------------------------------------------------

/** Have the broker close the connection whose client-given name is `name` (CONNECTION_FORCED). */
async function closeConnectionNamed(name: string): Promise<void> {
  const exec = promisify(execFile);
  // One row per connection: "<rabbit@host.N.N.N>\t[{"connection_name","…"},…]".
  const { stdout } = await exec("rabbitmqctl", ["list_connections", "pid", "client_properties", "-q"]);
  const row = stdout.split("\n").find((line) => line.includes(`{"connection_name","${name}"}`));
  if (!row) throw new Error(`no RabbitMQ connection named ${name}`);
  await exec("rabbitmqctl", ["close_connection", row.split("\t")[0]!, "sluice test: forced close"]);
}

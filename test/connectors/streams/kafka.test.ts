/**
 * Kafka source: the offset bookkeeping and the kafkajs bridge (pause/resume, rebalance, commits)
 * against a consumer the tests drive by hand; the shared source contract, redelivery and
 * rebalances through the whole connector against an in-memory cluster behind the kafkajs client
 * API (fake-kafka.ts), since no broker runs here; and the same round-trip tests against a real
 * cluster where SLUICE_KAFKA_BROKERS is set (e.g. `localhost:9092`).
 */
import kafkajs from "kafkajs";
import type { EachBatchPayload, KafkaMessage } from "kafkajs";
import { afterAll, describe, expect, it } from "vitest";
import {
  bridgeKafkaConsumer,
  contiguousCommit,
  KafkaOffsetTracker,
  openKafkaPublisher,
  openKafkaSource,
  parseKafkaUrl,
  type KafkaConsumerLike,
  type KafkaOpenOptions,
} from "../../../src/connectors/streams/kafka.js";
import type { StreamLog, StreamMessage, StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { failure } from "../../helpers.js";
import { fakeKafka, type FakeKafka } from "./fake-kafka.js";
import { sourceContract } from "./source-contract.js";
import { collect, expectQuickHandOver, expectStableIds, never, publishAll, quiet, range, recordingLog, runId, text } from "./stream-helpers.js";

describe("parseKafkaUrl", () => {
  it("reads broker lists with and without the scheme, default port, TLS and SASL", () => {
    expect(parseKafkaUrl("kafka://a:9092,b:9093")).toEqual({ brokers: ["a:9092", "b:9093"], shown: "kafka://a:9092,b:9093", ssl: false });
    expect(parseKafkaUrl("localhost:9092")).toMatchObject({ brokers: ["localhost:9092"], shown: "kafka://localhost:9092" });
    expect(parseKafkaUrl("kafka://broker")).toMatchObject({ brokers: ["broker:9092"] });
    expect(parseKafkaUrl("kafkas://b:9094")).toMatchObject({ ssl: true, shown: "kafkas://b:9094" });
    const sasl = parseKafkaUrl("kafka://user:p%40ss@b:9092?mechanism=scram-sha-512&ssl=true");
    expect(sasl).toMatchObject({ ssl: true, shown: "kafka://b:9092", sasl: { mechanism: "scram-sha-512", username: "user", password: "p@ss" } });
    expect(sasl.shown).not.toContain("p@ss");
  });

  it("refuses malformed URLs without showing the password", () => {
    for (const url of ["kafka://", "kafka://a:99999", "kafka://a b:9092", "kafka://u:s3cret@b:9092?mechanism=gssapi"]) {
      let err: unknown;
      try {
        parseKafkaUrl(url);
      } catch (e) {
        err = e;
      }
      expect(err, url).toMatchObject({ code: "BAD_CONFIG", retryable: false });
      expect((err as Error).message).not.toContain("s3cret");
    }
  });
});

describe("contiguousCommit (pure)", () => {
  it("commits the offset after the last of the acknowledged run at the front", () => {
    expect(contiguousCommit(["5", "6", "7"], new Set(["5", "6"]))).toEqual({ count: 2, offset: "7" });
    expect(contiguousCommit(["5", "6", "7"], new Set(["6", "7"]))).toEqual({ count: 0, offset: undefined });
    expect(contiguousCommit([], new Set())).toEqual({ count: 0, offset: undefined });
    // Gaps (compaction, transaction markers) are fine: contiguous means in delivery order.
    expect(contiguousCommit(["10", "13", "20"], new Set(["10", "13", "20"]))).toEqual({ count: 3, offset: "21" });
    // int64 offsets beyond 2^53 stay exact.
    expect(contiguousCommit(["9007199254740993"], new Set(["9007199254740993"]))).toEqual({ count: 1, offset: "9007199254740994" });
  });
});

describe("KafkaOffsetTracker (pure)", () => {
  it("commits per partition only up to the first unacknowledged message", () => {
    const t = new KafkaOffsetTracker();
    for (const o of ["0", "1", "2", "3"]) t.delivered(0, o);
    for (const o of ["7", "8"]) t.delivered(1, o);
    t.acked(0, "1");
    t.acked(1, "7");
    expect(t.commits()).toEqual([{ partition: 1, offset: "8" }]);
    t.acked(0, "0");
    expect(t.commits()).toEqual([
      { partition: 0, offset: "2" },
      { partition: 1, offset: "8" },
    ]);
    t.committed(t.commits());
    expect(t.commits()).toEqual([]);
    t.acked(0, "3"); // 2 still missing
    expect(t.commits()).toEqual([]);
    t.acked(0, "2");
    expect(t.commits()).toEqual([{ partition: 0, offset: "4" }]);
    expect(t.outstanding).toBe(1); // partition 1 offset 8
  });

  it("ignores repeated, unknown and refetched offsets, and forgets everything on reset", () => {
    const t = new KafkaOffsetTracker();
    t.delivered(0, "5");
    t.delivered(0, "5"); // refetch
    t.delivered(0, "4"); // behind: ignored
    t.acked(0, "99");
    t.acked(3, "1");
    expect(t.outstanding).toBe(1);
    t.acked(0, "5");
    t.acked(0, "5");
    expect(t.commits()).toEqual([{ partition: 0, offset: "6" }]);
    t.reset();
    expect(t.commits()).toEqual([]);
    t.acked(0, "6");
    expect(t.outstanding).toBe(0);
  });

  it("keeps a failed commit for the next round", () => {
    const t = new KafkaOffsetTracker();
    t.delivered(0, "0");
    t.delivered(0, "1");
    t.acked(0, "0");
    expect(t.commits()).toEqual([{ partition: 0, offset: "1" }]); // say this commit fails: not marked committed
    t.acked(0, "1");
    expect(t.commits()).toEqual([{ partition: 0, offset: "2" }]);
  });
});

/** A consumer driven by hand: the test calls `deliver` where kafkajs would call eachBatch. */
function fakeConsumer() {
  const listeners = new Map<string, ((e: unknown) => void)[]>();
  let eachBatch: ((p: EachBatchPayload) => Promise<void>) | undefined;
  const fake = {
    paused: 0,
    resumed: 0,
    commits: [] as { topic: string; partition: number; offset: string }[][],
    failCommits: false,
    disconnected: false,
    async run(config?: { eachBatch?: (p: EachBatchPayload) => Promise<void> }) {
      eachBatch = config?.eachBatch;
    },
    pause() {
      fake.paused++;
    },
    resume() {
      fake.resumed++;
    },
    async commitOffsets(offsets: { topic: string; partition: number; offset: string }[]) {
      if (fake.failCommits) throw new Error("The coordinator is not aware of this member");
      fake.commits.push(offsets);
    },
    async disconnect() {
      fake.disconnected = true;
    },
    on(event: string, listener: (e: unknown) => void) {
      listeners.set(event, [...(listeners.get(event) ?? []), listener]);
    },
    emit(event: string, payload: unknown) {
      for (const l of listeners.get(event) ?? []) l({ payload });
    },
    async deliver(partition: number, offsets: number[], topic = "t") {
      const messages = offsets.map((o) => ({
        key: null,
        value: Buffer.from(`p${partition}-${o}`),
        timestamp: "1700000000000",
        attributes: 0,
        offset: String(o),
        headers: { h: Buffer.from("v") },
      })) as KafkaMessage[];
      const batch = { topic, partition, messages } as unknown as EachBatchPayload["batch"];
      await eachBatch!({ batch, isRunning: () => true, isStale: () => false } as unknown as EachBatchPayload);
    },
  };
  return fake;
}

async function bridged(extra: { highWater?: number; lowWater?: number; log?: StreamLog } = {}) {
  const fake = fakeConsumer();
  const source = await bridgeKafkaConsumer(fake as unknown as KafkaConsumerLike, {
    topic: "t",
    description: "kafka://fake:9092 topic t group g",
    shown: "kafka://fake:9092",
    log: quiet,
    ...extra,
  });
  return { fake, source };
}

describe("Kafka bridge over a fake consumer (eachBatch → next, ack → commit)", () => {
  it("buffers batches for next and commits contiguous acknowledgements per partition", async () => {
    const { fake, source } = await bridged();
    await fake.deliver(0, [0, 1, 2]);
    await fake.deliver(1, [10, 11]);
    const got = await source.next(10, 100, never);
    expect(got.map(text)).toEqual(["p0-0", "p0-1", "p0-2", "p1-10", "p1-11"]);
    expect(got[0]).toMatchObject({ id: "t:0:0", publishedAt: 1_700_000_000_000, headers: { h: "v" } });

    await source.ack([got[1]!, got[3]!]); // p0-1 without p0-0: nothing to commit on partition 0
    expect(fake.commits).toEqual([[{ topic: "t", partition: 1, offset: "11" }]]);
    await source.ack([got[0]!]);
    expect(fake.commits.at(-1)).toEqual([{ topic: "t", partition: 0, offset: "2" }]);
    await source.ack([got[2]!, got[4]!]);
    expect(fake.commits.at(-1)).toEqual([
      { topic: "t", partition: 0, offset: "3" },
      { topic: "t", partition: 1, offset: "12" },
    ]);
    await source.close();
    expect(fake.disconnected).toBe(true);
  });

  it("pauses the topic when the buffer is full and resumes it once drained", async () => {
    const { fake, source } = await bridged({ highWater: 10, lowWater: 2 });
    await fake.deliver(0, [0, 1, 2, 3, 4, 5]);
    expect(fake.paused).toBe(0);
    await fake.deliver(0, [6, 7, 8, 9, 10, 11]);
    expect(fake.paused).toBe(1);
    expect(await source.next(5, 100, never)).toHaveLength(5);
    expect(fake.resumed).toBe(0); // 7 left, above the low-water mark
    expect(await source.next(5, 100, never)).toHaveLength(5);
    expect(fake.resumed).toBe(1); // 2 left
    await source.close();
  });

  it("on a group join drops the buffer and the bookkeeping: kafkajs starts again from the commits", async () => {
    const { fake, source } = await bridged();
    await fake.deliver(0, [0, 1, 2, 3]);
    const first = await source.next(2, 100, never); // 0, 1 handed out; 2, 3 buffered
    fake.emit("consumer.group_join", { memberAssignment: { t: [0] } });
    await source.ack(first); // from before the join: nothing known, nothing committed
    expect(fake.commits).toEqual([]);
    expect(await source.next(10, 50, never)).toEqual([]);
    await fake.deliver(0, [0, 1, 2, 3]); // refetched from the committed offset
    const again = await source.next(10, 100, never);
    expect(again.map((m) => m.id)).toEqual(["t:0:0", "t:0:1", "t:0:2", "t:0:3"]);
    await source.ack(again);
    expect(fake.commits).toEqual([[{ topic: "t", partition: 0, offset: "4" }]]);
    await source.close();
  });

  it("survives a failed commit and commits the lot with the next ack", async () => {
    const log = recordingLog();
    const { fake, source } = await bridged({ log });
    await fake.deliver(0, [0, 1]);
    const [a, b] = await source.next(2, 100, never);
    fake.failCommits = true;
    await source.ack([a!]);
    expect(log.lines).toContain("kafka commit failed; it is retried with the next ack");
    fake.failCommits = false;
    await source.ack([b!]);
    expect(fake.commits).toEqual([[{ topic: "t", partition: 0, offset: "2" }]]);
    await source.close();
  });

  it("keeps waiting through a crash kafkajs restarts from, and fails for good on an authentication failure", async () => {
    const { fake, source } = await bridged();
    fake.emit("consumer.crash", { error: new Error("Connection timeout"), restart: true });
    expect(await source.next(1, 50, never)).toEqual([]);
    const sasl = Object.assign(new Error("SASL PLAIN authentication failed"), { name: "KafkaJSSASLAuthenticationError" });
    fake.emit("consumer.crash", { error: sasl, restart: false });
    const err = await failure(source.next(1, 1000, never));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("kafka://fake:9092");
    await source.close();
  });

  it("next rejects with CANCELLED when its signal aborts", async () => {
    const { source } = await bridged();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    expect((await failure(source.next(1, 5000, ac.signal))).code).toBe("CANCELLED");
    await source.close();
  });
});

describe("Kafka source without a cluster (real kafkajs, nothing listening)", () => {
  it("refuses an unreachable cluster with a retryable NETWORK_ERROR that names it and not the password", async () => {
    const err = await failure(openKafkaSource({ broker: "kafka", url: "kafka://u:s3cret@127.0.0.1:1", topic: "x" }, { log: quiet }));
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("Kafka cluster kafka://127.0.0.1:1 failed to connect");
    expect(err.message).not.toContain("s3cret");
    expect((await failure(openKafkaSource({ broker: "kafka", url: "kafka://127.0.0.1:1" }))).code).toBe("BAD_CONFIG");
  });
});

// ---------------------------------------------------------------------------------------------

const run = runId();

/** The in-memory clusters of this file, by address; a URL naming none of them goes to real kafkajs. */
const fakes: FakeKafka[] = [];
const cluster = fakeKafka({ address: "127.0.0.1:9092" });
fakes.push(cluster);

/** The connector's options for `config`: a fake cluster's client when the URL names one (else kafkajs, which finds nothing there). */
function viaFake(config: StreamSourceConfig): KafkaOpenOptions {
  let brokers: string[] = [];
  try {
    brokers = parseKafkaUrl(config.url).brokers;
  } catch {
    /* a bad URL: the connector reports it */
  }
  const fake = fakes.find((f) => brokers.includes(f.address));
  return fake ? { log: quiet, client: (c) => fake.client(c) } : { log: quiet };
}

const openSource = (config: StreamSourceConfig) => openKafkaSource(config, viaFake(config));
const openPublisher = (config: StreamSourceConfig) => openKafkaPublisher(config, viaFake(config));

function fakeNames(tag: string): StreamSourceConfig {
  return { broker: "kafka", url: `kafka://${cluster.address}`, topic: `sluice-test-${run}-${tag}`, consumer: `sluice-test-${run}-${tag}` };
}

describe("Kafka source on an in-memory cluster (fake-kafka.ts: the kafkajs client API with offsets, groups and redelivery)", () => {
  sourceContract({
    kind: "kafka",
    label: "Kafka (in-memory cluster)",
    openSource,
    openPublisher,
    config: fakeNames,
    description: (config) => `kafka://${cluster.address} topic ${config.topic} group ${config.consumer}`,
    lagCountsUnacknowledged: true,
    uncountedDeliveries: true,
    badUrl: { broker: "kafka", url: "kafka://u:hunter2@bad host:9092", topic: "x" },
    // Real kafkajs: nothing listens there.
    unreachable: (port) => ({ broker: "kafka", url: `kafka://u:hunter2@127.0.0.1:${port}`, topic: "x" }),
    shown: (port) => `kafka://127.0.0.1:${port}`,
    async refusing() {
      const guarded = fakeKafka({ address: "127.0.0.1:9093", sasl: { username: "right", password: "secret" } });
      fakes.push(guarded);
      return {
        config: { broker: "kafka", url: "kafka://right:wrong-pass@127.0.0.1:9093", topic: "x" },
        port: 9093,
        dispose: async () => void fakes.splice(fakes.indexOf(guarded), 1),
      };
    },
    refusal: /SASL/,
  });

  it("splits the partitions between two sources of a group; those of one closed unacknowledged go to the other, which gets their messages again", async () => {
    const config = fakeNames("rebalance");
    cluster.createTopic(config.topic!, 4);
    const payloads = range(40, "r");
    await publishAll(openPublisher, config, payloads); // round robin: ten a partition
    const partitionOf = (id: string) => Number(id.split(":").at(-2));

    const a = await openSource(config);
    const b = await openSource(config); // the rebalance: a keeps partitions 0 and 2, b gets 1 and 3
    const seen: StreamMessage[] = [];
    const gotA = await collect(a, 20);
    const gotB = await collect(b, 20);
    seen.push(...gotA, ...gotB);
    expect(new Set(gotA.map((m) => partitionOf(m.id)))).toEqual(new Set([0, 2]));
    expect(new Set(gotB.map((m) => partitionOf(m.id)))).toEqual(new Set([1, 3]));
    expect([...gotA, ...gotB].map(text).sort()).toEqual([...payloads].sort());
    await a.ack(gotA);
    expect(cluster.committed(config.consumer!, config.topic!)).toEqual({ 0: "10", 2: "10" });

    await b.close(); // nothing acknowledged: its partitions go to a, from their (absent) commits
    const again = await collect(a, 20);
    seen.push(...again);
    expect(again.map(text).sort()).toEqual(gotB.map(text).sort());
    expect(await a.next(10, 100, never)).toEqual([]); // what a acknowledged does not come again
    // The same message under the same id on each delivery (the dead letters' key).
    expectStableIds(seen, Object.fromEntries(payloads.map((p) => [p, gotB.some((m) => text(m) === p) ? 2 : 1])));
    await a.ack(again);
    expect(cluster.committed(config.consumer!, config.topic!)).toEqual({ 0: "10", 1: "10", 2: "10", 3: "10" });
    expect(await a.lag!()).toBe(0);
    await a.close();
    expect(cluster.members).toBe(0);
  });

  it("pauses a topic whose buffer is full and delivers the rest once next drains it", async () => {
    const config = fakeNames("backpressure");
    await publishAll(openPublisher, config, range(25_000, "p"));
    const source = await openSource(config);
    await new Promise((r) => setTimeout(r, 100)); // no next: the buffer fills to 10,000 and the topic is paused
    expect(cluster.paused(config.consumer!)).toEqual([config.topic]);
    const got = await collect(source, 25_000, 20_000);
    expect(cluster.paused(config.consumer!)).toEqual([]);
    expect(got.map(text)).toEqual(range(25_000, "p"));
    await source.ack(got);
    expect(await source.lag!()).toBe(0);
    await source.close();
  });
});

const BROKERS = process.env.SLUICE_KAFKA_BROKERS;
const topics: string[] = [];

/** Where the round-trip tests run: the in-memory cluster always, a real one where SLUICE_KAFKA_BROKERS names it. */
interface Cluster {
  names(tag: string): StreamSourceConfig;
  createTopic(config: StreamSourceConfig, partitions?: number): Promise<void>;
}

const inMemory: Cluster = {
  names: (tag) => fakeNames(`trip-${tag}`),
  createTopic: async (config, partitions = 1) => cluster.createTopic(config.topic!, partitions),
};

const real: Cluster = {
  names(tag) {
    const topic = `sluice-test-${run}-${tag}`;
    topics.push(topic);
    return { broker: "kafka", url: `kafka://${BROKERS}`, topic, consumer: `sluice-test-${run}-${tag}` };
  },
  async createTopic(config, partitions = 1) {
    const admin = new kafkajs.Kafka({ brokers: parseKafkaUrl(config.url).brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: config.topic!, numPartitions: partitions }], waitForLeaders: true });
    await admin.disconnect();
  },
};

function roundTrips(c: Cluster): void {
  const publish = (config: StreamSourceConfig, payloads: string[]) => publishAll(openPublisher, config, payloads);

  it("delivers every message, commits on ack, and a reopened group gets nothing again", async () => {
    const config = c.names("all");
    await c.createTopic(config);
    await publish(config, range(200, "m"));
    const source = await openSource(config);
    const got = await collect(source, 200, 20_000);
    expect(got.map(text)).toEqual(range(200, "m"));
    await source.ack(got);
    expect(await source.lag!()).toBe(0);
    await source.close();

    // Reopened: the first message must be one published now, not one of the 200 again.
    const again = await openSource(config);
    await publish(config, ["sentinel"]);
    const next = await collect(again, 1, 20_000);
    expect(next.map(text)).toEqual(["sentinel"]);
    await again.ack(next);
    await again.close();
  }, 60_000);

  it("redelivers what was not acknowledged, and delivers what was published while closed", async () => {
    const config = c.names("redeliver");
    await c.createTopic(config);
    await publish(config, range(10, "r"));
    const source = await openSource(config);
    const got = await collect(source, 10, 20_000);
    await source.ack(got.slice(0, 4));
    await source.ack(got.slice(6)); // not contiguous: the commit stays after r-3
    await source.close();

    await publish(config, ["while-closed"]);
    const again = await openSource(config);
    const rest = await collect(again, 7, 20_000);
    expect(rest.map(text)).toEqual([...range(10, "r").slice(4), "while-closed"]);
    expect(rest[0]!.id).toBe(`${config.topic}:0:4`);
    await again.ack(rest);
    await again.close();
  }, 60_000);

  it("hands a single message over in well under 50 ms", async () => {
    const config = c.names("latency");
    await c.createTopic(config);
    const source = await openSource(config);
    await publish(config, ["warm-up"]);
    await source.ack(await collect(source, 1, 20_000));
    await expectQuickHandOver("kafka", source, await openPublisher(config));
  }, 60_000);
}

describe("Kafka round trips on the in-memory cluster", () => roundTrips(inMemory));

describe.skipIf(!BROKERS)("Kafka round trips on a real cluster (needs SLUICE_KAFKA_BROKERS, e.g. localhost:9092; skipped when unset)", () => {
  afterAll(async () => {
    if (topics.length === 0) return;
    const admin = new kafkajs.Kafka({ brokers: parseKafkaUrl(`kafka://${BROKERS}`).brokers, logLevel: kafkajs.logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.deleteTopics({ topics }).catch(() => {});
    await admin.deleteGroups(topics).catch(() => {}); // each test's group is named like its topic
    await admin.disconnect();
  }, 30_000);

  roundTrips(real);
});

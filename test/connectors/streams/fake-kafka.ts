/**
 * An in-memory Kafka cluster behind the part of the kafkajs client the connector uses
 * (KafkaClientLike: consumer, producer, admin), so the Kafka source runs the shared source
 * contract and the redelivery tests where no broker runs.
 *
 * What it models, as a broker and kafkajs do:
 * - topics of partitions, each a log of messages at offsets 0, 1, 2 …; a producer appends (round
 *   robin over the partitions for messages without a partition), with a timestamp and headers;
 * - consumer groups: a member joins when its consumer runs; every join or leave is a rebalance
 *   (a new generation: the partitions dealt out round robin over the members in join order, a
 *   `consumer.group_join` event to each), after which each member fetches every partition it was
 *   given from the group's committed offset (none: the beginning with `fromBeginning`, else the
 *   end). So whatever was delivered and not committed is delivered again after a close, a new
 *   process or a rebalance, and nothing committed is;
 * - the fetch loop: batches of up to 500 messages of one partition through `eachBatch`, one at a
 *   time, waiting for new messages; `pause` and `resume` by topic; `isStale` for a batch of an
 *   earlier generation; `commitOffsets` refused (UNKNOWN_MEMBER_ID) for a member that left;
 * - SASL PLAIN: a cluster made with credentials refuses others on connect, with kafkajs's error.
 *
 * What it leaves out: replication and leaders, retention and compaction (no offset gaps),
 * transactions, consumer crashes and restarts (the bridge tests in kafka.test.ts drive those).
 */
import kafkajs from "kafkajs";
import type {
  ConsumerConfig,
  ConsumerRunConfig,
  ConsumerSubscribeTopics,
  EachBatchPayload,
  IHeaders,
  KafkaConfig,
  KafkaMessage,
  Message,
  ProducerRecord,
  RecordMetadata,
} from "kafkajs";
import type { KafkaClientLike } from "../../../src/connectors/streams/kafka.js";

const MAX_BATCH = 500;

export interface FakeKafka {
  /** `host:port` it answers as: a client whose broker list names another address is not its client. */
  readonly address: string;
  /** The kafkajs client for `config` (pass as the connector's `client` option). */
  client(config: KafkaConfig): KafkaClientLike;
  /** Create `topic` with `partitions` partitions (topics are otherwise created with one on first use). */
  createTopic(topic: string, partitions: number): void;
  /** The group's committed offset of each partition of `topic` (absent: none committed). */
  committed(groupId: string, topic: string): Record<number, string>;
  /** The topics the group's members have paused. */
  paused(groupId: string): string[];
  /** Every member of every group that joined and has not left. */
  readonly members: number;
}

interface Member {
  groupId: string;
  topics: string[];
  fromBeginning: boolean;
  generation: number;
  assignment: Map<string, number[]>;
  /** Next offset to fetch, by `topic:partition`. */
  positions: Map<string, number>;
  paused: Set<string>;
  emit(event: string, payload: unknown): void;
  wake(): void;
}

interface Group {
  members: Member[];
  generation: number;
  committed: Map<string, number>;
}

export function fakeKafka(o: { address?: string; sasl?: { username: string; password: string } } = {}): FakeKafka {
  const address = o.address ?? "127.0.0.1:9092";
  const topics = new Map<string, KafkaMessage[][]>();
  const groups = new Map<string, Group>();

  const topic = (name: string): KafkaMessage[][] => {
    let t = topics.get(name);
    if (!t) topics.set(name, (t = [[]]));
    return t;
  };
  const group = (id: string): Group => {
    let g = groups.get(id);
    if (!g) groups.set(id, (g = { members: [], generation: 0, committed: new Map() }));
    return g;
  };
  const wakeAll = () => {
    for (const g of groups.values()) for (const m of g.members) m.wake();
  };

  /** A new generation of `g`: deal the partitions out again; each member starts at the commits. */
  const rebalance = (g: Group) => {
    g.generation++;
    const names = [...new Set(g.members.flatMap((m) => m.topics))];
    for (const m of g.members) {
      m.generation = g.generation;
      m.assignment = new Map(names.map((n) => [n, [] as number[]]));
      m.positions.clear();
    }
    for (const name of names) {
      const subscribers = g.members.filter((m) => m.topics.includes(name));
      topic(name).forEach((log, p) => {
        const m = subscribers[p % subscribers.length];
        if (!m) return;
        m.assignment.get(name)!.push(p);
        const at = g.committed.get(`${name}:${p}`);
        m.positions.set(`${name}:${p}`, at ?? (m.fromBeginning ? 0 : log.length));
      });
    }
    for (const m of g.members) {
      m.emit("consumer.group_join", { groupId: m.groupId, generationId: g.generation, memberAssignment: Object.fromEntries(m.assignment) });
      m.wake();
    }
  };

  const authenticate = (config: KafkaConfig) => {
    if (!config.brokers || typeof config.brokers === "function" || !config.brokers.includes(address)) {
      throw new Error(`fake Kafka cluster ${address} given a client for ${String(config.brokers)}`);
    }
    const given = config.sasl as { username?: string; password?: string } | undefined;
    if (o.sasl && (given?.username !== o.sasl.username || given?.password !== o.sasl.password)) {
      // What kafkajs's PLAIN authenticator throws when the broker answers SASL_AUTHENTICATION_FAILED.
      // (kafkajs's typings declare its constructor without the message it takes.)
      const SaslError = kafkajs.KafkaJSSASLAuthenticationError as unknown as new (message: string) => Error;
      throw new SaslError("SASL PLAIN authentication failed: SASL Authentication failed");
    }
  };

  const consumer = (config: KafkaConfig, { groupId }: ConsumerConfig) => {
    const listeners = new Map<string, ((e: { payload: unknown }) => void)[]>();
    let subscription: ConsumerSubscribeTopics | undefined;
    let waiting: (() => void) | undefined;
    let running = false;
    let stopped = false;
    const member: Member = {
      groupId,
      topics: [],
      fromBeginning: false,
      generation: 0,
      assignment: new Map(),
      positions: new Map(),
      paused: new Set(),
      emit: (event, payload) => {
        for (const l of listeners.get(event) ?? []) l({ payload });
      },
      wake: () => {
        waiting?.();
        waiting = undefined;
      },
    };
    const joined = () => group(groupId).members.includes(member);

    const fetchLoop = async (eachBatch: NonNullable<ConsumerRunConfig["eachBatch"]>) => {
      while (!stopped) {
        let fetched = false;
        const generation = member.generation;
        pass: for (const [name, partitions] of member.assignment) {
          if (member.paused.has(name)) continue;
          for (const p of partitions) {
            const key = `${name}:${p}`;
            const from = member.positions.get(key)!;
            const log = topic(name)[p]!;
            if (from >= log.length) continue;
            const messages = log.slice(from, from + MAX_BATCH);
            const batch = { topic: name, partition: p, highWatermark: String(log.length), messages } as unknown as EachBatchPayload["batch"];
            await eachBatch({ batch, isRunning: () => running && !stopped, isStale: () => member.generation !== generation } as unknown as EachBatchPayload);
            fetched = true;
            // A rebalance during the batch: start over with the new assignment and positions.
            if (stopped || member.generation !== generation) break pass;
            // eachBatchAutoResolve: the next fetch of the partition starts after the batch.
            member.positions.set(key, from + messages.length);
          }
        }
        // No await between the last look at the logs and this wait, so no produce is missed.
        if (!fetched && !stopped) await new Promise<void>((resolve) => (waiting = resolve));
      }
    };

    return {
      async connect() {
        authenticate(config);
      },
      async subscribe(s: ConsumerSubscribeTopics) {
        subscription = s;
        for (const t of s.topics) topic(String(t));
      },
      async run(run?: ConsumerRunConfig) {
        if (!subscription || !run?.eachBatch) throw new Error("fake Kafka consumer: subscribe, then run with eachBatch");
        running = true;
        member.topics = subscription.topics.map(String);
        member.fromBeginning = subscription.fromBeginning ?? false;
        group(groupId).members.push(member);
        rebalance(group(groupId));
        // As kafkajs: run resolves once the consumer is running; the fetch loop goes on by itself.
        void fetchLoop(run.eachBatch);
      },
      pause(ts: { topic: string }[]) {
        for (const t of ts) member.paused.add(t.topic);
      },
      resume(ts: { topic: string }[]) {
        for (const t of ts) member.paused.delete(t.topic);
        member.wake();
      },
      async commitOffsets(offsets: { topic: string; partition: number; offset: string }[]) {
        if (!joined()) {
          throw new kafkajs.KafkaJSProtocolError({
            type: "UNKNOWN_MEMBER_ID",
            code: 25,
            retriable: false,
            message: "The coordinator is not aware of this member",
          } as unknown as Error);
        }
        for (const c of offsets) group(groupId).committed.set(`${c.topic}:${c.partition}`, Number(c.offset));
      },
      async disconnect() {
        if (stopped) return;
        stopped = true;
        running = false;
        member.wake();
        const g = group(groupId);
        if (joined()) {
          g.members = g.members.filter((m) => m !== member);
          rebalance(g);
        }
      },
      // `never`: a listener of any kafkajs event's payload fits; `emit` gives each the payload of its event.
      on(event: string, listener: (e: never) => void) {
        const l = listener as (e: { payload: unknown }) => void;
        listeners.set(event, [...(listeners.get(event) ?? []), l]);
        return () =>
          void listeners.set(
            event,
            (listeners.get(event) ?? []).filter((x) => x !== l),
          );
      },
    };
  };

  const producer = (config: KafkaConfig) => {
    let next = 0;
    return {
      async connect() {
        authenticate(config);
      },
      async send(record: ProducerRecord): Promise<RecordMetadata[]> {
        const partitions = topic(record.topic);
        const out: RecordMetadata[] = [];
        for (const m of record.messages as Message[]) {
          const p = m.partition ?? next++ % partitions.length;
          const log = partitions[p]!;
          log.push({
            key: m.key == null ? null : Buffer.from(m.key),
            value: m.value == null ? null : Buffer.from(m.value),
            timestamp: String(Date.now()),
            attributes: 0,
            offset: String(log.length),
            headers: headersOf(m.headers),
          } as KafkaMessage);
          out.push({ topicName: record.topic, partition: p, errorCode: 0, baseOffset: String(log.length - 1) });
        }
        wakeAll();
        return out;
      },
      async disconnect() {},
    };
  };

  const admin = (config: KafkaConfig) => ({
    async connect() {
      authenticate(config);
    },
    async fetchTopicOffsets(name: string) {
      return topic(name).map((log, partition) => ({ partition, offset: String(log.length), high: String(log.length), low: "0" }));
    },
    async fetchOffsets({ groupId, topics: names = [] }: { groupId: string; topics?: string[] }) {
      const g = group(groupId);
      return names.map((name) => ({
        topic: name,
        partitions: topic(name).map((_, partition) => ({ partition, offset: String(g.committed.get(`${name}:${partition}`) ?? -1), metadata: null })),
      }));
    },
    async disconnect() {},
  });

  return {
    address,
    client: (config) => ({
      consumer: (c) => consumer(config, c),
      producer: () => producer(config),
      admin: () => admin(config),
    }),
    createTopic(name, partitions) {
      if (!topics.has(name))
        topics.set(
          name,
          Array.from({ length: partitions }, () => []),
        );
    },
    committed(groupId, name) {
      const g = group(groupId);
      const out: Record<number, string> = {};
      topic(name).forEach((_, p) => {
        const at = g.committed.get(`${name}:${p}`);
        if (at !== undefined) out[p] = String(at);
      });
      return out;
    },
    paused(groupId) {
      return [...new Set(group(groupId).members.flatMap((m) => [...m.paused]))];
    },
    get members() {
      let n = 0;
      for (const g of groups.values()) n += g.members.length;
      return n;
    },
  };
}

/** kafkajs hands a consumer every header value as a Buffer. */
function headersOf(h: IHeaders | undefined): Record<string, Buffer> | undefined {
  if (!h) return undefined;
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Buffer.from(Array.isArray(v) ? v.join(",") : v);
  return out;
}

/**
 * Kafka stream source and publisher (kafkajs 2).
 *
 * Decisions worth knowing:
 *
 * - The source is a member of consumer group `consumer` (default `sluice`) on topic `topic`
 *   (or `subject`), with auto-commit off. A group with no committed offset starts at the
 *   beginning of the topic, so nothing published before the first run is skipped.
 * - kafkajs drives its own fetch loop and calls `eachBatch`; `next` is a pull. The bridge: each
 *   batch is appended to a buffer and `eachBatch` returns at once (kafkajs then fetches on from
 *   the batch end, in memory; nothing is committed). When the buffer holds `highWater` messages
 *   the topic is paused (kafkajs keeps heartbeating, so the group membership holds), and `next`
 *   resumes it once the buffer is down to `lowWater`.
 * - `ack` commits, per partition, the offset after the last message of the run of acknowledged
 *   messages that starts at the last commit (`KafkaOffsetTracker`): an unacknowledged message
 *   holds the commit back, so a crash can only redeliver, never skip. Commits are chained, so a
 *   later commit never overtakes an earlier one; a failed commit is retried with the next `ack`.
 * - A rebalance (or a kafkajs restart after a crash) makes kafkajs start every assigned partition
 *   again from its committed offset. So on each group join the buffer and the bookkeeping are
 *   reset: what was buffered or delivered and not committed comes again (ids are
 *   `topic:partition:offset`, the same each time, for the idempotent storage).
 * - kafkajs reconnects by itself; after its retries it "crashes" and restarts the consumer. Only a
 *   crash it will not restart from (authentication, authorization, invalid topic) fails the
 *   source, with BAD_CONFIG.
 * - The kafkajs client is made by `opts.client` (default `new Kafka(config)`): the tests give an
 *   in-memory cluster there, as no broker runs where they run.
 */
import type { Admin, Consumer, ConsumerConfig, EachBatchPayload, IHeaders, KafkaConfig, KafkaMessage, Producer, ProducerConfig, SASLOptions } from "kafkajs";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { DEFAULT_CONSUMER, Inbox, NOOP_LOG, errorMessage, toBuffer, type ConnectorOptions } from "./common.js";
import type { BrokerDescriptor, StreamLog, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

/** kafkajs, loaded on the first open (the registry imports this module for its descriptor). */
const kafkajsLibrary = async () => (await import("kafkajs")).default;

/** The part of a kafkajs client (`new Kafka(config)`) the connector uses. */
export interface KafkaClientLike {
  consumer(config: ConsumerConfig): KafkaConsumerLike & Pick<Consumer, "connect" | "subscribe">;
  producer(config?: ProducerConfig): Pick<Producer, "connect" | "send" | "disconnect">;
  admin(): Pick<Admin, "connect" | "fetchTopicOffsets" | "fetchOffsets" | "disconnect">;
}

export interface KafkaOpenOptions extends ConnectorOptions {
  /** Makes the client from the config built out of the URL (default: kafkajs's `new Kafka(config)`). */
  client?: (config: KafkaConfig) => KafkaClientLike;
}

export const kafkaBroker: BrokerDescriptor<"kafka"> = {
  kind: "kafka",
  title: "Kafka",
  config: z.object({
    url: z.string().min(1).describe("kafka://[user:pass@]host:port[,host:port][?mechanism=scram-sha-256] (kafkas:// for TLS)"),
    topic: z.string().min(1).optional().describe("the topic"),
    subject: z.string().min(1).optional().describe("the topic, when topic is not given"),
    consumer: z.string().min(1).optional().describe("the consumer group (default sluice); a new group starts at the beginning of the topic"),
  }),
  description: "a member of a consumer group (kafkajs), auto-commit off",
  delivery: "at least once: after a restart or a rebalance every partition starts again at its committed offset",
  ack: "an offset commit per partition, up to the first message not yet acknowledged, after the store commit",
  openSource: (config, o) => openKafkaSource(config, o),
  openPublisher: (config, o) => openKafkaPublisher(config, o),
};

const DEFAULT_PORT = 9092;
const HIGH_WATER = 10_000;
const LOW_WATER = 2_000;
/** Publisher: messages sent in one produce request at most. */
const PUBLISH_BATCH = 1000;

/** The broker list and credentials in a `kafka://[user:pass@]host:port[,host:port][?mechanism=…&ssl=true]` URL. */
export interface KafkaTarget {
  brokers: string[];
  /** For logs: `kafka://host:port,host:port`, never the password. */
  shown: string;
  ssl: boolean;
  sasl?: SASLOptions;
}

/**
 * Parse a Kafka URL: `kafka://host:port[,host:port…]`, `kafkas://…` (TLS), or a bare
 * `host:port,host:port` list. `user:pass@` enables SASL (`?mechanism=plain` default,
 * `scram-sha-256`, `scram-sha-512`); `?ssl=true` enables TLS.
 */
export function parseKafkaUrl(url: string): KafkaTarget {
  const bad = (why: string) =>
    new SluiceError("BAD_CONFIG", `Kafka URL ${maskUserInfo(url)} ${why} (expected kafka://host:port[,host:port]).`, { retryable: false });
  const m = /^(?:(kafkas?):\/\/)?(?:([^@/]*)@)?([^/?#]+)\/?(?:\?([^#]*))?$/.exec(url.trim());
  if (!m) throw bad("is not valid");
  const [, scheme, userInfo, hosts, query] = m;
  const params = new URLSearchParams(query ?? "");
  const brokers = hosts!
    .split(",")
    .map((h) => h.trim())
    .filter(Boolean);
  if (brokers.length === 0) throw bad("names no broker");
  const normalised = brokers.map((b) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$/.exec(b);
    if (!hp) throw bad(`has an invalid broker address ${JSON.stringify(b)}`);
    const port = hp[2] === undefined ? DEFAULT_PORT : Number(hp[2]);
    if (port < 1 || port > 65535) throw bad(`has an invalid port in ${JSON.stringify(b)}`);
    return `${hp[1]}:${port}`;
  });
  const target: KafkaTarget = {
    brokers: normalised,
    shown: `${scheme ?? "kafka"}://${normalised.join(",")}`,
    ssl: scheme === "kafkas" || params.get("ssl") === "true",
  };
  if (userInfo) {
    const colon = userInfo.indexOf(":");
    const username = decodeURIComponent(colon < 0 ? userInfo : userInfo.slice(0, colon));
    const password = colon < 0 ? "" : decodeURIComponent(userInfo.slice(colon + 1));
    const mechanism = (params.get("mechanism") ?? "plain").toLowerCase();
    if (mechanism !== "plain" && mechanism !== "scram-sha-256" && mechanism !== "scram-sha-512") {
      throw bad(`has an unsupported SASL mechanism ${JSON.stringify(mechanism)} (plain, scram-sha-256, scram-sha-512)`);
    }
    target.sasl = { mechanism, username, password };
  }
  return target;
}

/**
 * The offset to commit for one partition: given the offsets delivered and not yet committed (in
 * delivery order, ascending) and the set of acknowledged ones, the length of the acknowledged run
 * at the front and the offset after its last message (`undefined` when the first is unacknowledged).
 * Offsets are int64 strings; gaps (compaction, transaction markers) are fine.
 */
export function contiguousCommit(pending: readonly string[], acked: ReadonlySet<string>): { count: number; offset: string | undefined } {
  let count = 0;
  while (count < pending.length && acked.has(pending[count]!)) count++;
  return { count, offset: count === 0 ? undefined : (BigInt(pending[count - 1]!) + 1n).toString() };
}

interface PartitionState {
  /** Delivered offsets not yet folded into a commit, ascending. */
  pending: string[];
  known: Set<string>;
  /** Acknowledged offsets among `pending`. */
  acked: Set<string>;
  /** The highest offset delivered. */
  last: bigint;
  /** The offset to commit (next to read), once a run of acknowledgements completed. */
  commitAt: string | undefined;
  committed: string | undefined;
}

/** Delivered and acknowledged offsets per partition, and what to commit. */
export class KafkaOffsetTracker {
  private readonly partitions = new Map<number, PartitionState>();

  /** A message was handed out. Offsets at or below the last one seen are ignored (a refetch). */
  delivered(partition: number, offset: string): void {
    let p = this.partitions.get(partition);
    if (!p) {
      p = { pending: [], known: new Set(), acked: new Set(), last: -1n, commitAt: undefined, committed: undefined };
      this.partitions.set(partition, p);
    }
    const o = BigInt(offset);
    if (o <= p.last) return;
    p.last = o;
    p.pending.push(offset);
    p.known.add(offset);
  }

  /** A message was acknowledged; unknown offsets (another generation, already committed) are ignored. */
  acked(partition: number, offset: string): void {
    const p = this.partitions.get(partition);
    if (!p || !p.known.has(offset)) return;
    p.acked.add(offset);
    const { count, offset: next } = contiguousCommit(p.pending, p.acked);
    if (count === 0) return;
    for (const o of p.pending.splice(0, count)) {
      p.acked.delete(o);
      p.known.delete(o);
    }
    p.commitAt = next;
  }

  /** Per partition, the next offset to read where it moved past the last successful commit. */
  commits(): { partition: number; offset: string }[] {
    const out: { partition: number; offset: string }[] = [];
    for (const [partition, p] of this.partitions) if (p.commitAt !== undefined && p.commitAt !== p.committed) out.push({ partition, offset: p.commitAt });
    return out;
  }

  /** Record a successful commit (a later `commits()` leaves these out unless they moved on). */
  committed(commits: readonly { partition: number; offset: string }[]): void {
    for (const c of commits) {
      const p = this.partitions.get(c.partition);
      if (p && (p.committed === undefined || BigInt(c.offset) > BigInt(p.committed))) p.committed = c.offset;
    }
  }

  /** Messages delivered and not yet acknowledged. */
  get outstanding(): number {
    let n = 0;
    for (const p of this.partitions.values()) n += p.pending.length - p.acked.size;
    return n;
  }

  /** Forget everything (a group join: kafkajs starts again from the committed offsets). */
  reset(): void {
    this.partitions.clear();
  }
}

/** The part of a kafkajs consumer the bridge uses (a fake one in the tests). */
export interface KafkaConsumerLike {
  run: Consumer["run"];
  pause: Consumer["pause"];
  resume: Consumer["resume"];
  commitOffsets: Consumer["commitOffsets"];
  disconnect: Consumer["disconnect"];
  on(event: "consumer.group_join", listener: (e: { payload: { memberAssignment: Record<string, number[]> } }) => void): unknown;
  on(event: "consumer.crash", listener: (e: { payload: { error: Error; restart: boolean } }) => void): unknown;
}

export interface KafkaBridgeOptions {
  topic: string;
  description: string;
  /** For error messages: the broker list (never a password). */
  shown: string;
  log?: StreamLog;
  highWater?: number;
  lowWater?: number;
  lag?: () => Promise<number | undefined>;
  /** Called after the consumer disconnected in `close` (the admin client, say). */
  onClose?: () => Promise<void>;
}

/**
 * A StreamSource over a connected, subscribed consumer: starts `consumer.run` and buffers what
 * `eachBatch` delivers. Exported for the unit tests, which drive it with a fake consumer.
 */
export async function bridgeKafkaConsumer(consumer: KafkaConsumerLike, o: KafkaBridgeOptions): Promise<StreamSource> {
  const log = o.log ?? NOOP_LOG;
  const highWater = o.highWater ?? HIGH_WATER;
  const lowWater = o.lowWater ?? LOW_WATER;
  const inbox = new Inbox<StreamMessage>();
  const tracker = new KafkaOffsetTracker();
  let paused = false;
  let closing = false;
  let commitChain: Promise<void> = Promise.resolve();

  const pause = (on: boolean) => {
    try {
      if (on) consumer.pause([{ topic: o.topic }]);
      else consumer.resume([{ topic: o.topic }]);
      paused = on;
    } catch (err) {
      // Between a crash and the restart kafkajs has no consumer group to pause; the join resets this.
      log.warn(`kafka ${on ? "pause" : "resume"} failed`, { source: o.description, error: errorMessage(err) });
    }
  };

  consumer.on("consumer.group_join", (e) => {
    const dropped = inbox.clear();
    const outstanding = tracker.outstanding;
    tracker.reset();
    if (paused) pause(false);
    log.info("kafka consumer joined the group", {
      source: o.description,
      assignment: e.payload.memberAssignment[o.topic] ?? [],
      bufferedDropped: dropped,
      unacknowledged: outstanding,
    });
  });
  consumer.on("consumer.crash", (e) => {
    if (closing) return;
    const { error, restart } = e.payload;
    if (restart) {
      log.warn("kafka consumer lost the cluster; restarting", { source: o.description, error: error.message });
      return;
    }
    const failure = kafkaError(error, o.shown, `consume ${o.topic}`);
    log.error("kafka source failed", { source: o.description, error: failure.message });
    inbox.fail(failure);
  });

  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: true,
    eachBatch: async ({ batch, isRunning, isStale }: EachBatchPayload) => {
      if (!isRunning() || isStale() || closing) return;
      for (const m of batch.messages) {
        tracker.delivered(batch.partition, m.offset);
        inbox.push(toStreamMessage(batch.topic, batch.partition, m));
      }
      if (!paused && inbox.size >= highWater) pause(true);
    },
  });

  function commit(): Promise<void> {
    commitChain = commitChain.then(async () => {
      const commits = tracker.commits();
      if (commits.length === 0) return;
      try {
        await consumer.commitOffsets(commits.map((c) => ({ topic: o.topic, partition: c.partition, offset: c.offset })));
        tracker.committed(commits);
      } catch (err) {
        // A rebalance or an outage: the next ack commits again; a new generation re-reads from here.
        log.warn("kafka commit failed; it is retried with the next ack", { source: o.description, error: errorMessage(err) });
      }
    });
    return commitChain;
  }

  const source: StreamSource = {
    description: o.description,
    async next(max, maxWaitMs, signal) {
      const out = await inbox.next(max, maxWaitMs, signal, o.description);
      if (paused && inbox.size <= lowWater && !closing) pause(false);
      return out;
    },
    async ack(messages) {
      for (const m of messages) {
        const pos = parseKafkaId(m.id);
        if (pos) tracker.acked(pos.partition, pos.offset);
      }
      await commit();
    },
    async close() {
      if (closing) return;
      await commit();
      closing = true;
      await consumer.disconnect().catch(() => {});
      await o.onClose?.().catch(() => {});
      inbox.close(`Kafka source ${o.description}`);
    },
  };
  if (o.lag) source.lag = o.lag;
  return source;
}

/** Open a Kafka source: connected, subscribed, running as a member of the consumer group. */
export async function openKafkaSource(config: StreamSourceConfig, opts: KafkaOpenOptions = {}): Promise<StreamSource> {
  const target = parseKafkaUrl(config.url);
  const topic = config.topic ?? config.subject;
  if (!topic) throw new SluiceError("BAD_CONFIG", `Kafka source ${target.shown} needs a topic (topic or subject).`, { retryable: false });
  const groupId = config.consumer ?? DEFAULT_CONSUMER;
  const description = `${target.shown} topic ${topic} group ${groupId}`;
  const log = opts.log ?? NOOP_LOG;
  const kafka = await kafkaClient(opts, target, `sluice-${groupId}`, log, description);
  const consumer = kafka.consumer({
    groupId,
    retry: { restartOnFailure: async (err) => !isPermanent(err) },
  });
  if (opts.signal?.aborted) throw new SluiceError("CANCELLED", `Opening Kafka source ${description} was cancelled.`, { retryable: false });
  let doing = "connect";
  try {
    await consumer.connect();
    doing = `subscribe to ${topic}`;
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
  } catch (err) {
    await consumer.disconnect().catch(() => {});
    throw kafkaError(err, target.shown, doing);
  }
  let admin: ReturnType<KafkaClientLike["admin"]> | undefined;
  const source = await bridgeKafkaConsumer(consumer, {
    topic,
    description,
    shown: target.shown,
    log,
    async lag() {
      try {
        if (!admin) {
          admin = kafka.admin();
          await admin.connect();
        }
        const [ends, committed] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId, topics: [topic] })]);
        const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
        let lag = 0n;
        for (const e of ends) {
          const at = done.get(e.partition) ?? -1n;
          const from = at < 0n ? BigInt(e.low) : at;
          if (BigInt(e.high) > from) lag += BigInt(e.high) - from;
        }
        return Number(lag);
      } catch {
        return undefined;
      }
    },
    onClose: async () => {
      await admin?.disconnect();
    },
  });
  log.info("kafka source open", { source: description });
  opts.signal?.addEventListener("abort", () => void source.close(), { once: true });
  return source;
}

/** Open a Kafka publisher to `topic` (or `subject`): acks from all in-sync replicas; `flush` waits for them. */
export async function openKafkaPublisher(config: StreamSourceConfig, opts: KafkaOpenOptions = {}): Promise<StreamPublisher> {
  const target = parseKafkaUrl(config.url);
  const topic = config.topic ?? config.subject;
  if (!topic) throw new SluiceError("BAD_CONFIG", `Kafka publisher ${target.shown} needs a topic (topic or subject).`, { retryable: false });
  const log = opts.log ?? NOOP_LOG;
  const { Partitioners } = await kafkajsLibrary();
  const kafka = await kafkaClient(opts, target, "sluice-publisher", log, `${target.shown} topic ${topic}`);
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  try {
    await producer.connect();
  } catch (err) {
    await producer.disconnect().catch(() => {});
    throw kafkaError(err, target.shown, "connect");
  }
  const queue: { value: Buffer; headers?: IHeaders }[] = [];
  let chain: Promise<void> = Promise.resolve();
  let scheduled = false;
  let failure: SluiceError | undefined;

  // Messages published in the same tick go out in one produce request, in order.
  const send = () => {
    scheduled = false;
    while (queue.length > 0) {
      const messages = queue.splice(0, PUBLISH_BATCH);
      chain = chain.then(async () => {
        try {
          await producer.send({ topic, acks: -1, messages });
        } catch (err) {
          failure ??= kafkaError(err, target.shown, `publish to ${topic}`);
        }
      });
    }
  };

  return {
    async publish(data, headers) {
      if (failure) throw failure;
      const value = toBuffer(data);
      queue.push(headers ? { value, headers } : { value });
      if (queue.length >= PUBLISH_BATCH) {
        send();
        await chain;
      } else if (!scheduled) {
        scheduled = true;
        setImmediate(send);
      }
    },
    async flush() {
      send();
      await chain;
      if (failure) throw failure;
    },
    async close() {
      send();
      await chain;
      await producer.disconnect().catch(() => {});
    },
  };
}

// ---------------------------------------------------------------------------------------------

/** The client for `target`: `opts.client`'s, else kafkajs's. */
async function kafkaClient(opts: KafkaOpenOptions, target: KafkaTarget, clientId: string, log: StreamLog, what: string): Promise<KafkaClientLike> {
  const { Kafka, logLevel } = await kafkajsLibrary();
  const config: KafkaConfig = {
    clientId,
    brokers: target.brokers,
    ssl: target.ssl,
    connectionTimeout: 3000,
    retry: { initialRetryTime: 100, maxRetryTime: 5000, retries: 5 },
    logLevel: logLevel.WARN,
    // kafkajs's own warnings and errors (mostly connection trouble it is retrying) go to our log.
    logCreator: () => (entry) => log.warn(`kafkajs: ${entry.log.message}`, { source: what, namespace: entry.namespace }),
  };
  if (target.sasl) config.sasl = target.sasl;
  // kafkajs's Consumer declares `on` for each of its events; the connector listens to two of them.
  return opts.client ? opts.client(config) : (new Kafka(config) as unknown as KafkaClientLike);
}

const PERMANENT_TYPES = new Set([
  "SASL_AUTHENTICATION_FAILED",
  "UNSUPPORTED_SASL_MECHANISM",
  "ILLEGAL_SASL_STATE",
  "TOPIC_AUTHORIZATION_FAILED",
  "GROUP_AUTHORIZATION_FAILED",
  "CLUSTER_AUTHORIZATION_FAILED",
  "INVALID_TOPIC_EXCEPTION",
  "INVALID_GROUP_ID",
]);

/** Failures that retrying cannot fix, looking through kafkajs's wrappers to the original cause. */
function isPermanent(err: unknown): boolean {
  for (let e = err as (Error & { type?: string; cause?: unknown; originalError?: unknown }) | undefined, depth = 0; e && depth < 10; depth++) {
    if (e.name === "KafkaJSSASLAuthenticationError") return true;
    if (typeof e.type === "string" && PERMANENT_TYPES.has(e.type)) return true;
    e = (e.cause ?? e.originalError) as typeof e;
  }
  return false;
}

function kafkaError(err: unknown, shown: string, doing: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const message = errorMessage(err);
  const details = { broker: "kafka", url: shown };
  if (isPermanent(err)) {
    return new SluiceError("BAD_CONFIG", `Kafka cluster ${shown} refused to ${doing}: ${message}`, { retryable: false, cause: err, details });
  }
  if (/ENOTFOUND|EAI_AGAIN/.test(message)) {
    return new SluiceError("NETWORK_ERROR", `Kafka cluster ${shown}: host not found (${message}).`, { retryable: false, cause: err, details });
  }
  return new SluiceError("NETWORK_ERROR", `Kafka cluster ${shown} failed to ${doing}: ${message}`, { retryable: true, cause: err, details });
}

function toStreamMessage(topic: string, partition: number, m: KafkaMessage): StreamMessage {
  const message: StreamMessage = { data: m.value ?? new Uint8Array(0), id: `${topic}:${partition}:${m.offset}` };
  const at = Number(m.timestamp);
  if (Number.isFinite(at) && at > 0) message.publishedAt = at;
  if (m.headers) {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(m.headers)) {
      if (v === undefined) continue;
      headers[k] = Array.isArray(v) ? v.map(String).join(",") : v.toString();
    }
    if (Object.keys(headers).length > 0) message.headers = headers;
  }
  return message;
}

/** `topic:partition:offset` (the topic may hold colons; the numbers never do). */
function parseKafkaId(id: string): { partition: number; offset: string } | undefined {
  const m = /:(\d+):(\d+)$/.exec(id);
  return m ? { partition: Number(m[1]), offset: m[2]! } : undefined;
}

function maskUserInfo(url: string): string {
  return url.replace(/\/\/[^/@\s]*@/, "//");
}

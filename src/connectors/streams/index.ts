/**
 * One entry point over the stream brokers: `openStreamSource(config, opts)` and
 * `openStreamPublisher(config)` dispatch on `config.broker`.
 *
 * Each broker lives in its own module (nats.ts, redis.ts, mqtt.ts, rabbitmq.ts, kafka.ts,
 * http-push.ts) and is imported only when a workflow names it, so a NATS pipeline never loads
 * kafkajs, ioredis, mqtt or amqplib.
 */
import { SluiceError } from "../../errors.js";
import type { BrokerKind, StreamLog, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

export type { BrokerKind, StreamLog, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

export interface OpenSourceOptions {
  log?: StreamLog;
  /** Aborting closes the source (do not pass a signal that fires before the pipeline's flush has acknowledged). */
  signal?: AbortSignal;
  /** NATS: how long a delivered, unacknowledged message waits before redelivery (the consumer's ack wait). */
  ackWaitMs?: number;
  /** Redis: how long an entry of another (dead) consumer stays pending before it is claimed. */
  claimIdleMs?: number;
}

interface Broker {
  source(config: StreamSourceConfig, opts: OpenSourceOptions): Promise<StreamSource>;
  publisher(config: StreamSourceConfig): Promise<StreamPublisher>;
}

/** Each broker's module, loaded on first use. */
const BROKER_MODULES: Record<BrokerKind, () => Promise<Broker>> = {
  nats: async () => import("./nats.js").then((m) => ({ source: m.openNatsSource, publisher: m.openNatsPublisher })),
  redis: async () => import("./redis.js").then((m) => ({ source: m.openRedisSource, publisher: m.openRedisPublisher })),
  mqtt: async () => import("./mqtt.js").then((m) => ({ source: m.openMqttSource, publisher: m.openMqttPublisher })),
  rabbitmq: async () => import("./rabbitmq.js").then((m) => ({ source: m.openRabbitMqSource, publisher: m.openRabbitMqPublisher })),
  kafka: async () => import("./kafka.js").then((m) => ({ source: m.openKafkaSource, publisher: m.openKafkaPublisher })),
  http: async () => import("./http-push.js").then((m) => ({ source: m.openHttpPushSource, publisher: m.openHttpPushPublisher })),
};

export const BROKERS = Object.keys(BROKER_MODULES) as readonly BrokerKind[];

/** Open the source the config names (connect, check or create the stream, resume the durable consumer). */
export async function openStreamSource(config: StreamSourceConfig, opts: OpenSourceOptions = {}): Promise<StreamSource> {
  return (await broker(config)).source(config, opts);
}

/** Open a publisher on the config's subject / topic / stream key (tests, benchmarks, feeding tools). */
export async function openStreamPublisher(config: StreamSourceConfig): Promise<StreamPublisher> {
  return (await broker(config)).publisher(config);
}

function broker(config: StreamSourceConfig): Promise<Broker> {
  const load = (BROKER_MODULES as Partial<Record<string, () => Promise<Broker>>>)[config?.broker];
  if (!load)
    throw new SluiceError("BAD_CONFIG", `Unknown stream broker ${JSON.stringify(config?.broker)}: expected one of ${BROKERS.join(", ")}.`, { retryable: false });
  return load();
}

/**
 * One entry point over the stream brokers: `openStreamSource(config, opts)` and
 * `openStreamPublisher(config)` dispatch on `config.broker`.
 *
 * Each broker lives in its own module (nats.ts, redis.ts, mqtt.ts, rabbitmq.ts, kafka.ts,
 * http-push.ts) and is imported only when a workflow names it, so a NATS pipeline never loads
 * kafkajs, ioredis, mqtt or amqplib. The module specifier is a variable on purpose: a broker
 * module that is not there (yet) is a clear NOT_IMPLEMENTED when it is asked for, not a
 * compile error for every other broker.
 *
 * Each module exports `open<Name>Source(config, { log, signal })` and `open<Name>Publisher(config)`;
 * the export is found by that name, case-insensitively (`openRabbitMqSource` and
 * `openRabbitmqSource` both do).
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
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

export const BROKERS: readonly BrokerKind[] = ["nats", "redis", "mqtt", "rabbitmq", "kafka", "http"];

/** The module of each broker and the name in its exports (`open${name}Source`). */
const MODULES: Record<BrokerKind, { file: string; name: string }> = {
  nats: { file: "./nats.js", name: "Nats" },
  redis: { file: "./redis.js", name: "Redis" },
  mqtt: { file: "./mqtt.js", name: "Mqtt" },
  rabbitmq: { file: "./rabbitmq.js", name: "RabbitMq" },
  kafka: { file: "./kafka.js", name: "Kafka" },
  http: { file: "./http-push.js", name: "HttpPush" },
};

type OpenSource = (config: StreamSourceConfig, opts: OpenSourceOptions) => Promise<StreamSource>;
type OpenPublisher = (config: StreamSourceConfig) => Promise<StreamPublisher>;

/** Open the source the config names (connect, check or create the stream, resume the durable consumer). */
export async function openStreamSource(config: StreamSourceConfig, opts: OpenSourceOptions = {}): Promise<StreamSource> {
  const open = await brokerExport<OpenSource>(config, "Source");
  return open(config, opts);
}

/** Open a publisher on the config's subject / topic / stream key (tests, benchmarks, feeding tools). */
export async function openStreamPublisher(config: StreamSourceConfig): Promise<StreamPublisher> {
  const open = await brokerExport<OpenPublisher>(config, "Publisher");
  return open(config);
}

async function brokerExport<F>(config: StreamSourceConfig, what: "Source" | "Publisher"): Promise<F> {
  const broker = config?.broker;
  const entry = (MODULES as Partial<Record<string, { file: string; name: string }>>)[broker];
  if (!entry) {
    throw new SluiceError("BAD_CONFIG", `Unknown stream broker ${JSON.stringify(broker)}: expected one of ${BROKERS.join(", ")}.`, { retryable: false });
  }
  // A broker whose module is not in this build (neither compiled nor, under a TS runner, source).
  const url = new URL(entry.file, import.meta.url);
  if (url.protocol === "file:" && !existsSync(fileURLToPath(url)) && !existsSync(fileURLToPath(url).replace(/\.js$/, ".ts"))) {
    throw new SluiceError("NOT_IMPLEMENTED", `Stream broker ${broker} is not available yet in this build (no ${entry.file.slice(2)} connector).`, { retryable: false });
  }
  const file = entry.file;
  const mod = (await import(file)) as Record<string, unknown>;
  const wanted = `open${entry.name}${what}`.toLowerCase();
  const fn = Object.entries(mod).find(([k, v]) => k.toLowerCase() === wanted && typeof v === "function")?.[1];
  if (typeof fn !== "function") {
    throw new SluiceError("NOT_IMPLEMENTED", `Stream broker ${broker}: its connector has no open${entry.name}${what}.`, { retryable: false });
  }
  return fn as F;
}

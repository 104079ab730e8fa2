/**
 * Stream sources and publishers: one interface over the brokers (NATS JetStream, Redis Streams,
 * MQTT, RabbitMQ, Kafka, HTTP push), and the descriptor each broker's module exports.
 *
 * Delivery is at least once and acknowledgement is explicit: the pipeline acknowledges a batch
 * only after the storage transaction holding its records has committed, so a crash before the
 * commit redelivers the batch (and the idempotent storage absorbs the repeat). Sources reconnect
 * by themselves with backoff when the broker restarts or the network drops; `next` then waits,
 * it does not throw, unless the failure is permanent (bad credentials, no such stream).
 */

import type { z } from "zod";

export interface StreamMessage {
  /** The payload as received. */
  data: Uint8Array;
  /**
   * The id of the message within its stream: the SAME on every delivery of it (after a reconnect,
   * a broker restart, in a new process), and never the id of another message. Dead letters are
   * keyed on it (`<origin>#<id>`), so an id that changed would dead-letter a redelivery twice, and
   * one that was reused would drop another message's dead letter as already written.
   *
   * NATS: the stream sequence. Redis: the entry id. Kafka: `topic:partition:offset`. RabbitMQ: the
   * `message-id` property when the publisher set one (ours sets a UUID on each message), else
   * `sha256:` + the hex SHA-256 of the body. MQTT: the MQTT 5 user property `message-id` when the
   * publisher set one (ours sets a UUID), else `sha256:` + the hex SHA-256 of topic, NUL and
   * payload. A content hash is the same for two publications of the same payload: those count as
   * one message for dead letters. HTTP push: `sha256:` + the SHA-256 of the record (a sender that
   * sends a record again sends the same id).
   *
   * What numbers deliveries rather than messages (RabbitMQ delivery tags, MQTT packet ids, which
   * connection a delivery came on) is never part of the id: a source keeps it per delivery, beside
   * the message object it handed out, for acknowledging.
   */
  id: string;
  /** When the broker received it (epoch ms), when the broker says; for latency figures. */
  publishedAt?: number;
  headers?: Record<string, string>;
  /** How many times the broker has delivered it (1 on first delivery), when the broker says. */
  deliveries?: number;
}

/**
 * What a workflow's `establish_stream_connection` step (or a test, a bench, `sluice publish`) gives
 * a connector: every name any broker reads. Which of them a broker reads, and what each means to
 * it, is its descriptor's `config` schema (the README's broker table lists them).
 */
export interface StreamSourceConfig {
  /** A descriptor's `kind` (the registry's BrokerKind); a connector refuses a config of another. */
  broker: string;
  /** Where the broker is (where the source listens, for HTTP push). */
  url: string;
  /** What to read, in the broker's terms: a subject, a stream key, a topic (filter), a routing key. */
  subject?: string;
  stream?: string;
  topic?: string;
  queue?: string;
  /** The name the broker remembers our position under: durable consumer, consumer group, client id. */
  consumer?: string;
}

export interface StreamSource {
  /** `nats://127.0.0.1:4222 stream TRADES subject market.trades consumer sluice`: for logs and status. */
  readonly description: string;
  /**
   * The next messages: waits until at least one is available, then returns up to `max` of those
   * that are available now, or after `maxWaitMs` returns what there is (possibly none). Rejects
   * only when `signal` aborts or the source failed for good.
   */
  next(max: number, maxWaitMs: number, signal: AbortSignal): Promise<StreamMessage[]>;
  /** Acknowledge (commit) these messages: the broker will not deliver them again. */
  ack(messages: StreamMessage[]): Promise<void>;
  /** Messages waiting in the broker for this consumer, when the broker can say (for the lag figure). */
  lag?(): Promise<number | undefined>;
  /** Stop fetching; messages delivered but not acknowledged are redelivered later. */
  close(): Promise<void>;
}

/** Publishing, for tests, benchmarks and `sluice` tools that feed a stream. */
export interface StreamPublisher {
  publish(data: Uint8Array | string, headers?: Record<string, string>): Promise<void>;
  /** Wait until everything published so far is confirmed by the broker. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface StreamLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** The options of every source: what the pipeline gives whichever broker it reads. */
export interface OpenSourceOptions {
  log?: StreamLog;
  /** Aborting closes the source (do not pass a signal that fires before the pipeline's flush has acknowledged). */
  signal?: AbortSignal;
  /**
   * How long a delivered, unacknowledged message waits before it is delivered again to another
   * source, for the brokers that redeliver on a timer (NATS: the consumer's ack wait; Redis: the
   * idle time after which a dead consumer's entries are claimed). The others redeliver when the
   * connection or the group membership ends, and ignore it.
   */
  redeliverAfterMs?: number;
}

/** The fields of a descriptor's `config` schema: `url`, and the names of StreamSourceConfig it reads. */
export type BrokerConfigShape = { url: z.ZodString } & { [K in Exclude<keyof StreamSourceConfig, "broker" | "url">]?: z.ZodOptional<z.ZodString> };

/**
 * One broker, as its module declares it (the registry collects them; lists, the catalogue's
 * `broker:` values and the README's broker table derive from them). A module loads its client
 * library only inside `openSource` / `openPublisher`, so reading the descriptors loads none.
 */
export interface BrokerDescriptor<K extends string = string> {
  /** The `broker:` value of workflows and `sluice publish`. */
  readonly kind: K;
  /** The broker's name for people: `NATS JetStream`. */
  readonly title: string;
  /** The config fields it reads, each with a description; `url`'s is the URL form. */
  readonly config: z.ZodObject<BrokerConfigShape>;
  /** How the source consumes, in a phrase (after the title in the README table's "source" column). */
  readonly description: string;
  /** Delivery semantics: what comes again, when, and to whom. */
  readonly delivery: string;
  /** The acknowledgement model: what `ack` does at the broker, and when the pipeline calls it. */
  readonly ack: string;
  openSource(config: StreamSourceConfig, opts: OpenSourceOptions): Promise<StreamSource>;
  /** For tests, benchmarks and `sluice publish`; absent when Sluice cannot feed the broker. */
  openPublisher?(config: StreamSourceConfig, opts: { log?: StreamLog }): Promise<StreamPublisher>;
}

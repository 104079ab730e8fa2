/**
 * One entry point over the stream brokers: `openStreamSource(config, opts)` and
 * `openStreamPublisher(config)` find `config.broker`'s descriptor in the registry and open it.
 *
 * Each broker lives in its own module (nats.ts, redis.ts, mqtt.ts, rabbitmq.ts, kafka.ts,
 * http-push.ts), which loads its client library only when a source or publisher is opened, so a
 * NATS pipeline never loads kafkajs, ioredis, mqtt or amqplib.
 */
import { SluiceError } from "../../errors.js";
import { BROKER_KINDS, brokerOf } from "./registry.js";
import type { BrokerDescriptor, OpenSourceOptions, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

export { BROKERS, BROKER_KINDS, type BrokerKind } from "./registry.js";
export type { OpenSourceOptions, StreamLog, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

/** Open the source the config names (connect, check or create the stream, resume the durable consumer). */
export async function openStreamSource(config: StreamSourceConfig, opts: OpenSourceOptions = {}): Promise<StreamSource> {
  return broker(config).openSource(config, opts);
}

/** Open a publisher on the config's subject / topic / stream key (tests, benchmarks, feeding tools). */
export async function openStreamPublisher(config: StreamSourceConfig): Promise<StreamPublisher> {
  const b = broker(config);
  if (!b.openPublisher) throw new SluiceError("BAD_CONFIG", `Sluice cannot publish to a ${b.title} broker; feed it with its own tools.`, { retryable: false });
  return b.openPublisher(config, {});
}

function broker(config: StreamSourceConfig): BrokerDescriptor {
  const found = brokerOf(config?.broker);
  if (!found)
    throw new SluiceError("BAD_CONFIG", `Unknown stream broker ${JSON.stringify(config?.broker)}: expected one of ${BROKER_KINDS.join(", ")}.`, {
      retryable: false,
    });
  return found;
}

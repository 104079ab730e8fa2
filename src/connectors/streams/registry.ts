/**
 * The brokers: one descriptor each, exported by the broker's own module (nats.ts, redis.ts,
 * mqtt.ts, rabbitmq.ts, kafka.ts, http-push.ts) and collected here, the one list. What lists
 * brokers derives from it: the `broker:` values the catalogue accepts and the fields of the
 * connection step, `sluice publish`'s check, the README's broker table (docs.ts). Adding a broker
 * is a module exporting its descriptor, a line here, and its test running the source contract.
 *
 * Importing this loads no client library: each module imports its own inside its open functions.
 */
import { type z } from "zod";
import { httpPushBroker } from "./http-push.js";
import { kafkaBroker } from "./kafka.js";
import { mqttBroker } from "./mqtt.js";
import { natsBroker } from "./nats.js";
import { rabbitMqBroker } from "./rabbitmq.js";
import { redisBroker } from "./redis.js";
import type { BrokerDescriptor } from "./types.js";

/** In the order they are listed to users (error messages, the README table). */
export const BROKERS = [natsBroker, redisBroker, mqttBroker, rabbitMqBroker, kafkaBroker, httpPushBroker] as const;

export type BrokerKind = (typeof BROKERS)[number]["kind"];

export const BROKER_KINDS = BROKERS.map((b) => b.kind) as [BrokerKind, ...BrokerKind[]];

/** The descriptor of `kind`, or undefined for a kind no broker has. */
export function brokerOf(kind: string): BrokerDescriptor | undefined {
  return BROKERS.find((b) => b.kind === kind);
}

/**
 * The connection fields of every broker in one zod shape, for a step that names its broker in a
 * field of its own (`establish_stream_connection`): each field any broker reads, optional unless
 * every broker requires it, described by what it means to each broker that reads it
 * ("NATS JetStream: the subject read …; Redis Streams: the stream key"). A field must have the
 * same type wherever it appears: the registry test checks.
 */
export function connectionShape(): Record<string, z.ZodType> {
  const names = [...new Set(BROKERS.flatMap((b) => Object.keys(b.config.shape)))];
  return Object.fromEntries(
    names.map((name) => {
      const readers = BROKERS.filter((b) => fieldOf(b, name) !== undefined);
      const first = fieldOf(readers[0]!, name)!;
      const requiredByAll = readers.length === BROKERS.length && readers.every((b) => !fieldOf(b, name)!.safeParse(undefined).success);
      const meaning = readers.map((b) => `${b.title}: ${fieldOf(b, name)!.description ?? name}`).join("; ");
      return [name, (requiredByAll ? first : first.optional()).describe(`${meaning}.`)];
    }),
  );
}

function fieldOf(broker: BrokerDescriptor, name: string): z.ZodType | undefined {
  return (broker.config.shape as Record<string, z.ZodType | undefined>)[name];
}

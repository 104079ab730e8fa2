/**
 * RabbitMQ stream source and publisher (amqplib 2, AMQP 0-9-1).
 *
 * Decisions worth knowing:
 *
 * - The source consumes a durable queue, `queue` (default: `subject`), declared when missing.
 *   When `subject` is given the queue is also bound to the `amq.topic` exchange with `subject` as
 *   the routing key (a topic pattern: `*` and `#` allowed), so publishers to `amq.topic` reach it;
 *   with `queue` alone, publishers send to the queue through the default exchange.
 * - Manual acknowledgement with a prefetch of 2,000: the broker has at most that many messages
 *   unacknowledged with us, enough for a batch. `ack` acknowledges the batch's delivery tags: the
 *   oldest run of unacknowledged tags that the batch completes goes in one `multiple` ack (which
 *   acknowledges every unacknowledged tag up to it, so it is used only when that is exactly what
 *   was asked), any other tag on its own. AMQP acks have no reply: `ack` resolves after a
 *   round trip on the same channel, so the broker has processed them by then.
 * - When the connection or the channel closes unexpectedly the source reconnects with backoff
 *   (100 ms doubling to 5 s, with jitter), declares the queue again and consumes again; `next`
 *   just waits meanwhile. The broker puts the messages that were unacknowledged on the lost
 *   channel back in the queue and delivers them again with `redelivered` set (`deliveries` 2, or
 *   `x-delivery-count` + 1 on quorum queues), so the source drops the copies it had not handed out
 *   yet, and acknowledgements of messages from the lost channel are ignored (their delivery tags
 *   mean nothing on a new channel; the redelivered copies are acknowledged instead).
 * - Refusals that retrying cannot fix (login refused, unknown virtual host, a queue that exists
 *   with other arguments, no permission) raise BAD_CONFIG; while running they fail the source.
 * - `lag()` is the queue's ready message count (checkQueue); messages delivered to us and not yet
 *   acknowledged are not in it.
 * - Message ids are the same on every delivery of a message (dead letters are keyed on them): the
 *   `message-id` property when the publisher set one (ours sets a random UUID on each message),
 *   else `sha256:` + the hex SHA-256 of the body (so two publications of the same body share an
 *   id). Delivery tags are no ids: they number the deliveries of one channel, restart with each
 *   channel, and a redelivered message gets a new one. What acknowledging needs (the channel's
 *   generation and the delivery tag) is kept per delivery instead.
 * - The publisher uses a confirm channel: `flush` waits until the broker confirmed every message,
 *   and fails when one was refused or, published to `amq.topic` with `mandatory`, unroutable.
 */
import { createHash, randomUUID } from "node:crypto";
import { once } from "node:events";
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Message } from "amqplib";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { safeUrl } from "../secrets.js";
import { Inbox, NOOP_LOG, errorMessage, sleepUnlessAborted, toBuffer, RECONNECT_PERIOD, withJitter, type ConnectorOptions } from "./common.js";
import type { BrokerDescriptor, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

/** amqplib, loaded on the first open (the registry imports this module for its descriptor). */
const amqplib = () => import("amqplib");

export type RabbitMqOpenOptions = ConnectorOptions;

const EXCHANGE = "amq.topic";
const PREFETCH = 2000;
const HEARTBEAT_S = 15;
const CONNECT_TIMEOUT_MS = 10_000;

export const rabbitMqBroker: BrokerDescriptor<"rabbitmq"> = {
  kind: "rabbitmq",
  title: "RabbitMQ (AMQP 0-9-1)",
  config: z.object({
    url: z.string().min(1).describe("amqp://user:pass@host:port/vhost (amqps:// for TLS)"),
    queue: z.string().min(1).optional().describe("the durable queue consumed, declared when missing (default: subject)"),
    subject: z.string().min(1).optional().describe("the routing key (a topic pattern) binding the queue to amq.topic"),
  }),
  description: "a durable queue, manual acknowledgement, a prefetch of 2,000",
  delivery: "at least once: what was unacknowledged on a lost connection or channel goes back to the queue and comes again marked redelivered",
  ack: "basic.ack of the batch's delivery tags (one `multiple` ack for a run of them), confirmed by a round trip, after the store commit",
  openSource: (config, o) => openRabbitMqSource(config, o),
  openPublisher: (config, o) => openRabbitMqPublisher(config, o),
};

interface Target {
  /** The URL to connect with (credentials included). */
  url: string;
  /** The URL to show (credentials removed). */
  shown: string;
  queue: string;
  routingKey: string | undefined;
}

interface Session {
  generation: number;
  model: ChannelModel;
  channel: Channel;
  tracker: DeliveryTagTracker;
  /** Delivered, unacknowledged messages by delivery tag (amqplib acks take the message). */
  delivered: Map<number, ConsumeMessage>;
  /** Set when the connection or the channel closed. */
  dead: boolean;
}

/** One delivery of a message: what acknowledging it needs (never parsed out of the message id). */
interface Delivery {
  /** The session (connection and channel) it came on. */
  generation: number;
  /** Its delivery tag on that session's channel. */
  tag: number;
}

/** Open a RabbitMQ source: connected, queue declared (and bound), consuming. */
export async function openRabbitMqSource(config: StreamSourceConfig, opts: RabbitMqOpenOptions = {}): Promise<StreamSource> {
  const target = parseRabbitConfig(config, "source");
  const description = `${target.shown} queue ${target.queue}${target.routingKey ? ` exchange ${EXCHANGE} routing key ${target.routingKey}` : ""}`;
  const log = opts.log ?? NOOP_LOG;
  const inbox = new Inbox<StreamMessage>();
  let generation = 0;
  let session: Session | undefined;
  let closing = false;
  let reconnecting: Promise<void> | undefined;
  const deliveryOf = new WeakMap<StreamMessage, Delivery>();

  async function establish(): Promise<Session> {
    const gen = ++generation;
    const { connect } = await amqplib();
    const model = await connect(target.url, { timeout: CONNECT_TIMEOUT_MS, noDelay: true, clientProperties: { connection_name: `sluice ${target.queue}` } });
    const state = { dead: false };
    const died = (why: string) => {
      state.dead = true;
      lost(gen, why);
    };
    try {
      model.on("error", (err: Error) => log.warn("rabbitmq connection error", { source: description, error: err.message }));
      model.on("close", () => died("connection closed"));
      const channel = await model.createChannel();
      channel.on("error", (err: Error) => log.warn("rabbitmq channel error", { source: description, error: err.message }));
      channel.on("close", () => died("channel closed"));
      await channel.assertQueue(target.queue, { durable: true });
      if (target.routingKey !== undefined) await channel.bindQueue(target.queue, EXCHANGE, target.routingKey);
      await channel.prefetch(PREFETCH);
      const s: Session = Object.assign(state, {
        generation: gen,
        model,
        channel,
        tracker: new DeliveryTagTracker(),
        delivered: new Map<number, ConsumeMessage>(),
      });
      await channel.consume(target.queue, (msg) => onMessage(s, msg), { noAck: false });
      return s;
    } catch (err) {
      await model.close().catch(() => {});
      throw err;
    }
  }

  function onMessage(s: Session, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted): start over, which declares it again.
      log.warn("rabbitmq consumer cancelled by the broker; reconnecting", { source: description });
      void s.model.close().catch(() => {});
      lost(s.generation, "consumer cancelled");
      return;
    }
    if (s.dead || (session !== undefined && s !== session)) return;
    const tag = msg.fields.deliveryTag;
    s.tracker.delivered(tag);
    s.delivered.set(tag, msg);
    const message: StreamMessage = { data: msg.content, id: messageIdOf(msg), deliveries: deliveriesOf(msg) };
    deliveryOf.set(message, { generation: s.generation, tag });
    const headers = headersOf(msg);
    if (headers) message.headers = headers;
    const at = publishedAtOf(msg);
    if (at !== undefined) message.publishedAt = at;
    inbox.push(message);
  }

  /** The session of generation `gen` is gone: reconnect (once), unless closing. */
  function lost(gen: number, why: string): void {
    if (closing || session?.generation !== gen) return;
    const old = session;
    session = undefined;
    void old.model.close().catch(() => {});
    // The broker requeues everything that was unacknowledged on the lost channel.
    const dropped = inbox.remove((m) => deliveryOf.get(m)?.generation === gen);
    log.warn("rabbitmq connection lost; reconnecting", { source: description, reason: why, bufferedDropped: dropped });
    reconnecting ??= reconnect().finally(() => {
      reconnecting = undefined;
    });
  }

  async function reconnect(): Promise<void> {
    let delay = RECONNECT_PERIOD.initialMs;
    for (let attempt = 1; !closing; attempt++) {
      await sleepUnlessAborted(withJitter(delay));
      if (closing) return;
      try {
        const s = await establish();
        if (closing) {
          await s.model.close().catch(() => {});
          return;
        }
        session = s;
        log.info("rabbitmq reconnected", { source: description, attempts: attempt });
        if (s.dead) lost(s.generation, "closed while reconnecting");
        return;
      } catch (err) {
        const failure = classify(err, target, "source");
        if (!failure.retryable) {
          log.error("rabbitmq source failed", { source: description, error: failure.message });
          inbox.fail(failure);
          return;
        }
        if (attempt === 1 || attempt % 10 === 0) log.warn("rabbitmq reconnect failed; retrying", { source: description, attempt, error: failure.message });
        delay = Math.min(delay * 2, RECONNECT_PERIOD.maxMs);
      }
    }
  }

  if (opts.signal?.aborted) throw new SluiceError("CANCELLED", `Opening RabbitMQ source ${description} was cancelled.`, { retryable: false });
  try {
    session = await establish();
  } catch (err) {
    throw classify(err, target, "source");
  }
  if (session.dead) lost(session.generation, "closed while opening");
  log.info("rabbitmq source open", { source: description });

  const source: StreamSource = {
    description,
    next: (max, maxWaitMs, signal) => inbox.next(max, maxWaitMs, signal, description),
    async ack(messages) {
      const s = session;
      if (!s) return; // the lost channel's messages come back anyway
      const tags: number[] = [];
      for (const m of messages) {
        const d = deliveryOf.get(m);
        if (d?.generation === s.generation) tags.push(d.tag);
      }
      const plan = s.tracker.ack(tags);
      try {
        if (plan.upTo !== undefined) {
          s.channel.ack(s.delivered.get(plan.upTo)!, true);
          for (const tag of s.delivered.keys()) if (tag <= plan.upTo) s.delivered.delete(tag);
        }
        for (const tag of plan.single) {
          s.channel.ack(s.delivered.get(tag)!, false);
          s.delivered.delete(tag);
        }
        // basic.ack has no reply, and amqplib may still hold the frames; a round trip on the same
        // channel (frames are handled in order) makes `ack` resolve once the broker has them.
        if (plan.upTo !== undefined || plan.single.length > 0) await s.channel.checkQueue(target.queue);
      } catch (err) {
        // The channel closed under us: the broker requeues these and delivers them again.
        log.warn("rabbitmq acknowledgement not sent; the broker will redeliver", { source: description, error: errorMessage(err) });
      }
    },
    async lag() {
      const s = session;
      if (!s) return undefined;
      try {
        return (await s.channel.checkQueue(target.queue)).messageCount;
      } catch {
        return undefined;
      }
    },
    async close() {
      if (closing) return;
      closing = true;
      const s = session;
      session = undefined;
      // Channel first: amqplib multiplexes channels onto the socket, and a connection close sent
      // at once could overtake acknowledgements still queued on the channel.
      if (s) {
        await s.channel.close().catch(() => {});
        await s.model.close().catch(() => {});
      }
      inbox.close(`RabbitMQ source ${description}`);
    },
  };
  // Aborting the open signal later closes the source.
  opts.signal?.addEventListener("abort", () => void source.close(), { once: true });
  return source;
}

/**
 * Open a RabbitMQ publisher on a confirm channel: to `amq.topic` with routing key `subject` when
 * given (declaring and binding `queue` too when both are given), else to `queue` directly.
 */
export async function openRabbitMqPublisher(config: StreamSourceConfig, opts: RabbitMqOpenOptions = {}): Promise<StreamPublisher> {
  const target = parseRabbitConfig(config, "publisher");
  const viaExchange = config.subject !== undefined;
  let model: ChannelModel;
  let channel: ConfirmChannel;
  const { connect } = await amqplib();
  try {
    model = await connect(target.url, {
      timeout: CONNECT_TIMEOUT_MS,
      noDelay: true,
      clientProperties: { connection_name: `sluice publisher ${target.routingKey ?? target.queue}` },
    });
  } catch (err) {
    throw classify(err, target, "publisher");
  }
  let failure: SluiceError | undefined;
  let unroutable = 0;
  let closing = false;
  model.on("error", (err: Error) => opts.log?.warn("rabbitmq publisher connection error", { url: target.shown, error: err.message }));
  model.on("close", () => {
    if (!closing) failure ??= new SluiceError("NETWORK_ERROR", `RabbitMQ publisher ${target.shown}: the connection closed.`, { retryable: true });
  });
  try {
    channel = await model.createConfirmChannel();
    channel.on("error", (err: Error) => {
      failure ??= classify(err, target, "publisher");
    });
    channel.on("return", () => {
      unroutable++;
    });
    if (config.queue !== undefined || !viaExchange) {
      await channel.assertQueue(target.queue, { durable: true });
      if (viaExchange) await channel.bindQueue(target.queue, EXCHANGE, target.routingKey!);
    }
  } catch (err) {
    await model.close().catch(() => {});
    throw classify(err, target, "publisher");
  }
  const exchange = viaExchange ? EXCHANGE : "";
  const routingKey = viaExchange ? target.routingKey! : target.queue;

  return {
    async publish(data, headers) {
      if (failure) throw failure;
      const body = toBuffer(data);
      let ok: boolean;
      try {
        const options = {
          persistent: true,
          mandatory: viaExchange,
          messageId: randomUUID(),
          timestamp: Math.floor(Date.now() / 1000),
          ...(headers ? { headers } : {}),
        };
        ok = channel.publish(exchange, routingKey, body, options, (err) => {
          if (err) failure ??= new SluiceError("NETWORK_ERROR", `RabbitMQ broker ${target.shown} refused a message for ${routingKey}.`, { retryable: true });
        });
      } catch (err) {
        throw failure ?? new SluiceError("NETWORK_ERROR", `RabbitMQ publisher ${target.shown}: ${errorMessage(err)}`, { retryable: true, cause: err });
      }
      if (!ok) await Promise.race([once(channel, "drain"), once(channel, "close")]);
    },
    async flush() {
      if (failure) throw failure;
      try {
        await channel.waitForConfirms();
      } catch (err) {
        throw (
          failure ??
          new SluiceError("NETWORK_ERROR", `RabbitMQ broker ${target.shown} did not confirm every message: ${errorMessage(err)}`, {
            retryable: true,
            cause: err,
          })
        );
      }
      if (failure) throw failure;
      if (unroutable > 0) {
        const n = unroutable;
        unroutable = 0;
        throw new SluiceError(
          "BAD_CONFIG",
          `RabbitMQ broker ${target.shown} returned ${n} unroutable message(s): no queue is bound to routing key ${routingKey} on ${EXCHANGE}.`,
          { retryable: false },
        );
      }
    },
    async close() {
      closing = true;
      await channel.waitForConfirms().catch(() => {});
      await model.close().catch(() => {});
    },
  };
}

/**
 * Delivery tags of one channel, to acknowledge a batch with as few frames as possible and never
 * acknowledge a tag twice (which would close the channel with PRECONDITION_FAILED).
 */
export class DeliveryTagTracker {
  /** Delivered tags, ascending (the broker numbers deliveries 1, 2, 3… per channel). */
  private order: number[] = [];
  private head = 0;
  private readonly unacked = new Set<number>();

  delivered(tag: number): void {
    this.order.push(tag);
    this.unacked.add(tag);
  }

  get outstanding(): number {
    return this.unacked.size;
  }

  /**
   * Acknowledge `tags`: `upTo` is the tag to acknowledge with `multiple` (every unacknowledged tag
   * up to it is in `tags`), `single` the others, ascending. Unknown and repeated tags are ignored.
   */
  ack(tags: Iterable<number>): { upTo: number | undefined; single: number[] } {
    const fresh = new Set<number>();
    for (const t of tags) if (this.unacked.delete(t)) fresh.add(t);
    let upTo: number | undefined;
    while (this.head < this.order.length && !this.unacked.has(this.order[this.head]!)) {
      const t = this.order[this.head++]!;
      if (fresh.has(t)) upTo = t;
    }
    if (this.head > 4096 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
    const single = [...fresh].filter((t) => upTo === undefined || t > upTo).sort((a, b) => a - b);
    return { upTo, single };
  }
}

// ---------------------------------------------------------------------------------------------

function parseRabbitConfig(config: StreamSourceConfig, what: "source" | "publisher"): Target {
  let u: URL;
  try {
    u = new URL(config.url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `RabbitMQ URL ${safeUrl(config.url)} is not a valid URL (amqp://user:pass@host:port/vhost).`, { retryable: false });
  }
  if ((u.protocol !== "amqp:" && u.protocol !== "amqps:") || !u.hostname) {
    throw new SluiceError("BAD_CONFIG", `RabbitMQ URL ${safeUrl(config.url)} must look like amqp://user:pass@host:port/vhost (or amqps://).`, {
      retryable: false,
    });
  }
  const queue = config.queue ?? config.subject;
  if (!queue) throw new SluiceError("BAD_CONFIG", `RabbitMQ ${what} ${safeUrl(config.url)} needs a queue (queue or subject).`, { retryable: false });
  // A heartbeat notices a dead peer in seconds instead of waiting for TCP to give up.
  if (!u.searchParams.has("heartbeat")) u.searchParams.set("heartbeat", String(HEARTBEAT_S));
  return { url: u.toString(), shown: safeUrl(config.url), queue, routingKey: config.subject };
}

/** A SluiceError for a failure to connect or set up: permanent ones are not retryable. */
function classify(err: unknown, target: Target, what: "source" | "publisher"): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as Error & { code?: unknown };
  const message = errorMessage(err);
  const details = { broker: "rabbitmq", url: target.shown, queue: target.queue };
  const where = `RabbitMQ broker ${target.shown}`;
  if (/ACCESS[-_]REFUSED/.test(message) && /Handshake/.test(message)) {
    return new SluiceError("BAD_CONFIG", `${where} refused the login (check the user name and password).`, { retryable: false, cause: err, details });
  }
  if (/Expected ConnectionOpenOk/.test(message)) {
    const vhost = decodeURIComponent(new URL(target.url).pathname.slice(1)) || "/";
    return new SluiceError("BAD_CONFIG", `${where} refused to open virtual host ${vhost}: it does not exist or the user has no access to it.`, {
      retryable: false,
      cause: err,
      details,
    });
  }
  if (e.code === 403 || e.code === 404 || e.code === 406 || e.code === 530) {
    return new SluiceError("BAD_CONFIG", `${where} refused to set up ${what} queue ${target.queue}: ${message}`, { retryable: false, cause: err, details });
  }
  if (e.code === "ENOTFOUND") {
    return new SluiceError("NETWORK_ERROR", `${where}: host not found.`, { retryable: false, cause: err, details });
  }
  return new SluiceError("NETWORK_ERROR", `${where} is not reachable: ${message}`, { retryable: true, cause: err, details });
}

function deliveriesOf(msg: ConsumeMessage): number {
  const count = msg.properties.headers?.["x-delivery-count"];
  if (typeof count === "number") return count + 1;
  return msg.fields.redelivered ? 2 : 1;
}

function headersOf(msg: Message): Record<string, string> | undefined {
  const h = msg.properties.headers;
  if (!h) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || v === null) continue;
    out[k] = typeof v === "string" ? v : Buffer.isBuffer(v) ? v.toString() : typeof v === "object" ? JSON.stringify(v) : String(v);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The broker's receive time when it stamps one (`timestamp_in_ms` header), else the publisher's timestamp. */
function publishedAtOf(msg: Message): number | undefined {
  const ms = msg.properties.headers?.["timestamp_in_ms"];
  if (typeof ms === "number") return ms;
  const s = msg.properties.timestamp;
  return typeof s === "number" ? s * 1000 : undefined;
}

/** The id of a message, the same on every delivery of it: its `message-id` property, else `sha256:` + the hex SHA-256 of the body. */
export function messageIdOf(msg: Message): string {
  const given: unknown = msg.properties.messageId;
  if (typeof given === "string" && given !== "") return given;
  return `sha256:${createHash("sha256").update(msg.content).digest("hex")}`;
}

/**
 * MQTT stream source and publisher (mqtt.js 5, speaking MQTT 5).
 *
 * Decisions worth knowing:
 *
 * - Persistent session: the source connects with `clean: false` and a session expiry interval, under
 *   the client id `consumer` (default `sluice`), and subscribes at QoS 1. The broker keeps the
 *   subscription and queues QoS 1 messages while the pipeline is down, and delivers them when it
 *   comes back. (MQTT 5 ends the session when the connection closes unless the CONNECT carries a
 *   session expiry interval, so `clean: false` alone is not enough.) Mosquitto keeps at most
 *   `max_queued_messages` (default 1000) per offline client and drops the rest; raise it in the
 *   broker configuration for long outages. Its sessions survive a broker restart only with
 *   `persistence true`, and only what was saved: on SIGTERM, or every `autosave_interval`.
 * - The PUBACK is held back until `ack`: an unacknowledged message stays in flight in the broker's
 *   session and is redelivered (DUP set) on the next connection. mqtt.js has no public API for
 *   this (`handleMessage` and `customHandleAcks` hold back the whole incoming packet stream, pings
 *   included, until their callback), so `handleMessage` reports the message as "not handled",
 *   which makes mqtt.js skip the PUBACK and go on reading, and `ack` sends the PUBACK through the
 *   client's packet writer (`_sendPacket`). That private method is checked for at open.
 * - PUBACKs go out in the order the PUBLISHes arrived, as the spec requires ([MQTT-4.6.0-2];
 *   Mosquitto matches them by packet id, other brokers may insist on the order): acknowledging a
 *   message that arrived after one still unacknowledged waits until that one is acknowledged too.
 * - The broker sends at most `receiveMaximum` (2,000) unacknowledged messages at a time, the
 *   batch window; MQTT 3.1.1 brokers would cap it at their own setting (Mosquitto: 20).
 * - Reconnects use mqtt.js's reconnect timer with the period doubled after each failed attempt
 *   (100 ms up to 5 s, with jitter). A reconnect that resumes the session makes the broker
 *   resend the unacknowledged messages, so messages of the old connection that `next` had not
 *   handed out yet are dropped (the copies are on their way) and acknowledgements for messages
 *   of the old connection are ignored (the resent copies get acknowledged instead). When the
 *   session was lost, buffered messages are kept and the loss is logged.
 * - Refusals that retrying cannot fix (bad user name or password, not authorized, bad client id,
 *   banned) fail the source with BAD_CONFIG; everything else is waited out. Opening fails fast
 *   (NETWORK_ERROR, retryable) when the first connection cannot be made.
 * - Our sockets send at once (TCP_NODELAY). Mosquitto's do not unless `set_tcp_nodelay true`:
 *   without it a message that follows another packet within ~40 ms can wait for the delayed TCP
 *   ACK (measured: the first message after subscribing, 40 ms instead of 1 ms).
 * - Message ids are the same on every delivery of a message (dead letters are keyed on them): the
 *   MQTT 5 user property `message-id` when the publisher set one (ours sets a random UUID on each
 *   message), else `sha256:` + the hex SHA-256 of the topic, a NUL byte and the payload (so two
 *   publications of the same payload to the same topic share an id). The packet id is no id: it
 *   is reused as soon as the message is acknowledged, and numbering restarts with every
 *   connection. What acknowledging needs (packet id, connection) is kept per delivery instead.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { IClientOptions, MqttClient } from "mqtt";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { safeUrl } from "../secrets.js";
import { DEFAULT_CONSUMER, Inbox, NOOP_LOG, errorMessage, toBuffer, toBytes, RECONNECT_PERIOD, withJitter, type ConnectorOptions } from "./common.js";
import type { BrokerDescriptor, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

/** mqtt.js, loaded on the first open (the registry imports this module for its descriptor). */
const mqttLibrary = () => import("mqtt");

type PublishPacket = Parameters<MqttClient["handleMessage"]>[0];

export type MqttOpenOptions = ConnectorOptions;

/** Unacknowledged messages the broker may have in flight to the source (MQTT 5 Receive Maximum). */
const RECEIVE_MAXIMUM = 2000;
/** Session expiry (s): 0xFFFFFFFF means the session never expires (MQTT 5 §3.1.2.11.2). */
const SESSION_EXPIRY = 0xffffffff;
const FIRST_CONNECT_TIMEOUT_MS = 10_000;
/** Publisher: publishes awaiting their PUBACK before `publish` waits for one to finish. */
const MAX_UNCONFIRMED = 1000;

/** CONNACK reason codes that retrying cannot fix (MQTT 5 §3.2.2.2, and 3.1.1 return codes 1, 2, 4, 5). */
const PERMANENT_CONNACK = new Map<number, string>([
  [1, "unacceptable protocol version"],
  [2, "client identifier rejected"],
  [4, "bad user name or password"],
  [5, "not authorized"],
  [0x84, "unsupported protocol version"],
  [0x85, "client identifier not valid"],
  [0x86, "bad user name or password"],
  [0x87, "not authorized"],
  [0x8a, "banned"],
  [0x8c, "bad authentication method"],
  [0x90, "topic name invalid"],
  [0x95, "packet too large"],
]);

/** The user property (MQTT 5) holding a message's id, set by our publisher. */
export const MESSAGE_ID_PROPERTY = "message-id";

export const mqttBroker: BrokerDescriptor<"mqtt"> = {
  kind: "mqtt",
  title: "MQTT 5",
  config: z.object({
    url: z.string().min(1).describe("mqtt://[user:pass@]host:port (mqtts://, ws://, wss://)"),
    topic: z.string().min(1).optional().describe("the topic filter (+ and # allowed) subscribed at QoS 1"),
    subject: z.string().min(1).optional().describe("the topic filter, when topic is not given"),
    consumer: z.string().min(1).optional().describe("the client id the persistent session is kept under (default sluice)"),
  }),
  description: "a persistent session subscribed at QoS 1; the broker queues messages while the pipeline is away",
  delivery:
    "at least once: a message whose PUBACK was not sent is delivered again (DUP) on the session's next connection; the broker keeps a bounded queue per offline session (Mosquitto: max_queued_messages, 1,000)",
  ack: "the PUBACK, held back until the batch is stored, sent in the order the messages arrived",
  openSource: (config, o) => openMqttSource(config, o),
  openPublisher: (config, o) => openMqttPublisher(config, o),
};

/** A QoS 1 delivery awaiting its PUBACK: what acknowledging it needs (never parsed out of the message id). */
interface Pending {
  /** The packet id of this delivery (the broker's, per connection). */
  packetId: number;
  /** The connection it came on. */
  generation: number;
  acked: boolean;
}

/** Open an MQTT source: connected, subscribed, with its persistent session resumed. */
export async function openMqttSource(config: StreamSourceConfig, opts: MqttOpenOptions = {}): Promise<StreamSource> {
  const target = parseMqttConfig(config);
  const clientId = config.consumer ?? DEFAULT_CONSUMER;
  const topic = config.topic ?? config.subject;
  if (!topic) throw new SluiceError("BAD_CONFIG", `MQTT source ${target.shown} needs a topic filter (topic or subject).`);
  const description = `${target.shown} topic ${topic} client ${clientId}`;
  const log = opts.log ?? NOOP_LOG;
  const inbox = new Inbox<StreamMessage>();

  let generation = 0;
  let closing = false;
  let everConnected = false;
  let period = RECONNECT_PERIOD.initialMs;
  let outageLogged = false;
  // PUBACKs still owed to the broker, in the order the PUBLISHes arrived (current connection only).
  let owed: Pending[] = [];
  let owedHead = 0;
  // The delivery behind each QoS 1 message handed out (a message id may repeat; a delivery does not).
  const deliveryOf = new WeakMap<StreamMessage, Pending>();

  const options: IClientOptions = {
    protocolVersion: 5,
    clientId,
    clean: false,
    properties: { sessionExpiryInterval: SESSION_EXPIRY, receiveMaximum: RECEIVE_MAXIMUM },
    reconnectPeriod: RECONNECT_PERIOD.initialMs,
    connectTimeout: FIRST_CONNECT_TIMEOUT_MS,
    keepalive: 30,
    resubscribe: true,
  };
  const { connect } = await mqttLibrary();
  const client = connect(target.url, options);
  client.on("error", () => {}); // replaced below; a client never runs without an error listener
  if (typeof (client as unknown as PacketWriter)._sendPacket !== "function") {
    client.end(true);
    throw new SluiceError("INTERNAL", `MQTT source ${description}: this mqtt.js version has no _sendPacket, so acknowledgements cannot be delayed.`, {
      retryable: false,
    });
  }

  client.handleMessage = (packet: PublishPacket, done: (err?: Error) => void) => {
    const data = toBytes(packet.payload);
    const headers = userProperties(packet);
    const message: StreamMessage = { data, id: messageIdOf(packet.topic, data, headers), deliveries: packet.dup ? 2 : 1 };
    if (headers) message.headers = headers;
    if (packet.qos === 1 && packet.messageId !== undefined) {
      const pending: Pending = { packetId: packet.messageId, generation, acked: false };
      owed.push(pending);
      deliveryOf.set(message, pending);
      inbox.push(message);
      // "Not handled": mqtt.js then sends no PUBACK and goes on with the next packet; `ack` sends it.
      done(DEFERRED);
      return;
    }
    inbox.push(message);
    done();
  };

  // A new connection's CONNACK: counted here, in packet order (the "connect" event comes later,
  // after mqtt.js has resent its offline queue, possibly after the first PUBLISHes of the session).
  client.on("packetreceive", (packet) => {
    if (packet.cmd !== "connack" || (packet.reasonCode ?? packet.returnCode ?? 0) !== 0) return;
    noDelay(client);
    generation++;
    period = RECONNECT_PERIOD.initialMs;
    client.options.reconnectPeriod = period;
    if (!everConnected) return;
    outageLogged = false;
    const unacknowledged = owed.length - owedHead;
    owed = [];
    owedHead = 0;
    if (packet.sessionPresent) {
      // The broker resends every message still awaiting its PUBACK: drop the buffered copies.
      const dropped = inbox.remove((m) => {
        const d = deliveryOf.get(m);
        return d !== undefined && d.generation !== generation;
      });
      log.info("mqtt reconnected; session resumed", { source: description, unacknowledged, bufferedDropped: dropped });
    } else {
      log.warn("mqtt reconnected but the broker had no session: messages published while disconnected may be lost", { source: description });
    }
  });

  // First connection: wait for it, and fail fast when it is refused or the address is wrong.
  try {
    await firstConnect(client, target.shown, opts.signal);
  } catch (err) {
    client.end(true);
    throw err;
  }
  everConnected = true;

  client.removeAllListeners("error");
  client.on("error", (err: Error & { code?: unknown }) => {
    if (closing) return;
    const code = typeof err.code === "number" ? err.code : undefined;
    if (code !== undefined && PERMANENT_CONNACK.has(code)) {
      const failure = new SluiceError("BAD_CONFIG", `MQTT broker ${target.shown} refused the connection of ${clientId}: ${PERMANENT_CONNACK.get(code)}.`, {
        retryable: false,
        details: { broker: "mqtt", url: target.shown, reasonCode: code },
      });
      log.error("mqtt source failed", { source: description, error: failure.message });
      inbox.fail(failure);
      client.end(true);
      return;
    }
    if (code !== undefined) {
      // A refusal worth retrying (server busy, unavailable, quota): mqtt.js suppresses its own reconnect.
      log.warn("mqtt broker refused the connection; retrying", { source: description, reasonCode: code, error: err.message, retryInMs: period });
      setTimeout(() => {
        if (!closing && !client.connected) client.reconnect();
      }, withJitter(period)).unref();
      period = Math.min(period * 2, RECONNECT_PERIOD.maxMs);
      return;
    }
    if (!outageLogged) log.warn("mqtt connection error", { source: description, error: err.message });
  });
  client.on("offline", () => {
    if (closing || outageLogged) return;
    outageLogged = true;
    log.warn("mqtt connection lost; reconnecting", { source: description });
  });
  client.on("reconnect", () => {
    // The next attempt (if this one fails) waits twice as long.
    period = Math.min(period * 2, RECONNECT_PERIOD.maxMs);
    client.options.reconnectPeriod = withJitter(period);
  });
  let subscribed: Awaited<ReturnType<MqttClient["subscribeAsync"]>>;
  try {
    subscribed = await client.subscribeAsync(topic, { qos: 1, rh: 1 });
  } catch (err) {
    client.end(true);
    // mqtt.js checks the filter itself ("Invalid topic"); a SUBACK refusal is "Subscribe error".
    const refused = /Invalid topic|Subscribe error/i.test(errorMessage(err));
    throw new SluiceError(
      refused ? "BAD_CONFIG" : "NETWORK_ERROR",
      `MQTT broker ${target.shown} ${refused ? "refused the subscription to" : "could not subscribe to"} ${topic}: ${errorMessage(err)}`,
      {
        retryable: !refused,
        cause: err,
        details: { broker: "mqtt", url: target.shown, topic },
      },
    );
  }
  const granted = subscribed[0]?.qos;
  if (granted !== undefined && granted >= 0x80) {
    client.end(true);
    throw new SluiceError("BAD_CONFIG", `MQTT broker ${target.shown} refused the subscription to ${topic} (reason code ${granted}).`, {
      retryable: false,
      details: { broker: "mqtt", url: target.shown, topic, reasonCode: granted },
    });
  }
  if (granted === 0) log.warn("mqtt broker granted QoS 0 only: messages are not redelivered", { source: description });
  log.info("mqtt source open", { source: description });

  const writer = client as unknown as PacketWriter;
  function sendPuback(packetId: number): Promise<void> {
    return new Promise((resolve) => {
      writer._sendPacket({ cmd: "puback", messageId: packetId, reasonCode: 0 }, (err?: Error) => {
        // A PUBACK lost with its connection is harmless: the broker resends the message.
        if (err) log.warn("mqtt acknowledgement not sent; the broker will redeliver", { source: description, error: err.message });
        resolve();
      });
    });
  }

  const source: StreamSource = {
    description,
    next: (max, maxWaitMs, signal) => inbox.next(max, maxWaitMs, signal, description),
    async ack(messages) {
      // A delivery of an earlier connection is no longer in `owed`: marking it changes nothing.
      for (const m of messages) {
        const pending = deliveryOf.get(m);
        if (pending) pending.acked = true;
      }
      const sends: Promise<void>[] = [];
      while (owedHead < owed.length && owed[owedHead]!.acked) {
        const pending = owed[owedHead++]!;
        if (pending.generation === generation && client.connected) sends.push(sendPuback(pending.packetId));
      }
      if (owedHead > 1024 && owedHead * 2 > owed.length) {
        owed = owed.slice(owedHead);
        owedHead = 0;
      }
      await Promise.all(sends);
    },
    async close() {
      if (closing) return;
      closing = true;
      // A normal DISCONNECT: the session (and the unacknowledged messages in it) stays on the broker.
      await client.endAsync(false).catch(() => client.end(true));
      inbox.close(`MQTT source ${description}`);
    },
  };
  // Aborting the open signal later closes the source.
  opts.signal?.addEventListener("abort", () => void source.close(), { once: true });
  return source;
}

/** Open an MQTT publisher: QoS 1 to `topic` (or `subject`); `flush` waits for every PUBACK. */
export async function openMqttPublisher(config: StreamSourceConfig, opts: MqttOpenOptions = {}): Promise<StreamPublisher> {
  const target = parseMqttConfig(config);
  const topic = config.topic ?? config.subject;
  if (!topic) throw new SluiceError("BAD_CONFIG", `MQTT publisher ${target.shown} needs a topic (topic or subject).`);
  if (/[+#]/.test(topic)) throw new SluiceError("BAD_CONFIG", `MQTT publisher ${target.shown}: cannot publish to ${topic}, a topic filter with wildcards.`);
  const { connect } = await mqttLibrary();
  const client = connect(target.url, {
    protocolVersion: 5,
    clientId: `sluice-pub-${randomBytes(6).toString("hex")}`,
    clean: true,
    reconnectPeriod: 1000,
    connectTimeout: FIRST_CONNECT_TIMEOUT_MS,
  });
  client.on("error", () => {});
  client.on("connect", () => noDelay(client));
  try {
    await firstConnect(client, target.shown, opts.signal);
  } catch (err) {
    client.end(true);
    throw err;
  }
  client.on("error", (err) => opts.log?.warn("mqtt publisher connection error", { url: target.shown, error: err.message }));

  const unconfirmed = new Set<Promise<unknown>>();
  let failure: unknown;
  return {
    async publish(data, headers) {
      if (failure) throw failure;
      while (unconfirmed.size >= MAX_UNCONFIRMED) await Promise.race(unconfirmed);
      // Every message carries an id of its own (unless the caller gave one), the same on each delivery.
      const userProperties = { [MESSAGE_ID_PROPERTY]: randomUUID(), ...headers };
      const p = client
        .publishAsync(topic, typeof data === "string" ? data : toBuffer(data), { qos: 1, properties: { userProperties } })
        .catch((err: unknown) => {
          failure ??= new SluiceError("NETWORK_ERROR", `MQTT broker ${target.shown} did not accept a message for ${topic}: ${errorMessage(err)}`, {
            cause: err,
          });
        })
        .finally(() => unconfirmed.delete(p));
      unconfirmed.add(p);
    },
    async flush() {
      await Promise.all([...unconfirmed]);
      if (failure) throw failure;
    },
    async close() {
      await Promise.all([...unconfirmed]);
      await client.endAsync(false).catch(() => client.end(true));
    },
  };
}

// ---------------------------------------------------------------------------------------------

interface PacketWriter {
  _sendPacket(packet: { cmd: "puback"; messageId: number; reasonCode: number }, cb: (err?: Error) => void): void;
}

/** The error `handleMessage` reports to keep mqtt.js from sending the PUBACK itself. */
const DEFERRED = new Error("acknowledgement deferred until the pipeline commits");

function parseMqttConfig(config: StreamSourceConfig): { url: string; shown: string } {
  let u: URL;
  try {
    u = new URL(config.url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `MQTT URL ${safeUrl(config.url)} is not a valid URL (mqtt://host:port).`, { retryable: false });
  }
  if (!["mqtt:", "mqtts:", "tcp:", "ssl:", "ws:", "wss:"].includes(u.protocol) || !u.hostname) {
    throw new SluiceError("BAD_CONFIG", `MQTT URL ${safeUrl(config.url)} must look like mqtt://host:port (or mqtts://, ws://, wss://).`, { retryable: false });
  }
  return { url: config.url, shown: safeUrl(config.url) };
}

/** Resolve on the first CONNACK; reject on a refusal, an unreachable address or a timeout. */
function firstConnect(client: MqttClient, shown: string, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        finish(
          new SluiceError("NETWORK_ERROR", `MQTT broker ${shown} did not accept a connection within ${FIRST_CONNECT_TIMEOUT_MS / 1000} s.`, {
            retryable: true,
          }),
        ),
      FIRST_CONNECT_TIMEOUT_MS,
    );
    const onAbort = () => finish(new SluiceError("CANCELLED", `Connecting to MQTT broker ${shown} was cancelled.`, { retryable: false }));
    const onConnect = () => finish();
    const onError = (err: Error & { code?: unknown }) => finish(connectError(err, shown));
    const onClose = () => finish(new SluiceError("NETWORK_ERROR", `MQTT broker ${shown} closed the connection before accepting it.`, { retryable: true }));
    function finish(err?: Error) {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      client.off("connect", onConnect);
      client.off("error", onError);
      client.off("close", onClose);
      if (err) reject(err);
      else resolve();
    }
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    client.once("connect", onConnect);
    client.on("error", onError);
    client.on("close", onClose);
  });
}

function connectError(err: Error & { code?: unknown }, shown: string): SluiceError {
  const details = { broker: "mqtt", url: shown, code: err.code };
  if (typeof err.code === "number") {
    const why = PERMANENT_CONNACK.get(err.code);
    if (why) return new SluiceError("BAD_CONFIG", `MQTT broker ${shown} refused the connection: ${why}.`, { retryable: false, cause: err, details });
    return new SluiceError("NETWORK_ERROR", `MQTT broker ${shown} refused the connection: ${err.message}`, { retryable: true, cause: err, details });
  }
  if (err.code === "ENOTFOUND" || err.code === "EAI_AGAIN") {
    return new SluiceError("NETWORK_ERROR", `MQTT broker ${shown}: host not found.`, { retryable: false, cause: err, details });
  }
  return new SluiceError("NETWORK_ERROR", `MQTT broker ${shown} is not reachable: ${err.message}`, { retryable: true, cause: err, details });
}

/** Send small packets (PUBACKs, single messages) at once instead of waiting for Nagle's algorithm. */
function noDelay(client: MqttClient): void {
  const stream = client.stream as { setNoDelay?: (on: boolean) => void } | undefined;
  stream?.setNoDelay?.(true);
}

/**
 * The id of a message, the same on every delivery of it: its `message-id` user property, else
 * `sha256:` + the hex SHA-256 of topic, NUL (never part of a topic name) and payload.
 */
export function messageIdOf(topic: string, data: Uint8Array, headers: Record<string, string> | undefined): string {
  const given = headers?.[MESSAGE_ID_PROPERTY];
  if (given) return given;
  return `sha256:${createHash("sha256").update(topic).update("\0").update(data).digest("hex")}`;
}

function userProperties(packet: PublishPacket): Record<string, string> | undefined {
  const props = packet.properties?.userProperties;
  if (!props) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(props)) out[k] = Array.isArray(v) ? v.join(",") : String(v);
  return out;
}

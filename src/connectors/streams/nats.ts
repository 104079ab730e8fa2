/**
 * NATS JetStream source and publisher.
 *
 * The source reads a durable pull consumer with explicit acknowledgement. A `consume()` iterator
 * keeps a pull request open at the server, so a message published now reaches `next` within a
 * millisecond or two instead of at the end of a fetch's expiry; a background pump moves what it
 * delivers into a bounded buffer that `next` takes batches from. The delivered message handles
 * stay in a map by stream sequence until `ack` acknowledges them (with a confirmed ack, so an
 * acknowledged batch is known to be stored by the server).
 *
 * Reconnecting is the nats client's job (`maxReconnectAttempts: -1`, backoff with jitter); the
 * consume iterator re-issues its pull after a reconnect or missed heartbeats, so `next` just keeps
 * waiting through a server restart. Messages that were delivered but not acknowledged come back
 * after the consumer's ack wait (default 30 s).
 */
import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { safeUrl } from "../secrets.js";
import { DEFAULT_CONSUMER, InFlight, Notifier, backoffDelay, closedError, type ConnectorOptions, errorMessage, sleepUnlessAborted, toBytes } from "./common.js";
import type { BrokerDescriptor, StreamLog, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

/** The nats client libraries (one namespace: their exports do not overlap), loaded on the first open (the registry imports this module for its descriptor). */
const natsLibraries = async () => ({ ...(await import("@nats-io/transport-node")), ...(await import("@nats-io/jetstream")) });
type Nats = Awaited<ReturnType<typeof natsLibraries>>;

export interface NatsSourceOptions extends ConnectorOptions {
  /** Consumer ack wait: how long a delivered, unacknowledged message waits before redelivery (default 30 s). */
  ackWaitMs?: number;
  /** Consumer max ack pending (default 20,000: forty batches of 500 in flight). */
  maxAckPending?: number;
  /** Messages the source holds ahead of `next` (default 1,000); also the size of each pull request. */
  bufferSize?: number;
}

export interface NatsPublisherOptions {
  log?: StreamLog;
  /** Publishes awaiting their PubAck before `publish` waits for the oldest (default 1,000). */
  maxInFlight?: number;
}

const ACK_ATTEMPTS = 4;
const ACK_TIMEOUT_MS = 2000;

const DEFAULTS = { ackWaitMs: 30_000, maxAckPending: 20_000, bufferSize: 1000, maxInFlight: 1000, port: 4222 };

export const natsBroker: BrokerDescriptor<"nats"> = {
  kind: "nats",
  title: "NATS JetStream",
  config: z.object({
    url: z.string().min(1).describe("nats://host:port (tls:// for TLS; user:pass@ or token@ for credentials)"),
    subject: z.string().min(1).optional().describe("the subject read (and covered by the stream when Sluice creates it)"),
    topic: z.string().min(1).optional().describe("the subject, when subject is not given"),
    stream: z
      .string()
      .min(1)
      .optional()
      .describe("the JetStream stream, created when missing (default: the subject in capitals, market.trades → MARKET_TRADES)"),
    consumer: z.string().min(1).optional().describe("the durable consumer (default sluice)"),
  }),
  description: "a durable pull consumer of a JetStream stream, explicit acknowledgement",
  delivery:
    "at least once: a message delivered and not acknowledged within the consumer's ack wait (`redeliverAfter`, default 30 s) is delivered again, to this or the next pipeline",
  ack: "a confirmed ack per message, the whole batch in one round trip, after the store commit",
  openSource: (config, o) => openNatsSource(config, { log: o.log, signal: o.signal, ackWaitMs: o.redeliverAfterMs }),
  openPublisher: (config, o) => openNatsPublisher(config, o),
};

/** `market.trades` → `MARKET_TRADES`: the stream name used when none is configured. */
export function defaultStreamName(subject: string): string {
  return subject.toUpperCase().replace(/[^A-Z0-9]/g, "_");
}

interface Target {
  shown: string;
  servers: string;
  user?: string;
  pass?: string;
  token?: string;
  tls: boolean;
}

/** Open a JetStream source: connect, create the stream and durable consumer when missing, start pulling. */
export async function openNatsSource(config: StreamSourceConfig, opts: NatsSourceOptions = {}): Promise<StreamSource> {
  const target = parseNatsUrl(config);
  if (opts.signal?.aborted) throw new SluiceError("CANCELLED", `Opening the NATS source ${safeUrl(config.url)} was cancelled.`, { retryable: false });
  const subject = config.subject ?? config.topic;
  const streamName = config.stream ?? (subject ? defaultStreamName(subject) : undefined);
  if (!streamName) {
    throw new SluiceError("BAD_CONFIG", `NATS source ${target.shown}: set subject (and optionally stream) to read from.`, { retryable: false });
  }
  const durable = config.consumer ?? DEFAULT_CONSUMER;
  const description = `${target.shown} stream ${streamName}${subject ? ` subject ${subject}` : ""} consumer ${durable}`;
  const ackWaitMs = opts.ackWaitMs ?? DEFAULTS.ackWaitMs;
  const maxAckPending = opts.maxAckPending ?? DEFAULTS.maxAckPending;
  const bufferSize = Math.max(1, opts.bufferSize ?? DEFAULTS.bufferSize);
  const log = opts.log;

  const lib = await natsLibraries();
  const nc = await connectNats(lib, target, log);
  let jsm: JetStreamManager;
  let js: JetStreamClient;
  try {
    jsm = await lib.jetstreamManager(nc);
    js = jsm.jetstream();
    await ensureStream(lib, jsm, streamName, subject, target, log);
    await ensureConsumer(lib, jsm, streamName, durable, subject, { ackWaitMs, maxAckPending }, target, log);
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw natsError(lib, err, target, `preparing stream ${streamName} consumer ${durable}`);
  }
  const consumer = await js.consumers.get(streamName, durable).catch(async (err: unknown) => {
    await nc.close().catch(() => undefined);
    throw natsError(lib, err, target, `opening consumer ${durable} on stream ${streamName}`);
  });

  const buffer: JsMsg[] = [];
  /** Delivered by `next`, not yet acknowledged: the handles `ack` needs, by stream sequence. */
  const handles = new Map<string, JsMsg>();
  const arrived = new Notifier();
  const drained = new Notifier();
  const stop = new AbortController();
  let closed = false;
  let iter: ConsumerMessages | undefined;

  // The pump: keep a consume() iterator running for the life of the source. The iterator itself
  // survives reconnects; if it ever ends or fails (consumer deleted, a bug), start a new one
  // with backoff rather than leaving `next` waiting forever.
  const pump = (async () => {
    for (let attempt = 0; !closed; attempt++) {
      try {
        iter = await consumer.consume({ max_messages: bufferSize });
        watchConsumerStatus(iter, description, log);
        for await (const m of iter) {
          attempt = 0;
          buffer.push(m);
          arrived.notify();
          while (buffer.length >= bufferSize && !closed) await drained.wait(1000, stop.signal);
          if (closed) break;
        }
      } catch (err) {
        if (closed) break;
        log?.warn("NATS consume failed; retrying", { source: description, error: errorMessage(err) });
      }
      if (closed) break;
      await sleepUnlessAborted(backoffDelay(attempt, { baseMs: 250, maxMs: 5000 }), stop.signal);
    }
  })();

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    stop.abort();
    arrived.notify();
    drained.notify();
    await iter?.close().catch(() => undefined);
    await pump.catch(() => undefined);
    buffer.length = 0;
    handles.clear();
    await nc.close().catch(() => undefined);
    log?.info("NATS source closed", { source: description });
  };
  opts.signal?.addEventListener("abort", () => void close(), { once: true });
  log?.info("NATS source open", { source: description });

  return {
    description,
    async next(max: number, maxWaitMs: number, signal: AbortSignal): Promise<StreamMessage[]> {
      if (closed) throw closedError(`NATS source ${description}`);
      await arrived.until(() => buffer.length > 0 || closed, maxWaitMs, signal, description);
      // One event-loop turn for the messages that arrived with the first one: at a steady rate
      // a batch then holds what came in together instead of a single message, which costs a
      // few microseconds of latency and saves a transaction and an ack round trip per message.
      if (buffer.length < max) await new Promise((r) => setImmediate(r));
      const batch = buffer.splice(0, Math.max(1, max));
      if (batch.length > 0) drained.notify();
      return batch.map((m) => {
        const id = String(m.seq);
        handles.set(id, m);
        return toStreamMessage(m, id);
      });
    },
    async ack(messages: StreamMessage[]): Promise<void> {
      const todo: [string, JsMsg][] = [];
      for (const m of messages) {
        const h = handles.get(m.id);
        if (h) todo.push([m.id, h]);
      }
      if (todo.length === 0) return;
      // One confirmed batch (see ackBatch). An ack written just before the connection dropped is
      // lost without a word, so a batch during which the connection dropped, or whose
      // confirmation did not come, is sent again (acks are idempotent). What still fails stays
      // in `handles` for a later call.
      let lastError: unknown;
      for (let attempt = 0; attempt < ACK_ATTEMPTS && !closed; attempt++) {
        if (attempt > 0) await sleepUnlessAborted(backoffDelay(attempt - 1, { baseMs: 200, maxMs: 2000 }), stop.signal);
        const before = disconnectsOf(nc);
        try {
          await ackBatch(
            nc,
            todo.map(([, h]) => h),
          );
          if (disconnectsOf(nc) === before) {
            for (const [id] of todo) handles.delete(id);
            return;
          }
          lastError = new Error("the connection dropped while acknowledging");
        } catch (err) {
          lastError = err;
        }
      }
      throw new SluiceError(
        "NETWORK_ERROR",
        `NATS source ${description}: acknowledging ${todo.length} messages (from ${todo[0]![0]}) was not confirmed: ${errorMessage(lastError ?? "source closed")}.`,
        { retryable: true, ...(lastError === undefined ? {} : { cause: lastError }) },
      );
    },
    async lag(): Promise<number | undefined> {
      if (closed) return undefined;
      try {
        const info = await jsm.consumers.info(streamName, durable);
        return info.num_pending + info.num_ack_pending;
      } catch (err) {
        log?.warn("NATS consumer info failed", { source: description, error: errorMessage(err) });
        return undefined;
      }
    },
    close,
  };
}

/** Open a JetStream publisher on `config.subject`, creating the stream when missing. */
export async function openNatsPublisher(config: StreamSourceConfig, opts: NatsPublisherOptions = {}): Promise<StreamPublisher> {
  const target = parseNatsUrl(config);
  const subject = config.subject ?? config.topic;
  if (!subject) throw new SluiceError("BAD_CONFIG", `NATS publisher ${target.shown}: set subject to publish to.`, { retryable: false });
  const streamName = config.stream ?? defaultStreamName(subject);
  const maxInFlight = Math.max(1, opts.maxInFlight ?? DEFAULTS.maxInFlight);
  const lib = await natsLibraries();
  const nc = await connectNats(lib, target, opts.log);
  let js: JetStreamClient;
  try {
    const jsm = await lib.jetstreamManager(nc);
    await ensureStream(lib, jsm, streamName, subject, target, opts.log);
    js = jsm.jetstream();
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw natsError(lib, err, target, `preparing stream ${streamName}`);
  }
  const inFlight = new InFlight();
  let closed = false;
  const shown = `${target.shown} subject ${subject}`;

  return {
    async publish(data: Uint8Array | string, headers?: Record<string, string>): Promise<void> {
      if (closed) throw closedError(`NATS publisher ${shown}`);
      inFlight.check();
      let h: ReturnType<Nats["headers"]> | undefined;
      if (headers && Object.keys(headers).length > 0) {
        h = lib.headers();
        for (const [k, v] of Object.entries(headers)) h.set(k, v);
      }
      inFlight.track(js.publish(subject, toBytes(data), h ? { headers: h } : undefined), (err) => natsError(lib, err, target, `publishing to ${subject}`));
      // Pipeline: only wait when the window is full, and then only for the oldest to settle.
      await inFlight.below(maxInFlight);
    },
    flush: () => inFlight.flush(),
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await inFlight.settle();
      await nc.close().catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------------------------------------

function parseNatsUrl(config: StreamSourceConfig): Target {
  if (config.broker !== "nats") {
    throw new SluiceError("BAD_CONFIG", `NATS connector given broker ${config.broker}.`, { retryable: false });
  }
  let u: URL;
  try {
    u = new URL(config.url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `NATS url ${safeUrl(config.url)} is not a valid URL (expected nats://host:port).`, { retryable: false });
  }
  if (u.protocol !== "nats:" && u.protocol !== "tls:") {
    throw new SluiceError("BAD_CONFIG", `NATS url ${safeUrl(u)} must start with nats:// or tls://.`, { retryable: false });
  }
  if (!u.hostname) throw new SluiceError("BAD_CONFIG", `NATS url ${safeUrl(u)} has no host.`, { retryable: false });
  const port = u.port || String(DEFAULTS.port);
  const host = u.hostname;
  const target: Target = {
    shown: `${u.protocol}//${host}:${port}`,
    servers: `${host}:${port}`,
    tls: u.protocol === "tls:",
  };
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  // nats://user:pass@host uses a user and password; nats://token@host a token.
  if (user && pass) {
    target.user = user;
    target.pass = pass;
  } else if (user) {
    target.token = user;
  }
  return target;
}

async function connectNats(lib: Nats, target: Target, log: StreamLog | undefined): Promise<NatsConnection> {
  let nc: NatsConnection;
  try {
    nc = await lib.connect({
      servers: target.servers,
      name: "sluice",
      // Reconnect forever; the client backs off (time wait plus jitter) between attempts.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      reconnectJitter: 250,
      timeout: 5000,
      // No stack-trace objects per request (acks, pulls): a measurable share of the CPU at 5k msg/s.
      noAsyncTraces: true,
      ...(target.tls ? { tls: {} } : {}),
      ...(target.user ? { user: target.user, pass: target.pass } : {}),
      ...(target.token ? { token: target.token } : {}),
    });
  } catch (err) {
    throw natsError(lib, err, target, "connecting");
  }
  // Status events are informational: the client reconnects by itself; never let them throw.
  void (async () => {
    try {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") {
          disconnects.set(nc, disconnectsOf(nc) + 1);
          log?.warn("NATS disconnected; reconnecting", { server: target.shown });
        } else if (s.type === "reconnect") log?.info("NATS reconnected", { server: target.shown });
        else if (s.type === "error") log?.error("NATS connection error", { server: target.shown, error: errorMessage((s as { error?: unknown }).error) });
      }
    } catch {
      /* the connection closed */
    }
  })();
  return nc;
}

function watchConsumerStatus(iter: ConsumerMessages, description: string, log: StreamLog | undefined): void {
  void (async () => {
    try {
      for await (const s of iter.status()) {
        if (s.type === "heartbeats_missed" || s.type === "consumer_not_found" || s.type === "stream_not_found" || s.type === "consumer_deleted") {
          log?.warn(`NATS consumer ${s.type.replace(/_/g, " ")}`, { source: description });
        }
      }
    } catch {
      /* iterator closed */
    }
  })();
}

/** Whether `p` resolves (a JetStream info call: the stream or consumer exists). */
const succeeds = (p: Promise<unknown>): Promise<boolean> =>
  p.then(
    () => true,
    () => false,
  );

function apiCode(lib: Nats, err: unknown): number | undefined {
  return err instanceof lib.JetStreamApiError ? err.code : undefined;
}

async function ensureStream(
  lib: Nats,
  jsm: JetStreamManager,
  name: string,
  subject: string | undefined,
  target: Target,
  log: StreamLog | undefined,
): Promise<void> {
  try {
    await jsm.streams.info(name);
    return;
  } catch (err) {
    if (apiCode(lib, err) !== lib.JetStreamApiCodes.StreamNotFound) throw err;
  }
  if (!subject) {
    throw new SluiceError("BAD_CONFIG", `NATS ${target.shown}: stream ${name} does not exist; set subject so it can be created.`, { retryable: false });
  }
  try {
    await jsm.streams.add({ name, subjects: [subject], storage: lib.StorageType.File });
    log?.info("NATS stream created", { server: target.shown, stream: name, subject });
  } catch (err) {
    // Another process may have created it between our info and add; anything else is real.
    if (!(await succeeds(jsm.streams.info(name)))) {
      throw new SluiceError("BAD_CONFIG", `NATS ${target.shown}: cannot create stream ${name} for subject ${subject}: ${errorMessage(err)}.`, {
        retryable: false,
        cause: err,
      });
    }
  }
}

async function ensureConsumer(
  lib: Nats,
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  subject: string | undefined,
  want: { ackWaitMs: number; maxAckPending: number },
  target: Target,
  log: StreamLog | undefined,
): Promise<void> {
  const ackWait = lib.nanos(want.ackWaitMs);
  try {
    const info = await jsm.consumers.info(stream, durable);
    if (info.config.ack_wait !== ackWait || info.config.max_ack_pending !== want.maxAckPending) {
      await jsm.consumers.update(stream, durable, { ack_wait: ackWait, max_ack_pending: want.maxAckPending });
      log?.info("NATS consumer updated", { server: target.shown, stream, consumer: durable, ackWaitMs: want.ackWaitMs, maxAckPending: want.maxAckPending });
    }
    return;
  } catch (err) {
    if (apiCode(lib, err) !== lib.JetStreamApiCodes.ConsumerNotFound) throw err;
  }
  try {
    await jsm.consumers.add(stream, {
      durable_name: durable,
      ack_policy: lib.AckPolicy.Explicit,
      deliver_policy: lib.DeliverPolicy.All,
      ack_wait: ackWait,
      max_ack_pending: want.maxAckPending,
      ...(subject ? { filter_subject: subject } : {}),
    });
    log?.info("NATS consumer created", { server: target.shown, stream, consumer: durable });
  } catch (err) {
    if (!(await succeeds(jsm.consumers.info(stream, durable)))) {
      throw new SluiceError("BAD_CONFIG", `NATS ${target.shown}: cannot create consumer ${durable} on stream ${stream}: ${errorMessage(err)}.`, {
        retryable: false,
        cause: err,
      });
    }
  }
}

/**
 * Acknowledge a batch of messages of one consumer and wait for the server's confirmation: plain
 * acks for all but the last, a confirmed ack (a request) for the last. The server handles a
 * consumer's acks in arrival order, so the answer to the last one means all were applied; one
 * round trip instead of one per message (500 confirmed acks one by one cost ~70 ms here).
 *
 * The acks are written to each message's reply (ack) subject, which the JsMsg implementation
 * keeps as `reply`, rather than through `ack()` / `ackAck()`: those send at most once per handle
 * (a second call does nothing), which rules out sending again an ack lost with a dropped
 * connection. Should a handle not have `reply`, its own `ackAck()` is used.
 */
async function ackBatch(nc: NatsConnection, msgs: JsMsg[]): Promise<void> {
  const replies = msgs.map((m) => (m as Partial<{ reply: string }>).reply);
  if (replies.some((r) => typeof r !== "string" || r === "")) {
    const ok = await Promise.all(msgs.map((m) => m.ackAck({ timeout: ACK_TIMEOUT_MS })));
    if (ok.includes(false)) throw new Error("the server did not confirm every ack");
    return;
  }
  for (let i = 0; i < replies.length - 1; i++) nc.publish(replies[i]!, ACK_PAYLOAD);
  await nc.request(replies[replies.length - 1]!, ACK_PAYLOAD, { timeout: ACK_TIMEOUT_MS });
}

/** Disconnects seen per connection, so an ack batch knows whether the connection dropped under it. */
const disconnects = new WeakMap<NatsConnection, number>();
const disconnectsOf = (nc: NatsConnection): number => disconnects.get(nc) ?? 0;

const ACK_PAYLOAD = new TextEncoder().encode("+ACK");

function toStreamMessage(m: JsMsg, id: string): StreamMessage {
  const out: StreamMessage = {
    data: m.data,
    id,
    publishedAt: Math.floor(m.info.timestampNanos / 1e6),
    deliveries: m.info.deliveryCount,
  };
  if (m.headers) {
    const h: Record<string, string> = {};
    for (const k of m.headers.keys()) h[k] = m.headers.get(k);
    out.headers = h;
  }
  return out;
}

/** A SluiceError naming the broker and address; permanent causes are not retryable. */
function natsError(lib: Nats, err: unknown, target: Target, doing: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const message = errorMessage(err);
  if (err instanceof lib.AuthorizationError || /authoriz|authentic/i.test(message)) {
    return new SluiceError("BAD_CONFIG", `NATS ${target.shown}: ${doing} failed: the server rejected the credentials (${message}).`, {
      retryable: false,
      cause: err,
    });
  }
  if (/no responders/i.test(message) && /JS\.API|jetstream/i.test(message + doing)) {
    return new SluiceError("BAD_CONFIG", `NATS ${target.shown}: ${doing} failed: JetStream is not enabled on this server (${message}).`, {
      retryable: false,
      cause: err,
    });
  }
  const code = (err as { code?: unknown } | undefined)?.code;
  const codeText = typeof code === "string" ? ` (${code})` : "";
  return new SluiceError("NETWORK_ERROR", `NATS ${target.shown}: ${doing} failed: ${message}${codeText}.`, { retryable: true, cause: err });
}

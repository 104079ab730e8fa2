/**
 * Redis Streams source and publisher.
 *
 * The source reads a stream key through a consumer group (`consumer`, default `sluice`) under a
 * consumer name unique to the process (`host:pid`). Before anything new it delivers what is
 * already owed: first this consumer's own pending entries (XREADGROUP from id 0: a previous run
 * of this process name read them but never acknowledged them), then entries that other, dead
 * consumers of the group left pending for longer than `claimIdleMs` (XAUTOCLAIM; repeated every
 * `claimIdleMs` while the source runs). New entries come from XREADGROUP BLOCK ... `>` on a
 * dedicated connection, so acks and XINFO never queue behind a blocking read. `ack` is XACK.
 *
 * The payload is the entry's `data` field; other fields become headers. When the group is
 * created it starts at the beginning of the stream (id 0), so entries added before the first
 * run are ingested too.
 *
 * Reconnecting is ioredis's job (retry strategy with backoff); a read that fails while the
 * connection is down waits for it to be ready again, so `next` keeps waiting through a restart.
 */
import { hostname } from "node:os";
import type { Redis, RedisOptions } from "ioredis";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { safeUrl } from "../secrets.js";
import {
  DEFAULT_CONSUMER,
  InFlight,
  Notifier,
  backoffDelay,
  cancelledError,
  closedError,
  errorMessage,
  sleepUnlessAborted,
  toBytes,
  type ConnectorOptions,
} from "./common.js";
import type { BrokerDescriptor, StreamLog, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

/** ioredis, loaded on the first open (the registry imports this module for its descriptor). */
const ioredis = () => import("ioredis");

export interface RedisSourceOptions extends ConnectorOptions {
  /** Entries pending with another consumer for longer than this are claimed (default 30 s). */
  claimIdleMs?: number;
  /** This consumer's name in the group (default `host:pid`). */
  consumerName?: string;
}

export interface RedisPublisherOptions {
  log?: StreamLog;
  /** Trim the stream to about this many entries on each add (XADD MAXLEN ~); default: no trimming. */
  maxLen?: number;
}

const DEFAULTS = { claimIdleMs: 30_000, port: 6379 };
/** Largest number of ids in one XACK; bigger batches are split and pipelined. */
const ACK_CHUNK = 1000;
/** Publisher: XADDs awaiting their reply before `publish` waits for one. */
const MAX_IN_FLIGHT = 1000;

interface Target {
  shown: string;
  options: RedisOptions;
}

export const redisBroker: BrokerDescriptor<"redis"> = {
  kind: "redis",
  title: "Redis Streams",
  config: z.object({
    url: z.string().min(1).describe("redis://[user:pass@]host:port[/db] (rediss:// for TLS)"),
    subject: z.string().min(1).optional().describe("the stream key"),
    topic: z.string().min(1).optional().describe("the stream key, when subject is not given"),
    stream: z.string().min(1).optional().describe("the stream key, when neither subject nor topic is given"),
    consumer: z.string().min(1).optional().describe("the consumer group (default sluice), created at the start of the stream"),
  }),
  description: "a consumer group of a stream (XREADGROUP), as consumer host:pid",
  delivery:
    "at least once: a reopened source first takes back its own pending entries, then claims (XAUTOCLAIM) those other, dead consumers left pending longer than `redeliverAfter` (default 30 s)",
  ack: "XACK of the batch's entry ids, after the store commit",
  openSource: (config, o) => openRedisSource(config, { log: o.log, signal: o.signal, claimIdleMs: o.redeliverAfterMs }),
  openPublisher: (config, o) => openRedisPublisher(config, o),
};

/** Open a Redis Streams source: create the group when missing, then reclaim, then read new entries. */
export async function openRedisSource(config: StreamSourceConfig, opts: RedisSourceOptions = {}): Promise<StreamSource> {
  const target = parseRedisUrl(config);
  if (opts.signal?.aborted) throw new SluiceError("CANCELLED", `Opening the Redis source ${safeUrl(config.url)} was cancelled.`, { retryable: false });
  const key = streamKey(config, target);
  const group = config.consumer ?? DEFAULT_CONSUMER;
  const consumerName = opts.consumerName ?? `${hostname()}:${process.pid}`;
  const claimIdleMs = Math.max(0, opts.claimIdleMs ?? DEFAULTS.claimIdleMs);
  const log = opts.log;
  const description = `${target.shown} stream ${key} group ${group} consumer ${consumerName}`;

  const { Redis } = await ioredis();
  // Commands (XACK, XINFO, XGROUP, XAUTOCLAIM) and blocking reads each on their own connection.
  const cmd = newClient(Redis, target, "cmd", log);
  // The reader does not queue reads while disconnected (the read loop waits for `ready`
  // itself). A read in flight when the connection drops is sent again after the reconnect
  // (ioredis drops it without settling its promise otherwise), and a client-side timeout of
  // BLOCK + 1 s settles a read whose connection died without a word.
  const blk = newClient(Redis, target, "reader", log, { enableOfflineQueue: false, blockingTimeout: 30_000, blockingTimeoutGrace: 1000 });
  try {
    await Promise.all([cmd.connect(), blk.connect()]);
    await cmd.call("PING");
    await ensureGroup(cmd, key, group);
  } catch (err) {
    const cause = lastErrors.get(cmd) ?? lastErrors.get(blk);
    cmd.disconnect();
    blk.disconnect();
    throw redisError(err, target, `opening stream ${key} group ${group}`, true, cause);
  }

  const buffer: StreamMessage[] = [];
  const arrived = new Notifier();
  const stop = new AbortController();
  let closed = false;
  let reading: Promise<void> | undefined;
  let readFailures = 0;
  /** Recovery phases: own pending entries, then the idle entries of other consumers. */
  let ownCursor: string | undefined = "0";
  let claimCursor: string | undefined = "0-0";
  let nextClaimAt = Date.now() + claimIdleMs;

  const recreateGroup = async (): Promise<void> => {
    // NOGROUP: the stream or the group vanished while we ran. On a Redis that keeps nothing on
    // disk (this is how the CI server runs) a restart loses every stream; the entries added since
    // then belong to a new stream, so the group is created again from its start (id 0). Entries
    // that were pending in the lost stream are gone with it.
    log?.warn("Redis consumer group missing (stream deleted or server restarted without persistence); recreating it", { source: description });
    await ensureGroup(cmd, key, group);
    ownCursor = undefined;
    claimCursor = undefined;
  };

  /** One recovery step: a batch of owed entries, or undefined when there is nothing owed (any more). */
  const recover = async (max: number): Promise<StreamMessage[] | undefined> => {
    while (ownCursor !== undefined) {
      const reply = await cmd.callBuffer("XREADGROUP", ["GROUP", group, consumerName, "COUNT", max, "STREAMS", key, ownCursor]);
      const entries = parseRead(reply);
      if (entries.length === 0) {
        ownCursor = undefined;
        break;
      }
      ownCursor = entries[entries.length - 1]!.id;
      const live = await dropDeleted(entries);
      if (live.length > 0) {
        log?.info("Redis source redelivering its own pending entries", { source: description, count: live.length });
        return withDeliveries(live);
      }
    }
    while (claimCursor !== undefined) {
      const reply = (await cmd.callBuffer("XAUTOCLAIM", [key, group, consumerName, claimIdleMs, claimCursor, "COUNT", max])) as unknown[];
      const next = str(reply[0]);
      claimCursor = next === "0-0" ? undefined : next;
      const entries = parseEntries(reply[1]);
      const live = await dropDeleted(entries);
      if (live.length > 0) {
        log?.info("Redis source claimed entries idle at dead consumers", { source: description, count: live.length });
        return withDeliveries(live);
      }
    }
    return undefined;
  };

  /** Entries deleted from the stream while pending come back without fields: acknowledge and skip them. */
  const dropDeleted = async (entries: RawEntry[]): Promise<StreamMessage[]> => {
    const gone = entries.filter((e) => e.fields === null).map((e) => e.id);
    if (gone.length > 0) await cmd.call("XACK", [key, group, ...gone]);
    return entries.filter((e) => e.fields !== null).map((e) => toMessage(e, 1));
  };

  /** Delivery counts of recovered entries, from XPENDING (the read has already counted itself). */
  const withDeliveries = async (msgs: StreamMessage[]): Promise<StreamMessage[]> => {
    try {
      const rows = (await cmd.call("XPENDING", [key, group, msgs[0]!.id, msgs[msgs.length - 1]!.id, msgs.length, consumerName])) as unknown[][];
      const counts = new Map(rows.map((r) => [String(r[0]), Number(r[3])]));
      for (const m of msgs) m.deliveries = counts.get(m.id) ?? m.deliveries;
    } catch (err) {
      log?.warn("Redis XPENDING failed; delivery counts unknown", { source: description, error: errorMessage(err) });
      for (const m of msgs) delete m.deliveries;
    }
    return msgs;
  };

  const startRead = (count: number, blockMs: number): void => {
    reading = (async () => {
      try {
        if (blk.status !== "ready") {
          await waitReady(blk, stop.signal);
          if (closed) return;
        }
        const reply = await blk.callBuffer("XREADGROUP", ["GROUP", group, consumerName, "COUNT", count, "BLOCK", blockMs, "STREAMS", key, ">"]);
        const entries = parseRead(reply);
        // An entry deleted between XADD and our read has no fields; nothing to deliver.
        for (const e of entries) if (e.fields !== null) buffer.push(toMessage(e, 1));
        const gone = entries.filter((e) => e.fields === null).map((e) => e.id);
        if (gone.length > 0) await cmd.call("XACK", [key, group, ...gone]).catch(() => undefined);
        readFailures = 0;
      } catch (err) {
        if (closed) return;
        if (isNoGroup(err)) {
          await recreateGroup().catch((e: unknown) => log?.warn("Redis group re-creation failed", { source: description, error: errorMessage(e) }));
        } else if (blk.status === "ready") {
          readFailures++;
          log?.warn("Redis read failed; retrying", { source: description, error: errorMessage(err) });
          await sleepUnlessAborted(backoffDelay(readFailures, { baseMs: 100, maxMs: 2000 }), stop.signal);
        }
        // Not ready: the next read waits for the reconnect.
      } finally {
        reading = undefined;
        arrived.notify();
      }
    })();
  };

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    stop.abort();
    arrived.notify();
    // Dropping the reader cancels a blocked read; entries it was being handed stay pending for
    // this consumer and come back through the recovery path.
    blk.disconnect();
    await reading?.catch(() => undefined);
    buffer.length = 0;
    await cmd.quit().catch(() => cmd.disconnect());
    log?.info("Redis source closed", { source: description });
  };
  opts.signal?.addEventListener("abort", () => void close(), { once: true });
  log?.info("Redis source open", { source: description });

  return {
    description,
    async next(max: number, maxWaitMs: number, signal: AbortSignal): Promise<StreamMessage[]> {
      if (closed) throw closedError(`Redis source ${description}`);
      if (signal.aborted) throw cancelledError(description);
      const n = Math.max(1, max);
      const deadline = Date.now() + maxWaitMs;
      if (buffer.length === 0) {
        if (claimIdleMs > 0 && Date.now() >= nextClaimAt && claimCursor === undefined) {
          claimCursor = "0-0"; // look for newly abandoned entries now and then
          nextClaimAt = Date.now() + claimIdleMs;
        }
        if (ownCursor !== undefined || claimCursor !== undefined) {
          try {
            const owed = await recover(n);
            if (owed) return owed;
          } catch (err) {
            if (isNoGroup(err)) await recreateGroup().catch(() => undefined);
            else log?.warn("Redis recovery read failed; will retry", { source: description, error: errorMessage(err) });
          }
        }
      }
      for (;;) {
        if (buffer.length > 0) return buffer.splice(0, n);
        if (closed) return [];
        const remaining = deadline - Date.now();
        if (!reading) startRead(n, Math.max(1, Math.min(remaining, 10_000)));
        if (remaining <= 0) return [];
        await arrived.wait(remaining, signal);
        if (signal.aborted) throw cancelledError(description);
      }
    },
    async ack(messages: StreamMessage[]): Promise<void> {
      if (messages.length === 0) return;
      const ids = messages.map((m) => m.id);
      const pipe = cmd.pipeline();
      for (let i = 0; i < ids.length; i += ACK_CHUNK) pipe.call("XACK", key, group, ...ids.slice(i, i + ACK_CHUNK));
      let results: [Error | null, unknown][] | null;
      try {
        results = await pipe.exec();
      } catch (err) {
        throw redisError(err, target, `acknowledging ${ids.length} entries of ${key}`, true);
      }
      for (const [err] of results ?? []) {
        if (!err) continue;
        // The group is gone (see recreateGroup): nothing is left to acknowledge.
        if (isNoGroup(err)) {
          log?.warn("Redis ack found no group; the entries are gone with the stream", { source: description });
          continue;
        }
        throw redisError(err, target, `acknowledging ${ids.length} entries of ${key}`, true);
      }
    },
    async lag(): Promise<number | undefined> {
      if (closed) return undefined;
      try {
        const groups = (await cmd.call("XINFO", ["GROUPS", key])) as unknown[][];
        for (const g of groups) {
          const info = pairs(g);
          if (info.get("name") !== group) continue;
          const pending = Number(info.get("pending") ?? 0);
          const lag = info.get("lag");
          // lag is null when Redis cannot tell (entries deleted from the middle of the stream).
          return lag === null || lag === undefined ? undefined : Number(lag) + pending;
        }
        return undefined;
      } catch (err) {
        if (!isNoGroup(err) && !/no such key/i.test(errorMessage(err))) log?.warn("Redis XINFO failed", { source: description, error: errorMessage(err) });
        return undefined;
      }
    },
    close,
  };
}

/** Open a Redis Streams publisher: XADD key * data <payload> [header value]... */
export async function openRedisPublisher(config: StreamSourceConfig, opts: RedisPublisherOptions = {}): Promise<StreamPublisher> {
  const target = parseRedisUrl(config);
  const key = streamKey(config, target);
  const { Redis } = await ioredis();
  const client = newClient(Redis, target, "publisher", opts.log);
  try {
    await client.connect();
    await client.call("PING");
  } catch (err) {
    const cause = lastErrors.get(client);
    client.disconnect();
    throw redisError(err, target, `opening stream ${key} for publishing`, true, cause);
  }
  const trim = opts.maxLen ? ["MAXLEN", "~", opts.maxLen] : [];
  // ioredis pipelines commands written without awaiting; keep their promises to report in flush.
  const inFlight = new InFlight();
  let closed = false;
  return {
    async publish(data: Uint8Array | string, headers?: Record<string, string>): Promise<void> {
      if (closed) throw closedError(`Redis publisher ${target.shown} stream ${key}`);
      inFlight.check();
      const fields: (string | Buffer | number)[] = ["data", Buffer.from(toBytes(data))];
      for (const [k, v] of Object.entries(headers ?? {})) if (k !== "data") fields.push(k, v);
      inFlight.track(client.call("XADD", [key, ...trim, "*", ...fields]), (err) => redisError(err, target, `adding to stream ${key}`, true));
      await inFlight.below(MAX_IN_FLIGHT);
    },
    flush: () => inFlight.flush(),
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await inFlight.settle();
      await client.quit().catch(() => client.disconnect());
    },
  };
}

// ---------------------------------------------------------------------------------------------

function parseRedisUrl(config: StreamSourceConfig): Target {
  if (config.broker !== "redis") {
    throw new SluiceError("BAD_CONFIG", `Redis connector given broker ${config.broker}.`, { retryable: false });
  }
  let u: URL;
  try {
    u = new URL(config.url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `Redis url ${safeUrl(config.url)} is not a valid URL (expected redis://host:port/db).`, { retryable: false });
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new SluiceError("BAD_CONFIG", `Redis url ${safeUrl(u)} must start with redis:// or rediss://.`, { retryable: false });
  }
  const dbText = u.pathname.replace(/^\//, "");
  if (dbText !== "" && !/^\d+$/.test(dbText)) {
    throw new SluiceError("BAD_CONFIG", `Redis url ${safeUrl(u)}: the path must be a database number, not ${dbText}.`, { retryable: false });
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  const port = Number(u.port || DEFAULTS.port);
  const options: RedisOptions = {
    host,
    port,
    db: dbText === "" ? 0 : Number(dbText),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === "rediss:" ? { tls: { servername: host } } : {}),
  };
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return { shown: `${u.protocol}//${shownHost}:${port}${dbText ? `/${dbText}` : ""}`, options };
}

function streamKey(config: StreamSourceConfig, target: Target): string {
  const key = config.subject ?? config.topic ?? config.stream;
  if (!key) throw new SluiceError("BAD_CONFIG", `Redis ${target.shown}: set subject to the stream key.`, { retryable: false });
  return key;
}

/** The last error event of each client: a failed connect() only says "Connection is closed". */
const lastErrors = new WeakMap<Redis, Error>();

function newClient(RedisClient: typeof Redis, target: Target, role: string, log: StreamLog | undefined, extra: RedisOptions = {}): Redis {
  const client = new RedisClient({
    ...target.options,
    // RESP2 keeps XINFO replies as flat [field, value, ...] lists on every server version.
    protocol: 2,
    lazyConnect: true,
    connectionName: `sluice-${role}`,
    connectTimeout: 5000,
    maxRetriesPerRequest: 3,
    // Reconnect forever, backing off up to 2 s (a restarted server is back within that).
    retryStrategy: (times) => backoffDelay(times - 1, { baseMs: 50, maxMs: 2000 }),
    ...extra,
  });
  // Without a listener ioredis reports every failed reconnect as an unhandled error event.
  let down = false;
  client.on("error", (err: Error) => {
    lastErrors.set(client, err);
    if (!down) log?.warn(`Redis ${role} connection error; reconnecting`, { server: target.shown, error: err.message });
    down = true;
  });
  client.on("reconnecting", () => {
    if (!down) log?.warn(`Redis ${role} connection lost; reconnecting`, { server: target.shown });
    down = true;
  });
  client.on("ready", () => {
    if (down) log?.info(`Redis ${role} connection ready again`, { server: target.shown });
    down = false;
  });
  return client;
}

async function ensureGroup(client: Redis, key: string, group: string): Promise<void> {
  try {
    await client.call("XGROUP", ["CREATE", key, group, "0", "MKSTREAM"]);
  } catch (err) {
    if (!/BUSYGROUP/.test(errorMessage(err))) throw err;
  }
}

/** Resolves once `client` is ready, or when `signal` aborts. */
function waitReady(client: Redis, signal: AbortSignal): Promise<void> {
  if (client.status === "ready" || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      client.off("ready", done);
      client.off("end", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    client.on("ready", done);
    client.on("end", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

function isNoGroup(err: unknown): boolean {
  return /^NOGROUP/.test(errorMessage(err));
}

interface RawEntry {
  id: string;
  fields: Buffer[] | null;
}

function str(v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString("utf8") : String(v);
}

/** XREADGROUP reply (RESP2): [[key, [[id, [f, v, ...] | null], ...]]] or null. */
function parseRead(reply: unknown): RawEntry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const first = reply[0] as unknown[];
  return parseEntries(first[1]);
}

function parseEntries(list: unknown): RawEntry[] {
  if (!Array.isArray(list)) return [];
  return list.map((e) => {
    const [id, fields] = e as [unknown, unknown];
    return { id: str(id), fields: Array.isArray(fields) ? (fields as Buffer[]) : null };
  });
}

function toMessage(e: RawEntry, deliveries: number): StreamMessage {
  let data: Uint8Array = new Uint8Array(0);
  let headers: Record<string, string> | undefined;
  const f = e.fields ?? [];
  for (let i = 0; i + 1 < f.length; i += 2) {
    const name = str(f[i]);
    if (name === "data") data = new Uint8Array(f[i + 1]!);
    else (headers ??= {})[name] = str(f[i + 1]);
  }
  const msg: StreamMessage = { data, id: e.id, publishedAt: Number(e.id.split("-")[0]), deliveries };
  if (headers) msg.headers = headers;
  return msg;
}

function pairs(list: unknown[]): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (let i = 0; i + 1 < list.length; i += 2) m.set(str(list[i]), list[i + 1]);
  return m;
}

/** A SluiceError naming Redis and the address (never the password); auth problems are permanent. */
function redisError(err: unknown, target: Target, doing: string, retryable = true, connectionError?: Error): SluiceError {
  if (err instanceof SluiceError) return err;
  const auth = /WRONGPASS|NOAUTH|invalid password|invalid username|NOPERM/i;
  if (connectionError && auth.test(connectionError.message)) err = connectionError;
  const message = errorMessage(err);
  if (auth.test(message)) {
    return new SluiceError("BAD_CONFIG", `Redis ${target.shown}: ${doing} failed: the server rejected the credentials (${message}).`, {
      retryable: false,
      cause: err,
    });
  }
  if (/WRONGTYPE/.test(message)) {
    return new SluiceError("BAD_CONFIG", `Redis ${target.shown}: ${doing} failed: the key is not a stream (${message}).`, { retryable: false, cause: err });
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return new SluiceError("NETWORK_ERROR", `Redis ${target.shown}: ${doing} failed: ${message}${code && !message.includes(code) ? ` (${code})` : ""}.`, {
    retryable,
    cause: err,
  });
}

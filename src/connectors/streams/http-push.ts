/**
 * HTTP / WebSocket push source: the source is the server, producers send to it.
 *
 * - `POST <path>` with an NDJSON body (one record a line) or a JSON array (one record an element;
 *   a single JSON object is one record). The answer, `202 {"accepted": n}`, is sent only once
 *   every record of that request has been acknowledged, that is stored, so a producer that got
 *   its 202 may forget the records; one that got anything else (or nothing) sends them again.
 * - WebSocket at the same path: each text frame is one record (a frame that is not one JSON
 *   value but several lines is NDJSON, one record a line); binary frames are one record each.
 *   Frames are numbered from 1 on each connection, and the server answers `{"ack": n}` once the
 *   records of frame n are acknowledged, or `{"nack": n, "error": …, "retryAfterMs": …}` when it
 *   refused the frame.
 *
 * Backpressure: at most `maxUnacked` records (default 10,000) are held unacknowledged; a request
 * or frame that would go over is refused (HTTP 429 with Retry-After). Closing the source answers
 * the requests still waiting with 503, so their producers send again: records delivered by `next`
 * but not acknowledged are "redelivered" by their producer, the at-least-once contract of the
 * other brokers.
 *
 * Records are passed on as received (NDJSON lines are not parsed here); a line that is not JSON
 * is the conversion step's to quarantine, with the others stored.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { RawData, WebSocket } from "ws";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { resolveSecret, safeUrl, type ResolveSecretOptions } from "../secrets.js";
import { InFlight, Notifier, backoffDelay, closedError, type ConnectorOptions, errorMessage, sleepUnlessAborted } from "./common.js";
import type { BrokerDescriptor, StreamLog, StreamMessage, StreamPublisher, StreamSource, StreamSourceConfig } from "./types.js";

/** ws, loaded on the first open (the registry imports this module for its descriptor). */
const wsLibrary = () => import("ws");

export interface HttpPushSourceOptions extends ResolveSecretOptions, ConnectorOptions {
  /** Records held unacknowledged before producers get 429 (default 10,000). */
  maxUnacked?: number;
  /** Largest request body or WebSocket message (default 16 MiB). */
  maxBodyBytes?: number;
  /** Retry-After sent with 429 and 503 answers, in seconds (default 1). */
  retryAfterSeconds?: number;
  /** Bearer token producers must send (`Authorization: Bearer …`), as a secret reference (env:NAME or file:PATH). */
  token?: string;
}

/** The push source, with the address it listens on (useful with port 0). */
export interface HttpPushSource extends StreamSource {
  /** `http://127.0.0.1:PORT/path`, the bound address. */
  readonly url: string;
}

export interface HttpPushPublisherOptions extends ResolveSecretOptions {
  log?: StreamLog;
  /** Records per POST (default 500). */
  batchSize?: number;
  /** POSTs awaiting their answer at once (default 4). */
  maxInFlight?: number;
  /** How long one POST may wait for its 202, which comes only after the records are stored (default 120 s). */
  timeoutMs?: number;
  /** Attempts per batch on 429, 503 or a connection failure before giving up (default 10). */
  maxAttempts?: number;
  /** Bearer token to send, as a secret reference (env:NAME or file:PATH). */
  token?: string;
}

const DEFAULTS = {
  maxUnacked: 10_000,
  maxBodyBytes: 16 * 1024 * 1024,
  retryAfterSeconds: 1,
  batchSize: 500,
  maxInFlight: 4,
  timeoutMs: 120_000,
  maxAttempts: 10,
};

export const httpPushBroker: BrokerDescriptor<"http"> = {
  kind: "http",
  title: "HTTP / WebSocket push",
  config: z.object({
    url: z.string().min(1).describe("http://host:port/path, the address the source listens on (port 0: any free port)"),
  }),
  description: "a server at the URL; producers POST NDJSON or a JSON array to its path, or send it WebSocket frames",
  delivery:
    "at least once, by the producer: a request or frame is answered only once its records are stored; closing answers the waiting ones 503 (frames: a nack) and their producers send again; over 10,000 records waiting, 429",
  ack: 'the answer to the producer: 202 `{"accepted": n}` for a POST, `{"ack": n}` for frame n',
  openSource: (config, o) => openHttpPushSource(config, o),
  openPublisher: (config, o) => openHttpPushPublisher(config, o),
};

/** The records of one request or frame: answered once all of them are acknowledged. */
interface Owner {
  remaining: number;
  done(): void;
  /** The source closed first: tell the producer to send again. */
  abandon(): void;
}

/** Start listening on the configured address and path. */
export async function openHttpPushSource(config: StreamSourceConfig, opts: HttpPushSourceOptions = {}): Promise<HttpPushSource> {
  const { host, port, path } = parsePushUrl(config);
  if (opts.signal?.aborted) throw new SluiceError("CANCELLED", `Opening the HTTP push source ${safeUrl(config.url)} was cancelled.`, { retryable: false });

  const token = opts.token === undefined ? undefined : await resolveSecret(opts.token, "token", opts);
  const maxUnacked = Math.max(1, opts.maxUnacked ?? DEFAULTS.maxUnacked);
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
  const retryAfter = String(opts.retryAfterSeconds ?? DEFAULTS.retryAfterSeconds);
  const log = opts.log;

  const buffer: StreamMessage[] = [];
  /** Every accepted record not yet acknowledged (in `buffer` or handed out), by delivery. */
  const unacked = new Map<StreamMessage, Owner>();
  const owners = new Set<Owner>();
  const arrived = new Notifier();
  let closed = false;
  let shown = `http://${host}:${port}${path}`;

  /** Accept `records` under one owner; false when that would exceed the bound. */
  const accept = (records: Uint8Array[], owner: Omit<Owner, "remaining">): boolean | "too-large" => {
    if (records.length > maxUnacked) return "too-large";
    if (unacked.size + records.length > maxUnacked) return false;
    const o: Owner = { remaining: records.length, ...owner };
    owners.add(o);
    const now = Date.now();
    for (const data of records) {
      // The id is the record's content: a sender that sends a record again (its request failed)
      // sends the same id, as the dead letters need. The delivery is the message object itself.
      const m: StreamMessage = { data, id: `sha256:${createHash("sha256").update(data).digest("hex")}`, publishedAt: now, deliveries: 1 };
      unacked.set(m, o);
      buffer.push(m);
    }
    arrived.notify();
    return true;
  };

  const authorized = (req: IncomingMessage): boolean => token === undefined || req.headers.authorization === `Bearer ${token}`;

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const reqPath = (req.url ?? "/").split("?")[0];
    if (reqPath !== path) return reply(res, 404, { error: `not found; records go to POST ${path}` });
    if (req.method !== "POST") return reply(res, 405, { error: "use POST (or a WebSocket)" }, { allow: "POST" });
    if (!authorized(req)) return reply(res, 401, { error: "missing or wrong bearer token" }, { "www-authenticate": "Bearer" });
    if (closed) return reply(res, 503, { error: "source is closing; send again later" }, { "retry-after": retryAfter });
    readBody(req, maxBodyBytes).then(
      (body) => {
        if (body === undefined) return reply(res, 413, { error: `body larger than ${maxBodyBytes} bytes` }, { connection: "close" });
        const parsed = parseBody(body, String(req.headers["content-type"] ?? ""));
        if (typeof parsed === "string") return reply(res, 400, { error: parsed });
        if (parsed.length === 0) return reply(res, 202, { accepted: 0 });
        if (closed) return reply(res, 503, { error: "source is closing; send again later" }, { "retry-after": retryAfter });
        const n = parsed.length;
        const ok = accept(parsed, {
          done: () => reply(res, 202, { accepted: n }),
          abandon: () => reply(res, 503, { error: "source closed before the records were stored; send them again" }, { "retry-after": retryAfter }),
        });
        if (ok === "too-large") return reply(res, 413, { error: `${n} records in one request; at most ${maxUnacked}` });
        if (!ok) {
          return reply(
            res,
            429,
            { error: `more than ${maxUnacked} records waiting to be stored; retry later`, unacked: unacked.size },
            { "retry-after": retryAfter },
          );
        }
      },
      (err: unknown) => {
        log?.warn("HTTP push request failed while reading", { source: shown, error: errorMessage(err) });
        res.destroy();
      },
    );
  };

  const onConnection = (ws: WebSocket): void => {
    let frame = 0;
    ws.on("error", (err) => log?.warn("HTTP push WebSocket error", { source: shown, error: err.message }));
    ws.on("message", (data: RawData, isBinary: boolean) => {
      const n = ++frame;
      const bytes = rawBytes(data);
      const records = isBinary ? [bytes] : splitFrame(bytes);
      const send = (msg: unknown) => {
        if (ws.readyState === ws.OPEN)
          ws.send(JSON.stringify(msg), (err) => err && log?.warn("HTTP push WebSocket send failed", { source: shown, error: err.message }));
      };
      if (records.length === 0) return send({ ack: n });
      if (closed) return send({ nack: n, error: "source is closing", retryAfterMs: Number(retryAfter) * 1000 });
      const ok = accept(records, {
        done: () => send({ ack: n }),
        abandon: () => send({ nack: n, error: "source closed before the records were stored", retryAfterMs: Number(retryAfter) * 1000 }),
      });
      if (ok === "too-large") send({ nack: n, error: `${records.length} records in one frame; at most ${maxUnacked}` });
      else if (!ok) send({ nack: n, error: `more than ${maxUnacked} records waiting to be stored`, retryAfterMs: Number(retryAfter) * 1000 });
    });
  };

  const { WebSocketServer } = await wsLibrary();
  const server: Server = createServer(onRequest);
  const wss = new WebSocketServer({ noServer: true, maxPayload: maxBodyBytes });
  wss.on("error", (err) => log?.warn("HTTP push WebSocket server error", { source: shown, error: err.message }));
  wss.on("connection", onConnection);
  server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on("error", () => undefined);
    const reqPath = (req.url ?? "/").split("?")[0];
    if (reqPath !== path || closed || !authorized(req)) {
      const status = reqPath !== path ? "404 Not Found" : closed ? "503 Service Unavailable" : "401 Unauthorized";
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
  });
  server.on("clientError", (_err, socket: Socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    else socket.destroy();
  });
  server.on("error", (err) => log?.error("HTTP push server error", { source: shown, error: err.message }));

  const bound = await new Promise<AddressInfo>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(listenError(err, shown));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve(server.address() as AddressInfo);
    });
  });
  const shownHost = host.includes(":") ? `[${host}]` : host;
  const url = `http://${shownHost}:${bound.port}${path}`;
  shown = url;
  const description = `${url} (HTTP/WebSocket push)`;

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    arrived.notify();
    // Producers still waiting are told to send again: their records were not stored.
    for (const o of owners) o.abandon();
    owners.clear();
    unacked.clear();
    buffer.length = 0;
    for (const ws of wss.clients) ws.close(1001, "source closed");
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Answered requests may sit on idle keep-alive connections; end those now.
      setTimeout(() => {
        server.closeAllConnections();
        for (const ws of wss.clients) ws.terminate();
      }, 200).unref();
    });
    wss.close();
    log?.info("HTTP push source closed", { source: description });
  };
  opts.signal?.addEventListener("abort", () => void close(), { once: true });
  log?.info("HTTP push source listening", { source: description });

  return {
    description,
    url,
    async next(max: number, maxWaitMs: number, signal: AbortSignal): Promise<StreamMessage[]> {
      if (closed) throw closedError(`HTTP push source ${url}`);
      await arrived.until(() => buffer.length > 0 || closed, maxWaitMs, signal, description);
      return buffer.splice(0, Math.max(1, max));
    },
    async ack(messages: StreamMessage[]): Promise<void> {
      for (const m of messages) {
        const o = unacked.get(m);
        if (!o) continue; // acknowledged already, or the source was closed
        unacked.delete(m);
        if (--o.remaining === 0) {
          owners.delete(o);
          o.done();
        }
      }
    },
    async lag(): Promise<number | undefined> {
      return unacked.size;
    },
    close,
  };
}

/**
 * A producer for a push source: records are sent as NDJSON, `batchSize` a POST, up to
 * `maxInFlight` POSTs at once; 429 and 503 answers are waited out (Retry-After) and sent again.
 * `flush` resolves when every POST got its 202, that is when the source has stored the records.
 * Headers are not sent (the push protocol carries bare records).
 */
export async function openHttpPushPublisher(config: StreamSourceConfig, opts: HttpPushPublisherOptions = {}): Promise<StreamPublisher> {
  const { host, port, path, scheme } = parsePushUrl(config, true);
  const target = `${scheme}//${host.includes(":") ? `[${host}]` : host}:${port}${path}`;
  const token = opts.token === undefined ? undefined : await resolveSecret(opts.token, "token", opts);
  const batchSize = Math.max(1, opts.batchSize ?? DEFAULTS.batchSize);
  const maxInFlight = Math.max(1, opts.maxInFlight ?? DEFAULTS.maxInFlight);
  const timeoutMs = opts.timeoutMs ?? DEFAULTS.timeoutMs;
  const maxAttempts = Math.max(1, opts.maxAttempts ?? DEFAULTS.maxAttempts);
  const stop = new AbortController();
  let batch: string[] = [];
  const inFlight = new InFlight();
  let closed = false;

  const post = async (lines: string[]): Promise<void> => {
    const body = lines.join("\n") + "\n";
    for (let attempt = 1; ; attempt++) {
      let waitMs: number;
      try {
        const res = await fetch(target, {
          method: "POST",
          headers: { "content-type": "application/x-ndjson", ...(token ? { authorization: `Bearer ${token}` } : {}) },
          body,
          signal: AbortSignal.any([stop.signal, AbortSignal.timeout(timeoutMs)]),
        });
        const text = await res.text().catch(() => "");
        if (res.status === 202 || res.status === 200) return;
        if (res.status !== 429 && res.status !== 503) {
          throw new SluiceError(res.status >= 500 ? "NETWORK_ERROR" : "BAD_CONFIG", `HTTP push ${target} answered ${res.status}: ${text.slice(0, 200)}`, {
            retryable: res.status >= 500,
          });
        }
        const ra = Number(res.headers.get("retry-after"));
        waitMs = Number.isFinite(ra) && ra >= 0 ? ra * 1000 : backoffDelay(attempt - 1, { baseMs: 250, maxMs: 5000 });
        if (attempt >= maxAttempts)
          throw new SluiceError("NETWORK_ERROR", `HTTP push ${target} still answered ${res.status} after ${attempt} attempts.`, { retryable: true });
      } catch (err) {
        if (err instanceof SluiceError) throw err;
        if (stop.signal.aborted) throw closedError(`HTTP push publisher ${target}`);
        if (attempt >= maxAttempts || (err as Error).name === "TimeoutError") {
          const cause = (err as { cause?: { code?: string; message?: string } }).cause;
          throw new SluiceError("NETWORK_ERROR", `HTTP push ${target}: ${cause?.code ?? cause?.message ?? errorMessage(err)} (after ${attempt} attempts).`, {
            retryable: true,
            cause: err,
          });
        }
        waitMs = backoffDelay(attempt - 1, { baseMs: 250, maxMs: 5000 });
      }
      await sleepUnlessAborted(waitMs, stop.signal);
    }
  };

  const send = (lines: string[]) =>
    inFlight.track(post(lines), (err) =>
      err instanceof SluiceError ? err : new SluiceError("NETWORK_ERROR", `HTTP push ${target}: ${errorMessage(err)}`, { retryable: true, cause: err }),
    );

  return {
    async publish(data: Uint8Array | string): Promise<void> {
      if (closed) throw closedError(`HTTP push publisher ${target}`);
      inFlight.check();
      batch.push(oneLine(data));
      if (batch.length >= batchSize) {
        const full = batch;
        batch = [];
        send(full);
        await inFlight.below(maxInFlight);
      }
    },
    async flush(): Promise<void> {
      if (batch.length > 0) {
        const rest = batch;
        batch = [];
        send(rest);
      }
      await inFlight.flush();
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      stop.abort();
      await inFlight.settle();
    },
  };
}

// ---------------------------------------------------------------------------------------------

function parsePushUrl(config: StreamSourceConfig, client = false): { host: string; port: number; path: string; scheme: string } {
  if (config.broker !== "http") {
    throw new SluiceError("BAD_CONFIG", `HTTP push connector given broker ${config.broker}.`, { retryable: false });
  }
  let u: URL;
  try {
    u = new URL(config.url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `HTTP push url ${safeUrl(config.url)} is not a valid URL (expected http://host:port/path).`, { retryable: false });
  }
  const ok = u.protocol === "http:" || (client && u.protocol === "https:");
  if (!ok) {
    const why = u.protocol === "https:" ? "the push source serves plain http; terminate TLS in a proxy in front of it" : "expected http://host:port/path";
    throw new SluiceError("BAD_CONFIG", `HTTP push url ${safeUrl(u)}: ${why}.`, { retryable: false });
  }
  if (u.username || u.password) {
    throw new SluiceError("BAD_CONFIG", `HTTP push url ${safeUrl(u)} must not carry credentials; use the token option.`, { retryable: false });
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port);
  return { host, port, path: u.pathname || "/", scheme: u.protocol };
}

function listenError(err: NodeJS.ErrnoException, shown: string): SluiceError {
  if (err.code === "EADDRINUSE") {
    return new SluiceError("NETWORK_ERROR", `HTTP push source ${shown}: the address is already in use (EADDRINUSE).`, { retryable: true, cause: err });
  }
  if (err.code === "EACCES" || err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND" || err.code === "EAI_AGAIN") {
    return new SluiceError("BAD_CONFIG", `HTTP push source ${shown}: cannot listen there (${err.code}).`, { retryable: false, cause: err });
  }
  return new SluiceError("NETWORK_ERROR", `HTTP push source ${shown}: cannot listen: ${err.message}.`, { retryable: true, cause: err });
}

function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The whole body, or undefined when it is larger than `limit` (the rest is discarded). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on("error", reject);
  });
}

const NDJSON_TYPES = new Set(["application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines"]);
const encoder = new TextEncoder();

/** Records of a POST body, or an error sentence for a 400 answer. */
function parseBody(body: Buffer, contentType: string): Uint8Array[] | string {
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  const text = body.toString("utf8").replace(/^\uFEFF/, "");
  const trimmed = text.trim();
  if (trimmed === "") return [];
  const asJson = type === "application/json" || (!NDJSON_TYPES.has(type) && trimmed.startsWith("["));
  if (asJson) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed) as unknown;
    } catch (err) {
      return `body is not valid JSON: ${errorMessage(err)}`;
    }
    if (Array.isArray(value)) return value.map((v) => encoder.encode(JSON.stringify(v)));
    return [encoder.encode(trimmed)];
  }
  return splitLines(text);
}

function splitLines(text: string): Uint8Array[] {
  return text
    .split(/\r?\n/)
    .filter((l) => l.trim() !== "")
    .map((l) => encoder.encode(l));
}

/** A text frame: one record when it is one JSON value (or not JSON and one line), else one record a line. */
function splitFrame(bytes: Uint8Array): Uint8Array[] {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  const trimmed = text.trim();
  if (trimmed === "") return [];
  if (!/[\r\n]/.test(trimmed)) return [encoder.encode(trimmed)];
  try {
    JSON.parse(trimmed);
    return [encoder.encode(trimmed)];
  } catch {
    return splitLines(text);
  }
}

function rawBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data));
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** One NDJSON line: JSON spread over several lines is compacted; other text with a line break is refused. */
function oneLine(data: Uint8Array | string): string {
  const text = typeof data === "string" ? data : new TextDecoder().decode(data);
  if (!/[\r\n]/.test(text.trim())) return text.trim();
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    throw new SluiceError("BAD_INPUT", "HTTP push publisher: a record contains a line break and is not JSON; NDJSON carries one record a line.", {
      retryable: false,
    });
  }
}

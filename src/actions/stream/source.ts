/**
 * stream-manager/establish_stream_connection: the source of a continuous group.
 *
 * As a stage it opens the broker source (openStreamSource) and hands the pipeline batches of
 * records: `value` is the payload as UTF-8 text, `id` the broker's message id, `publishedAt` the
 * broker's receive time. Each batch's `ack` acknowledges exactly the messages of that batch, and
 * the pipeline calls it only after the sink committed them.
 *
 * As an ordinary step it connects, lets the connector check the stream (or create it and the
 * durable consumer, so the next pipeline resumes from the last committed position), reports the
 * description and the lag, and closes.
 */
import { SluiceError } from "../../errors.js";
import { resolveSecret } from "../../connectors/secrets.js";
import { openStreamSource, type BrokerKind } from "../../connectors/streams/index.js";
import { parseDuration } from "../../spec/duration.js";
import type { OpenSourceOptions, StreamMessage, StreamSource, StreamSourceConfig } from "../../connectors/streams/types.js";
import type { RejectedRecord, SourceStage, Stage, StreamRecord } from "../stream-types.js";
import type { ActionContext, Outputs } from "../types.js";

export interface StreamConnectionInput {
  broker: BrokerKind;
  url: string;
  subject?: string;
  stream?: string;
  topic?: string;
  queue?: string;
  consumer?: string;
  redeliverAfter?: string;
  auth?: { type: "bearer" | "basic" | "apiKey"; token?: string; username?: string; password?: string; header?: string; value?: string };
}

/** The connector config of the action's inputs, credentials from `auth` (secret references) put into the URL. */
export async function sourceConfig(input: StreamConnectionInput): Promise<StreamSourceConfig> {
  const config: StreamSourceConfig = { broker: input.broker, url: await withCredentials(input) };
  for (const k of ["subject", "stream", "topic", "queue", "consumer"] as const) if (input[k] !== undefined) config[k] = input[k];
  return config;
}

/**
 * A stable name of the stream the messages come from, the same in every run reading it with this
 * configuration: the broker and the stream (else subject, topic or queue). With the message id it
 * keys dead letters, so a message redelivered to a later attempt or run is dead-lettered once.
 */
export function originOf(input: Pick<StreamConnectionInput, "broker" | "subject" | "stream" | "topic" | "queue">): string {
  return `${input.broker}:${input.stream ?? input.subject ?? input.topic ?? input.queue ?? "-"}`;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const lossy = new TextDecoder("utf-8");

/** Wrap a connector's source as the pipeline's source stage. */
export function sourceStage(src: StreamSource, origin: string, step: string): SourceStage {
  return {
    description: src.description,
    async next(max, maxWaitMs, signal) {
      const messages = await src.next(max, maxWaitMs, signal);
      const records: StreamRecord[] = [];
      const rejected: RejectedRecord[] = [];
      for (const m of messages) {
        const record: StreamRecord = { value: undefined, id: m.id };
        if (m.publishedAt !== undefined) record.publishedAt = m.publishedAt;
        try {
          record.value = utf8.decode(m.data);
          records.push(record);
        } catch {
          const raw = lossy.decode(m.data);
          record.value = raw;
          rejected.push({ record, raw, reasons: [`message ${m.id}: the payload is not valid UTF-8 text`], step });
        }
      }
      const acked: StreamMessage[] = messages;
      return { records, rejected, receivedAt: performance.now(), origin, ack: () => src.ack(acked) };
    },
    ...(src.lag ? { lag: () => src.lag!() } : {}),
    close: () => src.close(),
  };
}

/**
 * The stage. The source gets no abort signal on purpose: the step's signal is the pipeline's
 * stop signal, and a source closed by it could not acknowledge the batches the flush still
 * commits after the stop. The pipeline closes the source itself once the flush is done.
 */
export async function openConnectionStage(input: StreamConnectionInput, ctx: ActionContext): Promise<Stage> {
  const src = await openStreamSource(await sourceConfig(input), { log: ctx.log, ...redelivery(input) });
  return { kind: "source", stage: sourceStage(src, originOf(input), ctx.step) };
}

/** `redeliverAfter` as the connectors' option (the brokers that redeliver on a timer read it). */
function redelivery(input: StreamConnectionInput): Pick<OpenSourceOptions, "redeliverAfterMs"> {
  const ms = input.redeliverAfter === undefined ? undefined : parseDuration(input.redeliverAfter);
  return ms === undefined ? {} : { redeliverAfterMs: ms };
}

export async function establishStreamConnection(input: StreamConnectionInput, ctx: ActionContext): Promise<Outputs> {
  const src = await openStreamSource(await sourceConfig(input), { log: ctx.log, signal: ctx.signal, ...redelivery(input) });
  try {
    const lag = src.lag ? await src.lag() : undefined;
    ctx.log.info("stream connection checked", { source: src.description, lag });
    return { broker: input.broker, description: src.description, lag: lag ?? null, origin: originOf(input) };
  } finally {
    await src.close();
  }
}

async function withCredentials(input: StreamConnectionInput): Promise<string> {
  const auth = input.auth;
  if (!auth) return input.url;
  let u: URL;
  try {
    u = new URL(input.url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `${input.broker} url is not a valid URL; credentials from auth need one (e.g. ${input.broker}://host:port).`, {
      retryable: false,
    });
  }
  if (u.username || u.password) {
    throw new SluiceError("BAD_CONFIG", `the ${input.broker} url already carries credentials; give them either in the URL or in auth, not both.`, {
      retryable: false,
    });
  }
  const need = (field: string, v: string | undefined): string => {
    if (!v) throw new SluiceError("BAD_CONFIG", `auth type ${auth.type} needs "${field}"`, { retryable: false });
    return v;
  };
  switch (auth.type) {
    case "basic":
      u.username = encodeURIComponent(need("username", auth.username));
      u.password = encodeURIComponent(await resolveSecret(need("password", auth.password), "auth.password"));
      break;
    case "bearer": {
      // A token as the URL's user (NATS), or as a password without a user (Redis AUTH).
      const token = encodeURIComponent(await resolveSecret(need("token", auth.token), "auth.token"));
      if (input.broker === "redis") u.password = token;
      else u.username = token;
      break;
    }
    default:
      throw new SluiceError(
        "BAD_CONFIG",
        `auth type ${auth.type} does not apply to a ${input.broker} broker: use basic (username and password) or bearer (token).`,
        { retryable: false },
      );
  }
  return u.toString();
}

/**
 * PostgreSQL as a batch source.
 *
 * Rows are read through a server-side cursor (pg-query-stream), so a table of any size costs
 * at most about two batches of memory. Every value is made JSON-safe on the way out, with the
 * data rules of the design: numeric and bigint stay exact strings, timestamps become UTC
 * ISO-8601 strings (keeping microseconds), bytea becomes base64.
 *
 * One client per read, opened here and always closed here: at the end, on an error, when the
 * caller breaks out of its loop, and when the AbortSignal fires.
 */
import pg from "pg";
import QueryStream from "pg-query-stream";
import { SluiceError } from "../errors.js";
import { pgEndpoint, pgError, type SslMode } from "./pg-connection.js";
import { isSecretRef, resolveSecret, safeUrl, type ResolveSecretOptions } from "./secrets.js";

export interface PostgresSourceConfig {
  /** `env:NAME` / `file:PATH` holding a full URL, or a plain `postgres://` URL without a password. */
  url: string;
  /** Password as a secret reference, for a plain URL that needs one. */
  password?: string;
  /** `table` or `schema.table` (each part may be "double-quoted"); exactly one of table / query. */
  table?: string;
  query?: string;
  /** Parameters for `$1, $2…` in `query`. */
  params?: unknown[];
  /** Rows per yielded batch (default 1000). */
  batchSize?: number;
  /** Shown in pg_stat_activity (default "sluice"). */
  applicationName?: string;
  /** Connection timeout (default 10 s). */
  connectTimeoutMs?: number;
}

export interface PostgresCallOptions extends ResolveSecretOptions {
  signal?: AbortSignal;
}

export interface PostgresProbeResult {
  ok: boolean;
  serverVersion?: string;
  /** True when the session is encrypted (as reported by the server's pg_stat_ssl). */
  ssl: boolean;
  elapsedMs: number;
  error?: string;
}

export type PgRow = Record<string, unknown>;

interface Connection {
  client: pg.Client;
  /** host:port, safe to print. */
  where: string;
  secrets: string[];
}

/**
 * Stream the rows of a table or query in batches of `batchSize`.
 * Breaking out of the `for await` loop closes the cursor and the connection.
 */
export async function* readPostgres(config: PostgresSourceConfig, opts: PostgresCallOptions = {}): AsyncGenerator<PgRow[], void, undefined> {
  const batchSize = config.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new SluiceError("BAD_CONFIG", `batchSize must be a positive integer, got ${batchSize}.`);
  const { text, values } = sourceQuery(config);
  const conn = await connect(config, opts);
  const { client } = conn;
  const stream = client.query(new QueryStream(text, values, { batchSize }));
  const onAbort = () => stream.destroy(new SluiceError("CANCELLED", `Reading from PostgreSQL at ${conn.where} was cancelled.`, { retryable: false }));
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (opts.signal?.aborted) onAbort();
    let batch: PgRow[] = [];
    for await (const row of stream as AsyncIterable<PgRow>) {
      batch.push(jsonSafeRow(row));
      if (batch.length >= batchSize) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  } catch (err) {
    if (opts.signal?.aborted) throw new SluiceError("CANCELLED", `Reading from PostgreSQL at ${conn.where} was cancelled.`, { retryable: false, cause: err });
    throw pgError(err, conn.where, conn.secrets, config.table ? `reading table ${config.table}` : "running the source query");
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    if (!stream.destroyed) stream.destroy();
    await client.end().catch(() => undefined);
  }
}

/** Connect, run `select 1`, report. Connection failures are reported; configuration errors are thrown. */
export async function probePostgres(config: PostgresSourceConfig, opts: PostgresCallOptions = {}): Promise<PostgresProbeResult> {
  const started = performance.now();
  const settings = await connectionSettings(config, opts); // BAD_CONFIG surfaces as a throw
  let conn: Connection | undefined;
  try {
    conn = await connectWith(settings);
    await conn.client.query("select 1");
    const version = await conn.client.query<{ v: string }>("select current_setting('server_version') as v");
    let ssl = false;
    try {
      const r = await conn.client.query<{ ssl: boolean }>("select ssl from pg_stat_ssl where pid = pg_backend_pid()");
      ssl = r.rows[0]?.ssl === true;
    } catch {
      ssl = settings.ssl !== false; // pg_stat_ssl not visible: fall back to what was negotiated
    }
    return { ok: true, serverVersion: version.rows[0]?.v, ssl, elapsedMs: elapsed(started) };
  } catch (err) {
    const e = err instanceof SluiceError ? err : pgError(err, settings.where, settings.secrets, "probing");
    return { ok: false, ssl: false, elapsedMs: elapsed(started), error: e.message };
  } finally {
    await conn?.client.end().catch(() => undefined);
  }
}

/**
 * Quote `table` or `schema.table` as SQL identifiers. Unquoted parts are taken literally (case
 * kept, as most tools do); a part written "like ""this""" is unquoted first. Anything else,
 * including a third part, is refused, so a table name can never carry SQL.
 */
export function quoteTableName(name: string): string {
  const parts: string[] = [];
  let i = 0;
  const fail = (why: string) => new SluiceError("BAD_CONFIG", `Table name ${JSON.stringify(name)} is not valid: ${why}.`);
  while (i <= name.length) {
    let part = "";
    if (name[i] === '"') {
      i++;
      for (;;) {
        if (i >= name.length) throw fail("an opening double quote is not closed");
        if (name[i] === '"') {
          if (name[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += name[i++];
      }
      if (i < name.length && name[i] !== ".") throw fail("text follows a closing double quote");
    } else {
      const dot = name.indexOf(".", i);
      const end = dot === -1 ? name.length : dot;
      part = name.slice(i, end).trim();
      if (part.includes('"')) throw fail("a double quote may only enclose a whole name part");
      i = end;
    }
    if (part === "") throw fail("a name part is empty");
    if (part.includes("\0")) throw fail("it contains a NUL character");
    parts.push(part);
    i++; // skip the dot
  }
  if (parts.length > 2) throw fail("use table or schema.table");
  return parts.map((p) => `"${p.replace(/"/g, '""')}"`).join(".");
}

/** Make one value JSON-safe: Date → ISO UTC, bigint → string, Buffer → base64, NaN/±Infinity → string. */
export function toJsonSafe(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (Buffer.isBuffer(value)) return value.toString("base64");
  if (Array.isArray(value)) return value.map(toJsonSafe);
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = toJsonSafe(v);
    return out;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------

function jsonSafeRow(row: PgRow): PgRow {
  const out: PgRow = {};
  for (const k of Object.keys(row)) out[k] = toJsonSafe(row[k]);
  return out;
}

function sourceQuery(config: PostgresSourceConfig): { text: string; values: unknown[] } {
  const hasTable = typeof config.table === "string" && config.table.trim() !== "";
  const hasQuery = typeof config.query === "string" && config.query.trim() !== "";
  if (hasTable === hasQuery) throw new SluiceError("BAD_CONFIG", "A PostgreSQL source needs exactly one of table or query.");
  if (hasTable) return { text: `select * from ${quoteTableName(config.table!)}`, values: [] };
  return { text: config.query!, values: config.params ?? [] };
}

// Text-format type parsers. Timestamps are parsed from text (the session runs in UTC) so the
// microseconds survive, which a JS Date would cut to milliseconds; `date` stays a calendar date
// instead of becoming local midnight; `interval` stays in PostgreSQL's own text form.
const OID = { date: 1082, timestamp: 1114, timestamptz: 1184, interval: 1186 } as const;

/** `2024-01-02 03:04:05.123456+00` (or without offset) → `2024-01-02T03:04:05.123456Z`. */
export function pgTimestampToIso(text: string): string {
  const m = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([+-])(\d\d)(?::?(\d\d))?(?::(\d\d))?)?$/.exec(text);
  if (!m) return text; // infinity, BC dates: keep PostgreSQL's own spelling
  const [, y, mo, d, h, mi, s, frac = "", sign, oh, om] = m;
  let fraction = frac.padEnd(3, "0");
  if (fraction.length > 3) fraction = fraction.replace(/0+$/, "").padEnd(3, "0");
  if (sign && (oh !== "00" || (om ?? "00") !== "00")) {
    // Not UTC (only if the caller changed TimeZone in the query): shift through Date, keeping the fraction.
    const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}${sign}${oh}:${om ?? "00"}`);
    const iso = new Date(ms).toISOString();
    return `${iso.slice(0, 19)}.${fraction}Z`;
  }
  return `${y}-${mo}-${d}T${h}:${mi}:${s}.${fraction}Z`;
}

const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (format === undefined || format === "text") {
      if (oid === OID.timestamptz || oid === OID.timestamp) return pgTimestampToIso;
      if (oid === OID.date || oid === OID.interval) return (v: string) => v;
    }
    return pg.types.getTypeParser(oid, format ?? "text");
  }) as pg.CustomTypesConfig["getTypeParser"],
};

interface Settings {
  client: pg.ClientConfig;
  ssl: pg.ClientConfig["ssl"];
  sslmode: SslMode;
  where: string;
  secrets: string[];
}

async function connectionSettings(config: PostgresSourceConfig, opts: ResolveSecretOptions): Promise<Settings> {
  const secrets: string[] = [];
  let raw = config.url;
  if (typeof raw !== "string" || raw === "") throw new SluiceError("BAD_CONFIG", "A PostgreSQL source needs a url.");
  if (isSecretRef(raw)) {
    raw = await resolveSecret(raw, "url", opts);
    secrets.push(raw);
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    // Never echo a resolved secret: it may be a URL with a password in it.
    const shown = secrets.length ? config.url : safeUrl(raw);
    throw new SluiceError("BAD_CONFIG", `PostgreSQL url ${shown} is not a valid postgres:// URL.`);
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
    throw new SluiceError("BAD_CONFIG", `PostgreSQL url ${safeUrl(u)} must start with postgres:// or postgresql://.`);
  }
  let password = u.password ? decodeURIComponent(u.password) : undefined;
  if (password && secrets.length === 0) {
    throw new SluiceError(
      "BAD_CONFIG",
      `PostgreSQL url ${safeUrl(u)} contains a password; put the whole URL in a secret (url: env:NAME) or set password: env:NAME.`,
    );
  }
  if (config.password !== undefined) password = await resolveSecret(config.password, "password", opts);
  if (password) secrets.push(password);

  const endpoint = await pgEndpoint(u, { password, applicationName: config.applicationName, connectTimeoutMs: config.connectTimeoutMs });
  const client: pg.ClientConfig = { ...endpoint.client, types: typeParsers };
  const { where, sslmode } = endpoint;
  const ssl = client.ssl;
  return { client, ssl, sslmode, where, secrets };
}

async function connect(config: PostgresSourceConfig, opts: PostgresCallOptions): Promise<Connection> {
  const settings = await connectionSettings(config, opts);
  if (opts.signal?.aborted) throw new SluiceError("CANCELLED", `Connecting to PostgreSQL at ${settings.where} was cancelled.`, { retryable: false });
  try {
    return await connectWith(settings);
  } catch (err) {
    throw err instanceof SluiceError ? err : pgError(err, settings.where, settings.secrets, "connecting");
  }
}

async function connectWith(settings: Settings): Promise<Connection> {
  const attempt = async (ssl: pg.ClientConfig["ssl"]) => {
    const client = new pg.Client({ ...settings.client, ssl });
    // An idle client whose server goes away emits 'error'; without a listener that would crash the process.
    client.on("error", () => undefined);
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  };
  try {
    return { client: await attempt(settings.ssl), where: settings.where, secrets: settings.secrets };
  } catch (err) {
    const fallback = (settings.sslmode === "prefer" || settings.sslmode === "allow") && /does not support SSL/i.test((err as Error).message);
    if (!fallback) throw err;
    return { client: await attempt(false), where: settings.where, secrets: settings.secrets };
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

/**
 * PostgreSQL destination: COPY into a temp staging table, then one upsert.
 *
 * Per batch, in one transaction: the rows stream into a TEMP staging table with
 * `COPY … FROM STDIN` (text format), then ONE
 * `INSERT INTO target SELECT DISTINCT ON (key) … ORDER BY key, ordinal DESC ON CONFLICT (key)
 * DO UPDATE … WHERE target._sluice_hash IS DISTINCT FROM EXCLUDED._sluice_hash`
 * moves them across. Its row count is the rows inserted or changed; the rest of the batch
 * (same content already present, or superseded by a later row of the batch) is `duplicate`.
 * The staging table is created once per connection with ON COMMIT DELETE ROWS.
 *
 * Fast path: when a batch has no repeated keys, it is first COPYed straight into the target
 * under a savepoint; if any key already exists (unique violation) the savepoint is rolled back
 * and the batch takes the staging path. After such a fallback the staging path is used until a
 * batch turns out to be all new keys. Fresh loads thus skip the second copy of every row.
 *
 * One client per destination, no pool: a destination is one writer.
 */
import { availableParallelism } from "node:os";
import pg from "pg";
import copyStreams from "pg-copy-streams";
import type { Column, QuarantinedRecord, TypedRow } from "../../formats/typed.js";
import type { StageChunk } from "../../formats/stage.js";
import { BINARY_HEADER, BINARY_TRAILER, compileBinaryEncoder, type BinaryEncoder } from "./pg-binary.js";
import { SluiceError } from "../../errors.js";
import { pgEndpoint, pgError, type SslMode } from "../pg-connection.js";
import { quoteTableName } from "../postgres.js";
import { safeUrl } from "../secrets.js";
import {
  HASH_COLUMN,
  LOADED_AT_COLUMN,
  QUARANTINE_SUFFIX,
  RUN_ID_COLUMN,
  canonicalText,
  checkTarget,
  jsonText,
  prepareBatch,
  type CheckedTarget,
  type PreparedBatch,
} from "./common.js";
import type { Destination, DestinationTarget, WriteContext, WriteCounts } from "./types.js";

/**
 * Suggested rows per `write()`. Measured with 1M 9-column rows on 2 cores: 20k, 50k and 100k
 * were within noise of each other (80-125k rows/s); 50k keeps a batch's staging table and sort
 * inside the session's 64 MB temp_buffers / work_mem.
 */
export const POSTGRES_BATCH_ROWS = 50_000;

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** `schema.table` → its unquoted parts (validated by the source connector's quoteTableName). */
export function splitTableName(name: string): { schema: string | undefined; table: string } {
  const quoted = quoteTableName(name);
  const parts = [...quoted.matchAll(/"((?:[^"]|"")*)"/g)].map((m) => m[1]!.replace(/""/g, '"'));
  return parts.length === 2 ? { schema: parts[0], table: parts[1]! } : { schema: undefined, table: parts[0]! };
}

export function postgresType(c: Column): string {
  switch (c.type) {
    case "string":
      return "text";
    case "integer":
      return "bigint";
    case "decimal":
      return c.scale === undefined ? "numeric" : `numeric(38,${c.scale})`;
    case "boolean":
      return "boolean";
    case "timestamp":
      return "timestamp with time zone";
    case "date":
      return "date";
  }
}

/** Is an existing column's type (format_type text) able to hold this column's values exactly? */
function compatible(c: Column, found: string): boolean {
  switch (c.type) {
    case "string":
      return found === "text" || found.startsWith("character varying");
    case "integer":
      return found === "bigint" || found === "numeric" || /^numeric\(\d+,0\)$/.test(found);
    case "decimal": {
      if (found === "numeric") return true;
      const m = /^numeric\((\d+),(\d+)\)$/.exec(found);
      return !!m && (c.scale === undefined ? false : Number(m[2]) === c.scale);
    }
    case "boolean":
      return found === "boolean";
    case "timestamp":
      return found === "timestamp with time zone";
    case "date":
      return found === "date";
  }
}

export interface PostgresConnectOptions {
  /** The URL came from a secret reference: a password in it is allowed, and it is never echoed. */
  fromSecret?: string;
  connectTimeoutMs?: number;
  /** Connections staged batches are written over (default: 2, or 1 on a single core). */
  connections?: number;
}

const DEFAULT_CONNECTIONS = Number(process.env.SLUICE_PG_CONNECTIONS ?? Math.min(2, availableParallelism()));

/**
 * The lines of a chunk split into `n` parts by a hash of their key fields (FNV-1a over the
 * bytes), so that rows with one key always land in the same part, in their order. A part is the
 * offsets of its lines: the encoder reads them where they are, nothing is copied.
 */
export function partitionLines(chunk: StageChunk, keyFields: readonly number[], n: number): { starts: Int32Array; rows: number }[] {
  const data = chunk.data;
  const out = Array.from({ length: n }, () => ({ starts: new Int32Array(chunk.rows), rows: 0 }));
  const last = keyFields[keyFields.length - 1]!;
  let p = 0;
  while (p < data.length) {
    const start = p;
    let field = 0;
    let h = 0x811c9dc5;
    let k = 0;
    let i = p;
    // Hash the key fields (a separator after each); stop after the last one.
    for (; field <= last; i++) {
      const b = data[i]!;
      if (b === 9 || b === 10) {
        if (field === keyFields[k]) {
          h = Math.imul(h ^ 9, 0x01000193);
          k++;
        }
        field++;
        if (b === 10) break;
        continue;
      }
      if (field === keyFields[k]) h = Math.imul(h ^ b, 0x01000193);
    }
    const nl = data[i] === 10 ? i : data.indexOf(10, i);
    p = nl + 1;
    const o = out[(h >>> 0) % n]!;
    o.starts[o.rows++] = start;
  }
  return out;
}

/**
 * Rows binary-encoded between two turns of the event loop. Encoding a 50k-row batch in one go
 * (~50 ms) kept this thread from feeding the COPY streams already under way, so the server
 * waited for the encoder and the storage step took about the sum of both: on 1M staged trade
 * rows (2 cores) PostgreSQL alone took 1.5 s on two connections, reading and encoding 1.0 s, the
 * step 2.54–2.62 s; in slices of 256–4,096 rows 2.13–2.28 s (16,384: 2.45 s).
 */
const ENCODE_SLICE_ROWS = 2_048;

/** A part's tuples, encoded slice by slice with the event loop free in between. */
export async function encodeInSlices(encode: BinaryEncoder, part: { data: Buffer; rows: number; starts: Int32Array | undefined }): Promise<Buffer[]> {
  if (part.rows <= ENCODE_SLICE_ROWS) return [encode(part.data, part.rows, part.starts)];
  const starts = part.starts ?? lineStarts(part.data, part.rows);
  const out: Buffer[] = [];
  for (let i = 0; i < part.rows; i += ENCODE_SLICE_ROWS) {
    const n = Math.min(ENCODE_SLICE_ROWS, part.rows - i);
    out.push(encode(part.data, n, starts.subarray(i, i + n), i));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return out;
}

/** Where each of the first `rows` lines of `data` starts. */
function lineStarts(data: Buffer, rows: number): Int32Array {
  const starts = new Int32Array(rows);
  let p = 0;
  for (let i = 0; i < rows; i++) {
    starts[i] = p;
    p = data.indexOf(10, p) + 1;
  }
  return starts;
}

/** Client settings from a postgres:// URL, with libpq's sslmode meanings (as the source connector). */
export async function clientConfig(
  url: string,
  opts: PostgresConnectOptions,
): Promise<{ config: pg.ClientConfig; where: string; secrets: string[]; sslmode: SslMode }> {
  let u: URL;
  const shown = opts.fromSecret ?? safeUrl(url);
  try {
    u = new URL(url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `PostgreSQL destination ${shown} is not a valid postgres:// URL.`);
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
    throw new SluiceError("BAD_CONFIG", `PostgreSQL destination ${shown} must start with postgres:// or postgresql://.`);
  }
  const qs = u.searchParams;
  const password = u.password ? decodeURIComponent(u.password) : (qs.get("password") ?? undefined);
  if (password && !opts.fromSecret) {
    throw new SluiceError("BAD_CONFIG", `PostgreSQL destination ${safeUrl(u)} contains a password; put the whole URL in a secret (env:NAME or file:PATH).`);
  }
  const {
    client: config,
    where,
    sslmode,
  } = await pgEndpoint(u, {
    password,
    connectTimeoutMs: opts.connectTimeoutMs,
    // temp_buffers and work_mem big enough that a 50k-row staging table and the DISTINCT ON sort
    // stay in memory (with the 4 MB default the sort spilled to disk).
    sessionOptions: "-c temp_buffers=64MB -c work_mem=64MB",
  });
  return { config, where, secrets: password ? [password, url] : [url], sslmode };
}

/** Driver errors as SluiceErrors (see pg-connection.ts); kept under this name for the destination's callers. */
export const pgDestinationError = pgError;

/** COPY text-format field: backslash, tab, newline and carriage return escaped. */
function copyText(s: string): string {
  // Fast path: most values need no escaping.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92 || c === 9 || c === 10 || c === 13) return s.replace(/[\\\t\n\r]/g, escapeChar);
  }
  return s;
}
function escapeChar(ch: string): string {
  return ch === "\\" ? "\\\\" : ch === "\t" ? "\\t" : ch === "\n" ? "\\n" : "\\r";
}

function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise<void>((resolve) => {
    const go = (): void => {
      stream.off("drain", go);
      stream.off("error", go);
      resolve();
    };
    stream.on("drain", go);
    stream.on("error", go);
  });
}

let stagingCounter = 0;

/**
 * One connection of a destination and what belongs to its session: the staging table (TEMP, so
 * per session) and whether its next batch tries the direct COPY.
 */
interface Lane {
  client: pg.Client | undefined;
  stagingReady: boolean;
  direct: boolean;
  /** The lane's last write: the next one starts after it (one transaction at a time per session). */
  tail: Promise<unknown>;
  /**
   * Batches to send through the staging table before trying the direct COPY again. A failed
   * direct COPY is work thrown away (up to a whole batch), so after each failure in a row the
   * wait doubles (1, 2, 4 … 32 batches): data with repeated keys stops paying for it.
   */
  skip: number;
  misses: number;
}

/** Staged batches smaller than this go over one connection: splitting them costs more than it saves. */
const PARALLEL_MIN_ROWS = 8_000;

export class PostgresDestination implements Destination {
  readonly kind = "postgres" as const;
  readonly display: string;
  /** lanes[0] also prepares, counts and writes the quarantine. */
  private readonly lanes: Lane[];
  private target: CheckedTarget | undefined;
  private qualified = "";
  private quarantine = "";
  private staging = "";
  private upsertSql = "";
  private directCopySql = "";
  private directBinarySql = "";
  private stagingBinarySql = "";
  private stagingEncoder: BinaryEncoder | undefined;
  /** Positions of the key columns among a stage line's fields (the hash field for a hash key). */
  private keyFields: number[] = [];

  private constructor(
    private readonly config: pg.ClientConfig,
    private readonly where: string,
    private readonly secrets: string[],
    private readonly sslmode: SslMode,
    display: string,
    connections: number,
  ) {
    this.display = display;
    this.lanes = Array.from({ length: Math.max(1, connections) }, () => ({
      client: undefined,
      stagingReady: false,
      direct: true,
      tail: Promise.resolve(),
      skip: 0,
      misses: 0,
    }));
  }

  static async open(url: string, opts: PostgresConnectOptions = {}): Promise<PostgresDestination> {
    const s = await clientConfig(url, opts);
    const display = safeUrl(url);
    const d = new PostgresDestination(s.config, s.where, s.secrets, s.sslmode, display, opts.connections ?? DEFAULT_CONNECTIONS);
    await d.connection();
    return d;
  }

  /** The live client of a lane, (re)connecting after a lost connection. */
  private async connection(lane: Lane = this.lanes[0]!): Promise<pg.Client> {
    if (lane.client) return lane.client;
    const attempt = async (ssl: pg.ClientConfig["ssl"]): Promise<pg.Client> => {
      const c = new pg.Client({ ...this.config, ssl });
      c.on("error", () => {
        if (lane.client === c) lane.client = undefined;
      });
      try {
        await c.connect();
        return c;
      } catch (err) {
        await c.end().catch(() => undefined);
        throw err;
      }
    };
    let client: pg.Client;
    try {
      try {
        client = await attempt(this.config.ssl);
      } catch (err) {
        if (!((this.sslmode === "prefer" || this.sslmode === "allow") && /does not support SSL/i.test((err as Error).message))) throw err;
        client = await attempt(false);
      }
    } catch (err) {
      throw pgDestinationError(err, this.where, this.secrets, "connecting");
    }
    lane.client = client;
    lane.stagingReady = false; // temp tables belong to the old session
    return client;
  }

  private async run<T extends pg.QueryResultRow = pg.QueryResultRow>(doing: string, text: string, values?: unknown[]): Promise<pg.QueryResult<T>> {
    const c = await this.connection();
    try {
      return await c.query<T>(text, values);
    } catch (err) {
      throw this.fail(err, doing);
    }
  }

  private fail(err: unknown, doing: string, lane: Lane = this.lanes[0]!): SluiceError {
    const e = pgDestinationError(err, this.where, this.secrets, doing);
    if (e.code === "NETWORK_ERROR" && lane.client) {
      const c = lane.client;
      lane.client = undefined;
      void c.end().catch(() => undefined);
    }
    return e;
  }

  async prepare(target: DestinationTarget): Promise<void> {
    const t = checkTarget(target, this.display);
    let parts: { schema: string | undefined; table: string };
    try {
      parts = splitTableName(t.table);
    } catch (err) {
      throw new SluiceError("BAD_CONFIG", `Destination ${this.display}: ${(err as Error).message}`, { cause: err });
    }
    for (const n of [parts.table + QUARANTINE_SUFFIX, parts.schema ?? "", ...t.names]) {
      if (Buffer.byteLength(n) > 63)
        throw new SluiceError("BAD_CONFIG", `Destination ${this.display}: name ${JSON.stringify(n)} is longer than PostgreSQL's 63-byte limit.`);
    }
    const schemaPrefix = parts.schema === undefined ? "" : `${q(parts.schema)}.`;
    const qt = schemaPrefix + q(parts.table);
    const qq = schemaPrefix + q(parts.table + QUARANTINE_SUFFIX);
    const c = await this.connection();
    try {
      await c.query("begin");
      // Two workers preparing the same table at once: one creates, the other then checks.
      await c.query("select pg_advisory_xact_lock(hashtextextended($1, 0))", [`sluice:dest:${qt}`]);
      if (parts.schema !== undefined) await c.query(`create schema if not exists ${q(parts.schema)}`);
      const found = await c.query<{ oid: number | null }>("select to_regclass($1)::oid as oid", [qt]);
      const oid = found.rows[0]?.oid;
      if (oid) await this.checkExisting(c, t, Number(oid));
      else {
        const cols = t.columns.map((col) => `${q(col.name)} ${postgresType(col)}`);
        cols.push(`${q(HASH_COLUMN)} text not null`, `${q(RUN_ID_COLUMN)} text not null`, `${q(LOADED_AT_COLUMN)} timestamp with time zone not null`);
        await c.query(`create table ${qt} (${cols.join(", ")}, primary key (${t.key.map(q).join(", ")}))`);
      }
      await c.query(`create table if not exists ${qq} (
        id bigint generated always as identity primary key,
        run_id text not null, step text not null, source text not null, line bigint not null,
        reasons jsonb not null, record jsonb, quarantined_at timestamp with time zone not null default now(),
        unique (run_id, step, source, line))`);
      await c.query("commit");
    } catch (err) {
      await c.query("rollback").catch(() => undefined);
      throw this.fail(err, `preparing table ${t.table}`);
    }
    this.target = t;
    this.qualified = qt;
    this.quarantine = qq;
    this.staging = `sluice_stage_${process.pid}_${++stagingCounter}`;
    for (const lane of this.lanes) {
      lane.stagingReady = false;
      lane.direct = true;
      lane.skip = 0;
      lane.misses = 0;
    }
    // Stage lines are `_line`, the values, the hash: a key column's field is its index + 1.
    this.keyFields = t.hashKey ? [t.columns.length + 1] : t.keyIndexes.map((i) => i + 1);

    const all = [...t.names, HASH_COLUMN];
    const keyList = t.key.map(q).join(", ");
    const setList = [...t.names.filter((n) => !t.key.includes(n)), HASH_COLUMN, RUN_ID_COLUMN, LOADED_AT_COLUMN]
      .map((n) => `${q(n)} = excluded.${q(n)}`)
      .join(", ");
    const conflict = t.hashKey
      ? `on conflict (${q(HASH_COLUMN)}) do nothing`
      : `on conflict (${keyList}) do update set ${setList} where ${qt}.${q(HASH_COLUMN)} is distinct from excluded.${q(HASH_COLUMN)}`;
    this.directCopySql = `copy ${qt} (${[...all, RUN_ID_COLUMN, LOADED_AT_COLUMN].map(q).join(", ")}) from stdin`;
    this.directBinarySql = `${this.directCopySql} with (format binary)`;
    this.stagingBinarySql = `copy pg_temp.${q(this.staging)} from stdin with (format binary)`;
    this.stagingEncoder = compileBinaryEncoder(t.columns, { ordinal: true });
    this.upsertSql =
      `insert into ${qt} (${[...all, RUN_ID_COLUMN, LOADED_AT_COLUMN].map(q).join(", ")}) ` +
      `select distinct on (${keyList}) ${all.map(q).join(", ")}, $1::text, now() from pg_temp.${q(this.staging)} ` +
      `order by ${keyList}, "_sluice_ordinal" desc ${conflict}`;
  }

  private async checkExisting(c: pg.Client, t: CheckedTarget, oid: number): Promise<void> {
    const cols = await c.query<{ name: string; type: string; notnull: boolean; hasdef: boolean }>(
      `select attname as name, format_type(atttypid, atttypmod) as type, attnotnull as notnull, atthasdef or attidentity <> '' or attgenerated <> '' as hasdef
         from pg_attribute where attrelid = $1 and attnum > 0 and not attisdropped order by attnum`,
      [oid],
    );
    const byName = new Map(cols.rows.map((r) => [r.name, r]));
    const fail = (why: string) =>
      new SluiceError("BAD_CONFIG", `Destination ${this.display}: existing table ${t.table} ${why}; Sluice does not alter existing tables.`, {
        details: { table: t.table },
      });
    const expect: [string, string, (found: string) => boolean][] = t.columns.map((col) => [col.name, postgresType(col), (f: string) => compatible(col, f)]);
    expect.push(
      [HASH_COLUMN, "text", (f) => f === "text"],
      [RUN_ID_COLUMN, "text", (f) => f === "text"],
      [LOADED_AT_COLUMN, "timestamp with time zone", (f) => f === "timestamp with time zone"],
    );
    for (const [name, type, ok] of expect) {
      const found = byName.get(name);
      if (!found) throw fail(`has no column ${name} (expected ${type})`);
      if (!ok(found.type)) throw fail(`column ${name} has type ${found.type}, expected ${type}`);
    }
    const wanted = new Set(expect.map((e) => e[0]));
    for (const r of cols.rows) {
      if (!wanted.has(r.name) && r.notnull && !r.hasdef) throw fail(`has column ${r.name}, which is NOT NULL without a default`);
    }
    const idx = await c.query<{ cols: string[] }>(
      `select array(select a.attname::text from unnest(i.indkey) k join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k) as cols
         from pg_index i where i.indrelid = $1 and i.indisunique and i.indpred is null and i.indexprs is null`,
      [oid],
    );
    const key = [...t.key].sort().join("\0");
    if (!idx.rows.some((r) => [...r.cols].sort().join("\0") === key)) throw fail(`has no primary key or unique index on (${t.key.join(", ")})`);
  }

  private async ensureStaging(c: pg.Client, t: CheckedTarget, lane: Lane = this.lanes[0]!): Promise<void> {
    if (lane.stagingReady) return;
    const cols = t.columns.map((col) => `${q(col.name)} ${postgresType(col)}`);
    await c.query(
      `create temp table if not exists ${q(this.staging)} ("_sluice_ordinal" integer not null, ${cols.join(", ")}, ${q(HASH_COLUMN)} text not null) on commit delete rows`,
    );
    lane.stagingReady = true;
  }

  async write(rows: TypedRow[], ctx: WriteContext): Promise<WriteCounts> {
    const t = this.requireTarget();
    if (rows.length === 0) return { stored: 0, duplicate: 0 };
    // Values, hashes and keys once, in JS: a null key is BAD_INPUT before the database sees it.
    const batch = prepareBatch(t, rows, this.display);
    const lane = this.lanes[0]!;
    const c = await this.connection(lane);
    let inTx = false;
    try {
      await this.ensureStaging(c, t, lane);
      await c.query("begin");
      inTx = true;
      if (lane.direct && batch.keep.length === rows.length) {
        // Fast path: every key in the batch is distinct; if none is in the table yet, COPY straight
        // into it. A unique violation rolls back to the savepoint and takes the staging path.
        await c.query("savepoint sluice_direct");
        try {
          await this.copyRows(c, this.directCopySql, batch, false, `\t${copyText(ctx.runId)}\t${new Date().toISOString()}`);
          await c.query("commit");
          inTx = false;
          return { stored: rows.length, duplicate: 0 };
        } catch (err) {
          if ((err as { code?: string }).code !== "23505") throw err;
          await c.query("rollback to savepoint sluice_direct");
          lane.direct = false;
        }
      }
      await this.copyRows(c, `copy pg_temp.${q(this.staging)} from stdin`, batch, true, "");
      const r = await c.query(this.upsertSql, [ctx.runId]);
      await c.query("commit");
      inTx = false;
      const stored = r.rowCount ?? 0;
      // Try the fast path again once a batch turns out to be all new keys.
      if (stored === rows.length) lane.direct = true;
      return { stored, duplicate: rows.length - stored };
    } catch (err) {
      if (inTx) await c.query("rollback").catch(() => undefined);
      throw this.fail(err, `writing to table ${t.table}`);
    }
  }

  /**
   * Rows staged by a conversion step, encoded as binary COPY (pg-binary.ts). A batch big enough
   * is split by key over the destination's connections and written in parallel, one transaction
   * per connection: rows with the same key always share a connection, in their order, so the last
   * one still wins; on 2 cores two concurrent COPYs loaded 300k rows in 0.60–0.68 s where one
   * took 0.85–0.90 s. Each part takes the same two paths as `write`: straight into the target
   * under a savepoint while every key is new, else through the staging table and one upsert.
   * The stage's content hashes are used as they are.
   */
  async writeStaged(chunk: StageChunk, ctx: WriteContext): Promise<WriteCounts> {
    const t = this.requireTarget();
    if (chunk.rows === 0) return { stored: 0, duplicate: 0 };
    const parts =
      this.lanes.length === 1 || chunk.rows < PARALLEL_MIN_ROWS
        ? [{ starts: undefined, rows: chunk.rows }]
        : partitionLines(chunk, this.keyFields, this.lanes.length);
    // Encoded now, written when the lane is free: a caller may hand over the next batch while
    // this one is in the database, so this process encodes while the server stores.
    const loadedAt = new Date();
    const results = await Promise.allSettled(
      parts.map((p, i) => {
        if (p.rows === 0) return Promise.resolve({ stored: 0, duplicate: 0 });
        const lane = this.lanes[i]!;
        const part = { data: chunk.data, rows: p.rows, starts: p.starts };
        const direct = lane.direct ? this.encodeDirect(t, part, ctx, loadedAt) : undefined;
        direct?.catch(() => undefined); // awaited by the lane's write
        const run = lane.tail.then(async () => this.writeLane(lane, t, part, ctx, await direct, loadedAt));
        lane.tail = run.catch(() => undefined);
        return run;
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    // Parts that committed stay committed: a retry finds their rows unchanged (duplicates).
    if (failed) throw failed.reason;
    return results.reduce(
      (a, r) => {
        const v = (r as PromiseFulfilledResult<WriteCounts>).value;
        return { stored: a.stored + v.stored, duplicate: a.duplicate + v.duplicate };
      },
      { stored: 0, duplicate: 0 },
    );
  }

  private encodeDirect(
    t: CheckedTarget,
    part: { data: Buffer; rows: number; starts: Int32Array | undefined },
    ctx: WriteContext,
    loadedAt: Date,
  ): Promise<Buffer[]> {
    return encodeInSlices(compileBinaryEncoder(t.columns, { ordinal: false, meta: { runId: ctx.runId, loadedAt } }), part);
  }

  /** One part on one lane, in one transaction; lanes run their parts one at a time (Lane.tail). */
  private async writeLane(
    lane: Lane,
    t: CheckedTarget,
    part: { data: Buffer; rows: number; starts: Int32Array | undefined },
    ctx: WriteContext,
    direct: Buffer[] | undefined,
    loadedAt: Date,
  ): Promise<WriteCounts> {
    const c = await this.connection(lane);
    let inTx = false;
    try {
      await this.ensureStaging(c, t, lane);
      await c.query("begin");
      inTx = true;
      if (lane.direct) {
        await c.query("savepoint sluice_direct");
        try {
          await this.copyBuffer(c, this.directBinarySql, direct ?? (await this.encodeDirect(t, part, ctx, loadedAt)));
          await c.query("commit");
          inTx = false;
          lane.misses = 0;
          return { stored: part.rows, duplicate: 0 };
        } catch (err) {
          if ((err as { code?: string }).code !== "23505") throw err;
          await c.query("rollback to savepoint sluice_direct");
          lane.direct = false;
          lane.skip = Math.min(32, 2 ** lane.misses);
          lane.misses++;
        }
      }
      await this.copyBuffer(c, this.stagingBinarySql, await encodeInSlices(this.stagingEncoder!, part));
      const r = await c.query(this.upsertSql, [ctx.runId]);
      await c.query("commit");
      inTx = false;
      const stored = r.rowCount ?? 0;
      if (stored === part.rows && --lane.skip <= 0) lane.direct = true;
      return { stored, duplicate: part.rows - stored };
    } catch (err) {
      if (inTx) await c.query("rollback").catch(() => undefined);
      throw this.fail(err, `writing to table ${t.table}`, lane);
    }
  }

  /** One binary COPY of already-encoded tuples. */
  private async copyBuffer(c: pg.Client, sql: string, tuples: readonly Buffer[]): Promise<void> {
    const stream = c.query(copyStreams.from(sql));
    const done = new Promise<void>((resolve, reject) => {
      stream.on("finish", resolve);
      stream.on("error", reject);
    });
    done.catch(() => undefined);
    stream.write(BINARY_HEADER);
    for (const t of tuples) stream.write(t);
    stream.end(BINARY_TRAILER);
    await done;
  }

  /** Stream the batch with COPY (text format): [ordinal,] values, hash [, run id, loaded at]. */
  private async copyRows(c: pg.Client, sql: string, batch: PreparedBatch, ordinal: boolean, suffix: string): Promise<void> {
    const stream = c.query(copyStreams.from(sql));
    const done = new Promise<void>((resolve, reject) => {
      stream.on("finish", resolve);
      stream.on("error", reject);
    });
    // Keep the promise from being an unhandled rejection while we are still writing.
    done.catch(() => undefined);
    let failed: unknown;
    stream.once("error", (e) => (failed = e));
    try {
      let chunk = "";
      const { values, hashes } = batch;
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        let line = ordinal ? String(i) + "\t" : "";
        for (let k = 0; k < v.length; k++) {
          const x = v[k];
          line += x === null ? "\\N\t" : x === true ? "t\t" : x === false ? "f\t" : copyText(x!) + "\t";
        }
        chunk += line + hashes[i] + suffix + "\n";
        if (chunk.length >= 1 << 16) {
          if (failed) throw failed;
          const ok = stream.write(chunk);
          chunk = "";
          if (!ok) await drained(stream);
        }
      }
      if (failed) throw failed;
      if (chunk.length > 0) stream.write(chunk);
    } catch (err) {
      // CopyFail: the server ends the COPY so the connection is usable for the rollback.
      if (!failed) {
        stream.destroy(err as Error);
        await done.catch(() => undefined);
      }
      throw err;
    }
    stream.end();
    await done;
  }

  async writeQuarantine(records: QuarantinedRecord[], ctx: WriteContext): Promise<void> {
    const t = this.requireTarget();
    if (records.length === 0) return;
    const runIds: string[] = [],
      steps: string[] = [],
      sources: string[] = [],
      lines: string[] = [],
      reasons: string[] = [],
      recs: string[] = [];
    const seen = new Set<string>();
    for (const r of records) {
      const step = r.step || ctx.step;
      const k = canonicalText([step, r.source, String(r.line)]);
      if (seen.has(k)) continue; // ON CONFLICT cannot touch the same row twice in one statement
      seen.add(k);
      runIds.push(ctx.runId);
      steps.push(step);
      sources.push(r.source);
      lines.push(String(r.line));
      // jsonb cannot hold \u0000 (nor can text): it becomes U+FFFD.
      reasons.push(jsonText(r.reasons ?? []).replace(/\\u0000/g, "\\ufffd"));
      recs.push(jsonText(r.record).replace(/\\u0000/g, "\\ufffd"));
    }
    await this.run(
      `writing to table ${t.table}${QUARANTINE_SUFFIX}`,
      `insert into ${this.quarantine} (run_id, step, source, line, reasons, record)
       select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::jsonb[])
       on conflict (run_id, step, source, line) do nothing`,
      [runIds, steps, sources, lines, reasons, recs],
    );
  }

  async count(): Promise<number> {
    this.requireTarget();
    const r = await this.run<{ n: string }>("counting rows", `select count(*) as n from ${this.qualified}`);
    return Number(r.rows[0]!.n);
  }

  async close(): Promise<void> {
    const clients = this.lanes.map((l) => l.client);
    for (const l of this.lanes) l.client = undefined;
    await Promise.all(clients.map((c) => c?.end().catch(() => undefined)));
  }

  private requireTarget(): CheckedTarget {
    if (!this.target) throw new SluiceError("INTERNAL", `Destination ${this.display}: prepare() must be called before writing.`, { retryable: false });
    return this.target;
  }
}

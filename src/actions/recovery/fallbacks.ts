/**
 * data-scheduler/discover_fallback_sources: probe the primary and every declared fallback, keep
 * the usable ones in rank order, and say why each other one was left out.
 *
 * Every candidate is read for real (a sample: the first pages of an HTTP API, the first records
 * of a file, the first rows of a table plus an aggregate for its key range and newest
 * timestamp), because a source that answers a HEAD but serves yesterday's data, or renamed a
 * column, would poison the recovery. Checks, in order, each rejecting with a reason of the
 * contract's vocabulary:
 * - `circuit_open`: the source's breaker (ctx.state namespace `circuit-breaker`, key = the source
 *   without credentials) is open; it is not asked at all;
 * - `unauthorized` (HTTP 401/403, PostgreSQL SQLSTATE 28…) and `unreachable` (anything else
 *   that stops the read: refused, 5xx, no such file);
 * - `no_coverage`: it answered with no records;
 * - `schema_mismatch`: a required expected column is missing (a likely rename is named) or holds
 *   values of another type. Expected columns: the `schema` file, else the destination table's
 *   columns, else the primary's own;
 * - `stale`: its newest timestamp is further behind the reference than `maxStaleness` (default
 *   1h). The reference is the primary's newest timestamp, else now (when maxStaleness is
 *   given), else the freshest candidate.
 * A decision record of give_up fails the step (RECOVERY_GAVE_UP) before anything is probed.
 * Ranking of the accepted: the primary first — unless the decision record chose
 * switch_to_fallback, then it goes last — then by freshness (newest first, within a minute
 * counts as equal), coverage (more keys first), latency (only a clear difference: twice as slow
 * and 50 ms more) and finally the declared order.
 */
import { writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { SluiceError } from "../../errors.js";
import { parseSourceUrl, quoteTableName, readPostgres } from "../../connectors/index.js";
import { parseDuration } from "../../spec/duration.js";
import type { ActionContext, Outputs } from "../types.js";
import { stepFolder } from "../batch/dataset.js";
import { inferColumns } from "../batch/infer.js";
import type { ColumnTypeName } from "../batch/model.js";
import { loadSchemaRef, type SchemaDocument } from "../batch/schema-file.js";
import { httpAuth, splitPostgresSource } from "../batch/source-checks.js";
import type { KeyRange, SourceCandidate, SourceRanking } from "./contract.js";
import { readTableColumns, resolveDestination, type TableColumn } from "./destination-keys.js";
import { encodeKey, guessCodec, keySetOf, toKeyRanges } from "./gaps.js";
import { readSourceRecords, sourceDisplay, sourceName } from "./source-records.js";
import { readDecisionRecord } from "./strategy.js";

export interface DiscoverInput {
  primary: string;
  fallbacks?: string[] | string;
  maxStaleness?: string;
  timestampColumn?: string;
  key?: string[] | string;
  decision?: string;
  schema?: SchemaDocument | string | null;
  destination?: string;
  table?: string;
  auth?: Parameters<typeof httpAuth>[0];
  recordsPath?: string;
  /** Records sampled per candidate (default 10,000) and HTTP pages at most (default 20). */
  sampleRows?: number;
  samplePages?: number;
}

export const BREAKER_NAMESPACE = "circuit-breaker";
const TIMESTAMP_GUESSES = ["updated_at", "modified_at", "last_modified", "executed_at", "event_time", "created_at", "timestamp", "ts"];
const DEFAULT_TOLERANCE_MS = 3_600_000;

/** A column the recovered rows must have. `any`: only its presence is checked. */
interface Expected {
  name: string;
  type: ColumnTypeName | "any";
  required: boolean;
}

/** What reading one candidate showed. */
interface Probe {
  candidate: SourceCandidate;
  order: number;
  columns: { name: string; type: ColumnTypeName; nonNull: number }[];
  newestMs: number | null;
  keys: number;
}

export async function discoverFallbackSources(input: DiscoverInput, ctx: ActionContext): Promise<Outputs> {
  const dir = await stepFolder(ctx);
  const primary = input.primary.trim();
  const fallbacks = splitSources(input.fallbacks).filter((s) => s !== primary);
  const key = typeof input.key === "string" ? [input.key] : (input.key ?? []);
  const maxStalenessMs = input.maxStaleness === undefined ? undefined : duration(input.maxStaleness);
  const decision = input.decision ? await readDecisionRecord(input.decision) : undefined;
  // give_up is a decision, not a crash: it ends the recovery here, before any source is asked.
  if (decision?.choice === "give_up")
    throw new SluiceError("RECOVERY_GAVE_UP", `The recovery strategy is give_up, so no source is read: ${decision.why}`, {
      retryable: false,
      details: { decision: input.decision, class: decision.class },
    });
  const primaryLast = decision?.choice === "switch_to_fallback";
  const schema = input.schema == null ? undefined : await loadSchemaRef(input.schema);
  const keyColumn = key[0] ?? (schema?.key?.length === 1 ? schema.key[0] : undefined);

  const probes: Probe[] = [];
  const all = [{ source: primary, role: "primary" as const }, ...fallbacks.map((source) => ({ source, role: "fallback" as const }))];
  for (const [order, c] of all.entries()) probes.push(await probe(c.source, c.role, order, input, keyColumn, ctx));

  // The columns every candidate is held to.
  let expected: Expected[] | undefined;
  let expectedFrom = "";
  if (schema) {
    expected = schema.columns.map((c) => ({ name: c.from ?? c.name, type: c.type, required: c.required === true || (schema.key ?? []).includes(c.name) }));
    expectedFrom = "the schema";
  } else if (input.table) {
    const cols = await readTableColumns(await resolveDestination(input.destination, ctx.home), input.table, ctx.signal);
    if (cols) {
      expected = cols.map((c) => ({ name: c.name, type: typeOfSql(c), required: true }));
      expectedFrom = `table ${input.table}`;
    }
  }
  const primaryProbe = probes[0]!;
  if (!expected && primaryProbe.candidate.accepted && primaryProbe.columns.length > 0) {
    expected = primaryProbe.columns.map((c) => ({ name: c.name, type: c.nonNull > 0 ? c.type : "any", required: true }));
    expectedFrom = "the primary";
  }
  for (const p of probes) {
    if (!p.candidate.accepted || !expected) continue;
    const problem = schemaProblem(expected, p.columns);
    if (problem) reject(p, "schema_mismatch", `against ${expectedFrom}: ${problem}`);
  }

  // Freshness against the primary, else now, else the freshest candidate.
  const tolerance = maxStalenessMs ?? DEFAULT_TOLERANCE_MS;
  const primaryNewest = primaryProbe.candidate.accepted ? primaryProbe.newestMs : null;
  const freshest = Math.max(...probes.filter((p) => p.candidate.accepted && p.newestMs !== null).map((p) => p.newestMs!));
  const reference =
    primaryNewest !== null
      ? { ms: primaryNewest, what: "the primary's newest" }
      : maxStalenessMs !== undefined
        ? { ms: Date.now(), what: "now" }
        : Number.isFinite(freshest)
          ? { ms: freshest, what: "the freshest candidate's newest" }
          : undefined;
  for (const p of probes) {
    if (!p.candidate.accepted || p.candidate.role === "primary" || !reference || p.newestMs === null) continue;
    const behind = reference.ms - p.newestMs;
    if (behind > tolerance)
      reject(
        p,
        "stale",
        `newest ${new Date(p.newestMs).toISOString()} is ${showDuration(behind)} behind ${reference.what} (${new Date(reference.ms).toISOString()}); allowed ${showDuration(tolerance)}`,
      );
  }

  const accepted = probes.filter((p) => p.candidate.accepted).sort((a, b) => compare(a, b, primaryLast));
  accepted.forEach((p, i) => (p.candidate.rank = i + 1));
  const ranking: SourceRanking = {
    kind: "sluice.dev/source-ranking-v1",
    primary: sourceName(primary),
    candidates: [...accepted, ...probes.filter((p) => !p.candidate.accepted)].map((p) => p.candidate),
    decidedAt: new Date().toISOString(),
  };
  const path = join(dir, "sources.json");
  await writeFile(path, JSON.stringify(ranking, null, 2));
  const rejected = probes
    .filter((p) => !p.candidate.accepted)
    .map((p) => ({ source: p.candidate.source, reason: p.candidate.rejectedBecause!, detail: p.candidate.detail ?? "" }));
  for (const r of rejected) ctx.log.warn("source rejected", r);
  if (accepted.length === 0)
    throw new SluiceError("NO_USABLE_SOURCE", `no source can serve the recovery: ${rejected.map((r) => `${r.source} (${r.reason}: ${r.detail})`).join("; ")}`, {
      details: { sources: path, rejected },
    });
  ctx.log.info("sources ranked", { ranked: accepted.map((p) => p.candidate.source) });
  return { sources: path, accepted: accepted.length, ranked: accepted.map((p) => p.candidate.source), rejected };
}

/** The fallbacks as a list: an array, one comma-separated string, or an array of such strings. */
export function splitSources(value: string[] | string | undefined): string[] {
  const items = value === undefined ? [] : Array.isArray(value) ? value : [value];
  const out: string[] = [];
  for (const item of items) for (const s of item.split(",")) if (s.trim() !== "" && !out.includes(s.trim())) out.push(s.trim());
  return out;
}

function reject(p: Probe, reason: NonNullable<SourceCandidate["rejectedBecause"]>, detail: string): void {
  p.candidate.accepted = false;
  p.candidate.rejectedBecause = reason;
  p.candidate.detail = detail;
  p.candidate.rank = null;
}

async function probe(
  source: string,
  role: "primary" | "fallback",
  order: number,
  input: DiscoverInput,
  keyColumn: string | undefined,
  ctx: ActionContext,
): Promise<Probe> {
  let display: string;
  try {
    display = sourceDisplay(source);
  } catch (err) {
    const p: Probe = { candidate: { source, role, rank: null, accepted: false }, order, columns: [], newestMs: null, keys: 0 };
    reject(p, "unreachable", (err as Error).message);
    return p;
  }
  const p: Probe = { candidate: { source: sourceName(source), role, rank: null, accepted: true }, order, columns: [], newestMs: null, keys: 0 };
  const breaker = await ctx.state.get(BREAKER_NAMESPACE, display);
  if ((breaker?.value as { state?: string } | undefined)?.state === "open") {
    reject(p, "circuit_open", `its circuit breaker is open (since ${breaker!.updatedAt}); it is not probed`);
    return p;
  }
  const started = performance.now();
  const records: Record<string, unknown>[] = [];
  let partial = false;
  try {
    for await (const b of readSourceRecords(source, {
      signal: ctx.signal,
      ...(input.auth ? { auth: httpAuth(input.auth) } : {}),
      ...(input.recordsPath ? { recordsPath: input.recordsPath } : {}),
      maxPages: input.samplePages ?? 20,
      stopAtMaxPages: true,
      maxRetries: 1,
      timeoutMs: 10_000,
      limit: input.sampleRows ?? 10_000,
    })) {
      for (const r of b.records) records.push(r);
      if (b.pagesLeft) partial = true;
    }
  } catch (err) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    p.candidate.latencyMs = elapsed(started);
    const e = err as SluiceError;
    const status = Number(e.details?.status);
    const sqlstate = String(e.details?.code ?? "");
    if (status === 401 || status === 403 || sqlstate.startsWith("28")) reject(p, "unauthorized", e.message);
    else reject(p, "unreachable", e.message);
    return p;
  }
  p.candidate.latencyMs = elapsed(started);
  if (records.length >= (input.sampleRows ?? 10_000)) partial = true;
  if (records.length === 0) {
    reject(p, "no_coverage", "it answered with no records");
    return p;
  }
  const names = [...new Set(records.flatMap((r) => Object.keys(r)))];
  p.columns = inferColumns(names, records).map((c) => ({ name: c.name, type: c.type, nonNull: c.nonNull }));
  p.candidate.schemaFingerprint = fingerprint(p.columns);
  const tsColumn = input.timestampColumn ?? TIMESTAMP_GUESSES.find((t) => names.includes(t));
  // A table's newest timestamp and key range are one cheap aggregate; a sample says less.
  const src = parseSourceUrl(source);
  const aggregate = src.kind === "postgres" ? await pgAggregate(source, keyColumn, tsColumn, names, ctx.signal) : undefined;
  p.newestMs = aggregate?.newestMs ?? (tsColumn ? newest(records.map((r) => r[tsColumn])) : null);
  p.candidate.newestTimestamp = p.newestMs === null ? null : new Date(p.newestMs).toISOString();
  if (keyColumn && names.includes(keyColumn)) {
    if (aggregate?.coverage) {
      p.candidate.coverage = aggregate.coverage;
      p.keys = aggregate.rows;
    } else {
      const guess = guessCodec();
      for (const r of records) guess.see(r[keyColumn]);
      const codec = guess.codec();
      const keys = records.map((r) => encodeKey(codec, r[keyColumn])).filter((k): k is number | string => k !== undefined);
      p.keys = new Set(keys).size;
      // Opaque keys make one range each: a list of thousands says nothing; the count is kept.
      if (codec.kind !== "opaque") p.candidate.coverage = toKeyRanges(keySetOf(codec, keys));
    }
  }
  if (partial) p.candidate.detail = `sampled ${records.length} records; the source has more`;
  return p;
}

async function pgAggregate(
  source: string,
  keyColumn: string | undefined,
  tsColumn: string | undefined,
  names: string[],
  signal: AbortSignal,
): Promise<{ newestMs: number | null; coverage?: KeyRange[]; rows: number } | undefined> {
  const src = parseSourceUrl(source);
  if (src.kind !== "postgres") return undefined;
  const { url, table } = splitPostgresSource(src.url);
  if (!table) return undefined;
  const q = (n: string) => `"${n.replace(/"/g, '""')}"`;
  const k = keyColumn && names.includes(keyColumn) ? q(keyColumn) : undefined;
  const t = tsColumn && names.includes(tsColumn) ? q(tsColumn) : undefined;
  const sql = `select count(*)::text as n${k ? `, min(${k})::text as lo, max(${k})::text as hi` : ""}${t ? `, max(${t}) as newest` : ""} from ${quoteTableName(table)}`;
  for await (const rows of readPostgres({ url, query: sql }, { signal })) {
    const r = rows[0] ?? {};
    const newestMs = r.newest == null ? null : Date.parse(String(r.newest));
    const lo = r.lo == null ? undefined : String(r.lo);
    const hi = r.hi == null ? undefined : String(r.hi);
    return {
      newestMs: Number.isFinite(newestMs) ? newestMs : null,
      rows: Number(r.n ?? 0),
      ...(lo !== undefined && hi !== undefined ? { coverage: [{ from: /^-?\d+$/.test(lo) ? Number(lo) : lo, to: /^-?\d+$/.test(hi) ? Number(hi) : hi }] } : {}),
    };
  }
  return undefined;
}

/** Why a candidate's columns do not fit, or undefined when they do. */
export function schemaProblem(expected: readonly Expected[], found: readonly { name: string; type: ColumnTypeName; nonNull: number }[]): string | undefined {
  const byName = new Map(found.map((c) => [c.name, c]));
  const wanted = new Set(expected.map((e) => e.name));
  const extras = found.filter((c) => !wanted.has(c.name));
  const problems: string[] = [];
  for (const e of expected) {
    const c = byName.get(e.name);
    if (!c) {
      if (!e.required) continue;
      const renamed =
        extras.find((x) => similar(x.name, e.name) && fits(e.type, x)) ?? (extras.length === 1 && fits(e.type, extras[0]!) ? extras[0] : undefined);
      problems.push(`column ${e.name} is missing${renamed ? ` (renamed to ${renamed.name}?)` : ""}`);
    } else if (!fits(e.type, c)) problems.push(`column ${e.name} holds ${c.type} values, expected ${e.type}`);
  }
  return problems.length ? problems.join("; ") : undefined;
}

function fits(expected: ColumnTypeName | "any", c: { type: ColumnTypeName; nonNull: number }): boolean {
  if (expected === "any" || expected === "string" || c.nonNull === 0 || expected === c.type) return true;
  if (expected === "decimal") return c.type === "integer";
  if (expected === "timestamp") return c.type === "date";
  return false;
}

function similar(a: string, b: string): boolean {
  const n = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, "");
  const x = n(a);
  const y = n(b);
  return x.includes(y) || y.includes(x) || (x.length > 2 && y.length > 2 && x.slice(0, 3) === y.slice(0, 3));
}

/** A Sluice type from a destination column's SQL type (what the table can hold, loosely). */
export function typeOfSql(c: TableColumn): ColumnTypeName | "any" {
  const t = c.sqlType.toLowerCase();
  if (/^(integer|bigint|smallint|int)/.test(t)) return "integer";
  if (t === "real" || t === "numeric" || t.startsWith("double")) return "decimal";
  if (t === "boolean") return "boolean";
  if (t.startsWith("timestamp")) return "timestamp";
  if (t === "date") return "date";
  return "any";
}

function fingerprint(columns: readonly { name: string; type: string }[]): string {
  const text = columns.map((c) => `${c.name}:${c.type}`).join(",");
  return `sha256:${createHash("sha256").update(text).digest("hex").slice(0, 16)} ${text}`;
}

function newest(values: readonly unknown[]): number | null {
  let best: number | null = null;
  for (const v of values) {
    if (typeof v !== "string" || !/^\d{4}-\d{2}-\d{2}/.test(v)) continue;
    const ms = Date.parse(v);
    if (Number.isFinite(ms) && (best === null || ms > best)) best = ms;
  }
  return best;
}

function compare(a: Probe, b: Probe, primaryLast: boolean): number {
  const role = (p: Probe) => (p.candidate.role === "primary" ? (primaryLast ? 1 : -1) : 0);
  if (role(a) !== role(b)) return role(a) - role(b);
  const fresh = (p: Probe) => (p.newestMs === null ? -Infinity : Math.floor(p.newestMs / 60_000));
  if (fresh(a) !== fresh(b)) return fresh(b) - fresh(a);
  if (a.keys !== b.keys) return b.keys - a.keys;
  const la = a.candidate.latencyMs ?? 0;
  const lb = b.candidate.latencyMs ?? 0;
  if (Math.max(la, lb) > 2 * Math.min(la, lb) && Math.abs(la - lb) > 50) return la - lb;
  return a.order - b.order;
}

function duration(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined)
    throw new SluiceError("BAD_INPUT", `maxStaleness ${JSON.stringify(text)} is not a duration such as 30m, 6h or 2d`, { retryable: false });
  return ms;
}

function showDuration(ms: number): string {
  const h = ms / 3_600_000;
  if (h >= 48) return `${Math.round(h / 2.4) / 10}d`;
  if (h >= 1) return `${Math.round(h * 10) / 10}h`;
  return `${Math.round(ms / 60_000)}m`;
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

/**
 * data-collector/reconstruct_from_multiple_sources: rebuild exactly the missing rows from the
 * ranked sources, with the origin of every row and a report of every disagreement.
 *
 * 1. The gap ledger (gaps.ts): the expected domain — a declared `range`, else the primary's page
 *    manifest (`{ pages: [{page,url,rows,firstKey,lastKey}], complete, next }`; when incomplete,
 *    keys past its last page count as expected too), else the union of the keys the sources
 *    hold — minus the keys the destination table holds. Written as `gap-ledger-before.json`.
 * 2. First the pages the primary's failed collection stored (the manifest's `file`s; whole pages
 *    only, never asked for again), unless discovery rejected the primary's data (schema_mismatch,
 *    stale, no_coverage). Then the sources of the ranking, in rank order, read for the gaps
 *    still unserved: a PostgreSQL source is queried for the missing ranges; an HTTP source with
 *    the primary's path (the same API) resumes at the manifest's `next` when every unserved gap
 *    lies past the pages the primary read, instead of walking from page 1; files are read whole
 *    and filtered. A source that fails mid-read keeps the rows it gave and the next one goes on
 *    (recorded in `sourceErrors`). A failing primary ranked after the fallbacks is only asked
 *    when they left keys missing. With `crossCheck` every fallback is read even when the gaps
 *    are filled, so that disagreements are found.
 *    The decision record (`decision`) changes what happens: wait_retry_after sleeps until the
 *    decision's time plus its wait, then reads the primary first, and `crossCheck` defaults to
 *    false (a fallback is the spare, not a second opinion); any strategy but switch_to_fallback
 *    reads the primary first; switch_to_fallback keeps discovery's order (primary last). The
 *    outputs' `strategy.delivered` says whether the chosen way brought the data itself (the
 *    bandit's outcome), not whether a spare source saved the recovery.
 * 3. Merge by policy (merge-records.ts) into the conflict report `conflicts.json`.
 * 4. The dataset: raw NDJSON, one part per winning source, each record with a `_sluice_source`
 *    field holding its position (`http://host/api?page=4#12`, `/data/b.csv#17`,
 *    `postgres://host/db?table=t#3`).
 *
 * WHY raw NDJSON and not a typed stage: the sources differ in kind (CSV strings, JSON numbers,
 * PostgreSQL values), and typing them is the conversion step's one job, with its quarantine
 * and reasons; validate_and_store_recovered_data runs exactly that code over this dataset. The
 * provenance travels in the rows themselves, so it cannot drift from them, and the converter
 * leaves the unknown `_sluice_source` field out of the typed rows.
 *
 * Durable: the step folder is cleared first and everything is derived from the sources and the
 * destination, so a retried or resumed attempt (after a kill -9) writes the same files again.
 * Memory holds the missing rows (not the sources) and the destination's keys.
 */
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SluiceError } from "../../errors.js";
import type { ActionContext, Outputs } from "../types.js";
import { stepFolder, writeDataset, type DatasetPart } from "../batch/dataset.js";
import { httpAuth } from "../batch/source-checks.js";
import type { ConflictReport, DecisionRecord, GapLedger, KeyRange, SourceCandidate, SourceRanking, Strategy } from "./contract.js";
import { readHeldKeys, resolveDestination } from "./destination-keys.js";
import {
  compositeKey,
  encodeKey,
  fromKeyRanges,
  gapLedger,
  guessCodec,
  has,
  intersect,
  isEmpty,
  keySetOf,
  manifestRanges,
  minus,
  parseDeclaredRange,
  showKey,
  size,
  union,
  type KeyCodec,
  type KeySet,
  type PageManifest,
} from "./gaps.js";
import { canonical, keyTextOf, mergeState, offer, PROVENANCE_FIELD } from "./merge-records.js";
import { readSourceRecords, readStoredPages, type SourceBatch, type SourceReadOptions } from "./source-records.js";
import { sourceKey } from "./source-key.js";
import { readDecisionRecord } from "./strategy.js";

export interface ReconstructInput {
  sources: string;
  key: string[] | string;
  destination?: string;
  table: string;
  range?: string | number | (string | number)[];
  /** null: none (the failure analysis found no manifest of the failed run). */
  manifest?: string | PageManifest | null;
  policy?: "priority" | "freshest";
  timestampColumn?: string;
  decision?: string;
  crossCheck?: boolean;
  auth?: Parameters<typeof httpAuth>[0];
  recordsPath?: string;
}

/** What the dataset's `meta.recovery` tells the storing step. */
export interface RecoveryMeta {
  key: string[];
  codec: KeyCodec;
  domain: { from: GapLedger["domain"]["from"]; ranges: KeyRange[] };
  gapLedgerBefore: string;
  conflictReport: string;
  bySource: Record<string, number>;
  destination: string;
  table: string;
  /** When reconstruction began: the recovery's time, for the strategy's reward. */
  startedAt?: string;
  /** The decided strategy and whether it brought the data itself (see delivered()). */
  strategy?: { choice: Strategy; delivered: boolean; decision: string };
}

const PG_RANGES_IN_QUERY = 200;
const PG_KEYS_IN_QUERY = 1_000;

export async function reconstructFromMultipleSources(input: ReconstructInput, ctx: ActionContext): Promise<Outputs> {
  const dir = await stepFolder(ctx);
  const ranking = await readRanking(input.sources);
  const key = typeof input.key === "string" ? [input.key] : input.key;
  if (!key?.length) throw new SluiceError("BAD_INPUT", "reconstruction needs the key columns (key: [id])", { retryable: false });
  const single = key.length === 1;
  const policy = input.policy ?? "priority";
  if (policy === "freshest" && !input.timestampColumn)
    throw new SluiceError("BAD_INPUT", "policy freshest needs timestampColumn: the column whose newest value wins", { retryable: false });
  const dest = await resolveDestination(input.destination, ctx.home);
  const heldRows = await readHeldKeys(dest, input.table, key, ctx.signal);
  const heldTexts = new Set(heldRows.map((r) => (single ? canonical(r[0])! : compositeKey(r.map(canonical)))));
  const manifest = input.manifest == null ? undefined : await readManifest(input.manifest);
  const declared = input.range === undefined ? undefined : parseDeclaredRange(input.range);
  if (declared && !single) throw new SluiceError("BAD_INPUT", "a declared range needs a single key column", { retryable: false });
  const pageRanges = manifest && single ? manifestRanges(manifest) : [];

  // The key's shape, from everything known before reading (source keys join it for a sources domain).
  const guess = guessCodec();
  for (const r of [...(declared ?? []), ...pageRanges]) (guess.see(r.from), guess.see(r.to));
  if (single) for (const r of heldRows) guess.see(r[0]);
  let codec: KeyCodec = single ? guess.codec() : { kind: "opaque" };
  const encode = (values: unknown[]) => (single ? encodeKey(codec, values[0]) : compositeKey(values.map(canonical)));
  const held = (): KeySet =>
    keySetOf(
      codec,
      heldRows.map(encode).filter((k): k is number | string => k !== undefined),
    );

  // The domain: closed (declared, complete manifest), open-ended past the manifest's last page, or the sources'.
  const from: GapLedger["domain"]["from"] = declared ? "declared" : pageRanges.length > 0 && codec.kind !== "opaque" ? "manifest" : "sources";
  const pagesSet = pageRanges.length > 0 && codec.kind !== "opaque" ? fromKeyRanges(codec, pageRanges, "the manifest") : undefined;
  let domain: KeySet | undefined = from === "declared" ? fromKeyRanges(codec, declared!, "range") : from === "manifest" ? pagesSet : undefined;
  const open = from === "manifest" && manifest?.complete !== true;
  const tailFrom = open && domain!.ranges.length ? domain!.ranges[domain!.ranges.length - 1]![1] + 1 : undefined;
  let gaps = domain ? minus(domain, held()) : undefined;
  const closed = from === "declared" || (from === "manifest" && !open);
  const sourceKeys: unknown[][] = []; // for a sources domain (all keys) or an open manifest (keys past its end)

  const wanted = (values: unknown[], text: string): boolean => {
    if (from === "sources") sourceKeys.push(values);
    const e = encode(values);
    if (open && typeof e === "number" && e >= tailFrom!) sourceKeys.push(values);
    if (heldTexts.has(text)) return false;
    if (from === "sources") return true;
    if (e === undefined) return false;
    return has(gaps!, e) || (open && typeof e === "number" && e >= tailFrom!);
  };

  const state = mergeState(policy, input.timestampColumn);
  const decision = input.decision ? await readDecisionRecord(input.decision) : undefined;
  const choice = decision?.choice;
  const primaryCand = ranking.candidates.find((c) => c.role === "primary");
  const ranked = ranking.candidates.filter((c) => c.accepted).sort((a, b) => (a.rank ?? 0) - (b.rank ?? 0));
  // Waiting for or retrying the primary means asking it first, whatever the ranking says.
  const accepted =
    choice && choice !== "switch_to_fallback" ? [...ranked.filter((c) => c.role === "primary"), ...ranked.filter((c) => c.role !== "primary")] : ranked;
  const stored = storedPagesOf(manifest, primaryCand, ranking);
  if (accepted.length === 0 && !stored.pages) throw new SluiceError("NO_USABLE_SOURCE", `the ranking ${input.sources} accepts no source`, { retryable: false });
  if (stored.why) ctx.log.warn("the primary's stored pages are not used", { why: stored.why });
  // Every fallback is read to find disagreements, unless the strategy is to wait for the primary:
  // then a fallback is only the spare for what the primary does not serve after the wait.
  const crossCheck = input.crossCheck ?? choice !== "wait_retry_after";
  const bySource: Record<string, number> = {};
  const read: { source: string; role: SourceCandidate["role"] | "stored"; records: number; kept: number; start?: string; complete: boolean }[] = [];
  const skipped: { source: string; why: string }[] = [];
  const sourceErrors: { source: string; code: string; message: string }[] = [];
  let completeReads = 0;
  const started = new Date();

  // The gaps not served yet: the gaps minus the keys kept so far.
  const unserved = (): KeySet | undefined => {
    if (!gaps) return undefined;
    const kept: (number | string)[] = [];
    for (const c of state.winners.values()) {
      const e = encode(key.map((k) => c.record[k]));
      if (e !== undefined) kept.push(e);
    }
    return minus(gaps, keySetOf(codec, kept));
  };
  // Nothing more is known to be missing: every gap of a closed domain is served; for an open
  // one, a source was read to its end and the gaps inside the primary's pages are served.
  const satisfied = (): boolean => {
    const left = unserved();
    return closed ? isEmpty(left!) : completeReads > 0 && (left === undefined || isEmpty(left));
  };

  const take = async (source: string, entry: (typeof read)[number], batches: AsyncIterable<SourceBatch>): Promise<void> => {
    read.push(entry);
    try {
      for await (const b of batches) {
        b.records.forEach((record, i) => {
          const values = key.map((k) => record[k]);
          const text = keyTextOf(record, key);
          entry.records++;
          if (text === undefined || !wanted(values, text)) return;
          if (offer(state, text, key, { record, source, provenance: b.provenance[i]!, ref: b.refs[i]! })) entry.kept++;
        });
        ctx.progress({ rows: state.winners.size });
      }
      entry.complete = true;
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const e = err as SluiceError;
      sourceErrors.push({ source: entry.source, code: e.code ?? "ACTION_FAILED", message: e.message });
      ctx.log.warn("source failed during reconstruction; the next one goes on", { source: entry.source, error: e.message, rowsKept: entry.kept });
    }
  };

  // First what the primary served before it failed: its stored pages, never asked for again.
  if (stored.pages && !(closed && size(gaps!) === 0)) {
    const name = primaryCand!.source;
    await take(
      name,
      { source: `${name} (pages stored by the failed run)`, role: "stored", records: 0, kept: 0, complete: false },
      readStoredPages(stored.pages, name, ctx.signal),
    );
  }
  if (choice === "wait_retry_after" && decision?.waitMs) await waitRetryAfter(decision, ctx);

  for (const cand of accepted) {
    if (closed && size(gaps!) === 0) {
      skipped.push({ source: cand.source, why: "nothing is missing" });
      continue;
    }
    const done = satisfied();
    if (done && !(crossCheck && cand.role === "fallback")) {
      skipped.push({ source: cand.source, why: "every gap is filled already" });
      continue;
    }
    if (cand.role === "primary" && cand.rank !== 1 && completeReads > 0 && done) {
      skipped.push({ source: cand.source, why: "the fallbacks served the gaps; the failing primary is not asked again" });
      continue;
    }
    const opts: SourceReadOptions = {
      signal: ctx.signal,
      ...(input.auth ? { auth: httpAuth(input.auth) } : {}),
      ...(input.recordsPath ? { recordsPath: input.recordsPath } : {}),
    };
    const start = httpStart(cand, manifest, ranking, unserved(), pagesSet);
    if (start) opts.start = start;
    const where = closed && single ? pgWhere(cand, key[0]!, codec, unserved()!) : undefined;
    if (where) opts.where = where;
    const entry: (typeof read)[number] = { source: cand.source, role: cand.role, records: 0, kept: 0, complete: false, ...(start ? { start: start.url } : {}) };
    await take(cand.source, entry, readSourceRecords(cand.source, opts));
    if (entry.complete) completeReads++;
  }

  // The domain of a sources- or open-manifest ledger is known only now.
  if (!closed) {
    if (from === "sources" && single) {
      const g = guessCodec();
      for (const r of heldRows) g.see(r[0]);
      for (const v of sourceKeys) g.see(v[0]);
      codec = g.codec();
    }
    const keys = keySetOf(
      codec,
      sourceKeys.map(encode).filter((k): k is number | string => k !== undefined),
    );
    domain = domain ? union(domain, keys) : keys;
  }
  const { ledger, gaps: finalGaps } = gapLedger(key, from, domain!, held());
  gaps = finalGaps;
  const gapLedgerBefore = join(dir, "gap-ledger-before.json");
  await writeFile(gapLedgerBefore, JSON.stringify(ledger, null, 2));

  const report: ConflictReport = { kind: "sluice.dev/conflict-report-v1", policy, conflicts: state.conflicts };
  const conflictReport = join(dir, "conflicts.json");
  await writeFile(conflictReport, JSON.stringify(report, null, 2));

  // One NDJSON part per winning source, in rank order, rows in key order.
  const order = (t: string) => {
    const c = state.winners.get(t)!;
    return encode(key.map((k) => c.record[k]));
  };
  const texts = [...state.winners.keys()].sort((a, b) => {
    const x = order(a);
    const y = order(b);
    return typeof x === "number" && typeof y === "number" ? x - y : String(x ?? a).localeCompare(String(y ?? b));
  });
  const parts: DatasetPart[] = [];
  const names = [...new Set([...(stored.pages ? [primaryCand!.source] : []), ...accepted.map((c) => c.source)])];
  for (const [i, name] of names.entries()) {
    const lines: string[] = [];
    for (const t of texts) {
      const c = state.winners.get(t)!;
      if (c.source === name) lines.push(JSON.stringify({ ...c.record, [PROVENANCE_FIELD]: c.ref }));
    }
    if (lines.length === 0) continue;
    bySource[name] = lines.length;
    const path = join(dir, `recovered-${String(i + 1).padStart(2, "0")}.ndjson`);
    const text = lines.join("\n") + "\n";
    await writeFile(path, text);
    parts.push({ path, format: "ndjson", source: name, rows: lines.length, bytes: Buffer.byteLength(text), intermediate: true });
  }
  const strategy = decision ? { choice: decision.choice, delivered: delivered(decision.choice, read, ledger.missing), decision: input.decision! } : undefined;
  const recovery: RecoveryMeta = {
    key,
    codec,
    domain: { from, ranges: ledger.domain.ranges },
    gapLedgerBefore,
    conflictReport,
    bySource,
    destination: dest.display,
    table: input.table,
    startedAt: started.toISOString(),
    ...(strategy ? { strategy } : {}),
  };
  const dataset = await writeDataset(dir, {
    step: ctx.step,
    typed: false,
    parts,
    quarantine: [],
    meta: { source: `recovery of ${input.table}`, recovery, read, skipped, sourceErrors, ...(input.decision ? { decision: input.decision } : {}) },
  });
  const recovered = state.winners.size;
  const unrecovered = Math.max(0, ledger.missing - recovered);
  ctx.log.info("reconstructed", { missing: ledger.missing, recovered, unrecovered, conflicts: state.conflicts.length, bySource });
  return {
    dataset,
    gapLedgerBefore,
    gapsBefore: ledger.gaps,
    missing: ledger.missing,
    recovered,
    unrecovered,
    bySource,
    conflicts: state.conflicts.length,
    conflictReport,
    agreed: state.agreed,
    read,
    skipped,
    sourceErrors,
    ...(strategy ? { strategy } : {}),
  };
}

/**
 * Whether the decided strategy itself brought the data (the bandit learns from this, not from
 * whether a spare source saved the recovery): switch_to_fallback needs a fallback read to its
 * end; waiting for or retrying the primary needs the primary read to its end. Nothing missing
 * needs nothing.
 */
function delivered(choice: Strategy, read: { role: string; complete: boolean }[], missing: number): boolean {
  if (missing === 0 && read.length === 0) return true;
  if (choice === "switch_to_fallback") return read.some((r) => r.role === "fallback" && r.complete);
  if (choice === "give_up") return false;
  // The primary's stored pages alone served everything: its live read was not needed.
  if (!read.some((r) => r.role === "primary") && read.length > 0 && read.every((r) => r.role === "stored" && r.complete)) return true;
  return read.some((r) => r.role === "primary" && r.complete);
}

/** wait_retry_after: sleep until the decision's time plus its wait (a resumed attempt waits only what is left). */
async function waitRetryAfter(decision: DecisionRecord, ctx: ActionContext): Promise<void> {
  const until = Date.parse(decision.decidedAt) + (decision.waitMs ?? 0);
  const ms = Math.max(0, until - Date.now());
  if (ms === 0) return;
  ctx.log.info("waiting out the source's Retry-After before asking it again", { waitMs: ms, decision: decision.choice });
  try {
    await sleep(ms, undefined, { signal: ctx.signal });
  } catch {
    throw ctx.signal.reason ?? new SluiceError("CANCELLED", "the wait for the source's Retry-After was cancelled");
  }
}

/** Discovery rejected the primary for what its data is, not for how it answered: its stored pages are not used either. */
const DATA_REJECTIONS = new Set<SourceCandidate["rejectedBecause"]>(["schema_mismatch", "stale", "no_coverage"]);

/**
 * The pages the primary's failed collection stored (the manifest's `file`s), when they can be
 * used: the manifest is the primary's (the same source, credentials aside), its files are still
 * there, and discovery did not reject the primary's data.
 */
function storedPagesOf(
  manifest: PageManifest | undefined,
  primary: SourceCandidate | undefined,
  ranking: SourceRanking,
): { pages?: { page: number; url: string; file: string }[]; why?: string } {
  const pages = (manifest?.pages ?? []).filter((p): p is typeof p & { file: string } => typeof p.file === "string" && p.file !== "");
  if (!manifest || pages.length === 0) return {};
  if (!primary) return { why: "the ranking has no primary" };
  if (manifest.source !== undefined && sourceKey(manifest.source) !== sourceKey(ranking.primary))
    return { why: `the manifest is of ${manifest.source}, not of the primary ${ranking.primary}` };
  if (!primary.accepted && DATA_REJECTIONS.has(primary.rejectedBecause)) return { why: `discovery rejected the primary's data (${primary.rejectedBecause})` };
  const missing = pages.find((p) => !existsSync(p.file));
  if (missing) return { why: `page ${missing.page}'s file ${missing.file} is gone` };
  return { pages };
}

async function readRanking(path: string): Promise<SourceRanking> {
  try {
    const doc = JSON.parse(await readFile(path, "utf8")) as SourceRanking;
    if (doc.kind !== "sluice.dev/source-ranking-v1") throw new Error("not a source ranking");
    return doc;
  } catch (err) {
    throw new SluiceError(
      "BAD_INPUT",
      `sources ${path} cannot be read as a source ranking (the sources output of discover_fallback_sources): ${(err as Error).message}`,
      {
        retryable: false,
      },
    );
  }
}

export async function readManifest(ref: string | PageManifest): Promise<PageManifest> {
  let doc: unknown = ref;
  if (typeof ref === "string") {
    try {
      doc = JSON.parse(await readFile(ref, "utf8"));
    } catch (err) {
      throw new SluiceError("BAD_INPUT", `manifest ${ref} cannot be read: ${(err as Error).message}`, { retryable: false });
    }
  }
  const m = doc as PageManifest;
  if (!m || !Array.isArray(m.pages))
    throw new SluiceError("BAD_INPUT", "a page manifest needs pages: [{ page, url, rows, firstKey, lastKey }]", { retryable: false });
  return m;
}

/**
 * Where an HTTP source starts: at the manifest's `next` (moved to this source's origin) when it
 * serves the primary's API path and no gap lies inside the pages the primary already read.
 */
function httpStart(
  cand: SourceCandidate,
  manifest: PageManifest | undefined,
  ranking: SourceRanking,
  gaps: KeySet | undefined,
  pagesSet: KeySet | undefined,
): { url: string; page: number } | undefined {
  if (!manifest?.next || !/^https?:\/\//i.test(cand.source) || !pagesSet || !gaps) return undefined;
  if (!isEmpty(intersect(gaps, pagesSet))) return undefined;
  let next: URL;
  let self: URL;
  let primaryPath: string;
  try {
    next = new URL(manifest.next);
    self = new URL(cand.source);
    primaryPath = new URL(manifest.pages[0]?.url ?? ranking.primary).pathname;
  } catch {
    return undefined;
  }
  if (self.pathname !== primaryPath) return undefined;
  const start = new URL(self.href);
  start.pathname = next.pathname;
  for (const [k, v] of next.searchParams) start.searchParams.set(k, v);
  const page = Math.max(0, ...manifest.pages.map((p) => p.page)) + 1;
  return { url: start.href, page };
}

/** A PostgreSQL source asked for the missing keys only (a few ranges or keys; else the whole table is read and filtered). */
function pgWhere(cand: SourceCandidate, column: string, codec: KeyCodec, gaps: KeySet): SourceReadOptions["where"] {
  if (!/^postgres(ql)?:\/\//i.test(cand.source)) return undefined;
  const col = `"${column.replace(/"/g, '""')}"`;
  if (codec.kind !== "opaque") {
    if (gaps.ranges.length === 0 || gaps.ranges.length > PG_RANGES_IN_QUERY) return undefined;
    const params: unknown[] = [];
    const terms = gaps.ranges.map(([a, b]) => {
      params.push(showKey(codec, a), showKey(codec, b));
      return `${col} between $${params.length - 1} and $${params.length}`;
    });
    return { sql: terms.join(" or "), params };
  }
  if (gaps.opaque.size === 0 || gaps.opaque.size > PG_KEYS_IN_QUERY) return undefined;
  return { sql: `${col}::text = any($1::text[])`, params: [[...gaps.opaque]] };
}

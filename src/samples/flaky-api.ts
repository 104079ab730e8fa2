/**
 * A paginated JSON API of trades that fails on purpose, by a script: the fault harness of the
 * recovery workflow's tests and the README walkthrough (`sluice sample flaky-api`). Real HTTP on
 * 127.0.0.1, so what is tested is what a user meets: real sockets closed mid-body, real hangs,
 * real Retry-After headers.
 *
 * What it serves. `GET /trades?page=N[&page_size=M]` answers a JSON array of the trades with ids
 * `(N-1)·M+1 … N·M` (default M = 100, ids 1…1000, so 10 pages), and a
 * `Link: <…/trades?page=N+1>; rel="next"` header on every page but the last. Pages are windows of
 * the id domain, not of what is served: a server restricted to `ids=301-1000` answers pages 1–3
 * with `[]` (and a next link), so a fallback speaking the same API can resume at the primary's
 * `?page=4`. A record is a pure function of its id and the plan (same plan, same bytes):
 *   { trade_id: 17, symbol: "MSFT", price: "117.1234", quantity: 18,
 *     executed_at: "…Z", updated_at: "…Z" }
 * `price` is a decimal string of 4 places (exact, never a float). Timestamps count back from
 * `asOf` (default: the start of the current UTC hour, so two servers started together agree):
 * id N (the newest) is updated at `asOf`, each lower id one second earlier; executed 5 minutes
 * before its update.
 *
 * `GET /_stats` answers `{ requests, pages: { "4": 3, … }, statuses: { "200": 9, "503": 3 },
 * faults: [ { rule, kind, applied } ] }`: tests assert "page 4 was asked for at most a handful of
 * times" from it.
 *
 * The plan: JSON (a FlakyPlan) or a small DSL of clauses separated by `;` or new lines. A clause
 * is either a setting `key=value`, or a fault `kind key=value …`:
 *
 *   records=1000  page-size=100  ids=301-1000  stale-days=2  variant=501-510
 *   fail status=503 pages=4-              pages 4 onwards answer 503, forever
 *   fail status=429 retry-after=2 times=2 the first 2 requests answer 429 with Retry-After: 2
 *   fail status=401                       every request answers 401
 *   hang pages=5 [times=1]                page 5 never answers (the socket stays open)
 *   truncate pages=5 times=1 declare=5000 send=1200
 *                                         Content-Length 5000, the connection closed after 1200 bytes
 *   cut-json pages=6 times=1 [at=0.5]     a complete response whose JSON stops half-way
 *   rename from=price to=px pages=3-      column `price` is called `px` from page 3 on
 *   slow ms=300 [pages=…]                 every matching answer waits 300 ms first (a slow source)
 *
 * `pages=` is `P`, `A-B` or `A-` (default: every page); `times=K` limits a fault to the first K
 * requests it matches (default: forever). The first matching fail/hang/truncate/cut-json applies;
 * every matching rename and slow applies. `stale-days=D` puts every timestamp D days behind;
 * `variant=A-B[,C-D]` changes those ids (price + 1.0000, updated 60 s later): two servers, one
 * with a variant, disagree on exactly those keys.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { SluiceError } from "../errors.js";

export type FaultKind = "fail" | "hang" | "truncate" | "cut-json" | "rename" | "slow";

/** Pages a fault applies to: `to` null means every page from `from` on. */
export interface PageRange {
  from: number;
  to: number | null;
}

export interface IdRange {
  from: number;
  to: number;
}

export interface FlakyFault {
  kind: FaultKind;
  pages?: PageRange;
  /** Apply to the first `times` matching requests only. */
  times?: number;
  /** fail: the status, and the Retry-After header in seconds. */
  status?: number;
  retryAfter?: number;
  /** truncate: the Content-Length announced and the bytes sent before the connection is closed. */
  declare?: number;
  send?: number;
  /** cut-json: where the body stops, as a fraction of its bytes (default 0.5). */
  at?: number;
  /** rename: the column and its new name. */
  from?: string;
  to?: string;
  /** slow: milliseconds before the answer. */
  ms?: number;
}

export interface FlakyPlan {
  /** The id domain is 1…records (default 1000). */
  records?: number;
  pageSize?: number;
  /** Serve only these ids (other ids of a page are left out). */
  ids?: IdRange;
  staleDays?: number;
  variant?: IdRange[];
  faults?: FlakyFault[];
}

export interface FlakyApiOptions {
  /** Default 0: a free port. */
  port?: number;
  host?: string;
  plan?: FlakyPlan | string;
  /** The newest record's updated_at (default: the start of the current UTC hour). */
  asOf?: Date | string;
}

export interface FlakyStats {
  requests: number;
  pages: Record<string, number>;
  statuses: Record<string, number>;
  faults: { rule: number; kind: FaultKind; applied: number }[];
}

export interface FlakyApi {
  /** The trades endpoint, `http://127.0.0.1:PORT/trades`. */
  url: string;
  port: number;
  plan: Required<Pick<FlakyPlan, "records" | "pageSize">> & FlakyPlan;
  stats(): FlakyStats;
  close(): Promise<void>;
}

const SYMBOLS = ["AAPL", "MSFT", "NVDA", "SAP", "ASML", "TSM", "AMZN"];
const DEFAULT_RECORDS = 1000;
const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 10_000;

export async function startFlakyApi(opts: FlakyApiOptions = {}): Promise<FlakyApi> {
  const plan = typeof opts.plan === "string" ? parseFlakyPlan(opts.plan) : checkPlan(opts.plan ?? {});
  const resolved = { ...plan, records: plan.records ?? DEFAULT_RECORDS, pageSize: plan.pageSize ?? DEFAULT_PAGE_SIZE };
  const asOf = asOfTime(opts.asOf);
  const faults = resolved.faults ?? [];
  const applied = faults.map(() => 0);
  const stats = { requests: 0, pages: {} as Record<string, number>, statuses: {} as Record<string, number> };
  const sockets = new Set<Socket>();
  let origin = "";

  const answer = (res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string> = {}) => {
    stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
    res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": String(Buffer.byteLength(body)), ...headers });
    res.end(body);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname === "/_stats") return answer(res, 200, JSON.stringify(snapshot()));
    // A slow source: every matching slow fault adds its delay before the request is served.
    const page = positive(url.searchParams.get("page"), 1);
    let delay = 0;
    faults.forEach((f, i) => {
      if (f.kind === "slow" && inPages(f.pages, page) && (f.times === undefined || applied[i]! < f.times)) {
        applied[i]!++;
        delay += f.ms ?? 0;
      }
    });
    if (delay > 0) {
      const timer = setTimeout(() => serve(req, res, url), delay);
      res.once("close", () => clearTimeout(timer));
      return;
    }
    serve(req, res, url);
  };

  const serve = (_req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (url.pathname !== "/trades" && url.pathname !== "/") return answer(res, 404, JSON.stringify({ error: `no such path ${url.pathname}` }));
    const page = positive(url.searchParams.get("page"), 1);
    const sizeParam = url.searchParams.get("page_size");
    const size = Math.min(positive(sizeParam, resolved.pageSize), MAX_PAGE_SIZE);
    stats.requests++;
    stats.pages[page] = (stats.pages[page] ?? 0) + 1;

    // The first matching response fault, counted against its `times`.
    const matches = (f: FlakyFault, i: number) => inPages(f.pages, page) && (f.times === undefined || applied[i]! < f.times);
    const faultIndex = faults.findIndex((f, i) => f.kind !== "rename" && f.kind !== "slow" && matches(f, i));
    const fault = faultIndex >= 0 ? faults[faultIndex]! : undefined;
    if (fault) applied[faultIndex]!++;
    if (fault?.kind === "fail") {
      const status = fault.status!;
      const headers: Record<string, string> = {};
      if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
      if (status === 401) headers["www-authenticate"] = 'Bearer realm="flaky-api"';
      return answer(res, status, JSON.stringify({ error: `planned failure: HTTP ${status} on page ${page}` }), headers);
    }
    if (fault?.kind === "hang") return; // never answered; close() ends the socket

    const renames: FlakyFault[] = [];
    faults.forEach((f, i) => {
      if (f.kind === "rename" && matches(f, i)) {
        applied[i]!++;
        renames.push(f);
      }
    });
    const last = Math.max(1, Math.ceil(resolved.records / size));
    const rows = pageRecords(resolved, asOf, page, size).map((r) => renamed(r, renames));
    const body = Buffer.from(JSON.stringify(rows));
    const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
    if (page < last) headers["link"] = `<${origin}/trades?page=${page + 1}${sizeParam !== null ? `&page_size=${size}` : ""}>; rel="next"`;

    if (fault?.kind === "truncate") {
      const declared = fault.declare ?? body.length;
      const send = Math.min(fault.send ?? 1200, body.length, Math.max(0, declared - 1));
      stats.statuses[200] = (stats.statuses[200] ?? 0) + 1;
      res.writeHead(200, { ...headers, "content-length": String(declared) });
      // The bytes are flushed, then the connection is closed: the client sees send of declared.
      res.write(body.subarray(0, send), () => res.socket?.destroy());
      return;
    }
    if (fault?.kind === "cut-json") {
      const cut = body.subarray(0, Math.max(1, Math.floor(body.length * (fault.at ?? 0.5))));
      return answer(res, 200, cut, headers);
    }
    return answer(res, 200, body, headers);
  };

  const snapshot = (): FlakyStats => ({
    requests: stats.requests,
    pages: { ...stats.pages },
    statuses: { ...stats.statuses },
    faults: faults.map((f, i) => ({ rule: i, kind: f.kind, applied: applied[i]! })),
  });

  const server = createServer(handle);
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new SluiceError("BAD_CONFIG", `the flaky API cannot listen on ${opts.host ?? "127.0.0.1"}:${opts.port ?? 0} (${err.code ?? err.message}).`)),
    );
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", resolve);
  });
  const port = (server.address() as AddressInfo).port;
  origin = `http://${opts.host ?? "127.0.0.1"}:${port}`;
  return {
    url: `${origin}/trades`,
    port,
    plan: resolved,
    stats: snapshot,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy(); // hung requests included
        server.close(() => resolve());
      }),
  };
}

/** The records of one page: a window of the id domain, less the ids the plan does not serve. */
export function pageRecords(plan: FlakyPlan, asOf: number, page: number, size: number): Record<string, unknown>[] {
  const records = plan.records ?? DEFAULT_RECORDS;
  const out: Record<string, unknown>[] = [];
  const first = (page - 1) * size + 1;
  for (let id = first; id <= Math.min(records, first + size - 1); id++) {
    if (plan.ids && (id < plan.ids.from || id > plan.ids.to)) continue;
    out.push(tradeRecord(id, plan, asOf));
  }
  return out;
}

/** One trade, a pure function of its id and the plan. */
export function tradeRecord(id: number, plan: FlakyPlan, asOf: number): Record<string, unknown> {
  const records = plan.records ?? DEFAULT_RECORDS;
  const varied = (plan.variant ?? []).some((r) => id >= r.from && id <= r.to);
  // Price in 1/10,000 units, formatted with integer arithmetic: always exactly 4 decimals.
  const minor = 1_000_000 + ((id * 7919) % 4_000_000) + (varied ? 10_000 : 0);
  const updated = asOf - (records - id) * 1000 - (plan.staleDays ?? 0) * 86_400_000 + (varied ? 60_000 : 0);
  return {
    trade_id: id,
    symbol: SYMBOLS[id % SYMBOLS.length],
    price: `${Math.floor(minor / 10_000)}.${String(minor % 10_000).padStart(4, "0")}`,
    quantity: 1 + ((id * 31) % 500),
    executed_at: new Date(updated - 300_000).toISOString(),
    updated_at: new Date(updated).toISOString(),
  };
}

function renamed(r: Record<string, unknown>, renames: FlakyFault[]): Record<string, unknown> {
  if (renames.length === 0) return r;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) out[renames.find((f) => f.from === k)?.to ?? k] = v;
  return out;
}

function inPages(range: PageRange | undefined, page: number): boolean {
  return range === undefined || (page >= range.from && (range.to === null || page <= range.to));
}

function positive(text: string | null, fallback: number): number {
  const n = Number(text);
  return text !== null && Number.isSafeInteger(n) && n >= 1 ? n : fallback;
}

function asOfTime(v: Date | string | undefined): number {
  if (v === undefined) return Math.floor(Date.now() / 3_600_000) * 3_600_000;
  const t = typeof v === "string" ? Date.parse(v) : v.getTime();
  if (Number.isNaN(t)) throw new SluiceError("BAD_CONFIG", `asOf ${String(v)} is not a timestamp; write it as ISO-8601, e.g. 2026-01-02T00:00:00Z.`);
  return t;
}

// ---------------------------------------------------------------------------------------------
// The plan: DSL or JSON, checked into one FlakyPlan.

const KINDS: readonly FaultKind[] = ["fail", "hang", "truncate", "cut-json", "rename", "slow"];
const FAULT_KEYS: Record<FaultKind, readonly string[]> = {
  fail: ["status", "retry-after", "pages", "times"],
  hang: ["pages", "times"],
  truncate: ["pages", "times", "declare", "send"],
  "cut-json": ["pages", "times", "at"],
  rename: ["from", "to", "pages", "times"],
  slow: ["ms", "pages", "times"],
};

/** A plan from its DSL text, or from JSON text when it starts with `{`. */
export function parseFlakyPlan(text: string): FlakyPlan {
  const t = text.trim();
  if (t.startsWith("{")) {
    let raw: unknown;
    try {
      raw = JSON.parse(t);
    } catch (err) {
      throw planError(`is not valid JSON (${(err as Error).message})`);
    }
    return checkPlan(raw as FlakyPlan);
  }
  const plan: FlakyPlan = {};
  const faults: FlakyFault[] = [];
  for (const clause of t
    .split(/[;\n]/)
    .map((c) => c.replace(/#.*$/, "").trim())
    .filter(Boolean)) {
    const words = clause.split(/\s+/);
    if (words.length === 1 && words[0]!.includes("=")) {
      const [key, value] = splitPair(words[0]!, clause);
      setSetting(plan, key, value);
      continue;
    }
    const kind = words[0] as FaultKind;
    if (!KINDS.includes(kind)) throw planError(`clause "${clause}" starts with "${kind}"; a fault is one of ${KINDS.join(", ")}, a setting is key=value`);
    const fault: FlakyFault = { kind };
    for (const w of words.slice(1)) {
      const [key, value] = splitPair(w, clause);
      if (!FAULT_KEYS[kind].includes(key)) throw planError(`"${key}" is not a setting of ${kind} (it takes ${FAULT_KEYS[kind].join(", ")})`);
      setFaultField(fault, key, value);
    }
    faults.push(fault);
  }
  if (faults.length) plan.faults = faults;
  return checkPlan(plan);
}

function splitPair(word: string, clause: string): [string, string] {
  const i = word.indexOf("=");
  if (i <= 0 || i === word.length - 1) throw planError(`"${word}" in "${clause}" is not key=value`);
  return [word.slice(0, i), word.slice(i + 1)];
}

function setSetting(plan: FlakyPlan, key: string, value: string): void {
  if (key === "records") plan.records = whole(value, key);
  else if (key === "page-size") plan.pageSize = whole(value, key);
  else if (key === "ids") plan.ids = idRange(value, key);
  else if (key === "stale-days") plan.staleDays = number(value, key);
  else if (key === "variant") plan.variant = value.split(",").map((r) => idRange(r, key));
  else throw planError(`"${key}" is not a setting (records, page-size, ids, stale-days, variant)`);
}

function setFaultField(f: FlakyFault, key: string, value: string): void {
  if (key === "status") f.status = whole(value, key);
  else if (key === "retry-after") f.retryAfter = whole(value, key, 0);
  else if (key === "pages") f.pages = pageRange(value);
  else if (key === "times") f.times = whole(value, key);
  else if (key === "declare") f.declare = whole(value, key);
  else if (key === "send") f.send = whole(value, key, 0);
  else if (key === "at") f.at = number(value, key);
  else if (key === "from") f.from = value;
  else if (key === "to") f.to = value;
  else if (key === "ms") f.ms = whole(value, key, 0);
}

/** Check a plan (from JSON or the DSL) and normalise its range strings. */
function checkPlan(input: FlakyPlan): FlakyPlan {
  const raw = input as Record<string, unknown>;
  const plan: FlakyPlan = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k === "records") plan.records = whole(String(v), k);
    else if (k === "pageSize") plan.pageSize = Math.min(whole(String(v), k), MAX_PAGE_SIZE);
    else if (k === "ids") plan.ids = typeof v === "string" ? idRange(v, k) : idRange(`${(v as IdRange).from}-${(v as IdRange).to}`, k);
    else if (k === "staleDays") plan.staleDays = number(String(v), k);
    else if (k === "variant") plan.variant = (Array.isArray(v) ? v : [v]).map((r) => (typeof r === "string" ? idRange(r, k) : idRange(`${r.from}-${r.to}`, k)));
    else if (k === "faults") plan.faults = (v as unknown[]).map(checkFault);
    else throw planError(`"${k}" is not a plan field (records, pageSize, ids, staleDays, variant, faults)`);
  }
  return plan;
}

function checkFault(v: unknown): FlakyFault {
  const f = { ...(v as FlakyFault) };
  if (!KINDS.includes(f.kind)) throw planError(`fault kind ${JSON.stringify(f.kind)} is not one of ${KINDS.join(", ")}`);
  if (typeof f.pages === "string" || typeof f.pages === "number") f.pages = pageRange(String(f.pages));
  if (f.kind === "fail" && !(Number.isInteger(f.status) && f.status! >= 400 && f.status! <= 599))
    throw planError(`a fail fault needs status=400…599, got ${JSON.stringify(f.status)}`);
  if (f.kind === "rename" && (!f.from || !f.to)) throw planError("a rename fault needs from=COLUMN and to=NEW_NAME");
  if (f.kind === "slow" && !(Number.isInteger(f.ms) && f.ms! >= 0)) throw planError(`a slow fault needs ms=MILLISECONDS, got ${JSON.stringify(f.ms)}`);
  if (f.times !== undefined && !(Number.isInteger(f.times) && f.times >= 1)) throw planError(`times must be a whole number of 1 or more, got ${f.times}`);
  if (f.at !== undefined && !(f.at > 0 && f.at < 1)) throw planError(`at must be a fraction between 0 and 1, got ${f.at}`);
  return f;
}

function pageRange(text: string): PageRange {
  const m = /^(\d+)(?:-(\d*))?$/.exec(text.trim());
  if (!m || Number(m[1]) < 1) throw planError(`pages=${text} is not P, A-B or A- (pages count from 1)`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : m[2] === "" ? null : Number(m[2]);
  if (to !== null && to < from) throw planError(`pages=${text} ends before it starts`);
  return { from, to };
}

function idRange(text: string, key: string): IdRange {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text.trim());
  if (!m) throw planError(`${key}=${text} is not an id range like 301-1000`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (to < from) throw planError(`${key}=${text} ends before it starts`);
  return { from, to };
}

function whole(text: string, key: string, min = 1): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min) throw planError(`${key}=${text} must be a whole number of ${min} or more`);
  return n;
}

function number(text: string, key: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n < 0) throw planError(`${key}=${text} must be a number of 0 or more`);
  return n;
}

function planError(why: string): SluiceError {
  return new SluiceError("BAD_CONFIG", `flaky API plan: ${why}.`, { retryable: false });
}

/**
 * HTTP API source over Node's global fetch.
 *
 * `fetchPages()` walks a paginated API and yields one page at a time (records for JSON, text for
 * CSV), so a caller can write each page away before asking for the next and memory stays at one
 * page. Decisions worth knowing:
 *
 * - Credentials go only to the origin of the configured URL. Redirects are followed by hand and
 *   next-page links are checked, so an API key header never follows a link to another host, and
 *   an https → http redirect is refused. A next link to another origin is refused outright.
 * - No page is left behind quietly. Without `pagination:`, a `Link: <…>; rel="next"` header
 *   (RFC 8288) is followed, since that is what the header means. When the walk stops, the last
 *   answer is read once more for a sign of more pages (a Link next not followed; without
 *   `pagination:`, a body field such as `has_more: true`, `next_page_url` or a `total` above the
 *   records read) and the walk fails with INCOMPLETE_SOURCE naming it: a first user once read
 *   page 1 of 10 and saw success. `onMaxPages: stop` is the explicit way to stop early; the
 *   last page then carries `pagesLeft: true`.
 * - 429 and 503 are waited out here (Retry-After, bounded); a longer Retry-After, and every other
 *   failure, is raised at once with `retryable` set, and the engine's step retry policy (or the
 *   recovery workflow) decides what happens next.
 * - Every failure carries its evidence in `details`, for failure analysis: `url` (masked), `page`
 *   (1-based page of the walk), `status`, `retryAfterSeconds` when sent, `latencyMs`, and for a
 *   body that ended early `truncated: true` with `bytesDeclared` / `bytesReceived`.
 * - A page is yielded only whole. A body that ends before its Content-Length (the connection
 *   closed mid-way) or a JSON body cut mid-way (its brackets still open at the end) fails with
 *   INCOMPLETE_RESPONSE, retryable: a partial page is never passed on as if it were complete.
 * - A walk can start part-way (`resume: { url, page, recordsRead }`), from a checkpoint of the
 *   pages already stored (actions/batch/page-checkpoint.ts); each page says its `page` number and
 *   the `next` URL, which is what such a checkpoint records.
 * - TLS verification is always on. `caFile` adds a private CA to the trusted roots.
 */
import { readFile } from "node:fs/promises";
import { rootCertificates } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { SluiceError } from "../errors.js";
import { redact, resolveSecret, safeUrl, type ResolveSecretOptions } from "./secrets.js";

export type HttpAuth =
  { type: "bearer"; token: string } | { type: "basic"; username: string; password: string } | { type: "apiKey"; header: string; value: string };

export type HttpPagination =
  /** Next URL from a JSON path in the body (`links.next`), else from the `Link: <…>; rel="next"` header. */
  | { type: "nextLink"; path?: string }
  /** Send the cursor found at `cursorPath` back as query parameter `cursorParam`; stop when it is absent. */
  | { type: "cursor"; cursorParam: string; cursorPath: string }
  /** Numbered pages from `startPage` (default 1); stop on the first empty page. */
  | { type: "page"; pageParam: string; startPage?: number; pageSize?: number; pageSizeParam?: string };

export interface HttpSourceConfig {
  url: string;
  method?: "GET" | "POST";
  query?: Record<string, string | number | boolean>;
  headers?: Record<string, string>;
  /** JSON request body (POST); sent unchanged with every page request. */
  body?: unknown;
  auth?: HttpAuth;
  pagination?: HttpPagination;
  /** Dotted path to the records array in a JSON body (`data.items`); default: the body itself. */
  recordsPath?: string;
  /** Safety bound on the number of pages (default 1000). */
  maxPages?: number;
  /** When `maxPages` is reached and the API still has more: fail (default), or stop and mark the last page `pagesLeft`. */
  onMaxPages?: "error" | "stop";
  /** Per-request timeout, including reading the body (default 30 s). */
  timeoutMs?: number;
  /** Retries of a 429/503 answer before giving up (default 5). */
  maxRetries?: number;
  /** Longest Retry-After this source will sleep through (default 60 s); longer waits fail as retryable. */
  maxRetryAfterMs?: number;
  /** PEM file of a private CA to trust in addition to the public roots. */
  caFile?: string;
}

export interface HttpCallOptions extends ResolveSecretOptions {
  signal?: AbortSignal;
  /**
   * Start the walk part-way: `url` is the next page to fetch (as an earlier walk's `page.next`
   * gave it), `page` its 1-based number and `recordsRead` the records of the pages before it.
   * It must be on the configured URL's origin (credentials go nowhere else).
   */
  resume?: HttpResume;
}

export interface HttpResume {
  url: string;
  page: number;
  recordsRead: number;
}

export interface HttpPage {
  /** The URL that answered, with credentials and sensitive query values masked. */
  url: string;
  /** 1-based number of this page in the walk (counting the pages before a `resume`). */
  page: number;
  /**
   * The next page's URL, unmasked (a checkpoint needs it to resume), or undefined on the last
   * page. Set also when the walk stops here (`pagesLeft`, maxPages). Not for logs: use `url`.
   */
  next?: string;
  status: number;
  contentType: string;
  /** Records of a JSON (or NDJSON) page. */
  records?: Record<string, unknown>[];
  /** Body of a CSV or other text page, for the caller's parser. */
  text?: string;
  /**
   * True on the last page when the walk stopped at `maxPages` (with `onMaxPages: stop`) while
   * the API still had a next page: the caller must report that pages were left unread.
   */
  pagesLeft?: boolean;
}

export interface HttpProbeResult {
  ok: boolean;
  status: number;
  /** True when the answering URL was https (the connection was verified TLS). */
  tls: boolean;
  elapsedMs: number;
  /** Why the probe failed, when it did. */
  error?: string;
  /** The failure's evidence (status, url, retryAfterSeconds, latencyMs), as a fetch's error carries it. */
  details?: Record<string, unknown>;
}

const DEFAULTS = { maxPages: 1000, timeoutMs: 30_000, maxRetries: 5, maxRetryAfterMs: 60_000 };
const MAX_REDIRECTS = 5;
const USER_AGENT = "sluice/0.1";

/** Everything a request needs, prepared once per `fetchPages` / `probeHttp` call. */
interface Session {
  config: HttpSourceConfig;
  origin: string;
  authHeaders: Record<string, string>;
  secrets: string[];
  dispatcher: RequestInit["dispatcher"];
  signal: AbortSignal | undefined;
}

/**
 * Walk every page of the source. Breaking out of the loop early is fine: nothing stays open.
 * Without `pagination`, `Link: <…>; rel="next"` headers are followed. A walk that ends while the
 * last answer still announces more fails with INCOMPLETE_SOURCE (see `announcedMore`).
 */
export async function* fetchPages(config: HttpSourceConfig, opts: HttpCallOptions = {}): AsyncGenerator<HttpPage, void, undefined> {
  const session = await openSession(config, opts);
  try {
    const maxPages = config.maxPages ?? DEFAULTS.maxPages;
    const pagination = config.pagination;
    const resume = opts.resume;
    const skipped = resume ? resume.page - 1 : 0;
    let pageNumber = pagination?.type === "page" ? (pagination.startPage ?? 1) + skipped : 0;
    let url = firstUrl(config);
    if (resume) url = resumeUrl(resume, session);
    else if (pagination?.type === "page") url = withPageParams(url, pagination, pageNumber);
    const seen = new Set<string>();
    let recordsRead = resume?.recordsRead ?? 0;
    for (let count = skipped + 1; ; count++) {
      seen.add(url.href);
      let response: Response;
      let finalUrl: URL;
      let page: HttpPage;
      try {
        ({ response, finalUrl } = await request(session, url));
        page = await readPage(session, response, finalUrl, count);
      } catch (err) {
        throw onPage(err, count, url);
      }
      if (page.records !== undefined) recordsRead += page.records.length;

      let next: URL | undefined;
      if (pagination === undefined) {
        // RFC 8288: a server that says rel="next" has another page, configured or not.
        next = nextLinkOf(page, response, undefined, finalUrl, session);
      } else if (pagination.type === "nextLink") {
        next = nextLinkOf(page, response, pagination.path, finalUrl, session);
      } else if (pagination.type === "cursor") {
        const cursor = page.records === undefined ? undefined : getPath(parsedBody.get(page), pagination.cursorPath);
        if (cursor !== undefined && cursor !== null && cursor !== "" && cursor !== false) {
          next = new URL(url);
          next.searchParams.set(pagination.cursorParam, String(cursor));
        }
      } else if (pagination.type === "page") {
        if (!isEmptyPage(page)) {
          pageNumber++;
          next = withPageParams(url, pagination, pageNumber);
        }
      }
      const stopEarly = next !== undefined && !seen.has(next.href) && count >= maxPages && config.onMaxPages === "stop";
      if (next !== undefined && !seen.has(next.href)) page.next = next.href;
      if (stopEarly) page.pagesLeft = true;
      yield page;

      if (!next) {
        const more = announcedMore(page, response, config, recordsRead, count);
        if (more) throw more;
        return;
      }
      if (seen.has(next.href)) {
        // A server that hands back a link (or cursor) already visited would loop forever.
        throw new SluiceError(
          "BAD_INPUT",
          `HTTP source ${safeUrl(config.url)} returned a next page that was already fetched (${safeUrl(next)}); stopping to avoid an endless loop.`,
        );
      }
      if (stopEarly) return;
      if (count >= maxPages) {
        throw new SluiceError(
          "BAD_CONFIG",
          `HTTP source ${safeUrl(config.url)} still had more pages after maxPages=${maxPages}; raise maxPages or set onMaxPages: stop.`,
          { details: { maxPages, nextUrl: safeUrl(next) } },
        );
      }
      url = next;
    }
  } finally {
    await closeSession(session);
  }
}

/**
 * One request to the configured URL (no pagination, no waiting on 429), for a source
 * availability check. Connection and HTTP failures are reported, not thrown; configuration
 * errors (a missing secret, a bad URL) are thrown, since no probe result can describe them.
 */
export async function probeHttp(config: HttpSourceConfig, opts: HttpCallOptions = {}): Promise<HttpProbeResult> {
  const session = await openSession({ ...config, maxRetries: 0 }, opts);
  const started = performance.now();
  const url = firstUrl(config);
  try {
    const { response, finalUrl, latencyMs } = await send(session, url);
    await discard(response);
    const result: HttpProbeResult = { ok: response.ok, status: response.status, tls: finalUrl.protocol === "https:", elapsedMs: elapsed(started) };
    if (!response.ok) {
      const failure = statusError(response, finalUrl, session, "", latencyMs);
      result.error = failure.message;
      if (failure.details) result.details = failure.details;
    }
    return result;
  } catch (err) {
    if (err instanceof SluiceError && err.code === "CANCELLED") throw err;
    const message = err instanceof Error ? err.message : String(err);
    const details = err instanceof SluiceError ? err.details : undefined;
    return { ok: false, status: 0, tls: false, elapsedMs: elapsed(started), error: message, ...(details ? { details } : {}) };
  } finally {
    await closeSession(session);
  }
}

/**
 * Milliseconds to wait from a Retry-After header: delay-seconds or an HTTP-date.
 * Returns undefined when absent or unparseable, so the caller falls back to its own backoff.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** Parse an RFC 8288 (RFC 5988) Link header into `{ rel: url }`; relative URLs are kept as written. */
export function parseLinkHeader(value: string | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!value) return out;
  const re = /<([^>]*)>((?:\s*;\s*[^;,]+(?:="[^"]*"|=[^;,]*)?)*)/g;
  for (const m of value.matchAll(re)) {
    const target = m[1]!;
    const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^;,\s]+))/i.exec(m[2] ?? "");
    const rels = (rel?.[1] ?? rel?.[2] ?? "").split(/\s+/).filter(Boolean);
    for (const r of rels) if (!(r.toLowerCase() in out)) out[r.toLowerCase()] = target;
  }
  return out;
}

/** Value at a dotted path (`data.items`, `links.next`, `results[0].id`, optional leading `$.`). */
export function getPath(value: unknown, path: string): unknown {
  const parts = path
    .replace(/^\$\.?/, "")
    .replace(/\[(\d+)\]/g, ".$1")
    .split(".")
    .filter(Boolean);
  let cur: unknown = value;
  for (const p of parts) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

// ---------------------------------------------------------------------------------------------

/** Parsed JSON bodies by page, so pagination can read cursors without re-parsing. */
const parsedBody = new WeakMap<HttpPage, unknown>();

async function openSession(config: HttpSourceConfig, opts: HttpCallOptions): Promise<Session> {
  const url = firstUrl(config); // validates the URL before any secret is read
  const authHeaders: Record<string, string> = {};
  const secrets: string[] = [];
  const auth = config.auth;
  if (auth?.type === "bearer") {
    const token = await resolveSecret(auth.token, "auth.token", opts);
    secrets.push(token);
    authHeaders["authorization"] = `Bearer ${token}`;
  } else if (auth?.type === "basic") {
    const password = await resolveSecret(auth.password, "auth.password", opts);
    const encoded = Buffer.from(`${auth.username}:${password}`).toString("base64");
    secrets.push(password, encoded);
    authHeaders["authorization"] = `Basic ${encoded}`;
  } else if (auth?.type === "apiKey") {
    if (!auth.header) throw new SluiceError("BAD_CONFIG", "auth.header must name the HTTP header that carries the API key.");
    const value = await resolveSecret(auth.value, "auth.value", opts);
    secrets.push(value);
    authHeaders[auth.header.toLowerCase()] = value;
  } else if (auth !== undefined) {
    throw new SluiceError("BAD_CONFIG", `auth.type ${JSON.stringify((auth as { type?: unknown }).type)} is not one of bearer, basic, apiKey.`);
  }
  validatePagination(config);
  const dispatcher = config.caFile ? await caDispatcher(config.caFile) : undefined;
  return { config, origin: url.origin, authHeaders, secrets, dispatcher, signal: opts.signal };
}

async function closeSession(session: Session): Promise<void> {
  const d = session.dispatcher as { close?: () => Promise<void> } | undefined;
  if (d?.close) await d.close().catch(() => undefined);
}

function validatePagination(config: HttpSourceConfig): void {
  if (config.maxPages !== undefined && !(Number.isInteger(config.maxPages) && config.maxPages > 0)) {
    throw new SluiceError("BAD_CONFIG", `maxPages must be a positive integer, got ${config.maxPages}.`);
  }
  const p = config.pagination;
  if (!p) return;
  const missing = (field: string) =>
    new SluiceError("BAD_CONFIG", `pagination.${field} is required for pagination type ${p.type} of HTTP source ${safeUrl(config.url)}.`);
  if (p.type === "cursor") {
    if (!p.cursorParam) throw missing("cursorParam");
    if (!p.cursorPath) throw missing("cursorPath");
  } else if (p.type === "page") {
    if (!p.pageParam) throw missing("pageParam");
    if (p.pageSize !== undefined && !p.pageSizeParam) throw missing("pageSizeParam");
  } else if (p.type !== "nextLink") {
    throw new SluiceError("BAD_CONFIG", `pagination.type ${JSON.stringify((p as { type?: unknown }).type)} is not one of nextLink, cursor, page.`);
  }
}

function firstUrl(config: HttpSourceConfig): URL {
  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `HTTP source URL ${safeUrl(config.url)} is not a valid absolute URL.`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SluiceError("BAD_CONFIG", `HTTP source URL ${safeUrl(url)} must start with http:// or https://.`);
  }
  if (url.username || url.password) {
    // fetch refuses such URLs anyway; say what to do instead.
    throw new SluiceError(
      "BAD_CONFIG",
      `HTTP source URL ${safeUrl(url)} must not contain credentials; use auth: { type: basic, username, password: env:NAME }.`,
    );
  }
  for (const [k, v] of Object.entries(config.query ?? {})) url.searchParams.set(k, String(v));
  return url;
}

function withPageParams(url: URL, p: Extract<HttpPagination, { type: "page" }>, page: number): URL {
  const next = new URL(url);
  next.searchParams.set(p.pageParam, String(page));
  if (p.pageSize !== undefined && p.pageSizeParam) next.searchParams.set(p.pageSizeParam, String(p.pageSize));
  return next;
}

/** The URL a resumed walk starts at: only on the configured origin, where the credentials may go. */
function resumeUrl(resume: HttpResume, session: Session): URL {
  let url: URL;
  try {
    url = new URL(resume.url);
  } catch {
    throw new SluiceError("BAD_CONFIG", `resume URL ${safeUrl(resume.url)} of HTTP source ${safeUrl(session.config.url)} is not a valid absolute URL.`);
  }
  if (url.origin !== session.origin)
    throw new SluiceError(
      "BAD_CONFIG",
      `resume URL ${safeUrl(url)} is not on the origin of HTTP source ${safeUrl(session.config.url)}; a walk resumes only where it started.`,
    );
  if (!(Number.isInteger(resume.page) && resume.page >= 1))
    throw new SluiceError("BAD_CONFIG", `resume page must be a whole number of 1 or more, got ${resume.page}.`);
  return url;
}

/**
 * The next page's URL from a body path, else from the Link header, resolved against the answering
 * URL. A link to another origin is refused: the walk would carry on at a server nobody configured.
 */
function nextLinkOf(page: HttpPage, response: Response, path: string | undefined, base: URL, session: Session): URL | undefined {
  let target: unknown;
  if (path && page.records !== undefined) target = getPath(parsedBody.get(page), path);
  if (typeof target !== "string" || target === "") target = parseLinkHeader(response.headers.get("link"))["next"];
  if (typeof target !== "string" || target === "") return undefined;
  let next: URL;
  try {
    next = new URL(target, base);
  } catch {
    throw new SluiceError("BAD_INPUT", `HTTP source ${safeUrl(session.config.url)} returned a next link that is not a valid URL.`);
  }
  if (next.origin !== session.origin) {
    throw new SluiceError(
      "BAD_INPUT",
      `${session.config.method ?? "GET"} ${page.url} announced its next page on another origin (${safeUrl(next)}); next links are followed only on ${session.origin}, so point url at that server if it is the API's own.`,
      { details: { url: page.url, nextUrl: safeUrl(next) } },
    );
  }
  return next;
}

/** Containers that APIs put their paging fields in, besides the top level of the body. */
const PAGING_CONTAINERS = ["meta", "links", "pagination", "paging"] as const;
/** Fields whose non-empty value is the next page (a URL, a cursor or a page number). */
const NEXT_FIELDS = ["next", "next_page", "next_page_url", "nextPageToken", "next_cursor"] as const;
/**
 * At the top level of a body that IS the record (no recordsPath), only names that a record
 * hardly ever has: an invoice's `total` or a node's `next` is data, not paging.
 */
const UNAMBIGUOUS_TOP = new Set(["next_page", "next_page_url", "nextPageToken", "next_cursor", "has_more", "hasMore"]);

/**
 * Why the walk must not end here: the last answer says there is more than was read. Checked once
 * per walk, on the last page only. Returns the INCOMPLETE_SOURCE error to throw, or undefined.
 */
function announcedMore(page: HttpPage, response: Response, config: HttpSourceConfig, recordsRead: number, pages: number): SluiceError | undefined {
  const method = config.method ?? "GET";
  const read = page.records !== undefined ? `${recordsRead} read` : `${pages} page${pages === 1 ? "" : "s"} read`;
  const fail = (what: string, why: string, details: Record<string, unknown>) =>
    new SluiceError("INCOMPLETE_SOURCE", `${method} ${page.url} announced more records (${what}, ${read}) but ${why}.`, {
      retryable: false,
      details: { url: page.url, announced: what, ...(page.records !== undefined ? { recordsRead } : { pagesRead: pages }), ...details },
    });
  const pagination = config.pagination;
  const link = parseLinkHeader(response.headers.get("link"))["next"];
  if (link) {
    // Only reachable with a cursor or page pagination: without one (or with nextLink) it was followed.
    const how = pagination ? `the configured ${pagination.type} pagination stopped there` : "it was not followed";
    return fail(`Link rel="next"`, `${how}; set pagination: { type: nextLink } to follow the Link header`, { nextUrl: safeUrl(link) });
  }
  if (pagination || page.records === undefined) return undefined;
  const body = parsedBody.get(page);
  if (body === null || typeof body !== "object" || Array.isArray(body)) return undefined;
  const envelope = config.recordsPath !== undefined && config.recordsPath.replace(/^\$\.?/, "") !== "";
  const places: [string, Record<string, unknown>][] = [["", body as Record<string, unknown>]];
  for (const c of PAGING_CONTAINERS) {
    const v = (body as Record<string, unknown>)[c];
    if (v !== null && typeof v === "object" && !Array.isArray(v)) places.push([`${c}.`, v as Record<string, unknown>]);
  }
  const found = (prefix: string, name: string) => prefix !== "" || envelope || UNAMBIGUOUS_TOP.has(name);
  const none = "no pagination is configured";
  // 1. A next link, cursor or page number.
  for (const [prefix, o] of places) {
    const candidates: [string, unknown][] = NEXT_FIELDS.filter((f) => found(prefix, f)).map((f) => [f, o[f]]);
    const cursor = o["cursor"];
    if (found(prefix, "cursor") && cursor !== null && typeof cursor === "object" && !Array.isArray(cursor))
      candidates.push(["cursor.next", (cursor as Record<string, unknown>)["next"]]);
    for (const [name, value] of candidates) {
      if (!announces(value)) continue;
      // JSON:API and HAL write a link as an object: `links.next.href`.
      const href = value !== null && typeof value === "object" ? (value as Record<string, unknown>)["href"] : undefined;
      const v = typeof href === "string" && href !== "" ? href : value;
      const path = `${prefix}${name}${v === href ? ".href" : ""}`;
      const what = `${path}: ${shown(v)}`;
      if (typeof v === "number" || (name === "next_page" && typeof v === "string" && /^\d+$/.test(v)))
        return fail(what, `${none}; add pagination: { type: page, pageParam: … }`, { field: path });
      if (typeof v === "string" && name !== "nextPageToken" && name !== "next_cursor" && name !== "cursor.next" && looksLikeUrl(v))
        return fail(what, `${none}; add pagination: { type: nextLink, path: ${path} }`, { field: path });
      return fail(what, `${none}; add pagination: { type: cursor, cursorParam: …, cursorPath: ${path} }`, { field: path });
    }
  }
  // 2. A flag that says more.
  for (const [prefix, o] of places) {
    for (const name of ["has_more", "hasMore", "more"]) {
      if (found(prefix, name) && o[name] === true)
        return fail(`${prefix}${name}: true`, `${none}; add pagination: { type: cursor, cursorParam: …, cursorPath: … }`, { field: `${prefix}${name}` });
    }
  }
  // 3. A page number below the last page, or a total above what was read.
  for (const [prefix, o] of places) {
    if (!found(prefix, "page")) continue;
    const pageField = ["page", "current_page"].find((f) => integer(o[f]) !== undefined);
    const lastField = ["total_pages", "totalPages", "last_page"].find((f) => integer(o[f]) !== undefined);
    if (pageField && lastField && integer(o[pageField])! < integer(o[lastField])!)
      return fail(
        `${prefix}${pageField}: ${integer(o[pageField])} of ${prefix}${lastField}: ${integer(o[lastField])}`,
        `${none}; add pagination: { type: page, pageParam: … }`,
        { field: `${prefix}${lastField}` },
      );
  }
  for (const [prefix, o] of places) {
    for (const name of ["total", "total_count", "totalCount", "count"]) {
      const n = found(prefix, name) ? integer(o[name]) : undefined;
      if (n !== undefined && n > recordsRead)
        return fail(`${prefix}${name}: ${n}`, `${none}; add pagination: { type: page, pageParam: … } or { type: cursor, cursorParam: …, cursorPath: … }`, {
          field: `${prefix}${name}`,
          total: n,
        });
    }
  }
  return undefined;
}

/** A value that names a next page: a non-empty string, a number, true, or a non-empty object (`{ href }`). */
function announces(v: unknown): boolean {
  if (typeof v === "string") return v.trim() !== "";
  if (typeof v === "number") return Number.isFinite(v);
  if (v === true) return true;
  return v !== null && typeof v === "object" && Object.keys(v).length > 0;
}

function integer(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v === "string" && /^\d{1,15}$/.test(v)) return Number(v);
  return undefined;
}

function looksLikeUrl(v: string): boolean {
  return /^(https?:\/\/|\/|\?)/i.test(v.trim());
}

/** A field's value as shown in a sentence: URLs masked, long tokens cut. */
function shown(v: unknown): string {
  if (typeof v === "string") {
    const text = looksLikeUrl(v) ? safeUrl(v) : v;
    return JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text);
  }
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function isEmptyPage(page: HttpPage): boolean {
  if (page.records !== undefined) return page.records.length === 0;
  // A CSV page with only a header line has no data rows.
  const lines = (page.text ?? "").split(/\r?\n/).filter((l) => l.trim() !== "");
  return lines.length <= (page.contentType.includes("csv") ? 1 : 0);
}

/** One logical request with the 429/503 wait-and-retry loop around it. */
async function request(session: Session, url: URL): Promise<Sent> {
  const maxRetries = session.config.maxRetries ?? DEFAULTS.maxRetries;
  const maxWait = session.config.maxRetryAfterMs ?? DEFAULTS.maxRetryAfterMs;
  for (let attempt = 0; ; attempt++) {
    const result = await send(session, url);
    const { response, finalUrl, latencyMs } = result;
    if (response.ok) return result;
    if (response.status === 429 || response.status === 503) {
      const shown = safeUrl(finalUrl);
      const header = response.headers.get("retry-after");
      const asked = parseRetryAfter(header);
      const evidence = {
        status: response.status,
        url: shown,
        ...(asked !== undefined ? { retryAfterSeconds: Math.ceil(asked / 1000) } : {}),
        latencyMs,
        retries: attempt,
      };
      await discard(response);
      if (attempt >= maxRetries) {
        throw new SluiceError("NETWORK_ERROR", `HTTP ${response.status} from ${shown} persisted after ${maxRetries} retries.`, {
          retryable: true,
          details: evidence,
        });
      }
      // Without Retry-After, back off exponentially from 1 s.
      const waitMs = asked ?? Math.min(1000 * 2 ** attempt, maxWait);
      if (waitMs > maxWait) {
        // Raised at once, not slept through: whether to wait that long or fall back to another
        // source is the recovery strategy's call, and retryAfterSeconds is what it decides on.
        throw new SluiceError(
          "NETWORK_ERROR",
          `HTTP ${response.status} from ${shown} asked to retry after ${Math.ceil(waitMs / 1000)} s, longer than maxRetryAfterMs (${maxWait} ms).`,
          { retryable: true, details: { ...evidence, retryAfterMs: waitMs } },
        );
      }
      try {
        await sleep(waitMs, undefined, session.signal ? { signal: session.signal } : undefined);
      } catch {
        throw cancelled(finalUrl);
      }
      continue;
    }
    const body = await response.text().catch(() => "");
    throw statusError(response, finalUrl, session, body, latencyMs);
  }
}

/** An answered exchange: the response (body buffered), the URL that gave it, and how long it took. */
interface Sent {
  response: Response;
  finalUrl: URL;
  /** From sending the request to the last byte of the body, of the final hop. */
  latencyMs: number;
}

/** One HTTP exchange, following redirects by hand so credentials never leave the configured origin. */
async function send(session: Session, start: URL): Promise<Sent> {
  const { config } = session;
  let url = start;
  let method: string = config.method ?? "GET";
  let body: string | undefined = config.body === undefined ? undefined : JSON.stringify(config.body);
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = {
      "user-agent": USER_AGENT,
      accept: "application/json, text/csv;q=0.9, */*;q=0.5",
      ...lowerKeys(config.headers ?? {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...(url.origin === session.origin ? session.authHeaders : {}),
    };
    const { response, latencyMs } = await fetchOnce(session, url, { method, headers, body, redirect: "manual", dispatcher: session.dispatcher });
    if (response.status < 300 || response.status > 399 || response.status === 304) return { response, finalUrl: url, latencyMs };
    const location = response.headers.get("location");
    await discard(response);
    if (!location) return { response, finalUrl: url, latencyMs };
    if (hop >= MAX_REDIRECTS) {
      throw new SluiceError("BAD_CONFIG", `HTTP source ${safeUrl(start)} redirected more than ${MAX_REDIRECTS} times; point url at the final location.`);
    }
    const next = new URL(location, url);
    if (url.protocol === "https:" && next.protocol !== "https:") {
      throw new SluiceError("BAD_CONFIG", `HTTP source ${safeUrl(url)} redirected from https to ${safeUrl(next)}; refusing to downgrade to plain http.`);
    }
    if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === "POST")) {
      method = "GET";
      body = undefined;
    }
    url = next;
  }
}

/**
 * fetch with a per-request timeout, translating low-level failures into SluiceErrors. The body is
 * read here, counted, so a connection closed before the declared Content-Length is told apart
 * (INCOMPLETE_RESPONSE, with the bytes) from a connection that never answered.
 */
async function fetchOnce(session: Session, url: URL, init: RequestInit): Promise<{ response: Response; latencyMs: number }> {
  const timeoutMs = session.config.timeoutMs ?? DEFAULTS.timeoutMs;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = session.signal ? AbortSignal.any([session.signal, timeout]) : timeout;
  if (session.signal?.aborted) throw cancelled(url);
  const started = performance.now();
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal });
  } catch (err) {
    throw networkError(err, url, session, timeoutMs, { latencyMs: elapsed(started) });
  }
  // Buffer the body now, under the same timeout, so a stalled body cannot hang the caller later.
  const declared = declaredLength(response.headers);
  const chunks: Uint8Array[] = [];
  let received = 0;
  try {
    if (response.body) {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        chunks.push(chunk);
        received += chunk.byteLength;
      }
    }
  } catch (err) {
    const latencyMs = elapsed(started);
    // A timeout or a cancel mid-body is that, not a truncation: the server was still sending.
    if (signal.aborted) throw networkError(err, url, session, timeoutMs, { latencyMs, bytesReceived: received });
    throw truncated(url, session, { status: response.status, bytesDeclared: declared, bytesReceived: received, latencyMs }, err);
  }
  const latencyMs = elapsed(started);
  if (declared !== undefined && received < declared) {
    throw truncated(url, session, { status: response.status, bytesDeclared: declared, bytesReceived: received, latencyMs });
  }
  const buf = Buffer.concat(chunks, received);
  const copy = new Response([204, 205, 304].includes(response.status) ? null : buf, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  bodyBytes.set(copy, { declared, received });
  return { response: copy, latencyMs };
}

/** The Content-Length of a body that is not content-encoded (fetch decodes gzip, so its bytes would differ). */
function declaredLength(headers: Headers): number | undefined {
  const encoding = headers.get("content-encoding");
  if (encoding && encoding.trim().toLowerCase() !== "identity") return undefined;
  const n = integer(headers.get("content-length") ?? undefined);
  return n;
}

/** Bytes declared and received of each buffered response, for the evidence of a cut JSON body. */
const bodyBytes = new WeakMap<Response, { declared: number | undefined; received: number }>();

function truncated(
  url: URL,
  session: Session,
  e: { status: number; bytesDeclared: number | undefined; bytesReceived: number; latencyMs?: number; reason?: string },
  cause?: unknown,
): SluiceError {
  const shown = safeUrl(url);
  const method = session.config.method ?? "GET";
  const of = e.bytesDeclared !== undefined ? ` of ${e.bytesDeclared} declared` : "";
  const what = e.reason ?? `the connection closed after ${e.bytesReceived} bytes${of}`;
  return new SluiceError("INCOMPLETE_RESPONSE", `${method} ${shown} returned an incomplete body: ${what}; the page was not used.`, {
    retryable: true,
    cause,
    details: {
      truncated: true,
      status: e.status,
      url: shown,
      ...(e.bytesDeclared !== undefined ? { bytesDeclared: e.bytesDeclared } : {}),
      bytesReceived: e.bytesReceived,
      ...(e.latencyMs !== undefined ? { latencyMs: e.latencyMs } : {}),
    },
  });
}

/**
 * Whether a JSON text that failed to parse was cut off rather than malformed: it ends inside a
 * string or with brackets still open. (A cut between two digits of a bare number cannot be seen.)
 */
export function endsOpen(text: string): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* backslash: skip the escaped character */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 /* [ */ || c === 123 /* { */) depth++;
    else if (c === 93 /* ] */ || c === 125 /* } */) depth--;
  }
  return inString || depth > 0;
}

/** Add the page number and URL of the walk to an error that has no page yet. */
function onPage(err: unknown, page: number, url: URL): unknown {
  if (!(err instanceof SluiceError) || err.code === "CANCELLED") return err;
  if (err.details?.["page"] !== undefined) return err;
  const wrapped = new SluiceError(err.code, err.message, {
    retryable: err.retryable,
    cause: err.cause,
    details: { url: safeUrl(url), ...err.details, page },
  });
  wrapped.stack = err.stack;
  return wrapped;
}

async function readPage(session: Session, response: Response, finalUrl: URL, pageNumber: number): Promise<HttpPage> {
  const contentType = (response.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  const text = await response.text();
  const base = { url: safeUrl(finalUrl), page: pageNumber, status: response.status, contentType };
  const isJson = contentType === "application/json" || contentType.endsWith("+json") || (contentType === "" && /^\s*[[{]/.test(text));
  const isNdjson = ["application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"].includes(contentType);
  if (!isJson && !isNdjson) return { ...base, text };

  let body: unknown;
  let records: unknown;
  try {
    if (isNdjson) {
      body = text
        .split(/\r?\n/)
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as unknown);
    } else {
      body = text.trim() === "" ? [] : (JSON.parse(text) as unknown);
    }
  } catch (err) {
    const lastLine = isNdjson ? (text.trimEnd().split(/\r?\n/).pop() ?? "") : text;
    if (endsOpen(lastLine)) {
      const bytes = bodyBytes.get(response) ?? { declared: undefined, received: Buffer.byteLength(text) };
      throw truncated(
        finalUrl,
        session,
        {
          status: response.status,
          bytesDeclared: bytes.declared,
          bytesReceived: bytes.received,
          reason: `the JSON ends mid-way (${(err as Error).message})`,
        },
        err,
      );
    }
    throw new SluiceError("BAD_INPUT", `HTTP source ${safeUrl(finalUrl)} returned a body that is not valid JSON: ${(err as Error).message}.`, {
      cause: err,
      details: { url: safeUrl(finalUrl), status: response.status },
    });
  }
  const path = session.config.recordsPath;
  if (path) {
    records = getPath(body, path);
    if (records === undefined || records === null) records = []; // an absent list on the last page means no records
    if (!Array.isArray(records)) {
      throw new SluiceError("BAD_INPUT", `HTTP source ${safeUrl(finalUrl)}: recordsPath ${path} does not point to an array.`);
    }
  } else {
    // A single-object endpoint is a one-record source; anything else needs recordsPath.
    records = Array.isArray(body) ? body : [body];
  }
  const list = records as unknown[];
  list.forEach((r, i) => {
    if (r === null || typeof r !== "object" || Array.isArray(r)) {
      throw new SluiceError(
        "BAD_INPUT",
        `HTTP source ${safeUrl(finalUrl)}: record ${i} is not a JSON object${path ? "" : "; set recordsPath to the records array"}.`,
      );
    }
  });
  const page: HttpPage = { ...base, records: list as Record<string, unknown>[] };
  parsedBody.set(page, body);
  return page;
}

function statusError(response: Response, url: URL, session: Session, body: string, latencyMs: number): SluiceError {
  const status = response.status;
  const shown = safeUrl(url);
  const method = session.config.method ?? "GET";
  // A short excerpt of the body often says exactly what is wrong; secrets are masked in it.
  const excerpt = redact(body.replace(/\s+/g, " ").trim().slice(0, 200), session.secrets);
  const asked = parseRetryAfter(response.headers.get("retry-after"));
  const details = {
    status,
    url: shown,
    ...(asked !== undefined ? { retryAfterSeconds: Math.ceil(asked / 1000) } : {}),
    latencyMs,
    ...(excerpt ? { body: excerpt } : {}),
  };
  const reasons: Record<number, string> = {
    401: "the credentials were missing or rejected",
    403: "the credentials are not allowed to read it",
    404: "the URL does not exist",
  };
  if (status === 408)
    return new SluiceError("NETWORK_ERROR", `${method} ${shown} failed with HTTP 408: the server timed out waiting for the request.`, {
      retryable: true,
      details,
    });
  if (status >= 500)
    return new SluiceError("NETWORK_ERROR", `${method} ${shown} failed with HTTP ${status}: the server had an error.`, { retryable: true, details });
  if (status >= 400) {
    const why = reasons[status] ?? "the server rejected the request";
    return new SluiceError("BAD_CONFIG", `${method} ${shown} failed with HTTP ${status}: ${why}.`, { retryable: false, details });
  }
  return new SluiceError("NETWORK_ERROR", `${method} ${shown} answered with unexpected HTTP ${status}.`, { retryable: true, details });
}

const TLS_TRUST_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

function networkError(err: unknown, url: URL, session: Session, timeoutMs: number, seen: { latencyMs: number; bytesReceived?: number }): SluiceError {
  if (err instanceof SluiceError) return err;
  if (session.signal?.aborted) return cancelled(url);
  const hostPort = `${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")}`;
  const e = err as Error & { cause?: { code?: string; message?: string } };
  const evidence = { url: safeUrl(url), latencyMs: seen.latencyMs, ...(seen.bytesReceived ? { bytesReceived: seen.bytesReceived } : {}) };
  if (e.name === "TimeoutError") {
    return new SluiceError("NETWORK_ERROR", `Request to ${safeUrl(url)} timed out after ${timeoutMs} ms.`, {
      retryable: true,
      cause: err,
      details: { ...evidence, timedOut: true, timeoutMs },
    });
  }
  const code = e.cause?.code ?? (e as NodeJS.ErrnoException).code;
  if (code && TLS_TRUST_CODES.has(code)) {
    return new SluiceError(
      "BAD_CONFIG",
      `TLS verification of ${hostPort} failed (${code}): the server certificate is not trusted for this host; set caFile to trust a private CA.`,
      { retryable: false, cause: err, details: { ...evidence, host: hostPort, code } },
    );
  }
  const why: Record<string, string> = {
    ECONNREFUSED: "connection refused",
    ENOTFOUND: "host name not found",
    EAI_AGAIN: "host name lookup failed temporarily",
    ECONNRESET: "connection reset by the server",
    ETIMEDOUT: "connection timed out",
    UND_ERR_CONNECT_TIMEOUT: "connection timed out",
    UND_ERR_SOCKET: "the connection closed unexpectedly",
  };
  const reason = (code && why[code]) ?? redact(e.cause?.message ?? e.message, session.secrets);
  return new SluiceError("NETWORK_ERROR", `Could not reach ${hostPort} for ${safeUrl(url)}: ${reason}${code ? ` (${code})` : ""}.`, {
    retryable: true,
    cause: err,
    details: { ...evidence, host: hostPort, ...(code ? { code } : {}) },
  });
}

function cancelled(url: URL): SluiceError {
  return new SluiceError("CANCELLED", `Request to ${safeUrl(url)} was cancelled.`, { retryable: false });
}

/**
 * A fetch dispatcher that trusts `caFile` as well as the public roots.
 *
 * Node 20 bundles undici but does not export its `Agent`; installing the `undici` package would
 * add a dependency. Undici registers its global dispatcher under a well-known `Symbol.for` key
 * (shared on purpose between undici copies), and that object is an `Agent`, so its constructor
 * is the bundled Agent class. The first fetch creates it; a `data:` fetch does so without I/O.
 */
async function caDispatcher(caFile: string): Promise<RequestInit["dispatcher"]> {
  let ca: string;
  try {
    ca = await readFile(caFile, "utf8");
  } catch (err) {
    throw new SluiceError("BAD_CONFIG", `caFile ${caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"}).`, { cause: err });
  }
  if (!ca.includes("-----BEGIN CERTIFICATE-----")) {
    throw new SluiceError("BAD_CONFIG", `caFile ${caFile} does not contain a PEM certificate.`);
  }
  const key = Symbol.for("undici.globalDispatcher.1");
  const g = globalThis as unknown as Record<symbol, unknown>;
  if (g[key] === undefined) await fetch("data:,");
  const current = g[key] as { constructor?: new (opts: unknown) => unknown } | undefined;
  const Agent = current?.constructor;
  if (typeof Agent !== "function" || Agent.name !== "Agent") {
    throw new SluiceError("BAD_CONFIG", `caFile is not supported on this Node.js version (${process.version}); set NODE_EXTRA_CA_CERTS=${caFile} instead.`);
  }
  return new Agent({ connect: { ca: [...rootCertificates, ca] } }) as RequestInit["dispatcher"];
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

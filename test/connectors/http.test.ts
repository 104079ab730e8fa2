import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fetchPages,
  parseLinkHeader,
  parseRetryAfter,
  probeHttp,
  type HttpCallOptions,
  type HttpPage,
  type HttpSourceConfig,
} from "../../src/connectors/http.js";
import { failure } from "../helpers.js";

const TOKEN = "tok-bearer-123";
const PASSWORD = "pa:ss word/+";
const API_KEY = "key-abc-789";

let dir: string;
let base: string;
let otherBase: string;
let server: Server;
let other: Server;
let tlsServer: Server;
let tlsBase: string;
let caFile: string;
const hits = new Map<string, number[]>();
const otherHeaders: Record<string, string | string[] | undefined>[] = [];
const env = { API_TOKEN: TOKEN, API_PASSWORD: PASSWORD };

const items = [1, 2, 3, 4, 5].map((id) => ({ id, name: `item-${id}` }));
/** 1,000 trades, served 100 a page by the routes that page. */
const SYMBOLS = ["AAPL", "MSFT", "NVDA", "SAP", "ASML"];
const trades = Array.from({ length: 1000 }, (_, i) => ({
  id: i + 1,
  trade_id: `T-${String(i + 1).padStart(5, "0")}`,
  symbol: SYMBOLS[i % SYMBOLS.length],
  price: `${100 + (i % 37)}.${String(i % 10_000).padStart(4, "0")}`,
  executed_at: new Date(Date.UTC(2026, 0, 2, 9, 30) + i * 1000).toISOString(),
}));
const PER_PAGE = 100;
const LAST_PAGE = trades.length / PER_PAGE;
const tradePage = (p: number) => trades.slice((p - 1) * PER_PAGE, p * PER_PAGE);

function json(res: ServerResponse, body: unknown, status = 200, headers: Record<string, string> = {}) {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
  res.end(JSON.stringify(body));
}

function handler(req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? "/", base);
  const path = url.pathname;
  hits.set(path, [...(hits.get(path) ?? []), Date.now()]);
  const q = (name: string) => url.searchParams.get(name);
  switch (path) {
    case "/page": {
      const page = Number(q("page"));
      const size = Number(q("size") ?? 2);
      return json(res, { data: { items: items.slice((page - 1) * size, page * size) } });
    }
    case "/cursor": {
      const start = q("after") ? Number(q("after")!.slice(1)) : 0;
      const slice = items.slice(start, start + 2);
      const next = start + 2 < items.length ? `c${start + 2}` : null;
      return json(res, { results: slice, meta: { next } });
    }
    case "/next": {
      const p = Number(q("p") ?? 1);
      return json(res, { items: items.slice((p - 1) * 2, p * 2), links: { next: p < 3 ? `/next?p=${p + 1}` : null } });
    }
    case "/link": {
      const p = Number(q("p") ?? 1);
      const links = [`<${base}/link?p=3>; rel="last"`];
      if (p < 3) links.unshift(`<${base}/link?p=${p + 1}>; rel="next"`);
      return json(res, items.slice((p - 1) * 2, p * 2), 200, { link: links.join(", ") });
    }
    case "/trades/linked": {
      // GitHub style: a bare array, absolute Link headers with next, prev, last.
      const p = Number(q("page") ?? 1);
      const links = [`<${base}/trades/linked?page=${LAST_PAGE}>; rel="last"`];
      if (p < LAST_PAGE) links.unshift(`<${base}/trades/linked?page=${p + 1}>; rel="next"`);
      if (p > 1) links.push(`<${base}/trades/linked?page=${p - 1}>; rel="prev"`);
      return json(res, tradePage(p), 200, { link: links.join(", ") });
    }
    case "/trades/relative": {
      // Relative targets, resolved against the answering URL; an envelope with a total.
      const p = Number(q("page") ?? 1);
      const headers: Record<string, string> = p < 3 ? { link: `<relative?page=${p + 1}>; rel="next"` } : {};
      return json(res, { data: tradePage(p), meta: { total: 3 * PER_PAGE } }, 200, headers);
    }
    case "/trades/cursor-and-link": {
      // Cursor pagination in the body, and a Link header pointing somewhere else on every page but the last.
      const after = Number(q("after") ?? 0);
      const page = trades.slice(after, after + 250);
      const nextCursor = after + 250 < trades.length ? String(after + 250) : null;
      const headers: Record<string, string> = nextCursor ? { link: `<${base}/trades/cursor-and-link?via=link&p=${after / 250 + 2}>; rel="next"` } : {};
      return json(res, { data: page, next_cursor: nextCursor }, 200, headers);
    }
    case "/trades/cursor-stale-link":
      // The cursor says this is the end, the Link header says there is more.
      return json(res, { data: tradePage(1), next_cursor: null }, 200, { link: `<${base}/trades/cursor-stale-link?page=2>; rel="next"` });
    case "/trades/has-more":
      return json(res, { object: "list", data: tradePage(1), has_more: true, url: "/v1/trades" });
    case "/trades/total":
      return json(res, { results: tradePage(1), total: 1000, page: 1, per_page: PER_PAGE });
    case "/trades/laravel": {
      const p = Number(q("page") ?? 1);
      return json(res, {
        current_page: p,
        data: tradePage(p),
        last_page: LAST_PAGE,
        next_page_url: p < LAST_PAGE ? `${base}/trades/laravel?page=${p + 1}` : null,
        per_page: PER_PAGE,
        total: trades.length,
      });
    }
    case "/invoice":
      // One object that is the record: its total and next are data, not paging.
      return json(res, { id: 7, total: 250, count: 12, next: "2026-02-01", page: 1, total_pages: 4 });
    case "/trades/link-away":
      return json(res, tradePage(1), 200, { link: `<${otherBase}/trades?page=2>; rel="next"` });
    case "/csv":
      res.writeHead(200, { "content-type": "text/csv; charset=utf-8" });
      return res.end("id,amount\n1,10.50\n2,0.10\n");
    case "/ndjson":
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      return res.end('{"id":1}\n{"id":2}\n');
    case "/limited":
      if ((hits.get(path)?.length ?? 0) === 1) return json(res, { error: "slow down" }, 429, { "retry-after": "1" });
      return json(res, [{ ok: true }]);
    case "/too-long":
      return json(res, { error: "come back later" }, 429, { "retry-after": "3600" });
    case "/busy":
      return json(res, { error: "busy" }, 503, { "retry-after": "5" });
    case "/unauthorized":
      return json(res, { error: "who are you" }, 401);
    case "/boom":
      return json(res, { error: "kaput" }, 500);
    case "/slow":
      setTimeout(() => json(res, []), 2_000).unref();
      return;
    case "/loop":
      return json(res, { items: [{ id: 1 }], links: { next: "/loop" } });
    case "/auth/bearer":
      return req.headers.authorization === `Bearer ${TOKEN}` ? json(res, [{ ok: "bearer" }]) : json(res, {}, 401);
    case "/auth/basic": {
      const expected = `Basic ${Buffer.from(`ingest:${PASSWORD}`).toString("base64")}`;
      return req.headers.authorization === expected ? json(res, [{ ok: "basic" }]) : json(res, {}, 401);
    }
    case "/auth/apikey":
      return req.headers["x-api-key"] === API_KEY ? json(res, [{ ok: "apikey" }]) : json(res, {}, 401);
    case "/redirect-away":
      res.writeHead(302, { location: `${otherBase}/echo` });
      return res.end();
    case "/redirect-here":
      res.writeHead(301, { location: "/auth/apikey" });
      return res.end();
    default:
      return json(res, { error: "no such route" }, 404);
  }
}

async function listen(s: Server): Promise<number> {
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  return (s.address() as AddressInfo).port;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sluice-http-"));
  server = createServer(handler);
  base = `http://127.0.0.1:${await listen(server)}`;
  other = createServer((req, res) => {
    otherHeaders.push(req.headers);
    json(res, [{ other: true }]);
  });
  otherBase = `http://127.0.0.1:${await listen(other)}`;

  // A private CA and a server certificate for 127.0.0.1, made with the real openssl.
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  ssl(
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=Sluice Test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1");
  await writeFile(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  ssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days", "1", "-extfile", "ext.cnf");
  caFile = join(dir, "ca.pem");
  tlsServer = createHttpsServer({ key: await readFile(join(dir, "srv.key")), cert: await readFile(join(dir, "srv.pem")) }, (_req, res) =>
    json(res, [{ secure: true }]),
  );
  tlsBase = `https://127.0.0.1:${await listen(tlsServer)}`;
});

afterAll(async () => {
  for (const s of [server, other, tlsServer]) {
    s?.closeAllConnections();
    await new Promise((resolve) => s?.close(resolve));
  }
  await rm(dir, { recursive: true, force: true });
});

async function collect(config: HttpSourceConfig, opts?: HttpCallOptions): Promise<HttpPage[]> {
  const pages: HttpPage[] = [];
  for await (const page of fetchPages(config, opts)) pages.push(page);
  return pages;
}

const ids = (pages: HttpPage[]) => pages.flatMap((p) => p.records ?? []).map((r) => r["id"]);

describe("pagination", () => {
  it("page numbers, stopping on the first empty page", async () => {
    const pages = await collect({
      url: `${base}/page`,
      recordsPath: "data.items",
      pagination: { type: "page", pageParam: "page", startPage: 1, pageSize: 2, pageSizeParam: "size" },
    });
    expect(pages.map((p) => p.records!.length)).toEqual([2, 2, 1, 0]);
    expect(ids(pages)).toEqual([1, 2, 3, 4, 5]);
    expect(pages[1]!.url).toBe(`${base}/page?page=2&size=2`);
  });

  it("cursor from the body sent back as a query parameter", async () => {
    const pages = await collect({
      url: `${base}/cursor`,
      recordsPath: "results",
      pagination: { type: "cursor", cursorParam: "after", cursorPath: "meta.next" },
    });
    expect(pages.map((p) => p.url)).toEqual([`${base}/cursor`, `${base}/cursor?after=c2`, `${base}/cursor?after=c4`]);
    expect(ids(pages)).toEqual([1, 2, 3, 4, 5]);
  });

  it("next link from a JSON path, relative to the current URL", async () => {
    const pages = await collect({ url: `${base}/next`, recordsPath: "items", pagination: { type: "nextLink", path: "links.next" } });
    expect(pages).toHaveLength(3);
    expect(ids(pages)).toEqual([1, 2, 3, 4, 5]);
  });

  it("next link from an RFC 5988 Link header", async () => {
    const pages = await collect({ url: `${base}/link`, pagination: { type: "nextLink" } });
    expect(pages.map((p) => p.url)).toEqual([`${base}/link`, `${base}/link?p=2`, `${base}/link?p=3`]);
    expect(ids(pages)).toEqual([1, 2, 3, 4, 5]);
    expect(parseLinkHeader('<https://a/x?p=2>; rel="next", <https://a/x?p=9>; rel="last"')).toEqual({ next: "https://a/x?p=2", last: "https://a/x?p=9" });
  });

  it("maxPages fails loudly by default and stops quietly when asked", async () => {
    const config: HttpSourceConfig = { url: `${base}/next`, recordsPath: "items", pagination: { type: "nextLink", path: "links.next" }, maxPages: 2 };
    const err = await failure(collect(config));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).toContain("maxPages=2");
    expect(await collect({ ...config, onMaxPages: "stop" })).toHaveLength(2);
  });

  it("refuses a next link that was already fetched", async () => {
    const err = await failure(collect({ url: `${base}/loop`, recordsPath: "items", pagination: { type: "nextLink", path: "links.next" } }));
    expect(err.code).toBe("BAD_INPUT");
    expect(err.message).toContain("already fetched");
  });
});

describe("pages announced by the server", () => {
  it('follows Link rel="next" without any pagination configured: all 1,000 records', async () => {
    const pages = await collect({ url: `${base}/trades/linked` });
    expect(pages).toHaveLength(10);
    expect(pages.map((p) => p.records!.length)).toEqual(Array(10).fill(100));
    expect(pages.flatMap((p) => p.records!).map((r) => r["trade_id"])).toEqual(trades.map((t) => t.trade_id));
    expect(pages[9]!.url).toBe(`${base}/trades/linked?page=10`);
    expect(pages.some((p) => p.pagesLeft)).toBe(false);
  });

  it("resolves a relative Link against the answering URL, and a total reached is no alarm", async () => {
    const pages = await collect({ url: `${base}/trades/relative`, recordsPath: "data" });
    expect(pages.map((p) => p.url)).toEqual([`${base}/trades/relative`, `${base}/trades/relative?page=2`, `${base}/trades/relative?page=3`]);
    expect(ids(pages)).toEqual(trades.slice(0, 300).map((t) => t.id));
  });

  it("a configured cursor pagination wins over the Link header", async () => {
    const pages = await collect({
      url: `${base}/trades/cursor-and-link`,
      recordsPath: "data",
      pagination: { type: "cursor", cursorParam: "after", cursorPath: "next_cursor" },
    });
    expect(pages.map((p) => p.url)).toEqual([0, 250, 500, 750].map((a) => `${base}/trades/cursor-and-link${a ? `?after=${a}` : ""}`));
    expect(ids(pages)).toEqual(trades.map((t) => t.id));
  });

  it("fails when a Link next is left unfollowed by the configured pagination", async () => {
    const err = await failure(
      collect({
        url: `${base}/trades/cursor-stale-link`,
        recordsPath: "data",
        pagination: { type: "cursor", cursorParam: "after", cursorPath: "next_cursor" },
      }),
    );
    expect(err).toMatchObject({ code: "INCOMPLETE_SOURCE", retryable: false });
    expect(err.message).toBe(
      `GET ${base}/trades/cursor-stale-link announced more records (Link rel="next", 100 read) but the configured cursor pagination stopped there; set pagination: { type: nextLink } to follow the Link header.`,
    );
  });

  it("has_more: true with no pagination fails with INCOMPLETE_SOURCE, never a quiet success", async () => {
    const err = await failure(collect({ url: `${base}/trades/has-more`, recordsPath: "data" }));
    expect(err).toMatchObject({ code: "INCOMPLETE_SOURCE", retryable: false });
    expect(err.message).toBe(
      `GET ${base}/trades/has-more announced more records (has_more: true, 100 read) but no pagination is configured; add pagination: { type: cursor, cursorParam: …, cursorPath: … }.`,
    );
  });

  it("a total above the records read fails with INCOMPLETE_SOURCE", async () => {
    const err = await failure(collect({ url: `${base}/trades/total`, recordsPath: "results" }));
    expect(err).toMatchObject({ code: "INCOMPLETE_SOURCE", details: { total: 1000, recordsRead: 100 } });
    expect(err.message).toBe(
      `GET ${base}/trades/total announced more records (total: 1000, 100 read) but no pagination is configured; add pagination: { type: page, pageParam: … } or { type: cursor, cursorParam: …, cursorPath: … }.`,
    );
  });

  it("next_page_url with no pagination fails naming the path to configure, which then reads everything", async () => {
    const err = await failure(collect({ url: `${base}/trades/laravel`, recordsPath: "data" }));
    expect(err.code).toBe("INCOMPLETE_SOURCE");
    expect(err.message).toBe(
      `GET ${base}/trades/laravel announced more records (next_page_url: "${base}/trades/laravel?page=2", 100 read) but no pagination is configured; add pagination: { type: nextLink, path: next_page_url }.`,
    );
    const pages = await collect({ url: `${base}/trades/laravel`, recordsPath: "data", pagination: { type: "nextLink", path: "next_page_url" } });
    expect(ids(pages)).toEqual(trades.map((t) => t.id));
  });

  it("a body that is the record itself is not read as paging (an invoice's total, next and page)", async () => {
    const pages = await collect({ url: `${base}/invoice` });
    expect(pages.map((p) => p.records)).toEqual([[{ id: 7, total: 250, count: 12, next: "2026-02-01", page: 1, total_pages: 4 }]]);
  });

  it("maxPages with onMaxPages: stop reads that many pages and marks the last one pagesLeft", async () => {
    const pages = await collect({ url: `${base}/trades/linked`, maxPages: 3, onMaxPages: "stop" });
    expect(pages.map((p) => p.pagesLeft ?? false)).toEqual([false, false, true]);
    expect(ids(pages)).toEqual(trades.slice(0, 300).map((t) => t.id));
    const err = await failure(collect({ url: `${base}/trades/linked`, maxPages: 3 }));
    expect(err).toMatchObject({
      code: "BAD_CONFIG",
      message: `HTTP source ${base}/trades/linked still had more pages after maxPages=3; raise maxPages or set onMaxPages: stop.`,
    });
    // Stopping exactly at the last page leaves nothing unread.
    expect((await collect({ url: `${base}/trades/linked`, maxPages: 10, onMaxPages: "stop" })).some((p) => p.pagesLeft)).toBe(false);
  });

  it("refuses a Link next on another origin, without sending it a request", async () => {
    const before = otherHeaders.length;
    const err = await failure(collect({ url: `${base}/trades/link-away`, auth: { type: "bearer", token: "env:API_TOKEN" } }, { env }));
    expect(err).toMatchObject({ code: "BAD_INPUT", retryable: false });
    expect(err.message).toBe(
      `GET ${base}/trades/link-away announced its next page on another origin (${otherBase}/trades?page=2); next links are followed only on ${base}, so point url at that server if it is the API's own.`,
    );
    expect(otherHeaders.length).toBe(before);
  });
});

describe("content types", () => {
  it("returns CSV as text for the caller to parse", async () => {
    const [page] = await collect({ url: `${base}/csv` });
    expect(page).toMatchObject({ status: 200, contentType: "text/csv", text: "id,amount\n1,10.50\n2,0.10\n" });
    expect(page!.records).toBeUndefined();
  });

  it("parses NDJSON into records", async () => {
    expect(ids(await collect({ url: `${base}/ndjson` }))).toEqual([1, 2]);
  });
});

describe("retries and failures", () => {
  it("waits out a 429 with Retry-After: 1 and then succeeds", async () => {
    const started = Date.now();
    const pages = await collect({ url: `${base}/limited` });
    expect(pages[0]!.records).toEqual([{ ok: true }]);
    const times = hits.get("/limited")!;
    expect(times).toHaveLength(2);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(950);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it("fails fast, retryable, when Retry-After exceeds maxRetryAfterMs", async () => {
    const started = Date.now();
    const err = await failure(collect({ url: `${base}/too-long` }));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("3600 s");
  });

  it("gives up after maxRetries", async () => {
    const err = await failure(collect({ url: `${base}/busy`, maxRetries: 0 }));
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.message).toContain("HTTP 503");
  });

  it("stops waiting when the AbortSignal fires", async () => {
    const started = Date.now();
    const err = await failure(collect({ url: `${base}/busy` }, { signal: AbortSignal.timeout(150) }));
    expect(err.code).toBe("CANCELLED");
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("fails fast on 401 without retrying, naming status and URL", async () => {
    const err = await failure(collect({ url: `${base}/unauthorized?page=1` }));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.retryable).toBe(false);
    expect(err.message).toBe(`GET ${base}/unauthorized?page=1 failed with HTTP 401: the credentials were missing or rejected.`);
    expect(hits.get("/unauthorized")).toHaveLength(1);
  });

  it("maps 404 to BAD_CONFIG and 500 to retryable NETWORK_ERROR", async () => {
    expect(await failure(collect({ url: `${base}/missing` }))).toMatchObject({ code: "BAD_CONFIG", retryable: false });
    expect(await failure(collect({ url: `${base}/boom` }))).toMatchObject({ code: "NETWORK_ERROR", retryable: true });
  });

  it("times out a request that does not answer", async () => {
    const err = await failure(collect({ url: `${base}/slow`, timeoutMs: 200 }));
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.message).toContain("timed out after 200 ms");
  });

  it("names host:port when the connection is refused", async () => {
    const closed = createServer();
    const port = await listen(closed);
    await new Promise((r) => closed.close(r));
    const err = await failure(collect({ url: `http://127.0.0.1:${port}/x` }));
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(err.message).toContain("connection refused");
  });

  it("refuses credentials in the URL and never echoes them", async () => {
    const err = await failure(collect({ url: `http://bob:hunter2@127.0.0.1:1/x` }));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).not.toContain("hunter2");
    expect(err.message).toContain("http://127.0.0.1:1/x");
  });
});

describe("auth", () => {
  it("sends a bearer token from an env: secret", async () => {
    const pages = await collect({ url: `${base}/auth/bearer`, auth: { type: "bearer", token: "env:API_TOKEN" } }, { env });
    expect(pages[0]!.records).toEqual([{ ok: "bearer" }]);
  });

  it("sends basic credentials with the password from an env: secret", async () => {
    const pages = await collect({ url: `${base}/auth/basic`, auth: { type: "basic", username: "ingest", password: "env:API_PASSWORD" } }, { env });
    expect(pages[0]!.records).toEqual([{ ok: "basic" }]);
  });

  it("sends an API key header read from a file: secret", async () => {
    const keyFile = join(dir, "api-key");
    await writeFile(keyFile, `${API_KEY}\n`);
    const pages = await collect({ url: `${base}/auth/apikey`, auth: { type: "apiKey", header: "X-API-Key", value: `file:${keyFile}` } });
    expect(pages[0]!.records).toEqual([{ ok: "apikey" }]);
  });

  it("rejects a literal token and a missing variable before any request", async () => {
    const literal = await failure(collect({ url: `${base}/auth/bearer`, auth: { type: "bearer", token: TOKEN } }));
    expect(literal.message).toBe("auth.token must be a secret reference (env:NAME or file:PATH), not a literal value");
    const missing = await failure(collect({ url: `${base}/auth/bearer`, auth: { type: "bearer", token: "env:NOPE_NOT_SET" } }, { env }));
    expect(missing.code).toBe("BAD_CONFIG");
    expect(missing.message).toContain("NOPE_NOT_SET");
  });

  it("follows same-origin redirects with credentials, drops them on a cross-origin redirect", async () => {
    const keyFile = join(dir, "api-key2");
    await writeFile(keyFile, API_KEY);
    const auth = { type: "apiKey" as const, header: "X-API-Key", value: `file:${keyFile}` };
    expect((await collect({ url: `${base}/redirect-here`, auth }))[0]!.records).toEqual([{ ok: "apikey" }]);
    const pages = await collect({ url: `${base}/redirect-away`, auth });
    expect(pages[0]!.records).toEqual([{ other: true }]);
    expect(otherHeaders.at(-1)!["x-api-key"]).toBeUndefined();
  });
});

describe("TLS and probe", () => {
  it("trusts a private CA given as caFile, and only then", async () => {
    const trusted = await probeHttp({ url: `${tlsBase}/health`, caFile });
    expect(trusted).toMatchObject({ ok: true, status: 200, tls: true });
    const pages = await collect({ url: `${tlsBase}/data`, caFile });
    expect(pages[0]!.records).toEqual([{ secure: true }]);

    const untrusted = await probeHttp({ url: `${tlsBase}/health` });
    expect(untrusted.ok).toBe(false);
    expect(untrusted.tls).toBe(false);
    expect(untrusted.error).toMatch(/TLS verification of 127\.0\.0\.1:\d+ failed/);
    const err = await failure(collect({ url: `${tlsBase}/data` }));
    expect(err).toMatchObject({ code: "BAD_CONFIG", retryable: false });
  });

  it("reports plain http status and timing without throwing", async () => {
    const ok = await probeHttp({ url: `${base}/csv` });
    expect(ok).toMatchObject({ ok: true, status: 200, tls: false });
    expect(ok.elapsedMs).toBeGreaterThanOrEqual(0);
    expect(await probeHttp({ url: `${base}/unauthorized` })).toMatchObject({
      ok: false,
      status: 401,
      error: `GET ${base}/unauthorized failed with HTTP 401: the credentials were missing or rejected.`,
    });
  });
});

describe("parseRetryAfter", () => {
  it("reads seconds and HTTP-dates", () => {
    const now = Date.parse("2025-01-01T00:00:00Z");
    expect(parseRetryAfter("1", now)).toBe(1000);
    expect(parseRetryAfter("Wed, 01 Jan 2025 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Tue, 31 Dec 2024 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});

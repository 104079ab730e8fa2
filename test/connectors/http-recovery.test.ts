/**
 * What the HTTP source tells failure analysis, against the flaky API sample server: the evidence
 * in every failure's details, truncated bodies (connection closed before Content-Length, JSON cut
 * mid-way) refused and classified, Retry-After short (waited) and long (raised at once), and a
 * walk resumed part-way.
 */
import { describe, expect, it } from "vitest";
import { endsOpen, fetchPages, type HttpCallOptions, type HttpPage, type HttpSourceConfig } from "../../src/connectors/http.js";
import { failure, flakyApis } from "../helpers.js";

const serve = flakyApis();

/** Walk the source; the pages yielded before a failure are kept in `got`. */
async function walk(config: HttpSourceConfig, opts: HttpCallOptions = {}, got: HttpPage[] = []): Promise<HttpPage[]> {
  for await (const p of fetchPages(config, opts)) got.push(p);
  return got;
}
const ids = (pages: HttpPage[]) => pages.flatMap((p) => p.records!.map((r) => r["trade_id"] as number));

describe("HTTP failure evidence", () => {
  it("a 5xx carries status, masked url, page and latency", async () => {
    const api = await serve("fail status=503 pages=4-");
    const got: HttpPage[] = [];
    const err = await failure(walk({ url: api.url, maxRetries: 0 }, {}, got));
    expect(got.map((p) => p.page)).toEqual([1, 2, 3]);
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("HTTP 503");
    expect(err.details).toMatchObject({ status: 503, page: 4, url: `${api.url}?page=4`, latencyMs: expect.any(Number) });
    expect(api.stats().pages["4"]).toBe(1);
  });

  it("401 is not retryable, asked once, with its evidence", async () => {
    const api = await serve("fail status=401");
    const err = await failure(walk({ url: api.url }));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("HTTP 401: the credentials were missing or rejected");
    expect(err.details).toMatchObject({ status: 401, page: 1, url: api.url, latencyMs: expect.any(Number) });
    expect(api.stats().requests).toBe(1);
  });

  it("a hang times out with timedOut, the page and the time waited", async () => {
    const api = await serve("hang pages=5");
    const started = Date.now();
    const err = await failure(walk({ url: api.url, timeoutMs: 400 }));
    expect(Date.now() - started).toBeLessThan(3000);
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.message).toContain("timed out after 400 ms");
    expect(err.details).toMatchObject({ timedOut: true, timeoutMs: 400, page: 5, url: `${api.url}?page=5` });
    expect(err.details!["latencyMs"]).toBeGreaterThanOrEqual(390);
  });
});

describe("Retry-After", () => {
  it("short: waited out, the walk completes", async () => {
    const api = await serve("fail status=429 retry-after=1 times=2");
    const started = Date.now();
    const pages = await walk({ url: api.url });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect(ids(pages)).toHaveLength(1000);
    expect(api.stats().pages["1"]).toBe(3);
  });

  it("longer than maxRetryAfterMs: raised at once with retryAfterSeconds", async () => {
    const api = await serve("fail status=429 retry-after=3600 pages=3");
    const started = Date.now();
    const err = await failure(walk({ url: api.url }));
    expect(Date.now() - started).toBeLessThan(1500);
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("retry after 3600 s");
    expect(err.details).toMatchObject({ status: 429, retryAfterSeconds: 3600, retryAfterMs: 3_600_000, page: 3, url: `${api.url}?page=3` });
    expect(api.stats().pages["3"]).toBe(1);
  });

  it("persisting past maxRetries: the Retry-After seen is in the details", async () => {
    const api = await serve("fail status=503 retry-after=0 pages=2");
    const err = await failure(walk({ url: api.url, maxRetries: 2 }));
    expect(err.message).toContain("persisted after 2 retries");
    expect(err.details).toMatchObject({ status: 503, retryAfterSeconds: 0, retries: 2, page: 2 });
    expect(api.stats().pages["2"]).toBe(3);
  });
});

describe("truncated bodies", () => {
  it("a connection closed at 1200 of 5000 bytes: INCOMPLETE_RESPONSE, retryable, the page never yielded", async () => {
    const api = await serve("truncate pages=5 times=1 declare=5000 send=1200");
    const got: HttpPage[] = [];
    const err = await failure(walk({ url: api.url }, {}, got));
    expect(got.map((p) => p.page)).toEqual([1, 2, 3, 4]);
    expect(err.code).toBe("INCOMPLETE_RESPONSE");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("closed after 1200 bytes of 5000 declared");
    expect(err.details).toMatchObject({ truncated: true, bytesDeclared: 5000, bytesReceived: 1200, page: 5, url: `${api.url}?page=5`, status: 200 });
  });

  it("a JSON body cut mid-way: INCOMPLETE_RESPONSE with the bytes, not BAD_INPUT", async () => {
    const api = await serve("cut-json pages=6 times=1");
    const got: HttpPage[] = [];
    const err = await failure(walk({ url: api.url }, {}, got));
    expect(got).toHaveLength(5);
    expect(err.code).toBe("INCOMPLETE_RESPONSE");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("the JSON ends mid-way");
    expect(err.details).toMatchObject({ truncated: true, page: 6, url: `${api.url}?page=6` });
    expect(err.details!["bytesReceived"]).toBe(err.details!["bytesDeclared"]);
    // The second request gets the whole page: a retry is the right answer.
    expect(ids(await walk({ url: api.url }))).toHaveLength(1000);
  });

  it("tells a cut JSON text from a malformed one", () => {
    expect(endsOpen('[{"a":1},{"b":"x')).toBe(true);
    expect(endsOpen('[{"a":1},{"b":')).toBe(true);
    expect(endsOpen('{"a":"\\"]')).toBe(true);
    expect(endsOpen('[{"a":1}]]')).toBe(false);
    expect(endsOpen("not json")).toBe(false);
  });
});

describe("resume", () => {
  it("starts at the given page and fetches none before it", async () => {
    const api = await serve("truncate pages=5 times=1");
    const first: HttpPage[] = [];
    await failure(walk({ url: api.url }, {}, first));
    const last = first.at(-1)!;
    expect(last.next).toBe(`${api.url}?page=5`);
    const rest = await walk({ url: api.url }, { resume: { url: last.next!, page: last.page + 1, recordsRead: 400 } });
    expect(rest.map((p) => p.page)).toEqual([5, 6, 7, 8, 9, 10]);
    expect(rest.at(-1)!.next).toBeUndefined();
    expect([...ids(first), ...ids(rest)]).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(api.stats().pages).toEqual({ "1": 1, "2": 1, "3": 1, "4": 1, "5": 2, "6": 1, "7": 1, "8": 1, "9": 1, "10": 1 });
  });

  it("refuses a resume URL on another origin", async () => {
    const api = await serve("");
    const err = await failure(walk({ url: api.url }, { resume: { url: "http://127.0.0.2:1/trades?page=3", page: 3, recordsRead: 200 } }));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).toContain("resumes only where it started");
    expect(api.stats().requests).toBe(0);
  });
});

/**
 * The flaky API sample server: each clause of a plan does what it says, seen from a real client
 * (fetch, and a raw socket where fetch would hide the bytes).
 */
import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { parseFlakyPlan, startFlakyApi, type FlakyApi } from "../../src/samples/flaky-api.js";
import { SluiceError } from "../../src/errors.js";
import { sluice, sluiceAsync } from "../cli/cli-helpers.js";
import { scratch } from "../helpers.js";

const fresh = scratch();

const open: FlakyApi[] = [];
afterEach(async () => {
  for (const api of open.splice(0)) await api.close();
});
async function serve(plan: string, asOf = "2026-03-01T12:00:00Z") {
  const api = await startFlakyApi({ plan, asOf });
  open.push(api);
  return api;
}
const page = (api: FlakyApi, n: number, extra = "") => fetch(`${api.url}?page=${n}${extra}`);
type Trade = { trade_id: number; price?: string; px?: string; updated_at: string; executed_at: string; symbol: string; quantity: number };
const body = async (r: Response) => (await r.json()) as Trade[];

/** Status, declared length and bytes received of one GET, read off the socket. */
function rawGet(url: string): Promise<{ status: number; declared: number; received: number; closedEarly: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      let received = 0;
      res.on("data", (c: Buffer) => (received += c.length));
      const done = (closedEarly: boolean) => resolve({ status: res.statusCode!, declared: Number(res.headers["content-length"]), received, closedEarly });
      res.on("end", () => done(false));
      res.on("aborted", () => done(true));
      res.on("error", () => done(true));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("flaky API sample server", () => {
  it("serves ids 1..1000 over 10 pages linked by Link rel=next, as trade records", async () => {
    const api = await serve("");
    const ids: number[] = [];
    let url: string | undefined = `${api.url}?page=1`;
    let pages = 0;
    while (url) {
      const r = await fetch(url);
      expect(r.status).toBe(200);
      const rows = await body(r);
      ids.push(...rows.map((t) => t.trade_id));
      pages++;
      url = /<([^>]+)>;\s*rel="next"/.exec(r.headers.get("link") ?? "")?.[1];
    }
    expect(pages).toBe(10);
    expect(ids).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    const [first] = await body(await page(api, 1));
    expect(first).toMatchObject({ trade_id: 1, symbol: expect.stringMatching(/^[A-Z]+$/), quantity: expect.any(Number) });
    expect(first!.price).toMatch(/^\d+\.\d{4}$/);
    expect(first!.updated_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // The newest record is updated at asOf.
    const last = await body(await page(api, 10));
    expect(last.at(-1)!.updated_at).toBe("2026-03-01T12:00:00.000Z");
    expect(api.stats().pages).toMatchObject({ "1": 2, "10": 2 });
  });

  it("honours page_size and keeps it in the next link", async () => {
    const api = await serve("records=50");
    const r = await page(api, 2, "&page_size=20");
    expect((await body(r)).map((t) => t.trade_id)).toEqual(Array.from({ length: 20 }, (_, i) => 21 + i));
    expect(r.headers.get("link")).toContain("page=3&page_size=20");
    const end = await page(api, 3, "&page_size=20");
    expect((await body(end)).length).toBe(10);
    expect(end.headers.get("link")).toBeNull();
  });

  it("pages 1-3 then 503 forever", async () => {
    const api = await serve("fail status=503 pages=4-");
    for (const n of [1, 2, 3]) expect((await page(api, n)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await page(api, 4)).status).toBe(503);
    expect((await page(api, 9)).status).toBe(503);
    expect(api.stats()).toMatchObject({ requests: 7, pages: { "4": 3, "9": 1 }, statuses: { "200": 3, "503": 4 } });
    const stats = (await (await fetch(api.url.replace("/trades", "/_stats"))).json()) as { pages: Record<string, number> };
    expect(stats.pages["4"]).toBe(3);
  });

  it("429 with Retry-After for the first K requests, then answers", async () => {
    const api = await serve("fail status=429 retry-after=2 times=2");
    const a = await page(api, 1);
    const b = await page(api, 1);
    expect([a.status, b.status]).toEqual([429, 429]);
    expect(a.headers.get("retry-after")).toBe("2");
    expect((await page(api, 1)).status).toBe(200);
    expect(api.stats().faults).toEqual([{ rule: 0, kind: "fail", applied: 2 }]);
  });

  it("401 always", async () => {
    const api = await serve("fail status=401");
    for (const n of [1, 2, 5]) {
      const r = await page(api, n);
      expect(r.status).toBe(401);
      expect(r.headers.get("www-authenticate")).toContain("Bearer");
    }
  });

  it("hang: page 5 does not answer within a second; the next request to it does (times=1)", async () => {
    const api = await serve("hang pages=5 times=1");
    const outcome = await fetch(`${api.url}?page=5`, { signal: AbortSignal.timeout(1000) }).then(
      () => "answered",
      (err: Error) => err.name,
    );
    expect(outcome).toBe("TimeoutError");
    expect((await page(api, 4)).status).toBe(200);
    expect((await page(api, 5)).status).toBe(200);
    expect(api.stats().pages["5"]).toBe(2);
  });

  it("truncate: Content-Length 5000, the connection closed after 1200 bytes, for the first K requests", async () => {
    const api = await serve("truncate pages=5 times=1 declare=5000 send=1200");
    const cut = await rawGet(`${api.url}?page=5`);
    expect(cut).toMatchObject({ status: 200, declared: 5000, received: 1200, closedEarly: true });
    const whole = await rawGet(`${api.url}?page=5`);
    expect(whole.closedEarly).toBe(false);
    expect(whole.received).toBe(whole.declared);
  });

  it("cut-json: a complete response whose JSON stops mid-way", async () => {
    const api = await serve("cut-json pages=6 times=1");
    const r = await page(api, 6);
    const text = await r.text();
    expect(Number(r.headers.get("content-length"))).toBe(Buffer.byteLength(text));
    expect(() => JSON.parse(text)).toThrow();
    expect(text.startsWith('[{"trade_id":501')).toBe(true);
    expect((await body(await page(api, 6))).length).toBe(100);
  });

  it("rename: price is px from page P on", async () => {
    const api = await serve("rename from=price to=px pages=3-");
    const [p2] = await body(await page(api, 2));
    const [p3] = await body(await page(api, 3));
    expect(p2).toHaveProperty("price");
    expect(p3).not.toHaveProperty("price");
    expect(p3!.px).toMatch(/^\d+\.\d{4}$/);
    expect(Object.keys(p3!)).toEqual(["trade_id", "symbol", "px", "quantity", "executed_at", "updated_at"]);
  });

  it("slow: the matching pages answer after the delay, the same bytes; other pages at once", async () => {
    const api = await serve("slow ms=300 pages=2");
    const plain = await serve("");
    const t0 = performance.now();
    const slowBody = await (await page(api, 2)).text();
    const slowMs = performance.now() - t0;
    const t1 = performance.now();
    await (await page(api, 3)).text();
    expect(slowMs).toBeGreaterThanOrEqual(290);
    expect(performance.now() - t1).toBeLessThan(slowMs);
    expect(slowBody).toBe(await (await page(plain, 2)).text());
    expect(api.stats().faults).toEqual([{ rule: 0, kind: "slow", applied: 1 }]);
    expect(() => parseFlakyPlan("slow pages=2")).toThrow(/a slow fault needs ms=MILLISECONDS/);
  });

  it("stale: every timestamp D days behind", async () => {
    const fresh = await serve("");
    const stale = await serve("stale-days=2");
    const f = await body(await page(fresh, 1, "&page_size=1000"));
    const s = await body(await page(stale, 1, "&page_size=1000"));
    expect(s).toHaveLength(1000);
    for (let i = 0; i < f.length; i++) {
      expect(Date.parse(f[i]!.updated_at) - Date.parse(s[i]!.updated_at)).toBe(2 * 86_400_000);
      expect(Date.parse(f[i]!.executed_at) - Date.parse(s[i]!.executed_at)).toBe(2 * 86_400_000);
      expect(s[i]!.price).toBe(f[i]!.price);
    }
  });

  it("variant: two servers disagree on exactly the given ids", async () => {
    const a = await serve("");
    const b = await serve("variant=501-505,900-904");
    const ra = await body(await page(a, 1, "&page_size=1000"));
    const rb = await body(await page(b, 1, "&page_size=1000"));
    const differ = ra.filter((r, i) => JSON.stringify(r) !== JSON.stringify(rb[i])).map((r) => r.trade_id);
    expect(differ).toEqual([501, 502, 503, 504, 505, 900, 901, 902, 903, 904]);
    expect(Date.parse(rb[500]!.updated_at)).toBeGreaterThan(Date.parse(ra[500]!.updated_at));
  });

  it("ids: serves only the range, pages stay windows of the id domain", async () => {
    const api = await serve("ids=301-1000");
    const p1 = await page(api, 1);
    expect(await body(p1)).toEqual([]);
    expect(p1.headers.get("link")).toContain("page=2");
    expect((await body(await page(api, 4)))[0]!.trade_id).toBe(301);
    const all = await body(await page(api, 1, "&page_size=1000"));
    expect(all.length).toBe(700);
  });

  it("the same plan and asOf give the same bytes", async () => {
    const a = await serve("variant=7");
    const b = await serve("variant=7");
    expect(await (await page(a, 3)).text()).toBe(await (await page(b, 3)).text());
  });

  it("accepts a JSON plan and refuses a wrong one with a sentence", async () => {
    expect(parseFlakyPlan('{"ids":"301-1000","faults":[{"kind":"fail","status":503,"pages":"4-"}]}')).toEqual({
      ids: { from: 301, to: 1000 },
      faults: [{ kind: "fail", status: 503, pages: { from: 4, to: null } }],
    });
    expect(() => parseFlakyPlan("explode pages=3")).toThrow(SluiceError);
    expect(() => parseFlakyPlan("explode pages=3")).toThrow(/a fault is one of fail, hang/);
    expect(() => parseFlakyPlan("fail pages=3")).toThrow(/status=400…599/);
    expect(() => parseFlakyPlan("hang pages=0")).toThrow(/pages count from 1/);
    expect(() => parseFlakyPlan("hang colour=red")).toThrow(/not a setting of hang/);
  });
});

describe("sluice sample flaky-api", () => {
  it("serves the plan until SIGTERM, printing where", async () => {
    const cwd = fresh("sluice-flaky-cli-");
    const child = sluiceAsync(["sample", "flaky-api", "--plan", "ids=1-50; fail status=401 pages=2"], { cwd });
    try {
      let out = "";
      child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
      const end = Date.now() + 15_000;
      while (!/on (http:\S+)/.test(out) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      const url = /on (http:\S+)/.exec(out)![1]!;
      expect(out).toContain("1000 ids, 10 pages");
      expect((await (await fetch(`${url}?page=1`)).json()) as unknown[]).toHaveLength(50);
      expect((await fetch(`${url}?page=2`)).status).toBe(401);
      const exit = new Promise<number | null>((r) => child.once("exit", r));
      child.kill("SIGTERM");
      expect(await exit).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 30_000);

  it("refuses a bad plan with one sentence and exit code 2", async () => {
    const cwd = fresh("sluice-flaky-cli-");
    const r = sluice(["sample", "flaky-api", "--plan", "explode pages=3"], { cwd });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      'sluice: flaky API plan: clause "explode pages=3" starts with "explode"; a fault is one of fail, hang, truncate, cut-json, rename, slow, a setting is key=value.',
    );
  });
});

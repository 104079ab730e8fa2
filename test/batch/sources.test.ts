/**
 * The standard ingestion actions against the other kinds of source: a table on the real
 * PostgreSQL server, and a paginated JSON API behind a bearer token on a local HTTP server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import pg from "pg";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createRun, executeRun, runDetail } from "../../src/engine/index.js";
import { loadWorkflowFile } from "../../src/spec/load.js";
import type { Workflow } from "../../src/spec/schema.js";
import { scratch, testEnv, workflow, type TestEnv } from "../helpers.js";
import { ROOT } from "../cli/cli-helpers.js";

const PG_URL = "postgres://postgres@127.0.0.1:5432/test";
const fresh = scratch();
let env: TestEnv;
let standard: Workflow;
beforeAll(async () => {
  env = testEnv();
  const loaded = await loadWorkflowFile(join(ROOT, "workflows", "base-data-ingestion-workflow-standard-ingestion.yaml"), { actions: env.actions });
  standard = loaded.workflows[0]!.workflow;
});
afterAll(async () => env.cleanup());

async function run(wf: Workflow, params: Record<string, string>) {
  const created = await createRun(env.store, { workflow: wf, params });
  const r = await executeRun(created.id, { store: env.store, actions: env.actions, home: env.home });
  const d = await runDetail(env.store, created.id);
  return { run: r, detail: d, out: (step: string) => d.steps.find((s) => s.name === step)!.outputs! };
}

describe("a PostgreSQL table as the source", () => {
  const table = `src_${process.pid}_${Date.now()}`;
  beforeAll(async () => {
    const c = new pg.Client(PG_URL);
    await c.connect();
    await c.query(`CREATE TABLE "${table}" (trade_id text, executed_at timestamptz, symbol text, side text, quantity bigint,
      price numeric(18,4), account text, trader_email text, notes text)`);
    await c.query(`INSERT INTO "${table}" SELECT 'P-' || i, timestamptz '2026-11-02 09:30:00+01' + i * interval '1.5 second',
      'AAPL', CASE WHEN i % 2 = 0 THEN 'BUY' ELSE 'SELL' END, i % 100 + 1, 100 + i / 10000.0, 'ACC-1001', NULL, 'a, "quoted"' || chr(10) || 'note'
      FROM generate_series(1, 1500) AS i`);
    await c.end();
  });
  afterAll(async () => {
    const c = new pg.Client(PG_URL);
    await c.connect();
    await c.query(`DROP TABLE IF EXISTS "${table}"`);
    await c.end();
  });

  it("streams the table through typing, quality and storage with exact values", async () => {
    const warehouse = join(fresh("sluice-src-pg-"), "w.db");
    const r = await run(standard, { source: `${PG_URL}?table=${table}`, destination: `sqlite:${warehouse}`, table: "trades" });
    expect(r.run.status, JSON.stringify(r.run.error)).toBe("succeeded");
    expect(r.out("source-validation")).toMatchObject({ kind: "postgres", available: true });
    expect(r.out("data-collection")).toMatchObject({ records: 1500 });
    expect(r.out("data-storage")).toMatchObject({ rowsIn: 1500, rowsStored: 1500, rowsQuarantined: 0 });
    const db = new Database(warehouse, { readonly: true });
    const row = db.prepare("SELECT * FROM trades WHERE trade_id = 'P-1'").get() as Record<string, unknown>;
    db.close();
    expect(row).toMatchObject({ executed_at: "2026-11-02T08:30:01.500Z", price: 100.0001, quantity: 2, notes: 'a, "quoted"\nnote', trader_email: null });
  });
});

describe("a paginated JSON API as the source", () => {
  let server: Server;
  let base: string;
  const TOKEN = "s3cret-token";
  const trade = (i: number) => ({
    trade_id: `H-${i}`,
    executed_at: `2026-11-02T10:00:${String(i % 60).padStart(2, "0")}+02:00`,
    symbol: "MSFT",
    side: "SELL",
    quantity: i,
    price: `${i}.5`,
    account: "ACC-1002",
    trader_email: "x.y@example.com",
    notes: null,
  });
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401).end();
        return;
      }
      const page = Number(new URL(req.url!, "http://x").searchParams.get("page") ?? "1");
      const data = page <= 3 ? Array.from({ length: 100 }, (_, k) => trade((page - 1) * 100 + k + 1)) : [];
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ data, next: page < 3 ? `/trades?page=${page + 1}` : null }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  /** The standard workflow's steps, with the API's auth and paging in the collection step. */
  function apiWorkflow(tokenRef: string): Workflow {
    const steps = standard.spec.steps.map((s) => {
      const auth = { type: "bearer", token: tokenRef };
      if (s.name === "data-collection") return { ...s, with: { ...s.with, auth, recordsPath: "data", pagination: { type: "nextLink", path: "next" } } };
      if (s.name === "source-validation" || s.name === "connection-establishment") return { ...s, with: { ...s.with, auth } };
      return s;
    });
    return workflow({ ...standard.spec, steps }, env.actions);
  }

  it("follows next links with a bearer token from a secret reference and stores every record", async () => {
    process.env.SLUICE_TEST_API_TOKEN = TOKEN;
    const warehouse = join(fresh("sluice-src-http-"), "w.db");
    const r = await run(apiWorkflow("env:SLUICE_TEST_API_TOKEN"), { source: `${base}/trades?page=1`, destination: `sqlite:${warehouse}`, table: "api" });
    expect(r.run.status, JSON.stringify(r.run.error)).toBe("succeeded");
    expect(r.out("connection-establishment")).toMatchObject({ kind: "http", secure: false });
    expect(r.out("data-storage")).toMatchObject({ rowsIn: 300, rowsStored: 300 });
    const db = new Database(warehouse, { readonly: true });
    expect(db.prepare("SELECT executed_at, price FROM api WHERE trade_id = 'H-61'").get()).toEqual({ executed_at: "2026-11-02T08:00:01.000Z", price: 61.5 });
    db.close();
  });

  it("fails source validation at once, without retries, when the token is refused", async () => {
    process.env.SLUICE_TEST_API_TOKEN = "wrong";
    const r = await run(apiWorkflow("env:SLUICE_TEST_API_TOKEN"), { source: `${base}/trades?page=1`, table: "api" });
    expect(r.run.status).toBe("failed");
    const v = r.detail.steps.find((s) => s.name === "source-validation")!;
    expect(v.attempts).toHaveLength(1);
    expect(v.attempts[0]!.error).toMatchObject({ code: "BAD_CONFIG", message: expect.stringMatching(/401/) });
    expect(JSON.stringify(r.detail)).not.toContain("wrong"); // the secret never reaches the store
  });
});

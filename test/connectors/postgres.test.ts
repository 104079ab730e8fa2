import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SluiceError } from "../../src/errors.js";
import {
  pgTimestampToIso,
  probePostgres,
  quoteTableName,
  readPostgres,
  type PgRow,
  type PostgresCallOptions,
  type PostgresSourceConfig,
} from "../../src/connectors/postgres.js";
import { failure } from "../helpers.js";

const URL_ = "postgres://postgres@127.0.0.1:5432/test";
const suffix = randomUUID().replace(/-/g, "").slice(0, 12);
const table = `sluice_conn_${suffix}`;
const ROWS = 10_000;
const BIG = 9_007_199_254_740_993n; // 2^53 + 1: not representable as a JS number
const T0 = Date.UTC(2024, 0, 1);

let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: URL_ });
  await admin.connect();
  await admin.query(`create table ${table} (
    id integer primary key,
    amount numeric(20,6) not null,
    created_at timestamptz not null,
    big bigint not null,
    label text,
    blob bytea
  )`);
  // Timestamps are written at +02:00 on purpose: the connector must hand them back in UTC.
  await admin.query(
    `insert into ${table}
     select i,
            (i::numeric * 1000000000 + 0.123456),
            ('2024-01-01 02:00:00+02'::timestamptz + make_interval(secs => i)),
            $1::bigint + i,
            'row ' || i,
            case when i = 1 then '\\xdeadbeef'::bytea end
     from generate_series(1, ${ROWS}) as i`,
    [BIG.toString()],
  );
});

afterAll(async () => {
  await admin?.query(`drop table if exists ${table}`);
  await admin?.end();
});

/**
 * Backends connected under an application name: the proof that nothing leaked. A closed
 * client's backend exits a moment after its socket closes, so poll briefly for the expected count.
 */
async function openClients(app: string, expected = 0): Promise<number> {
  for (let i = 0; ; i++) {
    const r = await admin.query<{ n: string }>("select count(*) as n from pg_stat_activity where application_name = $1", [app]);
    const n = Number(r.rows[0]!.n);
    if (n === expected || i >= 40) return n;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function readAll(config: PostgresSourceConfig, opts?: PostgresCallOptions): Promise<PgRow[][]> {
  const batches: PgRow[][] = [];
  for await (const b of readPostgres(config, opts)) batches.push(b);
  return batches;
}

describe("readPostgres", () => {
  it("streams every row in batches with exact, JSON-safe values, then closes the client", async () => {
    const app = `sluice-test-${randomUUID()}`;
    const batches = await readAll({ url: URL_, table: `public.${table}`, batchSize: 1000, applicationName: app });
    expect(batches).toHaveLength(10);
    expect(batches.every((b) => b.length === 1000)).toBe(true);
    const rows = batches.flat().sort((a, b) => (a["id"] as number) - (b["id"] as number));
    expect(rows).toHaveLength(ROWS);
    for (const row of rows) {
      const i = row["id"] as number;
      expect(row["amount"]).toBe(`${i}000000000.123456`);
      expect(row["created_at"]).toBe(new Date(T0 + i * 1000).toISOString());
      expect(row["big"]).toBe((BIG + BigInt(i)).toString());
      expect(row["label"]).toBe(`row ${i}`);
    }
    expect(rows[0]!["blob"]).toBe(Buffer.from("deadbeef", "hex").toString("base64"));
    expect(rows[1]!["blob"]).toBeNull();
    expect(JSON.parse(JSON.stringify(rows[0]))).toEqual(rows[0]);
    expect(await openClients(app)).toBe(0);
  });

  it("closes the cursor and client when the caller breaks out early", async () => {
    const app = `sluice-test-${randomUUID()}`;
    let seen = 0;
    for await (const batch of readPostgres({ url: URL_, table, batchSize: 500, applicationName: app })) {
      seen += batch.length;
      expect(await openClients(app, 1)).toBe(1); // the reading client is really there while we read
      break;
    }
    expect(seen).toBe(500);
    expect(await openClients(app)).toBe(0);
  });

  it("closes the client and reports CANCELLED when the signal aborts mid-read", async () => {
    const app = `sluice-test-${randomUUID()}`;
    const controller = new AbortController();
    let batches = 0;
    const err = await failure(
      (async () => {
        for await (const _batch of readPostgres({ url: URL_, table, batchSize: 1000, applicationName: app }, { signal: controller.signal })) {
          batches++;
          controller.abort();
        }
      })(),
    );
    expect(err.code).toBe("CANCELLED");
    expect(batches).toBeLessThan(10);
    expect(await openClients(app)).toBe(0);
  });

  it("runs a query with parameters, keeping microseconds and normalising to UTC", async () => {
    const batches = await readAll({
      url: URL_,
      query: "select id, '2024-06-30 23:59:59.123456-05'::timestamptz as ts, '2024-02-29'::date as d from " + table + " where id <= $1 order by id",
      params: [3],
    });
    expect(batches.flat()).toEqual([1, 2, 3].map((id) => ({ id, ts: "2024-07-01T04:59:59.123456Z", d: "2024-02-29" })));
  });

  it("quotes table names so they cannot carry SQL", async () => {
    expect(quoteTableName("orders")).toBe('"orders"');
    expect(quoteTableName("sales.Orders")).toBe('"sales"."Orders"');
    expect(quoteTableName('"odd.schema"."we""ird"')).toBe('"odd.schema"."we""ird"');
    expect(() => quoteTableName("a.b.c")).toThrow(SluiceError);
    expect(() => quoteTableName("a..b")).toThrow(/empty/);
    const err = await failure(readAll({ url: URL_, table: `${table}; drop table ${table}` }));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).toContain("does not exist");
    const still = await admin.query(`select count(*)::int as n from ${table}`);
    expect(still.rows[0].n).toBe(ROWS);
  });

  it("requires exactly one of table and query, and refuses a literal password in the URL", async () => {
    expect(await failure(readAll({ url: URL_ }))).toMatchObject({ code: "BAD_CONFIG" });
    expect(await failure(readAll({ url: URL_, table, query: "select 1" }))).toMatchObject({ code: "BAD_CONFIG" });
    const err = await failure(readAll({ url: "postgres://postgres:hunter2@127.0.0.1:5432/test", table }));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).not.toContain("hunter2");
    expect(err.message).toContain("postgres://127.0.0.1:5432/test");
  });

  it("reads the URL from a secret reference", async () => {
    const batches = await readAll({ url: "env:SLUICE_TEST_PG_URL", query: "select 41 + 1 as answer" }, { env: { SLUICE_TEST_PG_URL: URL_ } });
    expect(batches).toEqual([[{ answer: 42 }]]);
  });
});

describe("probePostgres", () => {
  it("reports server version and ssl off for sslmode=disable", async () => {
    const r = await probePostgres({ url: `${URL_}?sslmode=disable` });
    expect(r.ok).toBe(true);
    expect(r.serverVersion).toMatch(/^\d+/);
    expect(r.ssl).toBe(false);
    expect(r.elapsedMs).toBeGreaterThan(0);
  });

  it("falls back to plain for sslmode=prefer on a server without SSL", async () => {
    expect(await probePostgres({ url: `${URL_}?sslmode=prefer` })).toMatchObject({ ok: true, ssl: false });
  });

  it("reports, without throwing, a server that cannot do sslmode=require", async () => {
    const ssl = await admin.query<{ ssl: string }>("show ssl");
    const r = await probePostgres({ url: `${URL_}?sslmode=require` });
    if (ssl.rows[0]!.ssl === "on") {
      expect(r).toMatchObject({ ok: true, ssl: true });
    } else {
      expect(r.ok).toBe(false);
      expect(r.error).toContain("does not support SSL");
    }
  });

  it("names host:port when nothing listens", async () => {
    const r = await probePostgres({ url: "postgres://postgres@127.0.0.1:1/test" });
    expect(r.ok).toBe(false);
    expect(r.error).toBe("PostgreSQL at 127.0.0.1:1 failed while probing: connection refused.");
  });

  it("rejects an unknown sslmode as configuration", async () => {
    await expect(probePostgres({ url: `${URL_}?sslmode=sometimes` })).rejects.toMatchObject({ code: "BAD_CONFIG" });
  });
});

describe("pgTimestampToIso", () => {
  it("maps PostgreSQL text timestamps to ISO-8601 UTC", () => {
    expect(pgTimestampToIso("2024-01-01 00:00:00+00")).toBe("2024-01-01T00:00:00.000Z");
    expect(pgTimestampToIso("2024-01-01 00:00:00.5+00")).toBe("2024-01-01T00:00:00.500Z");
    expect(pgTimestampToIso("2024-01-01 00:00:00.000001+00")).toBe("2024-01-01T00:00:00.000001Z");
    expect(pgTimestampToIso("2024-01-01 02:00:00.25+02")).toBe("2024-01-01T00:00:00.250Z");
    expect(pgTimestampToIso("2024-01-01 12:00:00")).toBe("2024-01-01T12:00:00.000Z");
    expect(pgTimestampToIso("infinity")).toBe("infinity");
  });
});

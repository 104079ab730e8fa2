/**
 * reconstruct_from_multiple_sources and validate_and_store_recovered_data over real sources (a
 * local paginated API, a CSV file, a PostgreSQL table) into real SQLite and PostgreSQL
 * destinations. Tests 8 and 9 of issue 11: two fallbacks disagreeing on 10 keys (priority holds,
 * the conflict report lists exactly those 10), the gaps [201–250] and [501–1000] filled with
 * per-row provenance, 0 gaps after, a rerun storing 0 rows; and resuming where the primary's
 * pagination stopped instead of from page 1.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import pg from "pg";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { actionContext, failure, scratch } from "../helpers.js";
import { PG_URL, pgSchema } from "../stores.js";
import { reconstructFromMultipleSources } from "../../src/actions/recovery/reconstruct.js";
import { validateAndStoreRecoveredData } from "../../src/actions/recovery/store-recovered.js";
import type { ConflictReport, GapLedger, SourceCandidate, SourceRanking } from "../../src/actions/recovery/contract.js";
import type { PageManifest } from "../../src/actions/recovery/gaps.js";
import { fillDestination, item, itemsCsv, range, startPagedApi, type Item, type PagedApi } from "./sources.js";

const fresh = scratch();
const now = Date.now();
const DISAGREE = [205, 206, 207, 208, 209, 600, 601, 602, 603, 604];
let dir: string;
let primary: PagedApi;
let apiB: PagedApi;
let csvC: string;

const all = range(1, 1000).map((id) => item(id, now));
/** C holds the same rows, except a different amount for the 10 keys of DISAGREE. */
const cRows: Item[] = all.map((i) => (DISAGREE.includes(i.id) ? { ...i, amount: "9999.99" } : i));

beforeAll(async () => {
  dir = fresh("sluice-reconstruct-");
  primary = await startPagedApi({ rows: all, status: (page) => (page >= 4 ? 503 : undefined) });
  apiB = await startPagedApi({ rows: all });
  csvC = join(dir, "c.csv");
  writeFileSync(csvC, itemsCsv(cRows));
});
afterAll(async () => {
  await Promise.all([primary.close(), apiB.close()]);
});

const candidate = (source: string, role: "primary" | "fallback", rank: number | null): SourceCandidate => ({
  source,
  role,
  rank,
  accepted: rank !== null,
  ...(rank === null ? { rejectedBecause: "unreachable" as const, detail: "HTTP 503" } : {}),
});
function writeRanking(name: string, candidates: SourceCandidate[]): string {
  const path = join(dir, `${name}.json`);
  const doc: SourceRanking = { kind: "sluice.dev/source-ranking-v1", primary: primary.url, candidates, decidedAt: new Date().toISOString() };
  writeFileSync(path, JSON.stringify(doc));
  return path;
}
const manifest = (): PageManifest => ({
  pages: [1, 2, 3].map((page) => ({ page, url: `${primary.url}?page=${page}`, rows: 100, firstKey: (page - 1) * 100 + 1, lastKey: page * 100 })),
  complete: false,
  next: `${primary.url}?page=4`,
});
const json = <T>(path: unknown): T => JSON.parse(readFileSync(String(path), "utf8")) as T;

describe("reconstruction into SQLite (tests 8 and 9)", () => {
  let home: string;
  let destination: string;
  beforeAll(async () => {
    home = fresh("sluice-rec-home-");
    destination = `sqlite:${join(home, "warehouse.db")}`;
    await fillDestination(
      destination,
      "items",
      [...range(1, 200), ...range(251, 500)].map((id) => item(id, now)),
    );
  });
  const ctx = (step: string, runId = "r-recover") => actionContext({ artifactsDir: join(home, "runs", runId, "artifacts"), home, step, runId });

  it("fills exactly the gaps, priority holding over the disagreeing fallback, every row with its origin", async () => {
    const sources = writeRanking("ranking-bc", [candidate(apiB.url, "fallback", 1), candidate(csvC, "fallback", 2), candidate(primary.url, "primary", null)]);
    const out = await reconstructFromMultipleSources(
      { sources, key: ["id"], destination, table: "items", range: "1-1000", manifest: manifest() },
      ctx("data-reconstruction"),
    );
    const gaps = [
      { from: 201, to: 250 },
      { from: 501, to: 1000 },
    ];
    expect(out.gapsBefore).toEqual(gaps);
    expect(json<GapLedger>(out.gapLedgerBefore)).toMatchObject({
      kind: "sluice.dev/gap-ledger-v1",
      domain: { from: "declared", count: 1000 },
      held: 450,
      missing: 550,
      gaps,
    });
    expect(out).toMatchObject({ missing: 550, recovered: 550, unrecovered: 0, bySource: { [apiB.url]: 550 }, conflicts: 10 });

    // The conflict report: exactly the 10 keys, B's value kept, C's beside it, the differing field named.
    const report = json<ConflictReport>(out.conflictReport);
    expect(report.policy).toBe("priority");
    expect(report.conflicts.map((c) => c.key.id).sort((a, b) => Number(a) - Number(b))).toEqual(DISAGREE);
    const c205 = report.conflicts.find((c) => c.key.id === 205)!;
    expect(c205).toMatchObject({
      kept: { source: apiB.url, value: { amount: "205.05" } },
      other: { source: csvC, value: { amount: "9999.99" } },
      fields: ["amount"],
    });

    // Provenance per row: the page and position of each record in B's API.
    const lines = readFileSync(join(home, "runs", "r-recover", "artifacts", "data-reconstruction", "recovered-01.ndjson"), "utf8")
      .trim()
      .split("\n");
    const rows = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.map((r) => r.id)).toEqual([...range(201, 250), ...range(501, 1000)]);
    expect(rows.find((r) => r.id === 201)!._sluice_source).toBe(`${apiB.url}?page=3#1`);
    expect(rows.find((r) => r.id === 1000)!._sluice_source).toBe(`${apiB.url}?page=10#100`);

    // Store: typed by the batch plane, upserted, lineage written, the ledger after is empty.
    const stored = await validateAndStoreRecoveredData(
      { dataset: String(out.dataset), destination, table: "items", key: ["id"] },
      ctx("validation-and-storage"),
    );
    expect(stored).toMatchObject({ rowsStored: 550, rowsDuplicate: 0, rowsQuarantined: 0, gapsAfter: [], gapsRemaining: 0, lineageRows: 550 });
    expect(stored.outcome).toMatchObject({ succeeded: true, rowsRecovered: 550, duplicates: 0 });
    expect(json<GapLedger>(stored.gapLedgerAfter)).toMatchObject({ missing: 0, held: 1000, gaps: [] });

    const db = new Database(join(home, "warehouse.db"), { readonly: true });
    try {
      expect(db.prepare("select count(*) as n, count(distinct id) as d, min(id) as lo, max(id) as hi from items").get()).toEqual({
        n: 1000,
        d: 1000,
        lo: 1,
        hi: 1000,
      });
      // Priority held: B's amount, not C's.
      expect(db.prepare("select amount from items where id = 205").get()).toEqual({ amount: 205.05 });
      expect(db.prepare("select source, position from items_lineage where id = 777").get()).toEqual({ source: apiB.url, position: `${apiB.url}?page=8#77` });
      expect(db.prepare("select count(*) as n from items_lineage where id between 201 and 250 or id between 501 and 1000").get()).toEqual({ n: 550 });
    } finally {
      db.close();
    }
  });

  it("a rerun finds no gap and stores 0 rows", async () => {
    const sources = writeRanking("ranking-bc-2", [candidate(apiB.url, "fallback", 1), candidate(csvC, "fallback", 2)]);
    const before = apiB.requests.length;
    const out = await reconstructFromMultipleSources(
      { sources, key: "id", destination, table: "items", range: "1-1000" },
      ctx("data-reconstruction", "r-rerun"),
    );
    expect(out).toMatchObject({ missing: 0, recovered: 0, gapsBefore: [], conflicts: 0 });
    expect(apiB.requests.length).toBe(before); // nothing missing: no source is asked
    const stored = await validateAndStoreRecoveredData(
      { dataset: String(out.dataset), destination, table: "items", key: ["id"] },
      ctx("validation-and-storage", "r-rerun"),
    );
    expect(stored).toMatchObject({ rowsStored: 0, gapsRemaining: 0, gapsAfter: [] });
  });

  it("storing the same dataset again (a retried store) stores 0 rows and adds no lineage", async () => {
    const sources = writeRanking("ranking-b", [candidate(apiB.url, "fallback", 1)]);
    // A fresh destination copy of the earlier state would be needed for new rows; here the same dataset twice.
    const d2 = `sqlite:${join(home, "second.db")}`;
    await fillDestination(
      d2,
      "items",
      range(1, 990).map((id) => item(id, now)),
    );
    const out = await reconstructFromMultipleSources({ sources, key: ["id"], destination: d2, table: "items", range: "1-1000" }, ctx("rec", "r-twice"));
    expect(out.gapsBefore).toEqual([{ from: 991, to: 1000 }]);
    const first = await validateAndStoreRecoveredData({ dataset: String(out.dataset), destination: d2, table: "items" }, ctx("store", "r-twice"));
    const again = await validateAndStoreRecoveredData({ dataset: String(out.dataset), destination: d2, table: "items" }, ctx("store", "r-twice"));
    expect(first).toMatchObject({ rowsStored: 10, lineageRows: 10 });
    expect(again).toMatchObject({ rowsStored: 0, rowsDuplicate: 10, lineageRows: 0, gapsRemaining: 0 });
  });

  it("fails with GAPS_REMAIN when no source holds some expected keys", async () => {
    const sources = writeRanking("ranking-b-short", [candidate(apiB.url, "fallback", 1)]);
    const out = await reconstructFromMultipleSources({ sources, key: ["id"], destination, table: "items", range: "1-1010" }, ctx("rec", "r-short"));
    expect(out).toMatchObject({ missing: 10, recovered: 0, unrecovered: 10 });
    const err = await failure(validateAndStoreRecoveredData({ dataset: String(out.dataset), destination, table: "items" }, ctx("store", "r-short")));
    expect(err.code).toBe("GAPS_REMAIN");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("1001–1010");
  });
});

describe("resuming where the primary's pagination stopped", () => {
  it("starts the fallback at the manifest's next page and leaves the failing primary alone", async () => {
    const home = fresh("sluice-rec-resume-");
    const destination = `sqlite:${join(home, "warehouse.db")}`;
    // What the failed run stored: pages 1–3 of the primary.
    await fillDestination(
      destination,
      "items",
      range(1, 300).map((id) => item(id, now)),
    );
    const api = await startPagedApi({ rows: all });
    try {
      const sources = writeRanking("ranking-resume", [candidate(api.url, "fallback", 1), candidate(primary.url, "primary", 2)]);
      const asked = primary.requests.length;
      const out = await reconstructFromMultipleSources(
        { sources, key: ["id"], destination, table: "items", manifest: manifest() },
        actionContext({ artifactsDir: join(home, "artifacts"), home, step: "rec" }),
      );
      expect(api.requests[0]).toBe("/api?page=4");
      expect(api.requests).not.toContain("/api?page=1");
      expect(primary.requests.length).toBe(asked);
      expect(out).toMatchObject({ gapsBefore: [{ from: 301, to: 1000 }], missing: 700, recovered: 700 });
      expect(json<GapLedger>(out.gapLedgerBefore).domain).toEqual({ from: "manifest", ranges: [{ from: 1, to: 1000 }], count: 1000 });
      expect((out.skipped as { source: string }[]).map((s) => s.source)).toEqual([primary.url]);
      const first = readFileSync(join(home, "artifacts", "rec", "recovered-01.ndjson"), "utf8").split("\n")[0]!;
      expect(JSON.parse(first)).toMatchObject({ id: 301, _sluice_source: `${api.url}?page=4#1` });
    } finally {
      await api.close();
    }
  });
});

describe("a PostgreSQL source into a PostgreSQL destination", () => {
  const schema = pgSchema("rec");

  it("asks the source for the missing ranges only and completes the table", async () => {
    const home = fresh("sluice-rec-pg-");
    await fillDestination(PG_URL, `${schema}.mirror`, all);
    await fillDestination(
      PG_URL,
      `${schema}.items`,
      [...range(1, 200), ...range(251, 500)].map((id) => item(id, now)),
    );
    const source = `${PG_URL}?table=${schema}.mirror`;
    const sources = writeRanking("ranking-pg", [candidate(source, "fallback", 1)]);
    const ctx = (step: string) => actionContext({ artifactsDir: join(home, "artifacts"), home, step });
    const out = await reconstructFromMultipleSources({ sources, key: ["id"], destination: PG_URL, table: `${schema}.items`, range: "1-1000" }, ctx("rec"));
    expect(out.gapsBefore).toEqual([
      { from: 201, to: 250 },
      { from: 501, to: 1000 },
    ]);
    // Only the 550 missing rows came over the wire.
    expect(out.read).toEqual([{ source, role: "fallback", records: 550, kept: 550, complete: true }]);
    const stored = await validateAndStoreRecoveredData(
      { dataset: String(out.dataset), destination: PG_URL, table: `${schema}.items`, key: ["id"] },
      ctx("store"),
    );
    expect(stored).toMatchObject({ rowsStored: 550, gapsAfter: [], gapsRemaining: 0, lineageRows: 550 });
    const c = new pg.Client(PG_URL);
    await c.connect();
    try {
      const r = await c.query(`select count(*)::int as n, count(distinct id)::int as d from "${schema}".items`);
      expect(r.rows[0]).toEqual({ n: 1000, d: 1000 });
      const l = await c.query(`select source, position from "${schema}".items_lineage where id = 201`);
      expect(l.rows[0].source).toBe(source);
      expect(l.rows[0].position).toMatch(new RegExp(`^${source.replace(/[?.]/g, "\\$&")}#\\d+$`));
    } finally {
      await c.end();
    }
  });
});

describe("policy freshest", () => {
  it("keeps the newest version of a disagreeing key, whatever the rank, and reports it", async () => {
    const home = fresh("sluice-rec-fresh-");
    const older = join(home, "a.ndjson");
    const newer = join(home, "b.ndjson");
    const row = (id: number, at: string, amount: string) => JSON.stringify({ id, updated_at: at, name: `item-${id}`, amount });
    writeFileSync(older, [row(1, "2026-01-01T00:00:00Z", "1.00"), row(2, "2026-01-01T00:00:00Z", "2.00")].join("\n") + "\n");
    writeFileSync(newer, [row(1, "2026-01-01T00:00:00.000Z", "1.0"), row(2, "2026-01-02T00:00:00Z", "2.50")].join("\n") + "\n");
    const sources = writeRanking("ranking-fresh", [candidate(older, "fallback", 1), candidate(newer, "fallback", 2)]);
    const out = await reconstructFromMultipleSources(
      { sources, key: ["id"], destination: `sqlite:${join(home, "w.db")}`, table: "items", range: "1-2", policy: "freshest", timestampColumn: "updated_at" },
      actionContext({ artifactsDir: join(home, "artifacts"), home, step: "rec" }),
    );
    // Key 1 agrees once values are compared canonically (1.00 = 1.0, the same instant); key 2 conflicts.
    expect(out).toMatchObject({ recovered: 2, conflicts: 1, agreed: 1, bySource: { [older]: 1, [newer]: 1 } });
    const report = json<ConflictReport>(out.conflictReport);
    expect(report).toMatchObject({
      policy: "freshest",
      conflicts: [{ key: { id: 2 }, kept: { source: newer }, other: { source: older }, fields: ["amount", "updated_at"] }],
    });
  });
});

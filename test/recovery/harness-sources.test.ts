/**
 * Issue 11's fault harness, the scenarios about the sources and the destination (tests 5, 8, 9,
 * 10), each a recovery started by hand (`--param primary=… --param fallback=… --param table=…`)
 * through the built CLI, against flaky trades APIs on 127.0.0.1: a stale fallback rejected, two
 * fallbacks disagreeing, a PostgreSQL destination with holes (filled first by the standard
 * workflow itself), and `kill -9` in the middle of reconstruction followed by `sluice resume`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import type { ConflictReport } from "../../src/actions/recovery/contract.js";
import { scratch, waitUntil } from "../helpers.js";
import { sluiceAsync, waitForStderr } from "../cli/cli-helpers.js";
import { cli, flakyApis, outputs, PG_URL, RECOVERY, rankingOf, recoveryRun, standardRun, step, tableFacts, warehouse, type RunDoc } from "./harness.js";

const fresh = scratch();
const apis = flakyApis();
const pgTables: string[] = [];
afterAll(async () => {
  await apis.closeAll();
  if (pgTables.length === 0) return;
  const client = new pg.Client(PG_URL);
  await client.connect();
  try {
    for (const t of pgTables) await client.query(`drop table if exists "${t}", "${t}_lineage", "${t}_quarantine"`);
  } finally {
    await client.end();
  }
});

/** A primary that answers nothing but 503 (at once: Retry-After 0). */
const DEAD = "fail status=503 retry-after=0";
/** The newest record a minute ago: every API of a test agrees, and is fresh against now. */
const asOf = () => new Date(Math.floor(Date.now() / 60_000) * 60_000 - 60_000).toISOString();

describe.concurrent("issue 11 fault harness: sources and destinations", () => {
  it("test 5: a fallback two days behind is rejected as stale, the fresh one serves", { timeout: 60_000 }, async () => {
    const cwd = fresh("sluice-h5-");
    const at = asOf();
    const primary = await apis.start(DEAD, at);
    const stale = await apis.start("stale-days=2", at);
    const good = await apis.start("", at);
    const rec = await recoveryRun(cwd, { primary: primary.url, fallback: `${stale.url},${good.url}`, table: "trades", range: "1-1000" });
    expect(rec.status, rec.stderr).toBe("succeeded");
    const ranking = rankingOf(rec);
    const staleOne = ranking.candidates.find((c) => c.source === stale.url)!;
    expect(staleOne).toMatchObject({ accepted: false, rejectedBecause: "stale", rank: null });
    expect(staleOne.detail).toMatch(/is 2(\.0)?d behind/);
    expect(ranking.candidates.find((c) => c.source === good.url)).toMatchObject({ accepted: true, rank: 1 });
    expect(outputs(rec, "data-reconstruction").bySource).toEqual({ [good.url]: 1000 });
    const db = warehouse(cwd);
    try {
      expect(tableFacts(db).lineage.map((l) => [l.source, l.d])).toEqual([[good.url, 1000]]);
    } finally {
      db.close();
    }
    expect(stale.stats().requests).toBe(10); // discovery's probe of its ten pages, nothing more
  });

  it("test 8: two fallbacks disagree on 10 keys: the higher ranked wins, the report lists exactly those keys", { timeout: 60_000 }, async () => {
    const cwd = fresh("sluice-h8-");
    const at = asOf();
    const primary = await apis.start(DEAD, at);
    const a = await apis.start("", at);
    const b = await apis.start("variant=501-505,901-905", at);
    const rec = await recoveryRun(cwd, { primary: primary.url, fallback: `${a.url},${b.url}`, table: "trades", range: "1-1000" });
    expect(rec.status, rec.stderr).toBe("succeeded");
    // Equally fresh and complete, the two are ranked by latency (when clearly apart) or declared order.
    const ranked = rankingOf(rec).candidates.filter((c) => c.accepted);
    expect(ranked.map((c) => c.rank)).toEqual([1, 2]);
    const [first, second] = ranked.map((c) => c.source);
    expect([first, second].sort()).toEqual([a.url, b.url].sort());
    const rebuilt = outputs(rec, "data-reconstruction");
    expect(rebuilt).toMatchObject({ conflicts: 10, bySource: { [first!]: 1000 } });
    const report = JSON.parse(readFileSync(String(rebuilt.conflictReport), "utf8")) as ConflictReport;
    expect(report.policy).toBe("priority");
    expect(report.conflicts.map((c) => Number(c.key.trade_id)).sort((x, y) => x - y)).toEqual([501, 502, 503, 504, 505, 901, 902, 903, 904, 905]);
    for (const c of report.conflicts) {
      expect(c).toMatchObject({ kept: { source: first }, other: { source: second } });
      expect(c.fields).toEqual(["executed_at", "price", "updated_at"]);
      // The variant's price is one more than the other's.
      const [plain, varied] = first === a.url ? [c.kept, c.other] : [c.other, c.kept];
      expect(Number(varied.value.price) - Number(plain.value.price)).toBeCloseTo(1, 6);
    }
    const db = warehouse(cwd);
    try {
      const kept = db.prepare("select price from trades where trade_id = 903").get() as { price: number };
      expect(kept.price).toBeCloseTo(Number(report.conflicts.find((c) => Number(c.key.trade_id) === 903)!.kept.value.price), 4);
    } finally {
      db.close();
    }
    const status = await cli(["status", rec.id], cwd);
    expect(status.stdout).toMatch(/conflicts: 10 \(/);
  });

  it(
    "test 9 (PostgreSQL): the destination holds 1–500 but 201–250: exactly [201–250] and [501–1000] are filled, a rerun stores 0",
    { timeout: 60_000 },
    async () => {
      const cwd = fresh("sluice-h9-");
      const table = `h9_${process.pid}_${Date.now().toString(36)}`;
      pgTables.push(table);
      const at = asOf();
      // The destination as the standard workflow itself leaves it: ids 1–200 and 251–500.
      for (const ids of ["1-200", "251-500"]) {
        const part = await apis.start(`ids=${ids}`, at);
        const r = await standardRun(cwd, part.url, { destination: PG_URL, table });
        expect(r.status, r.stderr).toBe("succeeded");
      }
      const primary = await apis.start(DEAD, at);
      const fallback = await apis.start("", at);
      const params = { primary: primary.url, fallback: fallback.url, destination: PG_URL, table, range: "1-1000" };
      const rec = await recoveryRun(cwd, params);
      expect(rec.status, rec.stderr).toBe("succeeded");
      expect(outputs(rec, "data-reconstruction")).toMatchObject({
        gapsBefore: [
          { from: 201, to: 250 },
          { from: 501, to: 1000 },
        ],
        missing: 550,
        recovered: 550,
      });
      expect(outputs(rec, "validation-and-storage")).toMatchObject({ rowsStored: 550, rowsDuplicate: 0, gapsAfter: [], gapsRemaining: 0, lineageRows: 550 });
      const client = new pg.Client(PG_URL);
      await client.connect();
      try {
        const facts = await client.query(`select count(*)::int as n, count(distinct trade_id)::int as d from "${table}"`);
        expect(facts.rows[0]).toEqual({ n: 1000, d: 1000 });
        const lineage = await client.query(
          `select min(trade_id)::int as lo, max(trade_id)::int as hi, count(*)::int as n, min(source) as source from "${table}_lineage"`,
        );
        expect(lineage.rows[0]).toEqual({ lo: 201, hi: 1000, n: 550, source: fallback.url });
        // The recovered rows are typed like the standard run's: exact decimals, timestamps.
        const row = await client.query(`select price::text as price from "${table}" where trade_id = 777`);
        expect(row.rows[0].price).toMatch(/^\d+\.\d{4}$/);
      } finally {
        await client.end();
      }
      const again = await recoveryRun(cwd, params);
      expect(again.status, again.stderr).toBe("succeeded");
      expect(outputs(again, "data-reconstruction")).toMatchObject({ missing: 0, recovered: 0, gapsBefore: [] });
      expect(outputs(again, "validation-and-storage")).toMatchObject({ rowsStored: 0, gapsRemaining: 0 });
    },
  );

  it("test 10: kill -9 in the middle of reconstruction, then sluice resume: no duplicates, provenance intact", { timeout: 90_000 }, async () => {
    const cwd = fresh("sluice-h10-");
    const at = asOf();
    const primary = await apis.start(DEAD, at);
    const slow = await apis.start("slow ms=250", at);
    const child = sluiceAsync(
      ["run", RECOVERY, "--param", `primary=${primary.url}`, "--param", `fallback=${slow.url}`, "--param", "table=trades", "--param", "range=1-1000"],
      { cwd },
    );
    const id = (await waitForStderr(child, /run (r-[a-z0-9]+-[0-9a-f]+) created/))[1]!;
    // Discovery reads the slow API's ten pages; reconstruction then walks it again.
    await waitUntil(() => existsSync(join(cwd, ".sluice", "runs", id, "artifacts", "data-reconstruction")), 30_000, "reconstruction to start");
    await waitUntil(() => slow.stats().requests >= 13, 30_000, "reconstruction to read pages");
    child.kill("SIGKILL");
    await new Promise((r) => child.once("close", r));

    const r = await cli(["resume", id, "--json"], cwd);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as RunDoc;
    expect(doc.status).toBe("succeeded");
    expect(step(doc, "data-reconstruction").attempts.map((a) => a.status)).toEqual(["interrupted", "succeeded"]);
    expect(outputs(doc, "validation-and-storage")).toMatchObject({ rowsStored: 1000, rowsDuplicate: 0, gapsRemaining: 0 });
    const db = warehouse(cwd);
    try {
      const f = tableFacts(db);
      expect(f.rows).toEqual({ n: 1000, d: 1000, lo: 1, hi: 1000 });
      expect(f.lineage).toEqual([{ source: slow.url, n: 1000, d: 1000, lo: 1, hi: 1000 }]);
      expect(db.prepare("select position from trades_lineage where trade_id = 250").get()).toEqual({ position: `${slow.url}?page=3#50` });
    } finally {
      db.close();
    }
  });
});

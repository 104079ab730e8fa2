/**
 * discover_fallback_sources against real sources: local HTTP APIs, CSV and NDJSON files, a
 * closed port. Test 5 of issue 11 (a stale fallback two days behind is rejected as `stale`, a
 * fresh one accepted), a renamed column, a 401, unreachable sources, an open breaker, the
 * decision record's effect on the primary's rank, and the failure when nothing is usable.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { actionContext, failure, memoryState, scratch } from "../helpers.js";
import { discoverFallbackSources } from "../../src/actions/recovery/fallbacks.js";
import type { SourceRanking } from "../../src/actions/recovery/contract.js";
import { fillDestination, item, itemsCsv, range, startPagedApi, type PagedApi } from "./sources.js";

const fresh = scratch();
const now = Date.now();
const DAY = 86_400_000;
let primary: PagedApi;
let stale: PagedApi;
let locked: PagedApi;
let dir: string;
let freshCsv: string;
let renamed: string;

beforeAll(async () => {
  dir = fresh("sluice-fallbacks-");
  primary = await startPagedApi({ rows: range(1, 1000).map((id) => ({ ...item(id, now) })) });
  stale = await startPagedApi({ rows: range(1, 1000).map((id) => ({ ...item(id, now, 2 * DAY) })) });
  locked = await startPagedApi({ rows: range(1, 10).map((id) => ({ ...item(id, now) })), token: "s3cret" });
  freshCsv = join(dir, "mirror.csv");
  writeFileSync(freshCsv, itemsCsv(range(1, 1000).map((id) => item(id, now))));
  renamed = join(dir, "renamed.ndjson");
  writeFileSync(
    renamed,
    range(1, 50)
      .map((id) => {
        const { amount, ...rest } = item(id, now);
        return JSON.stringify({ ...rest, amt: amount });
      })
      .join("\n") + "\n",
  );
});
afterAll(async () => {
  await Promise.all([primary.close(), stale.close(), locked.close()]);
});

const ctxFor = (step: string, over: Partial<Parameters<typeof actionContext>[0]> = {}) =>
  actionContext({ artifactsDir: join(dir, "artifacts"), step, ...over });
const ranking = (path: unknown) => JSON.parse(readFileSync(String(path), "utf8")) as SourceRanking;

describe("discover_fallback_sources", () => {
  it("test 5: rejects the fallback two days behind as stale and accepts the fresh one", async () => {
    const out = await discoverFallbackSources({ primary: primary.url, fallbacks: `${stale.url},${freshCsv}`, key: ["id"] }, ctxFor("stale"));
    expect(out.accepted).toBe(2);
    expect(out.rejected).toEqual([{ source: stale.url, reason: "stale", detail: expect.stringMatching(/is 2d behind the primary's newest .*allowed 1h/) }]);
    const doc = ranking(out.sources);
    expect(doc.kind).toBe("sluice.dev/source-ranking-v1");
    expect(doc.candidates.filter((c) => c.accepted).map((c) => [c.source, c.rank])).toEqual([
      [primary.url, 1],
      [freshCsv, 2],
    ]);
    const csv = doc.candidates.find((c) => c.source === freshCsv)!;
    expect(csv.coverage).toEqual([{ from: 1, to: 1000 }]);
    expect(csv.schemaFingerprint).toMatch(/^sha256:[0-9a-f]{16} id:integer,updated_at:timestamp,name:string,amount:decimal$/);
    expect(Date.parse(csv.newestTimestamp!)).toBeGreaterThan(now - 2000);
    // The file was written where the brief says.
    expect(String(out.sources)).toBe(join(dir, "artifacts", "stale", "sources.json"));
  });

  it("with maxStaleness against now, when the primary cannot be read", async () => {
    const out = await discoverFallbackSources({ primary: "http://127.0.0.1:1/api", fallbacks: [stale.url, freshCsv], maxStaleness: "1d" }, ctxFor("now"));
    expect(out.ranked).toEqual([freshCsv]);
    expect(out.rejected).toEqual([
      { source: "http://127.0.0.1:1/api", reason: "unreachable", detail: expect.any(String) },
      { source: stale.url, reason: "stale", detail: expect.stringMatching(/behind now .*allowed 1d|behind now .*allowed 24h/) },
    ]);
  });

  it("names a missing column and its likely rename (schema_mismatch)", async () => {
    const out = await discoverFallbackSources({ primary: primary.url, fallbacks: [renamed] }, ctxFor("renamed"));
    expect(out.rejected).toEqual([{ source: renamed, reason: "schema_mismatch", detail: "against the primary: column amount is missing (renamed to amt?)" }]);
  });

  it("holds candidates to the destination table's columns when no schema is given", async () => {
    const destination = `sqlite:${join(dir, "warehouse.db")}`;
    await fillDestination(destination, "items", [item(1, now)]);
    const out = await discoverFallbackSources(
      { primary: "http://127.0.0.1:1/api", fallbacks: [renamed, freshCsv], destination, table: "items" },
      ctxFor("dest"),
    );
    expect(out.ranked).toEqual([freshCsv]);
    expect(out.rejected).toContainEqual({
      source: renamed,
      reason: "schema_mismatch",
      detail: "against table items: column amount is missing (renamed to amt?)",
    });
  });

  it("rejects a 401 as unauthorized and a missing file as unreachable", async () => {
    const missing = join(dir, "nope.csv");
    const out = await discoverFallbackSources({ primary: primary.url, fallbacks: [locked.url, missing] }, ctxFor("auth"));
    expect(out.rejected).toEqual([
      { source: locked.url, reason: "unauthorized", detail: expect.stringContaining("HTTP 401") },
      { source: missing, reason: "unreachable", detail: expect.stringContaining("does not exist") },
    ]);
    // Rejected sources stay in the document, unranked, with their reason.
    const doc = ranking(out.sources);
    expect(doc.candidates.find((c) => c.source === locked.url)).toMatchObject({ accepted: false, rank: null, rejectedBecause: "unauthorized" });
  });

  it("skips a source whose circuit breaker is open without asking it, and ranks the primary last after switch_to_fallback", async () => {
    const state = memoryState();
    await state.put("circuit-breaker", stale.url, { state: "open", failures: 5 }, 0);
    const before = stale.requests.length;
    const decision = join(dir, "decision.json");
    writeFileSync(decision, JSON.stringify({ kind: "sluice.dev/recovery-decision-v1", choice: "switch_to_fallback" }));
    const out = await discoverFallbackSources({ primary: primary.url, fallbacks: [stale.url, freshCsv], decision }, ctxFor("breaker", { state }));
    expect(stale.requests.length).toBe(before);
    expect(out.rejected).toEqual([{ source: stale.url, reason: "circuit_open", detail: expect.stringContaining("circuit breaker is open") }]);
    expect(out.ranked).toEqual([freshCsv, primary.url]);
  });

  it("a give_up decision ends the recovery with RECOVERY_GAVE_UP and its reason, before any source is asked", async () => {
    const decision = join(dir, "give-up.json");
    const why = "auth on http://x/api: 1 failure. Giving up: the guardrails allow no strategy that could recover the data.";
    writeFileSync(decision, JSON.stringify({ kind: "sluice.dev/recovery-decision-v1", choice: "give_up", class: "auth", why }));
    const before = primary.requests.length;
    const err = await failure(discoverFallbackSources({ primary: primary.url, fallbacks: [], decision }, ctxFor("give-up")));
    expect(err).toMatchObject({ code: "RECOVERY_GAVE_UP", retryable: false, details: { decision, class: "auth" } });
    expect(err.message).toBe(`The recovery strategy is give_up, so no source is read: ${why}`);
    expect(primary.requests.length).toBe(before);
  });

  it("fails with NO_USABLE_SOURCE, every reason in the message, when nothing is usable", async () => {
    const err = await failure(discoverFallbackSources({ primary: "http://127.0.0.1:1/api", fallbacks: [locked.url] }, ctxFor("none")));
    expect(err.code).toBe("NO_USABLE_SOURCE");
    expect(err.message).toMatch(/unreachable.*unauthorized/);
  });
});

/**
 * The gap ledger: range arithmetic on the three key shapes, and test 9 of issue 11 against real
 * SQLite and PostgreSQL destinations — the destination holds 1–500 except 201–250, so the gaps
 * are exactly [201–250] and [501–1000].
 */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { scratch } from "../helpers.js";
import { PG_URL, pgSchema } from "../stores.js";
import { destinationLedger, resolveDestination } from "../../src/actions/recovery/destination-keys.js";
import { fromKeyRanges, guessCodec, keySetOf, minus, parseDeclaredRange, toKeyRanges, type KeyCodec } from "../../src/actions/recovery/gaps.js";
import { fillDestination, item, range } from "./sources.js";

const fresh = scratch();
const now = Date.now();

describe("gap arithmetic", () => {
  it("subtracts held keys from a domain as exact inclusive ranges", () => {
    const codec: KeyCodec = { kind: "int" };
    const domain = fromKeyRanges(codec, parseDeclaredRange("1-1000"), "test");
    const held = keySetOf(codec, [...range(1, 200), ...range(251, 500), 777]);
    expect(toKeyRanges(minus(domain, held))).toEqual([
      { from: 201, to: 250 },
      { from: 501, to: 776 },
      { from: 778, to: 1000 },
    ]);
  });

  it("ranges prefixed zero-padded keys and keeps their spelling; anything else is opaque", () => {
    const g = guessCodec();
    for (const k of ["T-000000001", "T-000000002", "T-000000010"]) g.see(k);
    const codec = g.codec();
    expect(codec).toEqual({ kind: "prefixed", prefix: "T-", width: 9 });
    const domain = fromKeyRanges(codec, parseDeclaredRange("T-000000001..T-000000010"), "test");
    const held = keySetOf(codec, [1, 2, 3, 9, 10]);
    expect(toKeyRanges(minus(domain, held))).toEqual([{ from: "T-000000004", to: "T-000000008" }]);

    const o = guessCodec();
    for (const k of ["apple", "T-1", 3]) o.see(k);
    expect(o.codec()).toEqual({ kind: "opaque" });
    const opaque = o.codec();
    expect(toKeyRanges(minus(keySetOf(opaque, ["a", "b", "c"]), keySetOf(opaque, ["b"])))).toEqual([
      { from: "a", to: "a" },
      { from: "c", to: "c" },
    ]);
  });

  it("reads declared ranges as lists and comma-separated text", () => {
    expect(parseDeclaredRange("1-10, 20-30,40")).toEqual([
      { from: "1", to: "10" },
      { from: "20", to: "30" },
      { from: "40", to: "40" },
    ]);
    expect(parseDeclaredRange([5, "7-9"])).toEqual([
      { from: 5, to: 5 },
      { from: "7", to: "9" },
    ]);
  });
});

const holding = [...range(1, 200), ...range(251, 500)].map((id) => item(id, now));

describe("test 9: the gaps of a destination holding 1–500 except 201–250", () => {
  it("on SQLite: exactly [201–250] and [501–1000]", async () => {
    const dir = fresh("sluice-gaps-");
    const destination = `sqlite:${join(dir, "warehouse.db")}`;
    await fillDestination(destination, "items", holding);
    const dest = await resolveDestination(destination, dir);
    const { ledger } = await destinationLedger(dest, "items", ["id"], { from: "declared", ranges: parseDeclaredRange("1-1000") });
    expect(ledger.gaps).toEqual([
      { from: 201, to: 250 },
      { from: 501, to: 1000 },
    ]);
    expect(ledger.missing).toBe(550);
    expect(ledger.held).toBe(450);
    expect(ledger.domain).toEqual({ from: "declared", ranges: [{ from: 1, to: 1000 }], count: 1000 });
  });

  it("on SQLite: a table that does not exist yet holds nothing", async () => {
    const dir = fresh("sluice-gaps-");
    const dest = await resolveDestination(`sqlite:${join(dir, "none.db")}`, dir);
    const { ledger } = await destinationLedger(dest, "items", ["id"], { from: "declared", ranges: parseDeclaredRange("1-10") });
    expect(ledger.gaps).toEqual([{ from: 1, to: 10 }]);
  });

  describe("on PostgreSQL", () => {
    const schema = pgSchema("gaps");

    it("exactly [201–250] and [501–1000]", async () => {
      await fillDestination(PG_URL, `${schema}.items`, holding);
      const dest = await resolveDestination(PG_URL, fresh("sluice-gaps-"));
      const { ledger } = await destinationLedger(dest, `${schema}.items`, ["id"], { from: "declared", ranges: parseDeclaredRange("1-1000") });
      expect(ledger.gaps).toEqual([
        { from: 201, to: 250 },
        { from: 501, to: 1000 },
      ]);
      expect(ledger.missing).toBe(550);
    });
  });
});

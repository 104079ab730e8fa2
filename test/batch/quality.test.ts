import { describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QualityRule } from "../../src/actions/inputs.js";
import type { Column, QualityRuleSpec, TypedRow } from "../../src/actions/batch/model.js";
import { compareDecimals, createQualityChecker, score, type QualityReport } from "../../src/actions/batch/quality.js";

const columns: Column[] = [
  { name: "trade_id", type: "string" },
  { name: "executed_at", type: "timestamp" },
  { name: "trade_date", type: "date" },
  { name: "symbol", type: "string" },
  { name: "side", type: "string" },
  { name: "quantity", type: "integer" },
  { name: "price", type: "decimal", scale: 4 },
  { name: "rate", type: "decimal" },
  { name: "settled", type: "boolean" },
  { name: "raw", type: "string" },
];

const rules = (...r: unknown[]): QualityRuleSpec[] => r.map((x) => QualityRule.parse(x));

/** Runs rows (lines 2, 3, …) through a checker; returns each row's reasons and the report. */
function run(ruleSpecs: unknown[], rows: Partial<TypedRow>[], now = new Date("2026-11-02T12:00:00Z")): { reasons: string[][]; report: QualityReport } {
  const qc = createQualityChecker(rules(...ruleSpecs), columns, { now });
  const reasons = rows.map((row, i) => qc.check(row as TypedRow, i + 2));
  return { reasons, report: qc.finish() };
}

describe("row-level checks", () => {
  it("required fails on null, missing and empty; passes anything else", () => {
    const { reasons, report } = run(
      [{ column: "trade_id", required: true }],
      [{ trade_id: "T-1" }, { trade_id: null }, {}, { trade_id: "" }, { trade_id: " " }],
    );
    expect(reasons).toEqual([[], ["trade_id: required but empty"], ["trade_id: required but empty"], ["trade_id: required but empty"], []]);
    expect(report.rules).toEqual([
      {
        rule: "trade_id required",
        column: "trade_id",
        kind: "row",
        failures: 3,
        passed: false,
        detail: "3 rows failed, the first at line 3: trade_id: required but empty",
      },
    ]);
    expect(report).toMatchObject({ rowsChecked: 5, rowsFailed: 3, score: 0.4 });
  });

  it("type checks untyped strings with typing's parsers; nulls are skipped", () => {
    const { reasons } = run(
      [{ column: "raw", type: "integer" }],
      [{ raw: "12" }, { raw: " -7 " }, { raw: "1.5" }, { raw: null }, { raw: "99999999999999999999" }],
    );
    expect(reasons).toEqual([[], [], ['raw: "1.5" is not a valid integer (a fraction)'], [], ["raw: 99999999999999999999 is out of the 64-bit integer range"]]);
    expect(run([{ column: "raw", type: "timestamp" }], [{ raw: "2026-11-02T09:30:00+01:00" }, { raw: "2026-02-30" }]).reasons).toEqual([
      [],
      ['raw: "2026-02-30" is not a valid timestamp (2026-02 has no day 30)'],
    ]);
    expect(run([{ column: "raw", type: "boolean" }], [{ raw: "yes" }, { raw: "maybe" }]).reasons[1]).toEqual([
      'raw: "maybe" is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)',
    ]);
    expect(run([{ column: "settled", type: "boolean" }], [{ settled: true }, { settled: false }]).report.rules[0]!.passed).toBe(true);
  });

  it("unique names the line where a value was first seen; nulls are not values", () => {
    const { reasons, report } = run(
      [{ column: "trade_id", unique: true }],
      [{ trade_id: "T-1" }, { trade_id: "T-2" }, { trade_id: null }, { trade_id: null }, { trade_id: "T-1" }, { trade_id: "T-1" }, { trade_id: "T-2" }],
    );
    expect(reasons).toEqual([
      [],
      [],
      [],
      [],
      ['trade_id: duplicate value "T-1", first seen at line 2'],
      ['trade_id: duplicate value "T-1", first seen at line 2'],
      ['trade_id: duplicate value "T-2", first seen at line 3'],
    ]);
    expect(report.rules[0]).toMatchObject({ rule: "trade_id unique", failures: 3, passed: false });
  });

  it("unique with the repeats found beforehand gives the same reasons, remembering only the candidates", () => {
    const rows = [{ trade_id: "T-1" }, { trade_id: "T-2" }, { trade_id: "T-3" }, { trade_id: "T-1" }, { trade_id: "T-2" }, { trade_id: "T-1" }];
    const all = run([{ column: "trade_id", unique: true }], rows).reasons;
    // T-3 is no candidate (seen once); T-9 only collided in the filter: a candidate never repeated.
    const qc = createQualityChecker(rules({ column: "trade_id", unique: true }), columns, { repeats: new Map([["trade_id", new Set(["T-1", "T-2", "T-9"])]]) });
    expect(rows.map((row, i) => qc.check(row as TypedRow, i + 2))).toEqual(all);
    expect(all.flat()).toEqual([
      'trade_id: duplicate value "T-1", first seen at line 2',
      'trade_id: duplicate value "T-2", first seen at line 3',
      'trade_id: duplicate value "T-1", first seen at line 2',
    ]);
  });

  it("unique compares decimals by value (1.5 = 1.50) and integers canonically", () => {
    expect(run([{ column: "rate", unique: true }], [{ rate: "1.5" }, { rate: "1.50" }, { rate: "-0.0" }, { rate: "0" }]).reasons).toEqual([
      [],
      ['rate: duplicate value "1.50", first seen at line 2'],
      [],
      ['rate: duplicate value "0", first seen at line 4'],
    ]);
    expect(run([{ column: "quantity", unique: true }], [{ quantity: "7" }, { quantity: "007" }]).reasons[1]).toEqual([
      'quantity: duplicate value "007", first seen at line 2',
    ]);
  });

  it("min / max compare integers and decimals exactly", () => {
    const { reasons, report } = run(
      [{ column: "rate", min: "0.1", max: 1 }],
      [
        { rate: "0.1" },
        { rate: "0.10000000000000000001" },
        { rate: "0.09999999999999999999" },
        { rate: "1.00000000000000000001" },
        { rate: "1.0" },
        { rate: "-5" },
        { rate: null },
        { rate: "abc" },
      ],
    );
    expect(reasons).toEqual([
      [],
      [],
      ["rate: 0.09999999999999999999 is below the minimum 0.1"],
      ["rate: 1.00000000000000000001 is above the maximum 1"],
      [],
      ["rate: -5 is below the minimum 0.1"],
      [],
      ["rate: abc is not a decimal, so it cannot be compared with the minimum 0.1", "rate: abc is not a decimal, so it cannot be compared with the maximum 1"],
    ]);
    expect(report.rules.map((r) => [r.rule, r.failures])).toEqual([
      ["rate >= 0.1", 3],
      ["rate <= 1", 2],
    ]);
    // Beyond float precision and beyond 2^53.
    expect(
      run(
        [{ column: "quantity", max: "9223372036854775806", min: -3 }],
        [{ quantity: "9223372036854775807" }, { quantity: "9223372036854775806" }, { quantity: "-4" }, { quantity: "-3" }],
      ).reasons,
    ).toEqual([["quantity: 9223372036854775807 is above the maximum 9223372036854775806"], [], ["quantity: -4 is below the minimum -3"], []]);
    expect(run([{ column: "price", min: 0 }], [{ price: "0.0000" }, { price: "-0.0001" }]).reasons).toEqual([[], ["price: -0.0001 is below the minimum 0"]]);
  });

  it("min / max compare timestamps as instants, dates as dates, strings lexicographically", () => {
    expect(
      run(
        [{ column: "executed_at", min: "2026-11-02T09:30:00.125Z", max: "2026-11-02" }],
        [
          { executed_at: "2026-11-02T09:30:00.125Z" },
          { executed_at: "2026-11-02T09:30:00.124999Z" },
          { executed_at: "2026-11-02T09:30:00.125001Z" },
          { executed_at: "2026-11-02T00:00:00.000001Z" },
          { executed_at: "2026-11-01T23:59:59.999Z" },
        ],
      ).reasons,
    ).toEqual([
      ["executed_at: 2026-11-02T09:30:00.125Z is above the maximum 2026-11-02"],
      [
        "executed_at: 2026-11-02T09:30:00.124999Z is below the minimum 2026-11-02T09:30:00.125Z",
        "executed_at: 2026-11-02T09:30:00.124999Z is above the maximum 2026-11-02",
      ],
      ["executed_at: 2026-11-02T09:30:00.125001Z is above the maximum 2026-11-02"],
      [
        "executed_at: 2026-11-02T00:00:00.000001Z is below the minimum 2026-11-02T09:30:00.125Z",
        "executed_at: 2026-11-02T00:00:00.000001Z is above the maximum 2026-11-02",
      ],
      ["executed_at: 2026-11-01T23:59:59.999Z is below the minimum 2026-11-02T09:30:00.125Z"],
    ]);
    expect(run([{ column: "trade_date", min: "2026-01-01", max: "2026-12-31" }], [{ trade_date: "2026-11-02" }, { trade_date: "2025-12-31" }]).reasons).toEqual(
      [[], ["trade_date: 2025-12-31 is below the minimum 2026-01-01"]],
    );
    expect(run([{ column: "symbol", min: "B", max: "M" }], [{ symbol: "AAPL" }, { symbol: "MSFT" }, { symbol: "GOOG" }, { symbol: "M" }]).reasons).toEqual([
      ['symbol: "AAPL" is below the minimum B'],
      ['symbol: "MSFT" is above the maximum M'],
      [],
      [],
    ]);
  });

  it("pattern uses the regex as written (no implied anchors)", () => {
    expect(
      run([{ column: "symbol", pattern: "^[A-Z]{1,6}$" }], [{ symbol: "AAPL" }, { symbol: "aapl" }, { symbol: "TOOLONGX" }, { symbol: null }]).reasons,
    ).toEqual([[], ['symbol: "aapl" does not match ^[A-Z]{1,6}$'], ['symbol: "TOOLONGX" does not match ^[A-Z]{1,6}$'], []]);
    expect(run([{ column: "symbol", pattern: "[A-Z]" }], [{ symbol: "aAa" }]).reasons).toEqual([[]]);
    expect(run([{ column: "settled", pattern: "^true$" }], [{ settled: true }, { settled: false }]).reasons).toEqual([
      [],
      ["settled: false does not match ^true$"],
    ]);
  });

  it("allowed compares in the column's canonical form", () => {
    expect(run([{ column: "side", allowed: ["BUY", "SELL"] }], [{ side: "BUY" }, { side: "HOLD" }, { side: "buy" }, { side: null }]).reasons).toEqual([
      [],
      ['side: "HOLD" is not allowed (side in [BUY, SELL])'],
      ['side: "buy" is not allowed (side in [BUY, SELL])'],
      [],
    ]);
    expect(run([{ column: "quantity", allowed: [1, "2"] }], [{ quantity: "1" }, { quantity: "2" }, { quantity: "3" }]).reasons).toEqual([
      [],
      [],
      ["quantity: 3 is not allowed (quantity in [1, 2])"],
    ]);
    expect(run([{ column: "price", allowed: [1.5, "2"] }], [{ price: "1.5000" }, { price: "2.0000" }, { price: "2.0001" }]).reasons).toEqual([
      [],
      [],
      ["price: 2.0001 is not allowed (price in [1.5, 2])"],
    ]);
    expect(run([{ column: "settled", allowed: [true] }], [{ settled: true }, { settled: false }]).reasons).toEqual([
      [],
      ["settled: false is not allowed (settled in [true])"],
    ]);
    expect(run([{ column: "symbol", allowed: [1, true] }], [{ symbol: "1" }, { symbol: "true" }]).reasons).toEqual([[], []]);
  });

  it("splits a rule into one report entry per check, and a row collects every reason", () => {
    const { reasons, report } = run(
      [{ column: "quantity", required: true, unique: true, min: 1, max: 1000, allowed: [1, 5, 5000] }],
      [{ quantity: "5000" }, { quantity: "5000" }, { quantity: null }],
    );
    expect(report.rules.map((r) => r.rule)).toEqual(["quantity required", "quantity unique", "quantity >= 1", "quantity <= 1000", "quantity in [1, 5, 5000]"]);
    expect(reasons).toEqual([
      ["quantity: 5000 is above the maximum 1000"],
      ['quantity: duplicate value "5000", first seen at line 2', "quantity: 5000 is above the maximum 1000"],
      ["quantity: required but empty"],
    ]);
    expect(report).toMatchObject({ rowsChecked: 3, rowsFailed: 3, score: 0 });
  });
});

describe("dataset-level checks", () => {
  it("rowCount counts every row checked, including failing ones", () => {
    const r = run([{ column: "side", allowed: ["BUY"] }, { rowCount: { min: 2, max: 3 } }], [{ side: "BUY" }, { side: "SELL" }]).report;
    expect(r.rules.slice(1)).toEqual([
      { rule: "row count >= 2", kind: "dataset", failures: 0, passed: true, detail: "2 rows" },
      { rule: "row count <= 3", kind: "dataset", failures: 0, passed: true, detail: "2 rows" },
    ]);
    expect(r.score).toBe(0.5);
    const big = run([{ rowCount: { max: 1 } }], [{}, {}]).report;
    expect(big.rules[0]).toMatchObject({ rule: "row count <= 1", passed: false, failures: 1, detail: "2 rows" });
    expect(big.score).toBe(0);
  });

  it("an empty dataset scores 1 on rows and fails rowCount min", () => {
    expect(run([{ column: "trade_id", required: true }], []).report).toEqual({
      rowsChecked: 0,
      rowsFailed: 0,
      score: 1,
      rules: [{ rule: "trade_id required", column: "trade_id", kind: "row", failures: 0, passed: true }],
    });
    const empty = run([{ rowCount: { min: 1 } }, { column: "trade_id", required: true }], []).report;
    expect(empty.score).toBe(0);
    expect(empty.rules[0]).toEqual({ rule: "row count >= 1", kind: "dataset", failures: 1, passed: false, detail: "0 rows" });
  });

  it("freshness looks at the newest non-null value against now", () => {
    const rows = [
      { executed_at: "2026-11-01T09:00:00.000Z" },
      { executed_at: null },
      { executed_at: "2026-11-02T09:30:00.125Z" },
      { executed_at: "2026-11-02T09:30:00.125001Z" },
    ];
    const fresh = run([{ freshness: { column: "executed_at", maxAge: "24h" } }], rows).report.rules[0];
    expect(fresh).toEqual({
      rule: "executed_at newer than 24h",
      column: "executed_at",
      kind: "dataset",
      failures: 0,
      passed: true,
      detail: "newest 2026-11-02T09:30:00.125001Z is 2h29m old (limit 24h)",
    });
    const stale = run([{ freshness: { column: "executed_at", maxAge: "2h" } }], rows).report;
    expect(stale.rules[0]).toMatchObject({ passed: false, failures: 1, detail: "newest 2026-11-02T09:30:00.125001Z is 2h29m old (limit 2h)" });
    expect(stale.score).toBe(0);
    expect(run([{ freshness: { column: "executed_at", maxAge: "1h" } }], [{ executed_at: null }]).report.rules[0]).toMatchObject({
      passed: false,
      detail: "no timestamp values in executed_at",
    });
    expect(run([{ freshness: { column: "trade_date", maxAge: "36h" } }], [{ trade_date: "2026-11-01" }]).report.rules[0]).toMatchObject({
      passed: true,
      detail: "newest 2026-11-01 is 36h0m old (limit 36h)",
    });
    expect(run([{ freshness: { column: "raw", maxAge: "1d" } }], [{ raw: "2026-11-02 10:00:00+01:00" }, { raw: "junk" }]).report.rules[0]).toMatchObject({
      passed: true,
      detail: "newest 2026-11-02T09:00:00.000Z is 3h0m old (limit 1d)",
    });
  });

  it("defaults now to the current time", () => {
    const qc = createQualityChecker(rules({ freshness: { column: "executed_at", maxAge: "1m" } }), columns);
    qc.check({ executed_at: new Date(Date.now() - 1000).toISOString() }, 2);
    expect(qc.finish().rules[0]!.passed).toBe(true);
  });
});

describe("score", () => {
  it("is (rows passing every row check / rows checked) × (dataset checks passed / dataset checks), to 4 decimals", () => {
    const rows = Array.from({ length: 10 }, (_, i) => ({ quantity: i < 3 ? "0" : "5" }));
    const { report } = run([{ column: "quantity", min: 1 }, { rowCount: { min: 1 } }, { rowCount: { max: 5 } }], rows);
    expect(report).toMatchObject({ rowsChecked: 10, rowsFailed: 3 });
    expect(report.score).toBe(0.35); // 0.7 × 1/2
    expect(score(3, 1, 0, 0)).toBe(0.6667);
    expect(score(0, 0, 0, 0)).toBe(1);
    expect(score(7, 0, 2, 3)).toBe(0.6667);
  });
});

describe("exact decimal comparison", () => {
  it("orders decimal text exactly", () => {
    const cases: [string, string, number][] = [
      ["0.10000000000000000001", "0.1", 1],
      ["0.1", "0.10", 0],
      ["-0", "0.000", 0],
      ["-1", "-0.5", -1],
      ["-2", "-10", 1],
      ["007", "7.0", 0],
      [".5", "0.49999999999999999999999", 1],
      ["123456789012345678901234567890", "123456789012345678901234567891", -1],
      ["5.", "5", 0],
      ["+3", "-3", 1],
    ];
    expect(cases.map(([a, b]) => compareDecimals(a, b))).toEqual(cases.map((c) => c[2]));
  });
});

describe("configuration errors (BAD_CONFIG), raised once when the checker is built", () => {
  const make =
    (...r: unknown[]) =>
    () =>
      createQualityChecker(rules(...r), columns);
  const config = (message: RegExp) => expect.objectContaining({ code: "BAD_CONFIG", message: expect.stringMatching(message) });

  it("an unknown column, naming it and the known ones", () => {
    expect(make({ column: "qty", min: 1 })).toThrow(
      config(
        /quality rule names column qty, which is not in the dataset \(columns: trade_id, executed_at, trade_date, symbol, side, quantity, price, rate, settled, raw\)/,
      ),
    );
    expect(make({ freshness: { column: "updated_at", maxAge: "1h" } })).toThrow(config(/column updated_at/));
  });

  it("unusable rule values", () => {
    expect(make({ column: "symbol", pattern: "([A-Z" })).toThrow(config(/the pattern does not compile/));
    expect(make({ freshness: { column: "executed_at", maxAge: "a day" } })).toThrow(config(/maxAge "a day" is not a duration/));
    expect(make({ freshness: { column: "quantity", maxAge: "1h" } })).toThrow(config(/column quantity is integer, not a timestamp or date/));
    expect(make({ column: "settled", min: 0 })).toThrow(config(/min\/max do not apply to boolean column settled/));
    expect(make({ column: "quantity", min: "lots" })).toThrow(config(/"lots" is not a number, but column quantity is integer/));
    expect(make({ column: "executed_at", max: "tomorrow" })).toThrow(config(/"tomorrow" is not a valid timestamp bound/));
    expect(make({ column: "quantity", allowed: [1, "x"] })).toThrow(config(/"x" is not an integer, the type of column quantity/));
    expect(make({ column: "quantity" })).toThrow(config(/quality rule 1 has no check/));
    expect(make({ unique: true })).toThrow(config(/quality rule 1 has row checks but no column/));
    expect(make({ rowCount: {} })).toThrow(config(/rowCount needs min, max or both/));
  });
});

describe("unique past the in-memory bound", () => {
  it("moves seen values to disk and finds duplicates on both sides of the move, leaving no file behind", () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-unique-"));
    const cols: Column[] = [{ name: "id", type: "string" }];
    const run = (spill?: { dir: string; maxInMemory: number }) => {
      const checker = createQualityChecker([{ column: "id", unique: true }], cols, spill ? { spill } : {});
      const reasons: string[] = [];
      // 5,000 distinct ids, then every 7th one again, then one repeated from the start.
      for (let i = 0; i < 5_000; i++) reasons.push(...checker.check({ id: `id-${i}` }, i + 2));
      for (let i = 0; i < 5_000; i += 7) reasons.push(...checker.check({ id: `id-${i}` }, 10_000 + i));
      const report = checker.finish();
      return { reasons, failed: report.rowsFailed };
    };
    const inMemory = run();
    const spilled = run({ dir, maxInMemory: 1_000 });
    expect(spilled).toEqual(inMemory);
    expect(spilled.failed).toBe(715);
    expect(spilled.reasons[0]).toBe('id: duplicate value "id-0", first seen at line 2');
    expect(readdirSync(dir)).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });
});

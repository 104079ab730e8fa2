/**
 * data-merger/merge_processed_files over real typed datasets on disk: duplicates and conflicts
 * across source files, the three policies, accounting, quarantine, output order and speed.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { mergeProcessedFiles, sourceMatcher, compareTimestampValues, type MergeInput, type MergeReport } from "../../src/actions/batch/merge.js";
import { readDataset, type Dataset } from "../../src/actions/batch/dataset.js";
import type { Column, QuarantinedRecord } from "../../src/actions/batch/model.js";
import { SEED_SIGNATURES } from "../../src/actions/seed-catalogue.js";
import { COLUMNS, context, dataset, trade, type Row } from "./typed-datasets.js";
import { readStageRows } from "../../src/formats/stage.js";

interface Result {
  out: Record<string, unknown>;
  ds: Dataset;
  rows: (Row & { _line?: unknown; source?: unknown })[];
  report: MergeReport;
}

async function merge(input: Omit<MergeInput, "dataset">, ref: string, root: string, tuning: { maxCandidates?: number } = {}): Promise<Result> {
  const out = await mergeProcessedFiles({ dataset: ref, ...input }, context(root), tuning);
  const ds = await readDataset(out.dataset as string);
  const rows: Result["rows"] = [];
  for (const p of ds.parts)
    for await (const batch of readStageRows(p.path, ds.columns ?? []))
      for (const r of batch) rows.push({ ...(r.row as Row), _line: r.line, source: p.source } as Result["rows"][number]);
  return { out, ds, rows, report: ds.meta!.merge as MergeReport };
}

function quarantined(path: string): QuarantinedRecord[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as QuarantinedRecord);
}

function balanced(r: Result): void {
  const a = r.ds.accounting!;
  expect(a.rowsIn).toBe(r.rows.length + a.rowsQuarantined + a.rowsDuplicate);
  expect(r.ds.rows).toBe(r.rows.length);
  expect(r.out.rowsOut).toBe(r.rows.length);
}

describe("merge_processed_files", () => {
  it("removes exact duplicates across files, keeps one row per key, carries meta and quarantine", async () => {
    const { ref, root } = await dataset(
      [
        { source: "/data/in/a.csv", rows: [trade("T1"), trade("T2"), trade("T3")] },
        { source: "/data/in/b.csv", rows: [trade("T2"), trade("T4"), trade("T1"), trade("T2")] },
      ],
      { prior: { rowsQuarantined: 2, rowsDuplicate: 1 }, quarantine: ["/earlier/quarantine.ndjson"] },
    );
    const r = await merge({ key: ["trade_id"] }, ref, root);
    expect(r.rows.map((x) => x.trade_id).sort()).toEqual(["T1", "T2", "T3", "T4"]);
    expect(r.out).toMatchObject({ rowsIn: 10, rowsOut: 4, rowsDuplicate: 3, conflicts: 0, rowsSuperseded: 0, rowsQuarantined: 2, sources: 2 });
    expect(r.ds.accounting).toEqual({ rowsIn: 10, rowsQuarantined: 2, rowsDuplicate: 4 });
    balanced(r);
    expect(r.ds.key).toEqual(["trade_id"]);
    expect(r.ds.columns).toEqual(COLUMNS);
    expect(r.ds.quarantine).toEqual(["/earlier/quarantine.ndjson"]);
    expect((r.ds.meta!.ingest as { scope: string }).scope).toBe("bulk:/data/in");
    expect(r.ds.meta!.source).toBe("bulk");
    expect(r.report).toMatchObject({ policy: "input-order", rowsRead: 7, rowsOut: 4, rowsDuplicate: 3, conflicts: 0, rowsQuarantined: 0 });
    expect(r.report.sources).toEqual([
      { source: "/data/in/a.csv", rowsIn: 3, rowsOut: 1 },
      { source: "/data/in/b.csv", rowsIn: 4, rowsOut: 3 },
    ]);
    // No policy: the last copy in input order is kept, with its own source and line.
    expect(r.rows.find((x) => x.trade_id === "T2")).toMatchObject({ source: "/data/in/b.csv", _line: 5 });
    // The scratch database is gone; only the parts and the manifest remain.
    expect(readdirSync(join(root, "artifacts", "data-consolidation")).sort()).toEqual(["dataset.json", "part-0000.stage", "part-0001.stage"]);
  });

  it("without a policy the last row in input order wins a conflict", async () => {
    const { ref, root } = await dataset([
      { source: "a", rows: [trade("T1", { price: "1.0000" }), trade("T2")] },
      { source: "b", rows: [trade("T1", { price: "2.0000" })] },
    ]);
    const r = await merge({ key: ["trade_id"] }, ref, root);
    expect(r.rows.find((x) => x.trade_id === "T1")!.price).toBe("2.0000");
    expect(r.out).toMatchObject({ rowsOut: 2, rowsDuplicate: 0, conflicts: 1, rowsSuperseded: 1 });
    balanced(r);
  });

  it("latest: the greatest timestamp wins, as instants across fraction lengths; ties go to the later row", async () => {
    const { ref, root } = await dataset([
      {
        source: "/in/a.ndjson",
        rows: [
          trade("T1", { executed_at: "2026-11-02T09:30:00.125001Z", price: "1.0000" }),
          trade("T2", { executed_at: "2026-11-02T09:30:00.500Z", price: "1.0000" }),
          trade("T3", { executed_at: "2026-11-02T09:30:00.000Z", price: "1.0000" }),
          trade("T4", { executed_at: null, price: "1.0000" }),
        ],
      },
      {
        source: "/in/b.ndjson",
        rows: [
          // As text "…00.125Z" > "…00.125001Z"; as instants it is earlier, so it loses.
          trade("T1", { executed_at: "2026-11-02T09:30:00.125Z", price: "2.0000" }),
          // Later instant with a longer fraction wins.
          trade("T2", { executed_at: "2026-11-02T09:30:00.500001Z", price: "2.0000" }),
          // Same instant, different content: the later row wins the tie.
          trade("T3", { executed_at: "2026-11-02T09:30:00.000Z", price: "2.0000" }),
          // A value beats null.
          trade("T4", { executed_at: "2020-01-01T00:00:00.000Z", price: "2.0000" }),
        ],
      },
      {
        source: "/in/c.ndjson",
        rows: [trade("T1", { executed_at: "2026-11-02T09:30:00.125Z", price: "2.0000" }), trade("T4", { executed_at: null, price: "3.0000" })],
      },
    ]);
    const r = await merge({ key: ["trade_id"], conflict: { policy: "latest", column: "executed_at" } }, ref, root);
    const price = Object.fromEntries(r.rows.map((x) => [x.trade_id, x.price]));
    expect(price).toEqual({ T1: "1.0000", T2: "2.0000", T3: "2.0000", T4: "2.0000" });
    // T1 had versions 1 and 2 (the second "2" is an exact duplicate); T4 had three versions.
    expect(r.out).toMatchObject({ rowsOut: 4, conflicts: 4, rowsSuperseded: 5, rowsDuplicate: 1 });
    expect(r.ds.accounting).toEqual({ rowsIn: 10, rowsQuarantined: 0, rowsDuplicate: 6 });
    balanced(r);
    expect(r.report.conflictSamples).toEqual([["T1"], ["T2"], ["T3"], ["T4"]]);
    expect(r.rows.find((x) => x.trade_id === "T1")).toMatchObject({ source: "/in/a.ndjson", _line: 2 });
  });

  it("latest: decimal and integer columns compare exactly as numbers", async () => {
    const { ref, root } = await dataset([
      {
        source: "a",
        rows: [trade("T1", { price: "9.5000", symbol: "a" }), trade("T2", { price: "-1.0000", symbol: "a" }), trade("T3", { price: "0.1000", symbol: "a" })],
      },
      {
        source: "b",
        rows: [trade("T1", { price: "10.2500", symbol: "b" }), trade("T2", { price: "-0.5000", symbol: "b" }), trade("T3", { price: "0.0999", symbol: "b" })],
      },
    ]);
    const r = await merge({ key: ["trade_id"], conflict: { policy: "latest", column: "price" } }, ref, root);
    expect(Object.fromEntries(r.rows.map((x) => [x.trade_id, x.symbol]))).toEqual({ T1: "b", T2: "b", T3: "a" });
    expect(r.out).toMatchObject({ conflicts: 3, rowsSuperseded: 3, rowsDuplicate: 0 });
    balanced(r);

    const ints = await dataset([
      { source: "a", rows: [trade("T1", { quantity: "100", symbol: "a" }), trade("T2", { quantity: "-7", symbol: "a" })] },
      { source: "b", rows: [trade("T1", { quantity: "99", symbol: "b" }), trade("T2", { quantity: "-10", symbol: "b" })] },
      { source: "c", rows: [trade("T1", { quantity: "9223372036854775807", symbol: "c" }), trade("T2", { quantity: "-9223372036854775808", symbol: "c" })] },
    ]);
    const ri = await merge({ key: ["trade_id"], conflict: { policy: "latest", column: "quantity" } }, ints.ref, ints.root);
    expect(Object.fromEntries(ri.rows.map((x) => [x.trade_id, x.symbol]))).toEqual({ T1: "c", T2: "a" });
  });

  it("priority: the row from the earliest-matching source wins; unmatched sources rank last", async () => {
    const { ref, root } = await dataset([
      { source: "/data/in/primary/trades.csv", rows: [trade("T1", { symbol: "primary" }), trade("T2", { symbol: "primary" })] },
      { source: "/data/in/vendor.backup.csv", rows: [trade("T1", { symbol: "backup" }), trade("T3", { symbol: "backup" }), trade("T4", { symbol: "backup" })] },
      {
        source: "/data/in/other.csv",
        rows: [trade("T2", { symbol: "other" }), trade("T3", { symbol: "other" }), trade("T5", { symbol: "other" }), trade("T5", { symbol: "other-2" })],
      },
      { source: "/data/in/primary/late.csv", rows: [trade("T2", { symbol: "primary" }), trade("T4", { symbol: "primary-late" })] },
    ]);
    const r = await merge({ key: ["trade_id"], conflict: { policy: "priority", priority: ["/primary/", "*.backup.csv"] } }, ref, root);
    const by = Object.fromEntries(r.rows.map((x) => [x.trade_id, `${x.symbol}@${x.source}`]));
    expect(by).toEqual({
      T1: "primary@/data/in/primary/trades.csv",
      // The identical copy from the same rank, later in input order, is the one kept.
      T2: "primary@/data/in/primary/late.csv",
      T3: "backup@/data/in/vendor.backup.csv",
      T4: "primary-late@/data/in/primary/late.csv",
      // Same rank (unmatched): the later row wins.
      T5: "other-2@/data/in/other.csv",
    });
    expect(r.out).toMatchObject({ rowsOut: 5, conflicts: 5, rowsSuperseded: 5, rowsDuplicate: 1 });
    expect(r.report.sources.map((s) => s.rank)).toEqual([0, 1, 2, 0]);
    balanced(r);
  });

  it("source patterns: substrings, globs on the whole path or the file name", () => {
    expect(sourceMatcher("primary")("/data/primary/x.csv")).toBe(true);
    expect(sourceMatcher("*.csv")("/data/x.csv")).toBe(true);
    expect(sourceMatcher("*.csv")("/data/x.ndjson")).toBe(false);
    expect(sourceMatcher("/data/*/x.csv")("/data/a/x.csv")).toBe(true);
    expect(sourceMatcher("/data/*/x.csv")("/data/a/b/x.csv")).toBe(false);
    expect(sourceMatcher("/data/**/x.csv")("/data/a/b/x.csv")).toBe(true);
    expect(sourceMatcher("/data/**/x.csv")("/data/x.csv")).toBe(true);
    expect(sourceMatcher("/data/**/x.csv")("/data/abx.csv")).toBe(false);
    expect(sourceMatcher("trades-202?-0[1-3].csv")("/in/trades-2026-02.csv")).toBe(true);
    expect(sourceMatcher("trades-202?-0[1-3].csv")("/in/trades-2026-04.csv")).toBe(false);
    expect(compareTimestampValues("2026-11-02T09:30:00.125Z", "2026-11-02T09:30:00.125001Z")).toBe(-1);
    expect(compareTimestampValues("2026-11-02T09:30:00.125Z", "2026-11-02T09:30:00.125000Z")).toBe(0);
    expect(compareTimestampValues("2026-11-02T09:30:01Z", "2026-11-02T09:30:00.999999Z")).toBe(1);
  });

  it("writes a stable order: keys seen once in input order, part by source; then the repeated keys' winners, part by winning source, in first-seen order", async () => {
    const files = [
      { source: "a", rows: ["K5", "K1", "K9", "K3"].map((k) => trade(k, { symbol: "a" })) },
      { source: "b", rows: ["K3", "K7", "K1", "K2"].map((k) => trade(k, { symbol: "b" })) },
      { source: "c", rows: ["K9", "K8"].map((k) => trade(k, { symbol: "c" })) },
    ];
    const one = await dataset(files);
    const two = await dataset(files);
    const r1 = await merge({ key: ["trade_id"] }, one.ref, one.root);
    const r2 = await merge({ key: ["trade_id"] }, two.ref, two.root);
    const order = (r: Result) => r.rows.map((x) => `${x.source}:${x.trade_id}:${x._line}`);
    expect(order(r1)).toEqual(["a:K5:2", "b:K7:3", "b:K2:5", "c:K8:3", "b:K1:4", "b:K3:2", "c:K9:2"]);
    expect(order(r2)).toEqual(order(r1));
    expect(r1.ds.parts.map((p) => [p.source, p.rows])).toEqual([
      ["a", 1],
      ["b", 2],
      ["c", 1],
      ["b", 2],
      ["c", 1],
    ]);
    const body = (r: Result) => r.ds.parts.map((p) => readFileSync(p.path, "utf8")).join("");
    expect(body(r2)).toBe(body(r1));
    // Rows keep exactly the schema columns plus _line, in schema order.
    expect(readFileSync(r1.ds.parts[0]!.path, "utf8").split("\n")[0]!.split("\t")).toEqual(["_line", ...COLUMNS.map((c) => c.name), "_sluice_hash"]);
  });

  it("gives the same winners and counts whether the keys seen once are screened out or every row goes through the scratch database", async () => {
    const files = [
      { source: "a", rows: ["K5", "K1", "K9", "K3", "K1"].map((k, i) => trade(k, { symbol: i === 4 ? "z" : "a" })) },
      { source: "b", rows: ["K3", "K7", "K1", "K2", "K7"].map((k) => trade(k, { symbol: "b" })) },
    ];
    const screened = await merge({ key: ["trade_id"] }, (await dataset(files)).ref, (await dataset(files)).root);
    const every = await dataset(files);
    const exact = await merge({ key: ["trade_id"] }, every.ref, every.root, { maxCandidates: 0 });
    const sorted = (r: Result) => r.rows.map((x) => `${x.trade_id}:${x.source}:${x.symbol}:${x._line}`).sort();
    expect(sorted(screened)).toEqual(sorted(exact));
    expect(sorted(exact)).toEqual(["K1:b:b:4", "K2:b:b:5", "K3:b:b:2", "K5:a:a:2", "K7:b:b:6", "K9:a:a:4"]);
    const counts = (r: Result) => [r.report.rowsOut, r.report.rowsDuplicate, r.report.conflicts, r.report.rowsSuperseded];
    expect(counts(screened)).toEqual(counts(exact));
    expect(counts(exact)).toEqual([6, 1, 2, 3]); // K7 twice alike; K1 in three versions, K3 in two
  });

  it("a composite key whose columns have another between them: rows differing only there are one key", async () => {
    // Key (trade_id, symbol); executed_at lies between them in the line and differs.
    const files = [
      { source: "a", rows: [trade("T1", { executed_at: "2026-11-02T09:30:00.000Z" }), trade("T2")] },
      { source: "b", rows: [trade("T1", { executed_at: "2026-11-03T09:30:00.000Z" }), trade("T2", { symbol: "OTHER" })] },
    ];
    const screened = await dataset(files);
    const r = await merge({ key: ["trade_id", "symbol"], conflict: { policy: "latest", column: "executed_at" } }, screened.ref, screened.root);
    const exact = await dataset(files);
    const e = await merge({ key: ["trade_id", "symbol"], conflict: { policy: "latest", column: "executed_at" } }, exact.ref, exact.root, { maxCandidates: 0 });
    const rows = (x: Result) => x.rows.map((row) => `${row.trade_id}/${row.symbol}@${String(row.executed_at).slice(0, 10)}:${row.source}`).sort();
    expect(rows(r)).toEqual(["T1/ACME@2026-11-03:b", "T2/ACME@2026-11-02:a", "T2/OTHER@2026-11-02:b"]);
    expect(rows(r)).toEqual(rows(e));
    expect(r.report).toMatchObject({ rowsOut: 3, conflicts: 1, rowsSuperseded: 1 });
    balanced(r);
  });

  it("quarantines rows with an empty key column, with the reason and the source position", async () => {
    const columns: Column[] = [...COLUMNS, { name: "venue", type: "string" }];
    const { ref, root } = await dataset(
      [
        { source: "/in/a.csv", rows: [trade("T1", { venue: "X" }), trade(null, { venue: "X" }), trade("T2", { venue: null })] },
        { source: "/in/b.csv", rows: [trade("", { venue: "Y" }), trade("T1", { venue: "X" })] },
      ],
      { columns, prior: { rowsQuarantined: 1 }, quarantine: ["/earlier.ndjson"] },
    );
    const single = await merge({ key: ["trade_id"] }, ref, root);
    expect(single.out).toMatchObject({ rowsIn: 6, rowsOut: 2, rowsDuplicate: 1, rowsQuarantined: 3 });
    balanced(single);
    expect(single.ds.quarantine).toHaveLength(2);
    expect(single.ds.quarantine[0]).toBe("/earlier.ndjson");
    const q = quarantined(single.ds.quarantine[1]!);
    expect(q).toEqual([
      { source: "/in/a.csv", line: 3, step: "data-consolidation", reasons: ["key column trade_id is empty"], record: trade(null, { venue: "X" }) },
      { source: "/in/b.csv", line: 2, step: "data-consolidation", reasons: ["key column trade_id is empty"], record: trade("", { venue: "Y" }) },
    ]);

    const composite = await merge({ key: ["trade_id", "venue"] }, ref, root);
    expect(composite.out).toMatchObject({ rowsOut: 1, rowsDuplicate: 1, rowsQuarantined: 4 });
    expect(quarantined(composite.ds.quarantine[1]!).map((x) => x.reasons)).toEqual([
      ["key column trade_id is empty"],
      ["key column venue is empty"],
      ["key column trade_id is empty"],
    ]);
    balanced(composite);
  });

  it("an empty input dataset gives an empty output", async () => {
    const none = await dataset([]);
    const r = await merge({ key: ["trade_id"], conflict: { policy: "latest", column: "executed_at" } }, none.ref, none.root);
    expect(r.ds.parts).toEqual([]);
    expect(r.out).toMatchObject({ rowsIn: 0, rowsOut: 0, rowsDuplicate: 0, conflicts: 0, rowsSuperseded: 0, rowsQuarantined: 0, sources: 0 });
    balanced(r);

    const emptyParts = await dataset([
      { source: "a", rows: [] },
      { source: "b", rows: [] },
    ]);
    const r2 = await merge({ key: ["trade_id"] }, emptyParts.ref, emptyParts.root);
    expect(r2.rows).toEqual([]);
    expect(r2.out).toMatchObject({ rowsOut: 0, sources: 2 });
  });

  it("rejects bad configuration and untyped input before reading", async () => {
    const { ref, root } = await dataset([{ source: "a", rows: [trade("T1")] }]);
    await expect(mergeProcessedFiles({ dataset: ref, key: ["nope"] }, context(root))).rejects.toMatchObject({
      code: "BAD_CONFIG",
      message: expect.stringContaining("key column nope"),
    });
    await expect(
      mergeProcessedFiles({ dataset: ref, key: ["trade_id"], conflict: { policy: "latest", column: "symbol" } }, context(root)),
    ).rejects.toMatchObject({ code: "BAD_CONFIG" });
    await expect(mergeProcessedFiles({ dataset: ref, key: ["trade_id"], conflict: { policy: "latest" } }, context(root))).rejects.toMatchObject({
      code: "BAD_CONFIG",
    });
    const sig = SEED_SIGNATURES.find((s) => s.action === "merge_processed_files")!;
    expect(sig.input.safeParse({ dataset: "x", key: ["id"], conflict: { policy: "latest" } }).success).toBe(false);
    expect(sig.input.safeParse({ dataset: "x", key: ["id"], conflict: { policy: "priority" } }).success).toBe(false);
    expect(sig.input.safeParse({ dataset: "x", key: ["id"], conflict: { policy: "latest", column: "ts" } }).success).toBe(true);
    expect(sig.input.safeParse({ dataset: "x", key: ["id"], conflict: { policy: "priority", priority: ["primary/", "*.csv"] } }).success).toBe(true);
  });

  it("stops on an aborted signal and leaves no scratch database", async () => {
    const { ref, root } = await dataset([{ source: "a", rows: [trade("T1"), trade("T2")] }]);
    const ac = new AbortController();
    ac.abort(new Error("step timed out"));
    await expect(mergeProcessedFiles({ dataset: ref, key: ["trade_id"] }, context(root, { signal: ac.signal }))).rejects.toThrow("step timed out");
    expect(existsSync(join(root, "artifacts", "data-consolidation", "merge-scratch.sqlite"))).toBe(false);
  });

  it("merges 100k rows from several files quickly, with progress", async () => {
    const n = 100_000;
    const files = [0, 1, 2, 3].map((f) => ({
      source: `/data/in/file-${f}.csv`,
      rows: Array.from({ length: n / 4 }, (_, i) => {
        const id = f * (n / 4) + i;
        // Every 10th row of files 1..3 repeats a key of file 0 with a later timestamp.
        const key = f > 0 && i % 10 === 0 ? `T${i}` : `T${id}`;
        return trade(key, { executed_at: `2026-11-02T09:30:0${f}.000Z`, quantity: String(id), price: `${id}.0000` });
      }),
    }));
    const { ref, root } = await dataset(files);
    const ctx = context(root);
    const t0 = performance.now();
    const out = await mergeProcessedFiles({ dataset: ref, key: ["trade_id"], conflict: { policy: "latest", column: "executed_at" } }, ctx);
    const ms = performance.now() - t0;
    expect(out).toMatchObject({ rowsIn: n, rowsOut: n - 7_500, conflicts: 2_500, rowsSuperseded: 7_500, rowsDuplicate: 0 });
    expect(ctx.progressRows.at(-1)).toBe(n);
    expect(ms).toBeLessThan(5_000);
  });
});

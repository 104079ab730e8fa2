/**
 * The repeats pass (repeats.ts) where the steps use it: the quality step's `unique` check on a
 * large dataset looks for the values that may repeat first; its reasons, line numbers, score
 * and quarantine are the same as when it remembers every value.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { validateDataQuality } from "../../src/actions/batch/validate.js";
import { repeatCandidates } from "../../src/actions/batch/repeats.js";
import { readDataset } from "../../src/actions/batch/dataset.js";
import { COLUMNS, context, dataset, trade } from "./typed-datasets.js";

const files = [
  { source: "/in/a.csv", rows: ["T1", "T2", "T3", "T1", null, "T4"].map((k) => trade(k)) },
  { source: "/in/b.csv", rows: ["T5", "T2", "T\\6", "T\\6", "T1"].map((k) => trade(k)) },
];

describe("repeats", () => {
  it("finds every repeated value from the staged bytes (escaped text too), decoding only those lines", async () => {
    const { ref } = await dataset(files);
    const found = await repeatCandidates(await readDataset(ref), COLUMNS, ["trade_id"], new AbortController().signal, 100, (row) =>
      typeof row.trade_id === "string" && row.trade_id !== "" ? row.trade_id : undefined,
    );
    // Bloom false positives would add values; on this little data there are none.
    expect([...found!].sort()).toEqual(["T1", "T2", "T\\6"]);
    const none = await repeatCandidates(await readDataset(ref), COLUMNS, ["trade_id"], new AbortController().signal, 1, (row) => String(row.trade_id));
    expect(none).toBeUndefined(); // more candidates than allowed: the caller checks every value
  });

  it("the quality step's unique check gives the same outcome with the repeats pass as without", async () => {
    const outcome = async (screenRows: number) => {
      const { ref, root } = await dataset(files);
      const ctx = context(root, { step: "quality-validation" });
      const out = await validateDataQuality({ dataset: ref, rules: [{ column: "trade_id", unique: true }], threshold: 0 }, ctx, { screenRows });
      const ds = await readDataset(out.dataset as string);
      const quarantined = ds.quarantine
        .flatMap((f) => readFileSync(f, "utf8").trim().split("\n"))
        .map((l) => JSON.parse(l) as { source: string; line: number; reasons: string[] })
        .map((q) => `${q.source}:${q.line} ${q.reasons.join("; ")}`);
      return { score: out.score, rowsOut: out.rowsOut, rules: out.rules, quarantined };
    };
    const screened = await outcome(0);
    expect(screened).toEqual(await outcome(Number.MAX_SAFE_INTEGER));
    expect(screened.quarantined).toEqual([
      '/in/a.csv:5 trade_id: duplicate value "T1", first seen at line 2',
      '/in/b.csv:3 trade_id: duplicate value "T2", first seen at line 3',
      '/in/b.csv:5 trade_id: duplicate value "T\\\\6", first seen at line 4',
      '/in/b.csv:6 trade_id: duplicate value "T1", first seen at line 2',
    ]);
  });
});

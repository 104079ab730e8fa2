/**
 * Rows screened in the conversion step: the quality step then decodes only the `unique` column of
 * the rows that passed the screen, and checks the flagged ones in full. Its outcome must be what
 * checking every row in full gives: the same report, the same quarantined records with the same
 * reasons in the same order, the same rows left out.
 */
import { describe, expect, it } from "vitest";
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readDataset, writeDataset } from "../../src/actions/batch/dataset.js";
import { validateDataQuality } from "../../src/actions/batch/validate.js";
import { collectDataFromSource } from "../../src/actions/batch/collect.js";
import { convertToStandardFormat } from "../../src/actions/batch/standardize.js";
import { mergeProcessedFiles } from "../../src/actions/batch/merge.js";
import { writeTradesCsv } from "../../src/samples/trades.js";
import { actionContext } from "../helpers.js";
import { ROOT } from "../cli/cli-helpers.js";
import { standardWorkflow } from "./standard-workflow.js";

const std = standardWorkflow("sluice-screen-");
const SCHEMA = join(ROOT, "examples", "schemas", "trades.yaml");

function quarantined(path: string | undefined): unknown[] {
  return path
    ? readFileSync(path, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as unknown)
    : [];
}

describe("quality checks of rows screened by the conversion step", () => {
  it("give the report, quarantine and exclusions of checking every row in full", async () => {
    const file = join(std.data, "trades.csv");
    await writeTradesCsv(file, { rows: 20_000, seed: 11, badShare: 0.05 });
    const firstId = readFileSync(file, "utf8").split("\n")[1]!.split(",")[0]!;
    // A row breaking a screened rule (side) and the unique rule at once, and one with a NUL-free
    // escaped note that breaks the pattern rule: reasons from both kinds of check, in rule order.
    appendFileSync(file, `${firstId},2026-11-02T10:00:00Z,MSFT,HOLD,5,10.0000,ACC-1,a@example.com,again\n`);
    appendFileSync(file, `S-1,2026-11-02T10:00:00Z,msft,BUY,5,10.0000,ACC-1,a@example.com,"tab\there"\n`);
    const { run, detail } = await std.run({ source: file, destination: `sqlite:${join(std.data, "w.db")}`, table: "trades" });
    expect(run.status, JSON.stringify(run.error)).toBe("succeeded");
    const converted = detail.steps.find((s) => s.name === "format-conversion")!.outputs!.dataset as string;
    const screenedOut = detail.steps.find((s) => s.name === "quality-validation")!.outputs!;
    const ds = await readDataset(converted);
    expect(ds.meta?.screen).toBeDefined();

    // The same dataset without its screen, checked again in full.
    const dir = join(std.data, "unscreened");
    mkdirSync(dir);
    const { screen: _screen, ...meta } = ds.meta!;
    const plain = await writeDataset(dir, { ...ds, meta });
    const full = await validateDataQuality(
      { dataset: plain, rules: [], schema: SCHEMA, threshold: 0.9 },
      actionContext({ artifactsDir: join(std.data, "full-artifacts"), step: "quality-validation" }),
    );
    const { dataset: a, ...screenedFigures } = screenedOut;
    const { dataset: b, ...fullFigures } = full;
    expect(screenedFigures).toEqual(fullFigures);
    expect(Number(full.rowsOut)).toBeLessThan(20_002);

    const sa = await readDataset(a as string);
    const sb = await readDataset(b as string);
    expect(sa.meta?.quality).toEqual(sb.meta?.quality);
    const qa = quarantined(sa.quarantine.at(-1));
    const qb = quarantined(sb.quarantine.at(-1));
    expect(qa.length).toBeGreaterThan(300);
    expect(qa).toEqual(qb);
    const both = qa.find(
      (q) => (q as { record: { side: string } }).record.side === "HOLD" && String((q as { reasons: string[] }).reasons).includes("duplicate"),
    );
    expect((both as { reasons: string[] }).reasons).toEqual([
      expect.stringMatching(/^trade_id: duplicate value/),
      expect.stringMatching(/^side: "HOLD" is not allowed/),
    ]);
    expect(JSON.parse(readFileSync(sa.exclude!, "utf8"))).toEqual(JSON.parse(readFileSync(sb.exclude!, "utf8")));
  });

  it("still hold after the merge step, which carries the screen over to the parts it writes", async () => {
    const input = join(std.data, "bulk");
    mkdirSync(input);
    // The same ids in two files with other content: the merge keeps one row per id.
    await writeTradesCsv(join(input, "a.csv"), { rows: 3_000, seed: 1, badShare: 0.05 });
    await writeTradesCsv(join(input, "b.csv"), { rows: 3_000, seed: 2, badShare: 0.05 });
    const ctx = (step: string, where = "bulk-artifacts") => actionContext({ artifactsDir: join(std.data, where), step });
    const schema = {
      key: ["trade_id"],
      columns: [
        { name: "trade_id", type: "string" as const, required: true },
        { name: "executed_at", type: "timestamp" as const, required: true },
        { name: "symbol", type: "string" as const, required: true },
        { name: "side", type: "string" as const, required: true },
        { name: "quantity", type: "integer" as const, required: true },
        { name: "price", type: "decimal" as const, scale: 4, required: true },
        { name: "account", type: "string" as const, required: true },
        { name: "trader_email", type: "string" as const },
        { name: "notes", type: "string" as const },
      ],
      rules: [
        { column: "side", allowed: ["BUY", "SELL"] },
        { column: "quantity", min: 1 },
        { column: "symbol", pattern: "^[A-Z]{1,6}$" },
      ],
    };
    const collected = await collectDataFromSource({ source: input }, ctx("collect"));
    const converted = await convertToStandardFormat({ dataset: collected.dataset as string, schema, maxRejectShare: 1 }, ctx("standardize"));
    const merged = await mergeProcessedFiles(
      { dataset: converted.dataset as string, key: ["trade_id"], conflict: { policy: "latest", column: "executed_at" } },
      ctx("merge"),
    );
    const ds = await readDataset(merged.dataset as string);
    expect(ds.meta?.screen).toBeDefined();
    const flagged = JSON.parse(readFileSync((ds.meta!.screen as { file: string }).file, "utf8")) as Record<string, number[]>;
    expect(Object.keys(flagged).sort()).toEqual(ds.parts.map((p) => p.path).sort());

    const screenedOut = await validateDataQuality(
      { dataset: merged.dataset as string, rules: [], schema, threshold: 0 },
      ctx("validate", "screened-artifacts"),
    );
    const { screen: _screen, ...meta } = ds.meta!;
    const dir = join(std.data, "merged-unscreened");
    mkdirSync(dir);
    const full = await validateDataQuality(
      { dataset: await writeDataset(dir, { ...ds, meta }), rules: [], schema, threshold: 0 },
      ctx("validate", "full-check-artifacts"),
    );
    const { dataset: a, ...screenedFigures } = screenedOut;
    const { dataset: b, ...fullFigures } = full;
    expect(Number(full.rowsFailed)).toBeGreaterThan(20);
    expect(screenedFigures).toEqual(fullFigures);
    const sa = await readDataset(a as string);
    const sb = await readDataset(b as string);
    expect(quarantined(sa.quarantine.at(-1))).toEqual(quarantined(sb.quarantine.at(-1)));
  });

  it("checks a part in full when too many of its rows broke a screened rule to list them", async () => {
    const input = join(std.data, "mixed");
    mkdirSync(input);
    const lines = ["trade_id,executed_at,symbol,side,quantity,price,account,trader_email,notes"];
    for (let i = 0; i < 3_000; i++) lines.push(`X${i},2026-11-02T10:00:00Z,MSFT,${i % 10 === 0 ? "BUY" : "HOLD"},5,10.0000,ACC-1,,`);
    lines.push("X7,2026-11-02T10:00:00Z,MSFT,BUY,5,10.0000,ACC-1,,");
    writeFileSync(join(input, "mostly-bad.csv"), lines.join("\n") + "\n");
    await writeTradesCsv(join(input, "fine.csv"), { rows: 3_000, seed: 5, badShare: 0.05, idPrefix: "F-" });
    const ctx = (step: string, where: string) => actionContext({ artifactsDir: join(std.data, where), step });
    const collected = await collectDataFromSource({ source: input }, ctx("collect", "mixed-artifacts"));
    const converted = await convertToStandardFormat(
      { dataset: collected.dataset as string, schema: SCHEMA, maxRejectShare: 1 },
      ctx("convert", "mixed-artifacts"),
    );
    const ds = await readDataset(converted.dataset as string);
    // 2,700 of the 3,001 rows of one file break `side`: more than the screen lists, so only the
    // other file's part is in it.
    const listed = Object.keys(JSON.parse(readFileSync((ds.meta!.screen as { file: string }).file, "utf8")) as object);
    expect(listed).toEqual(ds.parts.filter((p) => p.source.endsWith("fine.csv")).map((p) => p.path));

    const screenedOut = await validateDataQuality(
      { dataset: converted.dataset as string, rules: [], schema: SCHEMA, threshold: 0 },
      ctx("quality", "mixed-screened"),
    );
    const { screen: _screen, ...meta } = ds.meta!;
    const dir = join(std.data, "mixed-unscreened");
    mkdirSync(dir);
    const full = await validateDataQuality(
      { dataset: await writeDataset(dir, { ...ds, meta }), rules: [], schema: SCHEMA, threshold: 0 },
      ctx("quality", "mixed-full"),
    );
    const { dataset: a, ...screenedFigures } = screenedOut;
    const { dataset: b, ...fullFigures } = full;
    expect(screenedFigures).toEqual(fullFigures);
    // Every HOLD row and the repeated X7 are caught, with the other file's failures.
    expect(Number(full.rowsFailed)).toBeGreaterThan(2_701);
    expect(quarantined((await readDataset(a as string)).quarantine.at(-1))).toEqual(quarantined((await readDataset(b as string)).quarantine.at(-1)));
  });

  it("checks every row in full when its rules are not the ones screened", async () => {
    const file = join(std.data, "small.csv");
    writeFileSync(file, "trade_id,executed_at,symbol,side,quantity,price,account,trader_email,notes\nA,2026-11-02T10:00:00Z,MSFT,BUY,5,10.0000,ACC-1,,\n");
    const { run, detail } = await std.run({ source: file, destination: `sqlite:${join(std.data, "w2.db")}`, table: "t2" });
    expect(run.status).toBe("succeeded");
    const converted = detail.steps.find((s) => s.name === "format-conversion")!.outputs!.dataset as string;
    // An extra rule the conversion step did not screen for: the account rule must still fail the row.
    const out = await validateDataQuality(
      { dataset: converted, rules: [{ column: "account", pattern: "^X" }], schema: SCHEMA, threshold: 0 },
      actionContext({ artifactsDir: join(std.data, "extra-artifacts"), step: "quality-validation" }),
    );
    expect(out).toMatchObject({ rowsFailed: 1, rowsOut: 0 });
  });
});

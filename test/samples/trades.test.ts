/**
 * The trades sample generator: byte-for-byte determinism, exact defect counts checked by reading
 * the output back with the formats layer, RFC 4180 quoting, the committed sample files, and the
 * `sluice sample` command.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDir } from "../helpers.js";
import { openCsvWriter, parseCsvStream, readCsv, readJsonArray, readNdjson, type RecordBatch, type RecordError } from "../../src/formats/index.js";
import {
  DEFECT_KINDS,
  TRADE_COLUMNS,
  tradesCsv,
  writeTradesCsv,
  writeTradesFile,
  type DefectKind,
  type TradeSampleOptions,
  type TradeSampleSummary,
} from "../../src/samples/trades.js";
import { SluiceError } from "../../src/errors.js";

const ROOT = resolve(import.meta.dirname, "..", "..");
const DATA = join(ROOT, "examples", "data");
const SAMPLE = join(DATA, "trades-sample.csv");
const SAMPLE_OPTS: TradeSampleOptions = { rows: 2000, seed: 42, badShare: 0.02 };
const BULK: Array<[string, TradeSampleOptions]> = [
  ["trades-a.csv", { rows: 1000, seed: 1, idPrefix: "A-", badShare: 0.01 }],
  ["trades-b.csv", { rows: 1000, seed: 2, idPrefix: "B-", badShare: 0.01 }],
  ["trades-c.ndjson", { rows: 500, seed: 3, idPrefix: "C-", badShare: 0 }],
  ["trades-d.json", { rows: 500, seed: 4, idPrefix: "D-", badShare: 0 }],
];

let dir: string;
beforeAll(() => {
  dir = tempDir("sluice-samples-");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const text = (opts: TradeSampleOptions): string => [...tradesCsv(opts)].join("");

/** Byte equality without a deep element-by-element comparison (slow on 200 KB). */
function expectSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  expect(actual.length, `${what}: size`).toBe(expected.length);
  expect(actual.equals(expected), `${what}: bytes differ`).toBe(true);
}

async function* once(s: string): AsyncGenerator<string> {
  yield s;
}

async function collect(batches: AsyncIterable<RecordBatch>): Promise<{ rows: Record<string, unknown>[]; errors: RecordError[] }> {
  const rows: Record<string, unknown>[] = [];
  const errors: RecordError[] = [];
  for await (const b of batches) {
    rows.push(...b.rows);
    errors.push(...b.errors);
  }
  return { rows, errors };
}

// The typing schema and quality rules the defects are designed against (see src/samples/trades.ts).
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const validTimestamp = (v: string) => ISO_MS.test(v) && !Number.isNaN(Date.parse(v)) && new Date(v).toISOString() === v;
const typedQuantity = (v: string) => /^-?\d+$/.test(v);
const typedPrice = (v: string) => /^-?\d+(\.\d{1,4})?$/.test(v);

/** Which defect a parsed row has, by the schema then the quality rules; undefined for a clean row. */
function rowDefect(r: Record<string, unknown>): DefectKind | undefined {
  const v = (k: string) => String(r[k]);
  if (v("trade_id") === "" || v("symbol") === "") return "missing_required";
  if (!validTimestamp(v("executed_at"))) return "bad_timestamp";
  if (!typedQuantity(v("quantity")) || Number(v("quantity")) < 1) return "bad_quantity";
  if (!typedPrice(v("price"))) return "bad_price";
  if (v("side") !== "BUY" && v("side") !== "SELL") return "bad_side";
  if (!/^[A-Z]{1,6}$/.test(v("symbol"))) return "bad_symbol";
  return undefined;
}

/** Count every defect independently of the generator, from what the reader returns. */
function classify(rows: Record<string, unknown>[], errors: RecordError[]): { defects: Record<DefectKind, number>; clean: number; duplicates: number } {
  const defects = Object.fromEntries(DEFECT_KINDS.map((k) => [k, 0])) as Record<DefectKind, number>;
  for (const e of errors) {
    if (/^expected 9 fields, found \d+$/.test(e.reason)) defects.wrong_field_count++;
    else if (/stray quote/.test(e.reason)) defects.stray_quote++;
    else throw new Error(`unexpected reader error: ${e.reason}`);
  }
  const seen = new Map<string, string>();
  let clean = 0;
  let duplicates = 0;
  for (const r of rows) {
    const d = rowDefect(r);
    if (d) {
      defects[d]++;
      continue;
    }
    const id = String(r.trade_id);
    const content = JSON.stringify(r);
    const earlier = seen.get(id);
    if (earlier === undefined) {
      seen.set(id, content);
      clean++;
    } else if (earlier === content) duplicates++;
    else defects.duplicate_id_conflict++;
  }
  return { defects, clean, duplicates };
}

describe("tradesCsv", () => {
  it("is deterministic: the same options give the same bytes, another seed other bytes", async () => {
    const a = text({ rows: 3000, seed: 7, badShare: 0.05, duplicateShare: 0.02 });
    expect(text({ rows: 3000, seed: 7, badShare: 0.05, duplicateShare: 0.02 })).toBe(a);
    expect(text({ rows: 3000, seed: 8, badShare: 0.05, duplicateShare: 0.02 })).not.toBe(a);
    const path = join(dir, "det.csv");
    const s = await writeTradesCsv(path, { rows: 3000, seed: 7, badShare: 0.05, duplicateShare: 0.02 });
    expectSameBytes(readFileSync(path), Buffer.from(a), path);
    expect(s.bytes).toBe(Buffer.byteLength(a));
  });

  it("writes the header and well-formed good rows, ids zero-padded, time increasing", async () => {
    const t = text({ rows: 200, badShare: 0, idPrefix: "X-", startAt: "2026-11-02T09:30:00Z" });
    expect(t.split("\n")[0]).toBe("trade_id,executed_at,symbol,side,quantity,price,account,trader_email,notes");
    const { rows, errors } = await collect(parseCsvStream(once(t), "mem"));
    expect(errors).toEqual([]);
    expect(rows).toHaveLength(200);
    let last = Date.parse("2026-11-02T09:30:00Z");
    rows.forEach((r, i) => {
      expect(rowDefect(r)).toBeUndefined();
      expect(r.trade_id).toBe(`X-${String(i + 1).padStart(9, "0")}`);
      const at = Date.parse(String(r.executed_at));
      expect(at - last).toBeGreaterThanOrEqual(0);
      expect(at - last).toBeLessThanOrEqual(2000);
      last = at;
      expect(Number(r.quantity)).toBeGreaterThanOrEqual(1);
      expect(Number(r.quantity)).toBeLessThanOrEqual(5000);
      expect(r.account).toMatch(/^ACC-(1[01]\d\d|1200)$/);
      expect(Number(String(r.account).slice(4))).toBeGreaterThanOrEqual(1001);
      expect(r.trader_email).toMatch(/^[a-z]+\.[a-z]+@example\.com$/);
    });
  });

  it("always writes prices with exactly 4 decimals (integer arithmetic, no float artefacts)", async () => {
    const { rows } = await collect(parseCsvStream(once(text({ rows: 20_000, seed: 3, badShare: 0 })), "mem"));
    expect(rows).toHaveLength(20_000);
    expect(rows.filter((r) => !/^[1-9]\d{0,3}\.\d{4}$/.test(String(r.price)))).toEqual([]);
  });

  it("quotes notes with commas, quotes and newlines so they round-trip through the reader and writer", async () => {
    const t = text({ rows: 4000, seed: 11, badShare: 0 });
    const { rows, errors } = await collect(parseCsvStream(once(t), "mem"));
    expect(errors).toEqual([]);
    const notes = rows.map((r) => String(r.notes));
    const tricky = notes.filter((n) => /[",\n]/.test(n));
    expect(notes.filter((n) => n.includes("\n")).length).toBeGreaterThan(0);
    expect(notes.filter((n) => n.includes('"')).length).toBeGreaterThan(0);
    expect(notes.filter((n) => n.includes(",")).length).toBeGreaterThan(0);
    expect(notes.filter((n) => n.includes(",") && n.includes('"') && n.includes("\n")).length).toBeGreaterThan(0);
    expect(tricky.length / rows.length).toBeGreaterThan(0.03);
    expect(tricky.length / rows.length).toBeLessThan(0.07);
    expect(tricky.some((n) => n.includes('""'))).toBe(false); // doubled quotes were decoded
    // Writing the rows back with the formats layer's RFC 4180 writer gives the same bytes.
    const path = join(dir, "roundtrip.csv");
    const w = await openCsvWriter(path, TRADE_COLUMNS);
    await w.write(rows);
    await w.close();
    expect(readFileSync(path, "utf8")).toBe(t);
  });

  it("counts bad records and duplicates exactly, one defect each, evenly spread over the kinds", async () => {
    const opts = { rows: 5000, seed: 5, badShare: 0.03, duplicateShare: 0.02 };
    const path = join(dir, "mixed.csv");
    const s = await writeTradesCsv(path, opts);
    expect(s).toMatchObject({ rows: 5000, bad: 150, duplicates: 100, good: 4750 });
    const counted = Object.values(s.defects).reduce((a, b) => a + b, 0);
    expect(counted).toBe(150);
    for (const k of DEFECT_KINDS) {
      expect(s.defects[k]).toBeGreaterThanOrEqual(16);
      expect(s.defects[k]).toBeLessThanOrEqual(17);
    }
    const { rows, errors } = await collect(readCsv(path));
    const c = classify(rows, errors);
    expect(c.defects).toEqual(s.defects);
    expect(c.clean).toBe(s.good);
    expect(c.duplicates).toBe(s.duplicates);
  });

  it("streams in chunks of about 1 MB, so memory does not grow with rows", () => {
    const sizes = [...tradesCsv({ rows: 40_000, badShare: 0 })].map((c) => Buffer.byteLength(c));
    expect(sizes.length).toBeGreaterThanOrEqual(3);
    for (const n of sizes) expect(n).toBeLessThan((1 << 20) + 64 * 1024);
  });

  it("handles the edges: no rows, all bad, no bad", async () => {
    expect(text({ rows: 0 })).toBe(TRADE_COLUMNS.join(",") + "\n");
    const allBad = await writeTradesCsv(join(dir, "all-bad.csv"), { rows: 20, badShare: 1 });
    expect(allBad).toMatchObject({ rows: 20, good: 0, bad: 20 });
    expect(allBad.defects.duplicate_id_conflict).toBe(0); // nothing good to conflict with
    const none = await writeTradesCsv(join(dir, "none.csv"), { rows: 100, badShare: 0 });
    expect(none).toMatchObject({ good: 100, bad: 0 });
  });

  it("rejects bad options with a BAD_CONFIG error", () => {
    const codeOf = (o: TradeSampleOptions): string | undefined => {
      try {
        [...tradesCsv(o)];
      } catch (err) {
        return err instanceof SluiceError ? err.code : "not a SluiceError";
      }
      return undefined;
    };
    for (const o of [
      { rows: -1 },
      { rows: 1.5 },
      { rows: 10, badShare: 1.5 },
      { rows: 10, badShare: 0.6, duplicateShare: 0.6 },
      { rows: 10, badShare: 0.5, duplicateShare: 0.5 },
      { rows: 10, startAt: "yesterday" },
      { rows: 10, idPrefix: "a,b" },
    ]) {
      expect(codeOf(o), JSON.stringify(o)).toBe("BAD_CONFIG");
    }
  });
});

describe("the committed samples", () => {
  let summary: TradeSampleSummary;
  let rows: Record<string, unknown>[];
  let errors: RecordError[];
  beforeAll(async () => {
    const path = join(dir, "sample.csv");
    summary = await writeTradesCsv(path, SAMPLE_OPTS);
    ({ rows, errors } = await collect(readCsv(SAMPLE)));
  });

  it("examples/data/trades-sample.csv is exactly what the generator writes", () => {
    expectSameBytes(readFileSync(SAMPLE), readFileSync(join(dir, "sample.csv")), SAMPLE);
    expect(summary).toMatchObject({ rows: 2000, good: 1960, bad: 40, duplicates: 0 });
  });

  it("has every defect kind at least once", () => {
    for (const k of DEFECT_KINDS) expect(summary.defects[k], k).toBeGreaterThan(0);
  });

  it("reads with exactly the malformed records the generator made, the rest as rows", () => {
    expect(errors).toHaveLength(summary.defects.wrong_field_count + summary.defects.stray_quote);
    expect(rows).toHaveLength(2000 - errors.length);
    for (const e of errors) expect(e.file).toBe(SAMPLE);
  });

  it("has one defect per bad record, and unique ids among good rows", () => {
    const c = classify(rows, errors);
    expect(c.defects).toEqual(summary.defects);
    expect(c.clean).toBe(summary.good);
    expect(c.duplicates).toBe(0);
  });

  it("has prices of exactly 4 decimals except the bad_price defects", () => {
    const off = rows.filter((r) => !/^\d+\.\d{4}$/.test(String(r.price)));
    expect(off).toHaveLength(summary.defects.bad_price);
  });

  it("bulk files are what the generator writes, with disjoint ids", async () => {
    const ids = new Set<string>();
    for (const [name, opts] of BULK) {
      const out = join(dir, name);
      const s = await writeTradesFile(out, opts);
      expectSameBytes(readFileSync(join(DATA, "bulk", name)), readFileSync(out), name);
      const prefix = opts.idPrefix!;
      const read = name.endsWith(".csv") ? readCsv(out) : name.endsWith(".ndjson") ? readNdjson(out) : readJsonArray(out);
      const { rows: rs, errors: es } = await collect(read);
      const c = classify(rs, es);
      expect(c.defects, name).toEqual(s.defects);
      expect(c.clean, name).toBe(s.good);
      expect(rs.length + es.length).toBe(opts.rows);
      // NDJSON/JSON keep every value as the string it is in the CSV.
      expect(
        rs.filter((r) => !TRADE_COLUMNS.every((col) => typeof r[col] === "string")),
        name,
      ).toEqual([]);
      for (const r of rs) {
        const id = String(r.trade_id);
        if (id === "") continue;
        expect(id.startsWith(prefix)).toBe(true);
        ids.add(id);
      }
      if (opts.badShare === 0.01) for (const k of DEFECT_KINDS) expect(s.defects[k], `${name} ${k}`).toBeGreaterThan(0);
    }
    expect(ids.size).toBeGreaterThan(2900);
  });
});

describe("sluice sample", () => {
  const BIN = join(ROOT, "bin", "sluice.js");
  const cli = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: "utf8", timeout: 30_000 });

  it("writes the file and prints one summary line", () => {
    const out = join(dir, "cli", "t.csv");
    const r = cli(["sample", "trades", out, "--rows", "1500", "--seed", "9", "--bad-share", "0.02", "--duplicate-share", "0.01", "--id-prefix", "Q-"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const bytes = readFileSync(out);
    expect(bytes.toString("utf8")).toBe(text({ rows: 1500, seed: 9, badShare: 0.02, duplicateShare: 0.01, idPrefix: "Q-" }));
    expect(r.stdout).toBe(`${out}: 1500 rows (1455 good, 30 bad, 15 duplicates), ${(bytes.length / 1e6).toFixed(2)} MB\n`);
  });

  it("exits 2 with one sentence on bad arguments", () => {
    for (const args of [
      ["sample", "trades", join(dir, "x.csv"), "--rows", "abc"],
      ["sample", "quotes", join(dir, "x.csv")],
    ]) {
      const r = cli(args);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/^sluice: [^\n]+\n$/);
      expect(r.stdout).toBe("");
    }
  });
});

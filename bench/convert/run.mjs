#!/usr/bin/env node
// CSV → typed Parquet benchmark: `sluice convert trades.csv out.parquet --schema schema.yaml` (a
// real process: parse, type every value to the standard trade schema, encode typed ZSTD Parquet)
// against DuckDB's `COPY (SELECT * FROM read_csv(…typed columns…)) TO … (FORMAT parquet,
// COMPRESSION zstd)` on the same file, in the same run, on the same machine.
//
//   npm run bench:convert                      # 1,000,000 trade rows (~100 MB)
//   npm run bench:convert -- --rows 100000     # quick run
//   npm run bench:convert -- --runs 3          # best of 3 for each contender (default 2)
//
// Contenders (one function each):
//   duckdb(threads)  DuckDB through @duckdb/node-api with threads=2 (the baseline) and threads=1;
//                    only the COPY statement is timed.
//   sluiceConvert    the whole `sluice convert` command, process start to exit, with its peak RSS.
// Each contender runs `--runs` times and its fastest run counts (a shared, noisy 2-core machine).
//
// The schema is the trade schema of examples/schemas/trades.yaml (the standard workflow's default
// schema file), its columns written to schema.yaml. DuckDB reads the CSV with the same types
// (timestamp → TIMESTAMPTZ, integer → BIGINT, decimal(4) → DECIMAL(38,4), the rest VARCHAR).
// Checks, from DuckDB: Sluice's file has the same row count, the typed columns, and exactly the
// same rows as DuckDB's own output (EXCEPT both ways is empty).
//
// Target: Sluice rows/s ≥ 0.3 × DuckDB (threads=2) rows/s.
// Prints one JSON line on stdout; progress goes to stderr. The temporary folder is removed.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DuckDBInstance } from "@duckdb/node-api";
import { parse, stringify } from "yaml";
import { writeTradesCsv } from "../../dist/samples/trades.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const SLUICE = join(root, "bin/sluice.js");
const SCHEMA = join(root, "examples/schemas/trades.yaml");
const TARGET = 0.3;

function parseArgs(argv) {
  const o = { rows: 1_000_000, runs: 2 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[++i]);
    if (a === "--rows" || a.startsWith("--rows=")) {
      const v = value();
      const n = Number(String(v).replace(/_/g, ""));
      if (!Number.isInteger(n) || n < 1) usage(`--rows needs a positive integer, got ${v}`);
      o.rows = n;
    } else if (a === "--runs" || a.startsWith("--runs=")) {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) usage(`--runs needs a positive integer, got ${v}`);
      o.runs = n;
    } else if (a === "--help" || a === "-h") {
      usage();
    } else {
      usage(`unknown argument ${a}`);
    }
  }
  return o;
}

function usage(msg) {
  if (msg) process.stderr.write(`bench:convert: ${msg}\n`);
  process.stderr.write("usage: node bench/convert/run.mjs [--rows N] [--runs N]   (rows default 1000000, runs default 2)\n");
  process.exit(msg ? 2 : 0);
}

const note = (s) => process.stderr.write(`bench:convert: ${s}\n`);
const round = (x, d = 3) => Number(x.toFixed(d));
const mb = (bytes) => round(bytes / 1e6, 1);

/** The trade schema of the standard workflow's default schema file (key and columns). */
function tradeSchema() {
  const { key, columns } = parse(readFileSync(SCHEMA, "utf8"));
  return { key, columns };
}

/** DuckDB's read_csv column types for the same schema. */
function duckColumns(schema) {
  const type = (c) =>
    c.type === "timestamp"
      ? "TIMESTAMPTZ"
      : c.type === "integer"
        ? "BIGINT"
        : c.type === "decimal"
          ? `DECIMAL(38,${c.scale ?? 0})`
          : c.type === "date"
            ? "DATE"
            : c.type === "boolean"
              ? "BOOLEAN"
              : "VARCHAR";
  return `{${schema.columns.map((c) => `'${c.name}': '${type(c)}'`).join(", ")}}`;
}

function hasGnuTime() {
  try {
    execFileSync("sh", ["-c", "command -v /usr/bin/time"], { stdio: "ignore" });
    return existsSync("/usr/bin/time");
  } catch {
    return false;
  }
}

/** Run a command to completion; wall seconds, exit code, stderr tail, peak RSS in MB (GNU time, else VmHWM polling). */
function timed(cmd, args, { cwd }) {
  const gnu = hasGnuTime();
  const rssFile = join(cwd, `rss-${process.hrtime.bigint()}.txt`);
  const argv = gnu ? ["/usr/bin/time", ["-f", "%M", "-o", rssFile, cmd, ...args]] : [cmd, args];
  return new Promise((res, rej) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(argv[0], argv[1], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let hwmKb = 0;
    const poll = gnu
      ? undefined
      : setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
            if (m) hwmKb = Math.max(hwmKb, Number(m[1]));
          } catch {
            // the child ended between two samples: its last figure stands
          }
        }, 20);
    child.stdout.on("data", (b) => (out += b));
    child.stderr.on("data", (b) => {
      err += b;
      if (err.length > 64_000) err = err.slice(-32_000);
    });
    child.on("error", rej);
    child.on("close", (code) => {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (poll) clearInterval(poll);
      const kb = gnu && existsSync(rssFile) ? Number(readFileSync(rssFile, "utf8").trim().split("\n").pop()) : hwmKb;
      res({ code, s, stdout: out, stderr: err, peakRssMb: kb ? Math.round(kb / 1024) : null });
    });
  });
}

// --- contenders --------------------------------------------------------------------------------

async function duckdb(threads, csv, out, schema) {
  const instance = await DuckDBInstance.create(":memory:", { threads: String(threads) });
  const con = await instance.connect();
  try {
    rmSync(out, { force: true });
    const t0 = process.hrtime.bigint();
    await con.run(`COPY (SELECT * FROM read_csv('${csv}', header = true, columns = ${duckColumns(schema)})) TO '${out}' (FORMAT parquet, COMPRESSION zstd)`);
    return { s: Number(process.hrtime.bigint() - t0) / 1e9, bytes: statSync(out).size };
  } finally {
    con.closeSync();
    instance.closeSync();
  }
}

async function sluiceConvert(csv, out, schemaFile, cwd) {
  rmSync(out, { force: true });
  const r = await timed(process.execPath, [SLUICE, "convert", csv, out, "--schema", schemaFile], { cwd });
  if (r.code !== 0) throw new Error(`sluice convert exited ${r.code}: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  return { s: r.s, bytes: statSync(out).size, peakRssMb: r.peakRssMb, stdout: r.stdout.trim() };
}

async function best(runs, label, fn) {
  let bestRun;
  for (let i = 0; i < runs; i++) {
    const r = await fn();
    note(`${label} run ${i + 1}: ${r.s.toFixed(2)} s`);
    if (!bestRun || r.s < bestRun.s) bestRun = r;
  }
  return bestRun;
}

/** What DuckDB sees in Sluice's file: row count, column types, and rows equal to DuckDB's own output. */
async function check(sluiceFile, duckFile, rows) {
  const instance = await DuckDBInstance.create(":memory:", { threads: "2" });
  const con = await instance.connect();
  try {
    const q = async (sql) => (await con.runAndReadAll(sql)).getRowObjectsJson();
    const [{ n }] = await q(`SELECT count(*)::BIGINT AS n FROM '${sluiceFile}'`);
    const types = Object.fromEntries(
      (await q(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '${sluiceFile}')`)).map((r) => [r.column_name, r.column_type]),
    );
    const [{ a, b }] = await q(
      `SELECT (SELECT count(*) FROM (SELECT * FROM '${sluiceFile}' EXCEPT ALL SELECT * FROM '${duckFile}'))::BIGINT AS a,
              (SELECT count(*) FROM (SELECT * FROM '${duckFile}' EXCEPT ALL SELECT * FROM '${sluiceFile}'))::BIGINT AS b`,
    );
    const codecs = (await q(`SELECT DISTINCT compression FROM parquet_metadata('${sluiceFile}')`)).map((r) => r.compression);
    const rowCountOk = Number(n) === rows;
    const typesOk =
      types.executed_at === "TIMESTAMP WITH TIME ZONE" && types.quantity === "BIGINT" && types.price === "DECIMAL(38,4)" && types.trade_id === "VARCHAR";
    return { rows: Number(n), rowCountOk, types, typesOk, rowsOnlyInSluice: Number(a), rowsOnlyInDuckdb: Number(b), sameRows: a === "0" && b === "0", codecs };
  } finally {
    con.closeSync();
    instance.closeSync();
  }
}

// --- main --------------------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));
const dir = mkdtempSync(join(tmpdir(), "sluice-bench-convert-"));
let exitCode = 0;
try {
  const csv = join(dir, "trades.csv");
  const schemaFile = join(dir, "schema.yaml");
  const schema = tradeSchema();
  writeFileSync(schemaFile, stringify(schema));
  note(`generating ${opts.rows} rows in ${dir}…`);
  const sample = await writeTradesCsv(csv, { rows: opts.rows, seed: 42, badShare: 0 });
  note(`trades.csv ${mb(sample.bytes)} MB`);

  const duck2 = await best(opts.runs, "duckdb threads=2", () => duckdb(2, csv, join(dir, "duck.parquet"), schema));
  const duck1 = await best(opts.runs, "duckdb threads=1", () => duckdb(1, csv, join(dir, "duck1.parquet"), schema));
  const sl = await best(opts.runs, "sluice convert", () => sluiceConvert(csv, join(dir, "out.parquet"), schemaFile, dir));
  note(`checking ${join(dir, "out.parquet")} with DuckDB…`);
  const checked = await check(join(dir, "out.parquet"), join(dir, "duck.parquet"), sample.rows);

  const figure = (r) => ({ s: round(r.s), rowsPerSec: Math.round(sample.rows / r.s), mbPerSec: round(sample.bytes / 1e6 / r.s, 1), outputMb: mb(r.bytes) });
  const ratio = round(duck2.s / sl.s);
  const result = {
    bench: "convert",
    node: process.version,
    rows: sample.rows,
    mb: mb(sample.bytes),
    runs: opts.runs,
    sluice: { ...figure(sl), peakRssMb: sl.peakRssMb },
    duckdb: figure(duck2),
    duckdbOneThread: figure(duck1),
    ratio,
    ratioOneThread: round(duck1.s / sl.s),
    target: TARGET,
    meetsTarget: ratio >= TARGET,
    sizeRatio: round(sl.bytes / duck2.bytes),
    check: checked,
  };
  if (!checked.rowCountOk || !checked.typesOk || !checked.sameRows) {
    note(`check failed: ${JSON.stringify(checked)}`);
    exitCode = 1;
  }
  console.log(JSON.stringify(result));
} catch (e) {
  note(`failed: ${e.message}`);
  exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);

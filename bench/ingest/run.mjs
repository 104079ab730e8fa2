#!/usr/bin/env node
// Ingestion benchmark: CSV into PostgreSQL through Sluice, against PostgreSQL's own COPY and
// pgloader, in the same run on the same machine.
//
//   npm run bench:ingest                      # 1,000,000 trade rows (~100 MB)
//   npm run bench:ingest -- --rows 100000     # quick run
//   npm run bench:ingest -- --gb 1            # also one 1 GB file through the bulk workflow (peak RSS)
//   npm run bench:ingest -- --no-convert      # leave out the sluice convert / DuckDB comparison
//
// Needs `psql` and PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth, database `test`).
//
// Scenarios (one function each):
//   copyText     `psql \copy` of the clean file into a table of 9 text columns.
//   copyTyped    `psql \copy` of the same file into the typed table with its primary key
//                (timestamptz, bigint, numeric(38,4), text; key trade_id): the baseline of the
//                targets, since Sluice loads typed, keyed tables.
//   pgloader     Debian's pgloader into the same typed, keyed table (skipped when not installed:
//                apt-get install pgloader).
//   sluiceClean  `sluice run` of the standard workflow on the clean file (collect, type, validate,
//                quarantine, upsert), timed as a whole command, each step's time from its
//                attempts, and the process's peak RSS.
//   sluiceDefects the same on a file with 1% defective records; checks the accounting.
//   sluiceIngest `sluice ingest FILE --key trade_id`: the schema inferred, then the same pipeline.
//   sluiceBulk   the bulk file workflow over 20 CSV files (the same number of rows, 1% defects).
//   convert      bench/convert/run.mjs (sluice convert CSV → typed Parquet against DuckDB's COPY
//                TO parquet), run as a child and its JSON line embedded (skipped without DuckDB).
//   --gb N       (opt-in) the bulk workflow over one N GB file, for its peak RSS.
//
// Targets (ratios of rows/s in this run): standard workflow ≥ 0.5 × copyTyped (stretch 0.8),
// bulk workflow ≥ 0.4 × copyTyped, convert ≥ 0.3 × DuckDB, peak RSS ≤ 300 MB for 1M rows.
// Prints one JSON line on stdout; progress goes to stderr. Tables are dropped before (reruns are
// safe) and after; the temporary folder is removed at the end.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeTradesCsv } from "../../dist/samples/trades.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const WORKFLOW = join(root, "workflows/base-data-ingestion-workflow-standard-ingestion.yaml");
const BULK_WORKFLOW = join(root, "workflows/base-data-ingestion-workflow-bulk-file.yaml");
const SLUICE = join(root, "bin/sluice.js");
const PG = { host: "127.0.0.1", port: 5432, user: "postgres", db: "test" };
const PG_URL = `postgres://${PG.user}@${PG.host}:${PG.port}/${PG.db}`;
const TABLES = {
  bare: "bench_bare",
  typed: "bench_typed",
  pgloader: "bench_pgloader",
  clean: "bench_sluice",
  defects: "bench_sluice_defects",
  ingest: "bench_ingest",
  bulk: "bench_bulk",
  big: "bench_big",
};
const TARGETS = { standard: 0.5, bulk: 0.4, convert: 0.3, peakRssMb: 300 };
const TYPED_COLUMNS =
  "trade_id text primary key, executed_at timestamptz, symbol text, side text, quantity bigint, price numeric(38,4), account text, trader_email text, notes text";
const SCHEMA = join(root, "examples/schemas/trades.yaml");

function parseArgs(argv) {
  const o = { rows: 1_000_000, convert: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--rows" || a.startsWith("--rows=")) {
      const v = a.includes("=") ? a.slice(7) : argv[++i];
      const n = Number(String(v).replace(/_/g, ""));
      if (!Number.isInteger(n) || n < 1) usage(`--rows needs a positive integer, got ${v}`);
      o.rows = n;
    } else if (a === "--gb" || a.startsWith("--gb=")) {
      const v = a.includes("=") ? a.slice(5) : argv[++i];
      const n = Number(v);
      if (!(n > 0)) usage(`--gb needs a positive number, got ${v}`);
      o.gb = n;
    } else if (a === "--no-convert") {
      o.convert = false;
    } else if (a === "--help" || a === "-h") {
      usage();
    } else {
      usage(`unknown argument ${a}`);
    }
  }
  return o;
}

function usage(msg) {
  if (msg) process.stderr.write(`bench:ingest: ${msg}\n`);
  process.stderr.write("usage: node bench/ingest/run.mjs [--rows N] [--gb N] [--no-convert]   (rows default 1000000; --gb adds the big-file RSS run)\n");
  process.exit(msg ? 2 : 0);
}

const note = (s) => process.stderr.write(`bench:ingest: ${s}\n`);
const round = (x, d = 3) => Number(x.toFixed(d));
const mbOf = (bytes) => bytes / 1e6;

/** Run a command; resolve with exit code, stdout, stderr tail and wall time in seconds. */
function timed(cmd, args, { env, cwd = root, onSpawn } = {}) {
  return new Promise((res, rej) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const out = [];
    let err = "";
    child.stdout.on("data", (b) => out.push(b));
    child.stderr.on("data", (b) => {
      err += b.toString();
      if (err.length > 64_000) err = err.slice(-32_000);
    });
    child.on("error", rej);
    onSpawn?.(child);
    child.on("close", (code, signal) => {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      res({ code, signal, stdout: Buffer.concat(out).toString(), stderr: err, s });
    });
  });
}

function psql(sql) {
  return execFileSync("psql", ["-h", PG.host, "-p", String(PG.port), "-U", PG.user, "-d", PG.db, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function dropTables() {
  const names = Object.values(TABLES).flatMap((t) => [t, `${t}_quarantine`]);
  psql(`SET client_min_messages = warning; ${names.map((t) => `DROP TABLE IF EXISTS ${t};`).join(" ")}`);
}

// --- scenarios ---------------------------------------------------------------------------------

/** (a) Baseline: psql \copy into a fresh table of 9 text columns, the whole command timed. */
async function psqlCopy(file, rows, bytes) {
  psql(
    `CREATE TABLE ${TABLES.bare} (trade_id text, executed_at text, symbol text, side text, quantity text, ` +
      `price text, account text, trader_email text, notes text)`,
  );
  note(`psql \\copy ${rows} rows into ${TABLES.bare}…`);
  const r = await timed("psql", [
    "-h",
    PG.host,
    "-p",
    String(PG.port),
    "-U",
    PG.user,
    "-d",
    PG.db,
    "-v",
    "ON_ERROR_STOP=1",
    "-c",
    `\\copy ${TABLES.bare} FROM '${file}' WITH (FORMAT csv, HEADER true)`,
  ]);
  if (r.code !== 0) throw new Error(`psql \\copy exited ${r.code}: ${r.stderr.trim()}`);
  const copied = Number(/COPY (\d+)/.exec(r.stdout)?.[1]);
  if (copied !== rows) throw new Error(`psql \\copy reported ${r.stdout.trim()}, expected ${rows} rows`);
  note(`psql \\copy: ${r.s.toFixed(2)} s`);
  return { s: round(r.s), rowsPerSec: Math.round(rows / r.s), mbPerSec: round(mbOf(bytes) / r.s, 1) };
}

/** (a2) Baseline of the targets: psql \copy into the typed table with its primary key. */
async function psqlCopyTyped(file, rows, bytes) {
  psql(`CREATE TABLE ${TABLES.typed} (${TYPED_COLUMNS})`);
  note(`psql \\copy ${rows} rows into the typed, keyed ${TABLES.typed}…`);
  const r = await timed("psql", [
    "-h",
    PG.host,
    "-p",
    String(PG.port),
    "-U",
    PG.user,
    "-d",
    PG.db,
    "-v",
    "ON_ERROR_STOP=1",
    "-c",
    `\\copy ${TABLES.typed} FROM '${file}' WITH (FORMAT csv, HEADER true)`,
  ]);
  if (r.code !== 0) throw new Error(`psql \\copy (typed) exited ${r.code}: ${r.stderr.trim()}`);
  note(`psql \\copy typed: ${r.s.toFixed(2)} s`);
  return { s: round(r.s), rowsPerSec: Math.round(rows / r.s), mbPerSec: round(mbOf(bytes) / r.s, 1) };
}

/** (a3) pgloader into the same typed, keyed table; undefined when pgloader is not installed. */
async function pgloader(file, rows, bytes) {
  try {
    execFileSync("sh", ["-c", "command -v pgloader"], { stdio: "ignore" });
  } catch {
    note("pgloader is not installed (apt-get install pgloader): skipped");
    return { skipped: "pgloader not installed (apt-get install pgloader)" };
  }
  psql(`CREATE TABLE ${TABLES.pgloader} (${TYPED_COLUMNS})`);
  const cols = "trade_id, executed_at, symbol, side, quantity, price, account, trader_email, notes";
  const load = join(dir, "bench.load");
  writeFileSync(
    load,
    `LOAD CSV FROM '${file}' (${cols})
  INTO ${PG_URL}?tablename=${TABLES.pgloader} (${cols})
  WITH skip header = 1, fields terminated by ',', fields optionally enclosed by '"', fields escaped by double-quote, workers = 2, concurrency = 1
  SET work_mem to '64MB';
`,
  );
  note(`pgloader ${rows} rows into ${TABLES.pgloader}…`);
  const r = await timed("pgloader", ["--quiet", load]);
  if (r.code !== 0) throw new Error(`pgloader exited ${r.code}: ${r.stderr.trim().slice(-500)}`);
  const n = Number(
    execFileSync("psql", ["-h", PG.host, "-p", String(PG.port), "-U", PG.user, "-d", PG.db, "-Atc", `SELECT count(*) FROM ${TABLES.pgloader}`], {
      encoding: "utf8",
    }).trim(),
  );
  note(`pgloader: ${r.s.toFixed(2)} s, ${n} rows`);
  return { s: round(r.s), rowsPerSec: Math.round(rows / r.s), mbPerSec: round(mbOf(bytes) / r.s, 1), rowsLoaded: n };
}

/** Run the standard ingestion workflow as a user would; return the run document, wall time, peak RSS. */
async function sluiceRun(file, table, home, { workflow = WORKFLOW, sourceParam = "source", storeStep = "data-storage", command } = {}) {
  mkdirSync(home, { recursive: true });
  const args = command
    ? [SLUICE, ...command, "--json"]
    : [
        SLUICE,
        "run",
        workflow,
        "--param",
        `${sourceParam}=${file}`,
        "--param",
        `destination=${PG_URL}`,
        "--param",
        `table=${table}`,
        ...(workflow === WORKFLOW ? ["--param", `schema=${SCHEMA}`] : []),
        "--json",
      ];
  const env = { SLUICE_HOME: home, CI: "true" };
  const timeBin = "/usr/bin/time";
  const hasTime = (() => {
    try {
      execFileSync("sh", ["-c", `command -v ${timeBin}`], { stdio: "ignore" });
      return existsSync(timeBin);
    } catch {
      return false;
    }
  })();
  const rssFile = join(home, "peak-rss.txt");
  let r;
  let hwmKb = 0;
  if (hasTime) {
    // GNU time: %M = peak RSS in KB of the process (and any children it waited for), to a file.
    r = await timed(timeBin, ["-f", "%M", "-o", rssFile, process.execPath, ...args], { env });
  } else {
    // Fallback: poll VmHWM of the node process until it exits.
    let poll;
    r = await timed(process.execPath, args, {
      env,
      onSpawn: (child) => {
        poll = setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
            if (m) hwmKb = Math.max(hwmKb, Number(m[1]));
          } catch {
            // the child ended between two samples: its last figure stands
          }
        }, 50);
      },
    });
    clearInterval(poll);
  }
  const peakKb = hasTime && existsSync(rssFile) ? Number(readFileSync(rssFile, "utf8").trim().split("\n").pop()) : hwmKb;
  let doc;
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    throw new Error(`sluice run exited ${r.code} without a JSON document; stderr:\n${r.stderr.trim()}`);
  }
  if (doc.status !== "succeeded") {
    const failed = (doc.steps ?? [])
      .filter((s) => s.status === "failed")
      .map((s) => {
        const last = s.attempts.at(-1);
        return `step ${s.name} failed after ${s.attempts.length} attempt(s): ${last?.error?.code}: ${last?.error?.message}`;
      });
    throw new Error(`sluice run ${doc.id} ended ${doc.status} (exit ${r.code})${doc.error ? `: ${JSON.stringify(doc.error)}` : ""}\n${failed.join("\n")}`);
  }
  const steps = {};
  for (const s of doc.steps) {
    let ms = 0;
    for (const a of s.attempts) if (a.startedAt && a.endedAt) ms += Date.parse(a.endedAt) - Date.parse(a.startedAt);
    steps[s.name] = round(ms / 1000);
    if (s.attempts.length > 1) note(`step ${s.name} took ${s.attempts.length} attempts`);
  }
  const store = doc.steps.find((s) => s.name === storeStep)?.outputs ?? {};
  return { doc, s: r.s, peakRssMb: peakKb ? Math.round(peakKb / 1024) : null, steps, store };
}

/** (b) Sluice on the clean file. */
async function sluiceClean(file, rows, bytes, home) {
  note(`sluice run standard-ingestion, ${rows} clean rows into ${TABLES.clean}…`);
  const r = await sluiceRun(file, TABLES.clean, home);
  if (r.store.rowsStored !== rows) note(`warning: ${r.store.rowsStored} rows stored, expected ${rows}`);
  note(`sluice: ${r.s.toFixed(2)} s, steps ${JSON.stringify(r.steps)}`);
  return { s: round(r.s), rowsPerSec: Math.round(rows / r.s), mbPerSec: round(mbOf(bytes) / r.s, 1), peakRssMb: r.peakRssMb, steps: r.steps };
}

/** (c) Sluice on a file with 1% defects: throughput over all records, and the accounting. */
async function sluiceDefects(file, rows, home) {
  note(`sluice run standard-ingestion, ${rows} rows with 1% defects into ${TABLES.defects}…`);
  const r = await sluiceRun(file, TABLES.defects, home);
  const { rowsIn, rowsStored, rowsQuarantined, rowsDuplicate } = r.store;
  const balanced = Number.isInteger(rowsIn) && rowsIn === rowsStored + rowsQuarantined + rowsDuplicate;
  note(
    `sluice with defects: ${r.s.toFixed(2)} s, in ${rowsIn} = stored ${rowsStored} + quarantined ${rowsQuarantined} + duplicate ${rowsDuplicate}: ${balanced}`,
  );
  return {
    s: round(r.s),
    rowsPerSec: Math.round(rows / r.s),
    peakRssMb: r.peakRssMb,
    steps: r.steps,
    rowsIn,
    rowsStored,
    rowsQuarantined,
    rowsDuplicate,
    balanced,
  };
}

/** (c2) `sluice ingest` with the schema inferred from the file, upserting on trade_id. */
async function sluiceIngest(file, rows, bytes, home) {
  note(`sluice ingest ${rows} rows (schema inferred) into ${TABLES.ingest}…`);
  const r = await sluiceRun(file, TABLES.ingest, home, { command: ["ingest", file, "--to", PG_URL, "--table", TABLES.ingest, "--key", "trade_id"] });
  note(`sluice ingest: ${r.s.toFixed(2)} s, steps ${JSON.stringify(r.steps)}`);
  const { rowsIn, rowsStored, rowsQuarantined, rowsDuplicate } = r.store;
  return {
    s: round(r.s),
    rowsPerSec: Math.round(rows / r.s),
    mbPerSec: round(mbOf(bytes) / r.s, 1),
    peakRssMb: r.peakRssMb,
    steps: r.steps,
    rowsIn,
    rowsStored,
    rowsQuarantined,
    rowsDuplicate,
  };
}

/** (e) sluice convert → typed Parquet against DuckDB: bench/convert/run.mjs as a child. */
async function convertBench(rows) {
  note("bench:convert (sluice convert vs DuckDB COPY TO parquet)…");
  const r = await timed(process.execPath, [join(root, "bench/convert/run.mjs"), "--rows", String(rows), "--runs", "1"]);
  if (r.code !== 0) {
    note(`bench:convert failed or was skipped: ${r.stderr.trim().split("\n").pop()}`);
    return { skipped: r.stderr.trim().split("\n").pop() };
  }
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

/** (d) The bulk workflow over 20 files with 1% defects. */
async function sluiceBulk(rows, home) {
  const input = join(dir, "bulk");
  mkdirSync(input);
  const per = Math.ceil(rows / 20);
  let bytes = 0;
  let total = 0;
  for (let i = 0; i < 20; i++) {
    const s = await writeTradesCsv(join(input, `trades-${String(i).padStart(2, "0")}.csv`), { rows: per, seed: 100 + i, idPrefix: `F${i}-`, badShare: 0.01 });
    bytes += s.bytes;
    total += s.rows;
  }
  note(`sluice run bulk-file-ingestion, 20 files, ${total} rows into ${TABLES.bulk}…`);
  const r = await sluiceRun(input, TABLES.bulk, home, { workflow: BULK_WORKFLOW, sourceParam: "directory", storeStep: "bulk-storage" });
  const { rowsIn, rowsStored, rowsQuarantined, rowsDuplicate } = r.store;
  const balanced = rowsIn === rowsStored + rowsQuarantined + rowsDuplicate;
  note(`bulk: ${r.s.toFixed(2)} s, steps ${JSON.stringify(r.steps)}`);
  return {
    files: 20,
    rows: total,
    mb: round(mbOf(bytes), 1),
    s: round(r.s),
    rowsPerSec: Math.round(total / r.s),
    peakRssMb: r.peakRssMb,
    steps: r.steps,
    rowsIn,
    rowsStored,
    rowsQuarantined,
    rowsDuplicate,
    balanced,
  };
}

/** (e) Opt-in: one big file through the bulk workflow, for peak RSS against input size. */
async function sluiceBig(gb, home) {
  const input = join(dir, "big");
  mkdirSync(input);
  const rows = Math.round((gb * 1e9) / 99);
  const s = await writeTradesCsv(join(input, "big.csv"), { rows, seed: 7, badShare: 0.001 });
  note(`sluice run standard-ingestion, one ${mbOf(s.bytes).toFixed(0)} MB file into ${TABLES.big}…`);
  const std = await sluiceRun(join(input, "big.csv"), TABLES.big, `${home}-standard`);
  psql(`DROP TABLE IF EXISTS ${TABLES.big}; DROP TABLE IF EXISTS ${TABLES.big}_quarantine;`);
  note(`sluice run bulk-file-ingestion, one ${mbOf(s.bytes).toFixed(0)} MB file into ${TABLES.big}…`);
  const r = await sluiceRun(input, TABLES.big, home, { workflow: BULK_WORKFLOW, sourceParam: "directory", storeStep: "bulk-storage" });
  const figures = (x) => ({ s: round(x.s), rowsPerSec: Math.round(rows / x.s), peakRssMb: x.peakRssMb, steps: x.steps });
  return { mb: round(mbOf(s.bytes), 0), rows, standard: figures(std), bulk: figures(r) };
}

// --- main --------------------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));
const dir = mkdtempSync(join(tmpdir(), "sluice-bench-ingest-"));
let exitCode = 0;
try {
  dropTables();
  const cleanFile = join(dir, "trades-clean.csv");
  const defectFile = join(dir, "trades-defects.csv");
  note(`generating ${opts.rows} rows in ${dir}…`);
  const clean = await writeTradesCsv(cleanFile, { rows: opts.rows, seed: 42, badShare: 0 });
  const defects = await writeTradesCsv(defectFile, { rows: opts.rows, seed: 42, badShare: 0.01 });
  note(`clean file ${mbOf(clean.bytes).toFixed(1)} MB; defect file ${defects.bad} bad records`);

  const copy = await psqlCopy(cleanFile, clean.rows, clean.bytes);
  const typed = await psqlCopyTyped(cleanFile, clean.rows, clean.bytes);
  const loader = await pgloader(cleanFile, clean.rows, clean.bytes);
  const sluice = await sluiceClean(cleanFile, clean.rows, clean.bytes, join(dir, "home-clean"));
  const withDefects = await sluiceDefects(defectFile, defects.rows, join(dir, "home-defects"));
  const ingest = await sluiceIngest(cleanFile, clean.rows, clean.bytes, join(dir, "home-ingest"));
  const bulk = await sluiceBulk(opts.rows, join(dir, "home-bulk"));
  const big = opts.gb ? await sluiceBig(opts.gb, join(dir, "home-big")) : undefined;
  const convert = opts.convert ? await convertBench(opts.rows) : { skipped: "--no-convert" };
  const ratio = (x) => round(x.rowsPerSec / typed.rowsPerSec);
  const ratios = {
    standardVsTypedCopy: ratio(sluice),
    standardDefectsVsTypedCopy: ratio(withDefects),
    ingestVsTypedCopy: ratio(ingest),
    bulkVsTypedCopy: ratio(bulk),
    standardVsTextCopy: round(sluice.rowsPerSec / copy.rowsPerSec),
    ...(loader.rowsPerSec ? { standardVsPgloader: round(sluice.rowsPerSec / loader.rowsPerSec) } : {}),
    ...(convert.ratio !== undefined ? { convertVsDuckdb: convert.ratio } : {}),
  };

  console.log(
    JSON.stringify({
      bench: "ingest",
      node: process.version,
      rows: clean.rows,
      mb: round(mbOf(clean.bytes), 1),
      copyText: copy,
      copyTyped: typed,
      pgloader: loader,
      sluice,
      withDefects,
      ingest,
      bulk,
      ...(big ? { big } : {}),
      convert,
      ratios,
      targets: TARGETS,
      meets: {
        standard: ratios.standardVsTypedCopy >= TARGETS.standard,
        bulk: ratios.bulkVsTypedCopy >= TARGETS.bulk,
        convert: convert.ratio === undefined ? null : convert.ratio >= TARGETS.convert,
        peakRss: sluice.peakRssMb === null ? null : sluice.peakRssMb <= TARGETS.peakRssMb,
      },
    }),
  );
} catch (e) {
  note(`failed: ${e.message}`);
  exitCode = 1;
} finally {
  try {
    dropTables();
  } catch (e) {
    note(`dropping the bench tables failed: ${e.message}`);
  }
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);

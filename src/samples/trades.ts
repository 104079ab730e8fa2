/**
 * A deterministic generator of financial trades with a small, exactly counted share of bad rows:
 * realistic input for the ingestion workflows, benchmarks and tests, at any size.
 *
 * Same seed and options → byte-identical output (a seeded sfc32 PRNG; never Math.random, never
 * the clock). Memory is constant whatever `rows` is: lines are concatenated into ~1 MB chunks
 * and the only state kept is a small ring of recent good records (for duplicates and id
 * conflicts). Prices are generated as integers of 1/10,000 units and formatted with integer
 * arithmetic, so they always have exactly 4 decimals and never pass through float formatting.
 *
 * The file is CSV (RFC 4180, LF line endings, header first):
 *   trade_id,executed_at,symbol,side,quantity,price,account,trader_email,notes
 * About 5% of good records carry notes with commas, doubled quotes and embedded newlines, so a
 * reader must honour quoting.
 *
 * Record kinds. `rows = good + bad + duplicates`, and each count is exact:
 * `bad = round(rows × badShare)`, `duplicates = round(rows × duplicateShare)`, placed at seeded
 * random positions (sampling without replacement). The first record is always good.
 * - good: passes the reader, the typing schema and the quality rules below; `trade_id` is unique
 *   among good records.
 * - duplicate: an exact, byte-identical repeat of a recent good record (same id, same content).
 *   Not a defect: idempotent storage (record key or content hash) must absorb it.
 * - bad: exactly one defect, the kinds taken in turn (a seeded order) so they are evenly spread.
 *
 * Where each defect is caught, with the schema
 *   trade_id string required, executed_at timestamp required, symbol string required,
 *   side string required, quantity integer required, price decimal(scale 4) required,
 *   account string required, trader_email string, notes string
 * and the quality rules
 *   side allowed [BUY, SELL], symbol pattern ^[A-Z]{1,6}$, quantity min 1, trade_id unique:
 *
 * | defect                  | example                                | caught by                           |
 * |-------------------------|----------------------------------------|-------------------------------------|
 * | `wrong_field_count`     | a record with 8 fields (one dropped)   | the CSV reader (malformed record)   |
 * | `stray_quote`           | `AA"PL`, `said "ok" twice` unquoted    | the CSV reader (malformed record)   |
 * | `bad_timestamp`         | `2026-13-45T99:00:00Z`, `yesterday`    | typing (timestamp)                  |
 * | `bad_quantity`          | `12.5`, `abc`                          | typing (integer)                    |
 * |                         | `-3`                                   | quality (quantity min 1)            |
 * | `bad_price`             | `1.23456`, `N/A`                       | typing (decimal, scale 4)           |
 * | `missing_required`      | empty trade_id or empty symbol         | typing (required)                   |
 * | `bad_side`              | `HOLD`                                 | quality (side allowed)              |
 * | `bad_symbol`            | `apple123`, `aapl`, `GOOGLEX`          | quality (symbol pattern)            |
 * | `duplicate_id_conflict` | an earlier good trade_id, new content  | quality (trade_id unique)           |
 *
 * `writeTradesFile` also writes NDJSON and JSON arrays, converting the CSV through the formats
 * layer (every value stays the string it is in the CSV). Those formats cannot carry malformed
 * CSV, so there the bad records use only the seven row-level defect kinds.
 */
import { createWriteStream } from "node:fs";
import { SluiceError } from "../errors.js";
import { openJsonArrayWriter, openNdjsonWriter, parseCsvStream } from "../formats/index.js";

export type DefectKind =
  | "wrong_field_count"
  | "stray_quote"
  | "bad_timestamp"
  | "bad_quantity"
  | "bad_price"
  | "missing_required"
  | "bad_side"
  | "bad_symbol"
  | "duplicate_id_conflict";

/** Every defect kind, in a fixed order. */
export const DEFECT_KINDS: readonly DefectKind[] = [
  "wrong_field_count",
  "stray_quote",
  "bad_timestamp",
  "bad_quantity",
  "bad_price",
  "missing_required",
  "bad_side",
  "bad_symbol",
  "duplicate_id_conflict",
];

/** The defects that make a CSV record malformed: the reader reports them, they never become rows. */
export const MALFORMED_CSV_DEFECTS: readonly DefectKind[] = ["wrong_field_count", "stray_quote"];

export const TRADE_COLUMNS = ["trade_id", "executed_at", "symbol", "side", "quantity", "price", "account", "trader_email", "notes"] as const;

export interface TradeSampleOptions {
  /** Records to generate (bad ones and duplicates included). */
  rows: number;
  /** Default 42; same seed + options → byte-identical output. */
  seed?: number;
  /** Fraction of records that are defective, default 0.01 (0 allowed). */
  badShare?: number;
  /** ISO timestamp of the first trade, default "2026-11-02T09:30:00Z". */
  startAt?: string;
  /** Default "T-"; lets a test make several files with disjoint ids. */
  idPrefix?: string;
  /** Fraction of records that exactly repeat an earlier good record (same id, same content), default 0. */
  duplicateShare?: number;
}

export interface TradeSampleSummary {
  rows: number;
  good: number;
  bad: number;
  duplicates: number;
  bytes: number;
  defects: Record<DefectKind, number>;
}

export type TradeSampleFormat = "csv" | "ndjson" | "json";

const DEFAULTS = { seed: 42, badShare: 0.01, startAt: "2026-11-02T09:30:00Z", idPrefix: "T-", duplicateShare: 0 };
const MAX_ROWS = 1_000_000_000;
/** Output chunk size. Lines go straight into a chunk buffer, so they die young (cheap GC). */
const CHUNK_BYTES = 1 << 20;
/** Lines are concatenated in small groups, then encoded into the chunk buffer in one call. */
const GROUP_LINES = 32;
/** Room for one group: far more than GROUP_LINES of the longest line (about 250 bytes). */
const GROUP_BYTES = GROUP_LINES * 1024;
/** How many recent good records a duplicate or an id conflict may copy from. */
const RING = 256;

/**
 * Check options and fill in defaults. Throws SluiceError("BAD_CONFIG") with one sentence; the
 * CLI turns it into a usage error.
 */
export function resolveTradeSampleOptions(opts: TradeSampleOptions): Required<TradeSampleOptions> {
  const o = {
    rows: opts.rows,
    seed: opts.seed ?? DEFAULTS.seed,
    badShare: opts.badShare ?? DEFAULTS.badShare,
    startAt: opts.startAt ?? DEFAULTS.startAt,
    idPrefix: opts.idPrefix ?? DEFAULTS.idPrefix,
    duplicateShare: opts.duplicateShare ?? DEFAULTS.duplicateShare,
  };
  const bad = (msg: string): never => {
    throw new SluiceError("BAD_CONFIG", msg);
  };
  if (!Number.isSafeInteger(o.rows) || o.rows < 0 || o.rows > MAX_ROWS) bad(`rows must be a whole number from 0 to ${MAX_ROWS}, not ${o.rows}`);
  if (!Number.isSafeInteger(o.seed)) bad(`seed must be a whole number, not ${o.seed}`);
  for (const [name, v] of [
    ["badShare", o.badShare],
    ["duplicateShare", o.duplicateShare],
  ] as const)
    if (!Number.isFinite(v) || v < 0 || v > 1) bad(`${name} must be a fraction from 0 to 1, not ${v}`);
  if (!ISO_INSTANT.test(o.startAt) || Number.isNaN(Date.parse(o.startAt)))
    bad(`startAt must be an ISO-8601 timestamp with a zone, e.g. 2026-11-02T09:30:00Z, not ${JSON.stringify(o.startAt)}`);
  if (!/^[A-Za-z0-9_.:-]{0,32}$/.test(o.idPrefix)) bad(`idPrefix may hold only letters, digits and _ . : - (at most 32), not ${JSON.stringify(o.idPrefix)}`);
  const { bad: nBad, duplicates: nDup } = counts(o);
  if (nBad + nDup > o.rows) bad(`badShare + duplicateShare must not exceed 1`);
  if (nDup > 0 && nBad + nDup >= o.rows) bad(`duplicates need at least one good record to repeat; lower duplicateShare or badShare`);
  return o;
}

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

function counts(o: { rows: number; badShare: number; duplicateShare: number }): { bad: number; duplicates: number } {
  return { bad: Math.round(o.rows * o.badShare), duplicates: Math.round(o.rows * o.duplicateShare) };
}

function emptySummary(): TradeSampleSummary {
  const defects = {} as Record<DefectKind, number>;
  for (const k of DEFECT_KINDS) defects[k] = 0;
  return { rows: 0, good: 0, bad: 0, duplicates: 0, bytes: 0, defects };
}

/** Stream trades as CSV text chunks (header first). Memory stays constant whatever `rows` is. */
export function* tradesCsv(opts: TradeSampleOptions): Generator<string> {
  for (const chunk of generate(resolveTradeSampleOptions(opts), DEFECT_KINDS, emptySummary())) yield chunk.toString("utf8");
}

/** Write a CSV sample, honouring back-pressure; resolves with exact counts and bytes on disk. */
export async function writeTradesCsv(path: string, opts: TradeSampleOptions): Promise<TradeSampleSummary> {
  const o = resolveTradeSampleOptions(opts);
  const summary = emptySummary();
  summary.bytes = await writeChunks(path, generate(o, DEFECT_KINDS, summary));
  return summary;
}

/**
 * Write a sample as CSV, NDJSON or a JSON array (default: from the extension, CSV otherwise).
 * NDJSON and JSON are the same records converted through the formats layer, values as strings.
 */
export async function writeTradesFile(path: string, opts: TradeSampleOptions, format?: TradeSampleFormat): Promise<TradeSampleSummary> {
  const fmt = format ?? formatOf(path);
  if (fmt === "csv") return writeTradesCsv(path, opts);
  const o = resolveTradeSampleOptions(opts);
  const summary = emptySummary();
  const kinds = DEFECT_KINDS.filter((k) => !MALFORMED_CSV_DEFECTS.includes(k));
  const writer = fmt === "ndjson" ? await openNdjsonWriter(path, TRADE_COLUMNS) : await openJsonArrayWriter(path, TRADE_COLUMNS);
  try {
    for await (const batch of parseCsvStream(toAsync(generate(o, kinds, summary)), "trades sample")) {
      if (batch.errors.length > 0) throw new SluiceError("INTERNAL", `the trades generator produced a malformed record: ${batch.errors[0]!.reason}`);
      await writer.write(batch.rows);
    }
  } finally {
    summary.bytes = (await writer.close()).bytes;
  }
  return summary;
}

/**
 * The sample's records as objects (values as text, as in the NDJSON sample), for feeding a
 * stream: the same records, defects and counts as the files. Malformed-CSV defects are left out
 * (a stream message is already one record). `summary` is filled in as records are produced.
 */
export async function* tradeRecords(opts: TradeSampleOptions, summary: TradeSampleSummary = emptySummary()): AsyncGenerator<Record<string, string>> {
  const o = resolveTradeSampleOptions(opts);
  const kinds = DEFECT_KINDS.filter((k) => !MALFORMED_CSV_DEFECTS.includes(k));
  for await (const batch of parseCsvStream(toAsync(generate(o, kinds, summary)), "trades sample")) {
    if (batch.errors.length > 0) throw new SluiceError("INTERNAL", `the trades generator produced a malformed record: ${batch.errors[0]!.reason}`);
    for (const row of batch.rows) yield row as Record<string, string>;
  }
}

export { emptySummary as emptyTradeSummary };

function formatOf(path: string): TradeSampleFormat {
  const p = path.toLowerCase();
  if (p.endsWith(".ndjson") || p.endsWith(".jsonl")) return "ndjson";
  if (p.endsWith(".json")) return "json";
  return "csv";
}

async function* toAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  for (const item of items) yield item;
}

async function writeChunks(path: string, chunks: Iterable<Buffer>): Promise<number> {
  const stream = createWriteStream(path);
  let failure: Error | undefined;
  stream.on("error", (err) => {
    failure = err;
  });
  const fail = (err: Error): SluiceError => new SluiceError("IO_ERROR", `cannot write ${path}: ${err.message}`, { cause: err });
  try {
    for (const chunk of chunks) {
      if (failure) throw fail(failure);
      if (!stream.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            stream.off("drain", done);
            stream.off("error", done);
            resolve();
          };
          stream.on("drain", done);
          stream.on("error", done);
        });
      }
    }
    if (failure) throw fail(failure);
    await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(fail(err)) : resolve())));
  } catch (err) {
    stream.destroy();
    throw err;
  }
  if (failure) throw fail(failure);
  return stream.bytesWritten;
}

// ---------------------------------------------------------------------------------------------
// Reference data

/** Tickers with their realistic price band, in 1/10,000 units. All match ^[A-Z]{1,6}$. */
const SYMBOLS: ReadonlyArray<readonly [string, number, number]> = [
  ["AAPL", 1700000, 2300000],
  ["MSFT", 3900000, 4600000],
  ["NVDA", 1100000, 1500000],
  ["AMZN", 1800000, 2300000],
  ["GOOGL", 1600000, 2000000],
  ["GOOG", 1600000, 2000000],
  ["META", 5200000, 6400000],
  ["TSLA", 2200000, 2900000],
  ["AVGO", 1600000, 2000000],
  ["JPM", 2200000, 2600000],
  ["V", 2900000, 3300000],
  ["MA", 5000000, 5500000],
  ["UNH", 4800000, 6000000],
  ["XOM", 1050000, 1250000],
  ["JNJ", 1450000, 1650000],
  ["WMT", 800000, 950000],
  ["PG", 1550000, 1750000],
  ["HD", 3700000, 4200000],
  ["COST", 8800000, 9800000],
  ["ORCL", 1400000, 1900000],
  ["BAC", 380000, 460000],
  ["KO", 620000, 720000],
  ["PEP", 1450000, 1700000],
  ["NFLX", 7000000, 9000000],
  ["ADBE", 4200000, 5200000],
  ["CRM", 2700000, 3300000],
  ["AMD", 1200000, 1700000],
  ["INTC", 190000, 250000],
  ["CSCO", 550000, 620000],
  ["DIS", 950000, 1150000],
  ["IBM", 2100000, 2500000],
];

const FIRST = ["ana", "ben", "chen", "dana", "eli", "farah", "goran", "hana", "ivan", "julia", "kofi", "lena", "marco", "nadia", "omar", "priya"];
const LAST = ["silva", "okafor", "wei", "kowalski", "moreau", "haddad", "novak", "sato", "petrov", "rossi", "mensah", "berg", "costa", "khan", "ortiz"];

/** Plain notes: need no quoting. */
const PLAIN_NOTES = [
  "opening order",
  "rebalance",
  "take profit",
  "stop loss hit",
  "client request",
  "end of day",
  "algo slice",
  "block trade",
  "hedge",
  "dividend reinvest",
  "client in Zürich",
];

/** Notes that need RFC 4180 quoting: commas, quotes (doubled when written), embedded newlines. */
const TRICKY_NOTES = [
  "split fill, part 1 of 2",
  'client said "urgent"',
  "multi-line note:\nfirst line\nsecond line",
  'comma, quote " and newline\ntogether',
  'limit "at or better", then filled\nat market',
  '"quoted from the start", and a trailing quote "',
];
const TRICKY_QUOTED = TRICKY_NOTES.map(quoteField);

function quoteField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// ---------------------------------------------------------------------------------------------
// The generator

/** sfc32, seeded through splitmix32: fast, well mixed, 32-bit state words. */
class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

interface Fields {
  id: string;
  ts: string;
  symbol: string;
  side: string;
  qty: string;
  price: string;
  account: string;
  email: string;
  notes: string;
}

function* generate(o: Required<TradeSampleOptions>, kinds: readonly DefectKind[], summary: TradeSampleSummary): Generator<Buffer> {
  const rng = new Rng(o.seed);
  const { bad: nBad, duplicates: nDup } = counts(o);
  // A seeded order of the defect kinds, taken in turn: evenly spread, all present once bad ≥ kinds.
  const order = [...kinds];
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  let clock = Date.parse(o.startAt);
  const stamp = new Timestamps();
  let seq = 0;
  let badLeft = nBad;
  let dupLeft = nDup;
  let badIndex = 0;
  // Recent good records: their line and id, for duplicates and id conflicts.
  const ringLines: string[] = [];
  const ringIds: string[] = [];
  let ringNext = 0;

  let out = Buffer.allocUnsafe(CHUNK_BYTES + GROUP_BYTES);
  let pos = 0;
  let group = TRADE_COLUMNS.join(",") + "\n";
  let grouped = 0;
  for (let i = 0; i < o.rows; i++) {
    // Exact counts at seeded positions: choose among the remaining slots without replacement.
    // The first record is good, so duplicates and conflicts always have something to copy.
    let kind: "good" | "bad" | "dup" = "good";
    if (i > 0 || o.rows === nBad) {
      const u = rng.int(o.rows - i);
      if (u < badLeft) kind = "bad";
      else if (u < badLeft + dupLeft) kind = "dup";
    }
    if (kind === "dup" && ringLines.length === 0) kind = "good"; // unreachable: row 0 is good
    summary.rows++;

    if (kind === "dup") {
      dupLeft--;
      summary.duplicates++;
      group += ringLines[rng.int(ringLines.length)]!;
    } else {
      clock += rng.int(2001);
      const f = goodFields(rng, o.idPrefix, ++seq, stamp.format(clock));
      if (kind === "good") {
        const line = joinLine(f);
        summary.good++;
        if (ringLines.length < RING) {
          ringLines.push(line);
          ringIds.push(f.id);
        } else {
          ringLines[ringNext] = line;
          ringIds[ringNext] = f.id;
          ringNext = (ringNext + 1) % RING;
        }
        group += line;
      } else {
        badLeft--;
        let defect = order[badIndex++ % order.length]!;
        // With no good record yet (every record bad) an id conflict has nothing to reuse.
        if (defect === "duplicate_id_conflict" && ringIds.length === 0) defect = order.find((k) => k !== defect) ?? defect;
        summary.bad++;
        summary.defects[defect]++;
        group += badLine(rng, f, defect, ringLines, ringIds);
      }
    }
    if (++grouped < GROUP_LINES) continue;
    pos += out.write(group, pos);
    group = "";
    grouped = 0;
    if (pos >= CHUNK_BYTES) {
      yield out.subarray(0, pos);
      out = Buffer.allocUnsafe(CHUNK_BYTES + GROUP_BYTES);
      pos = 0;
    }
  }
  pos += out.write(group, pos);
  if (pos > 0) yield out.subarray(0, pos);
}

/**
 * UTC ISO-8601 with milliseconds, like `Date.prototype.toISOString` for years 0–9999, without a
 * Date per record: the date part is recomputed only when the day changes.
 */
class Timestamps {
  private day = NaN;
  private prefix = "";

  format(ms: number): string {
    const day = Math.floor(ms / 86_400_000);
    if (day !== this.day) {
      this.day = day;
      this.prefix = new Date(day * 86_400_000).toISOString().slice(0, 11);
    }
    let t = ms - day * 86_400_000;
    const milli = t % 1000;
    t = (t - milli) / 1000;
    const sec = t % 60;
    t = (t - sec) / 60;
    const min = t % 60;
    const hour = (t - min) / 60;
    return this.prefix + TWO[hour] + ":" + TWO[min] + ":" + TWO[sec] + "." + (milli < 10 ? "00" : milli < 100 ? "0" : "") + milli + "Z";
  }
}

const TWO = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, "0"));

function goodFields(rng: Rng, prefix: string, seq: number, ts: string): Fields {
  const [symbol, lo, hi] = rng.pick(SYMBOLS);
  const acct = 1001 + rng.int(200);
  const roll = rng.int(100);
  let notes = "";
  if (roll < 5) notes = TRICKY_QUOTED[rng.int(TRICKY_QUOTED.length)]!;
  else if (roll < 40) notes = PLAIN_NOTES[rng.int(PLAIN_NOTES.length)]!;
  // Each account has one trader, so the sample looks like a real book.
  const h = Math.imul(acct, 0x9e3779b1) >>> 0;
  return {
    id: prefix + (seq < 1e9 ? String(1e9 + seq).slice(1) : String(seq)),
    ts,
    symbol,
    side: rng.u32() & 1 ? "BUY" : "SELL",
    qty: String(1 + rng.int(5000)),
    price: formatMinor(lo + rng.int(hi - lo + 1)),
    account: "ACC-" + acct,
    email: FIRST[h % FIRST.length] + "." + LAST[(h >>> 8) % LAST.length] + "@example.com",
    notes,
  };
}

/** 1,892,500 → "189.2500": integer arithmetic only. */
function formatMinor(units: number): string {
  const whole = Math.floor(units / 10000);
  const frac = units - whole * 10000;
  return whole + "." + (frac < 10 ? "000" : frac < 100 ? "00" : frac < 1000 ? "0" : "") + frac;
}

function joinLine(f: Fields): string {
  return f.id + "," + f.ts + "," + f.symbol + "," + f.side + "," + f.qty + "," + f.price + "," + f.account + "," + f.email + "," + f.notes + "\n";
}

function badLine(rng: Rng, f: Fields, defect: DefectKind, ringLines: readonly string[], ringIds: readonly string[]): string {
  switch (defect) {
    case "wrong_field_count": {
      // Drop one field (not the last, so the record never ends in a dangling delimiter).
      const fields = [f.id, f.ts, f.symbol, f.side, f.qty, f.price, f.account, f.email, f.notes];
      fields.splice(1 + rng.int(7), 1);
      return fields.join(",") + "\n";
    }
    case "stray_quote": {
      if (rng.u32() & 1 && f.symbol.length >= 2) {
        const at = 1 + rng.int(f.symbol.length - 1);
        f.symbol = f.symbol.slice(0, at) + '"' + f.symbol.slice(at);
      } else {
        f.notes = rng.pick(['said "ok" twice', 'size 5" block', 'px "firm" per desk']);
      }
      return joinLine(f);
    }
    case "bad_timestamp":
      f.ts = rng.pick(["2026-13-45T99:00:00Z", "yesterday", "2026-11-02T25:61:00.000Z"]);
      return joinLine(f);
    case "bad_quantity":
      f.qty = rng.pick(["12.5", "abc", "-3"]);
      return joinLine(f);
    case "bad_price":
      f.price = rng.pick(["1.23456", "N/A"]);
      return joinLine(f);
    case "missing_required":
      if (rng.u32() & 1) f.id = "";
      else f.symbol = "";
      return joinLine(f);
    case "bad_side":
      f.side = "HOLD";
      return joinLine(f);
    case "bad_symbol":
      f.symbol = rng.pick(["apple123", "aapl", "GOOGLEX"]);
      return joinLine(f);
    case "duplicate_id_conflict": {
      const k = rng.int(ringIds.length);
      f.id = ringIds[k]!;
      let line = joinLine(f);
      if (line === ringLines[k]) {
        // Same id must mean different content: change the quantity.
        f.qty = String((Number(f.qty) % 5000) + 1);
        line = joinLine(f);
      }
      return line;
    }
  }
}

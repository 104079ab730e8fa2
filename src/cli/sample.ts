/**
 * `sluice sample trades OUTPUT`: write a deterministic sample of financial trades with a small,
 * exactly counted share of defective records (see `src/samples/trades.ts`), to try a workflow or
 * a benchmark on realistic data of any size. `.ndjson` / `.json` outputs hold the same records.
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { SluiceError } from "../errors.js";
import { resolveTradeSampleOptions, writeTradesFile, type TradeSampleOptions } from "../samples/trades.js";

export interface SampleFlags {
  rows?: string;
  seed?: string;
  badShare?: string;
  duplicateShare?: string;
  idPrefix?: string;
  startAt?: string;
}

const SAMPLE_KINDS = ["trades"];
export const DEFAULT_SAMPLE_ROWS = 10_000;

export async function sampleCommand(kind: string, output: string, o: SampleFlags): Promise<number> {
  if (!SAMPLE_KINDS.includes(kind)) throw new SluiceError("USAGE", `unknown sample "${kind}"; the samples are: ${SAMPLE_KINDS.join(", ")}`);
  const opts: TradeSampleOptions = { rows: DEFAULT_SAMPLE_ROWS };
  if (o.rows !== undefined) opts.rows = wholeNumber("--rows", o.rows, false);
  if (o.seed !== undefined) opts.seed = wholeNumber("--seed", o.seed, true);
  if (o.badShare !== undefined) opts.badShare = fraction("--bad-share", o.badShare);
  if (o.duplicateShare !== undefined) opts.duplicateShare = fraction("--duplicate-share", o.duplicateShare);
  if (o.idPrefix !== undefined) opts.idPrefix = o.idPrefix;
  if (o.startAt !== undefined) opts.startAt = o.startAt;
  try {
    resolveTradeSampleOptions(opts);
  } catch (err) {
    if (err instanceof SluiceError) throw new SluiceError("USAGE", err.message);
    throw err;
  }
  await mkdir(dirname(output), { recursive: true });
  const s = await writeTradesFile(output, opts);
  process.stdout.write(`${output}: ${s.rows} rows (${s.good} good, ${s.bad} bad, ${s.duplicates} duplicates), ${(s.bytes / 1e6).toFixed(2)} MB\n`);
  return 0;
}

function wholeNumber(flag: string, text: string, signed: boolean): number {
  const n = Number(text);
  if (!(signed ? /^-?\d+$/ : /^\d+$/).test(text) || !Number.isSafeInteger(n))
    throw new SluiceError("USAGE", `${flag} must be a whole number${signed ? "" : " of 0 or more"}, not "${text}"`);
  return n;
}

function fraction(flag: string, text: string): number {
  const n = Number(text);
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text) || n > 1) throw new SluiceError("USAGE", `${flag} must be a fraction from 0 to 1, e.g. 0.01, not "${text}"`);
  return n;
}

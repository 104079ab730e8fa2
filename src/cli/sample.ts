/**
 * `sluice sample trades OUTPUT`: write a deterministic sample of financial trades with a small,
 * exactly counted share of defective records (see `src/samples/trades.ts`), to try a workflow or
 * a benchmark on realistic data of any size. `.ndjson` / `.json` outputs hold the same records.
 *
 * `sluice sample flaky-api --port N --plan PLAN`: serve a paginated trades API that fails by a
 * script (see `src/samples/flaky-api.ts` for the plan), until stopped with Ctrl-C, to try the
 * resilient-fetch workflow on a source that breaks the way real ones do.
 *
 * `sluice sample secure-api --port N --dir CERTS`: serve the demo sensitive HTTPS API (mTLS,
 * OAuth2 client credentials bound to the certificate, a TOTP header; `src/samples/secure-api.ts`)
 * with certificates and secret files made in CERTS at start, to try the secure workflow.
 */
import { mkdir, readFile } from "node:fs/promises";
import { dirname, resolve as resolvePath } from "node:path";
import { SluiceError } from "../errors.js";
import { parseFlakyPlan, startFlakyApi } from "../samples/flaky-api.js";
import { startSecureApi } from "../samples/secure-api.js";
import { resolveTradeSampleOptions, writeTradesFile, type TradeSampleOptions } from "../samples/trades.js";

export interface SampleFlags {
  rows?: string;
  seed?: string;
  badShare?: string;
  duplicateShare?: string;
  idPrefix?: string;
  startAt?: string;
  port?: string;
  plan?: string;
  asOf?: string;
  dir?: string;
}

const SAMPLE_KINDS = ["trades", "flaky-api", "secure-api"];
export const DEFAULT_SAMPLE_ROWS = 10_000;

export async function sampleCommand(kind: string, output: string | undefined, o: SampleFlags): Promise<number> {
  if (!SAMPLE_KINDS.includes(kind)) throw new SluiceError("USAGE", `unknown sample "${kind}"; the samples are: ${SAMPLE_KINDS.join(", ")}`);
  if (kind === "flaky-api") return serveFlakyApi(o);
  if (kind === "secure-api") return serveSecureApi(o);
  if (output === undefined) throw new SluiceError("USAGE", "sluice sample trades needs an output file (.csv, .ndjson or .json)");
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

/** Serve the flaky API until SIGINT or SIGTERM. `--plan @FILE` reads the plan from a file. */
async function serveFlakyApi(o: SampleFlags): Promise<number> {
  const port = o.port === undefined ? 0 : wholeNumber("--port", o.port, false);
  let text = o.plan ?? "";
  if (text.startsWith("@")) text = await readFile(text.slice(1), "utf8");
  let api: Awaited<ReturnType<typeof startFlakyApi>>;
  try {
    api = await startFlakyApi({ port, plan: parseFlakyPlan(text), ...(o.asOf !== undefined ? { asOf: o.asOf } : {}) });
  } catch (err) {
    if (err instanceof SluiceError && err.code === "BAD_CONFIG") throw new SluiceError("USAGE", err.message);
    throw err;
  }
  const pages = Math.ceil(api.plan.records / api.plan.pageSize);
  process.stdout.write(
    `flaky API on ${api.url} (${api.plan.records} ids, ${pages} pages; stats at ${api.url.replace(/\/trades$/, "/_stats")}); Ctrl-C stops it\n`,
  );
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await api.close();
  return 0;
}

/** Serve the secure API until SIGINT or SIGTERM; print what a workflow needs (paths, never secrets). */
async function serveSecureApi(o: SampleFlags): Promise<number> {
  const port = o.port === undefined ? 0 : wholeNumber("--port", o.port, false);
  if (o.dir === undefined) throw new SluiceError("USAGE", "sluice sample secure-api needs --dir DIR, the folder its certificates and secret files are made in");
  const dir = resolvePath(o.dir);
  const api = await startSecureApi({ dir, port });
  const c = api.certs;
  process.stdout.write(
    [
      `secure API on ${api.url} (token endpoint ${api.tokenUrl}); Ctrl-C stops it`,
      `  CA ${c.ca} · client certificate ${c.clientCert} · key ${c.clientKey}`,
      `  client id ${api.clientId} · client secret in ${api.secretFiles.clientSecret} · TOTP seed in ${api.secretFiles.totpSecret}`,
      `  try: sluice run workflows/base-data-ingestion-workflow-secure-api.yaml --param source=${api.url} --param tokenUrl=${api.tokenUrl} \\`,
      `         --param clientId=${api.clientId} --param caFile=${c.ca} --param clientCert=file:${c.clientCert} --param clientKey=file:${c.clientKey} \\`,
      `         --param clientSecret=file:${api.secretFiles.clientSecret} --param totpSecret=file:${api.secretFiles.totpSecret}`,
      "",
    ].join("\n"),
  );
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await api.close();
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

/**
 * collect_data_from_source for an HTTP(S) API: walk its pages, storing each one as it arrives in
 * the step's page checkpoint (page-checkpoint.ts), so a retried attempt or a resumed run starts
 * after the last stored page, never at page 1 again, and never stores a page twice. The dataset
 * is the stored pages in order, one part per page (each part's `source` is the page's URL, which
 * is the provenance a later step reports).
 *
 * Outputs beyond the dataset: `pages` (stored), `pagesFetched` (by this attempt),
 * `resumedFromPage` (when it resumed), `manifest` (the page manifest, PageManifest) and
 * `manifestPath`. A failed walk still writes the manifest (`complete: false`, `next`: the page
 * that failed) and adds `manifestPath`, `checkpoint` and `pagesStored` to the error's details,
 * so the recovery workflow finds where the primary stopped.
 */
import { join } from "node:path";
import { SluiceError, toErrorInfo } from "../../errors.js";
import { fetchPages, safeUrl, type HttpPage, type HttpPagination, type HttpResume, type HttpSourceConfig } from "../../connectors/index.js";
import type { FileFormat } from "../../formats/index.js";
import type { ActionContext, Outputs } from "../types.js";
import type { PageManifest } from "../recovery/contract.js";
import type { DatasetPart } from "./dataset.js";
import { checkpointDir, finishCheckpoint, manifestOf, openCheckpoint, storePage, walkFingerprint, writeManifest } from "./page-checkpoint.js";
import { httpAuth } from "./source-checks.js";

export interface HttpCollectInput {
  format?: FileFormat;
  csv?: DatasetPart["csv"];
  auth?: Parameters<typeof httpAuth>[0];
  recordsPath?: string;
  pagination?: HttpPagination;
  maxPages?: number;
  onMaxPages?: "error" | "stop";
  /** The record key column for the manifest's firstKey/lastKey (default: `id`, else a `…_id` column). */
  key?: string;
  timeoutMs?: number;
  maxRetries?: number;
  maxRetryAfterMs?: number;
}

/**
 * What collect_with_encryption adds to the walk: page files sealed before they touch the disk,
 * a check of every page before it is stored (security monitoring), and source settings
 * (redirects refused, a private CA, client certificates and pins, OAuth2 and TOTP).
 */
export interface SecureWalk {
  seal(plain: Buffer): Promise<Buffer>;
  /** Set on every part of the dataset, so readers decrypt it. */
  encrypted: NonNullable<DatasetPart["encrypted"]>;
  /** Throws to stop the walk; the page it was given is not stored. */
  check(page: HttpPage): Promise<void>;
  /** Source settings that win over the plain collector's: redirects refused, a private CA, TLS (mTLS, pins), auth (OAuth2, TOTP). */
  config: Pick<HttpSourceConfig, "redirects" | "caFile" | "tls" | "auth">;
}

export interface HttpCollection {
  parts: DatasetPart[];
  pagesLeft: boolean;
  outputs: Outputs;
}

export async function collectHttp(
  url: string,
  display: string,
  input: HttpCollectInput,
  dir: string,
  ctx: ActionContext,
  secure?: SecureWalk,
): Promise<HttpCollection> {
  const config: HttpSourceConfig = {
    url,
    auth: httpAuth(input.auth),
    recordsPath: input.recordsPath,
    pagination: input.pagination,
    ...(input.maxPages !== undefined ? { maxPages: input.maxPages } : {}),
    ...(input.onMaxPages ? { onMaxPages: input.onMaxPages } : {}),
    ...(input.timeoutMs !== undefined ? { timeoutMs: input.timeoutMs } : {}),
    ...(input.maxRetries !== undefined ? { maxRetries: input.maxRetries } : {}),
    ...(input.maxRetryAfterMs !== undefined ? { maxRetryAfterMs: input.maxRetryAfterMs } : {}),
    ...secure?.config,
  };
  // What decides which pages come back: a checkpoint of another walk is not resumed.
  // (An encrypted walk never resumes a plaintext checkpoint, nor the other way round.)
  const fingerprint = walkFingerprint({
    url,
    recordsPath: input.recordsPath,
    pagination: input.pagination,
    format: input.format,
    csv: input.csv,
    ...(secure ? { encrypted: true } : {}),
  });
  const cp = await openCheckpoint(checkpointDir(ctx.artifactsDir, ctx.step), display, fingerprint);
  if (cp.discarded) ctx.log.warn("page checkpoint discarded", { reason: cp.discarded, checkpoint: cp.dir });

  let resume: HttpResume | undefined;
  const last = cp.pages.at(-1);
  if (!cp.done && last?.next !== undefined) {
    resume = { url: last.next, page: last.page + 1, recordsRead: cp.pages.reduce((n, p) => n + (p.rows ?? 0), 0) };
    ctx.log.info("resuming the HTTP walk from its checkpoint", { page: resume.page, pagesStored: cp.pages.length, url: safeUrl(resume.url) });
  }
  let key = input.key;
  let rows = cp.pages.reduce((n, p) => n + (p.rows ?? 0), 0);
  let fetched = 0;
  let pagesLeft = cp.pagesLeft;
  try {
    if (!cp.done) {
      for await (const p of fetchPages(config, { signal: ctx.signal, ...(resume ? { resume } : {}) })) {
        if (secure) await secure.check(p);
        if (p.pagesLeft) pagesLeft = true;
        const base = { page: p.page, url: p.url, ...(p.next !== undefined ? { next: p.next } : {}), ...(p.pagesLeft ? { pagesLeft: true } : {}) };
        if (p.records) {
          key ??= guessKey(p.records[0]);
          const first = keyValue(p.records[0], key);
          const lastKey = keyValue(p.records.at(-1), key);
          const text = p.records.map((r) => JSON.stringify(r) + "\n").join("");
          const content = secure ? await secure.seal(Buffer.from(text, "utf8")) : text;
          await storePage(
            cp,
            {
              ...base,
              format: "ndjson",
              rows: p.records.length,
              ...(first !== undefined ? { firstKey: first } : {}),
              ...(lastKey !== undefined ? { lastKey } : {}),
            },
            content,
          );
          rows += p.records.length;
        } else {
          await storePage(cp, { ...base, format: "csv" }, secure ? await secure.seal(Buffer.from(p.text ?? "", "utf8")) : (p.text ?? ""));
        }
        fetched++;
        ctx.progress({ rows, files: p.page });
      }
      await finishCheckpoint(cp, pagesLeft);
    }
  } catch (err) {
    throw await failedWalk(err, cp, display, url, dir);
  }

  const manifest = manifestOf(cp, display);
  const manifestPath = await writeManifest(dir, manifest);
  const parts: DatasetPart[] = [];
  for (const p of cp.pages) {
    if (p.format === "ndjson" && p.rows === 0) continue; // an empty page adds nothing
    parts.push({
      path: join(cp.dir, p.file),
      format: p.format === "ndjson" ? "ndjson" : (input.format ?? "csv"),
      source: p.url,
      bytes: p.bytes,
      ...(p.rows !== undefined ? { rows: p.rows } : {}),
      ...(p.format === "csv" && input.csv ? { csv: input.csv } : {}),
      ...(secure ? { encrypted: secure.encrypted } : {}),
      // JSON responses were written out as NDJSON here: the schema's read options are not theirs.
      ...(p.format === "ndjson" ? { intermediate: true } : {}),
    });
  }
  if (pagesLeft) ctx.log.warn("pages were left unread: the API had more pages after maxPages (onMaxPages: stop)", { source: display, pages: cp.pages.length });
  return {
    parts,
    pagesLeft,
    outputs: {
      pages: cp.pages.length,
      pagesFetched: fetched,
      ...(resume ? { resumedFromPage: resume.page } : {}),
      manifest: compact(manifest),
      manifestPath,
    },
  };
}

/**
 * The error a failed walk raises: the same code and sentence, with where the stored pages and
 * the manifest are added to its details. The manifest is written first, so it is there to read.
 */
async function failedWalk(err: unknown, cp: Awaited<ReturnType<typeof openCheckpoint>>, display: string, url: string, dir: string): Promise<unknown> {
  const info = toErrorInfo(err);
  const page = err instanceof SluiceError && typeof err.details?.["page"] === "number" ? err.details["page"] : undefined;
  const next = cp.pages.at(-1)?.next ?? url;
  const manifest = manifestOf(cp, display, { next, error: { code: info.code, message: info.message, ...(page !== undefined ? { page } : {}) } });
  let manifestPath: string;
  try {
    manifestPath = await writeManifest(dir, manifest);
  } catch {
    return err; // the original failure matters more than a manifest that could not be written
  }
  if (!(err instanceof SluiceError) || err.code === "CANCELLED") return err;
  const wrapped = new SluiceError(err.code, err.message, {
    retryable: err.retryable,
    cause: err.cause,
    details: { ...err.details, pagesStored: cp.pages.length, checkpoint: cp.dir, manifestPath },
  });
  wrapped.stack = err.stack;
  return wrapped;
}

/** Pages listed in the step's outputs at most: outputs live in the state store, a long walk's list in manifest.json. */
const MAX_OUTPUT_PAGES = 200;

/**
 * The manifest as the step's outputs carry it: page files left out, and the page list itself
 * once it is longer than MAX_OUTPUT_PAGES (then `pagesListed: false`: read manifestPath).
 */
function compact(m: PageManifest): PageManifest & { pagesListed?: false } {
  if (m.pages.length > MAX_OUTPUT_PAGES) return { ...m, pages: [], pagesListed: false };
  return { ...m, pages: m.pages.map(({ file: _file, ...rest }) => rest) };
}

/** A record key for the manifest: a column named `id`, else the first named `…_id` / `…Id`. */
function guessKey(record: Record<string, unknown> | undefined): string | undefined {
  if (!record) return undefined;
  const names = Object.keys(record);
  return names.find((n) => n === "id") ?? names.find((n) => /_id$/i.test(n)) ?? names.find((n) => /[a-z]Id$/.test(n));
}

function keyValue(record: Record<string, unknown> | undefined, key: string | undefined): string | number | undefined {
  const v = key === undefined || record === undefined ? undefined : record[key];
  return typeof v === "string" || typeof v === "number" ? v : undefined;
}

/**
 * Page checkpoints of an HTTP collection (Airbyte's "resumable full refresh"): every page is kept
 * as its own file as it arrives, and a journal line records it once the file is whole, so a
 * retried attempt or a resumed run (after `kill -9`) continues after the last stored page
 * instead of asking the API for page 1 again.
 *
 * Layout, per collecting step, beside (not inside) the step's folder, which dataset.ts clears
 * for every attempt:
 *
 *   <artifacts>/<step>.checkpoint/
 *     source.json       { kind, source, fingerprint }: which walk the pages belong to
 *     pages.ndjson      one line per stored page, in order (PageJournalEntry)
 *     page-00001.ndjson the records of page 1 as NDJSON (a CSV page: page-00001.csv)
 *     …
 *   <artifacts>/<step>/manifest.json   the page manifest (PageManifest), after success or failure
 *
 * `<artifacts>` is `<home>/runs/<runId>/artifacts`; a failed run's checkpoint and manifest stay
 * there for the recovery workflow to read (`readPageManifest`).
 *
 * Crash safety: a page file is written under a temporary name and renamed, then its journal line
 * is appended. A `kill -9` between the two leaves a page file with no line (written again on
 * resume, under the same name: no page twice); one during the append leaves a partial last line
 * (ignored). A line whose file is missing or of another size ends the trusted prefix. Without
 * fsync, a power loss (not a process crash) can cost the last pages: they are fetched again.
 * A journal written for another source (URL, records path, pagination, format) is discarded.
 */
import { createHash } from "node:crypto";
import { appendFile, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { safeUrl } from "../../connectors/index.js";
import type { PageManifest, PageManifestEntry } from "../recovery/contract.js";

export const CHECKPOINT_KIND = "sluice.dev/http-checkpoint-v1";

/** One stored page. `next` is the raw URL of the page after it (absent on the last page). */
export interface PageJournalEntry {
  page: number;
  /** The URL that answered, masked. */
  url: string;
  file: string;
  format: "ndjson" | "csv";
  rows?: number;
  bytes: number;
  firstKey?: string | number;
  lastKey?: string | number;
  next?: string;
  pagesLeft?: boolean;
}

/** The walk ended (the API had no next page, or maxPages with onMaxPages: stop). */
interface DoneLine {
  done: true;
  pagesLeft: boolean;
}

export interface Checkpoint {
  dir: string;
  pages: PageJournalEntry[];
  /** The walk finished: nothing left to fetch. */
  done: boolean;
  pagesLeft: boolean;
}

export function checkpointDir(artifactsDir: string, step: string): string {
  return join(artifactsDir, `${step}.checkpoint`);
}

/** A stable digest of what decides which pages a walk returns. */
export function walkFingerprint(walk: Record<string, unknown>): string {
  return createHash("sha256").update(JSON.stringify(walk)).digest("hex").slice(0, 16);
}

/**
 * The checkpoint of this step's walk, or a fresh one: the stored pages that can be trusted (a
 * prefix of the journal whose files are whole), whether the walk had finished.
 */
export async function openCheckpoint(dir: string, source: string, fingerprint: string): Promise<Checkpoint & { discarded?: string }> {
  const fresh = async (discarded?: string) => {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "source.json"), JSON.stringify({ kind: CHECKPOINT_KIND, source, fingerprint }, null, 2));
    return { dir, pages: [], done: false, pagesLeft: false, ...(discarded ? { discarded } : {}) };
  };
  let head: { kind?: string; fingerprint?: string };
  try {
    head = JSON.parse(await readFile(join(dir, "source.json"), "utf8")) as typeof head;
  } catch {
    return fresh();
  }
  if (head.kind !== CHECKPOINT_KIND || head.fingerprint !== fingerprint) return fresh("it was written for another source or settings");
  const { pages, done, pagesLeft } = await readJournal(dir);
  const cp = { dir, pages, done, pagesLeft };
  if (!done) {
    // A last page that ended the walk (no next link, or maxPages) but no `done` after it: the
    // process died before the walk's end was checked; that page is fetched again.
    const last = pages.at(-1);
    if (last && (last.next === undefined || last.pagesLeft)) pages.pop();
    // Lines past the trusted pages (a cut line, a page whose file is gone) are dropped now, so
    // the pages stored from here on are appended right after the trusted ones.
    await rewriteJournal(cp);
  }
  return cp;
}

async function readJournal(dir: string): Promise<{ pages: PageJournalEntry[]; done: boolean; pagesLeft: boolean }> {
  let text = "";
  try {
    text = await readFile(join(dir, "pages.ndjson"), "utf8");
  } catch {
    return { pages: [], done: false, pagesLeft: false };
  }
  const pages: PageJournalEntry[] = [];
  let done: DoneLine | undefined;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let v: PageJournalEntry | DoneLine;
    try {
      v = JSON.parse(line) as PageJournalEntry | DoneLine;
    } catch {
      break; // a line cut by a crash: nothing after it was written
    }
    if ("done" in v) {
      done = v;
      break;
    }
    if (v.page !== pages.length + 1 || !(await whole(join(dir, v.file), v.bytes))) break;
    pages.push(v);
  }
  // The loop stops at the first line it cannot trust, so a `done` reached follows only trusted pages.
  return { pages, done: done !== undefined, pagesLeft: done?.pagesLeft ?? false };
}

async function whole(path: string, bytes: number): Promise<boolean> {
  try {
    return (await stat(path)).size === bytes;
  } catch {
    return false;
  }
}

/**
 * Store one page: its file under a temporary name, renamed, then its journal line. `content` is
 * what goes on disk: the page's text, or (collect_with_encryption) its envelope-encrypted bytes;
 * the journal's `bytes` is that file's size either way.
 */
export async function storePage(cp: Checkpoint, entry: Omit<PageJournalEntry, "file" | "bytes">, content: string | Buffer): Promise<PageJournalEntry> {
  if (entry.page !== cp.pages.length + 1) throw new Error(`page ${entry.page} stored out of order after ${cp.pages.length} pages`);
  const file = `page-${String(entry.page).padStart(5, "0")}.${entry.format}`;
  const path = join(cp.dir, file);
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
  const stored: PageJournalEntry = { ...entry, file, bytes: Buffer.byteLength(content) };
  await appendFile(join(cp.dir, "pages.ndjson"), JSON.stringify(stored) + "\n");
  cp.pages.push(stored);
  return stored;
}

/** Mark the walk finished. */
export async function finishCheckpoint(cp: Checkpoint, pagesLeft: boolean): Promise<void> {
  const line: DoneLine = { done: true, pagesLeft };
  await appendFile(join(cp.dir, "pages.ndjson"), JSON.stringify(line) + "\n");
  cp.done = true;
  cp.pagesLeft = pagesLeft;
}

/** The journal holding exactly `cp.pages`, written atomically. */
async function rewriteJournal(cp: Checkpoint): Promise<void> {
  const path = join(cp.dir, "pages.ndjson");
  await writeFile(`${path}.tmp`, cp.pages.map((p) => JSON.stringify(p) + "\n").join(""));
  await rename(`${path}.tmp`, path);
}

/** The manifest of a walk's stored pages, as the step's outputs and manifest.json carry it. */
export function manifestOf(cp: Checkpoint, source: string, extra: { next?: string; error?: PageManifest["error"] } = {}): PageManifest {
  const pages: PageManifestEntry[] = cp.pages.map((p) => ({
    page: p.page,
    url: p.url,
    ...(p.rows !== undefined ? { rows: p.rows } : {}),
    ...(p.firstKey !== undefined ? { firstKey: p.firstKey } : {}),
    ...(p.lastKey !== undefined ? { lastKey: p.lastKey } : {}),
    file: join(cp.dir, p.file),
  }));
  const complete = cp.done && !cp.pagesLeft;
  // Masked: an API may put a token in its next links; the raw URL stays in the journal only.
  const raw = extra.next ?? (complete ? undefined : cp.pages.at(-1)?.next);
  const next = raw === undefined ? undefined : safeUrl(raw);
  return {
    kind: "sluice.dev/page-manifest-v1",
    source,
    pages,
    complete,
    ...(next !== undefined ? { next } : {}),
    rows: cp.pages.reduce((n, p) => n + (p.rows ?? 0), 0),
    checkpoint: cp.dir,
    ...(extra.error ? { error: extra.error } : {}),
  };
}

export async function writeManifest(stepDir: string, manifest: PageManifest): Promise<string> {
  const path = join(stepDir, "manifest.json");
  await writeFile(`${path}.tmp`, JSON.stringify(manifest, null, 2));
  await rename(`${path}.tmp`, path);
  return path;
}

/**
 * The page manifest a collecting step left in a run's artifacts: its manifest.json, else (the
 * process was killed before writing it) rebuilt from the checkpoint journal. Undefined when the
 * step stored no pages.
 */
export async function readPageManifest(artifactsDir: string, step: string): Promise<PageManifest | undefined> {
  try {
    return JSON.parse(await readFile(join(artifactsDir, step, "manifest.json"), "utf8")) as PageManifest;
  } catch {
    // fall through to the journal
  }
  const dir = checkpointDir(artifactsDir, step);
  let source = "";
  try {
    source = (JSON.parse(await readFile(join(dir, "source.json"), "utf8")) as { source: string }).source;
  } catch {
    return undefined;
  }
  const { pages, done, pagesLeft } = await readJournal(dir);
  return manifestOf({ dir, pages, done, pagesLeft }, source);
}

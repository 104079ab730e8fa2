/**
 * file-manager/discover_files_in_directory: the inventory step of the bulk workflow.
 *
 * Lists a directory's data files, holds back files still being written, checksums the rest
 * (streamed, a few at a time) and leaves out files this workflow has already ingested from this
 * directory (the FileLedger, by content checksum). The result is a raw dataset manifest whose
 * parts point at the ORIGINAL files: bulk inputs are large, so nothing is copied; each part
 * carries its `sha256` and size so a later step can tell if a file changed under it.
 *
 * `meta.ingest` names the files the run is about to take; the storage step records them in the
 * ledger only once their rows are committed. `meta.inventory` lists every file seen, with its
 * status (new, skipped: already ingested, rejected: known bad, unstable: still being written,
 * unsupported: an extension no reader knows).
 *
 * Known-bad files: a file whose content an earlier run could not read (the processing step
 * records it in the ledger, by checksum, with the reason) is left out with status `rejected`
 * and listed in `knownBad` until its content changes; without that, every later run took it
 * again and a run with nothing new failed with "every file failed". `skipIngested: false`
 * takes every file again, known-bad ones included.
 *
 * No new files is not an error: the manifest then has zero parts, later steps pass through an
 * empty dataset, and the run succeeds storing nothing (`empty: true` in the outputs).
 */
import { mapLimit } from "./map-limit.js";
import { stat } from "node:fs/promises";
import { basename, extname, relative, resolve, sep } from "node:path";
import { SluiceError } from "../../errors.js";
import { globToRegExp, listFiles, settleDuring, sha256File, type FileEntry } from "../../connectors/files.js";
import { detectFormat } from "../../formats/index.js";
import type { ActionContext, KnownBadFile, Outputs } from "../types.js";
import { stepFolder, writeDataset, type DatasetPart, type IngestMeta } from "./dataset.js";

export interface DiscoverInput {
  directory: string;
  /** A glob relative to the directory (`*.csv`, `2026/**\/*.parquet`). Default: every supported extension. */
  pattern?: string;
  /** Descend into subdirectories (default false). A pattern without `/` then matches names at any depth. */
  recursive?: boolean;
  /** Leave out files this workflow already ingested, or found unreadable, from this directory (default true). */
  skipIngested?: boolean;
}

export type InventoryStatus = "new" | "skipped" | "rejected" | "unstable" | "unsupported";

export interface InventoryEntry {
  path: string;
  size: number;
  /** SHA-256 (hex) of the content; null for files that were not read (unstable, unsupported). */
  checksum: string | null;
  /** Last modification, UTC ISO-8601. */
  mtime: string;
  status: InventoryStatus;
  /** Why a file is not taken, in words. */
  reason?: string;
  /** For a rejected file: when its content was first found unreadable. */
  since?: string;
}

/** A file left out because an earlier run could not read this very content. */
export interface KnownBadEntry {
  path: string;
  reason: string;
  since: string;
}

/** Extensions the readers know (see formats/dispatch.ts). */
export const SUPPORTED_EXTENSIONS = [".csv", ".tsv", ".ndjson", ".jsonl", ".json", ".parquet"] as const;
/** Files hashed at once: enough to keep a disk busy, few enough not to thrash it. */
const HASH_CONCURRENCY = 4;
/** Two stats this far apart must agree for a file to count as complete. */
const STABLE_INTERVAL_MS = 250;

export async function discoverFilesInDirectory(input: DiscoverInput, ctx: ActionContext): Promise<Outputs> {
  const directory = resolve(input.directory);
  await requireDirectory(directory);
  const skipIngested = input.skipIngested ?? true;
  const scope = `${ctx.workflow}:${directory}`;

  const listed = await listCandidates(directory, input.pattern, input.recursive ?? false);
  const inventory = new Map<string, InventoryEntry>();
  const entry = (f: FileEntry, status: InventoryStatus, checksum: string | null = null, reason?: string): InventoryEntry => ({
    path: f.path,
    size: f.size,
    checksum,
    mtime: new Date(f.mtimeMs).toISOString(),
    status,
    ...(reason ? { reason } : {}),
  });

  const supported: FileEntry[] = [];
  for (const f of listed) {
    if ((SUPPORTED_EXTENSIONS as readonly string[]).includes(extname(f.path).toLowerCase())) supported.push(f);
    else inventory.set(f.path, entry(f, "unsupported", null, `no reader for the extension ${JSON.stringify(extname(f.path) || "(none)")}`));
  }

  // Files still being written are left for the next run; the stability test's interval is
  // waited beside the checksums (settleDuring), so a checksum is of the whole file.
  const totalBytes = supported.reduce((n, f) => n + f.size, 0);
  let hashedBytes = 0;
  let hashedFiles = 0;
  const { result: hashed, settled } = await settleDuring(supported, { intervalMs: STABLE_INTERVAL_MS, checks: 2, minAgeMs: 0, signal: ctx.signal }, () =>
    // Checksums, streamed, a few files at a time.
    mapLimit(supported, HASH_CONCURRENCY, async (f) => {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      let checksum: string;
      try {
        checksum = await sha256File(f.path, ctx.signal);
      } catch (err) {
        // Told apart below: a file that went away while it settled is unstable, not an error.
        return err as Error;
      }
      hashedBytes += f.size;
      hashedFiles++;
      ctx.progress({ files: hashedFiles, totalFiles: supported.length, bytes: hashedBytes, totalBytes });
      return checksum;
    }),
  );

  const complete: { f: FileEntry; checksum: string }[] = [];
  supported.forEach((f, i) => {
    const s = settled[i]!;
    if ("entry" in s) {
      const h = hashed[i]!;
      if (typeof h !== "string") throw h;
      complete.push({ f: s.entry, checksum: h });
    } else inventory.set(f.path, entry(f, "unstable", null, `still being written (${s.during ? "changed while its checksum was computed" : s.reason})`));
  });

  const checksums = [...new Set(complete.map((c) => c.checksum))];
  const ask = skipIngested && checksums.length > 0;
  const [seen, rejected] = await Promise.all([
    ask ? ctx.ledger.seen(scope, checksums) : new Set<string>(),
    ask ? ctx.ledger.rejected(scope, checksums) : new Map<string, KnownBadFile>(),
  ]);
  const taken: { f: FileEntry; checksum: string }[] = [];
  for (const c of complete) {
    const bad = rejected.get(c.checksum);
    if (seen.has(c.checksum)) inventory.set(c.f.path, entry(c.f, "skipped", c.checksum, "already ingested by this workflow from this directory"));
    else if (bad) inventory.set(c.f.path, { ...entry(c.f, "rejected", c.checksum, bad.reason), since: bad.since });
    else {
      inventory.set(c.f.path, entry(c.f, "new", c.checksum));
      taken.push(c);
    }
  }

  const parts: DatasetPart[] = taken.map(({ f, checksum }) => ({
    path: f.path,
    format: detectFormat(f.path),
    source: f.path,
    bytes: f.size,
    sha256: checksum,
  }));
  const ingest: IngestMeta = { scope, files: taken.map(({ f, checksum }) => ({ path: f.path, checksum, size: f.size })) };
  const sortedInventory = [...inventory.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const count = (s: InventoryStatus) => sortedInventory.filter((e) => e.status === s).length;

  for (const e of sortedInventory) if (e.status === "unstable" || e.status === "unsupported") ctx.log.warn("file left out", { path: e.path, reason: e.reason });
  const knownBad: KnownBadEntry[] = sortedInventory.filter((e) => e.status === "rejected").map((e) => ({ path: e.path, reason: e.reason!, since: e.since! }));
  for (const k of knownBad) ctx.log.warn("known-bad file left out until its content changes", { ...k });
  const bytes = parts.reduce((n, p) => n + (p.bytes ?? 0), 0);
  const empty = parts.length === 0;
  const bad = knownBad.length;
  const note = empty
    ? `no new files in ${directory}${listed.length ? ` (${describeCounts(count)})` : ""}: the dataset is empty and the run will store nothing`
    : `${parts.length} new file${parts.length === 1 ? "" : "s"}, ${bytes} bytes` +
      (bad ? `; ${bad} known-bad file${bad === 1 ? "" : "s"} left out until ${bad === 1 ? "its" : "their"} content changes` : "");
  if (empty) ctx.log.info(note, { directory });

  const dir = await stepFolder(ctx);
  const files = await writeDataset(dir, {
    step: ctx.step,
    typed: false,
    parts,
    quarantine: [],
    meta: { source: directory, ...(input.pattern ? { pattern: input.pattern } : {}), ingest, inventory: sortedInventory },
  });
  return {
    files,
    dataset: files,
    found: listed.length,
    new: parts.length,
    alreadyIngested: count("skipped"),
    knownBad,
    unstable: count("unstable"),
    unsupported: count("unsupported"),
    bytes,
    empty,
    note,
  };
}

function describeCounts(count: (s: InventoryStatus) => number): string {
  const bits = [
    [count("skipped"), "already ingested"],
    [count("rejected"), "known bad"],
    [count("unstable"), "still being written"],
    [count("unsupported"), "of an unsupported type"],
  ] as const;
  return (
    bits
      .filter(([n]) => n > 0)
      .map(([n, what]) => `${n} ${what}`)
      .join(", ") || "none matched"
  );
}

async function requireDirectory(directory: string): Promise<void> {
  let st;
  try {
    st = await stat(directory);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new SluiceError("FILE_NOT_FOUND", `directory ${directory} does not exist`, { details: { directory } });
    throw new SluiceError("IO_ERROR", `cannot read directory ${directory}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isDirectory())
    throw new SluiceError("BAD_INPUT", `${directory} is not a directory; give the folder that holds the files (and a pattern to choose among them)`);
}

/**
 * The directory's files (sorted by path), matched against `pattern` relative to the directory.
 * The walk and the match are separate so a directory name with glob characters is taken literally.
 */
async function listCandidates(directory: string, pattern: string | undefined, recursive: boolean): Promise<FileEntry[]> {
  if (pattern === undefined || pattern.trim() === "") return listFiles(directory, { recursive });
  const normalized = pattern.split(sep).join("/").replace(/^\.\//, "");
  if (normalized.startsWith("/") || normalized.split("/").includes(".."))
    throw new SluiceError("BAD_CONFIG", `pattern ${JSON.stringify(pattern)} must be relative to the directory and stay inside it`);
  const matcher = globToRegExp(normalized);
  const byPath = normalized.includes("/");
  const files = await listFiles(directory, { recursive: recursive || byPath });
  return files.filter((f) => {
    const rel = relative(directory, f.path).split(sep).join("/");
    // "*.csv" with recursive: the name decides, at any depth; "a/*.csv": the relative path does.
    return byPath ? matcher.test(rel) : recursive ? matcher.test(basename(f.path)) : matcher.test(rel);
  });
}

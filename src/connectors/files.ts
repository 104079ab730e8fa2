/**
 * Local file sources: list the files a source names, keep out files that are still being
 * written, and checksum files without reading them into memory.
 *
 * Node 20 has no `fs.promises.glob` (it arrived in Node 22), so globs are matched here with a
 * small pattern → RegExp translation over a directory walk that starts at the pattern's fixed
 * prefix, so `data/2024/*.csv` reads one directory, not the whole tree.
 */
import { createHash } from "node:crypto";
import { open, readdir, stat, type FileHandle } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SluiceError } from "../errors.js";

export interface FileEntry {
  /** Absolute path. */
  path: string;
  size: number;
  mtimeMs: number;
}

export interface ListFilesOptions {
  /** For a directory source: descend into subdirectories (default false). Globs decide by themselves. */
  recursive?: boolean;
}

/** Suffixes that download tools and writers use while a file is incomplete. */
const IN_PROGRESS_SUFFIXES = [".tmp", ".part", ".partial", ".crdownload"];

/**
 * True for names that mark a file still being written (or a hidden file): such files are never
 * picked up by a directory or glob listing, because ingesting half a file is worse than waiting.
 */
export function isInProgressName(name: string): boolean {
  if (name.startsWith(".")) return true;
  const lower = name.toLowerCase();
  return IN_PROGRESS_SUFFIXES.some((s) => lower.endsWith(s));
}

/** True when the string uses glob syntax (`*`, `?`, `[...]`). */
export function isGlob(spec: string): boolean {
  return /[*?[]/.test(spec);
}

/**
 * Translate a glob into a RegExp over `/`-separated relative paths.
 * `*` matches within one path segment, `**` across segments (`a/**\/b` also matches `a/b`),
 * `?` one character, `[abc]` / `[!abc]` a character class. Everything else is literal.
 */
export function globToRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") {
      if (pattern[i + 1] === "*") {
        const atSegmentStart = i === 0 || pattern[i - 1] === "/";
        i++;
        if (atSegmentStart && pattern[i + 1] === "/") {
          i++;
          re += "(?:[^/]*/)*"; // "**/" : zero or more whole directories
        } else {
          re += ".*";
        }
      } else {
        re += "[^/]*";
      }
    } else if (c === "?") {
      re += "[^/]";
    } else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end === -1) {
        re += "\\[";
      } else {
        let body = pattern.slice(i + 1, end);
        const negate = body.startsWith("!") || body.startsWith("^");
        if (negate) body = body.slice(1);
        re += `[${negate ? "^" : ""}${body.replace(/[\\\]]/g, "\\$&")}]`;
        i = end;
      }
    } else {
      re += c.replace(/[.+^${}()|\\]/g, "\\$&");
    }
  }
  return new RegExp(`^${re}$`);
}

/**
 * List the files a source string names: one file, a directory (its files, optionally
 * recursively) or a glob. Results are sorted by path so runs are reproducible.
 *
 * A file named explicitly is returned even if its name looks in-progress: the user asked for it.
 * Directory and glob listings skip in-progress and hidden names, and hidden directories.
 */
export async function listFiles(spec: string, opts: ListFilesOptions = {}): Promise<FileEntry[]> {
  if (spec.trim() === "") throw new SluiceError("BAD_CONFIG", "The file source is empty; give a file, a directory or a glob.");
  const out = isGlob(spec) ? await listGlob(spec) : await listPath(spec, opts.recursive ?? false);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function listPath(spec: string, recursive: boolean): Promise<FileEntry[]> {
  const path = resolve(spec);
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw fsError(err, path);
  }
  if (st.isFile()) return [{ path, size: st.size, mtimeMs: st.mtimeMs }];
  if (!st.isDirectory()) throw new SluiceError("BAD_INPUT", `Source ${path} is neither a regular file nor a directory.`);
  const out: FileEntry[] = [];
  await walk(path, recursive, () => true, path, out);
  return out;
}

async function listGlob(spec: string): Promise<FileEntry[]> {
  const normalized = spec.split(sep).join("/");
  const segments = normalized.split("/");
  const firstGlob = segments.findIndex(isGlob);
  // The fixed prefix before the first glob segment is where the walk starts.
  const baseSegments = segments.slice(0, firstGlob);
  const base = resolve(baseSegments.length === 0 ? "." : baseSegments.join("/") || "/");
  const rest = segments.slice(firstGlob).join("/");
  const matcher = globToRegExp(rest);
  const recursive = rest.includes("**") || rest.includes("/");
  try {
    const st = await stat(base);
    if (!st.isDirectory()) return [];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return []; // a glob that matches nothing
    throw fsError(err, base);
  }
  const out: FileEntry[] = [];
  await walk(base, recursive, (rel) => matcher.test(rel), base, out);
  return out;
}

async function walk(dir: string, recursive: boolean, accept: (rel: string) => boolean, root: string, out: FileEntry[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw fsError(err, dir);
  }
  for (const e of entries) {
    if (isInProgressName(e.name)) continue;
    const full = join(dir, e.name);
    let isFile = e.isFile();
    let isDir = e.isDirectory();
    if (e.isSymbolicLink()) {
      // Follow links to files; never descend through linked directories (cycles).
      try {
        const st = await stat(full);
        isFile = st.isFile();
        isDir = false;
      } catch {
        continue; // dangling link
      }
    }
    if (isDir) {
      if (recursive) await walk(full, recursive, accept, root, out);
      continue;
    }
    if (!isFile) continue;
    const rel = relative(root, full).split(sep).join("/");
    if (!accept(rel)) continue;
    try {
      const st = await stat(full);
      out.push({ path: full, size: st.size, mtimeMs: st.mtimeMs });
    } catch (err) {
      // Deleted between readdir and stat (moved away by its writer): not a file to ingest.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw fsError(err, full);
    }
  }
}

export interface StableOptions {
  /** Time between two stats of the same file (default 1000 ms). */
  intervalMs?: number;
  /** Number of stats taken per file; all must agree (default 2, minimum 2). */
  checks?: number;
  /** A file modified less than this long before the last check is still considered in use (default 1000 ms). */
  minAgeMs?: number;
  signal?: AbortSignal;
}

export type UnstableReason = "changed" | "too_recent" | "missing";

export interface StableResult {
  /** Files safe to ingest, with their size and mtime from the last check. */
  stable: FileEntry[];
  unstable: { path: string; reason: UnstableReason }[];
}

/**
 * Keep only files that have stopped changing.
 *
 * A writer that streams into a file under its final name (scp, a slow export) gives no signal
 * when it is done; the only portable test is to look twice and see nothing move. A file whose
 * mtime is very recent is also held back, because a stat pair can fall between two writes.
 */
export async function waitForStable(files: readonly FileEntry[], opts: StableOptions = {}): Promise<StableResult> {
  const intervalMs = opts.intervalMs ?? 1000;
  const checks = Math.max(2, opts.checks ?? 2);
  const minAgeMs = opts.minAgeMs ?? 1000;
  const snapshots: (FileEntry | undefined)[][] = [];
  for (let i = 0; i < checks; i++) {
    if (i > 0) await sleep(intervalMs, undefined, opts.signal ? { signal: opts.signal } : undefined);
    snapshots.push(await Promise.all(files.map((f) => statOrUndefined(f.path))));
  }
  const now = Date.now();
  const result: StableResult = { stable: [], unstable: [] };
  files.forEach((f, idx) => {
    const seen = snapshots.map((s) => s[idx]);
    const last = seen[seen.length - 1];
    if (seen.some((s) => s === undefined) || last === undefined) {
      result.unstable.push({ path: f.path, reason: "missing" });
    } else if (seen.some((s) => s!.size !== last.size || s!.mtimeMs !== last.mtimeMs)) {
      result.unstable.push({ path: f.path, reason: "changed" });
    } else if (now - last.mtimeMs < minAgeMs) {
      result.unstable.push({ path: f.path, reason: "too_recent" });
    } else {
      result.stable.push(last);
    }
  });
  return result;
}

/** A file after `settleDuring`: its entry when it held still, or why not. */
export type Settled =
  | { entry: FileEntry }
  | {
      reason: UnstableReason;
      /** It passed the stability test but moved before the work on it was done. */
      during: boolean;
      /** It is still there. */
      exists: boolean;
    };

/**
 * The stability test run beside `work` (copying or checksumming the files) instead of before it,
 * so its interval is not a fixed wait of every run: a file is settled when the test's stats agree
 * with its listing and nothing moved by the end of `work`, so what `work` read is the whole file.
 */
export async function settleDuring<T>(files: readonly FileEntry[], opts: StableOptions, work: () => Promise<T>): Promise<{ result: T; settled: Settled[] }> {
  const settling = waitForStable(files, opts);
  settling.catch(() => undefined); // awaited below; `work` failing first must not leave it unhandled
  const result = await work();
  const { stable, unstable } = await settling;
  const last = new Map(stable.map((f) => [f.path, f]));
  const why = new Map(unstable.map((u) => [u.path, u.reason]));
  const after = await Promise.all(files.map((f) => statOrUndefined(f.path)));
  const settled = files.map((f, i): Settled => {
    const l = last.get(f.path);
    const now = after[i];
    if (!l) return { reason: why.get(f.path) ?? "changed", during: false, exists: now !== undefined };
    if (!now || now.size !== l.size || now.mtimeMs !== l.mtimeMs || l.size !== f.size || l.mtimeMs !== f.mtimeMs)
      return { reason: now ? "changed" : "missing", during: true, exists: now !== undefined };
    return { entry: l };
  });
  return { result, settled };
}

async function statOrUndefined(path: string): Promise<FileEntry | undefined> {
  try {
    const st = await stat(path);
    return st.isFile() ? { path, size: st.size, mtimeMs: st.mtimeMs } : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fsError(err, path);
  }
}

/** Bytes per read of sha256File. */
const HASH_READ_BYTES = 1 << 20;

/**
 * SHA-256 of a file as lowercase hex, read through one reused buffer so a multi-gigabyte file
 * costs 1 MB. (A read stream hands out a new 64 KB buffer per chunk, and the garbage collector
 * let 35–70 MB of them pile up while the collection step checksummed a 100 MB file.)
 */
export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  let file: FileHandle | undefined;
  try {
    file = await open(path, "r");
    const buf = Buffer.allocUnsafe(HASH_READ_BYTES);
    for (;;) {
      signal?.throwIfAborted();
      const { bytesRead } = await file.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } catch (err) {
    if (signal?.aborted && err === signal.reason) throw err;
    throw fsError(err, isAbsolute(path) ? path : resolve(path));
  } finally {
    await file?.close();
  }
  return hash.digest("hex");
}

function fsError(err: unknown, path: string): SluiceError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new SluiceError("FILE_NOT_FOUND", `Source path ${path} does not exist.`, { cause: err, details: { path } });
  if (code === "EACCES" || code === "EPERM")
    return new SluiceError("BAD_CONFIG", `Source path ${path} is not readable by this process (permission denied).`, { cause: err, details: { path } });
  if (code === "EISDIR") return new SluiceError("BAD_INPUT", `Source path ${path} is a directory, not a file.`, { cause: err, details: { path } });
  return new SluiceError("IO_ERROR", `Reading source path ${path} failed: ${(err as Error).message}.`, { cause: err, details: { path } });
}

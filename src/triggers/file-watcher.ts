/**
 * The file-arrival watcher: poll a directory and, when new files have finished arriving, emit one
 * event (default `bulk_files_available`) naming them, which starts every workflow triggered by it.
 *
 * Discovery and the stability test are the file connector's (listFiles, waitForStable,
 * sha256File): hidden and in-progress names (`.part`, `.tmp`, …) are never seen, and a file is
 * announced only when its size and mtime have not moved for `stableMs` (judged by its mtime's
 * age, or by having looked the same across scans that long, whichever comes first: the latter
 * copes with a file server whose clock is ahead) and a final double stat agrees.
 *
 * Content is announced once: a ledger in the store (scope `watch:<absolute dir>`, keyed by the
 * SHA-256 of the content) remembers what was announced, so neither a restart nor a copy of the
 * same file under another name announces it again, while new content under an old name does.
 * The ledger is written after the event: a crash in between announces the files again, which the
 * bulk workflow's own ledger makes harmless (at least once, never lost).
 */
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { QUIET_LOG } from "../actions/types.js";
import { SluiceError, toErrorInfo } from "../errors.js";
import { listFiles, sha256File, waitForStable, type FileEntry } from "../connectors/files.js";
import { emitEvent } from "../control/events.js";
import type { EventStore, IngestedFile, LedgerStore, RegistryStore, RunStore } from "../store/types.js";
import type { SchedulerLog } from "./scheduler.js";

export interface FileWatcherOptions {
  store: LedgerStore & RunStore & RegistryStore & EventStore;
  /** The directory to watch, as given (also the `directory` of the event, so it matches the bulk workflow's param). */
  dir: string;
  /** A glob relative to the directory (default `*`: the files directly in it). */
  pattern?: string;
  /** The event emitted (default `bulk_files_available`). */
  event?: string;
  /** Time between scans (default 5 s). */
  intervalMs?: number;
  /** How long a file must stay unchanged before it is announced (default 2 s). */
  stableMs?: number;
  /** Scan only while this is true (the scheduler's leadership), so a fleet announces once. */
  isLeader?: () => boolean;
  log?: SchedulerLog;
  now?: () => number;
  /** Run a timer (default true); false for tests, which call scan() themselves. */
  autoStart?: boolean;
}

export interface FileWatcher {
  stop(): Promise<void>;
  /** One pass: the number of new files announced. */
  scan(): Promise<number>;
}

export const DEFAULT_WATCH_EVENT = "bulk_files_available";

/** What the watcher knows of a path between scans. */
interface Seen {
  size: number;
  mtimeMs: number;
  /** When it was first seen with this size and mtime (watcher clock). */
  since: number;
  /** Set once the content was hashed and announced (or found announced before). */
  checksum?: string;
}

export function watchScope(dir: string): string {
  return `watch:${resolve(dir)}`;
}

export function startFileWatcher(opts: FileWatcherOptions): FileWatcher {
  const { store, dir } = opts;
  const root = resolve(dir);
  const pattern = opts.pattern ?? "*";
  const eventName = opts.event ?? DEFAULT_WATCH_EVENT;
  const intervalMs = opts.intervalMs ?? 5000;
  const stableMs = opts.stableMs ?? 2000;
  const isLeader = opts.isLeader ?? (() => true);
  const clock = opts.now ?? Date.now;
  const log = opts.log ?? QUIET_LOG;
  const scope = watchScope(dir);

  const seen = new Map<string, Seen>();
  let stopped = false;
  let missingLogged = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();

  async function list(): Promise<FileEntry[]> {
    try {
      const files = await listFiles(join(root, pattern));
      missingLogged = false;
      return files;
    } catch (err) {
      if (err instanceof SluiceError && err.code === "FILE_NOT_FOUND") {
        if (!missingLogged) log.warn("file watcher: nothing to watch yet", { directory: dir, pattern });
        missingLogged = true;
        return [];
      }
      throw err;
    }
  }

  async function pass(): Promise<number> {
    if (!isLeader()) return 0;
    const now = clock();
    const listed = await list();

    // Forget files that went away; note the first time each (size, mtime) was seen.
    const present = new Set(listed.map((f) => f.path));
    for (const p of seen.keys()) if (!present.has(p)) seen.delete(p);
    const candidates: FileEntry[] = [];
    for (const f of listed) {
      const s = seen.get(f.path);
      if (!s || s.size !== f.size || s.mtimeMs !== f.mtimeMs) {
        seen.set(f.path, { size: f.size, mtimeMs: f.mtimeMs, since: now });
      } else if (s.checksum !== undefined) {
        continue; // unchanged since it was announced (or found announced)
      }
      const s2 = seen.get(f.path)!;
      if (now - f.mtimeMs >= stableMs || now - s2.since >= stableMs) candidates.push(f);
    }
    if (candidates.length === 0) return 0;

    // A last double stat, the connector's test that nothing moves. Its age test is off (-Infinity):
    // the age was judged above, by the watcher's clock and across scans, which also copes with an
    // mtime in the future (a file server whose clock is ahead).
    const { stable } = await waitForStable(candidates, { intervalMs: Math.min(100, stableMs), checks: 2, minAgeMs: Number.NEGATIVE_INFINITY });
    const hashed: IngestedFile[] = [];
    for (const f of stable) {
      if (stopped) return 0;
      let checksum: string;
      try {
        checksum = await sha256File(f.path);
      } catch (err) {
        log.warn("file watcher: cannot read a file; will retry", { path: f.path, error: toErrorInfo(err).message });
        continue;
      }
      const after = await stat(f.path).catch(() => undefined);
      if (!after || after.size !== f.size || after.mtimeMs !== f.mtimeMs) {
        seen.delete(f.path); // changed while read: not complete after all
        continue;
      }
      hashed.push({ path: f.path, size: f.size, checksum });
    }
    if (hashed.length === 0) return 0;

    const known = await store.ingestedChecksums(scope, [...new Set(hashed.map((h) => h.checksum))]);
    const fresh: IngestedFile[] = [];
    const taken = new Set<string>();
    for (const h of hashed) {
      if (known.has(h.checksum) || taken.has(h.checksum)) continue; // same content: announced already
      taken.add(h.checksum);
      fresh.push(h);
    }
    const remember = () => {
      for (const h of hashed) {
        const s = seen.get(h.path);
        if (s && s.size === h.size) s.checksum = h.checksum;
      }
    };
    if (fresh.length === 0) {
      remember();
      return 0;
    }

    const r = await emitEvent(store, {
      name: eventName,
      source: "file-watcher",
      data: { directory: dir, files: fresh.map((f) => ({ path: f.path, size: f.size, checksum: f.checksum })), count: fresh.length },
    });
    await store.recordIngested(scope, fresh, r.event.id);
    remember();
    log.info("file watcher: new files", { directory: dir, event: eventName, eventId: r.event.id, files: fresh.length, runs: r.runs.map((x) => x.id) });
    for (const x of r.refused) log.warn("file watcher: a triggered workflow did not start", { ...x, eventId: r.event.id });
    return fresh.length;
  }

  function scan(): Promise<number> {
    const p = running.then(() => (stopped ? 0 : pass()));
    running = p.catch((err) => log.error("file watcher: scan failed", { directory: dir, error: toErrorInfo(err).message }));
    return p;
  }

  function loop(): void {
    timer = undefined;
    void scan()
      .catch(() => undefined)
      .finally(() => {
        if (!stopped) {
          timer = setTimeout(loop, intervalMs);
          timer.unref();
        }
      });
  }

  if (opts.autoStart ?? true) {
    timer = setTimeout(loop, 0);
    timer.unref();
  }

  return {
    scan,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}

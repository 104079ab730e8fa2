import { afterEach, describe, expect, it } from "vitest";
import { appendFileSync, copyFileSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { StateStore } from "../../src/store/types.js";
import { applyWorkflowText } from "../../src/control/workflows.js";
import { builtinRegistry } from "../../src/actions/builtin.js";
import { startFileWatcher, watchScope, type FileWatcher } from "../../src/triggers/file-watcher.js";
import { scratch } from "../helpers.js";

const dirs = scratch();
const EVENT = "bulk_files_available";

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

function env() {
  const root = dirs("sluice-watch-");
  const store = openSqliteStore(join(root, "sluice.db"));
  const dir = dirs("sluice-inbox-");
  let offset = 0;
  const clock = { advance: (ms: number) => (offset += ms), now: () => Date.now() + offset };
  const watchers: FileWatcher[] = [];
  cleanup.push(async () => {
    for (const w of watchers) await w.stop();
    await store.close();
  });
  const watcher = (extra: { isLeader?: () => boolean; pattern?: string } = {}) => {
    const w = startFileWatcher({ store, dir, stableMs: 1000, now: clock.now, autoStart: false, ...extra });
    watchers.push(w);
    return w;
  };
  return { store, dir, clock, watcher };
}

const events = (store: StateStore) => store.listEvents({ name: EVENT });

describe("the file-arrival watcher", () => {
  it("announces a file once it is stable, and the same content only once", async () => {
    const { store, dir, clock, watcher } = env();
    const w = watcher();
    expect(await w.scan()).toBe(0); // empty directory

    writeFileSync(join(dir, "a.csv"), "id,v\n1,2\n");
    writeFileSync(join(dir, "b.csv.part"), "id,v\n"); // still downloading: never seen
    expect(await w.scan()).toBe(0); // just written: not stable yet
    expect(await events(store)).toEqual([]);

    clock.advance(1500);
    expect(await w.scan()).toBe(1);
    const [e] = await events(store);
    expect(e).toMatchObject({ source: "file-watcher", data: { directory: dir, count: 1 } });
    const files = (e!.data as { files: { path: string; size: number; checksum: string }[] }).files;
    expect(files).toEqual([{ path: join(dir, "a.csv"), size: 9, checksum: expect.stringMatching(/^[0-9a-f]{64}$/) }]);

    expect(await w.scan()).toBe(0); // nothing new
    // A copy of the same content under another name is not new; new content is.
    copyFileSync(join(dir, "a.csv"), join(dir, "a-copy.csv"));
    writeFileSync(join(dir, "c.csv"), "id,v\n3,4\n");
    writeFileSync(join(dir, "d.csv"), "id,v\n5,6\n");
    clock.advance(1500);
    expect(await w.scan()).toBe(2);
    const all = await events(store);
    expect(all).toHaveLength(2);
    expect((all[0]!.data as { files: { path: string }[] }).files.map((f) => f.path)).toEqual([join(dir, "c.csv"), join(dir, "d.csv")]);
    expect(await store.ingestedChecksums(watchScope(dir), [files[0]!.checksum])).toEqual(new Set([files[0]!.checksum]));

    // A restarted watcher (no memory) consults the ledger: nothing announced again.
    expect(await watcher().scan()).toBe(0);
    expect(await events(store)).toHaveLength(2);
  });

  it("holds back a file that keeps growing, even when its mtime says it is old or in the future", async () => {
    const { store, dir, clock, watcher } = env();
    const w = watcher();
    const file = join(dir, "big.csv");
    const future = (Date.now() + 3_600_000) / 1000; // a file server with a clock an hour ahead
    writeFileSync(file, "id,v\n");
    utimesSync(file, future, future);
    expect(await w.scan()).toBe(0);
    clock.advance(600);
    appendFileSync(file, "1,2\n");
    utimesSync(file, future + 1, future + 1);
    expect(await w.scan()).toBe(0);
    clock.advance(600); // 1.2 s since first seen, but only 0.6 s unchanged
    expect(await w.scan()).toBe(0);
    clock.advance(600); // unchanged for 1.2 s
    expect(await w.scan()).toBe(1);
    const [e] = await events(store);
    expect((e!.data as { files: { size: number }[] }).files[0]!.size).toBe(9);
    // New content under the same name is announced again.
    appendFileSync(file, "3,4\n");
    utimesSync(file, future + 2, future + 2);
    clock.advance(5000);
    expect(await w.scan()).toBe(0); // first seen changed
    clock.advance(1500);
    expect(await w.scan()).toBe(1);
  });

  it("scans only as the leader, and watches only its pattern", async () => {
    const { store, dir, clock, watcher } = env();
    let leader = false;
    const w = watcher({ isLeader: () => leader, pattern: "*.csv" });
    writeFileSync(join(dir, "a.csv"), "x\n");
    writeFileSync(join(dir, "notes.txt"), "y\n");
    clock.advance(5000);
    expect(await w.scan()).toBe(0);
    expect(await events(store)).toEqual([]);
    leader = true;
    expect(await w.scan()).toBe(1);
    expect((await events(store))[0]!.data).toMatchObject({ count: 1, files: [{ path: join(dir, "a.csv") }] });
  });

  it("a missing directory is not an error: it is watched until it appears", async () => {
    const { store, dir, clock } = env();
    const w = startFileWatcher({ store, dir: join(dir, "later"), now: clock.now, stableMs: 10, autoStart: false });
    cleanup.push(() => w.stop());
    expect(await w.scan()).toBe(0);
  });

  it("the event starts the bulk workflow on the watched directory when it is applied", async () => {
    const { store, dir, clock, watcher } = env();
    const file = "workflows/base-data-ingestion-workflow-bulk-file.yaml";
    const applied = await applyWorkflowText(store, builtinRegistry(), readFileSync(file, "utf8"), file);
    expect(applied.ok).toBe(true);
    writeFileSync(join(dir, "trades-1.csv"), "trade_id\nt1\n");
    clock.advance(5000);
    expect(await watcher().scan()).toBe(1);
    const [e] = await events(store);
    expect(e!.runIds).toHaveLength(1);
    const run = (await store.getRun(e!.runIds[0]!))!;
    expect(run.workflow).toBe("bulk-file-ingestion");
    expect(run.params.directory).toBe(dir);
    expect(run.trigger).toMatchObject({ type: "event", name: EVENT, eventId: e!.id });
  });

  it("polls on its own timer", async () => {
    const { store, dir } = env();
    writeFileSync(join(dir, "a.csv"), "x\n");
    utimesSync(join(dir, "a.csv"), Date.now() / 1000 - 60, Date.now() / 1000 - 60);
    const w = startFileWatcher({ store, dir, intervalMs: 20, stableMs: 1000 });
    cleanup.push(() => w.stop());
    for (let i = 0; i < 100 && (await events(store)).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await events(store)).toHaveLength(1);
  });
});

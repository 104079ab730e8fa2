/**
 * file-manager/discover_files_in_directory on real files: the inventory, patterns, files still
 * being written, the ingested-files ledger (a test ledger and the real SQLite store through the
 * engine) and an empty directory.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";
import { discoverFilesInDirectory, type InventoryEntry } from "../../src/actions/batch/discover.js";
import { processFilesInParallel } from "../../src/actions/batch/parallel.js";
import { readDataset, type Dataset, type IngestMeta } from "../../src/actions/batch/dataset.js";
import { SEED_SIGNATURES } from "../../src/actions/seed-catalogue.js";
import { defineAction, type ActionContext, type ActionDefinition, type FileLedger, type KnownBadFile } from "../../src/actions/types.js";
import { runDetail } from "../../src/engine/index.js";
import { writeTradesCsv, writeTradesFile } from "../../src/samples/trades.js";
import { actionContext, runWorkflow, scratch, testEnv, workflow, type TestEnv } from "../helpers.js";

const fresh = scratch();

/** A ledger kept in memory, as a FileLedger implementation. */
function memoryLedger(): FileLedger & { scopes: Map<string, Set<string>>; bad: Map<string, Map<string, KnownBadFile>>; asked: string[] } {
  const scopes = new Map<string, Set<string>>();
  const bad = new Map<string, Map<string, KnownBadFile>>();
  const asked: string[] = [];
  return {
    scopes,
    bad,
    asked,
    async seen(scope, checksums) {
      asked.push(scope);
      const s = scopes.get(scope) ?? new Set();
      return new Set(checksums.filter((c) => s.has(c)));
    },
    async record(scope, files) {
      const s = scopes.get(scope) ?? new Set<string>();
      for (const f of files) (s.add(f.checksum), bad.get(scope)?.delete(f.checksum));
      scopes.set(scope, s);
    },
    async rejected(scope, checksums) {
      const b = bad.get(scope) ?? new Map<string, KnownBadFile>();
      return new Map(checksums.filter((c) => b.has(c)).map((c) => [c, b.get(c)!]));
    },
    async reject(scope, files) {
      const b = bad.get(scope) ?? new Map<string, KnownBadFile>();
      for (const f of files)
        if (!scopes.get(scope)?.has(f.checksum) && !b.has(f.checksum))
          b.set(f.checksum, { checksum: f.checksum, path: f.path, reason: f.reason, since: new Date().toISOString() });
      bad.set(scope, b);
    },
  };
}

function context(over: Partial<ActionContext> & { artifactsDir: string }): ActionContext {
  return actionContext({ workflow: "bulk-test", step: "file-discovery", ledger: memoryLedger(), ...over });
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const sha = (path: string) => sha256(readFileSync(path));

describe("discover_files_in_directory", () => {
  let data: string;
  beforeAll(async () => {
    data = fresh("sluice-disc-");
    await writeTradesCsv(join(data, "a.csv"), { rows: 200, seed: 1 });
    await writeTradesFile(join(data, "b.ndjson"), { rows: 50, seed: 2, idPrefix: "B-" });
    await writeTradesFile(join(data, "c.json"), { rows: 30, seed: 3, idPrefix: "C-" });
    writeFileSync(join(data, "notes.txt"), "not data\n");
    writeFileSync(join(data, ".hidden.csv"), "a\n1\n");
    writeFileSync(join(data, "d.csv.part"), "a\n1\n");
    mkdirSync(join(data, "sub"));
    await writeTradesCsv(join(data, "sub", "e.csv"), { rows: 20, seed: 5, idPrefix: "E-" });
  });

  it("inventories every supported file with size, checksum, mtime and status, and writes a manifest of the originals", async () => {
    const art = fresh("sluice-disc-art-");
    const progress: unknown[] = [];
    const out = await discoverFilesInDirectory({ directory: data }, context({ artifactsDir: art, progress: (p) => progress.push(p) }));
    expect(out).toMatchObject({ found: 4, new: 3, alreadyIngested: 0, unstable: 0, unsupported: 1, empty: false });
    const ds = await readDataset(out.files as string);
    expect(out.dataset).toBe(out.files);
    expect(ds.typed).toBe(false);
    expect(ds.parts.map((p) => [p.path, p.format, p.source])).toEqual([
      [join(data, "a.csv"), "csv", join(data, "a.csv")],
      [join(data, "b.ndjson"), "ndjson", join(data, "b.ndjson")],
      [join(data, "c.json"), "json", join(data, "c.json")],
    ]);
    for (const p of ds.parts) {
      expect(p.sha256).toBe(sha(p.path));
      expect(p.bytes).toBe(statSync(p.path).size);
    }
    expect(out.bytes).toBe(ds.parts.reduce((n, p) => n + p.bytes!, 0));
    // Nothing was copied: the step folder holds only the manifest.
    expect(readdirSync(dirname(out.files as string))).toEqual(["dataset.json"]);

    const inv = ds.meta!.inventory as InventoryEntry[];
    expect(inv.map((e) => [e.path, e.status])).toEqual([
      [join(data, "a.csv"), "new"],
      [join(data, "b.ndjson"), "new"],
      [join(data, "c.json"), "new"],
      [join(data, "notes.txt"), "unsupported"],
    ]);
    const a = inv[0]!;
    const st = statSync(join(data, "a.csv"));
    expect(a).toEqual({
      path: join(data, "a.csv"),
      size: st.size,
      checksum: sha(join(data, "a.csv")),
      mtime: new Date(st.mtimeMs).toISOString(),
      status: "new",
    });
    const ingest = ds.meta!.ingest as IngestMeta;
    expect(ingest.scope).toBe(`bulk-test:${data}`);
    expect(ingest.files).toEqual(ds.parts.map((p) => ({ path: p.path, checksum: p.sha256, size: p.bytes })));
    expect(progress.length).toBeGreaterThan(0);
  });

  it("matches a pattern relative to the directory, recursively when asked", async () => {
    const art = fresh("sluice-disc-art-");
    const top = await discoverFilesInDirectory({ directory: data, pattern: "*.csv" }, context({ artifactsDir: art }));
    expect((await readDataset(top.files as string)).parts.map((p) => p.path)).toEqual([join(data, "a.csv")]);
    const deep = await discoverFilesInDirectory({ directory: data, pattern: "*.csv", recursive: true }, context({ artifactsDir: art }));
    expect((await readDataset(deep.files as string)).parts.map((p) => p.path)).toEqual([join(data, "a.csv"), join(data, "sub", "e.csv")]);
    const sub = await discoverFilesInDirectory({ directory: data, pattern: "sub/*.csv" }, context({ artifactsDir: art }));
    expect((await readDataset(sub.files as string)).parts.map((p) => p.path)).toEqual([join(data, "sub", "e.csv")]);
    const all = await discoverFilesInDirectory({ directory: data, recursive: true }, context({ artifactsDir: art }));
    expect(all).toMatchObject({ found: 5, new: 4 });
  });

  it("leaves out a file that is still being written", async () => {
    const dir = fresh("sluice-disc-growing-");
    await writeTradesCsv(join(dir, "done.csv"), { rows: 50 });
    const growing = join(dir, "growing.csv");
    writeFileSync(growing, "trade_id,symbol\n");
    let n = 0;
    const timer = setInterval(() => appendFileSync(growing, `T-${n++},AAPL\n`), 20);
    try {
      const art = fresh("sluice-disc-art-");
      const out = await discoverFilesInDirectory({ directory: dir }, context({ artifactsDir: art }));
      expect(out).toMatchObject({ found: 2, new: 1, unstable: 1 });
      const ds = await readDataset(out.files as string);
      expect(ds.parts.map((p) => p.path)).toEqual([join(dir, "done.csv")]);
      const inv = ds.meta!.inventory as InventoryEntry[];
      expect(inv.find((e) => e.path === growing)).toMatchObject({ status: "unstable", checksum: null });
      expect((ds.meta!.ingest as IngestMeta).files.map((f) => f.path)).toEqual([join(dir, "done.csv")]);
    } finally {
      clearInterval(timer);
    }
  });

  it("skips files the ledger has seen in this workflow's scope, and reports them", async () => {
    const ledger = memoryLedger();
    const art = fresh("sluice-disc-art-");
    const first = await discoverFilesInDirectory({ directory: data }, context({ artifactsDir: art, ledger }));
    const ds1 = await readDataset(first.files as string);
    const ingest = ds1.meta!.ingest as IngestMeta;
    // Record only a.csv and b.ndjson, as a storage step would after committing their rows.
    await ledger.record(ingest.scope, ingest.files.slice(0, 2));
    expect(ledger.asked).toEqual([`bulk-test:${data}`]);

    const second = await discoverFilesInDirectory({ directory: data }, context({ artifactsDir: art, ledger }));
    expect(second).toMatchObject({ found: 4, new: 1, alreadyIngested: 2 });
    const ds2 = await readDataset(second.files as string);
    expect(ds2.parts.map((p) => p.path)).toEqual([join(data, "c.json")]);
    const inv = ds2.meta!.inventory as InventoryEntry[];
    expect(inv.filter((e) => e.status === "skipped").map((e) => e.path)).toEqual([join(data, "a.csv"), join(data, "b.ndjson")]);
    expect(inv.find((e) => e.status === "skipped")!.checksum).toBe(sha(join(data, "a.csv")));

    // Another workflow has its own scope; skipIngested: false takes everything.
    expect(await discoverFilesInDirectory({ directory: data }, context({ artifactsDir: art, ledger, workflow: "other" }))).toMatchObject({ new: 3 });
    expect(await discoverFilesInDirectory({ directory: data, skipIngested: false }, context({ artifactsDir: art, ledger }))).toMatchObject({
      new: 3,
      alreadyIngested: 0,
    });
  });

  it("leaves out a known-bad file with its reason until its content changes; skipIngested: false takes it", async () => {
    const dir = fresh("sluice-disc-bad-");
    await writeTradesCsv(join(dir, "a.csv"), { rows: 30, seed: 31, badShare: 0 });
    writeFileSync(join(dir, "x.parquet"), "PAR1 not really parquet");
    const ledger = memoryLedger();
    const art = fresh("sluice-disc-art-");
    const scope = `bulk-test:${dir}`;
    const reason = `${join(dir, "x.parquet")}: not a readable Parquet file: parquet file invalid`;
    await ledger.reject(scope, [{ checksum: sha(join(dir, "x.parquet")), path: join(dir, "x.parquet"), size: 23, reason }]);
    const since = ledger.bad.get(scope)!.get(sha(join(dir, "x.parquet")))!.since;

    const out = await discoverFilesInDirectory({ directory: dir }, context({ artifactsDir: art, ledger }));
    expect(out).toMatchObject({ found: 2, new: 1, alreadyIngested: 0, knownBad: [{ path: join(dir, "x.parquet"), reason, since }] });
    expect(out.note).toBe(`1 new file, ${statSync(join(dir, "a.csv")).size} bytes; 1 known-bad file left out until its content changes`);
    const ds = await readDataset(out.files as string);
    expect(ds.parts.map((p) => p.path)).toEqual([join(dir, "a.csv")]);
    expect((ds.meta!.ingest as IngestMeta).files.map((f) => f.path)).toEqual([join(dir, "a.csv")]);
    expect((ds.meta!.inventory as InventoryEntry[]).find((e) => e.path.endsWith("x.parquet"))).toEqual({
      path: join(dir, "x.parquet"),
      size: 23,
      checksum: sha(join(dir, "x.parquet")),
      mtime: expect.any(String),
      status: "rejected",
      reason,
      since,
    });

    // Everything ingested or known bad: an empty dataset, and the note says why.
    await ledger.record(scope, (ds.meta!.ingest as IngestMeta).files);
    const none = await discoverFilesInDirectory({ directory: dir }, context({ artifactsDir: art, ledger }));
    expect(none).toMatchObject({ new: 0, alreadyIngested: 1, empty: true, knownBad: [{ path: join(dir, "x.parquet") }] });
    expect(none.note).toBe(`no new files in ${dir} (1 already ingested, 1 known bad): the dataset is empty and the run will store nothing`);

    // skipIngested: false takes every file again, the known-bad one included.
    expect(await discoverFilesInDirectory({ directory: dir, skipIngested: false }, context({ artifactsDir: art, ledger }))).toMatchObject({
      new: 2,
      knownBad: [],
    });

    // New content under the same name is a new file.
    writeFileSync(join(dir, "x.parquet"), "PAR1 different bytes now");
    const changed = await discoverFilesInDirectory({ directory: dir }, context({ artifactsDir: art, ledger }));
    expect(changed).toMatchObject({ new: 1, alreadyIngested: 1, knownBad: [] });
    expect((await readDataset(changed.files as string)).parts.map((p) => p.path)).toEqual([join(dir, "x.parquet")]);
  });

  it("an empty directory gives an empty dataset, not an error; a missing one is an error", async () => {
    const empty = fresh("sluice-disc-empty-");
    const art = fresh("sluice-disc-art-");
    const out = await discoverFilesInDirectory({ directory: empty }, context({ artifactsDir: art }));
    expect(out).toMatchObject({ found: 0, new: 0, alreadyIngested: 0, unstable: 0, bytes: 0, empty: true });
    expect(String(out.note)).toMatch(/no new files/);
    const ds = await readDataset(out.files as string);
    expect(ds.parts).toEqual([]);
    expect(ds.meta!.ingest).toEqual({ scope: `bulk-test:${empty}`, files: [] });
    await expect(discoverFilesInDirectory({ directory: join(empty, "nope") }, context({ artifactsDir: art }))).rejects.toMatchObject({
      code: "FILE_NOT_FOUND",
    });
  });
});

describe("discovery through the engine and the SQLite ledger", () => {
  let env: TestEnv;
  beforeAll(() => {
    const sig = (owner: string, action: string) => SEED_SIGNATURES.find((s) => s.owner === owner && s.action === action)!;
    const impl = (owner: string, action: string, run: ActionDefinition["run"]): ActionDefinition => {
      const s = sig(owner, action);
      return { kind: s.kind, owner, action, description: s.description, input: s.input, run };
    };
    env = testEnv([
      impl("file-manager", "discover_files_in_directory", discoverFilesInDirectory),
      impl("data-collector", "process_files_in_parallel", processFilesInParallel),
      // Stands in for the storage step: records the dataset's files once "stored".
      defineAction({
        kind: "agent",
        owner: "test",
        action: "record_ingested",
        description: "record meta.ingest in the ledger",
        input: z.object({ dataset: z.string() }).strict(),
        run: async ({ dataset }, ctx) => {
          const ds: Dataset = await readDataset(dataset);
          const ingest = ds.meta!.ingest as IngestMeta;
          await ctx.ledger.record(ingest.scope, ingest.files);
          return { recorded: ingest.files.length, rows: ds.rows ?? 0 };
        },
      }),
      // A file that vanishes between discovery and processing (moved away by another job).
      defineAction({
        kind: "agent",
        owner: "test",
        action: "remove_file",
        description: "remove a file",
        input: z.object({ path: z.string() }).strict(),
        run: async ({ path }) => (rmSync(path, { force: true }), { removed: path }),
      }),
    ]);
  });
  afterAll(() => env.cleanup());

  it("a second run takes only new files, and a run with none succeeds storing nothing", async () => {
    const dir = fresh("sluice-disc-engine-");
    await writeTradesCsv(join(dir, "day1.csv"), { rows: 100, seed: 11, badShare: 0 });
    await writeTradesFile(join(dir, "day1.ndjson"), { rows: 40, seed: 12, badShare: 0, idPrefix: "N-" });
    const wf = workflow(
      {
        params: { directory: { type: "string" } },
        steps: [
          {
            name: "file-discovery",
            agent: "file-manager",
            action: "discover_files_in_directory",
            with: { directory: "${{ params.directory }}", skipIngested: true },
          },
          {
            name: "parallel",
            agent: "data-collector",
            action: "process_files_in_parallel",
            dependsOn: ["file-discovery"],
            with: { files: "${{ steps.file-discovery.outputs.files }}", workers: 2, chunkSize: "4KB" },
          },
          { name: "store", agent: "test", action: "record_ingested", dependsOn: ["parallel"], with: { dataset: "${{ steps.parallel.outputs.dataset }}" } },
        ],
      },
      env.actions,
      "bulk-ledger",
    );
    const outputs = async () => {
      const r = await runWorkflow(env, wf, { params: { directory: dir } });
      expect(r.status, JSON.stringify(r.error)).toBe("succeeded");
      const d = await runDetail(env.store, r.id);
      return Object.fromEntries(d.steps.map((s) => [s.name, s.outputs!]));
    };

    const one = await outputs();
    expect(one["file-discovery"]).toMatchObject({ found: 2, new: 2, alreadyIngested: 0 });
    expect(one["parallel"]).toMatchObject({ files: 2, filesFailed: 0, rowsIn: 140 });
    expect(one["store"]).toMatchObject({ recorded: 2, rows: 140 });
    expect(await env.store.ingestedChecksums(`bulk-ledger:${dir}`, [sha(join(dir, "day1.csv"))])).toEqual(new Set([sha(join(dir, "day1.csv"))]));

    const two = await outputs();
    expect(two["file-discovery"]).toMatchObject({ found: 2, new: 0, alreadyIngested: 2, empty: true });
    expect(two["parallel"]).toMatchObject({ files: 0, units: 0, workers: 0, rowsIn: 0 });
    expect(two["store"]).toMatchObject({ recorded: 0, rows: 0 });

    await writeTradesCsv(join(dir, "day2.csv"), { rows: 60, seed: 13, badShare: 0, idPrefix: "D2-" });
    const three = await outputs();
    expect(three["file-discovery"]).toMatchObject({ found: 3, new: 1, alreadyIngested: 2 });
    expect(three["parallel"]).toMatchObject({ files: 1, rowsIn: 60 });
  });

  it("a file that vanished between discovery and processing is not remembered as bad: the next run takes it", async () => {
    const dir = fresh("sluice-disc-vanish-");
    await writeTradesCsv(join(dir, "stays.csv"), { rows: 30, seed: 14, badShare: 0 });
    await writeTradesCsv(join(dir, "moved.csv"), { rows: 20, seed: 15, badShare: 0, idPrefix: "M-" });
    const moved = join(dir, "moved.csv");
    const content = readFileSync(moved);
    const wf = workflow(
      {
        params: { directory: { type: "string" }, remove: { type: "string" } },
        steps: [
          { name: "file-discovery", agent: "file-manager", action: "discover_files_in_directory", with: { directory: "${{ params.directory }}" } },
          { name: "mover", agent: "test", action: "remove_file", dependsOn: ["file-discovery"], with: { path: "${{ params.remove }}" } },
          {
            name: "parallel",
            agent: "data-collector",
            action: "process_files_in_parallel",
            dependsOn: ["mover"],
            with: { files: "${{ steps.file-discovery.outputs.files }}", workers: 2 },
          },
          { name: "store", agent: "test", action: "record_ingested", dependsOn: ["parallel"], with: { dataset: "${{ steps.parallel.outputs.dataset }}" } },
        ],
      },
      env.actions,
      "bulk-vanish",
    );
    const outputs = async (remove: string) => {
      const r = await runWorkflow(env, wf, { params: { directory: dir, remove } });
      expect(r.status, JSON.stringify(r.error)).toBe("succeeded");
      const d = await runDetail(env.store, r.id);
      return Object.fromEntries(d.steps.map((s) => [s.name, s.outputs!]));
    };

    const one = await outputs(moved);
    expect(one["parallel"]).toMatchObject({ files: 1, filesFailed: 1, filesKnownBad: 0, rowsIn: 30 });
    expect(one["parallel"]!.failedFiles).toEqual([{ path: moved, code: "FILE_NOT_FOUND", knownBad: false, reason: `${moved} no longer exists` }]);
    expect(await env.store.rejectedFiles(`bulk-vanish:${dir}`, [sha256(content)])).toEqual([]);

    // It comes back unchanged: a new file to the next run, which reads it.
    writeFileSync(moved, content);
    const two = await outputs(join(dir, "nothing-to-move"));
    expect(two["file-discovery"]).toMatchObject({ found: 2, new: 1, alreadyIngested: 1, knownBad: [] });
    expect(two["parallel"]).toMatchObject({ files: 1, filesFailed: 0, rowsIn: 20 });
  });
});

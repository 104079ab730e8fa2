/**
 * data-collector/process_files_in_parallel on real files and real worker threads.
 *
 * The action is imported from its TypeScript source; its worker threads run the compiled
 * `dist/actions/batch/chunk-worker.js` (Node 20 cannot load `.ts` in a worker without a loader),
 * so `npm run build` must run first, as `npm test` does.
 */
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { availableParallelism } from "node:os";
import { discoverFilesInDirectory } from "../../src/actions/batch/discover.js";
import { parseByteSize, processFilesInParallel, type FailedFile } from "../../src/actions/batch/parallel.js";
import { INTERMEDIATE_CSV, readDataset, stepFolder, writeDataset, type DatasetPart, type IngestMeta } from "../../src/actions/batch/dataset.js";
import type { QuarantinedRecord } from "../../src/actions/batch/model.js";
import type { ActionContext, FileLedger, ProgressUpdate } from "../../src/actions/types.js";
import { openWriter, readCsv, readNdjson } from "../../src/formats/index.js";
import { writeTradesCsv, writeTradesFile } from "../../src/samples/trades.js";
import { convertToStandardFormat } from "../../src/actions/batch/standardize.js";
import { readTypedRows } from "../../src/actions/batch/typed-dataset.js";

/** The pool never has more threads than cores. */
const CORES = availableParallelism();
import { actionContext, scratch } from "../helpers.js";

const fresh = scratch();

const noLedger: FileLedger = { seen: async () => new Set(), record: async () => undefined, rejected: async () => new Map(), reject: async () => undefined };

/** A ledger that keeps what is rejected, for the known-bad cases. */
function rejectingLedger(): FileLedger & { rejects: { scope: string; checksum: string; path: string; size: number; reason: string }[] } {
  const rejects: { scope: string; checksum: string; path: string; size: number; reason: string }[] = [];
  return { ...noLedger, rejects, reject: async (scope, files) => void rejects.push(...files.map((f) => ({ scope, ...f }))) };
}

function ctx(artifactsDir: string, over: Partial<ActionContext> = {}): ActionContext {
  return actionContext({ workflow: "bulk-test", step: "parallel", artifactsDir, ledger: noLedger, ...over });
}

/** Discover a folder the way the bulk workflow does; returns the manifest path. */
async function discover(dir: string, art: string): Promise<string> {
  const out = await discoverFilesInDirectory({ directory: dir }, ctx(art, { step: "file-discovery" }));
  return out.files as string;
}

/** Threads of this process (Linux): each worker_threads Worker is one or more. */
function osThreads(): number {
  return Number(/^Threads:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))![1]);
}

async function readAll(path: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for await (const b of readNdjson(path)) rows.push(...b.rows);
  return rows;
}

/** The records of a part as the next step reads them: a CSV part in its own dialect, `_line` as a number. */
async function readPart(part: DatasetPart): Promise<Record<string, unknown>[]> {
  if (part.format !== "csv") return readAll(part.path);
  expect(part).toMatchObject({ intermediate: true, csv: INTERMEDIATE_CSV });
  const rows: Record<string, unknown>[] = [];
  for await (const b of readCsv(part.path, part.csv)) rows.push(...b.rows.map((r) => ({ ...r, _line: Number(r._line) })));
  return rows;
}

describe("chunk sizes", () => {
  it("parses SI and binary units and plain bytes", () => {
    expect(parseByteSize("100MB")).toBe(100_000_000);
    expect(parseByteSize("64MiB")).toBe(64 * 1024 * 1024);
    expect(parseByteSize("500KB")).toBe(500_000);
    expect(parseByteSize("1.5 GB")).toBe(1_500_000_000);
    expect(parseByteSize("4096")).toBe(4096);
    expect(parseByteSize(8192)).toBe(8192);
    expect(() => parseByteSize("lots")).toThrow(/not a size/);
    expect(() => parseByteSize("10B")).toThrow(/too small/);
  });
});

describe("process_files_in_parallel", () => {
  it("a CSV split into many chunks gives exactly the records, lines and malformed records of a single-threaded read", async () => {
    const dir = fresh("sluice-par-split-");
    const file = join(dir, "trades.csv");
    const summary = await writeTradesCsv(file, { rows: 4_000, seed: 21, badShare: 0.02 });
    const art = fresh("sluice-par-art-");
    const progress: ProgressUpdate[] = [];
    const out = await processFilesInParallel(
      { files: await discover(dir, art), workers: 4, chunkSize: "20KB" },
      ctx(art, { progress: (p) => progress.push(p) }),
    );
    expect(out.units as number).toBeGreaterThan(10);
    expect(out).toMatchObject({
      files: 1,
      filesFailed: 0,
      failedFiles: [],
      workers: Math.min(4, CORES),
      workersRequested: 4,
      rowsIn: 4_000,
      bytes: summary.bytes,
    });

    // The reference: one sequential read of the whole file.
    const want: Record<string, unknown>[] = [];
    const wantErrors: { line: number; reason: string; raw: string }[] = [];
    for await (const b of readCsv(file)) {
      b.rows.forEach((r, i) => want.push({ ...r, _line: b.lines[i] }));
      wantErrors.push(...b.errors.map((e) => ({ line: e.line, reason: e.reason, raw: e.raw })));
    }
    expect(wantErrors.length).toBeGreaterThan(0);
    // Quoted newlines exist, so lines and records differ.
    expect(want.some((r, i) => i > 0 && (r._line as number) - (want[i - 1]!._line as number) > 1)).toBe(true);

    const ds = await readDataset(out.dataset as string);
    expect(ds.parts.length).toBe(out.units);
    expect(ds.parts.every((p) => p.source === file && p.format === "csv")).toBe(true);
    const got: Record<string, unknown>[] = [];
    for (const p of ds.parts) {
      const rows = await readPart(p);
      expect(rows.length).toBe(p.rows);
      got.push(...rows);
    }
    expect(got).toEqual(want);
    expect(ds.rows).toBe(want.length);
    expect(ds.accounting).toEqual({ rowsIn: 4_000, rowsQuarantined: wantErrors.length, rowsDuplicate: 0 });

    const quarantined: QuarantinedRecord[] = [];
    for (const q of ds.quarantine) quarantined.push(...((await readAll(q)) as unknown as QuarantinedRecord[]));
    expect(quarantined).toEqual(wantErrors.map((e) => ({ source: file, line: e.line, step: "parallel", reasons: [e.reason], record: e.raw })));
    expect(out.rowsQuarantined).toBe(wantErrors.length);

    const last = progress[progress.length - 1]!;
    expect(last).toMatchObject({ rows: 4_000, bytes: summary.bytes, totalBytes: summary.bytes, files: 1, totalFiles: 1 });
  });

  it("reads mixed CSV, TSV, NDJSON, JSON and Parquet files; quarantines a malformed CSV record with its line", async () => {
    const dir = fresh("sluice-par-mixed-");
    await writeTradesCsv(join(dir, "a.csv"), { rows: 300, seed: 1, badShare: 0, idPrefix: "A-" });
    await writeTradesFile(join(dir, "b.ndjson"), { rows: 120, seed: 2, idPrefix: "B-" });
    await writeTradesFile(join(dir, "c.json"), { rows: 80, seed: 3, idPrefix: "C-" });
    const pq = await openWriter(join(dir, "d.parquet"), "parquet", { columns: ["trade_id", "quantity"] });
    await pq.write(Array.from({ length: 50 }, (_, i) => ({ trade_id: `D-${i}`, quantity: String(i + 1) })));
    await pq.close();
    // Line 4 has one field too few; line 5 starts a quoted field spanning two lines.
    writeFileSync(join(dir, "e.csv"), 'id,name,qty\n1,ann,3\n2,bob,4\n3,cy\n4,"dee\nsecond",5\n5,eve,6\n');
    writeFileSync(join(dir, "f.tsv"), "id\tname\nx\ty\n");

    const art = fresh("sluice-par-art-");
    const out = await processFilesInParallel({ files: await discover(dir, art), workers: 3, chunkSize: "8KB" }, ctx(art));
    expect(out).toMatchObject({ files: 6, filesFailed: 0, rowsIn: 300 + 120 + 80 + 50 + 5 + 1, rowsQuarantined: 1, workers: Math.min(3, CORES) });

    const ds = await readDataset(out.dataset as string);
    const bySource = new Map<string, number>();
    for (const p of ds.parts) bySource.set(p.source, (bySource.get(p.source) ?? 0) + p.rows!);
    expect(Object.fromEntries([...bySource].map(([k, v]) => [k.slice(dir.length + 1), v]))).toEqual({
      "a.csv": 300,
      "b.ndjson": 120,
      "c.json": 80,
      "d.parquet": 50,
      "e.csv": 4,
      "f.tsv": 1,
    });
    // Parts keep file order, then chunk order.
    const sources = ds.parts.map((p) => p.source);
    expect(sources).toEqual([...sources].sort());
    expect(ds.parts.filter((p) => p.source.endsWith("a.csv")).length).toBeGreaterThan(1);

    const e = await readPart(ds.parts.find((p) => p.source.endsWith("e.csv"))!);
    expect(e).toEqual([
      { id: "1", name: "ann", qty: "3", _line: 2 },
      { id: "2", name: "bob", qty: "4", _line: 3 },
      { id: "4", name: "dee\nsecond", qty: "5", _line: 5 },
      { id: "5", name: "eve", qty: "6", _line: 7 },
    ]);
    const d = await readPart(ds.parts.find((p) => p.source.endsWith("d.parquet"))!);
    expect(d[0]).toEqual({ trade_id: "D-0", quantity: "1", _line: 0 });
    expect(await readPart(ds.parts.find((p) => p.source.endsWith("f.tsv"))!)).toEqual([{ id: "x", name: "y", _line: 2 }]);
    const b = await readPart(ds.parts.find((p) => p.source.endsWith("b.ndjson"))!);
    expect(b[0]).toMatchObject({ trade_id: expect.stringMatching(/^B-/), _line: 1 });

    expect(ds.quarantine.length).toBe(1);
    const q = (await readAll(ds.quarantine[0]!)) as unknown as QuarantinedRecord[];
    expect(q).toEqual([{ source: join(dir, "e.csv"), line: 4, step: "parallel", reasons: [expect.stringMatching(/expected 3 fields/)], record: "3,cy" }]);
    expect(ds.accounting).toEqual({ rowsIn: 556, rowsQuarantined: 1, rowsDuplicate: 0 });
    expect((ds.meta!.ingest as IngestMeta).files.length).toBe(6);
  });

  it("the next step reads the parts as they were written, not with the read options the schema gives for the source files", async () => {
    const dir = fresh("sluice-par-read-");
    // A Latin-1, semicolon-separated source, and a UTF-8 NDJSON one; the schema describes the CSV.
    writeFileSync(join(dir, "a.csv"), Buffer.from('city;n;note\nMünchen;1;plain\n"Zürich, CH";2;"say ""hi"""\nKöln;3;"two\nlines"\n', "latin1"));
    writeFileSync(join(dir, "b.ndjson"), '{"city":"Göteborg","n":4,"note":"Å"}\n');
    const art = fresh("sluice-par-art-");
    const out = await processFilesInParallel({ files: await discover(dir, art), csv: { delimiter: ";", encoding: "latin1" } }, ctx(art));
    const parsed = await readDataset(out.dataset as string);
    expect(parsed.parts.map((p) => [p.format, p.intermediate])).toEqual([
      ["csv", true],
      ["ndjson", true],
    ]);
    const schema = {
      read: { delimiter: ";", encoding: "latin1" },
      columns: [
        { name: "city", type: "string" as const },
        { name: "n", type: "integer" as const },
        { name: "note", type: "string" as const },
      ],
    };
    const typed = await convertToStandardFormat({ dataset: out.dataset as string, schema }, ctx(art, { step: "standardize" }));
    expect(typed).toMatchObject({ rowsIn: 4, rowsOut: 4, rowsQuarantined: 0 });
    const ds = await readDataset(typed.dataset as string);
    const rows: unknown[] = [];
    for await (const b of readTypedRows(ds, ds.columns!, new AbortController().signal)) rows.push(...b.rows.map((r) => ({ ...r.row, line: r.line })));
    expect(rows).toEqual([
      { city: "München", n: "1", note: "plain", line: 2 },
      { city: "Zürich, CH", n: "2", note: 'say "hi"', line: 3 },
      { city: "Köln", n: "3", note: "two\nlines", line: 4 },
      { city: "Göteborg", n: "4", note: "Å", line: 1 },
    ]);
  });

  it("isolates a corrupt Parquet file and a JSON file that is not an array; the rest succeed", async () => {
    const dir = fresh("sluice-par-bad-");
    await writeTradesCsv(join(dir, "a.csv"), { rows: 200, seed: 4, badShare: 0 });
    await writeTradesFile(join(dir, "b.ndjson"), { rows: 40, seed: 5, idPrefix: "B-" });
    writeFileSync(join(dir, "broken.parquet"), "PAR1 this is not a parquet file at all");
    writeFileSync(join(dir, "object.json"), '{"not": "an array"}\n');
    const art = fresh("sluice-par-art-");
    const out = await processFilesInParallel({ files: await discover(dir, art), workers: 4, chunkSize: "4KB" }, ctx(art));
    expect(out).toMatchObject({ files: 2, filesFailed: 2, rowsIn: 240 });
    const failed = out.failedFiles as FailedFile[];
    expect(failed.map((f) => f.path)).toEqual([join(dir, "broken.parquet"), join(dir, "object.json")]);
    expect(failed[0]!.reason).toMatch(/Parquet/i);
    expect(failed[1]!.reason).toMatch(/array/i);
    expect(failed.map((f) => [f.code, f.knownBad])).toEqual([
      ["BAD_INPUT", true],
      ["BAD_INPUT", true],
    ]);

    const ds = await readDataset(out.dataset as string);
    expect(new Set(ds.parts.map((p) => p.source))).toEqual(new Set([join(dir, "a.csv"), join(dir, "b.ndjson")]));
    expect(ds.meta!.failedFiles).toEqual(failed);
    expect((ds.meta!.ingest as IngestMeta).files.map((f) => f.path)).toEqual([join(dir, "a.csv"), join(dir, "b.ndjson")]);
    // Nothing of the failed files is left in the step folder.
    const left = readdirSync(join(art, "parallel"));
    expect(left.filter((n) => n.endsWith(".ndjson") || n.endsWith(".csv")).length).toBe(ds.parts.length + ds.quarantine.length);
  });

  it("fails with TOO_MANY_FAILED_FILES when failures pass the threshold, or when every file fails", async () => {
    const dir = fresh("sluice-par-threshold-");
    await writeTradesCsv(join(dir, "a.csv"), { rows: 50, seed: 6 });
    await writeTradesCsv(join(dir, "b.csv"), { rows: 50, seed: 7 });
    writeFileSync(join(dir, "c.parquet"), "garbage");
    const art = fresh("sluice-par-art-");
    const files = await discover(dir, art);
    // 1 of 3 failed: over 0.2, within 0.5.
    const err = await processFilesInParallel({ files, workers: 2, chunkSize: "4KB", failureThreshold: 0.2 }, ctx(art)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "TOO_MANY_FAILED_FILES", retryable: false });
    expect((err as Error).message).toContain(join(dir, "c.parquet"));
    expect(await processFilesInParallel({ files, workers: 2, chunkSize: "4KB", failureThreshold: 0.5 }, ctx(art))).toMatchObject({ files: 2, filesFailed: 1 });

    const onlyBad = fresh("sluice-par-allbad-");
    writeFileSync(join(onlyBad, "x.parquet"), "garbage");
    writeFileSync(join(onlyBad, "y.json"), "42");
    await expect(processFilesInParallel({ files: await discover(onlyBad, art), workers: 2 }, ctx(art))).rejects.toMatchObject({
      code: "TOO_MANY_FAILED_FILES",
    });
  });

  it("records files with unreadable content as known bad, by the discovered checksum, with the reason", async () => {
    const dir = fresh("sluice-par-known-");
    await writeTradesCsv(join(dir, "a.csv"), { rows: 80, seed: 9, badShare: 0 });
    writeFileSync(join(dir, "broken.parquet"), "PAR1 this is not a parquet file at all");
    writeFileSync(join(dir, "bad-header.csv"), 'id,"name,qty\n1,ann,2\n');
    const art = fresh("sluice-par-art-");
    const manifest = await discover(dir, art);
    const scope = ((await readDataset(manifest)).meta!.ingest as IngestMeta).scope;
    const ledger = rejectingLedger();
    const out = await processFilesInParallel({ files: manifest, workers: 2 }, ctx(art, { ledger }));
    expect(out).toMatchObject({ files: 1, filesFailed: 2, filesKnownBad: 2, rowsIn: 80 });
    const failed = out.failedFiles as FailedFile[];
    expect(failed.map((f) => [f.path, f.code, f.knownBad])).toEqual([
      [join(dir, "bad-header.csv"), "BAD_INPUT", true],
      [join(dir, "broken.parquet"), "BAD_INPUT", true],
    ]);
    const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
    expect(ledger.rejects).toEqual(failed.map((f) => ({ scope, checksum: sha(f.path), path: f.path, size: statSync(f.path).size, reason: f.reason })));
    expect(ledger.rejects[0]!.reason).toMatch(/header/);

    // Every file failing still records them: the content is what cannot be read.
    const onlyBad = fresh("sluice-par-known-allbad-");
    writeFileSync(join(onlyBad, "y.json"), '{"not": "an array"}');
    const all = rejectingLedger();
    await expect(processFilesInParallel({ files: await discover(onlyBad, art), workers: 1 }, ctx(art, { ledger: all }))).rejects.toMatchObject({
      code: "TOO_MANY_FAILED_FILES",
    });
    expect(all.rejects.map((r) => r.path)).toEqual([join(onlyBad, "y.json")]);
  });

  it("never records a transient failure: a file removed, or replaced, between discovery and processing", async () => {
    const dir = fresh("sluice-par-transient-");
    await writeTradesCsv(join(dir, "a.csv"), { rows: 40, seed: 10, badShare: 0 });
    writeFileSync(join(dir, "gone.ndjson"), '{"id":1}\n');
    writeFileSync(join(dir, "swapped.json"), '[{"id": 1}]');
    const art = fresh("sluice-par-art-");
    const manifest = await discover(dir, art);
    rmSync(join(dir, "gone.ndjson"));
    // Same size, new (unreadable) bytes: it fails on content, but not on the content discovery checksummed.
    writeFileSync(join(dir, "swapped.json"), '{"id": "x"}');
    const ledger = rejectingLedger();
    const out = await processFilesInParallel({ files: manifest, workers: 2 }, ctx(art, { ledger }));
    const failed = out.failedFiles as FailedFile[];
    expect(failed.map((f) => [f.path, f.code, f.knownBad])).toEqual([
      [join(dir, "gone.ndjson"), "FILE_NOT_FOUND", false],
      [join(dir, "swapped.json"), "BAD_INPUT", false],
    ]);
    expect(failed[0]!.reason).toBe(`${join(dir, "gone.ndjson")} no longer exists`);
    expect(out.filesKnownBad).toBe(0);
    expect(ledger.rejects).toEqual([]);
  });

  it("an empty file set gives an empty dataset without starting workers", async () => {
    const art = fresh("sluice-par-art-");
    const files = await writeDataset(await stepFolder({ artifactsDir: art, step: "file-discovery" }), {
      step: "file-discovery",
      typed: false,
      parts: [],
      quarantine: [],
      meta: { ingest: { scope: "s", files: [] } },
    });
    const out = await processFilesInParallel({ files }, ctx(art));
    expect(out).toMatchObject({ files: 0, units: 0, workers: 0, rowsIn: 0, empty: true });
    const ds = await readDataset(out.dataset as string);
    expect(ds).toMatchObject({ parts: [], rows: 0, accounting: { rowsIn: 0, rowsQuarantined: 0, rowsDuplicate: 0 } });
  });

  it("abort terminates every worker and rejects with the signal's reason", async () => {
    const dir = fresh("sluice-par-abort-");
    await writeTradesCsv(join(dir, "big.csv"), { rows: 150_000, seed: 8 });
    const art = fresh("sluice-par-art-");
    const files = await discover(dir, art);
    const ac = new AbortController();
    const reason = new Error("step timed out");
    const threadsBefore = osThreads();
    let threadsDuring = 0;
    const started = Date.now();
    const run = processFilesInParallel(
      { files, workers: 3, chunkSize: "64KB" },
      ctx(art, {
        signal: ac.signal,
        progress: (p) => {
          if ((p.rows ?? 0) === 0 || ac.signal.aborted) return;
          threadsDuring = osThreads();
          ac.abort(reason);
        },
      }),
    );
    await expect(run).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(10_000);
    // The workers are gone: nothing in the step folder grows any more.
    const sizes = () =>
      readdirSync(join(art, "parallel"))
        .map((n) => statSync(join(art, "parallel", n)).size)
        .join(",");
    const before = sizes();
    await new Promise((r) => setTimeout(r, 300));
    expect(sizes()).toBe(before);
    // Each worker is an OS thread of this process: they were there, and they are gone.
    expect(threadsDuring).toBeGreaterThanOrEqual(threadsBefore + Math.min(3, CORES));
    expect(osThreads()).toBeLessThanOrEqual(threadsBefore);
    expect(readFileSync(files, "utf8")).toContain("big.csv");
  });
});

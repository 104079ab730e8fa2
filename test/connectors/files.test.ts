import { createHash } from "node:crypto";
import { appendFile, mkdir, mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SluiceError } from "../../src/errors.js";
import { globToRegExp, listFiles, sha256File, waitForStable } from "../../src/connectors/files.js";

let dir: string;
const old = new Date(Date.now() - 60_000);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sluice-files-"));
  await mkdir(join(dir, "sub", "deeper"), { recursive: true });
  await mkdir(join(dir, ".hidden"));
  const files: Record<string, string> = {
    "b.csv": "id\n2\n",
    "a.csv": "id\n1\n",
    "notes.txt": "hello",
    "c.csv.part": "id\n3",
    "d.csv.tmp": "x",
    "e.partial": "x",
    "f.crdownload": "x",
    ".env": "SECRET=1",
    "sub/s.csv": "id\n4\n",
    "sub/deeper/t.csv": "id\n5\n",
    ".hidden/h.csv": "id\n6\n",
  };
  for (const [name, body] of Object.entries(files)) {
    await writeFile(join(dir, name), body);
    await utimes(join(dir, name), old, old);
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const names = (entries: { path: string }[]) => entries.map((e) => e.path.slice(dir.length + 1));

describe("listFiles", () => {
  it("lists a directory non-recursively, sorted, skipping in-progress and hidden names", async () => {
    const entries = await listFiles(dir);
    expect(names(entries)).toEqual(["a.csv", "b.csv", "notes.txt"]);
    expect(entries[0]).toMatchObject({ size: 5 });
    expect(entries[0]!.mtimeMs).toBeCloseTo(old.getTime(), -3);
  });

  it("descends into subdirectories with recursive, but never into hidden ones", async () => {
    expect(names(await listFiles(dir, { recursive: true }))).toEqual(["a.csv", "b.csv", "notes.txt", "sub/deeper/t.csv", "sub/s.csv"]);
  });

  it("returns a single named file, even one with an in-progress name", async () => {
    expect(names(await listFiles(join(dir, "a.csv")))).toEqual(["a.csv"]);
    expect(names(await listFiles(join(dir, "c.csv.part")))).toEqual(["c.csv.part"]);
  });

  it("matches globs with *, ** and ?", async () => {
    expect(names(await listFiles(join(dir, "*.csv")))).toEqual(["a.csv", "b.csv"]);
    expect(names(await listFiles(join(dir, "?.csv")))).toEqual(["a.csv", "b.csv"]);
    expect(names(await listFiles(join(dir, "**/*.csv")))).toEqual(["a.csv", "b.csv", "sub/deeper/t.csv", "sub/s.csv"]);
    expect(names(await listFiles(join(dir, "sub/**/*.csv")))).toEqual(["sub/deeper/t.csv", "sub/s.csv"]);
    expect(names(await listFiles(join(dir, "*/s.csv")))).toEqual(["sub/s.csv"]);
    expect(await listFiles(join(dir, "nothing-here/*.csv"))).toEqual([]);
  });

  it("translates globs to anchored regular expressions", () => {
    expect(globToRegExp("*.csv").test("a.csv")).toBe(true);
    expect(globToRegExp("*.csv").test("x/a.csv")).toBe(false);
    expect(globToRegExp("**/*.csv").test("a.csv")).toBe(true);
    expect(globToRegExp("**/*.csv").test("x/y/a.csv")).toBe(true);
    expect(globToRegExp("a.csv").test("abcsv")).toBe(false);
    expect(globToRegExp("[ab].csv").test("b.csv")).toBe(true);
    expect(globToRegExp("[!ab].csv").test("b.csv")).toBe(false);
  });

  it("fails with FILE_NOT_FOUND naming a missing path", async () => {
    const missing = join(dir, "missing.csv");
    await expect(listFiles(missing)).rejects.toSatisfy((e: unknown) => e instanceof SluiceError && e.code === "FILE_NOT_FOUND" && e.message.includes(missing));
  });
});

describe("waitForStable", () => {
  it("keeps settled files and reports a file being appended to as unstable", async () => {
    const growing = join(dir, "growing.csv");
    await writeFile(growing, "id\n");
    await utimes(growing, old, old);
    const files = await listFiles(join(dir, "*.csv"));
    expect(names(files)).toContain("growing.csv");

    // A writer appending under the file's final name, as scp or a slow export would.
    let pending: Promise<void> = Promise.resolve();
    const writer = setInterval(() => {
      pending = pending.then(() => appendFile(growing, "1\n"));
    }, 20);
    try {
      const result = await waitForStable(files, { intervalMs: 200, checks: 2, minAgeMs: 1000 });
      expect(names(result.stable)).toEqual(["a.csv", "b.csv"]);
      expect(result.unstable).toEqual([{ path: growing, reason: "changed" }]);
    } finally {
      clearInterval(writer);
      await pending; // an append still in flight would re-create the file after rm
      await rm(growing);
    }
  });

  it("holds back files modified within minAgeMs and reports vanished files", async () => {
    const fresh = join(dir, "fresh.csv");
    await writeFile(fresh, "id\n");
    const files = [...(await listFiles(join(dir, "*.csv"))), { path: join(dir, "gone.csv"), size: 1, mtimeMs: 0 }];
    try {
      const result = await waitForStable(files, { intervalMs: 50, minAgeMs: 5_000 });
      expect(names(result.stable)).toEqual(["a.csv", "b.csv"]);
      expect(result.unstable).toEqual([
        { path: fresh, reason: "too_recent" },
        { path: join(dir, "gone.csv"), reason: "missing" },
      ]);
      const relaxed = await waitForStable(files.slice(0, -1), { intervalMs: 10, minAgeMs: 0 });
      expect(names(relaxed.stable)).toEqual(["a.csv", "b.csv", "fresh.csv"]);
    } finally {
      await rm(fresh);
    }
  });
});

describe("sha256File", () => {
  it("streams a checksum equal to hashing the bytes", async () => {
    const big = join(dir, "big.bin");
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 7, 0x61);
    await writeFile(big, bytes);
    try {
      expect(await sha256File(big)).toBe(createHash("sha256").update(bytes).digest("hex"));
    } finally {
      await rm(big);
    }
  });

  it("fails with FILE_NOT_FOUND for a missing file", async () => {
    await expect(sha256File(join(dir, "nope.bin"))).rejects.toMatchObject({ code: "FILE_NOT_FOUND" });
  });
});

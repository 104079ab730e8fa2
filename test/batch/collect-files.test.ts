/**
 * Collecting local files: the stability test runs beside the copies, and a file that is still
 * being written (it moves within the quarter second, or while it is copied) is left for the next
 * run with a reason, while the settled files beside it are staged byte for byte.
 */
import { describe, expect, it } from "vitest";
import { appendFileSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { collectDataFromSource } from "../../src/actions/batch/collect.js";
import { readDataset } from "../../src/actions/batch/dataset.js";
import { actionContext, scratch } from "../helpers.js";

const fresh = scratch();

describe("collecting files", () => {
  it("stages settled files and skips one that is still being written", async () => {
    const root = fresh("sluice-collect-");
    const src = join(root, "in");
    mkdirSync(src);
    const settled = "id,name\n1,a\n2,b\n";
    writeFileSync(join(src, "a.csv"), settled);
    writeFileSync(join(src, "b.csv"), "id,name\n");
    // An old mtime for a.csv: it was written long ago. b.csv grows while it is collected.
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(src, "a.csv"), old, old);
    let n = 0;
    const writer = setInterval(() => appendFileSync(join(src, "b.csv"), `${++n},x\n`), 20);
    const started = Date.now();
    try {
      const out = await collectDataFromSource({ source: src }, actionContext({ artifactsDir: join(root, "artifacts"), step: "collect" }));
      expect(out).toMatchObject({ files: 1, skipped: 1 });
      const ds = await readDataset(out.dataset as string);
      expect(ds.parts.map((p) => p.source)).toEqual([join(src, "a.csv")]);
      expect(readFileSync(ds.parts[0]!.path, "utf8")).toBe(settled);
      expect(ds.meta?.skipped).toEqual([{ path: join(src, "b.csv"), reason: expect.stringMatching(/^still being written/) }]);
    } finally {
      clearInterval(writer);
    }
    // The quarter second is the whole wait for a small file, not added to the copies.
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("says every file is still being written when none settles", async () => {
    const root = fresh("sluice-collect-");
    const file = join(root, "live.csv");
    writeFileSync(file, "id\n");
    let n = 0;
    const writer = setInterval(() => appendFileSync(file, `${++n}\n`), 20);
    try {
      await expect(collectDataFromSource({ source: file }, actionContext({ artifactsDir: join(root, "artifacts"), step: "collect" }))).rejects.toMatchObject({
        code: "NOT_FOUND",
        message: expect.stringContaining("still being written"),
      });
    } finally {
      clearInterval(writer);
    }
  });
});

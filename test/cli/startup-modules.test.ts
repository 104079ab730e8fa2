// A run loads the code of the actions its workflow uses, not the whole catalogue: the stream
// clients, the secure-API detectors (phone-number metadata) and the Parquet modules once cost
// every `sluice run` of the standard workflow ~250 ms and ~45 MB before its first step.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BIN, ROOT } from "./cli-helpers.js";

const dir = mkdtempSync(join(tmpdir(), "sluice-startup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function loadedBy(args: string[]): string[] {
  const file = join(dir, `loaded-${args[0]}.txt`);
  const r = spawnSync(process.execPath, ["--import", join(ROOT, "test/fixtures/record-loaded-modules.mjs"), BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, SLUICE_HOME: join(dir, "home"), CI: "true", SLUICE_TEST_LOADED: file },
    encoding: "utf8",
    timeout: 60_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return readFileSync(file, "utf8").trim().split("\n");
}

const heavy = (urls: string[]) =>
  urls.filter((u) =>
    /node_modules\/(libphonenumber-js|ibantools|hyparquet[^/]*|apache-arrow|kafkajs|nats|amqplib|mqtt|ioredis|@kubernetes)\/|\/security\/detectors\.js|\/formats\/(parquet|arrow)\.js/.test(
      u,
    ),
  );

describe("start-up loads what the command uses", () => {
  it("sluice run of the standard workflow on the bundled sample", () => {
    const urls = loadedBy(["run", "workflows/base-data-ingestion-workflow-standard-ingestion.yaml"]);
    expect(urls.some((u) => u.includes("/actions/batch/store.js"))).toBe(true);
    expect(heavy(urls)).toEqual([]);
  });

  it("sluice validate", () => {
    const urls = loadedBy(["validate", "workflows/base-data-ingestion-workflow-secure-api.yaml"]);
    expect(heavy(urls)).toEqual([]);
  });
});

/**
 * Page checkpoints of the HTTP collector, against the flaky API sample server: a collection that
 * fails at page 5 and is retried continues at page 5 (the engine's retry, and a direct second
 * attempt); a `sluice run` killed with kill -9 mid-collection and `sluice resume`d refetches no
 * stored page; the dataset holds every id exactly once; a failed walk leaves its manifest and
 * checkpoint on disk for the recovery workflow.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { collectDataFromSource } from "../../src/actions/batch/collect.js";
import { readDataset } from "../../src/actions/batch/dataset.js";
import { readPageManifest } from "../../src/actions/batch/page-checkpoint.js";
import type { PageManifest } from "../../src/actions/recovery/contract.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import { actionContext, failure, flakyApis, runWorkflow, scratch, testEnv, waitUntil, workflow, type TestEnv } from "../helpers.js";
import { sluiceAsync, waitForStderr } from "../cli/cli-helpers.js";

const fresh = scratch();
const serve = flakyApis();
const ALL_IDS = Array.from({ length: 1000 }, (_, i) => i + 1);
const once = (page: number, n: number) => Object.fromEntries(Array.from({ length: 10 }, (_, i) => [String(i + 1), i + 1 === page ? n : 1]));

/** The trade ids of a dataset, in part order. */
async function datasetIds(ref: string): Promise<number[]> {
  const ds = await readDataset(ref);
  return ds.parts.flatMap((p) =>
    readFileSync(p.path, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { trade_id: number }).trade_id),
  );
}

describe("HTTP page checkpoints, attempt by attempt", () => {
  it("fails at page 5 leaving its manifest; the next attempt continues at page 5; a later one fetches nothing", async () => {
    const api = await serve("fail status=500 pages=5 times=1");
    const artifactsDir = fresh("sluice-ckpt-");
    const ctx = (attempt: number) => actionContext({ artifactsDir, step: "collect", attempt });

    const err = await failure(collectDataFromSource({ source: api.url }, ctx(1)));
    expect(err.code).toBe("NETWORK_ERROR");
    expect(err.details).toMatchObject({ status: 500, page: 5, pagesStored: 4, checkpoint: join(artifactsDir, "collect.checkpoint") });
    const manifestPath = err.details!["manifestPath"] as string;
    expect(manifestPath).toBe(join(artifactsDir, "collect", "manifest.json"));
    const failed = JSON.parse(readFileSync(manifestPath, "utf8")) as PageManifest;
    expect(failed).toMatchObject({ complete: false, next: `${api.url}?page=5`, rows: 400, error: { code: "NETWORK_ERROR", page: 5 } });
    expect(failed.pages.map((p) => [p.page, p.rows, p.firstKey, p.lastKey])).toEqual([
      [1, 100, 1, 100],
      [2, 100, 101, 200],
      [3, 100, 201, 300],
      [4, 100, 301, 400],
    ]);
    expect(await readPageManifest(artifactsDir, "collect")).toEqual(failed);

    const out = await collectDataFromSource({ source: api.url }, ctx(2));
    expect(out).toMatchObject({ records: 1000, pages: 10, pagesFetched: 6, resumedFromPage: 5, manifestPath });
    const manifest = out["manifest"] as PageManifest;
    expect(manifest).toMatchObject({ kind: "sluice.dev/page-manifest-v1", complete: true, rows: 1000 });
    expect(manifest.next).toBeUndefined();
    expect(manifest.pages.map((p) => p.page)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(manifest.pages[9]).toEqual({ page: 10, url: `${api.url}?page=10`, rows: 100, firstKey: 901, lastKey: 1000 });
    expect(api.stats().pages).toEqual(once(5, 2));
    expect(await datasetIds(out["dataset"] as string)).toEqual(ALL_IDS);

    // The walk is complete in its checkpoint: a third attempt asks the API for nothing.
    const again = await collectDataFromSource({ source: api.url }, ctx(3));
    expect(again).toMatchObject({ records: 1000, pages: 10, pagesFetched: 0 });
    expect(api.stats().requests).toBe(11);
    expect(await datasetIds(again["dataset"] as string)).toEqual(ALL_IDS);
  });

  it("a truncated page is never stored: the retry fetches it whole", async () => {
    const api = await serve("truncate pages=3 times=1 declare=5000 send=1200");
    const artifactsDir = fresh("sluice-ckpt-trunc-");
    const err = await failure(collectDataFromSource({ source: api.url }, actionContext({ artifactsDir, step: "collect" })));
    expect(err.code).toBe("INCOMPLETE_RESPONSE");
    expect(err.details).toMatchObject({ truncated: true, bytesDeclared: 5000, bytesReceived: 1200, page: 3, pagesStored: 2 });
    expect(existsSync(join(artifactsDir, "collect.checkpoint", "page-00003.ndjson"))).toBe(false);
    const out = await collectDataFromSource({ source: api.url }, actionContext({ artifactsDir, step: "collect", attempt: 2 }));
    expect(out).toMatchObject({ pages: 10, pagesFetched: 8, resumedFromPage: 3 });
    expect(await datasetIds(out["dataset"] as string)).toEqual(ALL_IDS);
  });

  it("a checkpoint of another source is discarded, not resumed", async () => {
    const a = await serve("fail status=500 pages=3 times=1");
    const b = await serve("ids=1-500");
    const artifactsDir = fresh("sluice-ckpt-other-");
    await failure(collectDataFromSource({ source: a.url }, actionContext({ artifactsDir, step: "collect" })));
    const out = await collectDataFromSource({ source: b.url }, actionContext({ artifactsDir, step: "collect", attempt: 2 }));
    expect(out).toMatchObject({ records: 500, pagesFetched: 10 });
    expect(out["resumedFromPage"]).toBeUndefined();
    expect(await datasetIds(out["dataset"] as string)).toEqual(ALL_IDS.slice(0, 500));
  });

  it("a journal cut by a crash: the trusted pages are kept, the rest fetched again", async () => {
    const api = await serve("fail status=500 pages=6 times=1");
    const artifactsDir = fresh("sluice-ckpt-cut-");
    await failure(collectDataFromSource({ source: api.url }, actionContext({ artifactsDir, step: "collect" })));
    // What a kill -9 can leave: the journal's last line half-written, the file of page 5 gone.
    const journal = join(artifactsDir, "collect.checkpoint", "pages.ndjson");
    const lines = readFileSync(journal, "utf8").trimEnd().split("\n");
    writeFileSync(journal, lines.slice(0, 4).join("\n") + "\n" + lines[4]!.slice(0, 30));
    const out = await collectDataFromSource({ source: api.url }, actionContext({ artifactsDir, step: "collect", attempt: 2 }));
    expect(out).toMatchObject({ pages: 10, resumedFromPage: 5, pagesFetched: 6 });
    expect(await datasetIds(out["dataset"] as string)).toEqual(ALL_IDS);
  });
});

describe("HTTP page checkpoints through the engine", () => {
  let env: TestEnv;
  beforeAll(() => {
    env = testEnv();
  });
  afterAll(() => env.cleanup());

  it("the engine's retry of a collection that failed at page 5 continues at page 5", async () => {
    const api = await serve("fail status=502 pages=5 times=1");
    const wf = workflow(
      {
        steps: [
          {
            name: "collect",
            agent: "data-collector",
            action: "collect_data_from_source",
            with: { source: api.url },
            retry: { limit: 2, backoff: { initial: "10ms", max: "50ms" } },
          },
        ],
      },
      env.actions,
    );
    const run = await runWorkflow(env, wf);
    expect(run.status).toBe("succeeded");
    const [step] = await env.store.getSteps(run.id);
    expect(step).toMatchObject({ attempts: 2, outputs: { records: 1000, pages: 10, pagesFetched: 6, resumedFromPage: 5 } });
    expect(api.stats().pages).toEqual(once(5, 2));
    expect(await datasetIds(step!.outputs!["dataset"] as string)).toEqual(ALL_IDS);
  });
});

describe("HTTP page checkpoints across kill -9 and sluice resume", () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  });

  it("a run killed while page 6 hangs, resumed, does not refetch pages 1-5; every id once", async () => {
    const api = await serve("hang pages=6 times=1");
    const cwd = fresh("sluice-ckpt-kill-");
    const file = join(cwd, "collect.yaml");
    writeFileSync(
      file,
      `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: { name: http-collect }
spec:
  params:
    source: { type: string }
  steps:
    - name: collect
      agent: data-collector
      action: collect_data_from_source
      with: { source: "\${{ params.source }}" }
      timeout: 2m
`,
    );
    const child = sluiceAsync(["run", file, "--param", `source=${api.url}`], { cwd });
    children.push(child);
    const [, runId] = (await waitForStderr(child, /run (r-[a-z0-9-]+) created/)) as RegExpMatchArray;
    await waitUntil(() => (api.stats().pages["6"] ?? 0) >= 1, 20_000, "the run to ask for page 6");
    const journal = join(cwd, ".sluice", "runs", runId!, "artifacts", "collect.checkpoint", "pages.ndjson");
    expect(readFileSync(journal, "utf8").trim().split("\n")).toHaveLength(5);
    child.kill("SIGKILL");
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once("exit", r)));

    // Not spawnSync: the API answers from this process, whose event loop must keep running.
    const resumer = sluiceAsync(["resume", runId!, "--json"], { cwd });
    children.push(resumer);
    let stdout = "";
    resumer.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
    const code = await new Promise<number | null>((r) => resumer.once("close", r));
    expect(code).toBe(0);
    expect(JSON.parse(stdout).status).toBe("succeeded");
    expect(api.stats().pages).toEqual(once(6, 2));

    const store = openSqliteStore(join(cwd, ".sluice", "sluice.db"));
    try {
      const [step] = await store.getSteps(runId!);
      expect(step!.outputs).toMatchObject({ records: 1000, pages: 10, pagesFetched: 5, resumedFromPage: 6, manifest: { complete: true } });
      expect(await datasetIds(step!.outputs!["dataset"] as string)).toEqual(ALL_IDS);
    } finally {
      await store.close();
    }
  }, 60_000);
});

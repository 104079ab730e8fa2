/**
 * The circuit breaker per source: its state machine on the shared state's compare-and-set
 * semantics (memoryState), the collector honouring it against a real local HTTP server, and
 * issue 11's test 12 end to end: `sluice run`s sharing one SLUICE_HOME (one SQLite store), the
 * breaker opened in one run still open in the next (no request reaches the server), half-open
 * after its cool-down, closed again by a good probe.
 */
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SharedState } from "../../src/actions/types.js";
import { BREAKER_NAMESPACE, checkBreaker, recordSourceOutcome, releaseProbe, type BreakerRecord } from "../../src/actions/recovery/breaker.js";
import { collectDataFromSource } from "../../src/actions/batch/collect.js";
import { validateSourceAvailability } from "../../src/actions/batch/source-checks.js";
import { startFlakyApi } from "../../src/samples/flaky-api.js";
import { SluiceError } from "../../src/errors.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import { actionContext, failure, memoryState, scratch } from "../helpers.js";
import { BIN } from "../cli/cli-helpers.js";
import { classify as platformEvent } from "../../src/triggers/platform.js";

const SRC = "http://user:secret@127.0.0.1:9/api?token=abc";
const KEY = "http://127.0.0.1:9/api?token=***";
const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const opts = { failures: 3, coolDownMs: 1_000, probeTimeoutMs: 5_000 };

async function failTimes(state: SharedState, n: number, at = T0) {
  for (let i = 0; i < n; i++) await recordSourceOutcome(state, SRC, false, at + i, { ...opts, class: "network" });
}

describe("circuit breaker state machine", () => {
  it("stays closed below N failures in a row, and a success resets the count", async () => {
    const state = memoryState();
    await failTimes(state, 2);
    expect(await checkBreaker(state, SRC, T0 + 10, opts)).toMatchObject({ allowed: true, state: "closed", failures: 2 });
    await recordSourceOutcome(state, SRC, true, T0 + 11, opts);
    await failTimes(state, 2, T0 + 12);
    expect(await checkBreaker(state, SRC, T0 + 20, opts)).toMatchObject({ allowed: true, state: "closed", failures: 2 });
  });

  it("opens at N failures, refuses during the cool-down, lets exactly one probe through after it", async () => {
    const state = memoryState();
    await failTimes(state, 3);
    const open = await checkBreaker(state, SRC, T0 + 500, opts);
    expect(open).toMatchObject({ allowed: false, state: "open", failures: 3, openedAt: new Date(T0 + 2).toISOString(), lastClass: "network", probe: false });
    expect(open.retryAt).toBe(new Date(T0 + 2 + 1_000).toISOString());

    const [a, b] = await Promise.all([checkBreaker(state, SRC, T0 + 1_100, opts), checkBreaker(state, SRC, T0 + 1_100, opts)]);
    expect([a, b].filter((c) => c.allowed)).toHaveLength(1);
    expect([a, b].find((c) => c.allowed)).toMatchObject({ state: "half-open", probe: true });
    expect([a, b].find((c) => !c.allowed)).toMatchObject({ state: "half-open", probe: false });
  });

  it("re-opens when the probe fails and closes when it succeeds", async () => {
    const state = memoryState();
    await failTimes(state, 3);
    expect((await checkBreaker(state, SRC, T0 + 1_100, opts)).probe).toBe(true);
    const reopened = await recordSourceOutcome(state, SRC, false, T0 + 1_200, opts);
    expect(reopened).toMatchObject({ state: "open", failures: 4, openedAt: new Date(T0 + 1_200).toISOString(), trips: 2 });
    expect((await checkBreaker(state, SRC, T0 + 2_100, opts)).allowed).toBe(false); // a new cool-down from the re-opening
    expect((await checkBreaker(state, SRC, T0 + 2_300, opts)).probe).toBe(true);
    const closed = await recordSourceOutcome(state, SRC, true, T0 + 2_400, opts);
    expect(closed).toMatchObject({ state: "closed", failures: 0, openedAt: null, lastSuccessAt: new Date(T0 + 2_400).toISOString() });
    expect(await checkBreaker(state, SRC, T0 + 2_401, opts)).toMatchObject({ allowed: true, state: "closed" });
  });

  it("lets another caller probe when the probe is released, or when it has been silent past probeTimeout", async () => {
    const state = memoryState();
    await failTimes(state, 3);
    expect((await checkBreaker(state, SRC, T0 + 1_100, opts)).probe).toBe(true);
    expect((await checkBreaker(state, SRC, T0 + 1_200, opts)).allowed).toBe(false);
    await releaseProbe(state, SRC);
    expect((await checkBreaker(state, SRC, T0 + 1_300, opts)).probe).toBe(true);
    expect((await checkBreaker(state, SRC, T0 + 6_200, opts)).allowed).toBe(false);
    expect((await checkBreaker(state, SRC, T0 + 6_400, opts)).probe).toBe(true);
  });

  it("keys the record by the source without credentials", async () => {
    const state = memoryState();
    await failTimes(state, 1);
    const listed = await state.list(BREAKER_NAMESPACE);
    expect(listed.map((e) => e.key)).toEqual([KEY]);
    expect(JSON.stringify(listed)).not.toContain("secret");
    expect(JSON.stringify(listed)).not.toContain("abc");
  });

  it("reads again and decides again when another writer came first (put returns null)", async () => {
    const inner = memoryState();
    let raced = 0;
    // Before each of the first three writes, another process records a failure first.
    const state: SharedState = {
      ...inner,
      async put(ns, key, value, expected) {
        if (raced < 3) {
          raced++;
          const cur = await inner.get(ns, key);
          await inner.put(ns, key, { ...((cur?.value as BreakerRecord) ?? {}), source: KEY, state: "closed", failures: raced, trips: 0 }, cur?.version ?? 0);
        }
        return inner.put(ns, key, value, expected);
      },
    };
    const rec = await recordSourceOutcome(state, SRC, false, T0, { ...opts, class: "timeout" });
    expect(raced).toBe(3);
    // Its failure counts on top of the three written under it, and that opens the breaker.
    expect(rec).toMatchObject({ failures: 4, state: "open", lastClass: "timeout" });
  });
});

/** A source that accepts connections and drops them (a dead upstream behind a live port), counting requests. */
async function deadApi(): Promise<{ url: string; requests: () => number; heal(): void; close(): Promise<void> }> {
  let requests = 0;
  let healed = false;
  const server: Server = createServer((req, res) => {
    requests++;
    if (healed) res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify([{ id: 1 }]));
    else req.socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/trades`,
    requests: () => requests,
    heal: () => void (healed = true),
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

const tmp = scratch();

describe("the collector honours the breaker", () => {
  let api: Awaited<ReturnType<typeof deadApi>>;
  beforeAll(async () => void (api = await deadApi()));
  afterAll(async () => api.close());

  it("counts network failures, refuses without a request once open, and leaves config failures out", async () => {
    const state = memoryState();
    const ctx = () => actionContext({ artifactsDir: tmp("sluice-breaker-"), state, step: "collect" });
    const input = { source: api.url, breaker: { failures: 2, coolDown: "1h" } };
    for (let i = 0; i < 2; i++) expect((await failure(collectDataFromSource(input, ctx()))).code).toBe("NETWORK_ERROR");
    expect(api.requests()).toBe(2);
    const refused = await failure(collectDataFromSource(input, ctx()));
    expect(refused).toBeInstanceOf(SluiceError);
    expect(refused).toMatchObject({ code: "NETWORK_ERROR", retryable: false, details: { circuit: "open", failures: 2, lastClass: "network" } });
    expect(refused.message).toMatch(/circuit breaker of source http:\/\/127\.0\.0\.1:\d+\/trades is open/);
    // The refusal of a collection step is what the platform publishes as data_source_failure.
    expect(
      platformEvent({ error: { code: refused.code, message: refused.message } }, { name: "c", agent: "data-collector", action: "collect_data_from_source" }),
    ).toBe("data_source_failure");
    expect(api.requests()).toBe(2);
    // breaker: false opts out, and the request is made.
    await failure(collectDataFromSource({ source: api.url, breaker: false }, ctx()));
    expect(api.requests()).toBe(3);

    // A missing local file is FILE_NOT_FOUND: not the source's health, nothing recorded.
    const missing = join(tmp("sluice-breaker-"), "none.csv");
    for (let i = 0; i < 3; i++)
      expect((await failure(collectDataFromSource({ source: missing, breaker: { failures: 1 } }, ctx()))).code).toBe("FILE_NOT_FOUND");
    expect((await state.list(BREAKER_NAMESPACE)).map((e) => e.key)).toEqual([api.url]);
  });
});

describe("the standard workflow's source check honours the breaker too", () => {
  it("is refused while the breaker is open, its failures count, and its success hands a half-open probe on to the collection", async () => {
    const api = await startFlakyApi({ plan: "fail status=503 retry-after=0 times=2" });
    try {
      const state = memoryState();
      const ctx = () => actionContext({ artifactsDir: tmp("sluice-breaker-check-"), state, step: "source-validation" });
      const input = { source: api.url, breaker: { failures: 2, coolDown: "1s" } };
      for (let i = 0; i < 2; i++) {
        const e = await failure(validateSourceAvailability(input, ctx()));
        // The probe's evidence travels with the failure, for the failure analysis.
        expect(e).toMatchObject({ code: "NETWORK_ERROR", details: { status: 503, retryAfterSeconds: 0, url: api.url } });
      }
      const refused = await failure(validateSourceAvailability(input, ctx()));
      expect(refused).toMatchObject({ code: "NETWORK_ERROR", retryable: false, details: { circuit: "open", failures: 2, lastClass: "server_unavailable" } });
      expect(api.stats().requests).toBe(2);
      // After the cool-down the check is let through as the probe, and answers; one good request
      // says little about a walk of many pages, so it hands the probe on instead of closing.
      await new Promise((r) => setTimeout(r, 1_100));
      expect(await validateSourceAvailability(input, ctx())).toMatchObject({ available: true });
      const [rec] = await state.list(BREAKER_NAMESPACE);
      expect(rec!.value).toMatchObject({ state: "half-open", probeAt: null, failures: 2 });
      // The collection is then the probe, and its success closes the breaker.
      await collectDataFromSource(
        { source: api.url, breaker: input.breaker },
        actionContext({ artifactsDir: tmp("sluice-breaker-check-"), state, step: "data-collection" }),
      );
      expect((await state.list(BREAKER_NAMESPACE))[0]!.value).toMatchObject({ state: "closed", failures: 0 });
    } finally {
      await api.close();
    }
  });
});

/** `sluice run` as a child process (not spawnSync: this process's HTTP server must keep answering). */
function sluiceRun(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, SLUICE_HOME: join(cwd, ".sluice"), CI: "true" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

interface RunDoc {
  id: string;
  status: string;
  steps: {
    name: string;
    status: string;
    attempts: { n: number; status: string; error: { code: string; message: string; details?: Record<string, unknown> } | null }[];
  }[];
}

describe("issue 11, test 12: a breaker opened in one run holds in the next, and half-opens after its cool-down", () => {
  let api: Awaited<ReturnType<typeof deadApi>>;
  beforeAll(async () => void (api = await deadApi()));
  afterAll(async () => api.close());

  it("through `sluice run`, two processes sharing one SQLite store", { timeout: 60_000 }, async () => {
    const cwd = tmp("sluice-breaker-cli-");
    mkdirSync(join(cwd, ".sluice"), { recursive: true });
    const wf = join(cwd, "collect.yaml");
    writeFileSync(
      wf,
      `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: breaker-flow
spec:
  params:
    source: { type: string }
  steps:
    - name: data-collection
      agent: data-collector
      action: collect_data_from_source
      with:
        source: \${{ params.source }}
        breaker: { failures: 3, coolDown: 4s }
      retry: { limit: 5, backoff: { initial: 10ms, jitter: 0 } }
`,
    );
    const run = async (): Promise<RunDoc> => {
      const r = await sluiceRun(["run", wf, "--param", `source=${api.url}`, "--json"], cwd);
      expect(r.stdout, r.stderr).not.toBe("");
      return JSON.parse(r.stdout) as RunDoc;
    };
    const attemptsOf = (d: RunDoc) => d.steps.find((s) => s.name === "data-collection")!.attempts;

    // Run 1: three failures reach the server and open the breaker; the fourth attempt is refused, and not retried.
    const first = await run();
    expect(first.status).toBe("failed");
    expect(attemptsOf(first).map((a) => a.error?.details?.circuit ?? "contacted")).toEqual(["contacted", "contacted", "contacted", "open"]);
    expect(api.requests()).toBe(3);

    // Run 2, another process at once: refused on its first attempt; no request reaches the server.
    const second = await run();
    expect(second.status).toBe("failed");
    const [refused] = attemptsOf(second);
    expect(attemptsOf(second)).toHaveLength(1);
    expect(refused!.error).toMatchObject({ code: "NETWORK_ERROR", details: { circuit: "open", failures: 3, lastClass: "network" } });
    expect(api.requests()).toBe(3);

    // After the cool-down: one probe goes through, fails, and the breaker is open again.
    // (4 s: long enough for the next process to start inside it on a busy machine.)
    await new Promise((r) => setTimeout(r, 4_200));
    const third = await run();
    expect(attemptsOf(third).map((a) => a.error?.details?.circuit ?? "contacted")).toEqual(["contacted", "open"]);
    expect(api.requests()).toBe(4);

    // The source heals; after the next cool-down the probe succeeds and the breaker closes.
    api.heal();
    await new Promise((r) => setTimeout(r, 4_200));
    const fourth = await run();
    expect(fourth.status).toBe("succeeded");
    expect(api.requests()).toBe(5);

    const store = openSqliteStore(join(cwd, ".sluice", "sluice.db"));
    try {
      const [rec] = await store.listState(BREAKER_NAMESPACE);
      expect(rec).toMatchObject({ key: api.url, value: { state: "closed", failures: 0, trips: 2, openedAt: null } });
    } finally {
      await store.close();
    }
  });
});

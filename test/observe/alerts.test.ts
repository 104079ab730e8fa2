import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createAlerter, type AlertLog, type AlertTarget, type Alerter } from "../../src/observe/alerts.js";
import { parseRetryAfter, redactUrl } from "../../src/observe/webhook.js";
import type { EngineEvent } from "../../src/engine/events.js";
import { createRun } from "../../src/engine/start.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { StateStore } from "../../src/store/types.js";
import { workflow } from "../helpers.js";

// ---- a real HTTP receiver that records every request and answers as a test scripts it ----

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: any;
  at: number;
}
type Answer = { status: number; headers?: Record<string, string> } | "hang";

class Receiver {
  readonly requests: Received[] = [];
  private server!: Server;
  private scripts = new Map<string, Answer[]>();
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const path = req.url ?? "/";
        const text = Buffer.concat(chunks).toString("utf8");
        this.requests.push({ path, headers: req.headers, body: text ? JSON.parse(text) : null, at: Date.now() });
        const answer = this.scripts.get(path.split("?")[0]!)?.shift() ?? { status: 200 };
        if (answer === "hang") return;
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(answer.status < 300 ? "ok" : "no");
      });
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** The next answers for a path, in order; afterwards 200. */
  script(path: string, ...answers: Answer[]): void {
    this.scripts.set(path, answers);
  }

  at(path: string): Received[] {
    return this.requests.filter((r) => r.path.split("?")[0] === path);
  }

  reset(): void {
    this.requests.length = 0;
    this.scripts.clear();
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function recordingLog(): AlertLog & { lines: { level: string; message: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
  return {
    lines,
    info: (message, fields) => lines.push({ level: "info", message, fields }),
    warn: (message, fields) => lines.push({ level: "warn", message, fields }),
    error: (message, fields) => lines.push({ level: "error", message, fields }),
  };
}

const FAST = { attempts: 6, initialMs: 2, maxMs: 20 };

function runFailed(runId = "r-1", wf = "ingest"): EngineEvent {
  return {
    type: "run-ended",
    runId,
    workflow: wf,
    status: "failed",
    error: { code: "NETWORK_ERROR", message: "step fetch failed: connection refused" },
    trigger: { type: "manual" },
    startedAt: "2024-05-01T10:00:00.000Z",
    endedAt: "2024-05-01T10:00:05.000Z",
  };
}

const rx = new Receiver();
let store: StateStore;
const alerters: Alerter[] = [];

function alerter(targets: AlertTarget[], extra: Partial<Parameters<typeof createAlerter>[0]> = {}) {
  const log = recordingLog();
  const a = createAlerter({ targets, store, log, retry: FAST, timeoutMs: 2_000, ...extra });
  alerters.push(a);
  return { a, log };
}

beforeAll(async () => {
  await rx.start();
  store = openSqliteStore(":memory:");
});
afterAll(async () => {
  await rx.stop();
  await store.close();
});
beforeEach(() => rx.reset());
afterEach(() => {
  for (const a of alerters.splice(0)) a.close();
});

describe("run_failed", () => {
  it("is delivered as JSON and as a Slack message, with a link to the run", async () => {
    const { a } = alerter(
      [
        { name: "ops-json", url: rx.url("/json"), format: "json", on: ["run_failed"] },
        { name: "ops-slack", url: rx.url("/slack"), format: "slack", on: ["run_failed"] },
      ],
      { baseUrl: "http://sluice.local:8080/" },
    );
    a.onEngineEvent(runFailed());
    await a.flush();

    const [json] = rx.at("/json");
    expect(json?.headers["content-type"]).toBe("application/json");
    expect(json?.body).toMatchObject({
      kind: "run_failed",
      workflow: "ingest",
      runId: "r-1",
      status: "failed",
      error: { code: "NETWORK_ERROR", message: "step fetch failed: connection refused" },
      durationMs: 5_000,
      link: "http://sluice.local:8080/api/v1/runs/r-1",
    });
    expect(json?.body.message).toContain("run r-1 of ingest failed");
    expect(Date.parse(json?.body.at)).not.toBeNaN();

    const [slack] = rx.at("/slack");
    expect(typeof slack?.body.text).toBe("string");
    expect(slack?.body.text).not.toContain("\n");
    expect(slack?.body.text).toContain("Run failed");
    expect(slack?.body.text).toContain("r-1");
    expect(Array.isArray(slack?.body.blocks)).toBe(true);
    const blocks = JSON.stringify(slack?.body.blocks);
    expect(blocks).toContain("<http://sluice.local:8080/api/v1/runs/r-1|r-1>");
    expect(blocks).toContain("NETWORK_ERROR");
  });

  it("is sent once per run, and not for succeeded runs", async () => {
    const { a } = alerter([{ name: "t", url: rx.url("/once"), format: "json", on: ["run_failed"] }]);
    a.onEngineEvent(runFailed("r-dup"));
    a.onEngineEvent(runFailed("r-dup"));
    a.onEngineEvent({ ...(runFailed("r-ok") as Extract<EngineEvent, { type: "run-ended" }>), status: "succeeded", error: null });
    await a.flush();
    expect(rx.at("/once").map((r) => r.body.runId)).toEqual(["r-dup"]);
  });
});

describe("delivery", () => {
  it("retries after 500 twice, then succeeds", async () => {
    rx.script("/flaky", { status: 500 }, { status: 503 });
    const { a, log } = alerter([{ name: "flaky", url: rx.url("/flaky"), format: "json", on: ["run_failed"] }]);
    a.onEngineEvent(runFailed("r-retry"));
    await a.flush();
    expect(rx.at("/flaky")).toHaveLength(3);
    expect(rx.at("/flaky").every((r) => r.body.runId === "r-retry")).toBe(true);
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]);
    expect(log.lines.find((l) => l.message === "alert delivered")?.fields).toMatchObject({ target: "flaky", attempts: 3 });
  });

  it("does not retry a 400, and logs the target's name but not the URL's secrets", async () => {
    rx.script("/hook/T000/B000/s3cr3t", { status: 400 });
    const { a, log } = alerter([{ name: "bad-hook", url: rx.url("/hook/T000/B000/s3cr3t?token=t0ken"), format: "slack", on: ["run_failed"] }]);
    a.onEngineEvent(runFailed("r-400"));
    await a.flush();
    expect(rx.at("/hook/T000/B000/s3cr3t")).toHaveLength(1);
    const warn = log.lines.filter((l) => l.level === "warn");
    expect(warn).toHaveLength(1);
    expect(warn[0]?.fields).toMatchObject({ target: "bad-hook", attempts: 1, status: 400 });
    const logged = JSON.stringify(log.lines);
    expect(logged).not.toContain("s3cr3t");
    expect(logged).not.toContain("t0ken");
  });

  it("gives up after the configured attempts", async () => {
    rx.script("/down", ...Array.from({ length: 10 }, () => ({ status: 502 })));
    const { a, log } = alerter([{ name: "down", url: rx.url("/down"), format: "json", on: ["run_failed"] }], {
      retry: { attempts: 4, initialMs: 1, maxMs: 5 },
    });
    a.onEngineEvent(runFailed("r-down"));
    await a.flush();
    expect(rx.at("/down")).toHaveLength(4);
    expect(log.lines.find((l) => l.level === "warn")?.fields).toMatchObject({ target: "down", attempts: 4, status: 502 });
  });

  it("honours Retry-After on 429", async () => {
    rx.script("/limited", { status: 429, headers: { "retry-after": "1" } });
    const { a } = alerter([{ name: "limited", url: rx.url("/limited"), format: "json", on: ["run_failed"] }], {
      retry: { attempts: 3, initialMs: 1, maxMs: 5 },
    });
    a.onEngineEvent(runFailed("r-429"));
    await a.flush();
    const got = rx.at("/limited");
    expect(got).toHaveLength(2);
    // The backoff alone would wait about 1 ms; the receiver asked for a second.
    expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it("retries network errors and timeouts, never throwing", async () => {
    rx.script("/slow", "hang", "hang");
    const closed = `http://127.0.0.1:1/refused?key=abc`;
    const { a, log } = alerter(
      [
        { name: "refused", url: closed, format: "json", on: ["run_failed"] },
        { name: "slow", url: rx.url("/slow"), format: "json", on: ["run_failed"] },
      ],
      { retry: { attempts: 2, initialMs: 1, maxMs: 2 }, timeoutMs: 100 },
    );
    expect(() => a.onEngineEvent(runFailed("r-net"))).not.toThrow();
    await a.flush();
    expect(rx.at("/slow")).toHaveLength(2);
    const warns = log.lines.filter((l) => l.level === "warn");
    expect(warns.map((w) => w.fields?.target).sort()).toEqual(["refused", "slow"]);
    expect(warns.every((w) => w.fields?.attempts === 2)).toBe(true);
    expect(JSON.stringify(log.lines)).not.toContain("key=abc");
  });

  it("close abandons retries waiting", async () => {
    rx.script("/closing", { status: 500 });
    const { a } = alerter([{ name: "c", url: rx.url("/closing"), format: "json", on: ["run_failed"] }], {
      retry: { attempts: 5, initialMs: 10_000, maxMs: 10_000 },
    });
    a.onEngineEvent(runFailed("r-close"));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    a.close();
    await a.flush();
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(rx.at("/closing")).toHaveLength(1);
  });

  it("parses Retry-After and redacts URLs", () => {
    expect(parseRetryAfter("3", 0)).toBe(3_000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(parseRetryAfter("soon", 0)).toBeNull();
    expect(parseRetryAfter(null, 0)).toBeNull();
    expect(redactUrl("https://hooks.slack.com/services/T/B/xyz?x=1")).toBe("https://hooks.slack.com");
  });
});

describe("filters", () => {
  it("sends only the kinds and workflows a target subscribes to", async () => {
    const { a } = alerter([
      { name: "only-billing", url: rx.url("/billing"), format: "json", on: ["run_failed"], workflows: ["billing"] },
      { name: "only-sla", url: rx.url("/sla-only"), format: "json", on: ["sla_breach"] },
      { name: "all", url: rx.url("/all"), format: "json", on: ["run_failed", "quality_breach", "sla_breach"] },
    ]);
    a.onEngineEvent(runFailed("r-ingest", "ingest"));
    a.onEngineEvent(runFailed("r-billing", "billing"));
    await a.flush();
    expect(rx.at("/billing").map((r) => r.body.runId)).toEqual(["r-billing"]);
    expect(rx.at("/sla-only")).toHaveLength(0);
    expect(
      rx
        .at("/all")
        .map((r) => r.body.runId)
        .sort(),
    ).toEqual(["r-billing", "r-ingest"]);
  });
});

describe("quality_breach", () => {
  it("follows a quality step failing under its threshold", async () => {
    const { a } = alerter([{ name: "q", url: rx.url("/quality"), format: "json", on: ["quality_breach"] }]);
    a.onEngineEvent({
      type: "step-ended",
      runId: "r-q",
      workflow: "ingest",
      step: "quality-validation",
      attempt: 1,
      status: "failed",
      error: { code: "QUALITY_BELOW_THRESHOLD", message: "quality score 0.8 is under the threshold 0.95: not_null(price) (400 failing)" },
      retryInMs: null,
      durationMs: 40,
      outputs: null,
    });
    // Another failure of a step is not a quality breach.
    a.onEngineEvent({
      type: "step-ended",
      runId: "r-q2",
      workflow: "ingest",
      step: "fetch",
      attempt: 1,
      status: "failed",
      error: { code: "NETWORK_ERROR", message: "refused" },
      retryInMs: 5,
      durationMs: 4,
      outputs: null,
    });
    // A step that reports a score under its threshold without failing is one.
    a.onEngineEvent({
      type: "step-ended",
      runId: "r-q3",
      workflow: "ingest",
      step: "custom-check",
      attempt: 1,
      status: "succeeded",
      error: null,
      retryInMs: null,
      durationMs: 4,
      outputs: { score: 0.5, threshold: 0.9 },
    });
    a.onEngineEvent({
      type: "step-ended",
      runId: "r-q4",
      workflow: "ingest",
      step: "quality-validation",
      attempt: 1,
      status: "succeeded",
      error: null,
      retryInMs: null,
      durationMs: 4,
      outputs: { score: 0.99, threshold: 0.95 },
    });
    await a.flush();
    const got = rx.at("/quality").map((r) => r.body);
    expect(got.map((b) => b.runId).sort()).toEqual(["r-q", "r-q3"]);
    expect(got.find((b) => b.runId === "r-q")).toMatchObject({
      kind: "quality_breach",
      workflow: "ingest",
      step: "quality-validation",
      status: "failed",
      error: { code: "QUALITY_BELOW_THRESHOLD" },
    });
  });
});

describe("sla_breach", () => {
  const wf = (name: string, sla?: string) =>
    workflow({ ...(sla ? { sla } : {}), steps: [{ name: "a", agent: "test", action: "echo", with: { value: 1 } }] }, undefined, name);

  async function started(name: string, sla: string | undefined, startedAgoMs: number): Promise<string> {
    const run = await createRun(store, { workflow: wf(name, sla) });
    const now = Date.now();
    expect(await store.claimRun(run.id, "tester", 60_000, now)).toBe(true);
    await store.markRunStarted(run.id, "tester", new Date(now - startedAgoMs).toISOString(), null);
    return run.id;
  }

  it("checkSla reports running runs past their SLA once, in both formats", async () => {
    const late = await started("sla-late", "30m", 2 * 3_600_000);
    const onTime = await started("sla-on-time", "30m", 60_000);
    await started("sla-none", undefined, 5 * 3_600_000);
    const pending = await createRun(store, { workflow: wf("sla-pending", "1s") });

    const { a } = alerter([
      { name: "sla", url: rx.url("/sla"), format: "json", on: ["sla_breach"] },
      { name: "sla-slack", url: rx.url("/sla-slack"), format: "slack", on: ["sla_breach"] },
    ]);
    await a.checkSla();
    await a.checkSla();
    await a.flush();
    const got = rx.at("/sla").map((r) => r.body);
    expect(got.map((b) => b.runId)).toEqual([late]);
    expect(got[0]).toMatchObject({ kind: "sla_breach", workflow: "sla-late", status: "running", sla: "30m", error: null });
    expect(got[0].durationMs).toBeGreaterThanOrEqual(2 * 3_600_000);
    expect(got.map((b) => b.runId)).not.toContain(onTime);
    expect(got.map((b) => b.runId)).not.toContain(pending.id);
    const slack = rx.at("/sla-slack");
    expect(slack).toHaveLength(1);
    expect(slack[0]!.body.text).toContain("SLA breached");

    // Later, the on-time run is late too.
    await a.checkSla(Date.now() + 3_600_000);
    await a.flush();
    expect(
      rx
        .at("/sla")
        .map((r) => r.body.runId)
        .sort(),
    ).toEqual([late, onTime].sort());
  });

  it("reports a finished run that took longer than its SLA, unless already reported", async () => {
    const slow = await started("sla-finished", "1m", 10 * 60_000);
    const fast = await started("sla-finished", "1h", 10 * 60_000);
    const { a } = alerter([{ name: "sla", url: rx.url("/sla-end"), format: "json", on: ["sla_breach"], workflows: ["sla-finished"] }]);
    const ended = (runId: string): EngineEvent => ({
      type: "run-ended",
      runId,
      workflow: "sla-finished",
      status: "succeeded",
      error: null,
      trigger: null,
      startedAt: new Date(Date.now() - 10 * 60_000).toISOString(),
      endedAt: new Date().toISOString(),
    });
    a.onEngineEvent(ended(slow));
    a.onEngineEvent(ended(fast));
    await a.flush();
    await a.checkSla();
    await a.flush();
    const got = rx.at("/sla-end").map((r) => r.body);
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ kind: "sla_breach", runId: slow, status: "succeeded", sla: "1m" });
    expect(got[0].durationMs).toBeGreaterThanOrEqual(10 * 60_000 - 1_000);
  });

  it("a failing store is logged, not thrown", async () => {
    const broken = {
      ...store,
      listRuns: async () => {
        throw new Error("db down");
      },
      getRun: async () => {
        throw new Error("db down");
      },
    } as StateStore;
    const log = recordingLog();
    const a = createAlerter({ targets: [{ name: "s", url: rx.url("/x"), format: "json", on: ["sla_breach"] }], store: broken, log, retry: FAST });
    alerters.push(a);
    await expect(a.checkSla()).resolves.toBeUndefined();
    expect(() => a.onEngineEvent(runFailed("r-broken"))).not.toThrow();
    await a.flush();
    expect(log.lines.some((l) => l.message === "SLA check failed")).toBe(true);
    expect(log.lines.some((l) => l.level === "error")).toBe(true);
  });
});

/**
 * The web UI's other views against a real server on loopback (authentication off): Workflows
 * (versions, YAML, diff, rollback), a failed run's diff against the last success, Events (runs
 * started and refusals), Streams (figures and charts, live over SSE), the recovery and security
 * sections of the run page (decision, gaps, conflicts, classification, audit with its verdict),
 * and new runs arriving at the top of the runs page.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { executeRun } from "../../src/engine/index.js";
import { streamSample, type PipelineStats } from "../../src/engine/pipeline.js";
import { z } from "zod";
import { defineAction } from "../../src/actions/types.js";
import { waitUntil } from "../helpers.js";
import { startApi } from "./api-helpers.js";
import { csrfOf, uiClient } from "./ui-helpers.js";
import { diffLines } from "../../src/server/ui/workflows-page.js";

const api = await startApi();
const ui = uiClient(api.server.url);
const V1 = "/api/v1";

const wf = (version: string, failures: number) => `# views-flow, the ${version}
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: views-flow
spec:
  params:
    n: { type: integer, default: 1 }
  triggers:
    - event: views_ready
  steps:
    - name: first
      agent: test
      action: echo
      with: { value: "\${{ params.n }}" }
    - name: second
      dependsOn: [first]
      agent: test
      action: flaky
      with: { failures: ${failures} }
`;

const execute = (id: string) => executeRun(id, { store: api.env.store, actions: api.env.actions, home: api.env.home });
const start = async (params: Record<string, unknown> = {}) =>
  (await api.call("POST", `${V1}/workflows/views-flow/runs`, { json: { params } })).json.id as string;
/** A run of views-docs whose two steps output what they are given (the documents' paths). */
async function docsRun(first: Record<string, unknown>, second: Record<string, unknown>): Promise<string> {
  const id = (await api.call("POST", `${V1}/workflows/views-docs/runs`, { json: { params: { first: JSON.stringify(first), second: JSON.stringify(second) } } }))
    .json.id as string;
  expect((await execute(id)).status).toBe("succeeded");
  return id;
}
let good: string;
let bad: string;

const slow = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: views-slow
spec:
  steps:
    - name: nap
      agent: test
      action: sleep
      with: { ms: 1500 }
`;
const docs = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: views-docs
spec:
  params:
    first: { type: string }
    second: { type: string }
  steps:
    - name: first
      agent: test
      action: outputs
      with: { json: "\${{ params.first }}" }
    - name: second
      dependsOn: [first]
      agent: test
      action: outputs
      with: { json: "\${{ params.second }}" }
`;

beforeAll(async () => {
  // A step whose outputs are the JSON object it is given: the documents' paths, as the recovery and security actions name them.
  api.env.actions.register(
    defineAction({
      kind: "agent",
      owner: "test",
      action: "outputs",
      description: "output the given JSON object",
      input: z.object({ json: z.string() }).strict(),
      run: async ({ json }) => JSON.parse(json) as Record<string, unknown>,
    }),
  );
  for (const text of [slow, docs]) expect((await api.call("POST", `${V1}/workflows`, { body: text })).status).toBe(201);
  const applied = await api.call("POST", `${V1}/workflows`, { body: wf("first version", 0) });
  expect(applied.status, applied.text).toBe(201);
  good = await start();
  expect((await execute(good)).status).toBe("succeeded");
  expect((await api.call("POST", `${V1}/workflows`, { body: wf("second version", 5) })).status).toBe(201);
  bad = await start();
  expect((await execute(bad)).status).toBe("failed");
});

describe("workflows", () => {
  test("the list shows each workflow's current version; its page has the YAML of every version", async () => {
    const list = await ui.get("/ui/workflows");
    expect(list.status).toBe(200);
    expect(list.text).toMatch(/data-workflow="views-flow"[\s\S]*?v2/);
    const page = await ui.get("/ui/workflows/views-flow");
    expect(page.status).toBe(200);
    expect(page.text).toContain('data-version="2" data-current="true"');
    expect(page.text).toContain('data-version="1" data-current="false"');
    expect(page.text).toContain("first version");
    expect(page.text).toContain("second version");
    expect(page.text).toContain('data-testid="rollback-1"'); // admin (authentication off)
    expect((await ui.get("/ui/workflows/nope")).status).toBe(404);
  });

  test("the diff between two versions marks removed and added lines", async () => {
    const r = await ui.get("/ui/workflows/views-flow/diff?from=1&to=2");
    expect(r.status).toBe(200);
    expect(r.text).toContain('data-kind="del">-# views-flow, the first version');
    expect(r.text).toContain('data-kind="add">+# views-flow, the second version');
    expect(r.text).toContain('data-kind="add">+      with: { failures: 5 }');
    expect(r.text).toContain("2 lines added, 2 removed.");
    expect((await ui.get("/ui/workflows/views-flow/diff?from=1&to=9")).status).toBe(404);
    expect((await ui.get("/ui/workflows/views-flow/diff?from=x&to=2")).status).toBe(400);
    expect(diffLines("a\n", "a\n")).toEqual([]);
  });

  test("a failed run links to the diff of its version against the last successful run's", async () => {
    const run = await ui.get(`/ui/runs/${bad}`);
    expect(run.text).toContain('data-testid="diff-link"');
    expect((await ui.get(`/ui/runs/${good}`)).text).not.toContain('data-testid="diff-link"');
    const r = await ui.get(`/ui/runs/${bad}/diff`);
    expect(r.status).toBe(200);
    expect(r.text).toContain(`the last successful run, ${good}, used v1.`);
    expect(r.text).toContain("views-flow</a> v1 → v2");
    expect(r.text).toContain('data-kind="add">+      with: { failures: 5 }');
  });

  test("rollback makes an older version current (with the CSRF token), and the next run uses it", async () => {
    const page = await ui.get("/ui/workflows/views-flow");
    expect((await ui.post("/ui/workflows/views-flow/rollback", { to: "1" })).status).toBe(403); // no CSRF token
    const r = await ui.post("/ui/workflows/views-flow/rollback", { to: "1", _csrf: csrfOf(page.text) });
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe("/ui/workflows/views-flow?rolledBack=1");
    expect((await ui.get(r.headers.get("location")!)).text).toContain('data-version="1" data-current="true"');
    expect((await api.env.store.getWorkflow("views-flow"))!.version).toBe(1);
    const again = await ui.post("/ui/workflows/views-flow/rollback", { to: "2", _csrf: csrfOf(page.text) });
    expect(again.status).toBe(303);
    expect((await api.env.store.getWorkflow("views-flow"))!.version).toBe(2);
  });
});

describe("events", () => {
  test("recent events with the runs they started, and the workflows that refused them with the reason", async () => {
    const ok = await api.call("POST", `${V1}/events`, { json: { name: "views_ready", data: { n: 3 } } });
    expect(ok.status).toBeLessThan(300);
    const refused = await api.call("POST", `${V1}/events`, { json: { name: "views_ready", data: { n: "not a number" } } });
    expect(refused.status).toBeLessThan(300);
    const r = await ui.get("/ui/events");
    expect(r.status).toBe(200);
    const rows = r.text.split('data-testid="event-row"').slice(1);
    expect(rows.length).toBe(2);
    // Newest first: the refused one, then the one that started a run.
    expect(rows[0]).toContain("views-flow</strong>");
    expect(rows[0]).toMatch(/USAGE|BAD_INPUT/);
    const started = ok.json.runs?.[0]?.id ?? ok.json.runIds?.[0] ?? ok.json.event?.runIds?.[0];
    expect(started).toBeTruthy();
    expect(rows[1]).toContain(`/ui/runs/${started}`);
    expect((await ui.get("/ui/events?name=other")).text).toContain("No events.");
  });
});

describe("streams", () => {
  test("a continuous run's recorded figures with charts of the recent samples, live over SSE until it ends", async () => {
    const id = (await api.call("POST", `${V1}/workflows/views-slow/runs`, { json: {} })).json.id as string;
    const running = execute(id);
    await waitUntil(async () => (await api.env.store.getSteps(id)).some((s) => s.name === "nap" && s.status === "running"), 5000, "nap running");
    const stats = (records: number, rate: number): PipelineStats => ({
      source: "nats subject views",
      batches: 1,
      records,
      stored: records,
      duplicate: 0,
      deadLettered: 0,
      ratePerSec: rate,
      lag: 7,
      endToEndMs: { p50: 12, p99: 40, max: 55 },
      stageMs: {},
      endToEndMsOverall: null,
      uptimeMs: 10_000,
    });
    // What the engine records for a continuous group's head every five seconds (execute.ts).
    const t = Date.now() - 60_000;
    const recent = [stats(100, 10), stats(400, 30), stats(900, 50)].map((s, i) => streamSample(s, t + i * 5000));
    await api.env.store.recordStepOutputs(id, "nap", { ...stats(900, 50), recent });
    const page = await ui.get(`/ui/runs/${id}/streams`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('data-testid="stream-records">900<');
    expect(page.text).toContain('data-testid="stream-rate">50/s<');
    expect(page.text).toContain('data-testid="stream-lag">7<');
    expect(page.text).toContain("12 ms / 40 ms");
    expect(page.text).toContain('data-testid="chart-rate" data-points="3"');
    expect(page.text).toMatch(/<polyline points="0,[\d.]+ 180,[\d.]+ 360,4.0"/);
    expect(page.text).toContain(`sse-connect="/ui/runs/${id}/streams/live"`);
    expect((await ui.get(`/ui/runs/${id}`)).text).toContain('data-testid="streams-link"');

    const first = await ui.sse(`/ui/runs/${id}/streams/live`, "figures", { ms: 5000 });
    expect(first.type).toMatch(/text\/event-stream/);
    expect(first.frames.find((f) => f.event === "figures")!.data).toContain('data-testid="stream-records">900<');
    // A new report is sent as it is recorded; the stream ends with the run.
    const later = ui.sse(`/ui/runs/${id}/streams/live`, "done", { ms: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    await api.env.store.recordStepOutputs(id, "nap", { ...stats(1500, 60), recent: [...recent, streamSample(stats(1500, 60), t + 15_000)] });
    expect((await running).status).toBe("succeeded");
    const frames = (await later).frames;
    expect(frames.some((f) => f.event === "figures" && f.data.includes('data-testid="stream-records">1,500<'))).toBe(true);
    expect(frames.at(-1)!.event).toBe("done");
  });
});

describe("recovery and security on the run page", () => {
  test("the decision record, gap ledgers, conflict report, classification and audit trail with its verdict", async () => {
    const dir = join(api.env.home, "docs", "recovery");
    mkdirSync(dir, { recursive: true });
    const decision = join(dir, "decision.json");
    writeFileSync(
      decision,
      JSON.stringify({
        kind: "sluice.dev/recovery-decision-v1",
        class: "rate_limited",
        choice: "wait_retry_after",
        waitMs: 30_000,
        why: "The source said <b>Retry-After</b> 30 s.",
        considered: [
          { strategy: "wait_retry_after", allowed: true, estimatedSuccess: 0.8, sample: 0.77, alpha: 4, beta: 1 },
          { strategy: "switch_source", allowed: false, excludedBecause: "no fallback source", estimatedSuccess: 0.5, alpha: 1, beta: 1 },
        ],
      }),
    );
    const ledger = join(dir, "gaps.json");
    writeFileSync(ledger, JSON.stringify({ kind: "sluice.dev/gap-ledger-v1", gaps: [{ from: 10, to: 19 }], missing: 10 }));
    const conflicts = join(dir, "conflicts.json");
    writeFileSync(
      conflicts,
      JSON.stringify({
        kind: "sluice.dev/conflict-report-v1",
        policy: "priority",
        conflicts: [{ key: { id: 12 }, kept: { source: "primary", value: { price: 1 } }, other: { source: "mirror", value: { price: 2 } }, fields: ["price"] }],
      }),
    );
    const classification = join(dir, "classification.json");
    writeFileSync(
      classification,
      JSON.stringify({
        kind: "sluice.dev/classification-v1",
        region: "eu",
        threshold: 0.8,
        columns: [{ name: "card", class: "card_number", share: 0.98, sampled: 200, rule: { action: "tokenize", from: "class" } }],
      }),
    );
    const id = await docsRun({ decision, gapLedgerBefore: ledger, gapsAfter: [], classification }, { conflictReport: conflicts });
    await api.env.store.appendAudit({
      actor: "tester",
      event: "data.classify",
      outcome: "success",
      origin: "test",
      resource: `run:${id}`,
      runId: id,
      step: "first",
    });
    await api.env.store.appendAudit({
      actor: "tester",
      event: "data.store",
      outcome: "failure",
      origin: "test",
      resource: `run:${id}`,
      runId: id,
      step: "second",
    });

    const r = await ui.get(`/ui/runs/${id}`);
    expect(r.status).toBe(200);
    expect(r.text).toContain('data-testid="decision-choice">wait_retry_after<');
    expect(r.text).toContain("The source said &lt;b&gt;Retry-After&lt;/b&gt; 30 s.");
    expect(r.text).toContain('data-strategy="switch_source" data-chosen="false"');
    expect(r.text).toContain("no fallback source");
    expect(r.text).toMatch(/data-testid="gaps-before">[\s\S]*?10 missing in 1 range: 10–19/);
    expect(r.text).toMatch(/data-testid="gaps-after">[\s\S]*?none \(first\)/);
    expect(r.text).toContain('data-testid="conflict-count">1<');
    expect(r.text).toContain("kept by priority");
    expect(r.text).toMatch(/data-column="card"><td>card<\/td><td>card_number<\/td><td class="num">98.0 %/);
    expect(r.text).toContain("<td>tokenize</td>");
    expect(r.text).toContain('data-testid="audit-verdict" data-ok="true"');
    expect(r.text).toMatch(/audit log intact: \d+ entries/);
    expect(r.text.split('data-testid="audit-row"').length - 1).toBe(2);
    // A run with none of these documents has none of the sections.
    const plain = await ui.get(`/ui/runs/${good}`);
    for (const s of ["recovery", "classification", "audit"]) expect(plain.text).not.toContain(`data-testid="${s}"`);
  });

  test("a document that is missing or of another kind is a problem line, not an error page", async () => {
    const id = await docsRun({ decision: join(api.env.home, "nope.json") }, {});
    const r = await ui.get(`/ui/runs/${id}`);
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/data-testid="decision-problem">[\s\S]*?cannot read .*nope.json \(ENOENT\)/);
  });
});

describe("the runs page, live", () => {
  test("a run created after the page was drawn arrives at the top as a new-run frame", async () => {
    const page = await ui.get("/ui/runs?workflow=views-flow");
    const url = /sse-connect="([^"]+)"/.exec(page.text)![1]!.replace(/&amp;/g, "&");
    expect(url).toContain("topAt=");
    expect(page.text).toContain('sse-swap="new-run" hx-swap="afterbegin"');
    let created = "";
    const sse = await ui.sse(url, "new-run", { ms: 8000, onOpen: async () => (created = await start()) });
    const frame = sse.frames.find((f) => f.event === "new-run");
    expect(frame).toBeDefined();
    expect(created).not.toBe("");
    expect(frame!.data).toContain(`data-run="${created}"`);
  });
});

/**
 * The web UI's pages against a real server on loopback (authentication off): runs list, run
 * page (graph, timeline, step panel), logs (windows of an 8 MB log, load earlier, raw, live tail
 * resuming with Last-Event-ID), quarantine with its CSV, the start form, live SSE frames for a
 * run finishing, CSRF refusals, and escaping of hostile log lines and records.
 */
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { executeRun } from "../../src/engine/index.js";
import { attemptLogFile } from "../../src/engine/attempt-log.js";
import { startApi } from "./api-helpers.js";
import { csrfOf, uiClient } from "./ui-helpers.js";
import { csvCell } from "../../src/server/ui/quarantine.js";

const api = await startApi();
const ui = uiClient(api.server.url);
const V1 = "/api/v1";
const HOSTILE = `<script>alert("x")</script><img src=x onerror=alert(1)>`;

const flow = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: ui-flow
spec:
  params:
    who: { type: string, default: world, description: "who to greet" }
    times: { type: integer, default: 2 }
    loud: { type: boolean, default: false }
  steps:
    - name: hello
      exec:
        command: [sh, -c, 'echo "hello $1"; echo "$2"', sh, "\${{ params.who }}", '${HOSTILE}']
    - name: flaky
      dependsOn: [hello]
      agent: test
      action: flaky
      with: { failures: 1 }
      retry: { limit: 2, backoff: { initial: 50ms, jitter: 0 } }
    - name: items
      dependsOn: [hello]
      forEach: [1, 2, 3]
      agent: test
      action: echo
      with: { value: "\${{ item }}" }
`;
const slow = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: ui-slow
spec:
  steps:
    - name: nap
      agent: test
      action: sleep
      with: { ms: 600 }
`;

const execute = (id: string) => executeRun(id, { store: api.env.store, actions: api.env.actions, home: api.env.home });
const start = async (wf: string, params: Record<string, unknown> = {}) =>
  (await api.call("POST", `${V1}/workflows/${wf}/runs`, { json: { params } })).json.id as string;
let done: string;

beforeAll(async () => {
  for (const text of [flow, slow]) expect((await api.call("POST", `${V1}/workflows`, { body: text })).status).toBe(201);
  done = await start("ui-flow", { who: "tester" });
  expect((await execute(done)).status).toBe("succeeded");
});

describe("runs and run pages", () => {
  test("the runs page lists the run with status, workflow version, trigger, and filters", async () => {
    const r = await ui.get("/ui/runs");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/text\/html/);
    expect(r.text).toContain(`data-run="${done}"`);
    expect(r.text).toMatch(new RegExp(`data-run="${done}" data-status="succeeded"`));
    expect(r.text).toContain('ui-flow<span class="muted"> v1</span>');
    expect((await ui.get("/ui/runs?status=failed")).text).not.toContain(`data-run="${done}"`);
    expect((await ui.get("/ui/runs?workflow=ui-flow&trigger=api")).text).toContain(`data-run="${done}"`);
    expect((await ui.get("/ui/runs?trigger=schedule")).text).not.toContain(`data-run="${done}"`);
    expect((await ui.get("/ui/runs?since=2999-01-01T00:00")).text).not.toContain(`data-run="${done}"`);
    expect((await ui.get("/ui/runs?status=bogus")).status).toBe(400);
    // The page serves its own scripts and stylesheet: nothing from another host.
    expect(r.text).not.toMatch(/src="https?:/);
    for (const a of ["htmx.min.js", "sse.js", "sluice.css"]) expect((await ui.get(`/ui/assets/${a}`)).status).toBe(200);
  });

  test("next page by keyset: two pages of one run each hold different runs", async () => {
    const second = await start("ui-slow");
    const p1 = await ui.get("/ui/runs?limit=1");
    const next = /href="([^"]*after=[^"]*)" rel="next"/.exec(p1.text)![1]!.replace(/&amp;/g, "&");
    const p2 = await ui.get(next);
    expect(p1.text).toContain(`data-run="${second}"`);
    expect(p2.text).not.toContain(`data-run="${second}"`);
    expect(p2.text).toContain(`data-run="${done}"`);
    await api.call("POST", `${V1}/runs/${second}/cancel`);
  });

  test("the run page: graph nodes by status with the fan-out collapsed, timeline with the retry's wait, steps", async () => {
    const r = await ui.get(`/ui/runs/${done}`);
    expect(r.status).toBe(200);
    const nodes = [...r.text.matchAll(/data-testid="dag-node" data-step="([^"]+)" data-status="([^"]+)"/g)].map((m) => [m[1], m[2]]);
    expect(nodes).toEqual([
      ["hello", "succeeded"],
      ["flaky", "succeeded"],
      ["items", "succeeded"],
    ]);
    expect(r.text).toContain("×3 (3 succeeded)");
    expect(r.text.match(/data-testid="timeline-bar"/g)!.length).toBe(4); // hello, flaky ×2, items (one row)
    expect(r.text).toContain('data-testid="timeline-wait"');
    expect(r.text).toContain('data-status="failed"'); // flaky's first attempt
    expect(r.text).not.toContain("sse-connect"); // finished: nothing to follow
  });

  test("the step panel shows attempts with errors, outputs and a log link", async () => {
    const r = await ui.get(`/ui/runs/${done}?step=flaky`);
    expect(r.text).toContain('data-testid="step-panel" data-step="flaky"');
    expect(r.text.match(/data-testid="attempt-row"/g)!.length).toBe(2);
    expect(r.text).toContain("NETWORK_ERROR: planned failure on attempt 1");
    expect(r.text).toContain("&quot;attempt&quot;: 2");
    expect(r.text).toContain(`/ui/runs/${done}/steps/flaky/attempts/1/log`);
    const items = await ui.get(`/ui/runs/${done}?step=items`);
    expect(items.text.match(/items\[\d\]/g)!.length).toBeGreaterThanOrEqual(3);
  });

  test("a hostile log line is escaped in the log page, the step panel never runs it", async () => {
    const r = await ui.get(`/ui/runs/${done}/steps/hello/attempts/1/log`);
    expect(r.status).toBe(200);
    expect(r.text).toContain("hello tester");
    expect(r.text).not.toContain(HOSTILE);
    expect(r.text).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;");
  });
});

describe("logs", () => {
  let id: string;
  let file: string;
  beforeAll(async () => {
    id = await start("ui-slow");
    expect((await execute(id)).status).toBe("succeeded");
    // An 8 MB log (the attempt's own file, grown after the fact): 100,000 numbered lines and one of 100 kB.
    file = attemptLogFile(api.env.home, id, "nap", 1);
    mkdirSync(dirname(file), { recursive: true });
    const lines: string[] = [];
    for (let i = 1; i <= 100_000; i++) lines.push(`line ${i} ${"x".repeat(70)}`);
    lines.splice(50_000, 0, "y".repeat(100_000));
    writeFileSync(file, lines.join("\n") + "\n");
  });

  test("an 8 MB log: the page holds the last 500 lines, load earlier the 500 before, raw the whole file", async () => {
    const r = await ui.get(`/ui/runs/${id}/steps/nap/attempts/1/log`);
    expect(r.status).toBe(200);
    expect(r.text.length).toBeLessThan(200_000);
    expect(r.text.match(/class="ln"/g)!.length).toBe(500);
    expect(r.text).toContain("line 100000 ");
    expect(r.text).toContain("line 99501 ");
    expect(r.text).not.toContain("line 99500 ");
    const more = /hx-get="([^"]+)"/.exec(r.text)![1]!.replace(/&amp;/g, "&");
    const earlier = await ui.get(more);
    expect(earlier.text.match(/class="ln"/g)!.length).toBe(500);
    expect(earlier.text).toContain("line 99001 ");
    expect(earlier.text).toContain("line 99500 ");
    expect(earlier.text).toContain('data-testid="load-earlier"');
    const raw = await fetch(`${api.server.url}/ui/runs/${id}/steps/nap/attempts/1/log/raw`);
    expect(raw.headers.get("content-disposition")).toMatch(/attachment/);
    expect((await raw.arrayBuffer()).byteLength).toBeGreaterThan(8_000_000);
  });

  test("a line longer than the cap is cut and its rest counted", async () => {
    // 100 lines after the long one start at line 50,001 - find the window holding it.
    const size = (await import("node:fs")).statSync(file).size;
    let before = size;
    let text = "";
    for (let i = 0; i < 200 && !text.includes("more bytes"); i++) {
      const r = await ui.get(`/ui/runs/${id}/steps/nap/attempts/1/log/lines?before=${before}&n=5000`);
      text = r.text;
      const m = /before=(\d+)/.exec(text);
      if (!m) break;
      before = Number(m[1]);
    }
    expect(text).toContain("98,000 more bytes");
    expect(text).not.toContain("y".repeat(2_001));
  });

  test("the live tail sends new lines as they are written, resumes from Last-Event-ID, ends with the attempt", async () => {
    const running = await start("ui-slow");
    const going = execute(running);
    await new Promise((r) => setTimeout(r, 150));
    const log = attemptLogFile(api.env.home, running, "nap", 1);
    mkdirSync(dirname(log), { recursive: true });
    appendFileSync(log, "first <b>line</b>\n");
    const page = await ui.get(`/ui/runs/${running}/steps/nap/attempts/1/log`);
    expect(page.text).toContain('data-testid="log-live"');
    const tail = await ui.sse(`/ui/runs/${running}/steps/nap/attempts/1/log/tail?from=0`, "done", {
      onOpen: () => setTimeout(() => appendFileSync(log, "second line\n"), 100),
    });
    await going;
    expect(tail.type).toMatch(/text\/event-stream/);
    const lines = tail.frames.filter((f) => f.event === "lines");
    const all = lines.map((f) => f.data).join("");
    expect(all).toContain("first &lt;b&gt;line&lt;/b&gt;");
    expect(all).toContain("second line");
    const firstEnd = lines[0]!.id!;
    expect(Number(firstEnd)).toBe("first <b>line</b>\n".length);
    const resumed = await ui.sse(`/ui/runs/${running}/steps/nap/attempts/1/log/tail?from=0`, "done", { headers: { "last-event-id": firstEnd } });
    const again = resumed.frames
      .filter((f) => f.event === "lines")
      .map((f) => f.data)
      .join("");
    expect(again).not.toContain("first");
    expect(again).toContain("second line");
  });
});

describe("live status over server-sent events", () => {
  test("the run page's stream sends the run as it is, then again when it finishes, then done", async () => {
    const id = await start("ui-slow");
    const page = await ui.get(`/ui/runs/${id}`);
    expect(page.text).toContain(`sse-connect="/ui/runs/${id}/live"`);
    let finished: Promise<unknown> | undefined;
    const s = await ui.sse(`/ui/runs/${id}/live`, "done", { onOpen: () => (finished = execute(id)) });
    await finished;
    const runs = s.frames.filter((f) => f.event === "run");
    expect(runs[0]!.data).toMatch(/data-testid="run-live" data-status="(pending|running)"/);
    expect(runs.at(-1)!.data).toContain('data-testid="run-live" data-status="succeeded"');
    expect(s.frames.at(-1)).toMatchObject({ event: "done", data: "succeeded" });
  });

  test("the runs page's stream swaps the row of a run whose status moved on", async () => {
    const id = await start("ui-slow");
    const list = await ui.get("/ui/runs");
    const url = /sse-connect="([^"]+)"/.exec(list.text)![1]!.replace(/&amp;/g, "&");
    expect(decodeURIComponent(url)).toContain(`${id}~pending`);
    let finished: Promise<unknown> | undefined;
    const s = await ui.sse(url, "done", { onOpen: () => (finished = execute(id)) });
    await finished;
    const mine = s.frames.filter((f) => f.event === `run-${id}`);
    expect(mine.at(-1)!.data).toContain(`data-run="${id}" data-status="succeeded"`);
  });
});

describe("state changes: forms, CSRF, start", () => {
  test("a POST without the session's CSRF token, or from another origin, is refused; with it, it is done", async () => {
    const id = await start("ui-slow");
    const page = await ui.get(`/ui/runs/${id}`);
    const csrf = csrfOf(page.text);
    expect(page.text).toContain('data-testid="cancel-run"');
    expect((await ui.post(`/ui/runs/${id}/cancel`, {})).status).toBe(403);
    expect((await ui.post(`/ui/runs/${id}/cancel`, { _csrf: "forged" })).status).toBe(403);
    expect((await ui.post(`/ui/runs/${id}/cancel`, { _csrf: csrf }, { origin: "http://evil.example" })).status).toBe(403);
    expect((await api.env.store.getRun(id))!.status).toBe("pending");
    const ok = await ui.post(`/ui/runs/${id}/cancel`, { _csrf: csrf });
    expect(ok.status).toBe(303);
    expect((await api.env.store.getRun(id))!.status).toBe("cancelled");
    // Cancelling again is a conflict, said on the page.
    const again = await ui.post(`/ui/runs/${id}/cancel`, { _csrf: csrf });
    expect(again.status).toBe(409);
    expect(again.text).toContain("already ended");
    // Retry brings it back to the queue.
    expect((await ui.post(`/ui/runs/${id}/retry`, { _csrf: csrf })).status).toBe(303);
    expect((await api.env.store.getRun(id))!.status).toBe("pending");
    await api.call("POST", `${V1}/runs/${id}/cancel`);
  });

  test("the start form is built from the param schema and starts a run with typed params", async () => {
    const form = await ui.get("/ui/start?workflow=ui-flow");
    expect(form.text).toContain('name="who" value="world"');
    expect(form.text).toMatch(/type="number" step="1" name="times" value="2"/);
    expect(form.text).toContain('data-testid="param-loud"');
    expect(form.text).toContain("who to greet");
    const csrf = csrfOf(form.text);
    const bad = await ui.post("/ui/workflows/ui-flow/runs", { _csrf: csrf, _version: "1", who: "x", times: "many" });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain("must be an integer");
    const r = await ui.post("/ui/workflows/ui-flow/runs", { _csrf: csrf, _version: "1", who: "form", times: "3", loud: "true" });
    expect(r.status).toBe(303);
    const id = decodeURIComponent(r.headers.get("location")!.split("/").pop()!);
    const run = (await api.env.store.getRun(id))!;
    expect(run.params).toEqual({ who: "form", times: 3, loud: true });
    expect(run.trigger).toMatchObject({ type: "manual", name: "ui:local" });
    await api.call("POST", `${V1}/runs/${id}/cancel`);
  });
});

describe("quarantine", () => {
  test("records with source, line, step and reasons; filter by reason; CSV export; hostile records escaped", async () => {
    // The quarantine file as the batch steps write it: one JSON record a line.
    const dir = join(api.env.home, "runs", done, "artifacts", "hello");
    mkdirSync(dir, { recursive: true });
    const recs = [
      { source: "in/trades.csv", line: 7, step: "hello", reasons: ['amount: not a decimal: "12,5"'], record: { amount: "12,5" } },
      { source: "in/trades.csv", line: 9, step: "hello", reasons: ['ts: not a timestamp: "yesterday"'], record: HOSTILE },
      { source: "in/trades.csv", line: 12, step: "hello", reasons: ['amount: not a decimal: "=1+2"'], record: { amount: "=1+2" } },
    ];
    writeFileSync(join(dir, "quarantine.ndjson"), recs.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const r = await ui.get(`/ui/runs/${done}/quarantine`);
    expect(r.text.match(/data-testid="quarantine-row"/g)!.length).toBe(3);
    expect(r.text).not.toContain(HOSTILE);
    expect(r.text).toContain("&lt;script&gt;");
    // Reasons grouped without the value that varies per record, offered as filters.
    expect(r.text).toMatch(/amount: not a decimal<\/a> <span class="muted">\(2\)<\/span>/);
    const f = await ui.get(`/ui/runs/${done}/quarantine?reason=${encodeURIComponent("not a decimal")}`);
    expect(f.text.match(/data-testid="quarantine-row"/g)!.length).toBe(2);
    expect(f.text).toContain("2 of 3 quarantined records match");
    const csv = await ui.get(`/ui/runs/${done}/quarantine.csv?reason=amount`);
    expect(csv.headers.get("content-type")).toMatch(/text\/csv/);
    const rows = csv.text.trim().split("\n");
    expect(rows[0]).toBe("source,line,step,reasons,record");
    expect(rows).toHaveLength(3);
    expect(rows[1]).toBe(`in/trades.csv,7,hello,"amount: not a decimal: ""12,5""","{""amount"":""12,5""}"`);
    expect(rows[2]).toContain(`"{""amount"":""=1+2""}"`);
    // A cell a spreadsheet would run as a formula is prefixed with a quote mark.
    expect(csvCell("=HYPERLINK(1)")).toBe("'=HYPERLINK(1)");
    expect(csvCell("-2")).toBe("'-2");
  });
});

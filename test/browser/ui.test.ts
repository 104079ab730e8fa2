/**
 * The web UI in a real browser (Debian's Chromium through playwright-core) against a real server
 * and worker: log in with a token (and be refused without one), start a run from the form by
 * keyboard and watch it finish live, open a failing step's log, cancel a running run, retry a
 * failed one, page through runs, open a quarantine of a real ingestion and filter it, and the
 * Workflows and Events views. The screenshots in docs/screenshots/ (shown in the README) are
 * taken here: `SLUICE_SCREENSHOTS=1 npx vitest run test/browser` refreshes them.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { BrowserContext, Page } from "playwright-core";
import { applyWorkflowText } from "../../src/control/workflows.js";
import { tempDir } from "../helpers.js";
import { NO_CHROMIUM, SCREENSHOTS, startRig, TOKENS, type BrowserRig } from "./browser-helpers.js";

const flows = {
  greet: `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: greet
spec:
  params:
    who: { type: string, default: world, description: "who to greet" }
    times: { type: integer, default: 2 }
  steps:
    - name: hello
      exec:
        command: [sh, -c, 'for i in $(seq 1 $2); do echo "hello $1"; done', sh, "\${{ params.who }}", "\${{ params.times }}"]
    - name: wait
      dependsOn: [hello]
      agent: test
      action: sleep
      with: { ms: 700 }
`,
  broken: `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: broken
spec:
  steps:
    - name: explode
      exec:
        command: [sh, -c, 'echo "reading the source"; echo "boom: the source said no" >&2; exit 3']
`,
  slow: `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: slow
spec:
  steps:
    - name: nap
      agent: test
      action: sleep
      with: { ms: 60000 }
`,
  flaky: `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: flaky
spec:
  steps:
    - name: wobble
      agent: test
      action: flaky
      with: { failures: 1 }
`,
};

const rig: BrowserRig | undefined = NO_CHROMIUM ? undefined : await startRig();
let ctx: BrowserContext;
let page: Page;

const apply = async (text: string, source = "browser-test.yaml") =>
  expect((await applyWorkflowText(rig!.env.store, rig!.env.actions, text, source)).ok).toBe(true);
const shot = (name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
const runIdOfPage = () => new URL(page.url()).pathname.split("/").pop()!;
/**
 * Press Tab until the focus comes round again; true when every control of the page (links,
 * buttons, fields, summaries, focusable panels) was focused on the way, each with a visible ring.
 */
async function tabReachesEverything(): Promise<{ missed: string[]; noRing: string[] }> {
  await page.evaluate("window.__seen = new Set(); window.__noRing = []; document.activeElement?.blur()");
  const total = (await page.evaluate(
    "document.querySelectorAll('a[href], button, input:not([type=hidden]), select, summary, [tabindex=\"0\"]').length",
  )) as number;
  // Date fields take a Tab per part (day, month, year, time), hence the margin.
  for (let i = 0; i < total * 2 + 20; i++) {
    await page.keyboard.press("Tab");
    await page.evaluate(
      "(() => { const e = document.activeElement; if (!e || e === document.body) return; window.__seen.add(e); if (getComputedStyle(e).outlineStyle === 'none') window.__noRing.push(e.outerHTML.slice(0, 80)); })()",
    );
  }
  return (await page.evaluate(
    "({ missed: [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, summary, [tabindex=\"0\"]')].filter((e) => !window.__seen.has(e) && e.getClientRects().length > 0).map((e) => e.outerHTML.slice(0, 120)), noRing: window.__noRing })",
  )) as { missed: string[]; noRing: string[] };
}

const natsUp = () =>
  new Promise<boolean>((resolve) => {
    const sock = connect(4222, "127.0.0.1");
    sock.once("connect", () => (sock.destroy(), resolve(true)));
    sock.once("error", () => resolve(false));
  });

const startRun = async (workflow: string) => {
  const { startWorkflowRun } = await import("../../src/control/runs.js");
  return (await startWorkflowRun(rig!.env.store, { workflow, params: {}, trigger: { type: "api", name: "test" } })).id;
};

beforeAll(async () => {
  if (!rig) return;
  for (const text of Object.values(flows)) await apply(text);
  ctx = await rig.browser.newContext({ viewport: { width: 1200, height: 760 }, baseURL: rig.url });
  page = await ctx.newPage();
});

afterAll(async () => {
  await rig?.close();
});

if (NO_CHROMIUM) test.skip(NO_CHROMIUM, () => undefined);

describe.skipIf(!!NO_CHROMIUM)("the web UI in Chromium", () => {
  test("without a token the UI refuses; with one it lets you in", async () => {
    const anon = await rig!.browser.newContext({ baseURL: rig!.url });
    const p = await anon.newPage();
    await p.goto("/ui/runs");
    expect(new URL(p.url()).pathname).toBe("/ui/login");
    await p.getByTestId("login-token").fill("not-a-token");
    await p.getByTestId("login-submit").click();
    await expect.poll(() => p.getByTestId("login-error").textContent()).toContain("That token is not valid.");
    await anon.close();

    await page.goto("/ui/runs");
    await page.getByTestId("login-token").fill(TOKENS.admin);
    await page.keyboard.press("Enter");
    await page.waitForURL("**/ui/runs");
    expect(await page.getByTestId("who").textContent()).toContain("ada (admin)");
  });

  test("start a run from the form with the keyboard only, and watch it finish live", async () => {
    await page.goto("/ui/start?workflow=greet");
    await page.getByTestId("param-who").fill("browser");
    // Tab through the form to the submit button; the focus ring must be visible on the way.
    let outline = "";
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press("Tab");
      // Strings, not functions: the tests compile without the DOM library.
      const at = (await page.evaluate("document.activeElement?.dataset?.testid ?? ''")) as string;
      if (at === "start-submit") {
        outline = (await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")) as string;
        break;
      }
    }
    expect(outline).toBe("solid");
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/ui\/runs\/[^/]+$/);
    const id = runIdOfPage();
    // No reload: the status arrives over server-sent events.
    await expect.poll(() => page.getByTestId("run-live").getAttribute("data-status"), { timeout: 15_000 }).toBe("running");
    await expect.poll(() => page.getByTestId("run-live").getAttribute("data-status"), { timeout: 15_000 }).toBe("succeeded");
    expect(await page.locator(`[data-testid="step-row"][data-step="hello"][data-status="succeeded"]`).count()).toBe(1);
    expect(await page.getByTestId("run-params").textContent()).toContain('"who": "browser"');
    await page.goto(`/ui/runs/${id}?step=hello#step-panel`);
    await shot("run");
  });

  test("open a failing step's log", async () => {
    const id = await startRun("broken");
    await page.goto(`/ui/runs/${id}`);
    await expect.poll(() => page.getByTestId("run-live").getAttribute("data-status"), { timeout: 15_000 }).toBe("failed");
    await page.locator('[data-testid="step-row"][data-step="explode"] a').click();
    await page.getByTestId("log-link").first().click();
    await page.waitForURL(/\/log$/);
    await expect.poll(() => page.getByTestId("log").textContent()).toContain("boom: the source said no");
    expect(await page.getByTestId("log").textContent()).toContain("reading the source");
    await shot("log");
  });

  test("cancel a running run", async () => {
    const id = await startRun("slow");
    await page.goto(`/ui/runs/${id}`);
    await expect.poll(() => page.getByTestId("run-live").getAttribute("data-status"), { timeout: 15_000 }).toBe("running");
    await page.getByTestId("cancel-run").click();
    await page.waitForURL(`**/ui/runs/${id}`);
    await expect.poll(() => page.getByTestId("run-live").getAttribute("data-status"), { timeout: 15_000 }).toBe("cancelled");
  });

  test("retry a failed run: it goes on from the failed step and succeeds", async () => {
    const id = await startRun("flaky");
    await page.goto(`/ui/runs/${id}`);
    await expect.poll(() => page.getByTestId("run-live").getAttribute("data-status"), { timeout: 15_000 }).toBe("failed");
    await page.getByTestId("retry-run").click();
    await page.waitForURL(`**/ui/runs/${id}`);
    await expect.poll(() => page.getByTestId("run-live").getAttribute("data-status"), { timeout: 15_000 }).toBe("succeeded");
    expect((await rig!.env.store.getAttempts(id)).filter((a) => a.step === "wobble").length).toBe(2);
  });

  test("a new run appears at the top of the runs list without a reload; page through the runs", async () => {
    await page.goto("/ui/runs?limit=3");
    const id = await startRun("greet");
    await expect.poll(() => page.getByTestId("run-row").first().getAttribute("data-run"), { timeout: 10_000 }).toBe(id);
    await expect.poll(() => page.locator(`[data-run="${id}"]`).getAttribute("data-status"), { timeout: 15_000 }).toBe("succeeded");
    await page.goto("/ui/runs?limit=3");
    await shot("runs");
    const first = await page.getByTestId("run-row").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-run")));
    expect(first.length).toBe(3);
    await page.getByTestId("next-page").click();
    const second = await page.getByTestId("run-row").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-run")));
    expect(second.length).toBeGreaterThan(0);
    expect(second.some((r) => first.includes(r))).toBe(false);
  });

  test("open the quarantine of a real ingestion and filter it by reason", async () => {
    await apply(readFileSync("workflows/base-data-ingestion-workflow-standard-ingestion.yaml", "utf8"));
    const dir = tempDir();
    const csv = readFileSync("examples/data/trades-sample.csv", "utf8").trimEnd().split("\n").slice(0, 200);
    csv.push("T-900000001,2026-11-02T09:31:00Z,IBM,BUY,12x,226.1,ACC-1,a@example.com,", "T-900000002,yesterday,IBM,BUY,10,226.1,ACC-1,a@example.com,");
    writeFileSync(join(dir, "trades.csv"), csv.join("\n") + "\n");
    await page.goto("/ui/start?workflow=standard-ingestion");
    await page.getByTestId("param-source").fill(join(dir, "trades.csv"));
    await page.getByTestId("param-destination").fill(`sqlite:${join(dir, "warehouse.db")}`);
    await page.getByTestId("start-submit").click();
    await page.waitForURL(/\/ui\/runs\/[^/]+$/);
    await expect.poll(() => page.getByTestId("run-live").getAttribute("data-status"), { timeout: 40_000 }).toBe("succeeded");
    await page.getByTestId("quarantine-link").click();
    // The sample has bad rows of its own besides the two added here.
    await expect.poll(() => page.getByTestId("quarantine-row").count()).toBeGreaterThanOrEqual(2);
    const all = await page.getByTestId("quarantine-row").count();
    expect(await page.getByTestId("quarantine-table").textContent()).toContain("yesterday");
    await page.getByTestId("filter-reason").fill("quantity");
    await page.keyboard.press("Enter");
    await page.waitForURL(/reason=quantity/);
    const shown = await page.getByTestId("quarantine-row").count();
    expect(shown).toBeGreaterThan(0);
    expect(shown).toBeLessThan(all);
    expect(await page.getByTestId("quarantine-table").textContent()).toContain("12x");
    expect(await page.getByTestId("quarantine-table").textContent()).not.toContain("yesterday");
    await shot("quarantine");
  });

  test("workflows: versions, the diff between two, rollback; events", async () => {
    await apply(flows.greet.replace("ms: 700", "ms: 300"));
    await page.goto("/ui/workflows");
    await page.locator('[data-workflow="greet"] a').first().click();
    await page.getByTestId("diff-form").getByRole("button").click();
    await expect.poll(() => page.locator('[data-kind="add"]').count()).toBeGreaterThan(0);
    expect(await page.getByTestId("diff").textContent()).toContain("+      with: { ms: 300 }");
    await shot("workflow-diff");
    await page.goBack();
    await page.getByTestId("rollback-1").click();
    await expect.poll(() => page.locator('[data-version="1"][data-current="true"]').count()).toBe(1);
    await page.goto("/ui/events");
    expect(await page.getByTestId("events-table").isVisible()).toBe(true);
  });

  test("a continuous run from NATS: its Streams view fills and the chart grows live", async (t) => {
    if (!(await natsUp())) return t.skip("NATS is not listening on 127.0.0.1:4222 (.ci/run starts it)");
    await apply(readFileSync("workflows/base-data-ingestion-workflow-realtime-stream.yaml", "utf8"));
    const dir = tempDir();
    const subject = `sluiceui.t${Date.now().toString(36)}`;
    const { startWorkflowRun } = await import("../../src/control/runs.js");
    const run = await startWorkflowRun(rig!.env.store, {
      workflow: "realtime-stream-ingestion",
      params: { subject, destination: `sqlite:${join(dir, "stream.db")}` },
      trigger: { type: "api", name: "test" },
    });
    const rows = readFileSync("examples/data/trades-sample.csv", "utf8").trimEnd().split("\n");
    const head = rows[0]!.split(",");
    const trades = rows.slice(1).map((line) => JSON.stringify(Object.fromEntries(line.split(",").map((v, i) => [head[i], v]))));
    const { openStreamPublisher } = await import("../../src/connectors/streams/index.js");
    const pub = await openStreamPublisher({ broker: "nats", url: "nats://127.0.0.1:4222", subject });
    let stop = false;
    const publishing = (async () => {
      for (let i = 0; !stop && i < trades.length; i++) {
        await pub.publish(trades[i]!);
        if (i % 20 === 19) await new Promise((r) => setTimeout(r, 50));
      }
      await pub.flush();
    })();
    try {
      await page.goto(`/ui/runs/${run.id}/streams`);
      // Figures are recorded every five seconds; the chart needs two samples.
      await expect
        .poll(async () => Number((await page.getByTestId("stream-records").first().textContent())?.replace(/,/g, "") ?? 0), { timeout: 20_000 })
        .toBeGreaterThan(0);
      await expect
        .poll(async () => Number(await page.getByTestId("chart-rate").first().getAttribute("data-points")), { timeout: 20_000 })
        .toBeGreaterThanOrEqual(2);
      expect(await page.getByTestId("stream-rate").first().textContent()).toMatch(/\/s$/);
      await shot("streams");
    } finally {
      stop = true;
      await publishing;
      await pub.close();
      await rig!.env.store.requestCancel(run.id);
    }
    await expect.poll(async () => (await rig!.env.store.getRun(run.id))!.status, { timeout: 20_000 }).toBe("cancelled");
  }, 45_000);

  test("keyboard: Tab reaches every control of the main views, each with a visible focus ring", async () => {
    const failed = await startRun("broken");
    await expect.poll(async () => (await rig!.env.store.getRun(failed))!.status, { timeout: 15_000 }).toBe("failed");
    for (const url of ["/ui/runs", `/ui/runs/${failed}?step=explode`, "/ui/workflows/greet", "/ui/events", `/ui/runs/${failed}/steps/explode/attempts/1/log`]) {
      await page.goto(url);
      expect(await tabReachesEverything(), url).toEqual({ missed: [], noRing: [] });
    }
  });
});

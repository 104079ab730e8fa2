/**
 * The UI's Workflows, Events and Streams routes, and the "what changed since the last success"
 * diff of a failed run. Mounted by routes.tsx behind the same session and CSRF checks; the page
 * shell and the role check come from there so every view refuses and renders alike.
 */
import type { Context, Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { Child } from "hono/jsx";
import { SluiceError } from "../../errors.js";
import { REFUSED_NAMESPACE } from "../../control/events.js";
import { rollbackWorkflow } from "../../control/workflows.js";
import type { WorkflowVersion } from "../../store/types.js";
import { hasRole, type Principal, type Role } from "../auth.js";
import type { ServerDeps } from "../deps.js";
import type { Session } from "./session.js";
import { UI } from "./layout.js";
import { FINAL } from "./runs-page.js";
import { DiffView, diffLines, WorkflowsList, WorkflowView } from "./workflows-page.js";
import { eventRows, EventsView, type Refusal } from "./events-page.js";
import { streamFigures, StreamsBlock, StreamsView } from "./streams-page.js";

export interface UiEnv {
  Variables: { principal: Principal; session: Session };
}

export interface ViewHelpers {
  page: (c: Context<UiEnv>, title: string, body: Child, status?: 200 | 400 | 403 | 404 | 409 | 500) => Response | Promise<Response>;
  need: (c: Context<UiEnv>, role: Role) => Promise<Response | undefined>;
  pollMs: number;
  streamMaxMs: number;
}

const EVENTS_SHOWN = 50;

async function versionOf(deps: ServerDeps, name: string, version: number): Promise<WorkflowVersion> {
  const history = await deps.store.workflowHistory(name);
  if (history.length === 0) throw new SluiceError("NOT_FOUND", `no workflow named ${name} has been applied`);
  const v = history.find((h) => h.version === version);
  if (!v) throw new SluiceError("NOT_FOUND", `workflow ${name} has no version ${version} (versions: ${history.map((h) => h.version).join(", ")})`);
  return v;
}

const versionParam = (c: Context, name: string): number => {
  const v = Number(c.req.query(name));
  if (!Number.isInteger(v) || v < 1)
    throw new SluiceError("BAD_INPUT", `query.${name}: a version number (1, 2, …) is needed`, { details: { field: `query.${name}` } });
  return v;
};

export function viewRoutes(ui: Hono<UiEnv>, deps: ServerDeps, h: ViewHelpers): void {
  ui.get("/workflows", async (c) => {
    const list = (await deps.store.listWorkflows()).sort((a, b) => a.name.localeCompare(b.name));
    return h.page(c, "Workflows", <WorkflowsList workflows={list} />);
  });

  ui.get("/workflows/:name", async (c) => {
    const name = c.req.param("name");
    const history = await deps.store.workflowHistory(name);
    if (history.length === 0) throw new SluiceError("NOT_FOUND", `no workflow named ${name} has been applied`);
    const notice = c.req.query("rolledBack") ? `v${c.req.query("rolledBack")} is current again.` : undefined;
    return h.page(
      c,
      name,
      <WorkflowView name={name} history={history} canRollback={hasRole(c.get("principal"), "admin")} csrf={c.get("session").csrf} notice={notice} />,
    );
  });

  ui.get("/workflows/:name/diff", async (c) => {
    const name = c.req.param("name");
    const [from, to] = await Promise.all([versionOf(deps, name, versionParam(c, "from")), versionOf(deps, name, versionParam(c, "to"))]);
    return h.page(c, `${name} v${from.version} → v${to.version}`, <DiffView name={name} from={from} to={to} lines={diffLines(from.yaml, to.yaml)} />);
  });

  ui.post("/workflows/:name/rollback", async (c) => {
    const refused = await h.need(c, "admin");
    if (refused) return refused;
    const name = c.req.param("name");
    const form = await c.req.parseBody();
    const to = Number(form.to);
    const done = await rollbackWorkflow(deps.store, name, Number.isInteger(to) && to > 0 ? to : undefined);
    deps.log?.info({ workflow: name, version: done.version, by: c.get("principal").name }, "workflow rolled back from the UI");
    return c.redirect(`${UI}/workflows/${encodeURIComponent(name)}?rolledBack=${done.version}`, 303);
  });

  // A failed run: its version against the version of the workflow's last successful run.
  ui.get("/runs/:id/diff", async (c) => {
    const id = c.req.param("id");
    const run = await deps.store.getRun(id);
    if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${id}`);
    if (run.version == null)
      throw new SluiceError("CONFLICT", `run ${id} was not started from a registered workflow version (sluice run FILE), so there is nothing to compare`);
    const last = (await deps.store.listRunsPage({ workflow: run.workflow, status: "succeeded", limit: 1 })).runs[0];
    if (!last || last.version == null)
      throw new SluiceError("CONFLICT", `workflow ${run.workflow} has no successful run of a registered version to compare run ${id} with`);
    const [good, bad] = await Promise.all([versionOf(deps, run.workflow, last.version), versionOf(deps, run.workflow, run.version)]);
    const why =
      good.version === bad.version
        ? `Run ${id} used v${bad.version}, the same version as the last successful run ${last.id}: the workflow did not change, so look at its inputs and sources.`
        : `Run ${id} used v${bad.version}; the last successful run, ${last.id}, used v${good.version}.`;
    return h.page(c, `What changed: ${id}`, <DiffView name={run.workflow} from={good} to={bad} lines={diffLines(good.yaml, bad.yaml)} why={why} />);
  });

  ui.get("/events", async (c) => {
    const name = c.req.query("name") || undefined;
    const [events, workflows] = await Promise.all([deps.store.listEvents({ name, limit: EVENTS_SHOWN }), deps.store.listWorkflows()]);
    const runs = await deps.store.getRunSummaries(events.flatMap((e) => e.runIds));
    const refusals = new Map<string, Refusal[]>();
    await Promise.all(
      events.map(async (e) => {
        const got = await deps.store.getState(REFUSED_NAMESPACE, e.id);
        if (Array.isArray(got?.value)) refusals.set(e.id, got.value as Refusal[]);
      }),
    );
    const names = new Set<string>(events.map((e) => e.name));
    for (const w of workflows) for (const t of w.spec.spec.triggers ?? []) if (t.event) names.add(t.event);
    if (name) names.add(name);
    return h.page(c, "Events", <EventsView rows={eventRows(events, runs, refusals)} name={name} names={[...names].sort()} />);
  });

  ui.get("/runs/:id/streams", async (c) => {
    const id = c.req.param("id");
    const run = await deps.store.getRun(id);
    if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${id}`);
    const figures = streamFigures(await deps.store.getSteps(id));
    return h.page(c, `Streams ${id}`, <StreamsView run={run} figures={figures} live={!FINAL.has(run.status)} />);
  });

  // The figures block, sent at once and again whenever the recorded outputs change, until the run ends.
  ui.get("/runs/:id/streams/live", async (c) => {
    const id = c.req.param("id");
    if (!(await deps.store.getRun(id))) throw new SluiceError("NOT_FOUND", `no run with id ${id}`);
    return streamSSE(c, async (stream) => {
      let aborted = false;
      stream.onAbort(() => void (aborted = true));
      let last = "";
      const until = Date.now() + h.streamMaxMs;
      while (!aborted && Date.now() < until) {
        const [run, steps] = await Promise.all([deps.store.getRun(id), deps.store.getSteps(id)]);
        if (!run) return;
        const html = String(<StreamsBlock figures={streamFigures(steps)} />);
        if (html !== last) {
          last = html;
          await stream.writeSSE({ event: "figures", data: html });
        }
        if (FINAL.has(run.status)) {
          await stream.writeSSE({ event: "done", data: run.status });
          return;
        }
        await stream.sleep(h.pollMs);
      }
    });
  });
}

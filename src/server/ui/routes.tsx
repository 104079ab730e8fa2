/**
 * The web UI under /ui: server-rendered pages (Hono JSX) over the same store and control plane as
 * the JSON API, htmx for the parts that change in place, server-sent events for live status and
 * log tails. No state of its own beyond what the store holds, like the API.
 *
 * Every page needs a session (session.ts) unless authentication is off; every POST must come
 * from this origin and carry the session's CSRF token; each button is checked against the role
 * on the server, not only hidden in the page.
 */
import { createReadStream } from "node:fs";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Readable } from "node:stream";
import { Hono, type Context } from "hono";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { cancelRun, resumeRun, retryRun, startWorkflowRun } from "../../control/runs.js";
import { attemptLogFile } from "../../engine/attempt-log.js";
import { TRIGGER_TYPES, type RunStatus, type RunSummary, type RunTrigger } from "../../store/types.js";
import { authEnabled, hasRole, type Role } from "../auth.js";
import type { ServerDeps } from "../deps.js";
import { statusFor } from "../errors.js";
import { CSS } from "./style.js";
import { Page, UI } from "./layout.js";
import { sameOrigin, sessions } from "./session.js";
import { FINAL, RUN_STATUSES, RunRow, RunsView } from "./runs-page.js";
import { fingerprint, runModel } from "./run-model.js";
import { RunLive, RunView } from "./run-page.js";
import { linesBefore, linesFrom, logSize } from "./log-file.js";
import { Earlier, LogLines, LogView } from "./logs-page.js";
import { quarantineCsv, quarantineFiles, readQuarantineView } from "./quarantine.js";
import { QuarantinePage } from "./quarantine-page.js";
import { LoginPage, StartForm } from "./forms-page.js";
import type { Child } from "hono/jsx";
import { viewRoutes, type UiEnv } from "./view-routes.js";
import { auditView, classifications, recoveryDocs } from "./run-documents.js";
import { AuditSection, ClassificationSection, RecoverySection } from "./run-documents-page.js";
import { streamFigures } from "./streams-page.js";

const require = createRequire(import.meta.url);
/** Shipped with the package (dependencies), read once: nothing is fetched at run time. */
const ASSETS: Record<string, { type: string; body: string }> = {
  "sluice.css": { type: "text/css; charset=utf-8", body: CSS },
  "htmx.min.js": { type: "text/javascript; charset=utf-8", body: readFileSync(require.resolve("htmx.org/dist/htmx.min.js"), "utf8") },
  "sse.js": { type: "text/javascript; charset=utf-8", body: readFileSync(require.resolve("htmx-ext-sse/dist/sse.min.js"), "utf8") },
};

/** Lines of a log page; "load earlier" adds as many again. */
const LOG_LINES = 500;
const LOG_LINES_MAX = 5_000;
/** Bytes one tail event carries at most: a burst of output arrives over several events. */
const TAIL_CHUNK = 256 * 1024;
/** A live stream ends after this and the browser reconnects (resuming): no connection lives for ever. */
const STREAM_MAX_MS = 5 * 60 * 1000;
const QUARANTINE_SHOWN = 500;
/** New runs one poll of the runs page's live stream adds at most (a burst beyond is on the next reload). */
const NEW_RUNS_MAX = 20;

/** datetime-local gives "2024-05-01T10:00" with no zone: the UI says UTC, so it is read as UTC. */
function utc(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const iso = /(Z|[+-]\d\d:\d\d)$/.test(text) ? text : `${text}Z`;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new SluiceError("BAD_INPUT", `"${text}" is not a date and time (2024-05-01T10:00)`, { details: { field: "query" } });
  return new Date(t).toISOString();
}

const empty = (v: unknown) => (v === "" ? undefined : v);
const RunsQuery = z.object({
  workflow: z.preprocess(empty, z.string().max(200).optional()),
  status: z.preprocess(empty, z.enum(RUN_STATUSES).optional()),
  trigger: z.preprocess(empty, z.enum(TRIGGER_TYPES).optional()),
  since: z.preprocess(empty, z.string().max(40).optional()),
  until: z.preprocess(empty, z.string().max(40).optional()),
  after: z.preprocess(empty, z.string().max(400).optional()),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

function parseQuery<T extends z.ZodType>(schema: T, c: Context): z.output<T> {
  const r = schema.safeParse(c.req.query());
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new SluiceError("BAD_INPUT", `query.${i.path.join(".")}: ${i.message}`, { details: { field: `query.${i.path.join(".")}` } });
  }
  return r.data;
}

const intParam = (c: Context, name: string) => {
  const v = Number(c.req.param(name));
  if (!Number.isInteger(v) || v < 1) throw new SluiceError("NOT_FOUND", `no attempt ${c.req.param(name)}`);
  return v;
};

export function uiRoutes(deps: ServerDeps): Hono<UiEnv> {
  const ui = new Hono<UiEnv>();
  const auth = sessions(deps.auth);
  const authOn = authEnabled(deps.auth);
  const pollMs = deps.uiPollMs ?? 1000;

  const page = (c: Context<UiEnv>, title: string, body: Child, status: 200 | 400 | 403 | 404 | 409 | 500 = 200) =>
    c.html(
      <Page title={title} who={c.get("principal")} authOn={authOn} csrf={c.get("session").csrf}>
        {body}
      </Page>,
      status,
    );
  const refuse = (c: Context<UiEnv>, status: 401 | 403, message: string) =>
    c.get("session")
      ? page(
          c,
          "Refused",
          <p class="notice" role="alert" data-testid="refused">
            {message}
          </p>,
          403,
        )
      : c.html(<LoginPage next={`${UI}/runs`} error={message} />, status);
  const need = async (c: Context<UiEnv>, role: Role): Promise<Response | undefined> =>
    hasRole(c.get("principal"), role) ? undefined : refuse(c, 403, `This needs the ${role} role; ${c.get("principal").name} has ${c.get("principal").role}.`);

  ui.onError((err, c) => {
    const known = err instanceof SluiceError;
    if (!known) deps.log?.error({ err, path: c.req.path }, "UI request failed");
    const status = known ? statusFor(err.code) : 500;
    const message = known ? err.message : "internal error; the server log has the details";
    const body = (
      <>
        <h1>{status === 404 ? "Not found" : "Something went wrong"}</h1>
        <p class="notice" role="alert" data-testid="error-message">
          {message}
        </p>
        <p>
          <a href={`${UI}/runs`}>Back to the runs</a>
        </p>
      </>
    );
    if (!c.get("session")) return c.html(<LoginPage next={`${UI}/runs`} error={message} />, status as 400);
    return page(c, "Error", body, (status === 400 || status === 404 || status === 409 ? status : 500) as 400);
  });

  ui.get("/assets/:file", (c) => {
    const a = ASSETS[c.req.param("file")];
    if (!a) return c.text("no such asset", 404);
    return c.body(a.body, 200, { "Content-Type": a.type, "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff" });
  });

  ui.get("/login", (c) => {
    if (!authOn) return c.redirect(`${UI}/runs`, 303);
    return c.html(<LoginPage next={safeNext(c.req.query("next"))} />);
  });
  ui.post("/login", async (c) => {
    if (!sameOrigin(c)) return c.html(<LoginPage next={`${UI}/runs`} error="This form was sent from another site." />, 403);
    const form = await c.req.parseBody();
    const token = typeof form.token === "string" ? form.token.trim() : "";
    const next = safeNext(typeof form.next === "string" ? form.next : undefined);
    const who = token ? auth.login(c, token) : undefined;
    if (!who) {
      deps.log?.warn({ path: c.req.path }, "UI login refused: the token is not valid");
      return c.html(<LoginPage next={next} error="That token is not valid." />, 401);
    }
    deps.log?.info({ by: who.name }, "UI login");
    return c.redirect(next, 303);
  });

  // Everything below needs a session; state changes also this origin and the CSRF token.
  ui.use("*", async (c, next) => {
    const s = auth.read(c);
    if (!s) {
      if (c.req.method === "GET" && !c.req.header("accept")?.includes("text/event-stream"))
        return c.redirect(`${UI}/login?next=${encodeURIComponent(c.req.path + new URL(c.req.url).search)}`, 303);
      return c.html(<LoginPage next={`${UI}/runs`} error="Log in first." />, 401);
    }
    c.set("session", s);
    c.set("principal", s.principal);
    if (c.req.method !== "GET" && c.req.method !== "HEAD") {
      if (!sameOrigin(c)) return refuse(c, 403, "This request came from another site and was refused.");
      const form = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
      const presented = c.req.header("x-csrf-token") ?? (typeof form._csrf === "string" ? form._csrf : undefined);
      if (!auth.csrfOk(s, presented)) return refuse(c, 403, "This form is out of date or did not come from this site; reload the page and try again.");
    }
    return next();
  });

  ui.post("/logout", (c) => (auth.logout(c), c.redirect(`${UI}/login`, 303)));
  ui.get("/", (c) => c.redirect(`${UI}/runs`, 303));

  ui.get("/runs", async (c) => {
    const q = parseQuery(RunsQuery, c);
    const [pageOfRuns, workflows] = await Promise.all([
      deps.store.listRunsPage({
        workflow: q.workflow,
        status: q.status as RunStatus | undefined,
        trigger: q.trigger as RunTrigger["type"] | undefined,
        since: utc(q.since),
        until: utc(q.until),
        after: q.after,
        limit: q.limit,
      }),
      deps.store.listWorkflows(),
    ]);
    const names = workflows.map((w) => w.name);
    if (q.workflow && !names.includes(q.workflow)) names.push(q.workflow);
    return page(c, "Runs", <RunsView q={q} page={pageOfRuns} workflows={names} canStart={hasRole(c.get("principal"), "operator")} first={!q.after} />);
  });

  // Live rows of the runs page: `ids` lists id~status as the page showed them; a row is sent when its status moved on.
  ui.get("/runs/live", (c) => {
    const shown = new Map(
      (c.req.query("ids") ?? "")
        .split(",")
        .slice(0, 200)
        .map((x) => x.split("~") as [string, string | undefined])
        .filter(([id]) => id)
        .map(([id, st]) => [id, st ?? ""]),
    );
    // `top`/`topAt`: the first page's newest run and its creation time (the page's render time when
    // it was empty); runs created after it that match the page's filters are sent as `new-run`.
    const top = c.req.query("top") ?? "";
    const topAt = c.req.query("topAt");
    const q = topAt === undefined ? undefined : parseQuery(RunsQuery, c);
    const newer = (r: RunSummary) => r.createdAt > topAt! || (r.createdAt === topAt && top !== "" && r.id > top);
    const seen = new Set<string>();
    return streamSSE(c, async (stream) => {
      let aborted = false;
      stream.onAbort(() => void (aborted = true));
      const until = Date.now() + STREAM_MAX_MS;
      while (!aborted && Date.now() < until) {
        if (q) {
          const fresh = await deps.store.listRunsPage({
            workflow: q.workflow,
            status: q.status as RunStatus | undefined,
            trigger: q.trigger as RunTrigger["type"] | undefined,
            limit: NEW_RUNS_MAX,
          });
          for (const r of fresh.runs.filter((x) => newer(x) && !seen.has(x.id)).reverse()) {
            seen.add(r.id);
            if (!FINAL.has(r.status)) shown.set(r.id, r.status);
            await stream.writeSSE({ event: "new-run", data: String(<RunRow run={r} />) });
          }
        }
        const rows = await deps.store.getRunSummaries([...shown.keys()]);
        for (const r of rows) {
          const key = `${r.status}`;
          if (shown.get(r.id) === key) continue;
          shown.set(r.id, key);
          await stream.writeSSE({ event: `run-${r.id}`, data: String(<RunRow run={r} />) });
        }
        if (!q && rows.every((r) => FINAL.has(r.status))) {
          await stream.writeSSE({ event: "done", data: "" });
          return;
        }
        await stream.sleep(pollMs);
      }
    });
  });

  ui.get("/runs/:id", async (c) => {
    const id = c.req.param("id");
    const model = await loadModel(deps, id);
    const step = c.req.query("step") || undefined;
    const [recovery, classified, audit] = await Promise.all([recoveryDocs(model.steps), classifications(model.steps), auditView(deps.store, deps.home, id)]);
    return page(
      c,
      `${model.run.workflow} ${id}`,
      <RunView
        model={model}
        selected={step}
        canOperate={hasRole(c.get("principal"), "operator")}
        csrf={c.get("session").csrf}
        streams={streamFigures(model.steps).length > 0}
      >
        {recovery && <RecoverySection docs={recovery} />}
        {classified.length > 0 && <ClassificationSection list={classified} />}
        {audit && <AuditSection audit={audit} />}
      </RunView>,
    );
  });

  // The live part of a run page: sent at once, then whenever it changes, until the run ends.
  ui.get("/runs/:id/live", async (c) => {
    const id = c.req.param("id");
    const step = c.req.query("step") || undefined;
    await loadModel(deps, id); // 404 before the stream starts
    return streamSSE(c, async (stream) => {
      let aborted = false;
      stream.onAbort(() => void (aborted = true));
      let last = "";
      const until = Date.now() + STREAM_MAX_MS;
      while (!aborted && Date.now() < until) {
        const [run, steps, attempts] = await Promise.all([deps.store.getRun(id), deps.store.getSteps(id), deps.store.getAttempts(id)]);
        if (!run) return;
        const fp = fingerprint(run, steps, attempts);
        if (fp !== last) {
          last = fp;
          const model = runModel(run, steps, attempts);
          const live = (
            <RunLive
              model={model}
              selected={step}
              canOperate={hasRole(c.get("principal"), "operator")}
              csrf={c.get("session").csrf}
              streams={streamFigures(steps).length > 0}
            />
          );
          await stream.writeSSE({ event: "run", data: String(live) });
        }
        if (FINAL.has(run.status)) {
          await stream.writeSSE({ event: "done", data: run.status });
          return;
        }
        await stream.sleep(pollMs);
      }
    });
  });

  for (const op of ["cancel", "resume", "retry"] as const) {
    ui.post(`/runs/:id/${op}`, async (c) => {
      const refused = await need(c, "operator");
      if (refused) return refused;
      const id = c.req.param("id");
      try {
        if (op === "cancel") await cancelRun(deps.store, id);
        else if (op === "resume") await resumeRun(deps.store, id);
        else await retryRun(deps.store, id);
      } catch (err) {
        if (!(err instanceof SluiceError) || err.code !== "CONFLICT") throw err;
        const model = await loadModel(deps, id);
        return page(c, id, <RunView model={model} canOperate csrf={c.get("session").csrf} notice={err.message} />, 409);
      }
      deps.log?.info({ run: id, by: c.get("principal").name }, `run ${op} requested from the UI`);
      return c.redirect(`${UI}/runs/${encodeURIComponent(id)}`, 303);
    });
  }

  ui.get("/start", async (c) => {
    const refused = await need(c, "operator");
    if (refused) return refused;
    const name = c.req.query("workflow") ?? "";
    const wf = await deps.store.getWorkflow(name);
    if (!wf) throw new SluiceError("NOT_FOUND", `no current workflow named ${name}; apply it first (sluice apply FILE)`);
    return page(c, `Start ${name}`, <StartForm workflow={name} version={wf.version} params={wf.spec.spec.params ?? {}} csrf={c.get("session").csrf} />);
  });

  ui.post("/workflows/:name/runs", async (c) => {
    const refused = await need(c, "operator");
    if (refused) return refused;
    const name = c.req.param("name");
    const form = await c.req.parseBody();
    const version = Number(form._version) || undefined;
    const given: Record<string, string> = {};
    for (const [k, v] of Object.entries(form)) if (!k.startsWith("_") && typeof v === "string" && v !== "") given[k] = v;
    try {
      const run = await startWorkflowRun(deps.store, {
        workflow: name,
        version,
        params: given,
        trigger: { type: "manual", name: `ui:${c.get("principal").name}` },
      });
      deps.log?.info({ run: run.id, workflow: name, by: c.get("principal").name }, "run started from the UI");
      return c.redirect(`${UI}/runs/${encodeURIComponent(run.id)}`, 303);
    } catch (err) {
      if (!(err instanceof SluiceError) || err.code !== "USAGE") throw err;
      const wf = await deps.store.getWorkflow(name, version);
      if (!wf) throw err;
      return page(
        c,
        `Start ${name}`,
        <StartForm workflow={name} version={wf.version} params={wf.spec.spec.params ?? {}} csrf={c.get("session").csrf} error={err.message} given={given} />,
        400,
      );
    }
  });

  const logBase = "/runs/:id/steps/:step/attempts/:n/log";
  ui.get(logBase, async (c) => {
    const { id, step, n, attempt, file } = await findLog(deps, c);
    const size = await logSize(file);
    const live = attempt.status === "running";
    const lines = Math.min(LOG_LINES_MAX, Number(c.req.query("n")) || LOG_LINES);
    const end = size ? (live ? size.complete : size.size) : 0;
    const window = size ? await linesBefore(file, end, lines) : { lines: [], start: 0, end: 0 };
    return page(
      c,
      `Log ${step} #${n}`,
      <LogView run={id} step={step} n={n} status={attempt.status} window={window} lines={lines} live={live} size={size?.size ?? 0} />,
    );
  });

  ui.get(`${logBase}/lines`, async (c) => {
    const { id, step, n, file } = await findLog(deps, c);
    const before = Math.max(0, Number(c.req.query("before")) || 0);
    const lines = Math.min(LOG_LINES_MAX, Number(c.req.query("n")) || LOG_LINES);
    const base = `${UI}/runs/${encodeURIComponent(id)}/steps/${encodeURIComponent(step)}/attempts/${n}/log`;
    return c.html(<Earlier base={base} window={await linesBefore(file, before, lines)} n={lines} />);
  });

  ui.get(`${logBase}/raw`, async (c) => {
    const { id, step, n, file } = await findLog(deps, c);
    const size = await logSize(file);
    if (!size) throw new SluiceError("NOT_FOUND", `attempt ${n} of step ${step} of run ${id} wrote no log`);
    const body = Readable.toWeb(createReadStream(file, { end: Math.max(0, size.size - 1) })) as ReadableStream<Uint8Array>;
    const name = `${id}-${step}-${n}.log`.replace(/[^A-Za-z0-9._-]/g, "_");
    return c.body(size.size === 0 ? "" : body, 200, {
      "Content-Type": "text/plain; charset=utf-8",
      "Content-Disposition": `attachment; filename="${name}"`,
      "X-Content-Type-Options": "nosniff",
    });
  });

  // The live tail: each event's id is the byte offset it ends at; a reconnect sends it back as Last-Event-ID.
  ui.get(`${logBase}/tail`, async (c) => {
    const { id, step, n, file } = await findLog(deps, c);
    const resume = Number(c.req.header("last-event-id") ?? c.req.query("from") ?? 0);
    let offset = Number.isFinite(resume) && resume > 0 ? resume : 0;
    return streamSSE(c, async (stream) => {
      let aborted = false;
      stream.onAbort(() => void (aborted = true));
      const until = Date.now() + STREAM_MAX_MS;
      while (!aborted && Date.now() < until) {
        const attempt = (await deps.store.getAttempts(id)).find((a) => a.step === step && a.n === n);
        const ended = !attempt || attempt.status !== "running";
        const size = await logSize(file);
        if (size && size.size > offset) {
          const w = await linesFrom(file, offset, TAIL_CHUNK, ended);
          if (w.end > offset) {
            offset = w.end;
            await stream.writeSSE({ event: "lines", id: String(offset), data: String(<LogLines lines={w.lines} />) });
            continue; // more may be waiting: read again before sleeping
          }
        }
        if (ended) {
          await stream.writeSSE({ event: "done", id: String(offset), data: attempt?.status ?? "" });
          return;
        }
        await stream.sleep(Math.min(pollMs, 500));
      }
    });
  });

  ui.get("/runs/:id/quarantine", async (c) => {
    const id = c.req.param("id");
    const run = await deps.store.getRun(id);
    if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${id}`);
    const filter = { reason: c.req.query("reason") || undefined, step: c.req.query("step") || undefined };
    const view = await readQuarantineView(quarantineFiles(deps.home, id, run.spec), filter, QUARANTINE_SHOWN);
    return page(c, `Quarantine ${id}`, <QuarantinePage run={id} filter={filter} view={view} limit={QUARANTINE_SHOWN} />);
  });

  ui.get("/runs/:id/quarantine.csv", async (c) => {
    const id = c.req.param("id");
    const run = await deps.store.getRun(id);
    if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${id}`);
    const filter = { reason: c.req.query("reason") || undefined, step: c.req.query("step") || undefined };
    const body = Readable.toWeb(Readable.from(quarantineCsv(quarantineFiles(deps.home, id, run.spec), filter))) as ReadableStream<Uint8Array>;
    return c.body(body, 200, {
      "Content-Type": "text/csv; charset=utf-8",
      "Content-Disposition": `attachment; filename="${id.replace(/[^A-Za-z0-9._-]/g, "_")}-quarantine.csv"`,
    });
  });

  viewRoutes(ui, deps, { page, need, pollMs, streamMaxMs: STREAM_MAX_MS });
  return ui;
}

/** Only a path of this UI: an open redirect to another site after login would help phishing. */
function safeNext(next: string | undefined): string {
  return next && next.startsWith(`${UI}/`) && !next.startsWith("//") && !next.includes("\\") ? next : `${UI}/runs`;
}

async function loadModel(deps: ServerDeps, id: string) {
  const run = await deps.store.getRun(id);
  if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${id}`);
  const [steps, attempts] = await Promise.all([deps.store.getSteps(id), deps.store.getAttempts(id)]);
  return runModel(run, steps, attempts);
}

/** The attempt the URL names, as the store knows it: the step name never reaches a path unchecked. */
async function findLog(deps: ServerDeps, c: Context) {
  const id = c.req.param("id")!;
  const step = c.req.param("step")!;
  const n = intParam(c, "n");
  const attempt = (await deps.store.getAttempts(id)).find((a) => a.step === step && a.n === n);
  if (!attempt) {
    const run = await deps.store.getRun(id);
    throw new SluiceError("NOT_FOUND", run ? `run ${id} has no attempt ${n} of step ${step}` : `no run with id ${id}`);
  }
  return { id, step, n, attempt, file: attemptLogFile(deps.home, id, step, n) };
}

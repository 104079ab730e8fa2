/**
 * Webhook alerts: a run failed, a run went past its workflow's SLA, a quality check fell below its
 * threshold. Alerts go to every target subscribed to the kind (and the workflow, when the target
 * names workflows), as plain JSON or as a Slack incoming-webhook message.
 *
 * Each (kind, run) is sent once per process. Nothing here throws into the engine: deliveries run
 * in the background, are retried by webhook.ts, and failures are logged with the target's name
 * (never its URL, whose path and query hold the secret).
 */
import type { ActionLog } from "../actions/types.js";
import type { EngineEvent } from "../engine/events.js";
import { formatDuration, parseDuration } from "../spec/duration.js";
import type { ErrorInfo, RunRecord, RunStore } from "../store/types.js";
import { deliverWebhook, redactUrl, type RetryOptions } from "./webhook.js";

export type AlertKind = "run_failed" | "sla_breach" | "quality_breach";

export interface AlertTarget {
  name: string;
  url: string;
  format: "json" | "slack";
  on: AlertKind[];
  /** Only these workflows; every workflow when absent. */
  workflows?: string[];
}

/** Message first, fields second: the same shape as an action's log. */
export type AlertLog = ActionLog;

/** The `json` format's body. */
export interface AlertPayload {
  kind: AlertKind;
  workflow: string;
  runId: string;
  /** The run's status (run_failed, sla_breach) or the failing attempt's (quality_breach). */
  status: string;
  error: ErrorInfo | null;
  /** One readable sentence. */
  message: string;
  /** When the alert was raised (ISO). */
  at: string;
  /** The step, for quality_breach. */
  step?: string;
  /** How long the run has taken (sla_breach; run_failed when it started). */
  durationMs?: number;
  /** The workflow's SLA as written (`30m`). */
  sla?: string;
  /** The run in the API. */
  link?: string;
}

export interface Alerter {
  onEngineEvent(e: EngineEvent): void;
  /** Send sla_breach for running runs past startedAt + spec.sla (once per run). */
  checkSla(now?: number): Promise<void>;
  /** Wait for deliveries in flight. */
  flush(): Promise<void>;
  /** Stop: no new alerts, retries waiting are abandoned, the SLA timer stops. */
  close(): void;
}

export interface AlerterOptions {
  targets: AlertTarget[];
  store: RunStore;
  log?: AlertLog;
  retry?: RetryOptions;
  /** Per request (default 10 s). */
  timeoutMs?: number;
  /** The API's base URL (`http://sluice:8080`): alerts link to `/api/v1/runs/ID`. */
  baseUrl?: string;
  /** Run checkSla every this many ms (unref'd timer) until close; off when absent. */
  slaCheckEveryMs?: number;
}

const TITLES: Record<AlertKind, string> = {
  run_failed: "Run failed",
  sla_breach: "SLA breached",
  quality_breach: "Quality below threshold",
};
const EMOJI: Record<AlertKind, string> = { run_failed: ":x:", sla_breach: ":hourglass:", quality_breach: ":warning:" };

/** Remembered (kind, run) pairs; the oldest are forgotten past this many. */
const SENT_LIMIT = 50_000;
const PAGE = 500;

const stderrLog: AlertLog = {
  info() {},
  warn: (message, fields) => process.stderr.write(`sluice alerts: ${message}${fields ? " " + JSON.stringify(fields) : ""}\n`),
  error: (message, fields) => process.stderr.write(`sluice alerts: ${message}${fields ? " " + JSON.stringify(fields) : ""}\n`),
};

export function createAlerter(opts: AlerterOptions): Alerter {
  const log = opts.log ?? stderrLog;
  const sent = new Set<string>();
  const inflight = new Set<Promise<void>>();
  const stop = new AbortController();
  let closed = false;

  function track(p: Promise<void>): void {
    const q = p.catch((err) => log.error("alert handling failed", { error: err instanceof Error ? err.message : String(err) }));
    inflight.add(q);
    void q.finally(() => inflight.delete(q));
  }

  /** True the first time a (kind, run) is seen in this process. */
  function claim(kind: AlertKind, runId: string): boolean {
    const key = `${kind}\u0000${runId}`;
    if (sent.has(key)) return false;
    sent.add(key);
    if (sent.size > SENT_LIMIT) sent.delete(sent.values().next().value!);
    return true;
  }

  function link(runId: string): string | undefined {
    if (!opts.baseUrl) return undefined;
    return `${opts.baseUrl.replace(/\/+$/, "")}/api/v1/runs/${encodeURIComponent(runId)}`;
  }

  function raise(a: Omit<AlertPayload, "at" | "link">): void {
    if (closed || !claim(a.kind, a.runId)) return;
    const l = link(a.runId);
    const payload: AlertPayload = { ...a, at: new Date().toISOString(), ...(l ? { link: l } : {}) };
    for (const t of opts.targets) {
      if (!t.on.includes(a.kind)) continue;
      if (t.workflows && !t.workflows.includes(a.workflow)) continue;
      track(send(t, payload));
    }
  }

  async function send(t: AlertTarget, payload: AlertPayload): Promise<void> {
    const body = t.format === "slack" ? slackMessage(payload) : payload;
    const res = await deliverWebhook(t.url, body, {
      retry: opts.retry,
      timeoutMs: opts.timeoutMs,
      signal: stop.signal,
      onRetry: ({ attempt, delayMs, reason }) =>
        log.info("alert delivery will be retried", { target: t.name, kind: payload.kind, runId: payload.runId, attempt, delayMs, reason }),
    });
    const fields = { target: t.name, kind: payload.kind, runId: payload.runId, attempts: res.attempts };
    if (res.ok) log.info("alert delivered", fields);
    else log.warn("alert not delivered", { ...fields, host: redactUrl(t.url), status: res.status, error: res.error });
  }

  async function slaOfEndedRun(e: Extract<EngineEvent, { type: "run-ended" }>): Promise<void> {
    if (!e.startedAt) return;
    const took = Date.parse(e.endedAt) - Date.parse(e.startedAt);
    if (!Number.isFinite(took)) return;
    const run = await opts.store.getRun(e.runId);
    const sla = run?.spec.spec.sla;
    const slaMs = sla === undefined ? undefined : parseDuration(sla);
    if (sla === undefined || slaMs === undefined || took <= slaMs) return;
    raise({
      kind: "sla_breach",
      workflow: e.workflow,
      runId: e.runId,
      status: e.status,
      error: e.error,
      message: `run ${e.runId} of ${e.workflow} ${e.status} after ${formatDuration(took)}, over its SLA of ${sla}`,
      durationMs: took,
      sla,
    });
  }

  function onEngineEvent(e: EngineEvent): void {
    if (closed) return;
    try {
      if (e.type === "step-ended") {
        const q = qualityBreach(e);
        if (q) raise({ kind: "quality_breach", workflow: e.workflow, runId: e.runId, status: e.status, step: e.step, error: q.error, message: q.message });
      } else if (e.type === "run-ended") {
        if (e.status === "failed") {
          const took = e.startedAt ? Date.parse(e.endedAt) - Date.parse(e.startedAt) : NaN;
          raise({
            kind: "run_failed",
            workflow: e.workflow,
            runId: e.runId,
            status: e.status,
            error: e.error,
            message: `run ${e.runId} of ${e.workflow} failed: ${e.error ? `${e.error.message} (${e.error.code})` : "no reason recorded"}`,
            ...(Number.isFinite(took) ? { durationMs: took } : {}),
          });
        }
        if ((e.status === "succeeded" || e.status === "failed") && wantsKind("sla_breach")) track(slaOfEndedRun(e));
      }
    } catch (err) {
      log.error("alert handling failed", { error: err instanceof Error ? err.message : String(err) });
    }
  }

  function wantsKind(kind: AlertKind): boolean {
    return opts.targets.some((t) => t.on.includes(kind));
  }

  async function checkSla(now = Date.now()): Promise<void> {
    if (closed || !wantsKind("sla_breach")) return;
    try {
      for (const run of await runningRuns(opts.store)) {
        const sla = run.spec.spec.sla;
        if (!run.startedAt || sla === undefined) continue;
        const slaMs = parseDuration(sla);
        const started = Date.parse(run.startedAt);
        if (slaMs === undefined || !Number.isFinite(started) || started + slaMs >= now) continue;
        const took = now - started;
        raise({
          kind: "sla_breach",
          workflow: run.workflow,
          runId: run.id,
          status: run.status,
          error: null,
          message: `run ${run.id} of ${run.workflow} has been running for ${formatDuration(took)}, over its SLA of ${sla}`,
          durationMs: took,
          sla,
        });
      }
    } catch (err) {
      log.warn("SLA check failed", { error: err instanceof Error ? err.message : String(err) });
    }
  }

  const timer = opts.slaCheckEveryMs ? setInterval(() => void checkSla(), opts.slaCheckEveryMs) : undefined;
  timer?.unref();

  return {
    onEngineEvent,
    checkSla,
    async flush() {
      while (inflight.size > 0) await Promise.all([...inflight]);
    },
    close() {
      closed = true;
      if (timer) clearInterval(timer);
      stop.abort();
    },
  };
}

/** A quality check that failed its threshold: the quality action's error, or outputs whose score is under their threshold. */
function qualityBreach(e: Extract<EngineEvent, { type: "step-ended" }>): { error: ErrorInfo | null; message: string } | undefined {
  if (e.status === "failed" && e.error?.code === "QUALITY_BELOW_THRESHOLD")
    return { error: e.error, message: `step ${e.step} of ${e.workflow} (run ${e.runId}): ${e.error.message}` };
  const score = e.outputs?.score;
  const threshold = e.outputs?.threshold;
  if (typeof score === "number" && typeof threshold === "number" && score < threshold)
    return { error: null, message: `step ${e.step} of ${e.workflow} (run ${e.runId}): quality score ${score} is under the threshold ${threshold}` };
  return undefined;
}

/** Every running run, page by page; stops when a page brings nothing new (a store ignoring offset). */
async function runningRuns(store: RunStore): Promise<RunRecord[]> {
  const seen = new Map<string, RunRecord>();
  for (let offset = 0; ; offset += PAGE) {
    const page = await store.listRuns({ status: "running", limit: PAGE, offset });
    let fresh = 0;
    for (const r of page) if (!seen.has(r.id)) (seen.set(r.id, r), fresh++);
    if (page.length < PAGE || fresh === 0) break;
  }
  return [...seen.values()];
}

/** Slack incoming-webhook message: a one-line `text` (notifications) and blocks for the channel. */
export function slackMessage(p: AlertPayload): { text: string; blocks: unknown[] } {
  const title = TITLES[p.kind];
  const line = clip(p.message.replace(/\s+/g, " "), 2_800);
  const text = `${EMOJI[p.kind]} ${title}: ${line}`;
  const run = p.link ? `<${p.link}|${esc(p.runId)}>` : `\`${esc(p.runId)}\``;
  const facts = [
    `*Workflow:* \`${esc(p.workflow)}\``,
    `*Run:* ${run}`,
    ...(p.step ? [`*Step:* \`${esc(p.step)}\``] : []),
    `*Status:* ${esc(p.status)}`,
    ...(p.durationMs !== undefined ? [`*Duration:* ${formatDuration(p.durationMs)}`] : []),
    ...(p.sla ? [`*SLA:* ${esc(p.sla)}`] : []),
    ...(p.error ? [`*Error:* \`${esc(p.error.code)}\``] : []),
  ];
  return {
    text: esc(text),
    blocks: [
      { type: "section", text: { type: "mrkdwn", text: `${EMOJI[p.kind]} *${title}*\n${esc(line)}` } },
      { type: "section", fields: facts.map((f) => ({ type: "mrkdwn", text: f })) },
      { type: "context", elements: [{ type: "mrkdwn", text: `sluice · ${p.at}` }] },
    ],
  };
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** Slack's mrkdwn escapes: only &, < and > are special. */
function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

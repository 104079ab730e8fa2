/**
 * What `sluice serve` and `sluice worker` share: a structured logger, the alert targets, and the
 * fan-out of engine events to metrics, alerts, platform events and the log.
 */
import { pino, type Logger } from "pino";
import { jsonLogger } from "./json-log.js";
import { isSecretRef, resolveSecret } from "../connectors/secrets.js";
import type { EngineEvent } from "../engine/events.js";
import { createAlerter, type Alerter } from "../observe/alerts.js";
import { createMetrics, type Metrics } from "../observe/metrics.js";
import type { ServerConfig } from "../server/config.js";
import type { StateStore } from "../store/types.js";
import { createPlatformPublisher, type PlatformPublisher } from "../triggers/platform.js";
import { emitEvent } from "../control/events.js";
import type { ActionLog, PublishEvent } from "../actions/types.js";
import { dirname } from "node:path";

/**
 * JSON lines on stderr with run, step and attempt ids as fields; level from SLUICE_LOG_LEVEL.
 * Every line names this process (`service`, `role`, `owner`) once: a call's own `owner` (the
 * worker's start line, the scheduler's leadership lines) replaces it rather than repeating the key.
 */
export function serviceLogger(role: string, owner: string): Logger {
  return jsonLogger(
    { service: "sluice", role, owner },
    { level: process.env.SLUICE_LOG_LEVEL ?? "info", destination: pino.destination({ fd: 2, sync: true }) },
  );
}

export interface Observers {
  metrics: Metrics;
  alerter: Alerter;
  platform: PlatformPublisher;
  publish: PublishEvent;
  onEvent(e: EngineEvent): void;
  close(): Promise<void>;
}

export async function createObservers(opts: {
  store: StateStore;
  config: ServerConfig;
  configFile?: string;
  log: Logger;
  /** `serve` or `worker`: the metrics' process label (Prometheus adds the instance itself). */
  role: string;
  /** The API's URL for links in alerts; a function when it is known only once the server listens (`--port 0`). */
  baseUrl?: string | (() => string | undefined);
}): Promise<Observers> {
  const { store, log } = opts;
  const metrics = createMetrics({ store, process: opts.role });
  const baseDir = opts.configFile ? dirname(opts.configFile) : undefined;
  const targets = await Promise.all(
    // config.ts accepts a plain http(s) URL or a secret reference holding one; only references are resolved.
    opts.config.alerts.map(async (t, i) => ({
      ...t,
      url: isSecretRef(t.url) ? await resolveSecret(t.url, `alerts[${i}].url (${t.name})`, { baseDir }) : t.url,
    })),
  );
  const baseUrl = opts.baseUrl;
  const alerter = createAlerter({
    targets,
    store,
    log: messageFirst(log),
    // Read at each alert (alerts.ts link()), so a port chosen at listen time is the one linked.
    get baseUrl() {
      return typeof baseUrl === "function" ? baseUrl() : baseUrl;
    },
  });
  const publish: PublishEvent = async (name, data, source) => {
    metrics.observeEvent(name);
    const r = await emitEvent(store, { name, data, source });
    if (r.runs.length) log.info({ event: name, eventId: r.event.id, runs: r.runs.map((x) => x.id) }, "event started runs");
    for (const f of r.refused) log.warn({ event: name, workflow: f.workflow, code: f.code }, `event could not start ${f.workflow}: ${f.message}`);
    return { eventId: r.event.id, runIds: r.runs.map((x) => x.id) };
  };
  const platform = createPlatformPublisher({ store, publish, log });
  const onEvent = (e: EngineEvent) => {
    metrics.onEngineEvent(e);
    alerter.onEngineEvent(e);
    platform.onEngineEvent(e);
    logEngineEvent(log, e);
  };
  return {
    metrics,
    alerter,
    platform,
    publish,
    onEvent,
    async close() {
      await platform.flush();
      await alerter.flush();
      alerter.close();
    },
  };
}

/** The (message, fields) logging shape of actions, triggers and alerts, onto pino's (fields, message). */
export function messageFirst(log: Logger): ActionLog {
  return {
    info: (m, f) => log.info(f ?? {}, m),
    warn: (m, f) => log.warn(f ?? {}, m),
    error: (m, f) => log.error(f ?? {}, m),
  };
}

function logEngineEvent(log: Logger, e: EngineEvent): void {
  switch (e.type) {
    case "run-started":
      log.info({ runId: e.runId, workflow: e.workflow, resumed: e.resumed }, "run started");
      break;
    case "step-ended":
      if (e.status === "succeeded") log.debug({ runId: e.runId, step: e.step, attempt: e.attempt, ms: e.durationMs }, "step succeeded");
      else
        log.warn(
          { runId: e.runId, step: e.step, attempt: e.attempt, status: e.status, error: e.error, retryInMs: e.retryInMs },
          "step attempt did not succeed",
        );
      break;
    case "run-ended":
      (e.status === "succeeded" ? log.info.bind(log) : log.warn.bind(log))(
        { runId: e.runId, workflow: e.workflow, status: e.status, error: e.error },
        "run ended",
      );
      break;
    case "run-detached":
      log.info({ runId: e.runId, reason: e.reason }, "run handed back");
      break;
    case "step-warning":
      log.warn({ ...e.fields, runId: e.runId, step: e.step, attempt: e.attempt }, e.message);
      break;
    default:
      break;
  }
}

/**
 * `sluice serve`: the service in one process — the workflow registry kept in step with a
 * directory, the cron scheduler (leader-elected, so several servers fire each tick once), event
 * triggers and a file-arrival watcher, a worker executing queued runs, and the HTTP API with
 * metrics. SIGTERM or SIGINT shuts down gracefully: no new work, running attempts get a grace
 * period, what is left stays resumable by the fleet.
 */
import { watch, type FSWatcher } from "node:fs";
import { resolve } from "node:path";
import { formatProblem } from "../spec/load.js";
import { syncWorkflowDirectory } from "../control/workflows.js";
import { startWorker, type Worker } from "../engine/worker.js";
import { leaseTtl } from "../engine/execute.js";
import { newOwnerId } from "../engine/ids.js";
import { createApp } from "../server/app.js";
import { resolveAuth } from "../server/auth.js";
import { loadServerConfig } from "../server/config.js";
import { startHttpServer } from "../server/listen.js";
import { openStore, sluiceHome } from "../store/index.js";
import { startScheduler } from "../triggers/scheduler.js";
import { startFileWatcher, type FileWatcher } from "../triggers/file-watcher.js";
import { loadActions } from "./context.js";
import { createObservers, messageFirst, serviceLogger } from "./service.js";
import { SluiceError } from "../errors.js";

export interface ServeFlags {
  port?: string;
  host?: string;
  workflows: string;
  config?: string;
  worker: boolean;
  watch?: string[];
  grace: string;
  maxRuns?: string;
  actions?: string[];
}

export async function serveCommand(o: ServeFlags): Promise<number> {
  const owner = newOwnerId();
  const log = serviceLogger("serve", owner);
  const configFile = o.config ?? process.env.SLUICE_CONFIG;
  const config = await loadServerConfig(configFile);
  const auth = await resolveAuth(config.auth, { configFile });
  const port = o.port !== undefined ? parsePort(o.port) : (config.server.port ?? 8080);
  const host = o.host ?? config.server.host;
  const graceMs = Number(o.grace) * 1000;
  const actions = await loadActions(o.actions);
  const store = await openStore();
  const home = sluiceHome();
  let ready = false;
  let apiUrl: string | undefined; // known once the server listens: with --port 0 the port is chosen then
  const observers = await createObservers({ store, config, configFile, log, role: "serve", baseUrl: () => apiUrl ?? `http://${host ?? "127.0.0.1"}:${port}` });

  // The registry follows the directory: every change re-applies it; a bad file is refused and
  // the version before it keeps running.
  const dir = resolve(o.workflows);
  const sync = async () => {
    const r = await syncWorkflowDirectory(store, actions, o.workflows);
    for (const a of r.applied.filter((x) => x.created)) log.info({ workflow: a.name, version: a.version, source: a.source }, "workflow applied");
    for (const f of r.refused)
      log.error(
        { file: f.file, problems: f.problems.map(formatProblem) },
        `workflow file refused; the previous version stays current: ${f.problems.map(formatProblem).join("; ")}`,
      );
    for (const name of r.retired) log.info({ workflow: name }, "workflow retired (its file was removed)");
  };
  await sync();
  let dirWatcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  try {
    dirWatcher = watch(dir, () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => void sync().catch((err: unknown) => log.error({ err: (err as Error).message }, "reloading workflows failed")), 250);
    });
  } catch (err) {
    log.warn({ dir, err: (err as Error).message }, "cannot watch the workflows directory; changes need a restart or sluice apply");
  }

  const scheduler = startScheduler({
    // One lease TTL for runs and leadership: a dead leader is replaced as fast as a dead worker.
    store,
    owner,
    log: messageFirst(log),
    leaseTtlMs: leaseTtl(),
    onFire: (f) => observers.metrics.observeTriggerLag(f.workflow, f.trigger, f.lagMs),
  });
  // SLUICE_WATCH_INTERVAL_MS (time between scans, default 5000) and SLUICE_WATCH_STABLE_MS (how
  // long a file must stay unchanged before it is announced, default 2000) tune every --watch;
  // tests set them low, an operator can for a directory where files arrive fast or slowly.
  const watchIntervalMs = msFromEnv("SLUICE_WATCH_INTERVAL_MS");
  const watchStableMs = msFromEnv("SLUICE_WATCH_STABLE_MS");
  const watchers: FileWatcher[] = (o.watch ?? []).map((spec) => {
    const [wdir, event] = spec.split(":");
    return startFileWatcher({
      store,
      dir: wdir!,
      event: event || undefined,
      intervalMs: watchIntervalMs,
      stableMs: watchStableMs,
      isLeader: () => scheduler.isLeader(),
      log: messageFirst(log),
    });
  });
  // SLA checks scan the store: one process (the leader) does it for the fleet.
  const slaTimer = setInterval(() => {
    if (scheduler.isLeader()) void observers.alerter.checkSla().catch(() => undefined);
  }, 5_000);
  slaTimer.unref();

  let worker: Worker | undefined;
  if (o.worker) {
    worker = await startWorker({
      store,
      actions,
      home,
      owner,
      maxRuns: o.maxRuns ? Number(o.maxRuns) : undefined,
      onEvent: observers.onEvent,
      publishEvent: observers.publish,
      log,
      onStreamLatency: (w, stage, ms) => observers.metrics.observeStreamLatency(w, stage, ms),
    });
  }

  const app = createApp({
    store,
    home,
    actions,
    metrics: observers.metrics,
    auth,
    ready: () => ready,
    log,
    onEventReceived: (name) => observers.metrics.observeEvent(name),
  });
  const http = await startHttpServer({ app, port, host, auth, log });
  apiUrl = http.url;
  ready = true;
  log.info(
    { url: http.url, workflows: dir, worker: o.worker, store: store.dialect, watch: o.watch ?? [] },
    `sluice serving on ${http.url} (${o.worker ? "API, triggers and a worker" : "API and triggers; no worker"})`,
  );
  process.stderr.write(`sluice: serving on ${http.url}\n`);

  await new Promise<void>((resolveStop) => {
    const stop = () => resolveStop();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  ready = false;
  log.info({ graceMs }, "shutting down: no new work; running attempts may finish");
  clearInterval(slaTimer);
  clearTimeout(debounce);
  dirWatcher?.close();
  await scheduler.stop();
  await Promise.all(watchers.map((w) => w.stop()));
  await worker?.stop(graceMs);
  await http.close();
  await observers.close();
  await store.close();
  log.info({}, "stopped");
  log.flush();
  return 0;
}

/** A non-negative millisecond count from the environment; undefined (the default) when unset. */
function msFromEnv(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v.trim() === "") return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new SluiceError("USAGE", `${name} takes a number of milliseconds, not "${v}"`);
  return n;
}

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new SluiceError("USAGE", `--port takes a port number 0-65535, not "${v}"`);
  return n;
}

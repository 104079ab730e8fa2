/**
 * `sluice worker`: a fleet member that only executes runs. Point any number of them, on any
 * machines, at one PostgreSQL store (SLUICE_DATABASE_URL); `sluice serve --no-worker` runs the API
 * and the triggers. A worker sends the alerts and platform events of the runs it finishes, and
 * serves /metrics and /healthz on --metrics-port when given.
 */
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { newOwnerId } from "../engine/ids.js";
import { startWorker } from "../engine/worker.js";
import { loadServerConfig } from "../server/config.js";
import { openStore, sluiceHome } from "../store/index.js";
import { loadActions } from "./context.js";
import { createObservers, serviceLogger } from "./service.js";

export interface WorkerFlags {
  config?: string;
  maxRuns?: string;
  grace: string;
  metricsPort?: string;
  metricsHost?: string;
  actions?: string[];
}

export async function workerCommand(o: WorkerFlags): Promise<number> {
  const owner = newOwnerId();
  const log = serviceLogger("worker", owner);
  const configFile = o.config ?? process.env.SLUICE_CONFIG;
  const config = await loadServerConfig(configFile);
  const actions = await loadActions(o.actions);
  const store = await openStore();
  const observers = await createObservers({ store, config, configFile, log, role: "worker" });
  const worker = await startWorker({
    store,
    actions,
    home: sluiceHome(),
    owner,
    maxRuns: o.maxRuns ? Number(o.maxRuns) : undefined,
    onEvent: observers.onEvent,
    publishEvent: observers.publish,
    log,
    onStreamLatency: (w, stage, ms) => observers.metrics.observeStreamLatency(w, stage, ms),
  });
  let metricsServer: ReturnType<typeof serve> | undefined;
  if (o.metricsPort !== undefined) {
    const app = new Hono()
      .get("/healthz", (c) => c.json({ status: "ok", owner, activeRuns: worker.active() }))
      .get("/metrics", async () => new Response(await observers.metrics.render(), { headers: { "content-type": observers.metrics.contentType } }));
    // Loopback by default: the endpoints carry no authentication. Prometheus on another host
    // needs --metrics-host 0.0.0.0 (inside a pod network, say).
    metricsServer = serve({ fetch: app.fetch, port: Number(o.metricsPort), hostname: o.metricsHost ?? "127.0.0.1" });
  }
  log.info({ store: store.dialect, owner }, "worker started");
  process.stderr.write(`sluice: worker ${owner} started on the ${store.dialect} store\n`);

  await new Promise<void>((resolveStop) => {
    process.once("SIGTERM", () => resolveStop());
    process.once("SIGINT", () => resolveStop());
  });
  const graceMs = Number(o.grace) * 1000;
  log.info({ graceMs, activeRuns: worker.active() }, "shutting down: no new runs; running attempts may finish");
  await worker.stop(graceMs);
  metricsServer?.close();
  await observers.close();
  await store.close();
  log.info({}, "stopped");
  log.flush();
  return 0;
}

/**
 * The operator's control loop: informers on Workflow and WorkflowRun resources feed a work queue
 * of keys; each key is reconciled by the pure functions of reconcile-workflow.ts and
 * reconcile-run.ts, whose decisions are applied here (registry, runs, finalizers, status). Status
 * writes carry the resourceVersion they were computed from; a 409 means the object changed, so it
 * is read again and the decision made again. Every key is reconciled again on a resync period, and
 * registry workflows whose resource disappeared while no operator watched are retired after each
 * full list.
 */
import { QUIET_LOG, type ActionLog } from "../actions/types.js";
import { startWorkflowRun, cancelRun } from "../control/runs.js";
import { SluiceError, toErrorInfo } from "../errors.js";
import type { ActionLookup } from "../spec/catalogue.js";
import { loadWorkflowText } from "../spec/load.js";
import type { NamedLeaseStore, RegistryStore, RunStore } from "../store/types.js";
import { realClock, type Clock } from "./clock.js";
import { sameStatus } from "./conditions.js";
import { startInformer, type Informer } from "./informer.js";
import { isKubeApiError, type KubeApi, type KubeObject, type Plural } from "./kube.js";
import { mirrorsToCreate } from "./mirror.js";
import { reconcileRun, runIdFor, type RunFacts, type WorkflowRunResource } from "./reconcile-run.js";
import { managedBy, managedResource, reconcileWorkflow, resourceYaml, type Validation, type WorkflowResource } from "./reconcile-workflow.js";
import { workQueue, type ReconcileResult } from "./queue.js";

export type OperatorStore = RegistryStore & RunStore & NamedLeaseStore;

export interface OperatorOptions {
  api: KubeApi;
  store: OperatorStore;
  actions: ActionLookup;
  /** Namespaces to watch; null watches all (needs a ClusterRole). */
  namespaces: string[] | null;
  clock?: Clock;
  log?: ActionLog;
  /** How often an active run's WorkflowRun status is refreshed (default 2 s). */
  pollMs?: number;
  /** How often a WorkflowRun waiting for its Workflow looks again (default 10 s). */
  waitMs?: number;
  /** Every key reconciled again this often, changed or not (default 5 min). */
  resyncMs?: number;
  /** Keys reconciled at once (default 4). */
  concurrency?: number;
  /** Mirror cron- and event-started runs as WorkflowRuns, deleted this long after they end. */
  mirror?: { ttlSeconds: number; everyMs?: number } | null;
  random?: () => number;
}

export interface Operator {
  /** True once every informer has listed. */
  synced(): boolean;
  /** Resolves when no key is queued or being reconciled (delayed requeues do not count). */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

/** Passes of read–decide–apply for one key before giving up until its next retry. */
const MAX_PASSES = 6;

export function startOperator(o: OperatorOptions): Operator {
  const clock = o.clock ?? realClock;
  const log = o.log ?? QUIET_LOG;
  const timing = { pollMs: o.pollMs ?? 2000, waitMs: o.waitMs ?? 10_000 };
  const scopes = o.namespaces ?? [null];
  const informers: Record<Plural, Map<string | null, Informer>> = { workflows: new Map(), workflowruns: new Map() };
  /** Start refusals by resource uid (bad params): a terminal status until the resource changes. */
  const startErrors = new Map<string, { code: string; message: string; generation: number | undefined }>();

  const cached = (plural: Plural, key: string): KubeObject | undefined => {
    const ns = key.slice(0, key.indexOf("/"));
    return (informers[plural].get(ns) ?? informers[plural].get(null))?.get(key);
  };

  const validate = (r: WorkflowResource): Validation => {
    const loaded = loadWorkflowText(resourceYaml(r), managedBy(r.metadata.namespace, r.metadata.name), { actions: o.actions });
    if (loaded.problems.length > 0) return { ok: false, problems: loaded.problems };
    return { ok: true, workflow: loaded.workflows[0]!.workflow };
  };

  /**
   * Write a status unless it says what is there; a null field removes one no longer set. False
   * when the object changed since it was read (409): read it again and decide again.
   */
  const writeStatus = async (plural: Plural, obj: KubeObject, status: Record<string, unknown>): Promise<boolean> => {
    if (sameStatus(status, obj.status ?? {})) return true;
    const patch: Record<string, unknown> = { ...status };
    for (const k of Object.keys(obj.status ?? {})) if (!(k in status)) patch[k] = null;
    try {
      await o.api.patchStatus(plural, obj.metadata.namespace, obj.metadata.name, patch, obj.metadata.resourceVersion);
      return true;
    } catch (err) {
      if (isKubeApiError(err, 409)) return false;
      throw err;
    }
  };

  /** The object as the API server has it now (after a 409), or undefined when it is gone. */
  const fresh = async (plural: Plural, obj: KubeObject): Promise<KubeObject | undefined> => {
    try {
      return await o.api.get(plural, obj.metadata.namespace, obj.metadata.name);
    } catch (err) {
      if (isKubeApiError(err, 404)) return undefined;
      throw err;
    }
  };

  const reconcileWorkflowKey = async (key: string): Promise<ReconcileResult> => {
    let obj = cached("workflows", key) as WorkflowResource | undefined;
    for (let pass = 0; obj && pass < MAX_PASSES; pass++) {
      const { namespace, name } = obj.metadata;
      const current = await o.store.getWorkflow(name);
      const d = reconcileWorkflow(obj, { current, validation: validate(obj), now: new Date(clock.now()).toISOString() });
      if (d.finalizers) {
        try {
          obj = (await o.api.patchMetadata("workflows", namespace, name, { finalizers: d.finalizers }, obj.metadata.resourceVersion)) as WorkflowResource;
        } catch (err) {
          if (isKubeApiError(err, 409)) obj = (await fresh("workflows", obj)) as WorkflowResource | undefined;
          else if (isKubeApiError(err, 404)) return {};
          else throw err;
          continue;
        }
        if (obj.metadata.deletionTimestamp && !(obj.metadata.finalizers ?? []).length) return {};
      }
      if (d.registry?.kind === "save") {
        const r = await o.store.saveWorkflow({
          name,
          spec: d.registry.workflow,
          yaml: d.registry.yaml,
          source: d.registry.source,
          createdAt: new Date(clock.now()).toISOString(),
        });
        log.info("operator: workflow stored", { resource: key, workflow: name, version: r.version });
        wakeWaitingRuns(namespace, name);
        continue;
      }
      if (d.registry?.kind === "retire") {
        await o.store.retireWorkflow(name);
        log.info("operator: workflow retired (resource deleted)", { resource: key, workflow: name });
        continue;
      }
      if (!d.status) return {};
      if (await writeStatus("workflows", obj, d.status as Record<string, unknown>)) return {};
      obj = (await fresh("workflows", obj)) as WorkflowResource | undefined;
    }
    if (obj) throw new SluiceError("CONFLICT", `workflow resource ${key} kept changing while being reconciled`);
    return {};
  };

  /** WorkflowRuns waiting for a workflow that has just been stored start now, not at their next look. */
  const wakeWaitingRuns = (namespace: string, workflow: string) => {
    for (const inf of informers.workflowruns.values())
      for (const r of inf.list() as WorkflowRunResource[])
        if (r.metadata.namespace === namespace && r.spec.workflowRef?.name === workflow && !r.status?.runId)
          queue.add(`workflowruns:${namespace}/${r.metadata.name}`);
  };

  const runFacts = async (r: WorkflowRunResource): Promise<RunFacts> => {
    const id = runIdFor(r);
    const run = await o.store.getRun(id);
    const rows = run?.endedAt ? ((await o.store.getRunSummaries([id]))[0]?.rows ?? null) : null;
    const workflow = run ? undefined : await o.store.getWorkflow(r.spec.workflowRef.name, r.spec.version);
    const refused = startErrors.get(r.metadata.uid);
    const startError = refused && refused.generation === r.metadata.generation ? refused : undefined;
    return { run, rows, workflow, ...(startError ? { startError: { code: startError.code, message: startError.message } } : {}), now: clock.now() };
  };

  const reconcileRunKey = async (key: string): Promise<ReconcileResult> => {
    let obj = cached("workflowruns", key) as WorkflowRunResource | undefined;
    for (let pass = 0; obj && pass < MAX_PASSES; pass++) {
      const { namespace, name, uid, generation } = obj.metadata;
      const d = reconcileRun(obj, await runFacts(obj), timing);
      const a = d.action;
      if (a?.kind === "start") {
        try {
          await startWorkflowRun(o.store, {
            workflow: a.workflow,
            version: a.version,
            params: a.params,
            id: a.id,
            trigger: { type: "kubernetes", name: a.resource, data: { uid } },
          });
          log.info("operator: run started", { resource: key, runId: a.id, workflow: a.workflow, version: a.version });
        } catch (err) {
          const e = toErrorInfo(err);
          if (e.code === "CONFLICT") continue; // Started already (another pass or a previous operator).
          // Refused for what the resource says (its params, a version that is gone): final until it changes.
          if (e.code !== "BAD_INPUT" && e.code !== "USAGE" && e.code !== "NOT_FOUND") throw err;
          startErrors.set(uid, { code: e.code, message: e.message, generation });
        }
        continue;
      }
      if (a?.kind === "cancel") {
        await cancelRun(o.store, a.runId).catch((err: unknown) => {
          if (toErrorInfo(err).code !== "CONFLICT") throw err; // Ended meanwhile: the next pass shows how.
        });
        log.info("operator: run cancel requested", { resource: key, runId: a.runId });
        continue;
      }
      if (a?.kind === "delete") {
        await o.api.delete("workflowruns", namespace, name);
        log.info("operator: WorkflowRun deleted after its TTL", { resource: key });
        return {};
      }
      if (!d.status) return {};
      if (await writeStatus("workflowruns", obj, d.status as Record<string, unknown>)) return { requeueMs: d.requeueMs };
      obj = (await fresh("workflowruns", obj)) as WorkflowRunResource | undefined;
    }
    if (obj) throw new SluiceError("CONFLICT", `WorkflowRun ${key} kept changing while being reconciled`);
    return {};
  };

  /** A WorkflowRun deleted before its run ended stops the run, as deleting a Job stops its pods. */
  const onRunDeleted = async (gone: WorkflowRunResource) => {
    startErrors.delete(gone.metadata.uid);
    if (gone.spec.runId) return; // A mirror: the run belongs to its trigger.
    const run = await o.store.getRun(runIdFor(gone));
    if (!run || (run.status !== "pending" && run.status !== "running")) return;
    await cancelRun(o.store, run.id);
    log.info("operator: WorkflowRun deleted; its run is cancelled", { runId: run.id });
  };

  /** Registry workflows managed from a watched scope whose resource no longer exists. */
  const sweep = async (scope: string | null): Promise<ReconcileResult> => {
    const inf = informers.workflows.get(scope);
    if (!inf?.synced()) return {};
    for (const w of await o.store.listWorkflows()) {
      const res = managedResource(w.source);
      if (!res || (scope !== null && res.namespace !== scope)) continue;
      if (!inf.get(`${res.namespace}/${res.name}`)) {
        await o.store.retireWorkflow(w.name);
        log.info("operator: workflow retired (its resource is gone)", { workflow: w.name, resource: `${res.namespace}/${res.name}` });
      }
    }
    return {};
  };

  const mirror = async (): Promise<ReconcileResult> => {
    const m = o.mirror!;
    const everyMs = m.everyMs ?? 5000;
    const runInformers = [...informers.workflowruns.values()];
    if (!runInformers.every((i) => i.synced())) return { requeueMs: everyMs };
    const followed = new Set(runInformers.flatMap((i) => i.list()).map((r) => runIdFor(r as WorkflowRunResource)));
    const now = clock.now();
    const runs = await o.store.listRuns({ since: new Date(now - Math.max(m.ttlSeconds * 1000, 86_400_000)).toISOString(), limit: 500 });
    const todo = mirrorsToCreate({ runs, workflows: await o.store.listWorkflows(), followed, namespaces: o.namespaces, ttlSeconds: m.ttlSeconds, now });
    for (const t of todo) {
      try {
        await o.api.create("workflowruns", t.namespace, t.body);
        log.info("operator: run mirrored as a WorkflowRun", { runId: (t.body.spec as { runId: string }).runId, name: t.body.metadata.name });
      } catch (err) {
        if (!isKubeApiError(err, 409)) throw err; // 409: mirrored already.
      }
    }
    return { requeueMs: everyMs };
  };

  const queue = workQueue({
    clock,
    concurrency: o.concurrency ?? 4,
    random: o.random,
    reconcile: (qkey) => {
      const [kind, key] = splitKey(qkey);
      if (kind === "workflows") return reconcileWorkflowKey(key);
      if (kind === "workflowruns") return reconcileRunKey(key);
      if (kind === "sweep") return sweep(key === "*" ? null : key);
      return mirror();
    },
    onError: (qkey, err, retryInMs) => log.warn("operator: reconcile failed; will retry", { key: qkey, retryInMs, error: toErrorInfo(err).message }),
  });

  for (const scope of scopes)
    for (const plural of ["workflows", "workflowruns"] as const) {
      const inf = startInformer(
        o.api,
        plural,
        scope,
        {
          onChange: (key, obj, deleted) => {
            queue.add(`${plural}:${key}`);
            if (!obj && deleted && plural === "workflowruns")
              onRunDeleted(deleted as WorkflowRunResource).catch((err: unknown) =>
                log.warn("operator: cannot cancel the run of a deleted WorkflowRun", { resource: key, error: toErrorInfo(err).message }),
              );
          },
          onSynced: () => {
            if (plural === "workflows") queue.add(`sweep:${scope ?? "*"}`);
          },
          onRestart: (what, err, retryInMs) =>
            log.warn("operator: watch restarting", { resource: plural, namespace: scope ?? "(all)", what, retryInMs, error: toErrorInfo(err).message }),
        },
        { clock, random: o.random },
      );
      informers[plural].set(scope, inf);
    }
  if (o.mirror) queue.add("mirror:", 0);

  const resyncMs = o.resyncMs ?? 300_000;
  let resyncTimer: unknown;
  const resync = () => {
    for (const plural of ["workflows", "workflowruns"] as const)
      for (const inf of informers[plural].values()) for (const obj of inf.list()) queue.add(`${plural}:${obj.metadata.namespace}/${obj.metadata.name}`);
    resyncTimer = clock.setTimeout(resync, resyncMs);
  };
  resyncTimer = clock.setTimeout(resync, resyncMs);

  const all = () => [...informers.workflows.values(), ...informers.workflowruns.values()];
  return {
    synced: () => all().every((i) => i.synced()),
    idle: () => queue.idle(),
    async stop() {
      clock.clearTimeout(resyncTimer);
      for (const i of all()) i.stop();
      await queue.stop();
    },
  };
}

function splitKey(qkey: string): [string, string] {
  const i = qkey.indexOf(":");
  return [qkey.slice(0, i), qkey.slice(i + 1)];
}

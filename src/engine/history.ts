/**
 * The store, seen by actions: their read-only history of runs and the shared state they keep
 * across runs (actions/types.ts RunHistory and SharedState). Actions never import the store;
 * the engine hands them these views in their context.
 */
import type { PastRun, RunHistory, SharedState } from "../actions/types.js";
import type { RunRecord, RunStore, SharedStateStore } from "../store/types.js";
import { fanOutOf } from "./fanout.js";

export function sharedStateOf(store: SharedStateStore): SharedState {
  return {
    async get(namespace, key) {
      const r = await store.getState(namespace, key);
      return r ? { value: r.value, version: r.version, updatedAt: r.updatedAt } : undefined;
    },
    put: (namespace, key, value, expectedVersion) => store.putState(namespace, key, value, expectedVersion, new Date().toISOString()),
    async list(namespace) {
      return (await store.listState(namespace)).map((r) => ({ key: r.key, value: r.value, version: r.version, updatedAt: r.updatedAt }));
    },
  };
}

export function runHistoryOf(store: RunStore): RunHistory {
  return {
    async runs(filter) {
      const runs = await store.listRuns({
        ...(filter.workflow ? { workflow: filter.workflow } : {}),
        ...(filter.since ? { since: filter.since } : {}),
        limit: filter.limit ?? 200,
      });
      return Promise.all(runs.map((r) => pastRun(store, r)));
    },
    async run(id) {
      const r = await store.getRun(id);
      return r ? pastRun(store, r) : undefined;
    },
  };
}

/** Errors pass on whole: code, sentence and the details the store kept (PastError.details). */
async function pastRun(store: RunStore, r: RunRecord): Promise<PastRun> {
  const [steps, attempts] = await Promise.all([store.getSteps(r.id), store.getAttempts(r.id)]);
  const defs = new Map(r.spec.spec.steps.map((s) => [s.name, s]));
  const uses = (name: string): string | undefined => {
    const d = defs.get(name) ?? defs.get(fanOutOf(name) ?? "");
    if (!d) return undefined;
    if (d.action) return `${d.agent ?? d.service}/${d.action}`;
    return d.exec ? "exec" : d.workflow !== undefined ? "workflow" : undefined;
  };
  return {
    id: r.id,
    workflow: r.workflow,
    status: r.status,
    params: r.params,
    trigger: r.trigger
      ? { type: r.trigger.type, ...(r.trigger.name ? { name: r.trigger.name } : {}), ...(r.trigger.data !== undefined ? { data: r.trigger.data } : {}) }
      : null,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    endedAt: r.endedAt,
    deadlineAt: r.deadlineAt,
    error: r.error,
    steps: steps.map((s) => ({
      name: s.name,
      ...(uses(s.name) ? { uses: uses(s.name) } : {}),
      status: s.status,
      outputs: s.outputs,
      error: s.error,
      attempts: attempts
        .filter((a) => a.step === s.name)
        .map((a) => ({ n: a.n, status: a.status, startedAt: a.startedAt, endedAt: a.endedAt, error: a.error })),
    })),
  };
}

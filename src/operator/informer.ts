/**
 * A list-then-watch cache of one resource kind, in one namespace or all, that does not give up:
 * a watch the server closes is reopened from the last resourceVersion seen (bookmarks included);
 * 410 Gone means that version is too old, so the kind is listed again; any other error (the API
 * server restarting, a network cut, a 500) restarts it after an exponential backoff. (This is why
 * the operator does not use client-node's own informer: it stops on errors other than 410.)
 * Listing again also notices objects deleted while no watch was open.
 */
import { backoffMs, type Clock } from "./clock.js";
import { isKubeApiError, type KubeApi, type KubeObject, type Plural, type WatchHandle } from "./kube.js";

export function objectKey(o: KubeObject): string {
  return `${o.metadata.namespace}/${o.metadata.name}`;
}

export interface InformerHandlers {
  /** An object appeared, changed or (with `deleted`, the last state known) went away. */
  onChange(key: string, obj: KubeObject | undefined, deleted?: KubeObject): void;
  /** A list finished: the cache holds exactly the objects the server has now. */
  onSynced?(): void;
  onRestart?(reason: string, err: unknown, retryInMs: number): void;
}

export interface Informer {
  get(key: string): KubeObject | undefined;
  list(): KubeObject[];
  /** True once the first list has finished. */
  synced(): boolean;
  stop(): void;
}

export interface InformerOptions {
  clock: Clock;
  baseDelayMs?: number;
  maxDelayMs?: number;
  random?: () => number;
}

export function startInformer(api: KubeApi, plural: Plural, namespace: string | null, h: InformerHandlers, o: InformerOptions): Informer {
  const cache = new Map<string, KubeObject>();
  let rv = "";
  let failures = 0;
  let stopped = false;
  let isSynced = false;
  let watch: WatchHandle | undefined;
  let timer: unknown;
  /** Bumped on every (re)start, so a late callback of an abandoned watch is ignored. */
  let epoch = 0;

  const retry = (what: string, err: unknown, relist: boolean) => {
    if (stopped) return;
    failures++;
    const ms = backoffMs(failures, o.baseDelayMs ?? 1000, o.maxDelayMs ?? 30_000, o.random);
    h.onRestart?.(what, err, ms);
    timer = o.clock.setTimeout(() => void (relist ? relistNow() : watchFrom()), ms);
  };

  const relistNow = async () => {
    if (stopped) return;
    const my = ++epoch;
    let listed;
    try {
      listed = await api.list(plural, namespace);
    } catch (err) {
      if (my === epoch) retry("list", err, true);
      return;
    }
    if (stopped || my !== epoch) return;
    failures = 0;
    const seen = new Set<string>();
    for (const obj of listed.items) {
      const key = objectKey(obj);
      seen.add(key);
      const old = cache.get(key);
      cache.set(key, obj);
      if (!old || old.metadata.resourceVersion !== obj.metadata.resourceVersion) h.onChange(key, obj);
    }
    for (const [key, old] of cache)
      if (!seen.has(key)) {
        cache.delete(key);
        h.onChange(key, undefined, old);
      }
    rv = listed.resourceVersion;
    isSynced = true;
    h.onSynced?.();
    await watchFrom();
  };

  const watchFrom = async () => {
    if (stopped) return;
    const my = ++epoch;
    try {
      const handle = await api.watch(
        plural,
        namespace,
        rv,
        (e) => {
          if (my !== epoch) return;
          failures = 0;
          if (e.type === "BOOKMARK") {
            rv = e.resourceVersion;
            return;
          }
          const key = objectKey(e.object);
          rv = e.object.metadata.resourceVersion;
          if (e.type === "DELETED") {
            cache.delete(key);
            h.onChange(key, undefined, e.object);
          } else {
            cache.set(key, e.object);
            h.onChange(key, e.object);
          }
        },
        (err) => {
          if (my !== epoch || stopped) return;
          watch = undefined;
          if (!err)
            void watchFrom(); // The server's timeout: carry on from where it stopped.
          else if (isKubeApiError(err, 410)) void relistNow();
          else retry("watch", err, false);
        },
      );
      if (my !== epoch || stopped) handle.stop();
      else watch = handle;
    } catch (err) {
      if (my !== epoch) return;
      if (isKubeApiError(err, 410)) void relistNow();
      else retry("watch", err, false);
    }
  };

  void relistNow();
  return {
    get: (key) => cache.get(key),
    list: () => [...cache.values()],
    synced: () => isSynced,
    stop() {
      stopped = true;
      epoch++;
      watch?.stop();
      if (timer !== undefined) o.clock.clearTimeout(timer);
    },
  };
}

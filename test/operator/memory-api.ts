/**
 * An in-memory KubeApi for the controller's tests (layer 2): objects, a global resourceVersion,
 * watches replayed from a resourceVersion, generation bumped on spec changes only, a status
 * subresource, finalizers holding a deletion, and faults injected per method (409, 410, 500).
 * It follows the same rules as the HTTP fake in fake-apiserver.ts, without the wire.
 */
import { randomUUID } from "node:crypto";
import { mergePatch } from "./fake-apiserver.js";
import { KubeApiError, type KubeApi, type KubeObject, type ObjectMeta, type Plural, type WatchEvent } from "../../src/operator/kube.js";

type Method = "list" | "watch" | "get" | "patchStatus" | "patchMetadata" | "create" | "delete";

interface Watcher {
  plural: Plural;
  namespace: string | null;
  onEvent: (e: WatchEvent) => void;
  onClose: (err?: Error) => void;
  open: boolean;
}

export interface MemoryApi {
  api: KubeApi;
  /** As `kubectl apply`: create, or replace spec/labels (generation +1 when the spec changed). */
  apply(plural: Plural, obj: { metadata: { name: string; namespace: string }; spec: Record<string, unknown> }): KubeObject;
  /** As `kubectl delete`. */
  remove(plural: Plural, namespace: string, name: string): void;
  /** Remove an object outright, finalizers or not (as if deleted while nobody watched, then force-finalized). */
  purge(plural: Plural, namespace: string, name: string): void;
  object(plural: Plural, namespace: string, name: string): KubeObject | undefined;
  objects(plural: Plural): KubeObject[];
  /** The next `count` calls of `method` fail with `status`. */
  failNext(method: Method, status: number, count?: number): void;
  /** Forget the event history: watches from an older resourceVersion get 410 Gone. */
  compact(): void;
  /** End every open watch normally (the server's watch timeout). */
  closeWatches(): void;
  /** End every open watch with an error (the connection dropped). */
  breakWatches(): void;
  bookmark(): void;
  calls: { method: Method; plural: Plural; status: number }[];
  openWatches(): number;
}

const clone = <T>(v: T): T => structuredClone(v);

export function memoryApi(): MemoryApi {
  const store = new Map<string, KubeObject>();
  const history: { rv: number; plural: Plural; event: WatchEvent }[] = [];
  let rv = 100;
  let compactedAt = 0;
  const watchers = new Set<Watcher>();
  const faults: { method: Method; status: number; count: number }[] = [];
  const calls: MemoryApi["calls"] = [];

  const k = (plural: Plural, ns: string, name: string) => `${plural}/${ns}/${name}`;
  const fault = (method: Method, plural: Plural) => {
    const f = faults.find((x) => x.method === method && x.count > 0);
    if (f) {
      f.count--;
      calls.push({ method, plural, status: f.status });
      throw new KubeApiError(f.status, `injected ${f.status} on ${method}`);
    }
    calls.push({ method, plural, status: 200 });
  };
  const emit = (plural: Plural, type: "ADDED" | "MODIFIED" | "DELETED", obj: KubeObject) => {
    const event: WatchEvent = { type, object: clone(obj) };
    history.push({ rv: Number(obj.metadata.resourceVersion), plural, event });
    for (const w of watchers)
      if (w.open && w.plural === plural && (w.namespace === null || w.namespace === obj.metadata.namespace)) {
        const e = clone(event);
        queueMicrotask(() => w.open && w.onEvent(e));
      }
  };
  const bump = (obj: KubeObject) => (obj.metadata.resourceVersion = String(++rv));
  const must = (plural: Plural, ns: string, name: string) => {
    const o = store.get(k(plural, ns, name));
    if (!o) throw new KubeApiError(404, `${plural} "${name}" not found`, "NotFound");
    return o;
  };
  const guard = (o: KubeObject, resourceVersion?: string) => {
    if (resourceVersion !== undefined && resourceVersion !== o.metadata.resourceVersion)
      throw new KubeApiError(409, `the object has been modified; please apply your changes to the latest version and try again`, "Conflict");
  };
  const finishDeletion = (plural: Plural, o: KubeObject) => {
    if (o.metadata.deletionTimestamp && !(o.metadata.finalizers ?? []).length) {
      store.delete(k(plural, o.metadata.namespace, o.metadata.name));
      bump(o);
      emit(plural, "DELETED", o);
      return true;
    }
    return false;
  };

  const api: KubeApi = {
    async list(plural, namespace) {
      fault("list", plural);
      const items = [...store.entries()]
        .filter(([key, o]) => key.startsWith(`${plural}/`) && (namespace === null || o.metadata.namespace === namespace))
        .map(([, o]) => clone(o));
      return { items, resourceVersion: String(rv) };
    },
    async watch(plural, namespace, from, onEvent, onClose) {
      fault("watch", plural);
      const w: Watcher = { plural, namespace, onEvent, onClose, open: true };
      const since = Number(from);
      if (since < compactedAt) {
        queueMicrotask(() => onClose(new KubeApiError(410, "too old resource version", "Expired")));
        return { stop() {} };
      }
      watchers.add(w);
      for (const h of history)
        if (h.rv > since && h.plural === plural && (namespace === null || h.event.type === "BOOKMARK" || h.event.object.metadata.namespace === namespace)) {
          const e = clone(h.event);
          queueMicrotask(() => w.open && onEvent(e));
        }
      return {
        stop() {
          w.open = false;
          watchers.delete(w);
        },
      };
    },
    async get(plural, namespace, name) {
      fault("get", plural);
      return clone(must(plural, namespace, name));
    },
    async patchStatus(plural, namespace, name, status, resourceVersion) {
      fault("patchStatus", plural);
      const o = must(plural, namespace, name);
      guard(o, resourceVersion);
      o.status = mergePatch(o.status ?? {}, status) as Record<string, unknown>;
      bump(o);
      emit(plural, "MODIFIED", o);
      return clone(o);
    },
    async patchMetadata(plural, namespace, name, metadata, resourceVersion) {
      fault("patchMetadata", plural);
      const o = must(plural, namespace, name);
      guard(o, resourceVersion);
      if (o.metadata.deletionTimestamp && metadata.finalizers?.some((f) => !(o.metadata.finalizers ?? []).includes(f)))
        throw new KubeApiError(422, "no new finalizers can be added if the object is being deleted", "Invalid");
      o.metadata = mergePatch(o.metadata, metadata) as ObjectMeta;
      bump(o);
      if (!finishDeletion(plural, o)) emit(plural, "MODIFIED", o);
      return clone(o);
    },
    async create(plural, namespace, body) {
      fault("create", plural);
      if (store.has(k(plural, namespace, body.metadata.name))) throw new KubeApiError(409, `${plural} "${body.metadata.name}" already exists`, "AlreadyExists");
      const o: KubeObject = {
        ...clone(body),
        metadata: { ...clone(body.metadata), namespace, uid: randomUUID(), generation: 1, resourceVersion: "", creationTimestamp: new Date().toISOString() },
      } as KubeObject;
      delete o.status;
      bump(o);
      store.set(k(plural, namespace, o.metadata.name), o);
      emit(plural, "ADDED", o);
      return clone(o);
    },
    async delete(plural, namespace, name) {
      fault("delete", plural);
      const o = store.get(k(plural, namespace, name));
      if (!o) return;
      if ((o.metadata.finalizers ?? []).length === 0) {
        o.metadata.deletionTimestamp = new Date().toISOString();
        finishDeletion(plural, o);
        return;
      }
      if (!o.metadata.deletionTimestamp) {
        o.metadata.deletionTimestamp = new Date().toISOString();
        bump(o);
        emit(plural, "MODIFIED", o);
      }
    },
  };

  return {
    api,
    apply(plural, obj) {
      const key = k(plural, obj.metadata.namespace, obj.metadata.name);
      const old = store.get(key);
      if (!old) {
        const kind = plural === "workflows" ? "Workflow" : "WorkflowRun";
        const o = {
          apiVersion: "sluice.dev/v1alpha1",
          kind,
          ...clone(obj),
          metadata: { ...clone(obj.metadata), uid: randomUUID(), generation: 1, resourceVersion: "" },
        } as KubeObject;
        bump(o);
        store.set(key, o);
        emit(plural, "ADDED", o);
        return clone(o);
      }
      const changed = JSON.stringify(old.spec) !== JSON.stringify(obj.spec);
      old.spec = clone(obj.spec);
      if (changed) old.metadata.generation = (old.metadata.generation ?? 1) + 1;
      bump(old);
      emit(plural, "MODIFIED", old);
      return clone(old);
    },
    remove(plural, namespace, name) {
      void api.delete(plural, namespace, name);
      calls.pop();
    },
    purge(plural, namespace, name) {
      store.delete(k(plural, namespace, name));
    },
    object: (plural, namespace, name) => {
      const o = store.get(k(plural, namespace, name));
      return o && clone(o);
    },
    objects: (plural) => [...store.entries()].filter(([key]) => key.startsWith(`${plural}/`)).map(([, o]) => clone(o)),
    failNext(method, status, count = 1) {
      faults.push({ method, status, count });
    },
    compact() {
      compactedAt = rv + 1;
      history.length = 0;
    },
    closeWatches() {
      for (const w of watchers) {
        w.open = false;
        queueMicrotask(() => w.onClose());
      }
      watchers.clear();
    },
    breakWatches() {
      for (const w of watchers) {
        w.open = false;
        queueMicrotask(() => w.onClose(new KubeApiError(0, "connection reset")));
      }
      watchers.clear();
    },
    bookmark() {
      for (const w of watchers) if (w.open) queueMicrotask(() => w.onEvent({ type: "BOOKMARK", resourceVersion: String(rv) }));
    },
    calls,
    openWatches: () => watchers.size,
  };
}

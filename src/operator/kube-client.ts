/**
 * The KubeApi (kube.ts) over a real API server, with `@kubernetes/client-node` 1.x: its
 * CustomObjectsApi for reads and writes, its raw Watch for watches, and one mapping of every
 * failure to KubeApiError, so the controller sees HTTP statuses and never the client's own types.
 *
 * Why the raw Watch and not client-node's informer (`makeInformer` / ListWatch): the informer
 * relists only on 410 and stops on any other error, with no hook for a backoff, and it keeps its
 * own cache the controller would then have to trust. The controller already lists, watches from
 * the list's resourceVersion and restarts a watch itself (relist on 410, backoff on the rest), so
 * it needs a watch that ends with a reason — which is what `watch` below is.
 */
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { ApiException, CustomObjectsApi, KubeConfig, PatchStrategy, Watch, findHomeDir, setHeaderOptions } from "@kubernetes/client-node";
import { SluiceError } from "../errors.js";
import { GROUP, KubeApiError, VERSION, type KubeApi, type KubeObject, type ListResult, type Plural, type WatchEvent, type WatchHandle } from "./kube.js";

/** Where Kubernetes mounts a pod's service-account token (what in-cluster configuration reads). */
const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/**
 * The cluster configuration the operator runs with: in-cluster (service account) when
 * KUBERNETES_SERVICE_HOST is set, as in every pod; else KUBECONFIG or ~/.kube/config.
 * client-node's loadFromDefault falls back to http://localhost:8080 when it finds nothing, which
 * would turn a missing configuration into connection errors later: this refuses it at once.
 */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  if (process.env.KUBERNETES_SERVICE_HOST) {
    if (!existsSync(SERVICE_ACCOUNT_TOKEN)) {
      throw new SluiceError(
        "BAD_CONFIG",
        `KUBERNETES_SERVICE_HOST is set but there is no service-account token at ${SERVICE_ACCOUNT_TOKEN}: give the operator's pod a service account (automountServiceAccountToken), or unset KUBERNETES_SERVICE_HOST to use a kubeconfig.`,
      );
    }
    kc.loadFromCluster();
    return kc;
  }
  const files = (process.env.KUBECONFIG ?? "").split(delimiter).filter((f) => f !== "");
  const home = findHomeDir();
  const defaultFile = home === null ? undefined : join(home, ".kube", "config");
  const source = files.length > 0 ? `KUBECONFIG (${files.join(delimiter)})` : defaultFile;
  if (files.length === 0 && (defaultFile === undefined || !existsSync(defaultFile))) {
    throw new SluiceError(
      "BAD_CONFIG",
      "no Kubernetes cluster configuration: not running in a cluster (KUBERNETES_SERVICE_HOST is unset), KUBECONFIG is unset and there is no ~/.kube/config.",
    );
  }
  try {
    kc.loadFromDefault();
  } catch (err) {
    throw new SluiceError("BAD_CONFIG", `the Kubernetes configuration in ${source} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  if (!kc.getCurrentCluster()) {
    throw new SluiceError(
      "BAD_CONFIG",
      `the Kubernetes configuration in ${source} names no cluster for its current context (${kc.getCurrentContext() || "none"}).`,
    );
  }
  return kc;
}

/** The KubeApi over the cluster `kc` points at (its current context's server and user). */
export function kubeApiFromConfig(kc: KubeConfig): KubeApi {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new SluiceError("BAD_CONFIG", "the Kubernetes configuration names no cluster for its current context.");
  // client-node refuses plain http at every request unless the cluster is marked insecure; say so once, here.
  if (cluster.server.startsWith("http:") && !cluster.skipTLSVerify) {
    throw new SluiceError(
      "BAD_CONFIG",
      `the Kubernetes cluster ${cluster.name} is at plain http (${cluster.server}) without insecure-skip-tls-verify: use https, or mark it insecure.`,
    );
  }
  const api = kc.makeApiClient(CustomObjectsApi);
  const watcher = new Watch(kc);
  // The generated patch methods pick the first media type they list, JSON Patch (RFC 6902);
  // every patch here is a JSON merge patch (RFC 7386), so each call sets the header itself.
  const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
  const ref = (plural: Plural, namespace: string) => ({ group: GROUP, version: VERSION, plural, namespace });

  return {
    async list(plural, namespace): Promise<ListResult> {
      const body = await call(() =>
        namespace === null ? api.listClusterCustomObject({ group: GROUP, version: VERSION, plural }) : api.listNamespacedCustomObject(ref(plural, namespace)),
      );
      return { items: body.items ?? [], resourceVersion: String(body.metadata?.resourceVersion ?? "") };
    },

    async watch(plural, namespace, resourceVersion, onEvent, onClose): Promise<WatchHandle> {
      const path = `/apis/${GROUP}/${VERSION}${namespace === null ? "" : `/namespaces/${encodeURIComponent(namespace)}`}/${plural}`;
      let stopped = false;
      let ended = false;
      let controller: AbortController | undefined;
      // Every end goes through here once. onClose runs on a later turn, so a watch that fails at
      // once (unreachable server, an HTTP error) still hands its caller the handle first.
      const end = (err?: Error) => {
        if (ended) return;
        ended = true;
        controller?.abort();
        setImmediate(() => {
          if (!stopped) onClose(err);
        });
      };
      const deliver = (e: WatchEvent) => {
        try {
          onEvent(e);
        } catch (err) {
          // client-node's Watch swallows what its callback throws; an event the controller could
          // not take must not be lost silently, so the watch ends with it (the controller relists).
          end(err instanceof Error ? err : new Error(String(err)));
        }
      };
      try {
        controller = await watcher.watch(
          path,
          { allowWatchBookmarks: true, resourceVersion },
          (type: string, object: unknown) => {
            if (stopped || ended) return;
            if (type === "ADDED" || type === "MODIFIED" || type === "DELETED") deliver({ type, object: object as KubeObject });
            else if (type === "BOOKMARK") deliver({ type, resourceVersion: String((object as KubeObject | undefined)?.metadata?.resourceVersion ?? "") });
            // An ERROR event carries a Status (410 Expired: resourceVersion too old); the server
            // closes the stream after it, and the watch ends with that status, not as a timeout.
            else if (type === "ERROR") {
              const status = statusBody(object);
              end(
                new KubeApiError(
                  Number((object as { code?: unknown } | undefined)?.code) || 500,
                  status?.message ?? "the watch ended with an error event",
                  status?.reason,
                ),
              );
            }
          },
          (err: unknown) => {
            if (stopped) return;
            end(err === null || err === undefined ? undefined : toKubeApiError(err));
          },
        );
      } catch (err) {
        end(toKubeApiError(err));
      }
      if (ended) controller?.abort();
      return {
        stop() {
          stopped = true;
          controller?.abort();
        },
      };
    },

    async get(plural, namespace, name) {
      return (await call(() => api.getNamespacedCustomObject({ ...ref(plural, namespace), name }))) as KubeObject;
    },

    async patchStatus(plural, namespace, name, status, resourceVersion) {
      const body = { status, ...guard(resourceVersion) };
      return (await call(() => api.patchNamespacedCustomObjectStatus({ ...ref(plural, namespace), name, body }, mergePatch))) as KubeObject;
    },

    async patchMetadata(plural, namespace, name, metadata, resourceVersion) {
      const body = { metadata: { ...metadata, ...guard(resourceVersion).metadata } };
      return (await call(() => api.patchNamespacedCustomObject({ ...ref(plural, namespace), name, body }, mergePatch))) as KubeObject;
    },

    async create(plural, namespace, body) {
      return (await call(() => api.createNamespacedCustomObject({ ...ref(plural, namespace), body }))) as KubeObject;
    },

    async delete(plural, namespace, name) {
      try {
        await call(() => api.deleteNamespacedCustomObject({ ...ref(plural, namespace), name }));
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) return;
        throw err;
      }
    },
  };
}

/**
 * A merge patch that carries `metadata.resourceVersion` is refused with 409 Conflict when the
 * object's resourceVersion differs: optimistic concurrency without a read-modify-write PUT.
 */
function guard(resourceVersion: string | undefined): { metadata?: { resourceVersion: string } } {
  return resourceVersion === undefined ? {} : { metadata: { resourceVersion } };
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toKubeApiError(err);
  }
}

/**
 * Any failure as a KubeApiError: an answer of the server keeps its HTTP status and, from the
 * Status object in its body, the message and reason; anything else (refused connection, DNS,
 * TLS, a reset) is status 0, "could not be reached".
 */
export function toKubeApiError(err: unknown): KubeApiError {
  if (err instanceof KubeApiError) return err;
  if (err instanceof ApiException) {
    const status = statusBody(err.body);
    return new KubeApiError(err.code, status?.message ?? `the API server answered HTTP ${err.code}`, status?.reason);
  }
  // client-node's Watch reports a non-200 answer as an Error with `statusCode` (the body unread).
  const statusCode = (err as { statusCode?: unknown })?.statusCode;
  if (typeof statusCode === "number")
    return new KubeApiError(statusCode, `the API server answered the watch with HTTP ${statusCode} (${(err as Error).message})`);
  return new KubeApiError(0, `the API server could not be reached: ${err instanceof Error ? err.message : String(err)}`);
}

/** The `message` and `reason` of a Kubernetes Status object, from a body client-node left as text or parsed. */
function statusBody(body: unknown): { message?: string; reason?: string } | undefined {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return body.trim() === "" ? undefined : { message: body.trim() };
    }
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { message, reason } = value as { message?: unknown; reason?: unknown };
  return { ...(typeof message === "string" ? { message } : {}), ...(typeof reason === "string" && reason !== "" ? { reason } : {}) };
}

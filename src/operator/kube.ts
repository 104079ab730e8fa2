/**
 * What the operator needs of a Kubernetes API server, and nothing more: list and watch one
 * resource kind (cluster-wide or in one namespace), read one object, merge-patch its status
 * subresource or its metadata, create and delete objects. The controller is written against this
 * interface; `kube-client.ts` implements it with `@kubernetes/client-node`, and the tests
 * implement it in memory (with injected 409/410/500 answers) and over a local HTTP server.
 */

/** The API group and version of Sluice's custom resources. */
export const GROUP = "sluice.dev";
export const VERSION = "v1alpha1";

/** The plural names of the two resources the operator reconciles. */
export type Plural = "workflows" | "workflowruns";

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  /** Bumped by the API server on every change of `spec` (not of status or metadata). */
  generation?: number;
  creationTimestamp?: string;
  /** Set when a delete was asked for while finalizers remain. */
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A Kubernetes `metav1.Condition`. */
export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  observedGeneration?: number;
  lastTransitionTime: string;
  /** CamelCase, machine-readable. */
  reason: string;
  message: string;
}

export interface KubeObject<Spec = Record<string, unknown>, Status = Record<string, unknown>> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}

export interface ListResult {
  items: KubeObject[];
  /** The list's resourceVersion: where a watch continues from. */
  resourceVersion: string;
}

export type WatchEvent = { type: "ADDED" | "MODIFIED" | "DELETED"; object: KubeObject } | { type: "BOOKMARK"; resourceVersion: string };

export interface WatchHandle {
  stop(): void;
}

/**
 * An answer of the API server other than success. `status` is the HTTP status (409 Conflict,
 * 410 Gone, 404 Not Found, 422 Invalid, 5xx), or 0 when the server could not be reached.
 */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

export function isKubeApiError(err: unknown, status?: number): err is KubeApiError {
  return err instanceof KubeApiError && (status === undefined || err.status === status);
}

export interface KubeApi {
  /** Every object of a kind, in one namespace or (null) in all. */
  list(plural: Plural, namespace: string | null): Promise<ListResult>;
  /**
   * Watch from `resourceVersion` with bookmarks. `onEvent` gets the events in order; `onClose`
   * is called once when the watch ends: without an error when the server closed it normally
   * (its timeout), with a KubeApiError(410) when `resourceVersion` is too old (relist), with
   * another error otherwise. Stopping the handle ends it without calling `onClose`. A watch that
   * cannot start (server unreachable: status 0, an HTTP error) ends the same way: the promise
   * still resolves, and `onClose` gets the error on a later turn, after the caller has the handle.
   */
  watch(
    plural: Plural,
    namespace: string | null,
    resourceVersion: string,
    onEvent: (e: WatchEvent) => void,
    onClose: (err?: Error) => void,
  ): Promise<WatchHandle>;
  /** One object; KubeApiError(404) when there is none. */
  get(plural: Plural, namespace: string, name: string): Promise<KubeObject>;
  /**
   * Merge-patch the status subresource. With `resourceVersion`, the write is refused with
   * KubeApiError(409) when the object changed since (optimistic concurrency).
   */
  patchStatus(plural: Plural, namespace: string, name: string, status: Record<string, unknown>, resourceVersion?: string): Promise<KubeObject>;
  /** Merge-patch metadata (finalizers, labels, annotations), optionally guarded by `resourceVersion`. */
  patchMetadata(
    plural: Plural,
    namespace: string,
    name: string,
    metadata: Pick<Partial<ObjectMeta>, "finalizers" | "labels" | "annotations">,
    resourceVersion?: string,
  ): Promise<KubeObject>;
  create(plural: Plural, namespace: string, body: Omit<KubeObject, "metadata"> & { metadata: Partial<ObjectMeta> & { name: string } }): Promise<KubeObject>;
  /** Ask for deletion (finalizers may delay it); a 404 counts as done. */
  delete(plural: Plural, namespace: string, name: string): Promise<void>;
}

/**
 * A Kubernetes API server in miniature, for the operator's tests: the part of the API the
 * operator uses (list, watch, get, create, merge patch of an object and of its status, delete),
 * for the two sluice.dev resources, over real HTTP on 127.0.0.1, so `kubeApiFromConfig` runs
 * unchanged against it. Each behaviour follows the Kubernetes API reference; the comment on each
 * rule names the concept page it comes from (kubernetes.io/docs/reference/using-api/api-concepts/
 * "API Concepts", tasks/extend-kubernetes/custom-resources/custom-resource-definitions/ "CRDs",
 * concepts/overview/working-with-objects/finalizers/ "Finalizers"). Where the real server does
 * more (label selectors, PUT, server-side apply, pagination), this one answers the subset only.
 *
 * Tests drive the cluster around the operator with `apply` and `remove` (what a user's kubectl
 * would do; not in the request log), and its failures with `failNext`, `compact`, `closeWatches`.
 */
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isDeepStrictEqual } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { GROUP, VERSION, type KubeObject, type Plural } from "../../src/operator/kube.js";
import { RUN_KIND } from "../../src/spec/resources.js";
import { KIND as WORKFLOW_KIND } from "../../src/spec/schema.js";

export const API_VERSION = `${GROUP}/${VERSION}`;
export const KINDS: Record<Plural, string> = { workflows: WORKFLOW_KIND, workflowruns: RUN_KIND };

/** The verbs RBAC authorizes (Using RBAC Authorization: "Referring to resources"; API Concepts: "Kubernetes API terminology"). */
export type RbacVerb = "get" | "list" | "watch" | "create" | "patch" | "update" | "delete" | "deletecollection";

/** One request as RBAC sees it: what a Role rule must grant for it to pass. */
export interface KubeRequest {
  verb: RbacVerb;
  apiGroup: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

/** Which requests `failNext` answers: all given fields must match (`path`: the URL path, exactly or by a RegExp). */
export interface FailMatch {
  method?: string;
  path?: string | RegExp;
  verb?: RbacVerb;
}

/** What a user creates or applies: an object whose server-set metadata may be left out. */
export type ObjectInput = Omit<KubeObject, "metadata" | "apiVersion" | "kind"> & {
  apiVersion?: string;
  kind?: string;
  metadata: Partial<KubeObject["metadata"]> & { name: string };
};

export interface FakeApiServer {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** The bearer token every request must carry. */
  readonly token: string;
  /** A KubeConfig for the server (token auth, plain http), its context's namespace `namespace`. */
  kubeConfig(namespace?: string): KubeConfig;
  /** Writes a kubeconfig file for the server to `file` (for KUBECONFIG); returns `file`. */
  writeKubeconfig(file: string, namespace?: string): string;

  /** One object as stored now (a copy), or undefined. */
  object(plural: Plural, namespace: string, name: string): KubeObject | undefined;
  /** Every object of a kind, in one namespace or all, in the server's (namespace, name) order. */
  objects(plural: Plural, namespace?: string): KubeObject[];
  /**
   * What `kubectl apply` would do, without going through the request log: create the object, or
   * merge its spec, labels and annotations into the existing one (generation bumps on a spec change).
   */
  apply(plural: Plural, namespace: string, body: ObjectInput): KubeObject;
  /** What `kubectl delete` would do (finalizers keep the object until they are removed); false when there was none. */
  remove(plural: Plural, namespace: string, name: string): boolean;

  /** The current (global) resourceVersion. */
  resourceVersion(): string;
  /** Sends a BOOKMARK at the current resourceVersion on every open watch that allowed bookmarks. */
  bookmark(): void;
  /** Forgets the change history: a watch from a resourceVersion older than now gets 410 Expired. */
  compact(): void;
  /** Ends every open watch normally, as the server does when a watch's timeout passes. */
  closeWatches(): void;
  /** The number of watches open now. */
  openWatches(): number;
  /** Answers the next `count` requests that match with `status` (a Status object), instead of serving them. */
  failNext(count: number, status: number, match?: FailMatch): void;
  /** Every authenticated request received so far, in order. */
  requests(): KubeRequest[];
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Status objects and errors

// API Concepts ("Resources" / Status kind): every failure is answered with a Status object whose
// `code` is the HTTP status and whose `reason` is the machine-readable cause.
const REASONS: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  405: "MethodNotAllowed",
  409: "Conflict",
  410: "Expired",
  415: "UnsupportedMediaType",
  422: "Invalid",
  429: "TooManyRequests",
  500: "InternalError",
  503: "ServiceUnavailable",
  504: "Timeout",
};

class ApiFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly reason: string = REASONS[code] ?? "Unknown",
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

function statusObject(code: number, message: string, reason: string, details?: Record<string, unknown>) {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, ...(details ? { details } : {}), code };
}

const qualified = (plural: Plural) => `${plural}.${GROUP}`;
const notFound = (plural: Plural, name: string) =>
  new ApiFailure(404, `${qualified(plural)} "${name}" not found`, "NotFound", { name, group: GROUP, kind: plural });
const conflict = (plural: Plural, name: string) =>
  new ApiFailure(
    409,
    `Operation cannot be fulfilled on ${qualified(plural)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    "Conflict",
    { name, group: GROUP, kind: plural },
  );

// ---------------------------------------------------------------------------------------------
// The cluster's state

type Json = Record<string, unknown>;
type Obj = KubeObject & Json;
interface Change {
  rv: number;
  plural: Plural;
  namespace: string;
  line: string;
}
interface OpenWatch {
  plural: Plural;
  namespace: string | null;
  bookmarks: boolean;
  res: ServerResponse;
}

const writableWatch = (w: OpenWatch) => !w.res.writableEnded && !w.res.destroyed;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const copy = <T>(v: T): T => structuredClone(v);
// Object Names and IDs: custom resources' names are DNS subdomain names (RFC 1123), at most 253 characters.
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Kubernetes writes timestamps as RFC 3339 in seconds (metav1.Time).
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");

/** JSON Merge Patch, RFC 7386: objects merge key by key, `null` deletes, anything else (arrays too) replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return copy(patch);
  const out: Json = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** The merge patch that turns `from` into `to` (what kubectl computes for an apply). */
export function mergePatchBetween(from: unknown, to: unknown): unknown {
  if (!isObject(from) || !isObject(to)) return copy(to);
  const out: Json = {};
  for (const k of Object.keys(from)) if (!(k in to)) out[k] = null;
  for (const [k, v] of Object.entries(to)) if (!isDeepStrictEqual(from[k], v)) out[k] = mergePatchBetween(from[k], v);
  return out;
}

/** Everything of an object but metadata and status: what `metadata.generation` counts changes of. */
function generationPart(o: Json): Json {
  const { metadata: _m, status: _s, ...rest } = o;
  return rest;
}

function createCluster() {
  const store = new Map<string, Obj>();
  const history: Change[] = [];
  const watches = new Set<OpenWatch>();
  let rv = 0;
  // API Concepts, "Efficient detection of changes": the server keeps a limited history of
  // changes; compact() moves its start to now, as etcd compaction does.
  let compactedAt = 0;

  const key = (plural: Plural, namespace: string, name: string) => `${plural}/${namespace}/${name}`;

  function emit(type: "ADDED" | "MODIFIED" | "DELETED", plural: Plural, obj: Obj) {
    const change: Change = {
      rv: Number(obj.metadata.resourceVersion),
      plural,
      namespace: obj.metadata.namespace,
      line: `${JSON.stringify({ type, object: obj })}\n`,
    };
    history.push(change);
    for (const w of watches)
      if (w.plural === plural && (w.namespace === null || w.namespace === change.namespace) && writableWatch(w)) w.res.write(change.line);
  }

  function list(plural: Plural, namespace: string | null): Obj[] {
    return [...store.values()]
      .filter((o) => o.kind === KINDS[plural] && (namespace === null || o.metadata.namespace === namespace))
      .sort((a, b) => a.metadata.namespace.localeCompare(b.metadata.namespace) || a.metadata.name.localeCompare(b.metadata.name))
      .map(copy);
  }

  function get(plural: Plural, namespace: string, name: string): Obj {
    const o = store.get(key(plural, namespace, name));
    if (!o) throw notFound(plural, name);
    return o;
  }

  function create(plural: Plural, namespace: string, body: unknown): Obj {
    if (!isObject(body) || !isObject(body.metadata)) throw new ApiFailure(400, "the request body is not an object with metadata");
    const kind = body.kind ?? KINDS[plural];
    const apiVersion = body.apiVersion ?? API_VERSION;
    if (kind !== KINDS[plural] || apiVersion !== API_VERSION) {
      throw new ApiFailure(400, `the API version in the data (${String(apiVersion)}) and kind (${String(kind)}) do not match ${API_VERSION} ${KINDS[plural]}`);
    }
    const meta = body.metadata;
    const name = meta.name;
    if (typeof name !== "string" || name === "")
      throw new ApiFailure(422, `${KINDS[plural]} "" is invalid: metadata.name: Required value: name or generateName is required`);
    if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
      throw new ApiFailure(
        422,
        `${KINDS[plural]} "${name}" is invalid: metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`,
      );
    }
    if (meta.namespace !== undefined && meta.namespace !== namespace) {
      throw new ApiFailure(400, "the namespace of the provided object does not match the namespace sent on the request");
    }
    if (store.has(key(plural, namespace, name))) {
      throw new ApiFailure(409, `${qualified(plural)} "${name}" already exists`, "AlreadyExists", { name, group: GROUP, kind: plural });
    }
    // CRDs, "Status subresource": with it enabled, a create ignores the status stanza.
    const { status: _ignored, ...rest } = copy(body);
    const { deletionTimestamp: _d, deletionGracePeriodSeconds: _g, ...given } = rest.metadata as Json;
    const obj = {
      ...rest,
      apiVersion: API_VERSION,
      kind: KINDS[plural],
      // API Concepts / Object Names and IDs: the server sets uid, creationTimestamp and
      // resourceVersion; CRDs, "Status subresource": generation starts at 1.
      metadata: {
        ...given,
        name,
        namespace,
        uid: randomUUID(),
        creationTimestamp: now(),
        generation: 1,
        resourceVersion: String(++rv),
      },
    } as Obj;
    store.set(key(plural, namespace, name), obj);
    emit("ADDED", plural, obj);
    return copy(obj);
  }

  function patch(plural: Plural, namespace: string, name: string, body: unknown, subresource: "status" | undefined): Obj {
    if (!isObject(body)) throw new ApiFailure(400, "the merge patch is not a JSON object");
    const current = get(plural, namespace, name);
    // API Concepts, "Resource versions" + "Patch": a resourceVersion in the patch is a
    // precondition; when it is not the object's current one the patch fails with 409 Conflict.
    const wanted = isObject(body.metadata) ? body.metadata.resourceVersion : undefined;
    if (wanted !== undefined && wanted !== null && String(wanted) !== current.metadata.resourceVersion) throw conflict(plural, name);

    let next: Json;
    if (subresource === "status") {
      // CRDs, "Status subresource": PUT/PATCH of /status ignore everything but the status stanza.
      next = { ...copy(current) };
      if ("status" in body) {
        const merged = mergePatch({ status: current.status }, { status: body.status }) as Json;
        if (merged.status === undefined) delete next.status;
        else next.status = merged.status;
      }
    } else {
      // CRDs, "Status subresource": PUT/PATCH of the resource ignore changes to its status.
      next = mergePatch(current, body) as Json;
      if (current.status === undefined) delete next.status;
      else next.status = copy(current.status);
    }
    // API Concepts / Object Names and IDs: the system-populated fields cannot be patched.
    const meta: Json = isObject(next.metadata) ? next.metadata : {};
    const cur = current.metadata as unknown as Json;
    for (const f of ["name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"]) {
      if (cur[f] === undefined) delete meta[f];
      else meta[f] = cur[f];
    }
    next.metadata = meta;
    next.apiVersion = current.apiVersion;
    next.kind = current.kind;

    // Finalizers: once an object is being deleted, finalizers can be removed but not added.
    if (current.metadata.deletionTimestamp) {
      const before = new Set(current.metadata.finalizers ?? []);
      const added = ((meta.finalizers as string[] | undefined) ?? []).filter((f) => !before.has(f));
      if (added.length > 0) {
        throw new ApiFailure(
          422,
          `${KINDS[plural]} "${name}" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`,
        );
      }
    }
    // kube-apiserver writes nothing for a patch that changes nothing: no new resourceVersion, no event.
    if (isDeepStrictEqual(next, current)) return copy(current);

    // CRDs, "Status subresource": metadata.generation is incremented for every change except to
    // .metadata or .status.
    if (!isDeepStrictEqual(generationPart(next), generationPart(current))) meta.generation = (current.metadata.generation ?? 0) + 1;
    meta.resourceVersion = String(++rv);
    const obj = next as Obj;
    // Finalizers: an object marked for deletion is removed once its last finalizer is (one DELETED event).
    if (obj.metadata.deletionTimestamp && (obj.metadata.finalizers ?? []).length === 0) {
      store.delete(key(plural, namespace, name));
      emit("DELETED", plural, obj);
    } else {
      store.set(key(plural, namespace, name), obj);
      emit("MODIFIED", plural, obj);
    }
    return copy(obj);
  }

  /** Returns the object still stored (marked for deletion), or undefined when it is gone. */
  function remove(plural: Plural, namespace: string, name: string): Obj | undefined {
    const current = get(plural, namespace, name);
    if ((current.metadata.finalizers ?? []).length > 0) {
      // Finalizers: a delete of an object with finalizers only sets metadata.deletionTimestamp
      // (an update, MODIFIED) and keeps the object until the finalizers are gone.
      if (current.metadata.deletionTimestamp) return copy(current);
      const obj = copy(current);
      const meta = obj.metadata as unknown as Json;
      meta.deletionTimestamp = now();
      meta.deletionGracePeriodSeconds = 0;
      // kube-apiserver (registry markAsDeleting) bumps generation when it first marks an object for deletion.
      meta.generation = (current.metadata.generation ?? 0) + 1;
      meta.resourceVersion = String(++rv);
      store.set(key(plural, namespace, name), obj);
      emit("MODIFIED", plural, obj);
      return copy(obj);
    }
    const obj = copy(current);
    obj.metadata.resourceVersion = String(++rv);
    store.delete(key(plural, namespace, name));
    emit("DELETED", plural, obj);
    return undefined;
  }

  function watch(plural: Plural, namespace: string | null, from: string | undefined, bookmarks: boolean, res: ServerResponse) {
    const matches = (c: { plural: Plural; namespace: string }) => c.plural === plural && (namespace === null || c.namespace === namespace);
    // A client that goes away mid-write is the client's business, not an error of the server.
    res.on("error", () => undefined);
    res.writeHead(200, { "Content-Type": "application/json" });
    res.flushHeaders();
    if (from === undefined || from === "" || from === "0") {
      // API Concepts, "Semantics for watch": without a resourceVersion (or "0") the watch starts
      // with a synthetic ADDED event for every object that exists, then the changes.
      for (const o of list(plural, namespace)) res.write(`${JSON.stringify({ type: "ADDED", object: o })}\n`);
    } else {
      const start = Number(from);
      if (!Number.isInteger(start) || start < 0) {
        res.write(`${JSON.stringify({ type: "ERROR", object: statusObject(400, `invalid resource version "${from}"`, "BadRequest") })}\n`);
        res.end();
        return;
      }
      // API Concepts, "Efficient detection of changes" / 410 Gone: a resourceVersion older than
      // the history the server still has ends the watch with an ERROR event carrying a Status
      // 410 Expired; the client must list again.
      if (start < compactedAt) {
        const status = statusObject(410, `too old resource version: ${start} (${compactedAt})`, "Expired");
        res.write(`${JSON.stringify({ type: "ERROR", object: status })}\n`);
        res.end();
        return;
      }
      // API Concepts, "Efficient detection of changes": every change after the given resourceVersion, in order.
      for (const c of history) if (c.rv > start && matches(c)) res.write(c.line);
    }
    const w: OpenWatch = { plural, namespace, bookmarks, res };
    watches.add(w);
    res.on("close", () => watches.delete(w));
  }

  return {
    store,
    list,
    get,
    create,
    patch,
    remove,
    watch,
    rv: () => rv,
    bookmark() {
      // API Concepts, "Watch bookmarks": an event of the watched kind carrying only
      // metadata.resourceVersion, sent only to watches that asked with allowWatchBookmarks=true.
      for (const w of watches) {
        if (!w.bookmarks || !writableWatch(w)) continue;
        w.res.write(
          `${JSON.stringify({ type: "BOOKMARK", object: { kind: KINDS[w.plural], apiVersion: API_VERSION, metadata: { resourceVersion: String(rv) } } })}\n`,
        );
      }
    },
    compact() {
      compactedAt = rv;
      history.length = 0;
    },
    closeWatches() {
      // API Concepts, "Efficient detection of changes": the server ends a watch after its timeout;
      // a normal end of the stream, the client watches again from the last resourceVersion.
      for (const w of watches) w.res.end();
      watches.clear();
    },
    openWatches: () => watches.size,
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP

const PLURALS = new Set<string>(Object.keys(KINDS));

interface Route {
  plural: Plural;
  namespace?: string;
  name?: string;
  subresource?: "status";
  verb: RbacVerb;
}

/** `/apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME[/SUBRESOURCE]]` (API Concepts, "Resource URIs"). */
function route(method: string, url: URL): Route | undefined {
  const m = /^\/apis\/([^/]+)\/([^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+)(?:\/([^/]+))?)?$/.exec(url.pathname);
  if (!m || m[1] !== GROUP || m[2] !== VERSION || !PLURALS.has(m[4]!)) return undefined;
  if (m[6] !== undefined && m[6] !== "status") return undefined;
  const name = m[5] === undefined ? undefined : decodeURIComponent(m[5]);
  const watch = url.searchParams.get("watch");
  // Using RBAC Authorization, "Determine the request verb": GET of a collection is list (watch
  // with watch=true), of one object get; POST create; PATCH patch; PUT update; DELETE delete.
  const verb: RbacVerb | undefined =
    method === "GET"
      ? watch === "true" || watch === "1"
        ? "watch"
        : name === undefined
          ? "list"
          : "get"
      : method === "POST"
        ? "create"
        : method === "PATCH"
          ? "patch"
          : method === "PUT"
            ? "update"
            : method === "DELETE"
              ? name === undefined
                ? "deletecollection"
                : "delete"
              : undefined;
  if (!verb) return undefined;
  return {
    plural: m[4] as Plural,
    ...(m[3] === undefined ? {} : { namespace: decodeURIComponent(m[3]) }),
    ...(name === undefined ? {} : { name }),
    ...(m[6] === undefined ? {} : { subresource: "status" as const }),
    verb,
  };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiFailure(400, `the request body is not JSON: ${text.slice(0, 80)}`);
  }
}

function send(res: ServerResponse, code: number, body: unknown) {
  res.writeHead(code, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

export async function startFakeApiServer(opts: { token?: string } = {}): Promise<FakeApiServer> {
  const token = opts.token ?? `fake-${randomUUID()}`;
  const cluster = createCluster();
  const log: KubeRequest[] = [];
  const faults: { remaining: number; status: number; match: FailMatch }[] = [];

  const faultFor = (method: string, path: string, verb: RbacVerb) => {
    const f = faults.find(
      (x) =>
        x.remaining > 0 &&
        (x.match.method === undefined || x.match.method.toUpperCase() === method) &&
        (x.match.verb === undefined || x.match.verb === verb) &&
        (x.match.path === undefined || (typeof x.match.path === "string" ? x.match.path === path : x.match.path.test(path))),
    );
    if (f) f.remaining--;
    return f;
  };

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    // Authenticating, "Putting a bearer token in a request": Authorization: Bearer <token>, else 401.
    if (req.headers.authorization !== `Bearer ${token}`) throw new ApiFailure(401, "Unauthorized");
    const r = route(method, url);
    if (!r) throw new ApiFailure(404, "the server could not find the requested resource");
    log.push({
      verb: r.verb,
      apiGroup: GROUP,
      resource: r.plural,
      ...(r.subresource ? { subresource: r.subresource } : {}),
      ...(r.namespace === undefined ? {} : { namespace: r.namespace }),
      ...(r.name === undefined ? {} : { name: r.name }),
    });
    const fault = faultFor(method, url.pathname, r.verb);
    if (fault) throw new ApiFailure(fault.status, `injected failure (fake API server, failNext ${fault.status})`);

    // Namespaced resources are read across namespaces (list, watch) at /apis/GROUP/VERSION/PLURAL;
    // every other operation needs the namespace in the path.
    if (r.namespace === undefined && r.verb !== "list" && r.verb !== "watch") throw new ApiFailure(404, "the server could not find the requested resource");
    const ns = r.namespace ?? null;
    switch (r.verb) {
      case "list":
        // API Concepts, "Retrieving large results sets in chunks" aside: the list is served from
        // the latest state, and its metadata.resourceVersion is where a watch continues from.
        return send(res, 200, {
          apiVersion: API_VERSION,
          kind: `${KINDS[r.plural]}List`,
          metadata: { resourceVersion: String(cluster.rv()) },
          items: cluster.list(r.plural, ns),
        });
      case "watch":
        return cluster.watch(r.plural, ns, url.searchParams.get("resourceVersion") ?? undefined, url.searchParams.get("allowWatchBookmarks") === "true", res);
      case "get":
        return send(res, 200, cluster.get(r.plural, r.namespace!, r.name!));
      case "create":
        if (r.name !== undefined || r.subresource)
          throw new ApiFailure(405, `the server does not allow this method on the requested resource (POST ${url.pathname})`);
        return send(res, 201, cluster.create(r.plural, r.namespace!, await readJson(req)));
      case "patch": {
        // API Concepts, "Patch" (and CRDs: custom resources take no strategic merge patch): this
        // server takes JSON merge patches only.
        const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
        if (type !== "application/merge-patch+json") {
          throw new ApiFailure(
            415,
            `the body of the request was in an unknown format (${type || "none"}) - this fake API server accepts application/merge-patch+json only`,
          );
        }
        return send(res, 200, cluster.patch(r.plural, r.namespace!, r.name!, await readJson(req), r.subresource));
      }
      case "delete": {
        if (r.subresource) throw new ApiFailure(405, `the server does not allow this method on the requested resource (DELETE ${url.pathname})`);
        const kept = cluster.remove(r.plural, r.namespace!, r.name!);
        if (kept) return send(res, 200, kept);
        return send(res, 200, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details: { name: r.name, group: GROUP, kind: r.plural } });
      }
      default:
        throw new ApiFailure(405, `this fake API server does not implement ${r.verb} (the operator uses merge patches)`);
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const f = err instanceof ApiFailure ? err : new ApiFailure(500, `fake API server: ${(err as Error).message}`);
      if (res.headersSent) res.end();
      else send(res, f.code, statusObject(f.code, f.message, f.reason, f.details));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const kubeconfigDoc = (namespace: string) => ({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "fake-apiserver", cluster: { server: url, "insecure-skip-tls-verify": true } }],
    users: [{ name: "sluice-operator", user: { token } }],
    contexts: [{ name: "fake", context: { cluster: "fake-apiserver", user: "sluice-operator", namespace } }],
    "current-context": "fake",
  });

  return {
    url,
    token,
    kubeConfig(namespace = "default") {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        // client-node 1.x speaks plain http only to a cluster marked skipTLSVerify (there is no TLS to verify).
        clusters: [{ name: "fake-apiserver", server: url, skipTLSVerify: true }],
        users: [{ name: "sluice-operator", token }],
        contexts: [{ name: "fake", cluster: "fake-apiserver", user: "sluice-operator", namespace }],
        currentContext: "fake",
      });
      return kc;
    },
    writeKubeconfig(file, namespace = "default") {
      writeFileSync(file, stringify(kubeconfigDoc(namespace)));
      return file;
    },
    object(plural, namespace, name) {
      const o = cluster.store.get(`${plural}/${namespace}/${name}`);
      return o && copy(o);
    },
    objects: (plural, namespace) => cluster.list(plural, namespace ?? null),
    apply(plural, namespace, body) {
      if (!cluster.store.has(`${plural}/${namespace}/${body.metadata.name}`)) return cluster.create(plural, namespace, body);
      const { labels, annotations } = body.metadata;
      const metadata = { ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) };
      const current = cluster.get(plural, namespace, body.metadata.name);
      // The spec becomes the one given, as apply makes it for the fields the user owns.
      const spec = mergePatchBetween(current.spec ?? {}, body.spec ?? {});
      return cluster.patch(plural, namespace, body.metadata.name, { metadata, spec }, undefined);
    },
    remove(plural, namespace, name) {
      if (!cluster.store.has(`${plural}/${namespace}/${name}`)) return false;
      cluster.remove(plural, namespace, name);
      return true;
    },
    resourceVersion: () => String(cluster.rv()),
    bookmark: () => cluster.bookmark(),
    compact: () => cluster.compact(),
    closeWatches: () => cluster.closeWatches(),
    openWatches: () => cluster.openWatches(),
    failNext(count, status, match = {}) {
      faults.push({ remaining: count, status, match });
    },
    requests: () => log.map((r) => ({ ...r })),
    async close() {
      cluster.closeWatches();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

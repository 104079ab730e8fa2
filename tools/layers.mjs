/**
 * The architecture, defined once: each layer of src/, the folder it lives in, what it is for and
 * which layers it may import. Two things derive from this file and nothing else:
 * - eslint.config.mjs turns it into import-x/no-restricted-paths zones, so `npm run lint` (and so
 *   `npm test`) fails on an import that runs against the picture;
 * - `npm run gen:arch` (tools/architecture.mjs) draws the README's architecture picture and its
 *   table of allowed imports from it, and test/tools/architecture.test.ts fails when README.md is stale.
 * Change the architecture here, then run `npm run gen:arch`.
 *
 * A layer:
 * - `dir`: its folder (or file) under the repository root; every file under src/ is in exactly one layer;
 * - `row`: its place in the picture, top (0) to bottom; layers on one row are drawn side by side
 *   and do not import each other unless `may` says so;
 * - `may`: the layers it may import ("*": every layer, internals included — the entry points wire everything);
 * - `publicFiles` (optional): the only files of this layer that other layers may import (cli excepted),
 *   with `publicWhy` saying why; the rest are its internals;
 * - `about`: the lines drawn in the picture (file names and what they do), `role` the note beside them.
 */

export const LAYERS = [
  {
    name: "cli",
    dir: "src/cli",
    row: 0,
    may: "*",
    role: "entry points: parse, call core, print",
    about: [
      "main.ts  commander · progress.ts (live table / plain / JSON lines)",
      "ingest.ts  sluice ingest / infer (the standard workflow with a schema, inferred or given)",
      "serve.ts, worker.ts  the service processes · service.ts  logger, metrics and alert wiring",
      "operator.ts  sluice operator: the Kubernetes operator under a leader lease",
      "json-log.ts  JSON log lines with each key once (run's JSON lines, the service logger)",
      "remote.ts  apply, rollback, emit: through the API, else on the store",
      "status.ts  runs, status · recovery-status.ts  a recovery run's decision, gaps, conflicts",
      "audit.ts  audit verify / checkpoint / list · keys.ts  keys init / rotate / list / rewrap / retire",
      "decrypt.ts  sluice decrypt: field-encrypted rows in clear, each read audited",
      "audit-report.ts  sluice audit report: a GDPR Art. 30 record of processing from a workflow's runs",
    ],
  },
  {
    name: "server",
    dir: "src/server",
    row: 1,
    may: ["control", "engine", "connectors", "store", "spec", "crypto", "errors"],
    role: "the HTTP API and the web UI",
    about: [
      "app.ts (Hono, zod-openapi)",
      "deps.ts · routes/ (+ decrypt: admin-only)",
      "auth.ts (roles)",
      "config.ts · errors.ts",
      "listen.ts (loopback w/o tokens)",
      "ui/  routes.tsx (pages, SSE) · session.ts",
      "     (cookie from a token, CSRF) · layout.tsx",
      "     runs-page · run-page · run-model ·",
      "     dag.ts (layered layout) · graph-svg",
      "     log-file.ts (windows) · logs-page ·",
      "     quarantine (+ -page) · forms-page ·",
      "     style.ts (the CSS) · view-routes:",
      "     workflows-page (versions, diff) ·",
      "     events-page · streams-page (charts) ·",
      "     run-documents (+ -page: recovery,",
      "     classification, audit verdict)",
    ],
  },
  {
    name: "triggers",
    dir: "src/triggers",
    row: 1,
    may: ["control", "engine", "actions", "connectors", "store", "spec", "crypto", "errors"],
    role: "decide WHEN a run starts",
    about: ["scheduler.ts  leader lease, fires,", "  catch-up, policies", "schedule.ts  cron math (pure)", "file-watcher.ts · platform.ts"],
  },
  {
    name: "observe",
    dir: "src/observe",
    row: 1,
    may: ["engine", "actions", "store", "spec", "crypto", "errors"],
    role: "fed engine events",
    about: ["metrics.ts", "alerts.ts", "webhook.ts"],
  },
  {
    name: "operator",
    dir: "src/operator",
    row: 1,
    may: ["control", "actions", "store", "spec", "errors"],
    role: "Kubernetes resources ⇄ registry, runs",
    about: [
      "controller.ts  informers → queue →",
      "  reconcile → apply",
      "reconcile-workflow, reconcile-run",
      "  pure: facts → change + status",
      "informer.ts  relist on 410, backoff",
      "queue.ts  one reconcile per key",
      "leader.ts  a lease in the store",
      "mirror.ts  cron/event runs mirrored",
      "conditions.ts · clock.ts",
      "kube.ts  the API it needs",
      "kube-client.ts  that, on client-node",
    ],
  },
  {
    name: "control",
    dir: "src/control",
    row: 2,
    may: ["engine", "store", "spec", "crypto", "errors"],
    role: "the operations the CLI, the API and the triggers share",
    about: [
      "workflows.ts  apply, sync a directory, roll back",
      "runs.ts  start, retry, resume, cancel",
      "events.ts  record an event, start the runs it triggers",
    ],
  },
  {
    name: "engine",
    dir: "src/engine",
    row: 3,
    may: ["actions", "store", "spec", "crypto", "errors"],
    role: "decide WHAT runs next, durably",
    about: [
      "execute.ts  DAG scheduler, leases, resume",
      "writer.ts   group commit of step transitions",
      "worker.ts   claim queued runs, drain on stop",
      "attempt.ts  one attempt: inputs, timeout, outcome · attempt-log.ts  where its log goes",
      "continuous.ts + pipeline.ts  a continuous group as one pipeline",
      "rules.ts  runIf trigger rules (pure) · fanout.ts  forEach items, thresholds",
      "subworkflow.ts  workflow: steps as child runs · takeover.ts  dead local owners",
      "orphans.ts  stop programs a dead owner left running",
      "usage.ts  an in-process attempt's CPU, memory, I/O",
      "history.ts  the store as actions see it: past runs, shared state",
      "audit.ts  ctx.audit (fail closed) and the signed checkpoint at a run's end",
      "backoff.ts  retry policy + decision · limiter.ts · start.ts · detail.ts",
    ],
  },
  {
    name: "actions",
    dir: "src/actions",
    row: 4,
    may: ["connectors", "formats", "spec", "crypto", "errors"],
    publicFiles: ["types.ts", "stream-types.ts", "registry.ts", "exec.ts"],
    publicWhy: "the contract actions run through — context and definitions, stream stages, the catalogue, exec steps (`batch/` and `stream/` are internals)",
    role: "do the work, given inputs + a context",
    about: [
      "registry.ts  catalogue (implements spec's ActionLookup) · builtin.ts (loads each action on first use) · exec.ts",
      "types.ts  ActionContext, ActionDefinition · stream-types.ts  continuous stages",
      "seed-catalogue.ts  the seed's pairs + input schemas · inputs.ts",
      "exec-usage.ts  an exec program's CPU, memory, I/O from /proc",
      "batch/  source-checks · collect (+ collect-http, page-checkpoint) · standardize (+ convert-unit, convert-worker)",
      "        validate · store · discover · parallel (+ chunk-worker) · merge   the batch actions",
      "        typing · quality (+ value-table, bloom-filter, repeats) · infer (+ infer-source, infer-worker) · schema-file · dataset",
      "        typed-dataset · worker-pool · model                              their parts",
      "stream/  source · decode · validate · store                            continuous stages",
      "recovery/  contract (the documents the resilient-fetch actions pass on)",
      "           strategy (select_optimal_retry_strategy) · guardrails · bandit · random",
      "           analyze (+ classify, changepoint, source-key) · breaker (+ source-guard)   failure analysis, circuit breakers",
      "           fallbacks · reconstruct · store-recovered          the data half of recovery",
      "           gaps (the gap ledger) · destination-keys · source-records · merge-records",
      "security/  detectors (checksums) · hints (column names) · classify (Wilson bound)",
      "           column-classes · policy · mask-text · sample · classification · classify-action   PII classification",
      "           collect-encrypted (collect_with_encryption: sealed pages, TLS monitoring)",
      "           store-encrypted (store_with_encryption: cells, tokens, masks)",
      "           requirements (validate_security_requirements) · mfa (verify_mfa_authentication)",
      "           tls-check (establish_encrypted_connection) · connection (tls/auth inputs)",
    ],
  },
  {
    name: "connectors",
    dir: "src/connectors",
    row: 5,
    may: ["formats", "spec", "crypto", "errors"],
    role: "",
    about: [
      "files, http, postgres (sources),",
      "http-tls (mTLS, pin, TLS facts),",
      "http-oauth (client credentials),",
      "secrets, pg-connection",
      "streams/  nats, redis, mqtt, rabbitmq,",
      "          kafka, http-push (brokers)",
      "destinations/  sqlite, postgres",
      "               (+ pg-binary), file",
      "               table-cells (decrypt, rewrap) · decrypt-rows",
    ],
  },
  {
    name: "store",
    dir: "src/store",
    row: 5,
    may: ["spec", "crypto", "errors"],
    publicFiles: ["types.ts"],
    publicWhy: "the StateStore interface — layers are handed a store; only `cli/` opens one, with `index.ts`",
    role: "",
    about: [
      "types.ts  the store by role (async): RunStore,",
      "  QueueStore, RegistryStore, EventStore,",
      "  FireStore, NamedLeaseStore, LedgerStore,",
      "  SharedStateStore, AuditStore;",
      "  StateStore is all of them",
      "migrate.ts  one migration plan, two dialects",
      "sqlite.ts + migrations",
      "postgres.ts + migrations (SKIP LOCKED,",
      "  LISTEN/NOTIFY, fencing)",
      "sqlite-audit.ts, postgres-audit.ts  the",
      "  audit chain, appended serialised",
      "run-page.ts  keyset pages of runs, slim rows",
    ],
  },
  {
    name: "formats",
    dir: "src/formats",
    row: 6,
    may: ["spec", "crypto", "errors"],
    role: "",
    about: [
      "csv, ndjson, json-array, parquet (read),",
      "parquet-write, arrow (read), values, convert",
      "encoding (decoders, detection)",
      "typed (the typed-row vocabulary)",
      "stage (typed rows between steps:",
      "  COPY lines with their content hash)",
    ],
  },
  {
    name: "samples",
    dir: "src/samples",
    row: 6,
    may: ["formats", "spec", "crypto", "errors"],
    role: "",
    about: [
      "trades.ts  the deterministic trades generator",
      "  (sluice sample, tests, benchmarks)",
      "flaky-api.ts  a paginated trades API that",
      "  fails by a scripted plan (fault harness)",
      "secure-api.ts (+ secure-api-certs)  an mTLS",
      "  + OAuth2 + TOTP accounts API (openssl certs)",
    ],
  },
  {
    name: "spec",
    dir: "src/spec",
    row: 7,
    may: ["crypto", "errors"],
    role: "used by all; depends on nothing above",
    about: [
      "schema.ts (zod) · load.ts (YAML → positioned problems) · expressions.ts · params.ts",
      "catalogue.ts (ActionLookup) · generate.ts (JSON Schema, CRDs) · duration.ts",
      "resources.ts  the WorkflowRun spec and both resources' status (CRDs, operator)",
    ],
  },
  {
    name: "crypto",
    dir: "src/crypto",
    row: 8,
    may: ["errors"],
    role: "node:crypto only",
    about: [
      "keyring.ts  key-encryption keys by id and version",
      "envelope.ts  data keys, chunked AES-256-GCM files",
      "cells.ts  field-level cells (sl1:kid:ver:…)",
      "tokens.ts  blind index (HMAC), last-four mask",
      "totp.ts  HOTP / TOTP · masker.ts  secret values",
      "audit-chain.ts  hash chain, signed checkpoints",
      "audit-key.ts  the Ed25519 checkpoint key file",
    ],
  },
  {
    name: "errors",
    dir: "src/errors.ts",
    row: 8,
    may: [],
    role: "imports nothing",
    about: ["SluiceError(code, sentence, { retryable })"],
  },
];

/**
 * Imports that go against the picture on purpose, one file to one file, each with its reason.
 * Keep this list short: an entry here is a debt the README states openly.
 */
export const EXCEPTIONS = [
  {
    from: "src/engine/execute.ts",
    to: "src/control/events.ts",
    why: "loaded lazily as the default event publisher, for `sluice run`, which passes none",
  },
  {
    from: "src/store/postgres.ts",
    to: "src/connectors/pg-connection.ts",
    why: "the PostgreSQL store borrows the connection settings and error mapping of the connectors",
  },
];

/** Finer rules inside a layer: `target` never imports `from`. */
export const INNER_RULES = [
  {
    target: "src/actions/batch",
    from: "src/actions/stream",
    why: "the continuous stages reuse the batch parts (typing, quality, storage), never the other way",
  },
];

/** The layer a repository-relative path (such as `src/engine/execute.ts`) belongs to, or undefined. */
export function layerOf(path) {
  return LAYERS.find((l) => path === l.dir || path.startsWith(`${l.dir}/`));
}

/** Whether layer `a` may import layer `b` at all (its public files, when it has any). */
export function mayImport(a, b) {
  return a.name === b.name || a.may === "*" || a.may.includes(b.name);
}

/**
 * One recorded failure → one class of the fixed vocabulary (contract.ts FAILURE_CLASSES), with
 * the evidence it was decided on and the rule that decided it. Pure: the store's error as
 * recorded (code, sentence, details) is all it reads.
 *
 * Details come first, the sentence second: connectors attach `details` (HTTP status,
 * Retry-After, bytes declared and received, page, url …) and those are facts, while the message
 * is for people and may change wording. But errors recorded before details were kept, and
 * connectors that attach none, still say `HTTP 503` or `(ECONNREFUSED)` in their sentence
 * (connectors/http.ts statusError and networkError), so the sentence is the fallback.
 *
 * The order of the rules matters where two could apply: a truncated body answered 200 and then
 * broke, so it is checked before the status; a 408 is the server's timeout, not a network fault;
 * NETWORK_ERROR "timed out after N ms" is a timeout; an open circuit breaker is classified as the
 * failures that opened it (details.lastClass), else as `server_unavailable`.
 */
import { FAILURE_CLASSES, type ClassifiedFailure, type FailureClass, type FailureEvidence } from "./contract.js";
import type { PastError } from "../types.js";

/** Where a failure was recorded: the attempt it ended and how long that attempt ran. */
export interface FailureContext {
  runId: string;
  step: string;
  attempt: number;
  /** When the attempt ended (ISO). */
  at: string;
  latencyMs?: number;
}

/** Engine verdicts and stops: not something a source did, so not classified (see isSourceFailure). */
const NOT_FAILURES = new Set(["CANCELLED", "INTERRUPTED", "LEASE_LOST", "UPSTREAM_FAILED", "SKIPPED", "STEP_FAILED", "ITEMS_FAILED", "CHILD_RUN_FAILED"]);

/** False for the engine's own verdicts (a cancelled run, a lost lease, an upstream skip): nothing to classify. */
export function isSourceFailure(error: Pick<PastError, "code">): boolean {
  return !NOT_FAILURES.has(error.code);
}

/** The source's circuit breaker refused the call (breaker.ts): the source was not contacted. */
export function refusedByBreaker(error: Pick<PastError, "details">): boolean {
  return error.details?.circuit === "open" || error.details?.circuit === "half-open";
}

const TIMEOUT_CODES = new Set(["ETIMEDOUT", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "ESOCKETTIMEDOUT"]);
const NETWORK_CODES = /\b(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|EPIPE|EHOSTUNREACH|ENETUNREACH|UND_ERR_SOCKET)\b/;

export function classifyFailure(error: PastError, ctx: FailureContext): ClassifiedFailure & { why: string } {
  const d = error.details ?? {};
  const evidence = evidenceOf(error, ctx);
  const is = (cls: FailureClass, why: string) => ({ class: cls, evidence, why });
  const msg = error.message;

  if (refusedByBreaker(error)) {
    const last = typeof d.lastClass === "string" && (FAILURE_CLASSES as readonly string[]).includes(d.lastClass) ? (d.lastClass as FailureClass) : undefined;
    return is(last ?? "server_unavailable", `the source's circuit breaker was open${last ? ` after ${last} failures` : ""}`);
  }
  if (d.truncated === true || (evidence.bytesDeclared !== undefined && evidence.bytesReceived !== undefined && evidence.bytesReceived < evidence.bytesDeclared))
    return is("truncated_body", bytesWhy(evidence));
  if (/\btruncated\b|cut (off )?mid|unexpected end of (json|data|input)|unterminated string in json/i.test(msg))
    return is("truncated_body", "the response body ended before it was complete");

  const status = evidence.status;
  if (status !== undefined) {
    if (status === 429)
      return is("rate_limited", `HTTP 429${evidence.retryAfterSeconds !== undefined ? ` with Retry-After ${evidence.retryAfterSeconds}s` : ""}`);
    if (status === 401 || status === 403) return is("auth", `HTTP ${status}: credentials missing or refused`);
    if (status === 404 || status === 410) return is("not_found", `HTTP ${status}`);
    if (status === 408) return is("timeout", "HTTP 408: the server timed out waiting for the request");
    if (status >= 500) return is("server_unavailable", `HTTP ${status}`);
  }

  switch (error.code) {
    case "TIMEOUT":
    case "RUN_TIMEOUT":
      return is("timeout", `${error.code}: the attempt ran out of time`);
    case "QUALITY_BELOW_THRESHOLD":
    case "TOO_MANY_REJECTS":
      return is("quality_breach", `${error.code}: the data scored below its quality threshold`);
    case "NOT_FOUND":
    case "FILE_NOT_FOUND":
      return is("not_found", `${error.code}: the source is not there`);
  }
  if (evidence.columns) return is("schema_drift", driftWhy(evidence.columns));
  if (d.stale === true || /\bstale\b|older than (its|the) maxStaleness/i.test(msg)) return is("stale_data", "the source's newest data is older than allowed");

  const sys = typeof d.code === "string" ? d.code : "";
  if (error.code === "NETWORK_ERROR" || NETWORK_CODES.test(msg) || NETWORK_CODES.test(sys) || TIMEOUT_CODES.has(sys)) {
    if (TIMEOUT_CODES.has(sys) || /timed out/i.test(msg)) return is("timeout", sys ? `${sys}: the request timed out` : "the request timed out");
    const named = sys || msg.match(NETWORK_CODES)?.[1];
    return is("network", named ? `${named}: the source could not be reached` : "the source could not be reached");
  }
  if (["BAD_CONFIG", "SPEC_INVALID", "USAGE", "BAD_INPUT", "INCOMPLETE_SOURCE", "NOT_IMPLEMENTED"].includes(error.code))
    return is("bad_config", `${error.code}: the workflow's configuration or input is wrong; retrying cannot help`);
  if (error.code === "IO_ERROR") return is("network", "IO_ERROR: reading the source failed part-way");
  // Anything else (an action's own failure, an exec program's exit) is treated as the source
  // side being unwell: transient until the history says otherwise.
  return is("server_unavailable", `${error.code}: an unclassified failure, treated as transient`);
}

/** The facts in an error, read from its details first and its sentence second. */
export function evidenceOf(error: PastError, ctx: FailureContext): FailureEvidence {
  const d = error.details ?? {};
  const num = (v: unknown): number | undefined =>
    typeof v === "number" && Number.isFinite(v) ? v : typeof v === "string" && /^\d+(\.\d+)?$/.test(v) ? Number(v) : undefined;
  const msg = error.message;
  const status = num(d.status) ?? num(msg.match(/\bHTTP (\d{3})\b/)?.[1]);
  const retryAfterMs = num(d.retryAfterMs);
  const retryAfterSeconds =
    num(d.retryAfterSeconds) ??
    num(d.retryAfter) ??
    (retryAfterMs !== undefined ? Math.ceil(retryAfterMs / 1000) : undefined) ??
    num(
      msg
        .match(/retry-after:?\s*(\d+)|retry after (\d+) ?s\b/i)
        ?.slice(1)
        .find((x) => x !== undefined),
    );
  const bytesDeclared = num(d.bytesDeclared) ?? num(d.contentLength);
  const bytesReceived = num(d.bytesReceived);
  const page = num(d.page);
  const url = typeof d.url === "string" ? d.url : undefined;
  const latencyMs = num(d.latencyMs) ?? ctx.latencyMs;
  const columns = driftColumns(error);
  return {
    runId: ctx.runId,
    step: ctx.step,
    attempt: ctx.attempt,
    code: error.code,
    message: error.message,
    ...(status !== undefined ? { status } : {}),
    ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
    ...(bytesDeclared !== undefined ? { bytesDeclared } : {}),
    ...(bytesReceived !== undefined ? { bytesReceived } : {}),
    ...(page !== undefined ? { page } : {}),
    ...(url !== undefined ? { url } : {}),
    ...(latencyMs !== undefined ? { latencyMs: Math.round(latencyMs) } : {}),
    ...(columns ? { columns } : {}),
    at: ctx.at,
  };
}

/**
 * The columns of a schema drift: `details.columns` in the contract's shape, or the conversion's
 * BAD_INPUT (actions/batch/convert-unit.ts: `missing`, or `extras` refused by extraColumns: error).
 * Its `columns` there is the file's header (a list), not the drift.
 */
function driftColumns(error: PastError): FailureEvidence["columns"] | undefined {
  const d = error.details ?? {};
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  const c = d.columns;
  if (c && typeof c === "object" && !Array.isArray(c)) {
    const o = c as Record<string, unknown>;
    const cols = { missing: strings(o.missing), added: strings(o.added), retyped: strings(o.retyped) };
    if (cols.missing.length + cols.added.length + cols.retyped.length > 0) return cols;
  }
  if (error.code === "BAD_INPUT" && (strings(d.missing).length || strings(d.extras).length))
    return { missing: strings(d.missing), added: strings(d.added).length ? strings(d.added) : strings(d.extras), retyped: [] };
  return undefined;
}

function bytesWhy(e: FailureEvidence): string {
  if (e.bytesDeclared !== undefined && e.bytesReceived !== undefined)
    return `the body declared ${e.bytesDeclared} bytes and ${e.bytesReceived} arrived${e.page !== undefined ? ` (page ${e.page})` : ""}`;
  return `the response body was cut short${e.page !== undefined ? ` (page ${e.page})` : ""}`;
}

function driftWhy(c: NonNullable<FailureEvidence["columns"]>): string {
  const parts = [
    c.missing.length ? `missing ${c.missing.join(", ")}` : "",
    c.added.length ? `added ${c.added.join(", ")}` : "",
    c.retyped.length ? `retyped ${c.retyped.join(", ")}` : "",
  ].filter(Boolean);
  return `the source's columns changed: ${parts.join("; ")}`;
}

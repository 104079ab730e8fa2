/**
 * The one error type Sluice raises on purpose.
 *
 * Every error carries a stable `code` (for scripts, the store and the API) and a human sentence
 * (for people). `retryable: false` tells the engine that trying again cannot help (bad input,
 * bad configuration), so the step fails at once instead of burning its retries.
 */
export type ErrorCode =
  // The caller: command line, workflow file, inputs, configuration.
  | "USAGE"
  | "SPEC_INVALID"
  | "FILE_NOT_FOUND"
  | "BAD_INPUT"
  | "BAD_CONFIG"
  | "NOT_FOUND"
  | "CONFLICT"
  // Time and stopping.
  | "TIMEOUT"
  | "RUN_TIMEOUT"
  | "CANCELLED"
  | "INTERRUPTED"
  | "LEASE_LOST"
  // What a step's work ran into.
  | "EXEC_FAILED"
  | "ACTION_FAILED"
  | "NOT_IMPLEMENTED"
  | "IO_ERROR"
  | "NETWORK_ERROR"
  | "INCOMPLETE_SOURCE"
  // A response whose body ended early (Content-Length not reached, JSON cut mid-way): retryable.
  | "INCOMPLETE_RESPONSE"
  | "TOO_MANY_FAILED_FILES"
  | "TOO_MANY_REJECTS"
  | "CHILD_RUN_FAILED"
  | "ACCOUNTING_MISMATCH"
  | "QUALITY_BELOW_THRESHOLD"
  // Ciphertext that does not authenticate (wrong key, edited, moved or truncated): never retried.
  | "DECRYPT_FAILED"
  | "NO_USABLE_SOURCE"
  | "GAPS_REMAIN"
  // Collection stopped by security monitoring (a redirect, a certificate change, a TLS downgrade): never retried.
  | "SECURITY_INCIDENT"
  // An audit entry could not be written: the step fails closed.
  | "AUDIT_FAILED"
  // A TLS connection that breaks the policy (pin mismatch, protocol below the minimum): never retried.
  | "TLS_POLICY"
  // Fewer independent authentication factors passed than required.
  | "MFA_FAILED"
  // The recovery strategy chose give_up: no allowed strategy could recover the data.
  | "RECOVERY_GAVE_UP"
  // The engine's verdicts on steps (recorded, never thrown by actions).
  | "STEP_FAILED"
  | "UPSTREAM_FAILED"
  | "SKIPPED"
  | "ITEMS_FAILED"
  | "INTERNAL";

/** Every code, for checks and documentation; the union above is the one definition. */
export const ERROR_CODES = [
  "USAGE",
  "SPEC_INVALID",
  "FILE_NOT_FOUND",
  "BAD_INPUT",
  "BAD_CONFIG",
  "NOT_FOUND",
  "CONFLICT",
  "TIMEOUT",
  "RUN_TIMEOUT",
  "CANCELLED",
  "INTERRUPTED",
  "LEASE_LOST",
  "EXEC_FAILED",
  "ACTION_FAILED",
  "NOT_IMPLEMENTED",
  "IO_ERROR",
  "NETWORK_ERROR",
  "INCOMPLETE_SOURCE",
  "INCOMPLETE_RESPONSE",
  "TOO_MANY_FAILED_FILES",
  "TOO_MANY_REJECTS",
  "CHILD_RUN_FAILED",
  "ACCOUNTING_MISMATCH",
  "QUALITY_BELOW_THRESHOLD",
  "DECRYPT_FAILED",
  "NO_USABLE_SOURCE",
  "GAPS_REMAIN",
  "SECURITY_INCIDENT",
  "AUDIT_FAILED",
  "TLS_POLICY",
  "MFA_FAILED",
  "RECOVERY_GAVE_UP",
  "STEP_FAILED",
  "UPSTREAM_FAILED",
  "SKIPPED",
  "ITEMS_FAILED",
  "INTERNAL",
] as const satisfies readonly ErrorCode[];

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "SluiceError";
    this.code = code;
    this.retryable = opts.retryable ?? defaultRetryable(code);
    this.details = opts.details;
  }
}

/** Errors that describe the caller's input or configuration cannot be fixed by retrying. */
const PERMANENT = new Set<ErrorCode>([
  "USAGE",
  "SPEC_INVALID",
  "BAD_INPUT",
  "BAD_CONFIG",
  "NOT_FOUND",
  "NOT_IMPLEMENTED",
  "FILE_NOT_FOUND",
  "INCOMPLETE_SOURCE",
  "DECRYPT_FAILED",
  "GAPS_REMAIN",
  "SECURITY_INCIDENT",
  "TLS_POLICY",
  "MFA_FAILED",
  "RECOVERY_GAVE_UP",
]);

function defaultRetryable(code: ErrorCode): boolean {
  return !PERMANENT.has(code);
}

/**
 * A plain `{ code, message }` view of any thrown value, for the store and for JSON output, with
 * the error's details (the evidence a connector attached: HTTP status, bytes, page …) when it has
 * any, bounded by boundedDetails.
 */
export function toErrorInfo(err: unknown): { code: ErrorCode; message: string; retryable: boolean; details?: Record<string, unknown> } {
  if (err instanceof SluiceError) {
    const details = err.details === undefined ? undefined : boundedDetails(err.details);
    return { code: err.code, message: err.message, retryable: err.retryable, ...(details ? { details } : {}) };
  }
  if (err instanceof Error) {
    const sys = (err as NodeJS.ErrnoException).code;
    if (sys === "ENOENT") return { code: "FILE_NOT_FOUND", message: err.message, retryable: false };
    if (sys === "ECONNREFUSED" || sys === "ECONNRESET" || sys === "ETIMEDOUT" || sys === "ENOTFOUND")
      return { code: "NETWORK_ERROR", message: err.message, retryable: true };
    if (err.name === "AbortError") return { code: "CANCELLED", message: err.message, retryable: false };
    return { code: "ACTION_FAILED", message: err.message, retryable: true };
  }
  return { code: "ACTION_FAILED", message: String(err), retryable: true };
}

const KNOWN_CODES = new Set<string>(ERROR_CODES);

/** A code that crossed a boundary as text (a worker thread's message, a stored row) back in the vocabulary. */
export function asErrorCode(value: unknown, fallback: ErrorCode): ErrorCode {
  return typeof value === "string" && KNOWN_CODES.has(value) ? (value as ErrorCode) : fallback;
}

/** The most JSON text of an error's details the store keeps: evidence, not a dump of the response. */
export const MAX_DETAILS_CHARS = 4096;
/** Kept first when details must shrink: what failure analysis classifies on (actions/recovery/classify.ts). */
const EVIDENCE_KEYS = ["status", "retryAfterSeconds", "bytesDeclared", "bytesReceived", "truncated", "page", "url", "latencyMs", "columns", "code", "circuit"];

/**
 * Details as plain JSON (what the store can hold) of at most MAX_DETAILS_CHARS: when they are
 * larger, the evidence keys go first, long strings and lists are cut, and the keys that did not
 * fit are named in `omitted`. Undefined when nothing JSON-representable is left.
 */
export function boundedDetails(details: Record<string, unknown>): Record<string, unknown> | undefined {
  const plain = toJson(details);
  if (!plain || typeof plain !== "object" || Array.isArray(plain)) return undefined;
  const entries = Object.entries(plain as Record<string, unknown>);
  if (entries.length === 0) return undefined;
  if (JSON.stringify(plain).length <= MAX_DETAILS_CHARS) return plain as Record<string, unknown>;
  const rank = (k: string) => (EVIDENCE_KEYS.includes(k) ? EVIDENCE_KEYS.indexOf(k) : EVIDENCE_KEYS.length);
  entries.sort((a, b) => rank(a[0]) - rank(b[0]));
  const out: Record<string, unknown> = {};
  const omitted: string[] = [];
  // Room is left for the `omitted` list itself.
  const budget = MAX_DETAILS_CHARS - 400;
  for (const [k, v] of entries) {
    const small = shrink(v);
    if (JSON.stringify({ ...out, [k]: small }).length <= budget) out[k] = small;
    else omitted.push(k);
  }
  if (omitted.length) out.omitted = omitted.slice(0, 20).map((k) => k.slice(0, 15));
  return out;
}

function toJson(value: unknown): unknown {
  try {
    const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
    return text === undefined ? undefined : JSON.parse(text);
  } catch {
    return undefined; // a cycle: no details rather than no error
  }
}

function shrink(v: unknown): unknown {
  if (typeof v === "string") return v.length > 300 ? `${v.slice(0, 300)}…` : v;
  if (Array.isArray(v)) return v.slice(0, 10).map(shrink);
  if (v && typeof v === "object") {
    const text = JSON.stringify(v);
    return text.length > 1000 ? `${text.slice(0, 300)}…` : v;
  }
  return v;
}

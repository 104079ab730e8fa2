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
  | "TOO_MANY_FAILED_FILES"
  | "TOO_MANY_REJECTS"
  | "CHILD_RUN_FAILED"
  | "ACCOUNTING_MISMATCH"
  | "QUALITY_BELOW_THRESHOLD"
  | "NO_USABLE_SOURCE"
  | "GAPS_REMAIN"
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
  "TOO_MANY_FAILED_FILES",
  "TOO_MANY_REJECTS",
  "CHILD_RUN_FAILED",
  "ACCOUNTING_MISMATCH",
  "QUALITY_BELOW_THRESHOLD",
  "NO_USABLE_SOURCE",
  "GAPS_REMAIN",
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
  "GAPS_REMAIN",
]);

function defaultRetryable(code: ErrorCode): boolean {
  return !PERMANENT.has(code);
}

/** A plain `{ code, message }` view of any thrown value, for the store and for JSON output. */
export function toErrorInfo(err: unknown): { code: ErrorCode; message: string; retryable: boolean } {
  if (err instanceof SluiceError) return { code: err.code, message: err.message, retryable: err.retryable };
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

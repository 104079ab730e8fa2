/**
 * The one error type Sluice raises on purpose.
 *
 * Every error carries a stable `code` (for scripts, the store and the API) and a human sentence
 * (for people). `retryable: false` tells the engine that trying again cannot help (bad input,
 * bad configuration), so the step fails at once instead of burning its retries.
 */
export type ErrorCode =
  | "USAGE"
  | "SPEC_INVALID"
  | "FILE_NOT_FOUND"
  | "BAD_INPUT"
  | "BAD_CONFIG"
  | "NOT_FOUND"
  | "CONFLICT"
  | "TIMEOUT"
  | "RUN_TIMEOUT"
  | "CANCELLED"
  | "INTERRUPTED"
  | "EXEC_FAILED"
  | "ACTION_FAILED"
  | "UPSTREAM_FAILED"
  | "NOT_IMPLEMENTED"
  | "IO_ERROR"
  | "NETWORK_ERROR"
  | "INCOMPLETE_SOURCE"
  | "INTERNAL";

export class SluiceError extends Error {
  readonly code: ErrorCode | (string & {});
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode | (string & {}),
    message: string,
    opts: { retryable?: boolean; cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "SluiceError";
    this.code = code;
    this.retryable = opts.retryable ?? defaultRetryable(code);
    this.details = opts.details;
  }
}

/** Errors that describe the caller's input or configuration cannot be fixed by retrying. */
const PERMANENT = new Set<string>(["USAGE", "SPEC_INVALID", "BAD_INPUT", "BAD_CONFIG", "NOT_FOUND", "NOT_IMPLEMENTED", "FILE_NOT_FOUND", "INCOMPLETE_SOURCE"]);

function defaultRetryable(code: string): boolean {
  return !PERMANENT.has(code);
}

/** A plain `{ code, message }` view of any thrown value, for the store and for JSON output. */
export function toErrorInfo(err: unknown): { code: string; message: string; retryable: boolean } {
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

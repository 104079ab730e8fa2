/**
 * One error shape for the whole API: `{ error: { code, message, field?, problems? } }`.
 *
 * Clients (the CLI, CI scripts, dashboards) branch on `code`, show `message` to people and point
 * at `field`; they never have to parse HTML error pages or guess from a status code alone. The
 * status code follows from the SluiceError code, so the control plane decides what went wrong
 * and this module only translates it.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import { SluiceError, type ErrorCode } from "../errors.js";
import { maskSecrets } from "../crypto/masker.js";
import type { Problem } from "../spec/load.js";

/**
 * The API's own codes, for what only HTTP can go wrong with (authentication, the request body);
 * everything the control plane raises keeps its engine code.
 */
export type HttpErrorCode = "UNAUTHENTICATED" | "FORBIDDEN" | "TOO_LARGE" | "UNSUPPORTED_MEDIA_TYPE";
export type ApiErrorCode = ErrorCode | HttpErrorCode;

export interface ErrorBody {
  error: { code: ApiErrorCode; message: string; field?: string; problems?: Problem[] };
}

export interface ErrorLog {
  error(obj: object, msg?: string): void;
}

const STATUS: Partial<Record<ApiErrorCode, ContentfulStatusCode>> = {
  NOT_FOUND: 404,
  CONFLICT: 409,
  SPEC_INVALID: 422,
  USAGE: 400,
  BAD_INPUT: 400,
};

export function statusFor(code: ApiErrorCode): ContentfulStatusCode {
  return STATUS[code] ?? 500;
}

export function errorResponse(c: Context, status: ContentfulStatusCode, error: ErrorBody["error"], headers?: Record<string, string>): Response {
  // A secret value this process resolved never goes out in an error body (crypto/masker.ts).
  return c.json({ error: { ...error, message: maskSecrets(error.message) } } satisfies ErrorBody, status, headers);
}

/** The app's onError: known errors keep their code and sentence; anything else is an opaque 500. */
export function handleError(log: ErrorLog | undefined) {
  return (err: unknown, c: Context): Response => {
    if (err instanceof SluiceError) {
      const status = statusFor(err.code);
      if (status >= 500) log?.error({ err, code: err.code, path: c.req.path }, "request failed");
      const problems = err.details?.problems as Problem[] | undefined;
      const field = typeof err.details?.field === "string" ? err.details.field : undefined;
      return errorResponse(c, status, { code: err.code, message: err.message, ...(field && { field }), ...(problems && { problems }) });
    }
    if (err instanceof HTTPException) {
      // Raised by Hono itself: malformed JSON (400), unsupported media type (415), body too large (413).
      const code = err.status === 415 ? "UNSUPPORTED_MEDIA_TYPE" : err.status === 413 ? "TOO_LARGE" : err.status < 500 ? "BAD_INPUT" : "INTERNAL";
      return errorResponse(c, err.status, { code, message: err.message || "bad request", ...(err.status === 400 && { field: "body" }) });
    }
    // Unknown errors may carry internals (SQL, paths, stack): log them whole, answer with nothing.
    log?.error({ err, path: c.req.path }, "request failed");
    return errorResponse(c, 500, { code: "INTERNAL", message: "internal error; the server log has the details" });
  };
}

export function notFound(c: Context): Response {
  return errorResponse(c, 404, { code: "NOT_FOUND", message: `no route for ${c.req.method} ${c.req.path}` });
}

/** Where each validated part of a request is named in `field`: `query.limit`, `path.id`, `body.params`. */
const PART: Record<string, string> = { query: "query", param: "path", json: "body", header: "header", cookie: "cookie", form: "body" };

/**
 * The zod-openapi defaultHook: a request that fails its schema gets a 400 naming the field and
 * saying what it must be (`query.limit: must be ≤ 500`), every failing field in the message.
 */
export function validationHook(result: { target: string; success: boolean; error?: z.ZodError }, c: Context): Response | undefined {
  if (result.success || !result.error) return undefined;
  const issues = result.error.issues.map((issue) => {
    const field = [PART[result.target] ?? result.target, ...issue.path.map(String)].join(".");
    return { field, message: `${field}: ${describeIssue(issue)}` };
  });
  return errorResponse(c, 400, { code: "BAD_INPUT", message: issues.map((i) => i.message).join("; "), field: issues[0]?.field ?? result.target });
}

/** A short sentence for one zod issue, independent of zod's wording (which changes between versions). */
export function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "too_big":
      return issue.origin === "string" || issue.origin === "array"
        ? `must have at most ${String(issue.maximum)} ${issue.origin === "string" ? "characters" : "items"}`
        : `must be ${issue.inclusive === false ? "<" : "≤"} ${String(issue.maximum)}`;
    case "too_small":
      return issue.origin === "string" || issue.origin === "array"
        ? `must have at least ${String(issue.minimum)} ${issue.origin === "string" ? "characters" : "items"}`
        : `must be ${issue.inclusive === false ? ">" : "≥"} ${String(issue.minimum)}`;
    case "invalid_value":
      return issue.values.length === 1
        ? `must be ${JSON.stringify(issue.values[0])}`
        : `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_type":
      // Issues carry no input (zod drops it); its message ends "received undefined" when absent.
      return /received undefined$/.test(issue.message) ? "is required" : `must be ${issue.expected === "object" ? "an object" : `a ${issue.expected}`}`;
    case "invalid_format":
      return issue.format === "datetime"
        ? "must be an ISO 8601 date-time (2024-05-01T00:00:00Z)"
        : issue.format === "regex"
          ? issue.message
          : `must be a valid ${issue.format}`;
    case "unrecognized_keys":
      return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
    default:
      return issue.message;
  }
}

/**
 * Webhook delivery: POST a JSON body with a per-request timeout, retried with exponential backoff
 * and jitter on network errors, timeouts, 5xx and 429 (whose Retry-After is honoured), never on
 * other 4xx. Delivery never throws: it resolves to what happened, for the caller to log.
 */

export interface RetryOptions {
  /** Attempts in all, the first included (default 6). */
  attempts?: number;
  /** Delay before the second attempt (default 1000 ms); doubles after each failure. */
  initialMs?: number;
  /** Longest backoff delay (default 60 s). */
  maxMs?: number;
}

export interface DeliveryResult {
  ok: boolean;
  attempts: number;
  /** Last HTTP status, or null when the last attempt got no response. */
  status: number | null;
  /** Why it failed (no URL in it). */
  error?: string;
}

export interface DeliverOptions {
  retry?: RetryOptions;
  timeoutMs?: number;
  /** Aborts waits and requests (the alerter closing). */
  signal?: AbortSignal;
  /** Called before each retry, for logging. */
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
  /** Injected for tests. */
  random?: () => number;
}

/** Retry-After is honoured up to this long; a receiver asking for more is not waited for. */
const MAX_RETRY_AFTER_MS = 5 * 60_000;

export async function deliverWebhook(url: string, body: unknown, opts: DeliverOptions = {}): Promise<DeliveryResult> {
  const attempts = Math.max(1, Math.floor(opts.retry?.attempts ?? 6));
  const initialMs = Math.max(0, opts.retry?.initialMs ?? 1_000);
  const maxMs = Math.max(initialMs, opts.retry?.maxMs ?? 60_000);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const random = opts.random ?? Math.random;
  const text = JSON.stringify(body);
  let status: number | null = null;
  let reason = "";

  for (let n = 1; n <= attempts; n++) {
    if (opts.signal?.aborted) return { ok: false, attempts: n - 1, status, error: "delivery cancelled" };
    let retryAfterMs: number | null = null;
    let retryable: boolean;
    const signals = [AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])];
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "sluice-alerts" },
        body: text,
        signal: AbortSignal.any(signals),
        redirect: "error",
      });
      status = res.status;
      // Drain the body so the connection can be reused.
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return { ok: true, attempts: n, status };
      reason = `HTTP ${res.status}`;
      retryable = res.status >= 500 || res.status === 429;
      if (retryable) retryAfterMs = parseRetryAfter(res.headers.get("retry-after"), Date.now());
    } catch (err) {
      status = null;
      if (opts.signal?.aborted) return { ok: false, attempts: n, status, error: "delivery cancelled" };
      reason = describeFetchError(err, url, timeoutMs);
      retryable = true;
    }
    if (!retryable) return { ok: false, attempts: n, status, error: reason };
    if (n === attempts) break;
    const backoff = Math.min(maxMs, initialMs * 2 ** (n - 1));
    // Jitter of ±20% so a fleet of processes does not retry in step.
    let delayMs = Math.round(backoff * (0.8 + 0.4 * random()));
    if (retryAfterMs !== null) delayMs = Math.max(delayMs, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS));
    opts.onRetry?.({ attempt: n, delayMs, reason });
    if (!(await sleep(delayMs, opts.signal))) return { ok: false, attempts: n, status, error: "delivery cancelled" };
  }
  return { ok: false, attempts, status, error: reason };
}

/** Retry-After as seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (value === null) return null;
  const v = value.trim();
  if (/^\d+(?:\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(0, t - now);
}

/** A URL with its secrets removed, for logs: scheme and host only (webhook paths hold tokens). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return "(invalid url)";
  }
}

function describeFetchError(err: unknown, url: string, timeoutMs: number): string {
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) return `no answer within ${timeoutMs} ms`;
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  const text = cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
  return scrub(text, url);
}

/** Remove the URL (and its path and query) from a message, should a library have put it there. */
function scrub(text: string, url: string): string {
  let out = text.split(url).join(redactUrl(url));
  try {
    const u = new URL(url);
    if (u.pathname.length > 1) out = out.split(u.pathname).join("/…");
    if (u.search) out = out.split(u.search).join("");
  } catch {
    // not a URL: nothing more to hide
  }
  return out;
}

/** Resolves true after `ms`, false at once when the signal aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = () => (clearTimeout(t), resolve(false));
    const t = setTimeout(() => (signal?.removeEventListener("abort", onAbort), resolve(true)), ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

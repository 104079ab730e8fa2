/**
 * OAuth2 client credentials (RFC 6749 §4.4) for the HTTP source: a token from the token endpoint,
 * cached in this process until shortly before it expires.
 *
 * - The client authenticates with HTTP Basic by default (client_secret_basic, which §2.3.1 makes
 *   every server support; id and secret are form-encoded first, as it says), or in the form body
 *   (`clientAuth: post`). Without a client secret the client certificate alone authenticates it
 *   (RFC 8705 tls_client_auth): only `client_id` is sent.
 * - The token request goes over the same TLS material as the API (private CA, client
 *   certificate), so a server that binds tokens to the certificate (RFC 8705 `cnf.x5t#S256`)
 *   binds it to the one the API will see.
 * - The cache key covers the endpoint, client, scope, audience, a hash of the secret and the
 *   client certificate's thumbprint: a rotated secret or another certificate gets a new token.
 *   Tokens are refreshed 30 s (or a tenth of their life, if shorter) before `expires_in` ends; a
 *   token without `expires_in` is used for one session only.
 * - The endpoint must be https (RFC 6749 §3.2): the client secret travels in the request.
 */
import { createHash } from "node:crypto";
import { SluiceError } from "../errors.js";
import { redact, safeUrl } from "./secrets.js";

export interface OAuth2Auth {
  type: "oauth2";
  tokenUrl: string;
  clientId: string;
  /** Secret reference (env:/file:); absent: the client certificate authenticates the client. */
  clientSecret?: string;
  scope?: string;
  audience?: string;
  /** How the client authenticates: HTTP Basic (default) or client_id/client_secret in the body. */
  clientAuth?: "basic" | "post";
}

export interface OAuthToken {
  accessToken: string;
  tokenType: string;
  /** Epoch ms the token stops being used (its expiry minus a margin); undefined: this session only. */
  refreshAt: number | undefined;
  expiresIn: number | undefined;
  scope: string | undefined;
  /** True when this call was answered from the cache, without a request. */
  cached: boolean;
}

export interface TokenRequest {
  auth: OAuth2Auth;
  /** The resolved client secret, if any. */
  secret: string | undefined;
  /** Thumbprint of the client certificate presented to the token endpoint, for the cache key. */
  certThumbprint: string | undefined;
  dispatcher: RequestInit["dispatcher"];
  timeoutMs: number;
  signal: AbortSignal | undefined;
  /** Skip the cache (a token the API just refused). */
  fresh?: boolean;
  /** Explains a failed request in TLS terms when it can (see http-tls.ts). */
  explain?: (err: unknown, url: URL, since: number) => SluiceError | undefined;
}

const cache = new Map<string, Omit<OAuthToken, "cached">>();

/** Drop every cached token (tests; a process that rotates client secrets). */
export function clearTokenCache(): void {
  cache.clear();
}

export function tokenUrlOf(auth: OAuth2Auth): URL {
  let url: URL;
  try {
    url = new URL(auth.tokenUrl);
  } catch {
    throw new SluiceError("BAD_CONFIG", `auth.tokenUrl ${safeUrl(auth.tokenUrl)} is not a valid absolute URL.`);
  }
  if (url.protocol !== "https:") throw new SluiceError("BAD_CONFIG", `auth.tokenUrl ${safeUrl(url)} must be https: the client secret travels in the request.`);
  if (!auth.clientId) throw new SluiceError("BAD_CONFIG", "auth type oauth2 needs clientId.");
  return url;
}

/** A token for the client: from the cache while it is good, else from the token endpoint. */
export async function clientCredentialsToken(req: TokenRequest): Promise<OAuthToken> {
  const { auth } = req;
  const url = tokenUrlOf(auth);
  const key = createHash("sha256")
    .update(JSON.stringify([url.href, auth.clientId, auth.scope ?? "", auth.audience ?? "", req.secret ?? "", req.certThumbprint ?? ""]))
    .digest("hex");
  const hit = cache.get(key);
  if (!req.fresh && hit && hit.refreshAt !== undefined && hit.refreshAt > Date.now()) return { ...hit, cached: true };
  cache.delete(key);

  const body = new URLSearchParams({ grant_type: "client_credentials" });
  if (auth.scope) body.set("scope", auth.scope);
  if (auth.audience) body.set("audience", auth.audience);
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json", "user-agent": "sluice/0.1" };
  const secrets = req.secret ? [req.secret] : [];
  if (req.secret !== undefined && (auth.clientAuth ?? "basic") === "basic") {
    const basic = Buffer.from(`${formEncode(auth.clientId)}:${formEncode(req.secret)}`).toString("base64");
    headers["authorization"] = `Basic ${basic}`;
    secrets.push(basic);
  } else {
    body.set("client_id", auth.clientId);
    if (req.secret !== undefined) body.set("client_secret", req.secret);
  }
  const timeout = AbortSignal.timeout(req.timeoutMs);
  const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
  const shown = safeUrl(url);
  const started = Date.now();
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, { method: "POST", headers, body: body.toString(), redirect: "manual", signal, dispatcher: req.dispatcher });
    text = await response.text();
  } catch (err) {
    if (req.signal?.aborted) throw new SluiceError("CANCELLED", `The token request to ${shown} was cancelled.`, { retryable: false });
    const tls = req.explain?.(err, url, started);
    if (tls) throw tls;
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const code = e.cause?.code;
    const why = e.name === "TimeoutError" ? `timed out after ${req.timeoutMs} ms` : redact(e.cause?.message ?? e.message, secrets);
    throw new SluiceError("NETWORK_ERROR", `The OAuth2 token endpoint ${shown} could not be reached: ${why}${code ? ` (${code})` : ""}.`, {
      retryable: true,
      cause: err,
      details: { url: shown, ...(code ? { code } : {}) },
    });
  }
  let doc: Record<string, unknown> | undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) doc = parsed as Record<string, unknown>;
  } catch {
    doc = undefined;
  }
  if (!response.ok) {
    const error = typeof doc?.["error"] === "string" ? doc["error"] : undefined;
    const desc = typeof doc?.["error_description"] === "string" ? redact(String(doc["error_description"]).slice(0, 200), secrets) : undefined;
    const said = error ? `: ${error}${desc ? ` (${desc})` : ""}` : "";
    const details = { url: shown, status: response.status, ...(error ? { oauthError: error } : {}) };
    if (response.status >= 500 || response.status === 429)
      throw new SluiceError("NETWORK_ERROR", `The OAuth2 token endpoint ${shown} failed with HTTP ${response.status}${said}.`, { retryable: true, details });
    throw new SluiceError("BAD_CONFIG", `The OAuth2 token endpoint ${shown} refused client ${auth.clientId} with HTTP ${response.status}${said}.`, {
      retryable: false,
      details,
    });
  }
  const accessToken = doc?.["access_token"];
  if (typeof accessToken !== "string" || accessToken === "")
    throw new SluiceError("BAD_INPUT", `The OAuth2 token endpoint ${shown} answered without an access_token.`, {
      details: { url: shown, status: response.status },
    });
  const expiresIn = typeof doc?.["expires_in"] === "number" ? doc["expires_in"] : Number(doc?.["expires_in"]) || undefined;
  const tokenType = typeof doc?.["token_type"] === "string" ? doc["token_type"] : "Bearer";
  if (tokenType.toLowerCase() !== "bearer")
    throw new SluiceError("BAD_CONFIG", `The OAuth2 token endpoint ${shown} issued a ${tokenType} token; only Bearer tokens are supported.`);
  const margin = expiresIn === undefined ? 0 : Math.min(30, expiresIn / 10) * 1000;
  const token = {
    accessToken,
    tokenType: "Bearer",
    refreshAt: expiresIn === undefined ? undefined : started + expiresIn * 1000 - margin,
    expiresIn,
    scope: typeof doc?.["scope"] === "string" ? doc["scope"] : auth.scope,
  };
  if (token.refreshAt !== undefined) cache.set(key, token);
  return { ...token, cached: false };
}

/** application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks for the Basic credentials. */
function formEncode(s: string): string {
  return encodeURIComponent(s).replace(/%20/g, "+");
}

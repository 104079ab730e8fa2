/**
 * A sensitive HTTPS API to try the secure workflow on (`sluice sample secure-api`) and to test it
 * against: real TLS on 127.0.0.1 with certificates made at start (secure-api-certs.ts), so what is
 * tested is what a user meets — real handshakes, real alerts, real token binding.
 *
 * What it asks of a client, in order:
 * 1. a client certificate from its CA (`requestCert`, `rejectUnauthorized`): without one, with an
 *    expired one or with one of another CA the TLS connection is refused;
 * 2. `POST /oauth/token` (RFC 6749 client credentials; HTTP Basic or form-body client
 *    authentication): an access token, a JWT signed HS256 with a key made at start, bound to the
 *    certificate of the connection it was asked on (RFC 8705: `cnf.x5t#S256` is the SHA-256 of
 *    that certificate's DER, base64url);
 * 3. on every API call, `Authorization: Bearer <token>`; the token's `cnf.x5t#S256` must match
 *    the certificate of *this* connection, so a token copied to another client is refused;
 * 4. a TOTP code (RFC 6238, SHA-1, 6 digits, 30 s; one step of clock skew either way) in the
 *    `X-TOTP` header. A code is accepted more than once within its step: the header goes on every
 *    page request, and a walk of several pages within 30 s would otherwise fail. Replays are
 *    bounded by the channel (mTLS) and the token, not by the code.
 *
 * `GET /api/v1/accounts?page=N` answers a JSON array of accounts (25 a page by default) and a
 * `Link: <…?page=N+1>; rel="next"` header on every page but the last. An account is a pure
 * function of its number: customer id, holder name, e-mail, phone, IBAN (valid mod-97, from
 * ibantools' composeIBAN), card number (Luhn-valid, of Visa, Mastercard 5- and 2-series, Amex,
 * Discover, and a 19-digit Visa), balance (a decimal string), opening date, and free-text notes,
 * one in nine of which carries a card number. The numbers are random, not anybody's.
 *
 * `requireClientCertificate: false` and `requireTotp: false` make weaker APIs, for the tests of
 * MFA verification that must see a factor the API does not ask for.
 *
 * Refusals are 401 with an RFC 6750 `WWW-Authenticate` header and a JSON `{ error,
 * error_description }`; `stats()` counts them by reason, with the TLS handshakes it refused.
 */
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { composeIBAN } from "ibantools";
import { base32Encode, base32Decode, verifyTotp } from "../crypto/totp.js";
import { SluiceError } from "../errors.js";
import { makeCertificates, type CertOptions, type SecureApiCerts } from "./secure-api-certs.js";

export type { SecureApiCerts } from "./secure-api-certs.js";

export interface SecureApiOptions extends CertOptions {
  /** Folder for the certificates and the secret files (created). */
  dir: string;
  /** Port on 127.0.0.1 (default: a free one). */
  port?: number;
  /** Accounts served (default 120) and per page (default 25). */
  records?: number;
  pageSize?: number;
  clientId?: string;
  /** Default: 32 random characters. */
  clientSecret?: string;
  /** Base32 TOTP seed; default 20 random bytes. */
  totpSecret?: string;
  /**
   * Whether the TLS handshake needs a client certificate (default true). False: one is asked for
   * but optional, and tokens asked for without one are not bound (a one-factor API, for tests).
   */
  requireClientCertificate?: boolean;
  /** Whether API calls need a TOTP code (default true). */
  requireTotp?: boolean;
  totpHeader?: string;
  /** Token lifetime in seconds (default 300). */
  tokenTtlSeconds?: number;
  /** The TLS versions the server speaks (default TLSv1.2 to TLSv1.3). */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  maxVersion?: "TLSv1.2" | "TLSv1.3";
}

export interface SecureApiStats {
  requests: number;
  tokensIssued: number;
  pagesServed: number;
  /** Refusals by reason: no_token, invalid_token, token_expired, token_bound_to_another_certificate, totp_required, invalid_totp, invalid_client, tls:<code>. */
  refused: Record<string, number>;
}

export interface SecureApi {
  /** The accounts endpoint (first page). */
  url: string;
  tokenUrl: string;
  certs: SecureApiCerts;
  clientId: string;
  clientSecret: string;
  totpSecret: string;
  totpHeader: string;
  /** Files holding the client secret and the TOTP seed (mode 0600), for `file:` references. */
  secretFiles: { clientSecret: string; totpSecret: string };
  stats(): SecureApiStats;
  close(): Promise<void>;
}

export async function startSecureApi(opts: SecureApiOptions): Promise<SecureApi> {
  const certs = await makeCertificates(opts.dir, opts);
  const clientId = opts.clientId ?? "sluice-demo";
  const clientSecret = opts.clientSecret ?? randomBytes(24).toString("base64url");
  const totpSecret = opts.totpSecret ?? base32Encode(randomBytes(20));
  const seed = base32Decode(totpSecret);
  const totpHeader = (opts.totpHeader ?? "X-TOTP").toLowerCase();
  const requireTotp = opts.requireTotp ?? true;
  const records = opts.records ?? 120;
  const pageSize = opts.pageSize ?? 25;
  const ttl = opts.tokenTtlSeconds ?? 300;
  const signingKey = randomBytes(32);
  const secretFiles = { clientSecret: join(opts.dir, "client-secret"), totpSecret: join(opts.dir, "totp-seed") };
  await writeFile(secretFiles.clientSecret, `${clientSecret}\n`, { mode: 0o600 });
  await writeFile(secretFiles.totpSecret, `${totpSecret}\n`, { mode: 0o600 });

  const stats: SecureApiStats = { requests: 0, tokensIssued: 0, pagesServed: 0, refused: {} };
  const refuse = (res: ServerResponse, reason: string, description: string, challenge: string, status = 401) => {
    stats.refused[reason] = (stats.refused[reason] ?? 0) + 1;
    res.statusCode = status;
    res.setHeader("content-type", "application/json");
    res.setHeader("www-authenticate", challenge);
    res.end(JSON.stringify({ error: reason, error_description: description }));
  };

  let origin = "";
  const server: Server = createServer(
    {
      key: readFileSync(certs.serverKey),
      cert: readFileSync(certs.serverCert),
      ca: readFileSync(certs.ca),
      requestCert: true,
      rejectUnauthorized: opts.requireClientCertificate ?? true,
      ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
    },
    (req, res) => {
      stats.requests++;
      const url = new URL(req.url ?? "/", origin);
      const thumb = certThumbprint(req);
      if (url.pathname === "/oauth/token") return void token(req, res, thumb);
      if (url.pathname === "/api/v1/accounts" && req.method === "GET") return accounts(req, res, url, thumb);
      res.statusCode = 404;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ error: "not_found" }));
    },
  );
  server.on("tlsClientError", (err: NodeJS.ErrnoException) => {
    const reason = `tls:${err.code ?? "error"}`;
    stats.refused[reason] = (stats.refused[reason] ?? 0) + 1;
  });

  async function token(req: IncomingMessage, res: ServerResponse, thumb: string | undefined): Promise<void> {
    if (req.method !== "POST") return refuse(res, "invalid_request", "the token endpoint takes POST", "Basic", 405);
    const form = new URLSearchParams(await readBody(req));
    let id = form.get("client_id") ?? undefined;
    let secret = form.get("client_secret") ?? undefined;
    const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? "");
    if (basic) {
      const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      id = formDecode(decoded.slice(0, colon));
      secret = formDecode(decoded.slice(colon + 1));
    }
    if (form.get("grant_type") !== "client_credentials") return refuse(res, "unsupported_grant_type", "only client_credentials is served", "Basic", 400);
    if (id !== clientId || secret === undefined || !same(secret, clientSecret))
      return refuse(res, "invalid_client", "unknown client or wrong secret", 'Basic realm="token"');
    if (!thumb && (opts.requireClientCertificate ?? true)) return refuse(res, "invalid_client", "a client certificate is required", 'Basic realm="token"');
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: origin,
      sub: clientId,
      aud: `${origin}/api`,
      iat: now,
      exp: now + ttl,
      jti: randomUUID(),
      scope: "accounts:read",
      ...(thumb ? { cnf: { "x5t#S256": thumb } } : {}),
    };
    stats.tokensIssued++;
    res.setHeader("content-type", "application/json");
    res.setHeader("cache-control", "no-store");
    res.end(JSON.stringify({ access_token: signJwt(claims, signingKey), token_type: "Bearer", expires_in: ttl, scope: claims.scope }));
  }

  function accounts(req: IncomingMessage, res: ServerResponse, url: URL, thumb: string | undefined): void {
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (!bearer) return refuse(res, "no_token", "an access token is required", 'Bearer realm="accounts"');
    const claims = verifyJwt(bearer, signingKey);
    if (!claims) return refuse(res, "invalid_token", "the token is not one this server issued", 'Bearer error="invalid_token"');
    if (typeof claims["exp"] !== "number" || claims["exp"] * 1000 <= Date.now())
      return refuse(res, "token_expired", "the token has expired", 'Bearer error="invalid_token", error_description="expired"');
    const bound = (claims["cnf"] as Record<string, unknown> | undefined)?.["x5t#S256"];
    const mustBind = bound !== undefined || (opts.requireClientCertificate ?? true);
    if (mustBind && (typeof bound !== "string" || thumb === undefined || !same(bound, thumb)))
      return refuse(
        res,
        "token_bound_to_another_certificate",
        "the token is bound to another client certificate (RFC 8705)",
        'Bearer error="invalid_token", error_description="certificate binding"',
      );
    if (requireTotp) {
      const code = req.headers[totpHeader];
      if (typeof code !== "string" || code === "")
        return refuse(res, "totp_required", `a one-time code is required in ${opts.totpHeader ?? "X-TOTP"}`, `TOTP header="${opts.totpHeader ?? "X-TOTP"}"`);
      if (!/^\d{6}$/.test(code) || verifyTotp(seed, code) === null)
        return refuse(res, "invalid_totp", "the one-time code is wrong or too old", `TOTP header="${opts.totpHeader ?? "X-TOTP"}"`);
    }
    const page = Math.max(1, Number(url.searchParams.get("page") ?? "1") || 1);
    const size = Math.min(100, Math.max(1, Number(url.searchParams.get("page_size") ?? pageSize) || pageSize));
    const from = (page - 1) * size + 1;
    const to = Math.min(records, page * size);
    const body = [];
    for (let n = from; n <= to; n++) body.push(account(n));
    const pages = Math.ceil(records / size);
    if (page < pages) {
      const next = new URL(url);
      next.searchParams.set("page", String(page + 1));
      res.setHeader("link", `<${next.pathname}${next.search}>; rel="next"`);
    }
    stats.pagesServed++;
    res.setHeader("content-type", "application/json");
    res.setHeader("x-total-count", String(records));
    res.setHeader("cache-control", "no-store");
    res.end(JSON.stringify(body));
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(err.code === "EADDRINUSE" ? new SluiceError("BAD_CONFIG", `port ${opts.port} is already in use on 127.0.0.1.`) : err),
    );
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: `${origin}/api/v1/accounts`,
    tokenUrl: `${origin}/oauth/token`,
    certs,
    clientId,
    clientSecret,
    totpSecret,
    totpHeader: opts.totpHeader ?? "X-TOTP",
    secretFiles,
    stats: () => structuredClone(stats),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** RFC 8705 thumbprint of the connection's client certificate, when it presented one. */
function certThumbprint(req: IncomingMessage): string | undefined {
  const socket = req.socket as TLSSocket;
  if (!socket.authorized) return undefined; // presented but not trusted counts as none
  const peer = socket.getPeerX509Certificate?.();
  return peer ? createHash("sha256").update(peer.raw).digest("base64url") : undefined;
}

/** Compare two strings in time independent of where they differ. */
function same(a: string, b: string): boolean {
  const x = createHash("sha256").update(a).digest();
  const y = createHash("sha256").update(b).digest();
  return timingSafeEqual(x, y);
}

function signJwt(claims: Record<string, unknown>, key: Buffer): string {
  const head = Buffer.from(JSON.stringify({ alg: "HS256", typ: "at+jwt" })).toString("base64url");
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const sig = createHmac("sha256", key).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

function verifyJwt(token: string, key: Buffer): Record<string, unknown> | undefined {
  const [head, body, sig] = token.split(".");
  if (!head || !body || !sig) return undefined;
  const want = createHmac("sha256", key).update(`${head}.${body}`).digest("base64url");
  if (!same(sig, want)) return undefined;
  try {
    return JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 65_536) break;
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}

// ---------------------------------------------------------------------------------------------
// The accounts: a pure function of their number.

const FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Dennis", "Barbara", "Edsger", "Frances", "Tim", "Radia"];
const LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Dijkstra", "Allen", "Berners-Lee", "Perlman"];
const NOTES = [
  "prefers contact by e-mail",
  "moved to a new address last spring",
  "asked for paper statements",
  "VIP customer since 2019",
  "travel notice filed for next month",
  "requested a credit limit review",
  "account opened at the Leeds branch",
  "second holder added",
];
const IBAN_COUNTRIES: { country: string; bban: (r: () => number) => string }[] = [
  { country: "DE", bban: (r) => digits(r, 18) },
  { country: "GB", bban: (r) => letters(r, 4) + digits(r, 14) },
  { country: "AT", bban: (r) => digits(r, 16) },
];
/** Issuer prefixes and lengths: Visa, Mastercard (5- and 2-series), Amex, Discover, a 19-digit Visa. */
const CARD_BRANDS: { prefix: (r: () => number) => string; length: number }[] = [
  { prefix: () => "4", length: 16 },
  { prefix: (r) => String(51 + Math.floor(r() * 5)), length: 16 },
  { prefix: (r) => String(2221 + Math.floor(r() * 500)), length: 16 },
  { prefix: (r) => (r() < 0.5 ? "34" : "37"), length: 15 },
  { prefix: () => "6011", length: 16 },
  { prefix: () => "4", length: 19 },
];

export function account(n: number): Record<string, unknown> {
  const r = mulberry32(n * 2_654_435_761);
  const first = FIRST[n % FIRST.length]!;
  const last = LAST[(n * 7) % LAST.length]!;
  const phone = n % 2 === 0 ? `+1 415-555-${String(1000 + (n % 9000)).slice(-4)}` : `+44 20 7946 0${String(n % 1000).padStart(3, "0")}`;
  const iban = ibanFor(r, n);
  const card = cardNumber(r, n);
  const cents = Math.floor(r() * 5_000_000);
  const opened = new Date(Date.UTC(2015, 0, 1) + Math.floor(r() * 3650) * 86_400_000).toISOString().slice(0, 10);
  const notes = n % 9 === 4 ? `customer read card ${cardNumber(r, n + 1)} over the phone; verify before shipping` : NOTES[n % NOTES.length]!;
  return {
    customer_id: `C-${String(100_000 + n)}`,
    account_id: n,
    holder_name: `${first} ${last}`,
    email: `${first.toLowerCase()}.${last.toLowerCase().replace(/[^a-z]/g, "")}.${n}@example.com`,
    phone,
    iban,
    card_number: card,
    balance: `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, "0")}`,
    currency: iban.startsWith("GB") ? "GBP" : "EUR",
    opened_on: opened,
    notes,
  };
}

function ibanFor(r: () => number, n: number): string {
  const { country, bban } = IBAN_COUNTRIES[n % IBAN_COUNTRIES.length]!;
  for (;;) {
    const iban = composeIBAN({ countryCode: country, bban: bban(r) });
    if (iban) return iban;
  }
}

function cardNumber(r: () => number, n: number): string {
  const brand = CARD_BRANDS[n % CARD_BRANDS.length]!;
  const prefix = brand.prefix(r);
  const body = prefix + digits(r, brand.length - 1 - prefix.length);
  return body + luhnDigit(body);
}

function luhnDigit(partial: string): string {
  let sum = 0;
  for (let i = 0; i < partial.length; i++) {
    let d = Number(partial[partial.length - 1 - i]);
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

function digits(r: () => number, count: number): string {
  let s = "";
  for (let i = 0; i < count; i++) s += String(Math.floor(r() * 10));
  return s;
}

function letters(r: () => number, count: number): string {
  let s = "";
  for (let i = 0; i < count; i++) s += String.fromCharCode(65 + Math.floor(r() * 26));
  return s;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

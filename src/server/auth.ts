/**
 * Bearer-token authentication with three roles, each allowed what the one below it is plus more:
 * viewer (read), operator (start, cancel, resume, retry runs; emit events), admin (apply and roll
 * back workflows).
 *
 * Only SHA-256 hashes of the tokens are kept in memory after start-up, and a presented token is
 * compared with every configured hash in constant time, so neither the comparison nor which
 * token matched shows in the response time.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { dirname } from "node:path";
import type { MiddlewareHandler } from "hono";
import { SluiceError } from "../errors.js";
import { resolveSecret } from "../connectors/secrets.js";
import type { Role, ServerConfig } from "./config.js";
import { errorResponse } from "./errors.js";

export type { Role } from "./config.js";

export interface AuthToken {
  name: string;
  role: Role;
  /** SHA-256 of the token. */
  hash: Buffer;
}

/** Resolved tokens. None at all means authentication is off (and the server binds to loopback). */
export interface AuthConfig {
  tokens: AuthToken[];
}

export interface Principal {
  name: string;
  role: Role;
}

/** Hono context variables set by `authenticate`. */
export interface AppEnv {
  Variables: { principal: Principal };
}

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export const AUTH_OFF: AuthConfig = { tokens: [] };

export function authEnabled(auth: AuthConfig): boolean {
  return auth.tokens.length > 0;
}

export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/**
 * Resolve the configured token references. Relative `file:` paths are taken from the config
 * file's folder (`configFile`), so a config and its secrets can move together.
 */
export async function resolveAuth(config: ServerConfig["auth"], opts: { env?: NodeJS.ProcessEnv; configFile?: string } = {}): Promise<AuthConfig> {
  const baseDir = opts.configFile ? dirname(opts.configFile) : undefined;
  const tokens: AuthToken[] = [];
  for (const [i, t] of config.tokens.entries()) {
    const value = await resolveSecret(t.token, `auth.tokens[${i}].token (${t.name})`, { env: opts.env, baseDir });
    const hash = hashToken(value);
    const same = tokens.find((other) => timingSafeEqual(other.hash, hash));
    // One token with two roles would make the effective role depend on list order.
    if (same) throw new SluiceError("BAD_CONFIG", `auth tokens "${same.name}" and "${t.name}" resolve to the same token; give each its own`);
    tokens.push({ name: t.name, role: t.role, hash });
  }
  return { tokens };
}

/** The token's entry, or undefined. Every hash is compared, matched or not, in constant time. */
export function identify(auth: AuthConfig, presented: string): AuthToken | undefined {
  const hash = hashToken(presented);
  let found: AuthToken | undefined;
  for (const t of auth.tokens) if (timingSafeEqual(t.hash, hash) && !found) found = t;
  return found;
}

const CHALLENGE = { "WWW-Authenticate": 'Bearer realm="sluice"' };

/**
 * Who is calling: 401 without a known bearer token. With authentication off every caller is the
 * local admin; that is safe only because the server then listens on loopback alone (listen.ts).
 */
export function authenticate(auth: AuthConfig): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (!authEnabled(auth)) {
      c.set("principal", { name: "local", role: "admin" });
      return next();
    }
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(header);
    if (!m) return errorResponse(c, 401, { code: "UNAUTHENTICATED", message: "this API needs a bearer token: send Authorization: Bearer TOKEN" }, CHALLENGE);
    const token = identify(auth, m[1]!);
    if (!token)
      return errorResponse(
        c,
        401,
        { code: "UNAUTHENTICATED", message: "the bearer token is not valid" },
        { "WWW-Authenticate": 'Bearer realm="sluice", error="invalid_token"' },
      );
    c.set("principal", { name: token.name, role: token.role });
    return next();
  };
}

/** Whether a caller with this role may do what `role` may. */
export function hasRole(who: Principal | undefined, role: Role): boolean {
  return who !== undefined && RANK[who.role] >= RANK[role];
}

/** 403 unless the caller's role is at least `role`. Declared on each route, next to its schema. */
export function requireRole(role: Role): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const who = c.get("principal");
    if (!who || RANK[who.role] < RANK[role])
      return errorResponse(c, 403, { code: "FORBIDDEN", message: `this needs the ${role} role; token "${who?.name ?? "?"}" has ${who?.role ?? "none"}` });
    return next();
  };
}

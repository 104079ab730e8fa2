/**
 * Browser sessions of the web UI: an API bearer token, presented once at /ui/login, becomes an
 * HTTP-only, SameSite=Strict cookie; every state change also carries a CSRF token of the session.
 *
 * The cookie is signed, not stored: `v1.<name>.<expiry>.<nonce>.<mac>`, the MAC an HMAC keyed by
 * the SHA-256 of the token it came from (which only the server holds). So any server process with
 * the same config accepts it (the app keeps no state), a restart keeps people logged in, and a
 * token removed from the config ends its sessions at once. With authentication off (loopback
 * development) an anonymous session keyed by a per-process secret exists only to carry the CSRF
 * token: a page on another site can still make the browser post to 127.0.0.1.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Context } from "hono";
import { getCookie, setCookie, deleteCookie } from "hono/cookie";
import { authEnabled, identify, type AuthConfig, type Principal } from "../auth.js";

export const SESSION_COOKIE = "sluice_session";
/** A working day and then some: an operator on call logs in once per shift. */
const SESSION_TTL_MS = 12 * 60 * 60 * 1000;
const ANONYMOUS = "local";

export interface Session {
  principal: Principal;
  /** The value forms and htmx requests send back (`_csrf` field or X-CSRF-Token header). */
  csrf: string;
  /** How the caller proved who it is: a bearer header needs no CSRF token (browsers never add one by themselves). */
  via: "cookie" | "bearer" | "new";
}

const mac = (key: Buffer, text: string) => createHmac("sha256", key).update(text).digest("base64url");

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface Sessions {
  /** Who the request is from, or undefined (then the UI asks to log in). May set a fresh anonymous cookie. */
  read(c: Context): Session | undefined;
  /** Exchange a token for a session cookie; undefined when the token is not valid. */
  login(c: Context, token: string): Principal | undefined;
  logout(c: Context): void;
  /** Whether a state-changing request carries its session's CSRF token. */
  csrfOk(session: Session, presented: string | undefined): boolean;
}

export function sessions(auth: AuthConfig): Sessions {
  const processKey = randomBytes(32);
  const keyFor = (name: string): { key: Buffer; principal: Principal } | undefined => {
    if (!authEnabled(auth)) return name === ANONYMOUS ? { key: processKey, principal: { name: ANONYMOUS, role: "admin" } } : undefined;
    const t = auth.tokens.find((x) => x.name === name);
    return t ? { key: t.hash, principal: { name: t.name, role: t.role } } : undefined;
  };
  const issue = (c: Context, name: string, key: Buffer): string => {
    const nonce = randomBytes(16).toString("base64url");
    const body = `v1.${Buffer.from(name).toString("base64url")}.${Date.now() + SESSION_TTL_MS}.${nonce}`;
    setCookie(c, SESSION_COOKIE, `${body}.${mac(key, body)}`, {
      httpOnly: true,
      sameSite: "Strict",
      path: "/ui",
      secure: new URL(c.req.url).protocol === "https:",
      maxAge: SESSION_TTL_MS / 1000,
    });
    return mac(key, `csrf.${nonce}`);
  };
  const verify = (cookie: string | undefined): Session | undefined => {
    const parts = cookie?.split(".");
    if (!parts || parts.length !== 5 || parts[0] !== "v1") return undefined;
    const [, name64, exp, nonce, sig] = parts as [string, string, string, string, string];
    if (!(Number(exp) > Date.now())) return undefined;
    const k = keyFor(Buffer.from(name64, "base64url").toString("utf8"));
    if (!k || !sameText(mac(k.key, `v1.${name64}.${exp}.${nonce}`), sig)) return undefined;
    return { principal: k.principal, csrf: mac(k.key, `csrf.${nonce}`), via: "cookie" };
  };

  return {
    read(c) {
      const header = c.req.header("authorization");
      const bearer = header ? /^Bearer[ \t]+(\S+)\s*$/i.exec(header) : null;
      if (bearer && authEnabled(auth)) {
        const t = identify(auth, bearer[1]!);
        return t ? { principal: { name: t.name, role: t.role }, csrf: "", via: "bearer" } : undefined;
      }
      const s = verify(getCookie(c, SESSION_COOKIE));
      if (s) return s;
      if (authEnabled(auth)) return undefined;
      return { principal: { name: ANONYMOUS, role: "admin" }, csrf: issue(c, ANONYMOUS, processKey), via: "new" };
    },
    login(c, token) {
      if (!authEnabled(auth)) return { name: ANONYMOUS, role: "admin" };
      const t = identify(auth, token);
      if (!t) return undefined;
      issue(c, t.name, t.hash);
      return { name: t.name, role: t.role };
    },
    logout(c) {
      deleteCookie(c, SESSION_COOKIE, { path: "/ui" });
    },
    csrfOk(session, presented) {
      if (session.via === "bearer") return true;
      return presented !== undefined && session.csrf !== "" && sameText(session.csrf, presented);
    },
  };
}

/**
 * A state change from a page of another origin is refused before any token is compared: browsers
 * send Origin on every cross-site POST. Absent (old clients, curl), the CSRF token decides alone.
 */
export function sameOrigin(c: Context): boolean {
  const origin = c.req.header("origin");
  if (!origin || origin === "null") return origin === undefined;
  const host = c.req.header("host") ?? new URL(c.req.url).host;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/**
 * What the PostgreSQL source and destination share: reading a postgres:// URL into client
 * settings with libpq's sslmode meanings, and turning driver errors into SluiceErrors whose
 * code tells the engine whether retrying can help.
 */
import { readFile } from "node:fs/promises";
import type pg from "pg";
import { SluiceError } from "../errors.js";
import { redact } from "./secrets.js";

export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

export interface PgEndpoint {
  client: pg.ClientConfig;
  /** host:port, safe to print. */
  where: string;
  sslmode: SslMode;
}

/**
 * Client settings from a parsed postgres:// URL. Host, port, user, database and sslmode come from
 * the URL as libpq reads them; with no sslmode, Sluice connects without TLS (node-postgres'
 * default, loopback development). Sessions run in UTC.
 */
export async function pgEndpoint(
  u: URL,
  opts: { password: string | undefined; applicationName?: string; connectTimeoutMs?: number; sessionOptions?: string },
): Promise<PgEndpoint> {
  const q = u.searchParams;
  const host = q.get("host") ?? (decodeURIComponent(u.hostname.replace(/^\[|\]$/g, "")) || "localhost");
  const port = Number(q.get("port") ?? (u.port || 5432));
  const where = `${host}:${port}`;
  const sslmode = (q.get("sslmode") ?? "disable") as SslMode;
  const client: pg.ClientConfig = {
    host,
    port,
    user: decodeURIComponent(u.username) || q.get("user") || undefined,
    database: decodeURIComponent(u.pathname.replace(/^\//, "")) || q.get("dbname") || undefined,
    password: opts.password,
    ssl: await sslOptions(sslmode, q.get("sslrootcert"), host, where),
    application_name: opts.applicationName ?? q.get("application_name") ?? "sluice",
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    options: `-c TimeZone=UTC${opts.sessionOptions ? ` ${opts.sessionOptions}` : ""}`,
  };
  return { client, where, sslmode };
}

/** libpq's sslmode semantics; `prefer`/`allow` try TLS and fall back, as libpq does. */
async function sslOptions(mode: string, rootCert: string | null, host: string, where: string): Promise<pg.ClientConfig["ssl"]> {
  let ca: string | undefined;
  if (rootCert && rootCert !== "system") {
    try {
      ca = await readFile(rootCert, "utf8");
    } catch (err) {
      throw new SluiceError(
        "BAD_CONFIG",
        `sslrootcert ${rootCert} for PostgreSQL at ${where} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"}).`,
      );
    }
  }
  switch (mode) {
    case "disable":
      return false;
    case "allow":
    case "prefer":
      return { rejectUnauthorized: false };
    case "require":
      // libpq: encrypt without checking the certificate, unless a root CA was given (then verify-ca).
      return ca ? { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined } : { rejectUnauthorized: false };
    case "verify-ca":
      return { ...(ca ? { ca } : {}), rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case "verify-full":
      return { ...(ca ? { ca } : {}), rejectUnauthorized: true, servername: host };
    default:
      throw new SluiceError(
        "BAD_CONFIG",
        `sslmode ${JSON.stringify(mode)} for PostgreSQL at ${where} is not one of disable, allow, prefer, require, verify-ca, verify-full.`,
      );
  }
}

const NETWORK: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host name not found",
  EAI_AGAIN: "host name lookup failed temporarily",
  ECONNRESET: "connection reset by the server",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  EPIPE: "connection closed by the server",
};

/**
 * A pg or socket error as a SluiceError. SQLSTATE classes: 28 auth, 3D no database, 42 syntax,
 * undefined object or privilege → fix the configuration; 22 data exception, 23 constraint → the
 * data; 08 connection, 40 serialization/deadlock, 53 resources, 57 shutdown → retry.
 */
export function pgError(err: unknown, where: string, secrets: string[], doing: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as Error & { code?: string; where?: string; detail?: string };
  const code = e.code ?? "";
  const msg = redact(e.message ?? String(err), secrets);
  const base = `PostgreSQL at ${where} failed while ${doing}`;
  const details = { host: where, ...(code ? { code } : {}) };
  if (NETWORK[code]) return new SluiceError("NETWORK_ERROR", `${base}: ${NETWORK[code]}.`, { retryable: true, cause: err, details });
  if (/does not support SSL/i.test(msg))
    return new SluiceError("BAD_CONFIG", `${base}: the server does not support SSL but sslmode requires it.`, { cause: err, details });
  if (!code && /timeout|terminated|closed|ended unexpectedly|not queryable/i.test(msg))
    return new SluiceError("NETWORK_ERROR", `${base}: ${msg}.`, { retryable: true, cause: err, details });
  const cls = code.slice(0, 2);
  const extra = [e.detail, e.where]
    .filter(Boolean)
    .map((s) => redact(String(s), secrets))
    .join("; ");
  const full = `${base}: ${msg}${extra ? ` (${extra})` : ""} (SQLSTATE ${code}).`;
  if (cls === "22" || cls === "23") return new SluiceError("BAD_INPUT", full, { cause: err, details });
  if (["28", "3D", "42"].includes(cls)) return new SluiceError("BAD_CONFIG", full, { cause: err, details });
  if (["08", "40", "53", "57"].includes(cls)) return new SluiceError("NETWORK_ERROR", full, { retryable: true, cause: err, details });
  return new SluiceError("IO_ERROR", code ? full : `${base}: ${msg}.`, { retryable: true, cause: err, details });
}

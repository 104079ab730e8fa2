/**
 * data-scheduler/validate_source_availability and data-connector/establish_secure_connection:
 * the source exists and answers, and the connection collection will use is the secure one.
 *
 * The availability check is the first contact with the source, so it stands behind the source's
 * circuit breaker as collection does (recovery/source-guard.ts): an open breaker refuses it at
 * once, and its failures count; its success does not close the breaker (one answered request
 * says little about a walk of many pages), collection's does. Its failures carry the probe's evidence (status, Retry-After,
 * url) in `details`, for the failure analysis of the recovery workflow.
 */
import { access, constants } from "node:fs/promises";
import { SluiceError } from "../../errors.js";
import { listFiles, parseSourceUrl, probeHttp, probePostgres, type HttpAuth } from "../../connectors/index.js";
import type { ActionContext, Outputs } from "../types.js";
import { withSourceBreaker, type BreakerConfig } from "../recovery/source-guard.js";

interface SourceInput {
  source: string;
  auth?: { type: "bearer" | "basic" | "apiKey"; token?: string; username?: string; password?: string; header?: string; value?: string };
  minFiles?: number;
  sslmode?: "disable" | "require" | "verify-full";
  /** validate_source_availability: the source's circuit breaker (thresholds, or false for none). */
  breaker?: BreakerConfig;
}

export async function validateSourceAvailability(input: SourceInput, ctx: ActionContext): Promise<Outputs> {
  return withSourceBreaker(input.source, input.breaker, ctx, () => checkAvailability(input, ctx), { successCloses: false });
}

async function checkAvailability(input: SourceInput, ctx: ActionContext): Promise<Outputs> {
  const src = parseSourceUrl(input.source);
  switch (src.kind) {
    case "file": {
      const files = await listFiles(src.path);
      const min = input.minFiles ?? 1;
      if (files.length < min)
        throw new SluiceError(
          src.glob ? "NOT_FOUND" : "FILE_NOT_FOUND",
          `source ${src.display}: ${files.length === 0 ? "no files found" : `only ${files.length} file(s), ${min} required`}`,
          // Files may still arrive: a glob or directory that is empty now is worth retrying.
          { retryable: src.glob || files.length > 0 },
        );
      // One unreadable file among several is left for the collecting step to isolate (it is listed
      // there as failed, with its reason); only a source with nothing readable fails here.
      const unreadable: string[] = [];
      for (const f of files) {
        try {
          await access(f.path, constants.R_OK);
        } catch {
          unreadable.push(f.path);
        }
      }
      if (unreadable.length === files.length)
        throw new SluiceError(
          "BAD_CONFIG",
          files.length === 1
            ? `source file ${files[0]!.path} exists but is not readable by this process`
            : `none of the ${files.length} files of ${src.display} is readable by this process`,
        );
      for (const path of unreadable) ctx.log.warn("source file not readable by this process", { path });
      const bytes = files.reduce((n, f) => n + f.size, 0);
      ctx.log.info("source available", { kind: "file", files: files.length, bytes });
      return { kind: "file", available: true, files: files.length, bytes, source: src.display, ...(unreadable.length ? { unreadable } : {}) };
    }
    case "http": {
      const probe = await probeHttp({ url: src.url, auth: httpAuth(input.auth) }, { signal: ctx.signal });
      if (!probe.ok)
        throw new SluiceError(
          probe.status === 401 || probe.status === 403 ? "BAD_CONFIG" : "NETWORK_ERROR",
          `source ${src.display} is not available: ${probe.error ?? `HTTP ${probe.status}`}`,
          {
            retryable: !(probe.status >= 400 && probe.status < 500 && probe.status !== 408 && probe.status !== 429),
            ...(probe.errorDetails ? { details: probe.errorDetails } : {}),
          },
        );
      return { kind: "http", available: true, status: probe.status, tls: probe.tls, elapsedMs: probe.elapsedMs, source: src.display };
    }
    case "postgres": {
      const probe = await probePostgres({ url: withSslMode(splitPostgresSource(src.url).url, input.sslmode) }, { signal: ctx.signal });
      if (!probe.ok) throw new SluiceError("NETWORK_ERROR", `source ${src.display} is not available: ${probe.error ?? "no answer"}`);
      return { kind: "postgres", available: true, serverVersion: probe.serverVersion ?? null, ssl: probe.ssl, source: src.display };
    }
  }
}

export async function establishSecureConnection(input: SourceInput, ctx: ActionContext): Promise<Outputs> {
  const src = parseSourceUrl(input.source);
  switch (src.kind) {
    case "file":
      // Local files need no network connection: record that the read stays on this machine.
      return { kind: "file", secure: true, transport: "local", source: src.display };
    case "http": {
      const probe = await probeHttp({ url: src.url, auth: httpAuth(input.auth) }, { signal: ctx.signal });
      if (!probe.ok) throw new SluiceError("NETWORK_ERROR", `connection to ${src.display} failed: ${probe.error ?? `HTTP ${probe.status}`}`);
      if (!probe.tls) ctx.log.warn("plain HTTP source: the connection is not encrypted", { source: src.display });
      return {
        kind: "http",
        secure: probe.tls,
        transport: probe.tls ? "https (certificate verified)" : "http (unencrypted)",
        status: probe.status,
        source: src.display,
      };
    }
    case "postgres": {
      const url = withSslMode(splitPostgresSource(src.url).url, input.sslmode);
      const probe = await probePostgres({ url }, { signal: ctx.signal });
      if (!probe.ok) throw new SluiceError("NETWORK_ERROR", `connection to ${src.display} failed: ${probe.error ?? "no answer"}`);
      if (input.sslmode && input.sslmode !== "disable" && !probe.ssl)
        throw new SluiceError("BAD_CONFIG", `connection to ${src.display} is not encrypted although sslmode=${input.sslmode} was asked for`);
      return {
        kind: "postgres",
        secure: probe.ssl,
        transport: probe.ssl ? "postgres over TLS" : "postgres (unencrypted)",
        serverVersion: probe.serverVersion ?? null,
        source: src.display,
      };
    }
  }
}

/** The workflow's auth block as the HTTP connector takes it (secret references resolved there). */
export function httpAuth(auth: SourceInput["auth"]): HttpAuth | undefined {
  if (!auth) return undefined;
  const need = (field: string, v: string | undefined) => {
    if (!v) throw new SluiceError("BAD_CONFIG", `auth type ${auth.type} needs "${field}"`);
    return v;
  };
  switch (auth.type) {
    case "bearer":
      return { type: "bearer", token: need("token", auth.token) };
    case "basic":
      return { type: "basic", username: need("username", auth.username), password: need("password", auth.password) };
    case "apiKey":
      return { type: "apiKey", header: need("header", auth.header), value: need("value", auth.value) };
  }
}

/**
 * A PostgreSQL source may name its table in the URL (`postgres://host/db?table=trades`), so the
 * standard workflow's single `source` parameter can point at a table. The driver never sees it.
 */
export function splitPostgresSource(source: string): { url: string; table?: string } {
  const u = new URL(source);
  const table = u.searchParams.get("table") ?? undefined;
  u.searchParams.delete("table");
  return { url: u.href, ...(table ? { table } : {}) };
}

function withSslMode(url: string, sslmode: string | undefined): string {
  if (!sslmode || /[?&]sslmode=/.test(url)) return url;
  return `${url}${url.includes("?") ? "&" : "?"}sslmode=${sslmode}`;
}

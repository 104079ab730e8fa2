/**
 * Source connectors: which connector a source string belongs to, and the public entry points.
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SluiceError } from "../errors.js";
import { isGlob } from "./files.js";
import { safeUrl } from "./secrets.js";

export type SourceDescriptor =
  | { kind: "http"; url: string; tls: boolean; display: string }
  | { kind: "postgres"; url: string; display: string }
  | { kind: "file"; path: string; glob: boolean; display: string };

/**
 * Classify a source string: `http(s)://` → http, `postgres(ql)://` → postgres, a `file://` URL
 * or anything else → a local file, directory or glob. `display` is safe to print (no credentials).
 *
 * Unknown URL schemes (`s3://`, `ftp://`) are refused instead of being read as odd local paths,
 * and secret references are refused because their kind cannot be known without reading them.
 */
export function parseSourceUrl(source: string): SourceDescriptor {
  const s = source.trim();
  if (s === "") throw new SluiceError("BAD_CONFIG", "The source is empty; give a file path, directory, glob, http(s):// URL or postgres:// URL.");
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(s)?.[1]?.toLowerCase();
  if (scheme === "http" || scheme === "https") {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw new SluiceError("BAD_CONFIG", `Source ${safeUrl(s)} is not a valid URL.`);
    }
    return { kind: "http", url: url.href, tls: url.protocol === "https:", display: safeUrl(url) };
  }
  if (scheme === "postgres" || scheme === "postgresql") {
    return { kind: "postgres", url: s, display: safeUrl(s) };
  }
  if (scheme === "file" && s.toLowerCase().startsWith("file://")) {
    let path: string;
    try {
      path = fileURLToPath(s);
    } catch {
      throw new SluiceError("BAD_CONFIG", `Source ${s} is not a valid file:// URL.`);
    }
    return { kind: "file", path, glob: isGlob(path), display: path };
  }
  if (scheme === "env" || scheme === "file") {
    throw new SluiceError("BAD_CONFIG", `Source ${s} is a secret reference; name the connector (http or postgres) and put the reference in its url field.`);
  }
  // A one-letter "scheme" is a Windows drive (C:\data); everything else with :// is an unsupported scheme.
  if (scheme && scheme.length > 1 && s.slice(scheme.length + 1).startsWith("//")) {
    throw new SluiceError(
      "BAD_CONFIG",
      `Source ${safeUrl(s)} uses the unsupported scheme ${scheme}://; supported are http(s)://, postgres:// and local paths.`,
    );
  }
  const path = resolve(s);
  return { kind: "file", path, glob: isGlob(s), display: path };
}

export { fetchPages, probeHttp, requestToken, parseLinkHeader, parseRetryAfter, getPath } from "./http.js";
export type {
  HttpAuth,
  HttpPagination,
  HttpSourceConfig,
  HttpCallOptions,
  HttpPage,
  HttpProbeResult,
  HttpResume,
  HttpTotp,
  HttpTls,
  TlsFacts,
  OAuth2Auth,
  OAuthToken,
  OmittedCredential,
} from "./http.js";
export { certificatePin, certificateThumbprint, spkiPin, TLS_VERSIONS, type TlsVersion } from "./http-tls.js";
export { readPostgres, probePostgres, quoteTableName, toJsonSafe, pgTimestampToIso } from "./postgres.js";
export type { PostgresSourceConfig, PostgresCallOptions, PostgresProbeResult, PgRow } from "./postgres.js";
export { listFiles, waitForStable, settleDuring, sha256File, isInProgressName, isGlob, globToRegExp } from "./files.js";
export type { FileEntry, ListFilesOptions, Settled, StableOptions, StableResult, UnstableReason } from "./files.js";
export { resolveSecret, isSecretRef, redact, safeUrl } from "./secrets.js";
export type { SecretRef, ResolveSecretOptions } from "./secrets.js";

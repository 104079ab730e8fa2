/**
 * `data-collector/collect_with_encryption`: the HTTP collector (pagination, auth, Retry-After,
 * page checkpoints that a retry or resume continues from: collect-http.ts) with nothing
 * plaintext on disk, and security monitoring of the connection.
 *
 * - Every page file, the checkpoint's included, is written in the envelope format
 *   (crypto/envelope.ts): AES-256-GCM under a data key for this (run, dataset), wrapped by the
 *   key-encryption key of the step's `key` (a keyring file, or an `env:`/`file:` reference to one
 *   key). The wrapped data key is kept beside the checkpoint (`<step>.datakey.json`) so a resumed
 *   walk seals its pages under the same data key. The dataset's parts say `encrypted`, and the
 *   readers (sample, store_with_encryption) decrypt them as a stream: the plaintext exists only
 *   in memory. What stays in clear are counts, URLs (masked) and the page manifest's first and
 *   last record keys.
 * - Monitoring (the connector reports the TLS connection of every page, and refuses redirects):
 *   a redirect, a server certificate other than the first page's, or a TLS version below the
 *   first page's or the step's `minTlsVersion` stops the walk before the page is stored. The
 *   step then fails with SECURITY_INCIDENT (never retried), a `security_incident` event is
 *   published and the incident is in the audit trail. The first page's certificate and protocol
 *   are kept with the data key, so a resumed walk is compared against the same baseline.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseSourceUrl, type HttpPage, type TlsFacts } from "../../connectors/index.js";
import { createDataKey, encryptBuffer, unwrapDataKey, type DataKey, type EnvelopeContext } from "../../crypto/envelope.js";
import { loadKeyring, type Keyring } from "../../crypto/keyring.js";
import { SluiceError } from "../../errors.js";
import type { ActionContext, Outputs } from "../types.js";
import { collectHttp, type HttpCollectInput, type SecureWalk } from "../batch/collect-http.js";
import { httpConfigOf, type SecureAuthValue, type TlsInputValue } from "./connection.js";
import { stepFolder, writeDataset } from "../batch/dataset.js";

export type TlsVersion = "TLSv1.2" | "TLSv1.3";

export interface CollectEncryptedInput extends Omit<HttpCollectInput, "auth"> {
  source: string;
  /** Bearer, basic, API key or OAuth2 client credentials, each with an optional TOTP header (connection.ts). */
  auth?: SecureAuthValue;
  /** Client certificate (mTLS), private CA, minimum version, pins (connection.ts). */
  tls?: TlsInputValue;
  /** The key-encryption key: a keyring file, or `env:NAME` / `file:PATH` holding one 32-byte key. */
  key: string;
  /** A private CA (PEM) to trust besides the public roots. */
  caFile?: string;
  /** Lowest TLS version accepted on any page. Default TLSv1.2. */
  minTlsVersion?: TlsVersion;
  /** Refuse a plain http:// source. Default true. */
  requireTls?: boolean;
}

/** What the data key file beside the checkpoint holds: the wrapped key (never the key) and the monitoring baseline. */
interface DataKeyFile {
  kid: string;
  ver: number;
  wrapped: string;
  context: EnvelopeContext;
  baseline?: { protocol: string | null; fingerprint256: string | null };
}

type IncidentKind = "redirect" | "certificate_change" | "tls_downgrade";

const TLS_RANK: Record<string, number> = { TLSv1: 10, "TLSv1.1": 11, "TLSv1.2": 12, "TLSv1.3": 13 };

export async function collectWithEncryption(input: CollectEncryptedInput, ctx: ActionContext): Promise<Outputs> {
  const src = parseSourceUrl(input.source);
  if (src.kind !== "http")
    throw new SluiceError("BAD_CONFIG", `collect_with_encryption reads HTTP(S) APIs; ${src.display} is not an http(s):// URL`, { retryable: false });
  if ((input.requireTls ?? true) && !src.tls)
    throw new SluiceError("BAD_CONFIG", `source ${src.display} is plain http; collect_with_encryption needs https (or requireTls: false)`, {
      retryable: false,
    });
  const ring = loadKeyring(input.key);
  const dir = await stepFolder(ctx);
  const keyFile = join(ctx.artifactsDir, `${ctx.step}.datakey.json`);
  const { dk, file } = await dataKeyFor(ring, keyFile, { runId: ctx.runId, dataset: ctx.step }, input.key);
  const minRank = TLS_RANK[input.minTlsVersion ?? "TLSv1.2"]!;
  let last: TlsFacts | undefined;

  const check = async (page: HttpPage) => {
    if (!src.tls) return;
    const peer = page.tls;
    if (!peer) throw incident("tls_downgrade", `page ${page.page} of ${src.display} came over no observed TLS connection`, { page: page.page });
    last = peer;
    const rank = TLS_RANK[peer.protocol ?? ""] ?? 0;
    if (rank < minRank)
      throw incident(
        "tls_downgrade",
        `page ${page.page} of ${src.display} came over ${peer.protocol ?? "an unknown protocol"}, below ${input.minTlsVersion ?? "TLSv1.2"}`,
        {
          page: page.page,
          protocol: peer.protocol,
        },
      );
    if (!file.baseline) {
      file.baseline = { protocol: peer.protocol, fingerprint256: peer.fingerprint256 };
      await saveKeyFile(keyFile, file);
      return;
    }
    if (peer.fingerprint256 !== file.baseline.fingerprint256)
      throw incident(
        "certificate_change",
        `the server certificate of ${src.display} changed at page ${page.page} (fingerprint ${short(peer.fingerprint256)}, was ${short(file.baseline.fingerprint256)})`,
        {
          page: page.page,
          fingerprint256: peer.fingerprint256,
          expected: file.baseline.fingerprint256,
        },
      );
    if (rank < (TLS_RANK[file.baseline.protocol ?? ""] ?? 0))
      throw incident("tls_downgrade", `page ${page.page} of ${src.display} came over ${peer.protocol}, after ${file.baseline.protocol} on the first page`, {
        page: page.page,
        protocol: peer.protocol,
        expected: file.baseline.protocol,
      });
  };

  let collected: Awaited<ReturnType<typeof collectHttp>>;
  try {
    collected = await collectHttp(src.url, src.display, { ...input, auth: undefined }, dir, ctx, {
      seal: (plain) => encryptBuffer(dk, plain),
      encrypted: { keyId: dk.ref.id, version: dk.ref.version, keyring: input.key, context: dk.context },
      check,
      config: secureConfig(input),
    });
  } catch (err) {
    if (err instanceof SluiceError && err.code === "SECURITY_INCIDENT") await raiseIncident(err, src.display, ctx);
    throw err;
  }

  const { parts, pagesLeft, outputs } = collected;
  const records = parts.reduce((n, p) => n + (p.rows ?? 0), 0);
  const bytes = parts.reduce((n, p) => n + (p.bytes ?? 0), 0);
  const encryption = { algorithm: "AES-256-GCM", keyId: dk.ref.id, keyVersion: dk.ref.version };
  const dataset = await writeDataset(dir, {
    step: ctx.step,
    typed: false,
    parts,
    quarantine: [],
    meta: { source: src.display, skipped: [], encryption, ...(pagesLeft ? { pagesLeft } : {}) },
  });
  await ctx.audit.append({
    event: "data.collect",
    outcome: "success",
    resource: `source:${src.display}`,
    details: { pages: outputs.pages, records, bytes, ...encryption, ...(last ? { tlsProtocol: last.protocol, certificate: last.fingerprint256 } : {}) },
  });
  return {
    dataset,
    files: parts.length,
    bytes,
    records,
    source: src.display,
    encryption,
    ...(last ? { tls: { protocol: last.protocol, cipher: last.cipher, fingerprint256: last.fingerprint256, validTo: last.validTo } } : {}),
    ...(pagesLeft ? { pagesLeft: true } : {}),
    ...outputs,
  };
}

/** The walk's data key: the one a previous attempt of this run wrapped, else a new one (saved before any page). */
async function dataKeyFor(ring: Keyring, path: string, context: EnvelopeContext, keyRef: string): Promise<{ dk: DataKey; file: DataKeyFile }> {
  try {
    const file = JSON.parse(await readFile(path, "utf8")) as DataKeyFile;
    if (file.context.runId === context.runId && file.context.dataset === context.dataset)
      return { dk: unwrapDataKey(ring, { id: file.kid, version: file.ver }, file.wrapped, file.context), file };
  } catch (err) {
    // No file yet is the usual case; a key that no longer unwraps (another keyring) is not.
    if (err instanceof SluiceError)
      throw new SluiceError("DECRYPT_FAILED", `the data key this step stored in an earlier attempt does not unwrap with ${keyRef}: ${err.message}`, {
        retryable: false,
      });
  }
  const dk = createDataKey(ring, context);
  const file: DataKeyFile = { kid: dk.ref.id, ver: dk.ref.version, wrapped: dk.wrapped, context };
  await saveKeyFile(path, file);
  return { dk, file };
}

async function saveKeyFile(path: string, file: DataKeyFile): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(file, null, 2), { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

function incident(kind: IncidentKind, sentence: string, details: Record<string, unknown>): SluiceError {
  return new SluiceError("SECURITY_INCIDENT", `${sentence}; collection stopped`, { retryable: false, details: { kind, ...details } });
}

/** Publish the incident and put it in the audit trail; the step's failure follows. */
async function raiseIncident(err: SluiceError, source: string, ctx: ActionContext): Promise<void> {
  const kind = typeof err.details?.["kind"] === "string" ? (err.details["kind"] as string) : "unknown";
  const data = {
    kind,
    source,
    runId: ctx.runId,
    workflow: ctx.workflow,
    step: ctx.step,
    message: err.message,
    ...pick(err.details, ["page", "status", "location", "protocol", "expected", "fingerprint256"]),
  };
  ctx.log.error(`security incident: ${err.message}`, { kind, source });
  // The audit entry first: it is the record that must exist (a failed write fails the step on its own).
  await ctx.audit.append({ event: "security.incident", outcome: "failure", resource: `source:${source}`, details: data });
  try {
    await ctx.publish("security_incident", data, `run:${ctx.runId}`);
  } catch (e) {
    ctx.log.warn("the security_incident event could not be published", { reason: (e as Error).message });
  }
}

function pick(o: Record<string, unknown> | undefined, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (o?.[k] !== undefined) out[k] = o[k];
  return out;
}

function short(fp: string | null): string {
  return fp ? `${fp.slice(0, 23)}…` : "none";
}

/** The connection settings the walk uses: the plain collector's, with redirects refused and the secure inputs' TLS and auth. */
function secureConfig(input: CollectEncryptedInput): SecureWalk["config"] {
  const { tls, auth, caFile } = httpConfigOf({
    source: input.source,
    ...(input.caFile ? { caFile: input.caFile } : {}),
    ...(input.tls ? { tls: input.tls } : {}),
    ...(input.auth ? { auth: input.auth } : {}),
  });
  // Always a tls block (at least the minimum version): the connector then records every connection's facts, which the monitoring compares page by page.
  return { redirects: "refuse", ...(caFile ? { caFile } : {}), tls: { minVersion: input.minTlsVersion ?? "TLSv1.2", ...tls }, ...(auth ? { auth } : {}) };
}

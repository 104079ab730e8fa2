/**
 * TLS for the HTTP source: a private CA, a client certificate (mTLS), a minimum protocol version,
 * a certificate pin, and the facts of every connection made (protocol, cipher, the server
 * certificate's fingerprint, SPKI pin, subject, issuer and validity).
 *
 * Why a connector of our own rather than undici's `connect: { ca, cert, key }` object: undici
 * reports neither the negotiated facts nor why a server hung up. Node's global fetch is undici,
 * and undici accepts a `connect(opts, callback)` function that hands it a socket; writing that
 * function over `tls.connect` gives one place to
 * - check the pin inside `checkServerIdentity`, so a mismatch aborts the handshake before a byte
 *   of the request (or a credential) is written;
 * - refuse to negotiate below `minVersion` (tls.connect's own option) and name it when the server
 *   cannot meet it;
 * - present the client certificate only to the origins it is meant for (the API and its token
 *   endpoint): it is a credential, and a redirect to another host must not receive it;
 * - remember TLS alerts and early hang-ups, so "fetch failed: other side closed" becomes "the
 *   server did not accept the client certificate". Under TLS 1.3 the client's handshake ends
 *   before the server has checked the client certificate; its refusal arrives as an alert on the
 *   socket (certificate required) or as a bare close (Node servers with rejectUnauthorized close
 *   an expired or unknown-CA certificate's connection without an alert).
 *
 * The pin is RFC 7469's pin-sha256: base64 of SHA-256 over the server certificate's
 * SubjectPublicKeyInfo (DER), what `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der
 * | openssl dgst -sha256 -binary | base64` prints. Pinning the key rather than the certificate
 * survives a renewal that keeps the key; several pins (a backup key) may be given.
 */
import { createHash, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { connect as netConnect, isIP, type Socket } from "node:net";
import { checkServerIdentity, connect as tlsConnect, rootCertificates, type PeerCertificate, type TLSSocket } from "node:tls";
import { SluiceError } from "../errors.js";
import { isSecretRef, resolveSecret, type ResolveSecretOptions } from "./secrets.js";

export type TlsVersion = "TLSv1.2" | "TLSv1.3";
export const TLS_VERSIONS: readonly TlsVersion[] = ["TLSv1.2", "TLSv1.3"];

/** The `tls:` block of an HTTP source. Certificate and key are secret references or file paths. */
export interface HttpTls {
  /** Client certificate (PEM) for mutual TLS: `env:NAME`, `file:PATH` or a path. */
  cert?: string;
  /** Its private key (PEM): `env:NAME`, `file:PATH` or a path. */
  key?: string;
  /** Passphrase of an encrypted key: a secret reference. */
  passphrase?: string;
  /** PEM file of a private CA to trust besides the public roots (same as the source's `caFile`). */
  ca?: string;
  /** Lowest protocol version negotiated (default TLSv1.2, Node's own floor). */
  minVersion?: TlsVersion;
  /** pin-sha256 of the server's public key (base64 of SHA-256 of the SPKI); one, or a list with backups. */
  pin?: string | string[];
}

/** What one TLS connection negotiated, and the server certificate it was shown. */
export interface TlsFacts {
  /** host:port the connection went to. */
  origin: string;
  protocol: string;
  cipher: string;
  /** SHA-256 fingerprint of the server certificate (colon-separated hex, as openssl prints it). */
  fingerprint256: string;
  /** pin-sha256 of the server certificate's public key. */
  spkiPin: string;
  subject: string;
  issuer: string;
  subjectAltName: string;
  serialNumber: string;
  /** Validity of the server certificate, UTC ISO-8601. */
  validFrom: string;
  validTo: string;
  /** Whether this connection presented the client certificate. */
  clientCertificate: boolean;
}

/** Everything a connection needs, read once per session: PEM text, never a reference. */
export interface TlsMaterial {
  ca: string[] | undefined;
  cert: string | undefined;
  key: string | undefined;
  passphrase: string | undefined;
  minVersion: TlsVersion;
  pins: string[];
  /** Values to mask in messages (the key, the passphrase). */
  secrets: string[];
}

/** What the connector saw, shared with the session so errors can be explained. */
export interface TlsLog {
  facts: TlsFacts[];
  /** The last refusal seen on a socket (an alert, or a close right after the handshake). */
  refusal?: { origin: string; at: number; code: string; message: string; clientCertificate: boolean; afterHandshake: boolean };
}

export interface TlsAgentOptions {
  /** host:port origins that receive the client certificate. */
  certOrigins: ReadonlySet<string>;
  /** host:port whose server certificate the pins apply to. */
  pinnedOrigin: string;
  connectTimeoutMs: number;
  log: TlsLog;
  onFacts?: (facts: TlsFacts) => void;
}

/** `host:port` of a URL, the key the connector and the session agree on. */
export function originKey(url: URL): string {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return `${host}:${url.port || (url.protocol === "https:" ? "443" : "80")}`;
}

/** pin-sha256 (RFC 7469) of a DER SubjectPublicKeyInfo. */
export function spkiPin(spkiDer: Buffer): string {
  return createHash("sha256").update(spkiDer).digest("base64");
}

/** pin-sha256 of a PEM certificate's public key. */
export function certificatePin(pem: string | Buffer): string {
  const cert = new X509Certificate(pem);
  return spkiPin(cert.publicKey.export({ type: "spki", format: "der" }));
}

/** RFC 8705 `x5t#S256`: base64url of SHA-256 over the certificate's DER. */
export function certificateThumbprint(pem: string | Buffer): string {
  return createHash("sha256").update(new X509Certificate(pem).raw).digest("base64url");
}

/** Read the certificates, key and CA named by `tls` (and the legacy `caFile`). */
export async function loadTlsMaterial(tls: HttpTls | undefined, caFile: string | undefined, opts: ResolveSecretOptions): Promise<TlsMaterial> {
  const secrets: string[] = [];
  const caPath = tls?.ca ?? caFile;
  let ca: string[] | undefined;
  if (caPath !== undefined) {
    const pem = await readPem(caPath, tls?.ca !== undefined ? "tls.ca" : "caFile", "CERTIFICATE", opts);
    ca = [...rootCertificates, pem];
  }
  if ((tls?.cert === undefined) !== (tls?.key === undefined))
    throw new SluiceError("BAD_CONFIG", "tls.cert and tls.key go together: a client certificate needs its private key, and a key its certificate.");
  const cert = tls?.cert !== undefined ? await readPem(tls.cert, "tls.cert", "CERTIFICATE", opts) : undefined;
  const key = tls?.key !== undefined ? await readPem(tls.key, "tls.key", "PRIVATE KEY", opts) : undefined;
  if (key) secrets.push(key);
  const passphrase = tls?.passphrase !== undefined ? await resolveSecret(tls.passphrase, "tls.passphrase", opts) : undefined;
  if (passphrase) secrets.push(passphrase);
  const minVersion = tls?.minVersion ?? "TLSv1.2";
  if (!TLS_VERSIONS.includes(minVersion))
    throw new SluiceError("BAD_CONFIG", `tls.minVersion ${JSON.stringify(minVersion)} is not one of ${TLS_VERSIONS.join(", ")}.`);
  const pins = tls?.pin === undefined ? [] : Array.isArray(tls.pin) ? tls.pin : [tls.pin];
  for (const p of pins) {
    if (!/^[A-Za-z0-9+/]{43}=$/.test(p))
      throw new SluiceError("BAD_CONFIG", `tls.pin ${JSON.stringify(p)} is not a pin-sha256 (base64 of a 32-byte SHA-256, 44 characters).`);
  }
  return { ca, cert, key, passphrase, minVersion, pins, secrets };
}

/** A PEM from a secret reference or a path; `kind` is checked so a swapped cert and key are named. */
async function readPem(spec: string, field: string, kind: "CERTIFICATE" | "PRIVATE KEY", opts: ResolveSecretOptions): Promise<string> {
  let text: string;
  if (isSecretRef(spec)) text = await resolveSecret(spec, field, opts);
  else {
    if (spec.includes("-----BEGIN"))
      throw new SluiceError("BAD_CONFIG", `${field} must be a secret reference (env:NAME or file:PATH) or a path, not the PEM itself.`);
    try {
      text = await readFile(spec, "utf8");
    } catch (err) {
      throw new SluiceError("BAD_CONFIG", `${field} file ${spec} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"}).`, { cause: err });
    }
  }
  const wanted = kind === "CERTIFICATE" ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/;
  if (!wanted.test(text))
    throw new SluiceError("BAD_CONFIG", `${field} (${isSecretRef(spec) ? spec : `file ${spec}`}) does not contain a PEM ${kind.toLowerCase()}.`);
  return text;
}

type Connector = (
  opts: { hostname: string; port: string; protocol: string; servername?: string | null },
  callback: (err: Error | null, socket: Socket | null) => void,
) => void;

/**
 * A fetch dispatcher (undici Agent) whose connections go through `connector` below.
 *
 * Node 20 bundles undici but does not export its `Agent`; installing the `undici` package would
 * add a dependency. Undici registers its global dispatcher under a well-known `Symbol.for` key
 * (shared on purpose between undici copies), and that object is an `Agent`, so its constructor
 * is the bundled Agent class. The first fetch creates it; a `data:` fetch does so without I/O.
 */
export async function tlsAgent(material: TlsMaterial, o: TlsAgentOptions): Promise<RequestInit["dispatcher"]> {
  const key = Symbol.for("undici.globalDispatcher.1");
  const g = globalThis as unknown as Record<symbol, unknown>;
  if (g[key] === undefined) await fetch("data:,");
  const current = g[key] as { constructor?: new (opts: unknown) => unknown } | undefined;
  const Agent = current?.constructor;
  if (typeof Agent !== "function" || Agent.name !== "Agent") {
    throw new SluiceError("BAD_CONFIG", `TLS options are not supported on this Node.js version (${process.version}).`);
  }
  return new Agent({ connect: connector(material, o) }) as RequestInit["dispatcher"];
}

function connector(material: TlsMaterial, o: TlsAgentOptions): Connector {
  return (opts, callback) => {
    const host = opts.hostname.replace(/^\[|\]$/g, "");
    const port = Number(opts.port) || (opts.protocol === "https:" ? 443 : 80);
    const origin = `${host}:${port}`;
    let done = false;
    const finish = (err: Error | null, socket: Socket | null) => {
      if (done) return;
      done = true;
      callback(err, socket);
    };
    if (opts.protocol !== "https:") {
      // A redirect target or another plain-http origin: no TLS to apply.
      const socket = netConnect({ host, port });
      socket.setNoDelay(true);
      socket.setTimeout(o.connectTimeoutMs, () => socket.destroy(Object.assign(new Error("connect timed out"), { code: "ETIMEDOUT" })));
      socket.once("connect", () => (socket.setTimeout(0), finish(null, socket)));
      socket.once("error", (err) => finish(err, null));
      return;
    }
    const presentCert = material.cert !== undefined && o.certOrigins.has(origin);
    const pinned = material.pins.length > 0 && origin === o.pinnedOrigin;
    const socket: TLSSocket = tlsConnect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: opts.servername || host }),
      ...(material.ca ? { ca: material.ca } : {}),
      ...(presentCert ? { cert: material.cert, key: material.key, ...(material.passphrase ? { passphrase: material.passphrase } : {}) } : {}),
      minVersion: material.minVersion,
      ALPNProtocols: ["http/1.1"],
      checkServerIdentity: (name: string, cert: PeerCertificate) => {
        const wrongHost = checkServerIdentity(name, cert);
        if (wrongHost) return wrongHost;
        if (pinned) {
          // Not `cert.pubkey`: for EC keys that is the bare point, not the SubjectPublicKeyInfo pins hash.
          const seen = spkiPin(new X509Certificate(cert.raw).publicKey.export({ type: "spki", format: "der" }));
          if (!material.pins.includes(seen)) return pinMismatch(origin, seen, material.pins);
        }
        return undefined;
      },
    });
    socket.setNoDelay(true);
    socket.setTimeout(o.connectTimeoutMs, () => socket.destroy(Object.assign(new Error("TLS handshake timed out"), { code: "ETIMEDOUT" })));
    let secured = false;
    let noted = false;
    // The first error of a socket is the reason; undici's own "other side closed" follows an alert.
    const noteRefusal = (err: NodeJS.ErrnoException) => {
      if (err instanceof SluiceError || noted) return;
      noted = true;
      const code = err.code ?? "";
      if (code.startsWith("ERR_SSL_") || (code === "ECONNRESET" && !secured) || (code === "UND_ERR_SOCKET" && secured)) {
        o.log.refusal = { origin, at: Date.now(), code, message: err.message, clientCertificate: presentCert, afterHandshake: secured };
      }
    };
    socket.on("error", noteRefusal);
    socket.once("secureConnect", () => {
      secured = true;
      socket.setTimeout(0);
      const facts = factsOf(socket, origin, presentCert);
      if (facts) {
        o.log.facts.push(facts);
        o.onFacts?.(facts);
      }
      finish(null, socket);
    });
    socket.once("close", () => {
      if (!done) finish(Object.assign(new Error("the connection closed during the TLS handshake"), { code: "ECONNRESET" }), null);
    });
    socket.once("error", (err) => finish(err, null));
  };
}

function factsOf(socket: TLSSocket, origin: string, clientCertificate: boolean): TlsFacts | undefined {
  const cert = socket.getPeerX509Certificate();
  if (!cert) return undefined;
  return {
    origin,
    protocol: socket.getProtocol() ?? "unknown",
    cipher: socket.getCipher()?.name ?? "unknown",
    fingerprint256: cert.fingerprint256,
    spkiPin: spkiPin(cert.publicKey.export({ type: "spki", format: "der" })),
    subject: cert.subject.replace(/\n/g, ", "),
    issuer: cert.issuer.replace(/\n/g, ", "),
    subjectAltName: cert.subjectAltName ?? "",
    serialNumber: cert.serialNumber,
    validFrom: new Date(cert.validFrom).toISOString(),
    validTo: new Date(cert.validTo).toISOString(),
    clientCertificate,
  };
}

function pinMismatch(origin: string, seen: string, pins: string[]): SluiceError {
  return new SluiceError(
    "TLS_POLICY",
    `The server at ${origin} presented a public key whose pin-sha256 is ${seen}, not the pinned ${pins.join(" or ")}; the connection was closed before any request was sent.`,
    { retryable: false, details: { host: origin, tlsPolicy: "pin", seenPin: seen, pins } },
  );
}

/** What a TLS alert code says about the server's view of the client certificate. */
const CLIENT_CERT_ALERTS: Record<string, string> = {
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: "certificate required",
  ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE: "handshake failure",
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: "bad certificate",
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: "certificate expired",
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED: "certificate revoked",
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN: "certificate unknown",
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: "unknown CA",
  ERR_SSL_TLSV1_ALERT_ACCESS_DENIED: "access denied",
  ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR: "decrypt error",
};
const VERSION_CODES = new Set([
  "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION",
  "ERR_SSL_UNSUPPORTED_PROTOCOL",
  "ERR_SSL_NO_PROTOCOLS_AVAILABLE",
  "ERR_SSL_WRONG_VERSION_NUMBER",
]);

/**
 * A clear SluiceError for a failed fetch whose cause is TLS policy or a refused client
 * certificate, or undefined when the failure is something else (left to the caller's mapping).
 * `since` is when the request started: only refusals seen after it explain it.
 */
export function explainTlsFailure(err: unknown, url: URL, log: TlsLog, material: TlsMaterial, since: number): SluiceError | undefined {
  const cause = (err as { cause?: unknown }).cause ?? err;
  if (cause instanceof SluiceError) return cause;
  const origin = originKey(url);
  const code = (cause as NodeJS.ErrnoException)?.code ?? "";
  const details = { host: origin, code };
  if (VERSION_CODES.has(code))
    return new SluiceError(
      "TLS_POLICY",
      `The server at ${origin} could not agree on TLS ${material.minVersion} or later (${code}); the policy does not allow an older protocol.`,
      { retryable: false, cause: err, details: { ...details, tlsPolicy: "minVersion", minVersion: material.minVersion } },
    );
  const r = log.refusal;
  if (!r || r.origin !== origin || r.at < since) return undefined;
  const alert = CLIENT_CERT_ALERTS[r.code];
  if (alert !== undefined || (r.clientCertificate && (r.code === "UND_ERR_SOCKET" || r.code === "ECONNRESET"))) {
    const why = !r.clientCertificate
      ? `it requires a client certificate (TLS alert: ${alert ?? r.code}); set tls.cert and tls.key`
      : `it did not accept the client certificate (${alert !== undefined ? `TLS alert: ${alert}` : `it closed the connection ${r.afterHandshake ? "right after" : "during"} the handshake without answering`}); check that the certificate is current and issued by a CA the server trusts`;
    return new SluiceError("BAD_CONFIG", `The server at ${origin} refused the TLS connection: ${why}.`, {
      retryable: false,
      cause: err,
      details: { ...details, code: r.code, tlsRefusal: r.clientCertificate ? "client_certificate_refused" : "client_certificate_required" },
    });
  }
  return undefined;
}

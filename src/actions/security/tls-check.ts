/**
 * data-connector/establish_encrypted_connection: open the TLS connection collection will use,
 * under the policy (minimum version, private CA, hostname verification, pin, client
 * certificate), and record what it negotiated: protocol, cipher, the server certificate's
 * fingerprint, its SPKI pin, subject, issuer and validity.
 *
 * No credentials but the client certificate are sent: the step proves the channel, the MFA step
 * the identity. Any HTTP answer (a 401 included) shows the encrypted channel works; a failed
 * handshake, a pin mismatch or a protocol below the minimum fails the step, not retryably.
 *
 * A server certificate that ends within `warnDays` (default 14) publishes a `security_incident`
 * event (type certificate_expiring) and warns: renewals are forgotten, and the day it lapses the
 * ingestion stops. One that has already ended fails the handshake (Node refuses it).
 */
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { probeHttp, safeUrl } from "../../connectors/index.js";
import type { ActionContext, Outputs } from "../types.js";
import { httpConfigOf, Pin, TlsInput, TlsVersionInput, type ConnectionValue } from "./connection.js";
import { Source } from "../inputs.js";

export const EncryptedConnectionInput = z
  .object({
    source: Source,
    caFile: z.string().min(1).optional(),
    tls: TlsInput.optional(),
    minTlsVersion: TlsVersionInput.optional().describe("Lowest TLS version accepted (default TLSv1.2); the stricter of this and tls.minVersion applies."),
    pin: z
      .union([Pin, z.array(Pin).min(1)])
      .optional()
      .describe("pin-sha256 of the server's public key (same as tls.pin)."),
    warnDays: z.number().int().min(0).default(14).describe("A server certificate ending within this many days raises a security incident."),
  })
  .strict();

export type EncryptedConnectionValue = z.infer<typeof EncryptedConnectionInput>;

const DAY = 86_400_000;

export async function establishEncryptedConnection(input: EncryptedConnectionValue, ctx: ActionContext): Promise<Outputs> {
  const shown = safeUrl(input.source);
  let url: URL;
  try {
    url = new URL(input.source);
  } catch {
    throw new SluiceError("BAD_CONFIG", `source ${shown} is not a URL; an encrypted connection needs an https:// API.`);
  }
  if (url.protocol !== "https:")
    throw new SluiceError("TLS_POLICY", `source ${shown} is plain http: there is no encrypted connection to establish.`, { retryable: false });
  const minVersion = input.minTlsVersion ?? input.tls?.minVersion ?? "TLSv1.2";
  const conn: ConnectionValue = { source: input.source, ...(input.caFile ? { caFile: input.caFile } : {}), ...(input.tls ? { tls: input.tls } : {}) };
  const config = httpConfigOf(conn, { minVersion, ...(input.pin !== undefined ? { pin: input.pin } : {}) });
  const probe = await probeHttp({ ...config, maxRetries: 0 }, { signal: ctx.signal });
  const facts = probe.tlsFacts;
  if (!facts || probe.status === 0) {
    const code = probe.errorCode ?? "NETWORK_ERROR";
    throw new SluiceError(code, probe.error ?? `the TLS connection to ${shown} failed.`, {
      retryable: code === "NETWORK_ERROR",
      ...(probe.errorDetails ? { details: probe.errorDetails } : {}),
    });
  }
  // The connector refused anything older; checked again here because the record is the proof.
  if (facts.protocol < minVersion)
    throw new SluiceError("TLS_POLICY", `the connection to ${facts.origin} negotiated ${facts.protocol}, below the policy's ${minVersion}.`, {
      retryable: false,
      details: { host: facts.origin, protocol: facts.protocol, minVersion },
    });

  const now = Date.now();
  const validTo = Date.parse(facts.validTo);
  const daysLeft = Math.floor(((validTo - now) / DAY) * 10) / 10;
  const warnings: string[] = [];
  let incident: { eventId: string } | undefined;
  if (daysLeft <= input.warnDays) {
    const message = `the server certificate of ${facts.origin} (${facts.subject}) expires on ${facts.validTo}, in ${daysLeft} days: renew it before collection stops`;
    warnings.push(message);
    ctx.log.warn(`security incident: ${message}`, { host: facts.origin, validTo: facts.validTo, daysLeft });
    const event = await ctx.publish(
      "security_incident",
      {
        type: "certificate_expiring",
        severity: daysLeft <= 3 ? "high" : "medium",
        message,
        host: facts.origin,
        source: shown,
        subject: facts.subject,
        issuer: facts.issuer,
        fingerprint256: facts.fingerprint256,
        validTo: facts.validTo,
        daysLeft,
        warnDays: input.warnDays,
        detectedBy: { runId: ctx.runId, workflow: ctx.workflow, step: ctx.step },
      },
      `run:${ctx.runId}`,
    );
    incident = { eventId: event.eventId };
  }
  const pins = input.pin ?? input.tls?.pin;
  ctx.log.info("encrypted connection established", { host: facts.origin, protocol: facts.protocol, cipher: facts.cipher, daysLeft });
  return {
    secure: true,
    source: shown,
    host: facts.origin,
    protocol: facts.protocol,
    cipher: facts.cipher,
    minTlsVersion: minVersion,
    hostnameVerified: true,
    pinned: pins !== undefined,
    fingerprint256: facts.fingerprint256,
    spkiPin: facts.spkiPin,
    subject: facts.subject,
    issuer: facts.issuer,
    subjectAltName: facts.subjectAltName,
    validFrom: facts.validFrom,
    validTo: facts.validTo,
    daysLeft,
    clientCertificate: facts.clientCertificate,
    status: probe.status,
    warnings,
    ...(incident ? { securityIncident: incident.eventId } : {}),
  };
}

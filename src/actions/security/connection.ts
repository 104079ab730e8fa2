/**
 * How the secure workflow's steps write an HTTPS API connection — `source`, `caFile`, `tls:`
 * (client certificate, minimum version, pin) and `auth:` (bearer, basic, apiKey or OAuth2 client
 * credentials, each with an optional TOTP header) — and its translation to the HTTP connector's
 * config. One schema, so MFA verification, the encrypted connection check and collection are
 * written the same way and check the same thing.
 */
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import type { HttpAuth, HttpSourceConfig, HttpTls } from "../../connectors/index.js";
import { SecretRef, Source } from "../inputs.js";

export const TlsVersionInput = z.enum(["TLSv1.2", "TLSv1.3"]);

/** A PEM given as a secret reference or as a file path (a certificate is public; its key is not). */
const PemRef = z
  .string()
  .min(1)
  .refine((s) => !s.includes("-----BEGIN"), "must be a secret reference (env:NAME or file:PATH) or a path, never the PEM itself")
  .describe("env:NAME, file:PATH or a path to a PEM file.");

export const Pin = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, "must be a pin-sha256: base64 of the SHA-256 of the server's public key (44 characters)");

export const TlsInput = z
  .object({
    cert: PemRef.optional().describe("Client certificate for mutual TLS."),
    key: PemRef.optional().describe("Its private key."),
    passphrase: SecretRef.optional(),
    ca: z.string().min(1).optional().describe("PEM file of a private CA to trust."),
    minVersion: TlsVersionInput.optional(),
    pin: z
      .union([Pin, z.array(Pin).min(1)])
      .optional()
      .describe("pin-sha256 of the server's public key; a list allows a backup key."),
  })
  .strict();

export const TotpInput = z
  .object({
    secret: SecretRef.describe("The base32 TOTP seed (or an otpauth:// URI)."),
    header: z.string().min(1).optional().describe("Header the code is sent in (default X-TOTP)."),
    digits: z.number().int().min(6).max(10).optional(),
    period: z.number().int().min(1).optional(),
    algorithm: z.enum(["sha1", "sha256", "sha512"]).optional(),
  })
  .strict();

export const SecureAuth = z
  .object({
    type: z.enum(["bearer", "basic", "apiKey", "oauth2"]),
    token: SecretRef.optional(),
    username: z.string().optional(),
    password: SecretRef.optional(),
    header: z.string().optional(),
    value: SecretRef.optional(),
    tokenUrl: z.string().url().optional().describe("oauth2: the token endpoint (https)."),
    clientId: z.string().min(1).optional(),
    clientSecret: SecretRef.optional().describe("oauth2: the client secret; absent, the client certificate authenticates the client."),
    scope: z.string().optional(),
    audience: z.string().optional(),
    clientAuth: z.enum(["basic", "post"]).optional(),
    totp: TotpInput.optional(),
  })
  .strict();

export const ConnectionInput = {
  source: Source,
  caFile: z.string().min(1).optional().describe("PEM file of a private CA to trust (same as tls.ca)."),
  tls: TlsInput.optional(),
  auth: SecureAuth.optional(),
};

export type TlsInputValue = z.infer<typeof TlsInput>;
export type SecureAuthValue = z.infer<typeof SecureAuth>;

export interface ConnectionValue {
  source: string;
  caFile?: string | undefined;
  tls?: TlsInputValue | undefined;
  auth?: SecureAuthValue | undefined;
}

/** The HTTP connector's config for a connection written with the inputs above. */
export function httpConfigOf(input: ConnectionValue, extra: { minVersion?: "TLSv1.2" | "TLSv1.3"; pin?: string | string[] } = {}): HttpSourceConfig {
  const tls: HttpTls = { ...stripUndefined(input.tls ?? {}) };
  if (extra.minVersion !== undefined && (tls.minVersion === undefined || extra.minVersion > tls.minVersion)) tls.minVersion = extra.minVersion;
  if (extra.pin !== undefined && tls.pin === undefined) tls.pin = extra.pin;
  const config: HttpSourceConfig = { url: input.source };
  if (input.caFile !== undefined) config.caFile = input.caFile;
  if (Object.keys(tls).length > 0) config.tls = tls;
  const auth = httpAuthOf(input.auth);
  if (auth) config.auth = auth;
  return config;
}

export function httpAuthOf(auth: SecureAuthValue | undefined): HttpAuth | undefined {
  if (!auth) return undefined;
  const need = (field: string, v: string | undefined) => {
    if (!v) throw new SluiceError("BAD_CONFIG", `auth type ${auth.type} needs "${field}".`);
    return v;
  };
  const totp = auth.totp ? { totp: stripUndefined(auth.totp) as NonNullable<HttpAuth["totp"]> } : {};
  switch (auth.type) {
    case "bearer":
      return { type: "bearer", token: need("token", auth.token), ...totp };
    case "basic":
      return { type: "basic", username: need("username", auth.username), password: need("password", auth.password), ...totp };
    case "apiKey":
      return { type: "apiKey", header: need("header", auth.header), value: need("value", auth.value), ...totp };
    case "oauth2":
      return {
        type: "oauth2",
        tokenUrl: need("tokenUrl", auth.tokenUrl),
        clientId: need("clientId", auth.clientId),
        ...(auth.clientSecret !== undefined ? { clientSecret: auth.clientSecret } : {}),
        ...(auth.scope !== undefined ? { scope: auth.scope } : {}),
        ...(auth.audience !== undefined ? { audience: auth.audience } : {}),
        ...(auth.clientAuth !== undefined ? { clientAuth: auth.clientAuth } : {}),
        ...totp,
      };
  }
}

/** The knowledge-factor secret of an auth block: what a user knows rather than has. */
export function knowledgeSecretOf(auth: SecureAuthValue | undefined): { field: string; ref: string } | undefined {
  if (!auth) return undefined;
  if (auth.type === "oauth2" && auth.clientSecret) return { field: "auth.clientSecret", ref: auth.clientSecret };
  if (auth.type === "bearer" && auth.token) return { field: "auth.token", ref: auth.token };
  if (auth.type === "basic" && auth.password) return { field: "auth.password", ref: auth.password };
  if (auth.type === "apiKey" && auth.value) return { field: "auth.value", ref: auth.value };
  return undefined;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

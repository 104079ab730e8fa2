/**
 * data-security/validate_security_requirements: check the secure workflow's connection and
 * storage settings against a policy before anything is fetched, and fail closed.
 *
 * The policy comes from a policy file (`policy: PATH`, YAML or JSON), inline (`policy: { … }`),
 * and from fields written directly in `with:` (requireTls, minTlsVersion, allowedHosts, …); where
 * both say something the stricter wins (a requirement either sets, the higher version, the hosts
 * both allow), so a step can tighten a shared policy file but not loosen it. Every requirement is checked, even after one fails, and the step fails with
 * BAD_CONFIG (not retried) listing *every* unmet one: a user fixing them one run at a time would
 * meet them one at a time. A check that cannot be made (an unreadable key file) is unmet.
 *
 * The checks: TLS required (the source and the token endpoint are https) and its minimum
 * version; allowed hosts; a pin, when the policy asks for one, well formed and the one the
 * connection uses; every credential a secret reference (a literal is named by its field, never
 * shown) that resolves; an encryption key (keyring) present, of 32 bytes; the audit trail
 * writable (the folder of its signing key under the Sluice home).
 *
 * Credential fields are plain strings here, not SecretRef: a literal must reach this step to be
 * reported with the others, instead of stopping validation at the first one.
 */
import { constants } from "node:fs";
import { access, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve as resolvePath } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import { isSecretRef, resolveSecret, safeUrl } from "../../connectors/index.js";
import { KEY_BYTES, loadKeyring } from "../../crypto/keyring.js";
import type { ActionContext, Outputs } from "../types.js";
import { Source } from "../inputs.js";
import { TlsVersionInput } from "./connection.js";
import { PROTECTION_KEYS, withoutKeys } from "./policy.js";

const PolicyFields = {
  requireTls: z.boolean().optional().describe("The source and token endpoint must be https (default true)."),
  minTlsVersion: TlsVersionInput.optional().describe("Lowest TLS version allowed (default TLSv1.2)."),
  allowedHosts: z.array(z.string().min(1)).optional().describe("Hosts the workflow may connect to; `*.example.com` matches subdomains."),
  pin: z
    .union([z.string(), z.array(z.string()).min(1)])
    .optional()
    .describe("pin-sha256 the connection must use."),
  requirePin: z.boolean().optional().describe("The connection must be pinned (default false)."),
  requireClientCertificate: z.boolean().optional().describe("The connection must present a client certificate (default false)."),
  requireSecretRefs: z.boolean().optional().describe("Every credential must be env:/file: (default true)."),
  requireEncryptionKey: z.boolean().optional().describe("An encryption key or keyring must be given and valid (default true)."),
  requireAudit: z.boolean().optional().describe("The audit trail must be writable (default true)."),
};

export const SecurityPolicy = z.object(PolicyFields).strict();
export type SecurityPolicyValue = z.infer<typeof SecurityPolicy>;

const Loose = z.string();
export const RequirementsInput = z
  .object({
    source: Source,
    policy: z.union([SecurityPolicy, z.string().min(1).describe("The path of a policy file (YAML or JSON).")]).optional(),
    ...PolicyFields,
    tokenUrl: z.string().optional().describe("The OAuth2 token endpoint, when there is one."),
    tls: z
      .object({
        cert: Loose.optional(),
        key: Loose.optional(),
        passphrase: Loose.optional(),
        ca: Loose.optional(),
        minVersion: TlsVersionInput.optional(),
        pin: z.union([Loose, z.array(Loose)]).optional(),
      })
      .strict()
      .optional(),
    caFile: z.string().optional(),
    auth: z
      .object({
        type: z.string(),
        token: Loose.optional(),
        username: Loose.optional(),
        password: Loose.optional(),
        header: Loose.optional(),
        value: Loose.optional(),
        tokenUrl: Loose.optional(),
        clientId: Loose.optional(),
        clientSecret: Loose.optional(),
        scope: Loose.optional(),
        audience: Loose.optional(),
        clientAuth: Loose.optional(),
        totp: z
          .object({ secret: Loose, header: Loose.optional(), digits: z.number().optional(), period: z.number().optional(), algorithm: Loose.optional() })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    credentials: z.record(z.string(), Loose).optional().describe("Further credentials the workflow uses (name → reference), checked as well."),
    key: z.string().optional().describe("The encryption key or keyring: env:NAME, file:PATH or a keyring file."),
  })
  .strict();

export type RequirementsValue = z.infer<typeof RequirementsInput>;

export interface RequirementCheck {
  id: string;
  requirement: string;
  ok: boolean;
  /** What was found; for an unmet check, what to fix. Never a secret value. */
  detail: string;
}

export async function validateSecurityRequirements(input: RequirementsValue, ctx: ActionContext): Promise<Outputs> {
  const policy = await effectivePolicy(input);
  const checks: RequirementCheck[] = [];
  const warnings: string[] = [];
  const check = (id: string, requirement: string, ok: boolean, detail: string) => checks.push({ id, requirement, ok, detail });
  const urls = [{ field: "source", text: input.source }, ...(tokenUrlOf(input) ? [{ field: "tokenUrl", text: tokenUrlOf(input)! }] : [])];
  const parsed = urls.map((u) => ({ ...u, url: parseUrl(u.text) }));

  // TLS required
  if (policy.requireTls) {
    const plain = parsed.filter((u) => u.url?.protocol !== "https:");
    check(
      "tls.required",
      "TLS on every connection",
      plain.length === 0,
      plain.length === 0 ? `${parsed.map((u) => u.field).join(" and ")} use https` : plain.map((u) => `${u.field} ${safeUrl(u.text)} is not https`).join("; "),
    );
  } else check("tls.required", "TLS on every connection", true, "not required by the policy");

  // Minimum version
  const configured = input.tls?.minVersion;
  const low = configured !== undefined && configured < policy.minTlsVersion;
  check(
    "tls.min_version",
    `TLS ${policy.minTlsVersion} or later`,
    !low,
    low ? `tls.minVersion ${configured} is below the policy's ${policy.minTlsVersion}` : `connections negotiate ${policy.minTlsVersion} or later`,
  );

  // Allowed hosts
  if (policy.allowedHosts.length > 0) {
    const off = parsed.filter((u) => !u.url || !policy.allowedHosts.some((h) => hostMatches(u.url!.hostname, h)));
    check(
      "hosts.allowed",
      `connections only to ${policy.allowedHosts.join(", ")}`,
      off.length === 0,
      off.length === 0 ? "every host is allowed" : off.map((u) => `${u.field} host ${u.url?.hostname ?? safeUrl(u.text)} is not in allowedHosts`).join("; "),
    );
  } else check("hosts.allowed", "connections only to allowed hosts", true, "the policy names no host list");

  // Pin
  const pins = list(input.tls?.pin);
  const policyPins = list(policy.pin);
  const malformed = [...pins, ...policyPins].filter((p) => !/^[A-Za-z0-9+/]{43}=$/.test(p));
  const pinProblems: string[] = [];
  if (malformed.length) pinProblems.push(`${malformed.length} pin${malformed.length === 1 ? " is" : "s are"} not a pin-sha256 (base64 of 32 bytes)`);
  if (policy.requirePin && pins.length === 0 && policyPins.length === 0) pinProblems.push("the policy requires a certificate pin and tls.pin is not set");
  if (policyPins.length && pins.length && !pins.some((p) => policyPins.includes(p))) pinProblems.push("tls.pin is none of the pins the policy allows");
  check(
    "tls.pin",
    policy.requirePin || policyPins.length ? "the server certificate pinned" : "a well-formed pin, if any",
    pinProblems.length === 0,
    pinProblems.length ? pinProblems.join("; ") : pins.length || policyPins.length ? "pinned" : "no pin (not required)",
  );

  // Client certificate
  if (policy.requireClientCertificate) {
    const has = input.tls?.cert !== undefined && input.tls.key !== undefined;
    check(
      "tls.client_certificate",
      "a client certificate (mTLS)",
      has,
      has ? "tls.cert and tls.key are set" : "the policy requires a client certificate and tls.cert / tls.key are not set",
    );
  }

  // Credentials: references, and references that resolve
  const creds = credentialFields(input);
  if (policy.requireSecretRefs) {
    const literal = creds.filter((c) => !isReference(c));
    check(
      "credentials.secret_refs",
      "every credential a secret reference (env:NAME or file:PATH)",
      literal.length === 0,
      literal.length === 0
        ? `${creds.length} credential${creds.length === 1 ? "" : "s"}, all references`
        : `${literal.map((c) => c.field).join(", ")} ${literal.length === 1 ? "holds a literal value" : "hold literal values"}; use env:NAME or file:PATH`,
    );
  }
  const unresolved: string[] = [];
  for (const c of creds.filter(isReference)) {
    try {
      const where = await secretLocation(c);
      if (where) {
        const mode = (await stat(where)).mode & 0o077;
        if (mode !== 0)
          warnings.push(`${c.field} file ${where} can be read by other users (mode ${((await stat(where)).mode & 0o777).toString(8)}); chmod 600 it`);
      }
    } catch (err) {
      unresolved.push(err instanceof SluiceError ? err.message.replace(/\.$/, "") : `${c.field} cannot be read`);
    }
  }
  check(
    "credentials.resolvable",
    "every secret reference resolves",
    unresolved.length === 0,
    unresolved.length === 0 ? "every reference resolves" : unresolved.join("; "),
  );

  // Encryption key
  if (policy.requireEncryptionKey) {
    if (input.key === undefined) check("encryption.key", `an encryption key of ${KEY_BYTES} bytes`, false, "no encryption key (key:) is configured");
    else if (!isSecretRef(input.key) && !input.key.includes("/") && !/\.(json|ya?ml)$/.test(input.key))
      check("encryption.key", `an encryption key of ${KEY_BYTES} bytes`, false, "key holds a literal value; use env:NAME, file:PATH or a keyring file path");
    else {
      try {
        const ring = loadKeyring(input.key, { baseDir: process.cwd() });
        check(
          "encryption.key",
          `an encryption key of ${KEY_BYTES} bytes`,
          true,
          `keyring ${ring.source}: current key ${ring.current.id} version ${ring.current.version}, ${KEY_BYTES} bytes`,
        );
      } catch (err) {
        check("encryption.key", `an encryption key of ${KEY_BYTES} bytes`, false, err instanceof SluiceError ? err.message : "the key cannot be loaded");
      }
    }
  }

  // Audit trail
  if (policy.requireAudit) {
    // Where `sluice audit` keeps the signing key (cli/audit.ts auditKeyDir): $SLUICE_HOME/audit.
    const dir = join(ctx.home, "audit");
    const problem = await writableProblem(dir);
    check("audit.writable", "the audit trail writable", problem === undefined, problem ?? `${dir} is writable`);
  }

  const unmet = checks.filter((c) => !c.ok);
  for (const w of warnings) ctx.log.warn(w);
  if (unmet.length > 0) {
    throw new SluiceError(
      "BAD_CONFIG",
      `${unmet.length} of ${checks.length} security requirements ${unmet.length === 1 ? "is" : "are"} not met: ${unmet.map((c) => `${c.id}: ${c.detail}`).join("; ")}.`,
      { retryable: false, details: { unmet: unmet.map((c) => c.id), checks } },
    );
  }
  ctx.log.info("security requirements met", { checks: checks.length });
  return { passed: true, checks, policy, warnings };
}

interface Policy {
  requireTls: boolean;
  minTlsVersion: "TLSv1.2" | "TLSv1.3";
  allowedHosts: string[];
  pin: string | string[] | undefined;
  requirePin: boolean;
  requireClientCertificate: boolean;
  requireSecretRefs: boolean;
  requireEncryptionKey: boolean;
  requireAudit: boolean;
}

/** The policy file (or inline policy) with the fields of `with:` over it, and the defaults under both. */
async function effectivePolicy(input: RequirementsValue): Promise<Policy> {
  let base: SecurityPolicyValue = {};
  if (typeof input.policy === "string") {
    const path = resolvePath(input.policy);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      throw new SluiceError("BAD_CONFIG", `the security policy file ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"}).`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch {
      throw new SluiceError("BAD_CONFIG", `the security policy file ${path} is neither YAML nor JSON.`);
    }
    // The file may hold the data-protection policy too (classes, columns: policy.ts), for the classifier.
    const r = SecurityPolicy.safeParse(withoutKeys(doc ?? {}, PROTECTION_KEYS));
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw new SluiceError("BAD_CONFIG", `the security policy file ${path}: ${issue.path.join(".") || "(top)"} ${issue.message}.`);
    }
    base = r.data;
  } else if (input.policy) base = input.policy;
  // The stricter of the two wins, so a step's `with:` can tighten the policy file but never loosen it.
  const flag = (k: "requireTls" | "requirePin" | "requireClientCertificate" | "requireSecretRefs" | "requireEncryptionKey" | "requireAudit", dflt: boolean) => {
    const given = [input[k], base[k]].filter((v): v is boolean => v !== undefined);
    return given.length === 0 ? dflt : given.some((v) => v);
  };
  const versions = [input.minTlsVersion, base.minTlsVersion].filter((v) => v !== undefined).sort();
  const hosts =
    input.allowedHosts && base.allowedHosts ? input.allowedHosts.filter((h) => base.allowedHosts!.includes(h)) : (input.allowedHosts ?? base.allowedHosts);
  if (hosts !== undefined && hosts.length === 0 && input.allowedHosts && base.allowedHosts)
    throw new SluiceError("BAD_CONFIG", "allowedHosts of the step and of the policy file have no host in common: no connection would be allowed.");
  return {
    requireTls: flag("requireTls", true),
    minTlsVersion: versions.at(-1) ?? "TLSv1.2",
    allowedHosts: hosts ?? [],
    pin: base.pin ?? input.pin,
    requirePin: flag("requirePin", false),
    requireClientCertificate: flag("requireClientCertificate", false),
    requireSecretRefs: flag("requireSecretRefs", true),
    requireEncryptionKey: flag("requireEncryptionKey", true),
    requireAudit: flag("requireAudit", true),
  };
}

function tokenUrlOf(input: RequirementsValue): string | undefined {
  return input.tokenUrl ?? input.auth?.tokenUrl;
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

/** Exact host, or `*.example.com` for any subdomain of example.com. */
export function hostMatches(host: string, pattern: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  const p = pattern.toLowerCase().replace(/^\[|\]$/g, "");
  if (p.startsWith("*.")) return h.endsWith(p.slice(1)) && h.length > p.length - 1;
  return h === p;
}

function list(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

interface Credential {
  field: string;
  value: string;
  /** Certificates and keys may also be given as a path (a path is not the secret). */
  pathAllowed: boolean;
}

/** Every field of the inputs that holds (a reference to) a secret. */
function credentialFields(input: RequirementsValue): Credential[] {
  const out: Credential[] = [];
  const add = (field: string, value: string | undefined, pathAllowed = false) => {
    if (value !== undefined) out.push({ field, value, pathAllowed });
  };
  add("tls.key", input.tls?.key, true);
  add("tls.passphrase", input.tls?.passphrase);
  const a = input.auth;
  add("auth.token", a?.token);
  add("auth.password", a?.password);
  add("auth.value", a?.value);
  add("auth.clientSecret", a?.clientSecret);
  add("auth.totp.secret", a?.totp?.secret);
  for (const [name, value] of Object.entries(input.credentials ?? {})) add(`credentials.${name}`, value);
  return out;
}

function isReference(c: Credential): boolean {
  if (isSecretRef(c.value)) return true;
  // A path to a PEM file: no PEM text, no line breaks, and it looks like a path.
  return c.pathAllowed && !c.value.includes("-----BEGIN") && !/\s/.test(c.value) && /[/\\]|\.(pem|key|crt)$/i.test(c.value);
}

/** Resolve a reference (throws a SluiceError naming it when it does not resolve); its file, if it is one. */
async function secretLocation(c: Credential): Promise<string | undefined> {
  if (isSecretRef(c.value)) {
    await resolveSecret(c.value, c.field);
    return c.value.startsWith("file:") ? resolvePath(c.value.slice(5)) : undefined;
  }
  const path = resolvePath(c.value);
  try {
    await access(path, constants.R_OK);
  } catch {
    throw new SluiceError("BAD_CONFIG", `${c.field} refers to file ${path}, which cannot be read`);
  }
  return path;
}

/** Why `dir` is not writable (created when missing), or undefined when a file can be written there. */
async function writableProblem(dir: string): Promise<string | undefined> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const probe = join(dir, `.write-check-${process.pid}-${Date.now()}`);
    await writeFile(probe, "");
    await rm(probe, { force: true });
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    return `the audit folder ${dir} is not writable (${code})`;
  }
}

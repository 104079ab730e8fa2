/**
 * data-connector/verify_mfa_authentication: which independent authentication factors this machine
 * client really has against the API, proven by calling it.
 *
 * A factor counts only when the API *accepts* it and *requires* it: the step makes one request
 * with every credential (it must succeed), then one request without each credential in turn
 * (each must be refused). A credential the API accepts but does not need proves nothing, and is
 * reported as such. The refusals are harmless: nothing wrong is sent, only something left out, so
 * no lockout counter moves.
 * - possession: the client certificate (mTLS). Without it the handshake is refused, or a token
 *   bound to it (RFC 8705) is. When the OAuth2 token is a JWT, its `cnf.x5t#S256` is compared with
 *   the SHA-256 of our certificate: a bound token is useless to whoever steals it without the key.
 *   (The JWT's signature is the API's to check; its acceptance is the proof that it is valid.)
 * - knowledge: the OAuth2 client secret (accepted by the token endpoint, and the API refusing a
 *   call without the token it bought), or an API token, API key or password.
 * - totp: a one-time code (RFC 6238) in the configured header, where the API asks for one.
 *
 * Independence: two factors whose secrets live in the same place (the same environment variable
 * or file, or one value containing the other) fall to the same theft, so they count once, with a
 * warning — the TOTP seed kept in the password's secret is the usual case.
 *
 * Fewer than `minFactors` (default 2) independent factors fails with MFA_FAILED (not retried).
 */
import { realpath, stat } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import {
  certificateThumbprint,
  isSecretRef,
  probeHttp,
  requestToken,
  resolveSecret,
  safeUrl,
  type HttpProbeResult,
  type OmittedCredential,
} from "../../connectors/index.js";
import type { ActionContext, Outputs } from "../types.js";
import { ConnectionInput, httpConfigOf, knowledgeSecretOf, TlsVersionInput } from "./connection.js";
import { readFile } from "node:fs/promises";

export const MfaInput = z
  .object({
    ...ConnectionInput,
    minTlsVersion: TlsVersionInput.optional(),
    minFactors: z.number().int().min(1).max(3).default(2).describe("Independent factors required (default 2)."),
  })
  .strict();

export type MfaValue = z.infer<typeof MfaInput>;

export type FactorName = "possession" | "knowledge" | "totp";

export interface FactorResult {
  factor: FactorName;
  /** What carries it (field names, never values). */
  credential: string;
  configured: boolean;
  /** Accepted with everything, refused without it. */
  passed: boolean;
  /** False when it shares its secret with another factor (then it is not counted again). */
  independent: boolean;
  accepted: boolean;
  /** How the API answered the request without it. */
  withoutIt?: string;
  evidence: Record<string, unknown>;
}

export async function verifyMfaAuthentication(input: MfaValue, ctx: ActionContext): Promise<Outputs> {
  const shown = safeUrl(input.source);
  const config = httpConfigOf(input, input.minTlsVersion ? { minVersion: input.minTlsVersion } : {});
  if (!config.url.startsWith("https:")) throw new SluiceError("BAD_CONFIG", `source ${shown} is plain http; multi-factor authentication needs TLS.`);
  const opts = { signal: ctx.signal };
  const warnings: string[] = [];

  // 1. Everything: must be accepted, or nothing is proven.
  const full = await probeHttp({ ...config, maxRetries: 0 }, opts);
  if (!full.ok) {
    const code = full.errorCode ?? "NETWORK_ERROR";
    if (code === "NETWORK_ERROR") throw new SluiceError(code, `MFA check of ${shown}: ${full.error ?? "no answer"}`, { retryable: true, ...detailsOf(full) });
    throw new SluiceError("MFA_FAILED", `The API ${shown} refused the client with every credential presented: ${full.error ?? `HTTP ${full.status}`}`, {
      retryable: false,
      ...detailsOf(full),
    });
  }

  // 2. Each credential left out in turn: must be refused.
  const refusedWithout = async (what: OmittedCredential): Promise<{ refused: boolean; how: string }> => {
    const r = await probeHttp({ ...config, maxRetries: 0 }, { ...opts, omit: [what] });
    if (r.ok) return { refused: false, how: `answered HTTP ${r.status}` };
    if (r.status === 401 || r.status === 403) return { refused: true, how: `HTTP ${r.status}${bodyError(r)}` };
    const tlsRefusal = r.errorDetails?.["tlsRefusal"];
    if (typeof tlsRefusal === "string") return { refused: true, how: `TLS handshake refused (${String(r.errorDetails?.["code"] ?? tlsRefusal)})` };
    return { refused: false, how: `inconclusive: ${r.error ?? `HTTP ${r.status}`}` };
  };

  const factors: FactorResult[] = [];
  const tls = input.tls;
  const auth = input.auth;
  const clientCert = tls?.cert !== undefined && tls.key !== undefined;

  // possession
  {
    const f: FactorResult = {
      factor: "possession",
      credential: "tls.cert + tls.key",
      configured: clientCert,
      passed: false,
      independent: true,
      accepted: false,
      evidence: {},
    };
    if (clientCert) {
      f.accepted = full.tlsFacts?.clientCertificate === true;
      const w = await refusedWithout("clientCertificate");
      f.withoutIt = w.how;
      f.passed = f.accepted && w.refused;
      const certPem = await readPem(tls.cert!);
      const thumb = certificateThumbprint(certPem);
      f.evidence = { clientCertificateThumbprint: thumb, acceptedByApi: f.accepted, refusedWithoutIt: w.refused };
      if (auth?.type === "oauth2") {
        const token = await requestToken(config, opts);
        const binding = tokenBinding(token.accessToken, thumb);
        f.evidence["tokenBinding"] = binding;
        if (binding === "bound_to_another_certificate") {
          f.passed = false;
          warnings.push("the OAuth2 token is bound to another client certificate than the one configured");
        }
      }
    }
    factors.push(f);
  }

  // knowledge
  {
    const k = knowledgeSecretOf(auth);
    const f: FactorResult = {
      factor: "knowledge",
      credential: k?.field ?? "(none)",
      configured: k !== undefined,
      passed: false,
      independent: true,
      accepted: false,
      evidence: {},
    };
    if (k) {
      f.accepted = true; // the full request carried it and was answered
      const w = await refusedWithout("authorization");
      f.withoutIt = w.how;
      f.passed = w.refused;
      f.evidence = {
        ...(auth?.type === "oauth2" ? { tokenEndpoint: safeUrl(auth.tokenUrl ?? ""), tokenIssued: true } : {}),
        acceptedByApi: true,
        refusedWithoutIt: w.refused,
      };
    }
    factors.push(f);
  }

  // totp
  {
    const t = auth?.totp;
    const f: FactorResult = {
      factor: "totp",
      credential: t ? `auth.totp (header ${t.header ?? "X-TOTP"})` : "(none)",
      configured: t !== undefined,
      passed: false,
      independent: true,
      accepted: false,
      evidence: {},
    };
    if (t) {
      f.accepted = true;
      const w = await refusedWithout("totp");
      f.withoutIt = w.how;
      f.passed = w.refused;
      f.evidence = { header: t.header ?? "X-TOTP", acceptedByApi: true, refusedWithoutIt: w.refused };
      if (!w.refused)
        warnings.push(`the API answers without a one-time code in ${t.header ?? "X-TOTP"} (${w.how}): it does not ask for one, so TOTP is no factor here`);
    }
    factors.push(f);
  }

  // 3. Independence: factors whose secrets share a home count once.
  const homes: { factor: FactorName; field: string; ref: string }[] = [];
  if (clientCert) homes.push({ factor: "possession", field: "tls.key", ref: tls.key! });
  const k = knowledgeSecretOf(auth);
  if (k) homes.push({ factor: "knowledge", field: k.field, ref: k.ref });
  if (auth?.totp) homes.push({ factor: "totp", field: "auth.totp.secret", ref: auth.totp.secret });
  for (let i = 0; i < homes.length; i++) {
    for (let j = i + 1; j < homes.length; j++) {
      const a = homes[i]!;
      const b = homes[j]!;
      const why = await sameSecret(a.ref, b.ref);
      if (!why) continue;
      const later = factors.find((f) => f.factor === b.factor)!;
      later.independent = false;
      later.evidence["sharesSecretWith"] = a.factor;
      const what = b.factor === "totp" ? "the TOTP seed" : b.field;
      warnings.push(`${what} is kept in the same secret as ${a.field} (${why}): whoever reads one has both, so they count as one factor, not two`);
    }
  }

  const counted = factors.filter((f) => f.passed && f.independent);
  const summary = factors.map(
    (f) =>
      `${f.factor}: ${!f.configured ? "not configured" : f.passed ? (f.independent ? "passed" : "passed, not independent") : `not proven (${f.withoutIt ?? "refused"})`}`,
  );
  for (const w of warnings) ctx.log.warn(w);
  if (counted.length < input.minFactors) {
    throw new SluiceError(
      "MFA_FAILED",
      `Only ${counted.length} independent authentication factor${counted.length === 1 ? "" : "s"} proven against ${shown}, ${input.minFactors} required (${summary.join("; ")}).`,
      { retryable: false, details: { factors, warnings, independentFactors: counted.length, required: input.minFactors } },
    );
  }
  ctx.log.info("multi-factor authentication verified", { factors: counted.map((f) => f.factor), source: shown });
  return {
    verified: true,
    source: shown,
    independentFactors: counted.length,
    required: input.minFactors,
    passed: counted.map((f) => f.factor),
    factors,
    warnings,
    ...(full.tlsFacts ? { tls: { protocol: full.tlsFacts.protocol, cipher: full.tlsFacts.cipher, fingerprint256: full.tlsFacts.fingerprint256 } } : {}),
  };
}

function detailsOf(r: HttpProbeResult): { details?: Record<string, unknown> } {
  return r.errorDetails ? { details: r.errorDetails } : {};
}

/** The API's own word for a refusal (`{ error: "totp_required" }`), when its body says one. */
function bodyError(r: HttpProbeResult): string {
  const body = r.errorDetails?.["body"];
  if (typeof body !== "string") return "";
  try {
    const e = (JSON.parse(body) as { error?: unknown }).error;
    return typeof e === "string" ? ` ${e}` : "";
  } catch {
    return "";
  }
}

/** RFC 8705 binding of a JWT access token to our certificate; "opaque" when it is no JWT. */
export function tokenBinding(token: string, thumbprint: string): "bound" | "bound_to_another_certificate" | "unbound" | "opaque" {
  const parts = token.split(".");
  if (parts.length !== 3) return "opaque";
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
  } catch {
    return "opaque";
  }
  const cnf = (claims as { cnf?: Record<string, unknown> } | null)?.cnf?.["x5t#S256"];
  if (typeof cnf !== "string") return "unbound";
  return cnf === thumbprint ? "bound" : "bound_to_another_certificate";
}

async function readPem(spec: string): Promise<string> {
  return isSecretRef(spec) ? resolveSecret(spec, "tls.cert") : readFile(spec, "utf8");
}

/**
 * Why two secret references hold the same secret (the same variable, the same file however it is
 * spelled, or values one of which contains the other), or undefined when they do not.
 */
export async function sameSecret(a: string, b: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const where = (ref: string) => (ref.startsWith("env:") ? { env: ref.slice(4) } : { path: resolvePath(ref.startsWith("file:") ? ref.slice(5) : ref) });
  const x = where(a);
  const y = where(b);
  if (x.env !== undefined && x.env === y.env) return `both are environment variable ${x.env}`;
  if (x.path !== undefined && y.path !== undefined) {
    const [px, py] = await Promise.all([realpath(x.path).catch(() => x.path), realpath(y.path).catch(() => y.path)]);
    if (px === py) return `both are file ${px}`;
    const [sx, sy] = await Promise.all([stat(px).catch(() => undefined), stat(py).catch(() => undefined)]);
    if (sx && sy && sx.dev === sy.dev && sx.ino === sy.ino) return `${px} and ${py} are one file`;
  }
  const value = async (ref: string) => {
    try {
      return isSecretRef(ref) ? await resolveSecret(ref, "secret", { env }) : (await readFile(ref, "utf8")).trim();
    } catch {
      return undefined;
    }
  };
  const [vx, vy] = await Promise.all([value(a), value(b)]);
  if (vx && vy && Math.min(vx.length, vy.length) >= 8 && (vx.includes(vy) || vy.includes(vx))) return `${a} and ${b} hold the same value`;
  return undefined;
}

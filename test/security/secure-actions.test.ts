/**
 * The secure workflow's first three actions against the demo secure API (real HTTPS, openssl
 * certificates): validate_security_requirements listing every unmet requirement,
 * verify_mfa_authentication proving factors by calling the API (two pass, one fails, a TOTP seed
 * in the client secret's file counted once), establish_encrypted_connection recording the TLS
 * facts, raising a security incident for a certificate that ends in 3 days and failing on an
 * expired one — and the three steps of the real workflow file run by the engine.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { validateSecurityRequirements, RequirementsInput, type RequirementCheck } from "../../src/actions/security/requirements.js";
import { verifyMfaAuthentication, MfaInput, type FactorResult } from "../../src/actions/security/mfa.js";
import { establishEncryptedConnection, EncryptedConnectionInput } from "../../src/actions/security/tls-check.js";
import { clearTokenCache } from "../../src/connectors/http-oauth.js";
import { base32Encode } from "../../src/crypto/totp.js";
import { startSecureApi, type SecureApi } from "../../src/samples/secure-api.js";
import { loadWorkflowText } from "../../src/spec/load.js";
import { runDetail } from "../../src/engine/index.js";
import type { ActionContext } from "../../src/actions/types.js";
import { actionContext, failure, runWorkflow, scratch, testEnv } from "../helpers.js";

const tmp = scratch();
let api: SecureApi;
const KEY = randomBytes(32).toString("base64");

function ctx(over: Partial<ActionContext> = {}): ActionContext & { published: { name: string; data: Record<string, unknown> }[] } {
  const home = tmp("secure-home-");
  const published: { name: string; data: Record<string, unknown> }[] = [];
  const c = actionContext({
    artifactsDir: join(home, "artifacts"),
    home,
    publish: async (name, data) => {
      published.push({ name, data });
      return { eventId: `ev-${published.length}`, runIds: [] };
    },
    ...over,
  });
  return Object.assign(c, { published });
}

/** The connection of the demo API, written as a workflow writes it. */
function connection(a: SecureApi = api) {
  return {
    source: a.url,
    tls: { ca: a.certs.ca, cert: a.certs.clientCert, key: `file:${a.certs.clientKey}` },
    auth: {
      type: "oauth2" as const,
      tokenUrl: a.tokenUrl,
      clientId: a.clientId,
      clientSecret: `file:${a.secretFiles.clientSecret}`,
      totp: { secret: `file:${a.secretFiles.totpSecret}`, header: "X-TOTP" },
    },
  };
}

beforeAll(async () => {
  api = await startSecureApi({ dir: tmp("secure-api-"), records: 30 });
  process.env["SECURE_TEST_KEY"] = KEY;
});
afterAll(async () => {
  await api?.close();
  delete process.env["SECURE_TEST_KEY"];
});

describe("validate_security_requirements", () => {
  it("passes a compliant configuration and outputs every check", async () => {
    const input = RequirementsInput.parse({ ...connection(), requireClientCertificate: true, allowedHosts: ["127.0.0.1"], key: "env:SECURE_TEST_KEY" });
    const c = ctx();
    const out = await validateSecurityRequirements(input, c);
    const checks = out["checks"] as RequirementCheck[];
    expect(checks.every((x) => x.ok)).toBe(true);
    expect(checks.map((x) => x.id)).toEqual([
      "tls.required",
      "tls.min_version",
      "hosts.allowed",
      "tls.pin",
      "tls.client_certificate",
      "credentials.secret_refs",
      "credentials.resolvable",
      "encryption.key",
      "audit.writable",
    ]);
    expect(JSON.stringify(out)).not.toContain(api.clientSecret);
  });

  it("fails closed, listing every unmet requirement, without showing a literal secret", async () => {
    const dir = tmp("policy-");
    const policyFile = join(dir, "policy.yaml");
    writeFileSync(policyFile, stringify({ minTlsVersion: "TLSv1.3", allowedHosts: ["api.bank.example"], requirePin: true }));
    const readOnly = join(dir, "home-ro");
    mkdirSync(join(readOnly, "audit"), { recursive: true });
    chmodSync(join(readOnly, "audit"), 0o500);
    const literal = "s3cr3t-literal-value";
    const input = RequirementsInput.parse({
      source: "http://127.0.0.1:8080/api",
      policy: policyFile,
      minTlsVersion: "TLSv1.2", // cannot loosen the file's TLSv1.3
      tokenUrl: api.tokenUrl,
      tls: { minVersion: "TLSv1.2", pin: "not-a-pin" },
      auth: { type: "oauth2", clientId: "x", clientSecret: literal, totp: { secret: "env:SECURE_TEST_UNSET_VARIABLE" } },
      key: "env:SECURE_TEST_SHORT_KEY",
    });
    process.env["SECURE_TEST_SHORT_KEY"] = randomBytes(16).toString("base64");
    const asRoot = process.getuid?.() === 0; // root writes anywhere: the audit check cannot fail then
    try {
      const err = await failure(validateSecurityRequirements(input, ctx({ home: readOnly })));
      expect(err.code).toBe("BAD_CONFIG");
      expect(err.retryable).toBe(false);
      const unmet = err.details?.["unmet"] as string[];
      expect(unmet).toEqual([
        "tls.required",
        "tls.min_version",
        "hosts.allowed",
        "tls.pin",
        "credentials.secret_refs",
        "credentials.resolvable",
        "encryption.key",
        ...(asRoot ? [] : ["audit.writable"]),
      ]);
      expect(err.message).toMatch(new RegExp(`^${unmet.length} of 8 security requirements are not met`));
      expect(err.message).toContain("source http://127.0.0.1:8080/api is not https");
      expect(err.message).toContain("tls.minVersion TLSv1.2 is below the policy's TLSv1.3");
      expect(err.message).toContain("source host 127.0.0.1 is not in allowedHosts");
      expect(err.message).toContain("tls.pin: 1 pin is not a pin-sha256");
      expect(err.message).toContain("auth.clientSecret holds a literal value");
      expect(err.message).toContain("SECURE_TEST_UNSET_VARIABLE");
      expect(err.message).toMatch(/does not hold a 32-byte key/);
      expect(err.message).not.toContain(literal);
      expect(JSON.stringify(err.details)).not.toContain(literal);
    } finally {
      chmodSync(join(readOnly, "audit"), 0o700);
      delete process.env["SECURE_TEST_SHORT_KEY"];
    }
  });

  it("requires an encryption key unless the policy waives it", async () => {
    const err = await failure(validateSecurityRequirements(RequirementsInput.parse({ ...connection() }), ctx()));
    expect(err.details?.["unmet"]).toEqual(["encryption.key"]);
    expect(err.message).toContain("no encryption key (key:) is configured");
    const out = await validateSecurityRequirements(RequirementsInput.parse({ ...connection(), requireEncryptionKey: false }), ctx());
    expect(out["passed"]).toBe(true);
  });
});

describe("verify_mfa_authentication", () => {
  it("proves possession, knowledge and TOTP by calling the API", async () => {
    clearTokenCache();
    const out = await verifyMfaAuthentication(MfaInput.parse(connection()), ctx());
    expect(out["independentFactors"]).toBe(3);
    expect(out["passed"]).toEqual(["possession", "knowledge", "totp"]);
    const factors = out["factors"] as FactorResult[];
    const possession = factors.find((f) => f.factor === "possession")!;
    expect(possession.evidence["tokenBinding"]).toBe("bound");
    expect(possession.withoutIt).toMatch(/TLS handshake refused/);
    expect(factors.find((f) => f.factor === "knowledge")!.withoutIt).toBe("HTTP 401 no_token");
    expect(factors.find((f) => f.factor === "totp")!.withoutIt).toBe("HTTP 401 totp_required");
    expect(out["warnings"]).toEqual([]);
    const text = JSON.stringify(out);
    for (const secret of [api.clientSecret, api.totpSecret]) expect(text).not.toContain(secret);
    // The API really saw the refusals it was asked to make.
    expect(api.stats().refused["no_token"]).toBeGreaterThanOrEqual(1);
    expect(api.stats().refused["totp_required"]).toBeGreaterThanOrEqual(1);
  });

  it("passes with two factors when the API does not ask for a code, and says so", async () => {
    const noTotp = await startSecureApi({ dir: tmp("secure-api-nototp-"), requireTotp: false, records: 5 });
    try {
      const out = await verifyMfaAuthentication(MfaInput.parse(connection(noTotp)), ctx());
      expect(out["passed"]).toEqual(["possession", "knowledge"]);
      expect((out["warnings"] as string[]).join()).toMatch(/answers without a one-time code/);
    } finally {
      await noTotp.close();
    }
  });

  it("fails with one factor: no client certificate asked for, and no code", async () => {
    const weak = await startSecureApi({ dir: tmp("secure-api-weak-"), requireClientCertificate: false, requireTotp: false, records: 5 });
    try {
      const c = connection(weak);
      const input = MfaInput.parse({ ...c, tls: { ca: weak.certs.ca } });
      const err = await failure(verifyMfaAuthentication(input, ctx()));
      expect(err.code).toBe("MFA_FAILED");
      expect(err.retryable).toBe(false);
      expect(err.message).toMatch(/^Only 1 independent authentication factor proven/);
      expect(err.message).toContain("possession: not configured");
      expect(err.message).toContain("knowledge: passed");
      expect(err.message).toMatch(/totp: not proven \(answered HTTP 200\)/);
    } finally {
      await weak.close();
    }
  });

  it("counts a TOTP seed kept in the client secret's own secret once, and warns", async () => {
    // An API whose client secret is the TOTP seed, and a workflow that reads both from one file.
    const seed = base32Encode(randomBytes(20));
    const shared = await startSecureApi({ dir: tmp("secure-api-shared-"), clientSecret: seed, totpSecret: seed, records: 5 });
    try {
      const c = connection(shared);
      c.auth.totp.secret = `file:${shared.secretFiles.clientSecret}`;
      const out = await verifyMfaAuthentication(MfaInput.parse(c), ctx());
      expect(out["independentFactors"]).toBe(2);
      expect(out["passed"]).toEqual(["possession", "knowledge"]);
      const warnings = out["warnings"] as string[];
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/^the TOTP seed is kept in the same secret as auth\.clientSecret \(both are file .*client-secret\): .* one factor, not two$/);
      const totp = (out["factors"] as FactorResult[]).find((f) => f.factor === "totp")!;
      expect(totp.passed).toBe(true);
      expect(totp.independent).toBe(false);

      // Asked for three factors, the pair still counts once: the step fails.
      const input = MfaInput.parse({ ...c, minFactors: 3 });
      const err = await failure(verifyMfaAuthentication(input, ctx()));
      expect(err.code).toBe("MFA_FAILED");
      expect(err.message).toContain("totp: passed, not independent");
    } finally {
      await shared.close();
    }
  });
});

describe("establish_encrypted_connection", () => {
  it("records protocol, cipher, fingerprint, pin and expiry, and raises nothing for a fresh certificate", async () => {
    const c = ctx();
    const out = await establishEncryptedConnection(EncryptedConnectionInput.parse({ source: api.url, tls: connection().tls, minTlsVersion: "TLSv1.2" }), c);
    expect(out).toMatchObject({ secure: true, protocol: "TLSv1.3", hostnameVerified: true, clientCertificate: true, status: 401, warnings: [] });
    expect(out["fingerprint256"]).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(out["spkiPin"]).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(out["daysLeft"]).toBeGreaterThan(29);
    expect(c.published).toEqual([]);
    // Pinned to what it just saw, it connects again; pinned elsewhere, it fails.
    const again = await establishEncryptedConnection(EncryptedConnectionInput.parse({ source: api.url, tls: connection().tls, pin: out["spkiPin"] }), c);
    expect(again["pinned"]).toBe(true);
    const err = await failure(
      establishEncryptedConnection(EncryptedConnectionInput.parse({ source: api.url, tls: connection().tls, pin: Buffer.alloc(32).toString("base64") }), c),
    );
    expect(err.code).toBe("TLS_POLICY");
  });

  it("publishes a security incident for a server certificate that ends in 3 days", async () => {
    const soon = await startSecureApi({ dir: tmp("secure-api-soon-"), serverDays: 3, records: 5 });
    try {
      const c = ctx();
      const out = await establishEncryptedConnection(EncryptedConnectionInput.parse({ source: soon.url, tls: connection(soon).tls }), c);
      expect(out["daysLeft"]).toBe(2.9); // 3 days less the moments since the certificate was made, to a tenth
      expect((out["warnings"] as string[])[0]).toMatch(/expires on \S+, in 2\.9 days/);
      expect(c.published).toHaveLength(1);
      expect(c.published[0]!.name).toBe("security_incident");
      expect(c.published[0]!.data).toMatchObject({ type: "certificate_expiring", severity: "high", host: new URL(soon.url).host, warnDays: 14 });
      expect(out["securityIncident"]).toBe("ev-1");
      // With a shorter warning window, nothing is raised.
      const quiet = ctx();
      await establishEncryptedConnection(EncryptedConnectionInput.parse({ source: soon.url, tls: connection(soon).tls, warnDays: 2 }), quiet);
      expect(quiet.published).toEqual([]);
    } finally {
      await soon.close();
    }
  });

  it("fails on an expired server certificate and on plain http", async () => {
    const old = await startSecureApi({ dir: tmp("secure-api-expired-"), serverDays: -1, records: 5 });
    try {
      const err = await failure(establishEncryptedConnection(EncryptedConnectionInput.parse({ source: old.url, tls: connection(old).tls }), ctx()));
      expect(err.code).toBe("BAD_CONFIG");
      expect(err.retryable).toBe(false);
      expect(err.message).toMatch(/CERT_HAS_EXPIRED.*the server certificate has expired/);
    } finally {
      await old.close();
    }
    const plain = await failure(establishEncryptedConnection(EncryptedConnectionInput.parse({ source: "http://127.0.0.1:9/x" }), ctx()));
    expect(plain.code).toBe("TLS_POLICY");
  });
});

describe("the workflow file's first three steps", () => {
  it("run through the engine on the demo API's params", async () => {
    const path = new URL("../../workflows/base-data-ingestion-workflow-secure-api.yaml", import.meta.url);
    const doc = parse(readFileSync(path, "utf8")) as { spec: { steps: { name: string }[] } };
    doc.spec.steps = doc.spec.steps.slice(0, 3); // collection and storage are another helper's
    const env = testEnv();
    try {
      const { workflows, problems } = loadWorkflowText(stringify(doc), "secure.yaml", { actions: env.actions });
      expect(problems).toEqual([]);
      process.env["SLUICE_ENCRYPTION_KEY"] = KEY;
      const c = connection();
      const run = await runWorkflow(env, workflows[0]!.workflow, {
        params: {
          source: api.url,
          tokenUrl: api.tokenUrl,
          clientId: api.clientId,
          clientSecret: c.auth.clientSecret,
          clientCert: api.certs.clientCert,
          clientKey: c.tls.key,
          totpSecret: c.auth.totp.secret,
          caFile: api.certs.ca,
        },
      });
      const detail = await runDetail(env.store, run.id);
      expect(detail?.steps.map((s) => [s.name, s.status, s.error?.message ?? null])).toEqual([
        ["security-validation", "succeeded", null],
        ["authentication-verification", "succeeded", null],
        ["encrypted-connection", "succeeded", null],
      ]);
      expect(run.status).toBe("succeeded");
      const mfa = detail!.steps.find((s) => s.name === "authentication-verification")!.outputs!;
      expect(mfa["independentFactors"]).toBe(3);
      const tls = detail!.steps.find((s) => s.name === "encrypted-connection")!.outputs!;
      expect(tls["protocol"]).toBe("TLSv1.3");
      expect(JSON.stringify(detail)).not.toContain(api.clientSecret);
    } finally {
      delete process.env["SLUICE_ENCRYPTION_KEY"];
      await env.cleanup();
    }
  });
});

/**
 * The HTTP source's TLS block, OAuth2 client credentials and TOTP header, against the demo secure
 * API (real HTTPS on 127.0.0.1, certificates made by openssl at the start of the file): the TLS
 * facts and the pin (checked against openssl's own computation), a pin mismatch and a protocol
 * below the minimum refused before any request, mTLS refused without a certificate, with an
 * expired one and with one of another CA, a token bound to another certificate refused, the live
 * TOTP header check, and a whole paginated walk on one cached token.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fetchPages, probeHttp, requestToken, type HttpSourceConfig, type TlsFacts } from "../../src/connectors/http.js";
import { certificatePin, certificateThumbprint } from "../../src/connectors/http-tls.js";
import { clearTokenCache } from "../../src/connectors/http-oauth.js";
import { startSecureApi, type SecureApi } from "../../src/samples/secure-api.js";
import { isCardNumber, isIban } from "../../src/actions/security/detectors.js";
import { failure, scratch } from "../helpers.js";
import { sluiceAsync } from "../cli/cli-helpers.js";

const tmp = scratch();
let api: SecureApi;
let env: NodeJS.ProcessEnv;

/** Everything the API asks for: client certificate, OAuth2 token, TOTP code. */
function full(over: Partial<HttpSourceConfig> = {}): HttpSourceConfig {
  return {
    url: api.url,
    tls: { ca: api.certs.ca, cert: api.certs.clientCert, key: `file:${api.certs.clientKey}` },
    auth: { type: "oauth2", tokenUrl: api.tokenUrl, clientId: api.clientId, clientSecret: "env:CLIENT_SECRET", totp: { secret: "env:TOTP_SEED" } },
    ...over,
  };
}

async function walk(config: HttpSourceConfig, onTls?: (f: TlsFacts) => void, withEnv: NodeJS.ProcessEnv = env) {
  const pages = [];
  for await (const p of fetchPages(config, { env: withEnv, ...(onTls ? { onTls } : {}) })) pages.push(p);
  return pages;
}

/** pin-sha256 as RFC 7469 and every pinning guide compute it, with the openssl CLI. */
function opensslPin(certFile: string): string {
  const spki = execFileSync("openssl", ["x509", "-in", certFile, "-pubkey", "-noout"]);
  const der = execFileSync("openssl", ["pkey", "-pubin", "-outform", "der"], { input: spki });
  return execFileSync("openssl", ["dgst", "-sha256", "-binary"], { input: der }).toString("base64");
}

beforeAll(async () => {
  api = await startSecureApi({ dir: tmp("secure-api-"), records: 60, pageSize: 25 });
  env = { CLIENT_SECRET: api.clientSecret, TOTP_SEED: api.totpSecret };
});
afterAll(async () => {
  await api?.close();
});

describe("TLS facts and the pin", () => {
  it("walks every page over mTLS with one token, and reports the connection's TLS facts", async () => {
    clearTokenCache();
    const seen: TlsFacts[] = [];
    const pages = await walk(full(), (f) => seen.push(f));
    expect(pages.map((p) => p.records!.length)).toEqual([25, 25, 10]);
    const records = pages.flatMap((p) => p.records!);
    expect(new Set(records.map((r) => r["customer_id"])).size).toBe(60);
    // The accounts carry what the classifier is meant to find: valid cards and IBANs.
    expect(records.every((r) => isCardNumber(String(r["card_number"])) && isIban(String(r["iban"])))).toBe(true);
    expect(records.filter((r) => /card \d{15,19}/.test(String(r["notes"]))).length).toBeGreaterThan(0);

    const facts = pages[0]!.tls!;
    expect(facts.protocol).toBe("TLSv1.3");
    expect(facts.cipher).toMatch(/^TLS_/);
    expect(facts.clientCertificate).toBe(true);
    expect(facts.subject).toContain("CN=127.0.0.1");
    expect(facts.issuer).toContain("CN=Sluice Demo CA");
    expect(facts.spkiPin).toBe(opensslPin(api.certs.serverCert));
    expect(facts.spkiPin).toBe(certificatePin(readFileSync(api.certs.serverCert)));
    const fp = execFileSync("openssl", ["x509", "-in", api.certs.serverCert, "-noout", "-fingerprint", "-sha256"]).toString();
    expect(fp.trim().split("=")[1]).toBe(facts.fingerprint256);
    expect(Date.parse(facts.validTo) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect(seen.length).toBeGreaterThanOrEqual(1);
    expect(seen[0]!.spkiPin).toBe(facts.spkiPin);

    // A second walk reuses the cached token: the token endpoint is not asked again.
    const issued = api.stats().tokensIssued;
    expect(issued).toBe(1);
    await walk(full());
    expect(api.stats().tokensIssued).toBe(issued);
  });

  it("accepts the right pin and refuses a wrong one before any request is sent", async () => {
    const pin = opensslPin(api.certs.serverCert);
    const ok = await probeHttp(full({ tls: { ...full().tls, pin } }), { env });
    expect(ok.error).toBeUndefined();
    expect(ok.ok).toBe(true);

    const before = api.stats().requests;
    const wrong = Buffer.alloc(32, 7).toString("base64");
    const err = await failure(walk(full({ tls: { ...full().tls, pin: wrong } })));
    expect(err.code).toBe("TLS_POLICY");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(pin);
    expect(err.message).toContain(wrong);
    expect(err.details?.["tlsPolicy"]).toBe("pin");
    // Neither the token request nor the API request reached the server.
    expect(api.stats().requests).toBe(before);
  });

  it("refuses a server that cannot speak the minimum TLS version", async () => {
    const old = await startSecureApi({ dir: tmp("secure-api-12-"), maxVersion: "TLSv1.2", records: 5 });
    try {
      const cfg: HttpSourceConfig = { url: old.url, tls: { ca: old.certs.ca, cert: old.certs.clientCert, key: old.certs.clientKey } };
      const at12 = await probeHttp(cfg, {});
      expect(at12.tlsFacts?.protocol).toBe("TLSv1.2");
      expect(at12.status).toBe(401); // the channel works; no token was sent
      const err = await failure(walk({ ...cfg, tls: { ...cfg.tls, minVersion: "TLSv1.3" } }));
      expect(err.code).toBe("TLS_POLICY");
      expect(err.retryable).toBe(false);
      expect(err.message).toMatch(/could not agree on TLS TLSv1\.3 or later/);
    } finally {
      await old.close();
    }
  });

  it("refuses tls options on a plain http URL and a literal PEM in place of a reference", async () => {
    const e1 = await failure(walk({ url: "http://127.0.0.1:9/x", tls: { minVersion: "TLSv1.3" } }));
    expect(e1.code).toBe("BAD_CONFIG");
    expect(e1.message).toMatch(/https sources only/);
    const pem = readFileSync(api.certs.clientKey, "utf8");
    const e2 = await failure(walk(full({ tls: { ca: api.certs.ca, cert: api.certs.clientCert, key: pem } })));
    expect(e2.message).toMatch(/tls\.key must be a secret reference/);
    expect(e2.message).not.toContain("PRIVATE KEY-----\n");
  });
});

describe("mutual TLS", () => {
  const noAuth = (tls: HttpSourceConfig["tls"]): HttpSourceConfig => ({ url: api.url, tls });

  it("refuses a client without a certificate", async () => {
    const err = await failure(walk(noAuth({ ca: api.certs.ca })));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/requires a client certificate/);
    expect(err.details?.["tlsRefusal"]).toBe("client_certificate_required");
  });

  it("refuses a client certificate from another CA", async () => {
    const before = api.stats().refused;
    const err = await failure(walk(noAuth({ ca: api.certs.ca, cert: api.certs.otherClientCert, key: api.certs.otherClientKey })));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).toMatch(/did not accept the client certificate/);
    expect(err.details?.["tlsRefusal"]).toBe("client_certificate_refused");
    const after = api.stats().refused;
    const tlsRefusals = (s: Record<string, number>) => Object.entries(s).reduce((n, [k, v]) => n + (k.startsWith("tls:") ? v : 0), 0);
    expect(tlsRefusals(after)).toBe(tlsRefusals(before) + 1);
  });

  it("refuses an expired client certificate", async () => {
    const expired = new Date(execFileSync("openssl", ["x509", "-in", api.certs.expiredCert, "-noout", "-enddate"]).toString().split("=")[1]!.trim());
    expect(expired.getTime()).toBeLessThan(Date.now());
    const err = await failure(walk(noAuth({ ca: api.certs.ca, cert: api.certs.expiredCert, key: api.certs.expiredKey })));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.details?.["tlsRefusal"]).toBe("client_certificate_refused");
  });

  it("refuses a token bound to another client certificate (RFC 8705)", async () => {
    clearTokenCache();
    const token = await requestToken(full(), { env });
    expect(JSON.parse(Buffer.from(token.accessToken.split(".")[1]!, "base64url").toString())["cnf"]["x5t#S256"]).toBe(
      certificateThumbprint(readFileSync(api.certs.clientCert)),
    );
    const stolen: HttpSourceConfig = {
      url: api.url,
      tls: { ca: api.certs.ca, cert: api.certs.secondClientCert, key: api.certs.secondClientKey },
      auth: { type: "bearer", token: "env:STOLEN", totp: { secret: "env:TOTP_SEED" } },
    };
    const before = api.stats().refused["token_bound_to_another_certificate"] ?? 0;
    const stolenEnv = { ...env, STOLEN: token.accessToken };
    const err = await failure(walk(stolen, undefined, stolenEnv));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.details?.["status"]).toBe(401);
    expect(String(err.details?.["body"])).toContain("token_bound_to_another_certificate");
    expect(err.message).not.toContain(token.accessToken);
    expect(JSON.stringify(err.details)).not.toContain(token.accessToken);
    expect(api.stats().refused["token_bound_to_another_certificate"]).toBe(before + 1);
    // With the certificate it was bound to, the same token is good.
    const pages = await walk({ ...stolen, tls: full().tls }, undefined, stolenEnv);
    expect(pages.length).toBe(3);
  });
  it("refuses a wrong client secret at the token endpoint, without showing it", async () => {
    clearTokenCache();
    const secret = "wrong-secret-value";
    const e = await failure(probeOnce({ ...env, CLIENT_SECRET: secret }));
    expect(e.code).toBe("BAD_CONFIG");
    expect(e.message).toMatch(/refused client sluice-demo with HTTP 401: invalid_client/);
    expect(e.message).not.toContain(secret);
  });
});

/** One walk with another environment; rejects with the walk's error. */
async function probeOnce(over: NodeJS.ProcessEnv): Promise<void> {
  for await (const _ of fetchPages(full(), { env: over })) void _;
}

describe("the TOTP header", () => {
  it("is checked live: missing and wrong codes are refused, the computed one is accepted", async () => {
    clearTokenCache();
    const noCode = await probeHttp(full(), { env, omit: ["totp"] });
    expect(noCode.status).toBe(401);
    expect(String(noCode.errorDetails?.["body"])).toContain("totp_required");

    // A seed that is not the API's makes codes the API refuses.
    const wrong = await probeHttp(full(), { env: { ...env, TOTP_SEED: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" } });
    expect(wrong.status).toBe(401);
    expect(String(wrong.errorDetails?.["body"])).toContain("invalid_totp");

    const right = await probeHttp(full(), { env });
    expect(right.ok).toBe(true);
    expect(api.stats().refused["invalid_totp"]).toBeGreaterThanOrEqual(1);
  });

  it("reads an otpauth:// URI as well as a bare base32 seed", async () => {
    const uri = `otpauth://totp/demo:sluice?secret=${api.totpSecret}&digits=6&period=30&algorithm=SHA1`;
    const r = await probeHttp(full(), { env: { ...env, TOTP_SEED: uri } });
    expect(r.ok).toBe(true);
  });
});

describe("sluice sample secure-api", () => {
  it("serves the API with certificates in --dir until SIGTERM, printing paths but no secret", async () => {
    const cwd = tmp("secure-cli-");
    const dir = join(cwd, "certs");
    const child = sluiceAsync(["sample", "secure-api", "--dir", dir], { cwd });
    try {
      let out = "";
      child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
      const end = Date.now() + 20_000;
      while (!/--param totpSecret=/.test(out) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      const url = /secure API on (https:\S+)/.exec(out)![1]!;
      expect(out).toContain(`CA ${join(dir, "ca.pem")}`);
      const secret = readFileSync(join(dir, "client-secret"), "utf8").trim();
      const seed = readFileSync(join(dir, "totp-seed"), "utf8").trim();
      expect(out).not.toContain(secret);
      expect(out).not.toContain(seed);
      const pages = [];
      const config: HttpSourceConfig = {
        url,
        tls: { ca: join(dir, "ca.pem"), cert: join(dir, "client.pem"), key: `file:${join(dir, "client.key")}` },
        auth: {
          type: "oauth2",
          tokenUrl: url.replace(/\/api\/v1\/accounts$/, "/oauth/token"),
          clientId: "sluice-demo",
          clientSecret: `file:${join(dir, "client-secret")}`,
          totp: { secret: `file:${join(dir, "totp-seed")}` },
        },
      };
      for await (const p of fetchPages(config)) pages.push(p);
      expect(pages.flatMap((p) => p.records!)).toHaveLength(120);
      const exit = new Promise<number | null>((r) => child.once("exit", r));
      child.kill("SIGTERM");
      expect(await exit).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  }, 30_000);
});

/**
 * collect_with_encryption against a real local HTTPS API (certificates from openssl): every file
 * the run leaves holds no plaintext byte of any record, classify_sensitive_data reads the
 * encrypted pages, a resumed walk continues under the same data key, and security monitoring
 * stops the walk on a redirect, a certificate swap and a TLS downgrade — publishing
 * security_incident and writing the incident to the audit trail.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { collectWithEncryption } from "../../src/actions/security/collect-encrypted.js";
import { classifySensitiveData } from "../../src/actions/security/classify-action.js";
import { readDataset } from "../../src/actions/batch/dataset.js";
import { actionContext, failure, memoryAudit, scratch } from "../helpers.js";
import { accounts, makeCerts, startApi, type Certs } from "./secure-api.js";

const dir = scratch();
let certs: Certs;
const TOKEN = `tok-${randomBytes(12).toString("hex")}`;
const KEY = randomBytes(32).toString("base64");

beforeAll(() => {
  certs = makeCerts(dir("sluice-certs-"));
  process.env.SLUICE_TEST_COLLECT_TOKEN = TOKEN;
  process.env.SLUICE_TEST_COLLECT_KEY = KEY;
});
afterAll(() => {
  delete process.env.SLUICE_TEST_COLLECT_TOKEN;
  delete process.env.SLUICE_TEST_COLLECT_KEY;
});

function filesUnder(root: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(root, { withFileTypes: true })) {
    const p = join(root, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

const input = (url: string) => ({
  source: url,
  auth: { type: "bearer" as const, token: "env:SLUICE_TEST_COLLECT_TOKEN" },
  key: "env:SLUICE_TEST_COLLECT_KEY",
  caFile: certs.caFile,
});

describe("collect_with_encryption", () => {
  it("stages every page encrypted: no record's bytes anywhere in the run folder, and classify reads it", async () => {
    const records = accounts(45);
    const api = await startApi(certs, { token: TOKEN, records });
    const artifactsDir = dir("sluice-run-");
    const audit = memoryAudit();
    try {
      const ctx = actionContext({ artifactsDir, step: "secure-data-collection", audit });
      const out = await collectWithEncryption(input(api.url), ctx);
      expect(out).toMatchObject({ records: 45, pages: 5, encryption: { algorithm: "AES-256-GCM", keyId: "default", keyVersion: 1 } });
      expect((out.tls as { protocol: string }).protocol).toBe("TLSv1.3");
      const ds = await readDataset(out.dataset as string);
      expect(ds.parts).toHaveLength(5);
      expect(ds.parts.every((p) => p.encrypted?.keyId === "default")).toBe(true);

      const cls = await classifySensitiveData({ dataset: out.dataset as string }, actionContext({ artifactsDir, step: "data-classification" }));
      const byName = Object.fromEntries((cls.columns as { name: string; class: string; action: string }[]).map((c) => [c.name, c]));
      expect(byName.card).toMatchObject({ class: "card_number", action: "tokenize" });
      expect(byName.iban).toMatchObject({ class: "iban", action: "encrypt" });
      expect(byName.email).toMatchObject({ class: "email" });

      // Not one value of a sensitive field, in any file the two steps left.
      const files = filesUnder(artifactsDir);
      expect(files.length).toBeGreaterThan(8);
      const all = files.map((f) => readFileSync(f).toString("latin1")).join("\n");
      for (const r of records) for (const v of [r.card, r.iban, r.email, r.notes, r.phone]) expect(all.includes(v)).toBe(false);
      expect(all.includes("Lovelace")).toBe(false);
      for (const f of files) if (/page-\d+\.ndjson$/.test(f)) expect(readFileSync(f).subarray(0, 4).toString()).toBe("SLE1");
      const keyFile = join(artifactsDir, "secure-data-collection.datakey.json");
      expect(statSync(keyFile).mode & 0o077).toBe(0);
      expect(audit.entries.map((e) => e.event)).toEqual(["data.collect"]);
      expect(audit.entries[0]!.details).toMatchObject({ pages: 5, records: 45, keyId: "default" });
    } finally {
      await api.close();
    }
  });

  it("a walk interrupted mid-way resumes after its last stored page under the same data key", async () => {
    const records = accounts(30);
    const api = await startApi(certs, { token: TOKEN, records, redirectAt: undefined });
    const artifactsDir = dir("sluice-run-");
    try {
      const controller = new AbortController();
      let pages = 0;
      const ctx = actionContext({
        artifactsDir,
        step: "collect",
        signal: controller.signal,
        progress: () => {
          if (++pages === 2) controller.abort(new Error("stopped after two pages"));
        },
      });
      await expect(collectWithEncryption(input(api.url), ctx)).rejects.toThrow();
      const wrapped = readFileSync(join(artifactsDir, "collect.datakey.json"), "utf8");
      const out = await collectWithEncryption(input(api.url), actionContext({ artifactsDir, step: "collect" }));
      expect(out).toMatchObject({ records: 30, pages: 3, resumedFromPage: 3 });
      expect(readFileSync(join(artifactsDir, "collect.datakey.json"), "utf8")).toBe(wrapped);
    } finally {
      await api.close();
    }
  });

  for (const [what, opts, kind] of [
    ["a redirect", { redirectAt: 2 }, "redirect"],
    ["a certificate swap", { swapCertAt: 3 }, "certificate_change"],
    ["a TLS downgrade", { downgradeAt: 2 }, "tls_downgrade"],
  ] as const) {
    it(`stops on ${what}, publishes security_incident and audits it`, async () => {
      const api = await startApi(certs, { token: TOKEN, records: accounts(40), ...opts });
      const artifactsDir = dir("sluice-run-");
      const published: { name: string; data: Record<string, unknown> }[] = [];
      const audit = memoryAudit();
      try {
        const ctx = actionContext({
          artifactsDir,
          step: "collect",
          audit,
          publish: async (name, data) => (published.push({ name, data }), { eventId: "e1", runIds: [] }),
        });
        const err = await failure(collectWithEncryption(input(api.url), ctx));
        expect(err.code).toBe("SECURITY_INCIDENT");
        expect(err.retryable).toBe(false);
        expect(published).toHaveLength(1);
        expect(published[0]).toMatchObject({ name: "security_incident", data: { kind, step: "collect" } });
        expect(audit.entries).toHaveLength(1);
        expect(audit.entries[0]).toMatchObject({ event: "security.incident", outcome: "failure", details: { kind } });
        // The page behind the incident was not stored.
        const stored = readdirSync(join(artifactsDir, "collect.checkpoint")).filter((f) => /^page-\d+\.ndjson$/.test(f)).length;
        const at = "redirectAt" in opts ? opts.redirectAt : "swapCertAt" in opts ? opts.swapCertAt : opts.downgradeAt;
        expect(stored).toBe(at - 1);
      } finally {
        await api.close();
      }
    });
  }

  it("refuses plain http unless requireTls is false, and fails closed when the audit trail refuses writes", async () => {
    const ctx = actionContext({ artifactsDir: dir("sluice-run-") });
    expect((await failure(collectWithEncryption({ ...input("http://127.0.0.1:9/x"), caFile: undefined }, ctx))).code).toBe("BAD_CONFIG");
    const api = await startApi(certs, { token: TOKEN, records: accounts(5) });
    try {
      const err = await failure(collectWithEncryption(input(api.url), actionContext({ artifactsDir: dir("sluice-run-"), audit: memoryAudit({ fail: true }) })));
      expect(err.code).toBe("AUDIT_FAILED");
    } finally {
      await api.close();
    }
  });
});

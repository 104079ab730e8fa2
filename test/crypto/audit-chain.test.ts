/**
 * The pure audit chain: canonical hashing, and verifyChain's verdicts on checkpoints (forged,
 * signed by an unknown key, ahead of the log) and on an empty log.
 */
import { describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalJson, chainEntry, GENESIS, publicKeyId, signCheckpoint, verifyChain, type AuditEntry } from "../../src/crypto/audit-chain.js";
import { loadOrCreateSigningKey, loadPublicKey } from "../../src/crypto/audit-key.js";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");

function log(n: number): AuditEntry[] {
  const out: AuditEntry[] = [];
  for (let i = 1; i <= n; i++)
    out.push(
      chainEntry(out.at(-1), { actor: "svc", event: "step.end", outcome: "success", origin: "host-a", resource: `run:R${i}`, time: `2026-01-01T00:00:0${i}Z` }),
    );
  return out;
}

describe("audit chain", () => {
  it("hashes canonical JSON: key order and absent fields do not change a hash", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, undefined], c: null }, e: undefined })).toBe('{"a":{"c":null,"d":[1,null]},"b":1}');
    const a = chainEntry(undefined, { actor: "x", event: "e", outcome: "success", origin: "o", resource: "r", time: "t", details: { b: 2, a: 1 } });
    const b = chainEntry(undefined, {
      resource: "r",
      origin: "o",
      outcome: "success",
      event: "e",
      actor: "x",
      time: "t",
      details: { a: 1, b: 2 },
      runId: null,
    });
    expect(a.hash).toBe(b.hash);
    expect(a.prevHash).toBe(GENESIS);
  });

  it("accepts an intact log with its checkpoints, and an empty one", () => {
    const entries = log(5);
    const cps = [signCheckpoint({ count: 3, head: entries[2]!.hash }, privateKey), signCheckpoint({ count: 5, head: entries[4]!.hash }, privateKey)];
    expect(verifyChain(entries, cps, publicKey)).toEqual({ ok: true, entries: 5, checkpoints: 2 });
    expect(verifyChain([], [], publicKey)).toEqual({ ok: true, entries: 0, checkpoints: 0 });
  });

  it("refuses a checkpoint whose count or head was altered, and one signed by a key it does not trust", () => {
    const entries = log(5);
    const cp = signCheckpoint({ count: 5, head: entries[4]!.hash }, privateKey);
    expect(verifyChain(entries, [{ ...cp, count: 4, head: entries[3]!.hash }], publicKey)).toMatchObject({ ok: false, problem: { kind: "signature", at: 4 } });
    const other = generateKeyPairSync("ed25519");
    const foreign = signCheckpoint({ count: 5, head: entries[4]!.hash }, other.privateKey);
    const v = verifyChain(entries, [foreign], publicKey);
    expect(v).toMatchObject({ ok: false, problem: { kind: "signature", at: 5 } });
    expect(!v.ok && v.problem.message).toContain(publicKeyId(other.publicKey));
    expect(verifyChain(entries, [foreign], [publicKey, other.publicKey])).toMatchObject({ ok: true });
  });

  it("says so when the first entries are gone", () => {
    expect(verifyChain(log(4).slice(2), [], publicKey)).toMatchObject({ ok: false, problem: { kind: "deleted", at: 1 } });
  });

  it("creates the signing key once, 0600, with its public key beside it", () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-audit-key-"));
    try {
      const a = loadOrCreateSigningKey(join(dir, "audit"));
      const b = loadOrCreateSigningKey(join(dir, "audit"));
      expect(b.keyId).toBe(a.keyId);
      expect(statSync(join(dir, "audit", "signing-key.pem")).mode & 0o777).toBe(0o600);
      expect(readFileSync(a.publicKeyPath, "utf8")).toMatch(/^-----BEGIN PUBLIC KEY-----/);
      expect(publicKeyId(loadPublicKey(a.publicKeyPath))).toBe(a.keyId);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

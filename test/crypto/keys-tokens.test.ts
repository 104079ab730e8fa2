/**
 * Keyrings (files, secret references, rotation, retirement refused while in use) and
 * deterministic tokens (blind index per purpose, last-four mask).
 */
import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { scratch } from "../helpers.js";
import { addVersion, initKeyringFile, keyFingerprint, keyFor, keyringDocument, loadKeyring, retire, saveKeyring } from "../../src/crypto/keyring.js";
import { blindIndex, compactId, maskTail } from "../../src/crypto/tokens.js";

const dir = scratch();

describe("keyrings", () => {
  it("initialises a 0600 file, refuses to overwrite it, and rotates to a new current version", () => {
    const path = join(dir("sluice-keys-"), "keyring.json");
    const ring = initKeyringFile(path, "main");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(() => initKeyringFile(path)).toThrow(/already exists/);
    const rotated = addVersion(loadKeyring(path));
    saveKeyring(path, rotated);
    const back = loadKeyring(path);
    expect(back.current).toEqual({ id: "main", version: 2 });
    expect(keyFor(back, { id: "main", version: 1 }).equals(keyFor(ring, ring.current))).toBe(true);
    expect(keyFor(back, { id: "main", version: 2 })).toHaveLength(32);
  });

  it("reads a YAML keyring and a single key behind env: or file: (base64 or hex)", () => {
    const d = dir("sluice-keys-");
    const key = randomBytes(32);
    const ring = loadKeyring(`env:K`, { env: { K: key.toString("base64") } });
    expect(ring.current).toEqual({ id: "default", version: 1 });
    expect(keyFor(ring, ring.current).equals(key)).toBe(true);
    writeFileSync(join(d, "k.hex"), `${key.toString("hex")}\n`);
    expect(keyFor(loadKeyring("file:k.hex", { baseDir: d }), { id: "default", version: 1 }).equals(key)).toBe(true);
    const doc = keyringDocument(addVersion(ring, "default"));
    writeFileSync(join(d, "ring.yaml"), stringify(doc));
    expect(loadKeyring(join(d, "ring.yaml")).current).toEqual({ id: "default", version: 2 });
    expect(() => loadKeyring("env:NOPE", { env: {} })).toThrow(/NOPE, which is not set/);
    expect(() => loadKeyring("env:K", { env: { K: "c2hvcnQ=" } })).toThrow(/does not hold a 32-byte key/);
  });

  it("refuses to retire the current version or one still in use, and drops the key of a retired one", async () => {
    const path = join(dir("sluice-keys-"), "keyring.json");
    const v2 = addVersion(initKeyringFile(path));
    const old = { id: "default", version: 1 };
    await expect(retire(v2, v2.current, () => 0)).rejects.toThrow(/is the current key/);
    await expect(retire(v2, old, () => 3)).rejects.toThrow(/still protects 3 values/);
    const retired = await retire(v2, old, async () => 0);
    saveKeyring(path, retired);
    expect(readFileSync(path, "utf8")).not.toContain(keyFor(v2, old).toString("base64"));
    expect(() => keyFor(loadKeyring(path), old)).toThrow(/is retired/);
    expect(keyFingerprint(keyFor(v2, v2.current))).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe("tokens", () => {
  const ring = addVersion(initKeyringFile(join(dir("sluice-tok-"), "k.json"), "tok"));

  it("gives equal values equal tokens per purpose, unrelated tokens across purposes and key versions", () => {
    const a = blindIndex(ring, "payments.card", "4111 1111 1111 1111", { normalize: compactId });
    const b = blindIndex(ring, "payments.card", "4111-1111-1111-1111", { normalize: compactId });
    expect(a).toBe(b);
    expect(a).toMatch(/^tk1:tok:2:[A-Za-z0-9_-]{43}$/);
    expect(blindIndex(ring, "customers.card", "4111111111111111")).not.toBe(a);
    const old = blindIndex(ring, "payments.card", "4111111111111111", { ref: { id: "tok", version: 1 } });
    expect(old.startsWith("tk1:tok:1:")).toBe(true);
    expect(old.slice(10)).not.toBe(a.slice(10));
    expect(a).not.toContain("1111");
  });

  it("masks all but the last four characters", () => {
    expect(maskTail("4111 1111 1111 1234")).toBe("************1234");
    expect(maskTail("DE89 3704 0044 0532 0130 00")).toBe("******************3000");
    expect(maskTail("123")).toBe("***");
  });
});

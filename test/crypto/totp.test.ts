/**
 * HOTP and TOTP against the RFCs' own test vectors (RFC 4226 appendix D, RFC 6238 appendix B),
 * the verification window, and base32 seeds.
 */
import { describe, expect, it } from "vitest";
import { base32Decode, base32Encode, hotp, totp, verifyTotp } from "../../src/crypto/totp.js";

const ascii = (s: string) => Buffer.from(s, "ascii");

describe("HOTP (RFC 4226)", () => {
  it("gives appendix D's values for counters 0 to 9", () => {
    const secret = ascii("12345678901234567890");
    const want = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
    expect(want.map((_, i) => hotp(secret, i))).toEqual(want);
  });
});

describe("TOTP (RFC 6238)", () => {
  const seeds = {
    sha1: ascii("12345678901234567890"),
    sha256: ascii("12345678901234567890123456789012"),
    sha512: ascii("1234567890123456789012345678901234567890123456789012345678901234"),
  } as const;
  // Appendix B: time (s) → SHA-1, SHA-256, SHA-512, 8 digits, 30 s steps.
  const table: [number, string, string, string][] = [
    [59, "94287082", "46119246", "90693936"],
    [1111111109, "07081804", "68084774", "25091201"],
    [1111111111, "14050471", "67062674", "99943326"],
    [1234567890, "89005924", "91819424", "93441116"],
    [2000000000, "69279037", "90698825", "38618901"],
    [20000000000, "65353130", "77737706", "47863826"],
  ];
  it.each(table)("at %i s gives the appendix B codes for SHA-1, SHA-256 and SHA-512", (t, s1, s256, s512) => {
    const at = (algorithm: keyof typeof seeds) => totp(seeds[algorithm], { time: t * 1000, digits: 8, algorithm });
    expect([at("sha1"), at("sha256"), at("sha512")]).toEqual([s1, s256, s512]);
  });

  it("accepts a code from the step before or after, and nothing further away", () => {
    const secret = seeds.sha1;
    const now = 1_700_000_000_000;
    expect(verifyTotp(secret, totp(secret, { time: now }), { time: now })).toBe(0);
    expect(verifyTotp(secret, totp(secret, { time: now - 30_000 }), { time: now })).toBe(-1);
    expect(verifyTotp(secret, totp(secret, { time: now + 30_000 }), { time: now })).toBe(1);
    expect(verifyTotp(secret, totp(secret, { time: now - 90_000 }), { time: now })).toBeNull();
    expect(verifyTotp(secret, "12345", { time: now })).toBeNull();
  });
});

describe("base32 seeds", () => {
  it("round-trips and reads the RFC 4648 vectors, ignoring case, spaces and padding", () => {
    expect(base32Encode(ascii("foobar"))).toBe("MZXW6YTBOI");
    expect(base32Decode("mzxw 6ytb oi======").toString("ascii")).toBe("foobar");
    const seed = Buffer.from("0123456789abcdef0123", "hex");
    expect(base32Decode(base32Encode(seed)).equals(seed)).toBe(true);
    expect(() => base32Decode("not base32!")).toThrow(/base32/);
  });
});

/**
 * HOTP (RFC 4226) and TOTP (RFC 6238), with base32 seeds (RFC 4648) as authenticator apps show them.
 *
 * Written over node:crypto's HMAC rather than taken from `otpauth`: its current release pins
 * @noble/hashes 2.4, which requires Node ≥ 20.19 while Sluice promises ≥ 20.11, and the two
 * algorithms are thirty lines that the RFCs' own test vectors check (test/crypto/totp.test.ts).
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { SluiceError } from "../errors.js";

export type OtpAlgorithm = "sha1" | "sha256" | "sha512";

export interface HotpOptions {
  /** 6 (default) to 10 digits. */
  digits?: number;
  /** HMAC hash (default sha1, what nearly every authenticator uses). */
  algorithm?: OtpAlgorithm;
}

export interface TotpOptions extends HotpOptions {
  /** Epoch milliseconds (default now). */
  time?: number;
  /** Time step in seconds (default 30). */
  period?: number;
  /** Unix time in seconds the steps count from (default 0). */
  t0?: number;
}

/** RFC 4226: HMAC of the 8-byte counter, dynamic truncation, the low `digits` decimal digits. */
export function hotp(secret: Buffer, counter: number | bigint, opts: HotpOptions = {}): string {
  const digits = opts.digits ?? 6;
  if (!Number.isInteger(digits) || digits < 6 || digits > 10) throw new SluiceError("BAD_CONFIG", `a one-time password has 6 to 10 digits, not ${digits}`);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(opts.algorithm ?? "sha1", secret)
    .update(msg)
    .digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const bin = ((mac[offset]! & 0x7f) << 24) | (mac[offset + 1]! << 16) | (mac[offset + 2]! << 8) | mac[offset + 3]!;
  return (BigInt(bin) % 10n ** BigInt(digits)).toString().padStart(digits, "0");
}

/** The time step a moment falls in (RFC 6238's T). */
export function totpCounter(opts: TotpOptions = {}): number {
  const period = opts.period ?? 30;
  return Math.floor(((opts.time ?? Date.now()) / 1000 - (opts.t0 ?? 0)) / period);
}

/** RFC 6238: HOTP of the current time step. */
export function totp(secret: Buffer, opts: TotpOptions = {}): string {
  return hotp(secret, totpCounter(opts), opts);
}

/**
 * Check a code against the steps within `window` of now (default 1: the clock of either side may
 * be one step off). Returns the step offset that matched, or null. Constant-time per comparison.
 */
export function verifyTotp(secret: Buffer, code: string, opts: TotpOptions & { window?: number } = {}): number | null {
  const now = totpCounter(opts);
  const given = Buffer.from(code, "utf8");
  let found: number | null = null;
  for (let d = -(opts.window ?? 1); d <= (opts.window ?? 1); d++) {
    const want = Buffer.from(hotp(secret, now + d, opts), "utf8");
    if (want.length === given.length && timingSafeEqual(want, given) && found === null) found = d;
  }
  return found;
}

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 (case-insensitive, spaces and padding ignored), the form TOTP seeds are shared in. */
export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[\s=-]/g, "").toUpperCase();
  const out: number[] = [];
  let bits = 0;
  let acc = 0;
  for (const ch of clean) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new SluiceError("BAD_CONFIG", "the TOTP seed is not base32 (letters A-Z and digits 2-7)");
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

export function base32Encode(bytes: Buffer): string {
  let out = "";
  let bits = 0;
  let acc = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += B32[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

/**
 * Deterministic tokens for joins and look-ups, and a display mask.
 *
 * A blind index is HMAC-SHA-256 of the (normalised) value under a key derived by HKDF from the
 * KEK for one purpose (`payments.card`, `customers.email`): equal values give equal tokens, so
 * tables join on them, but a token reveals nothing without the key — the *keyed* hash PCI DSS
 * 3.5.1.1 asks for (a plain SHA-256 of a card number is brute-forced in minutes: the space is
 * ~10^15 once the issuer prefix and Luhn digit are known). Different purposes get unrelated tokens,
 * so two datasets cannot be linked unless they are meant to be. The token carries the key id and
 * version (`tk1:<kid>:<ver>:<base64url>`): after a rotation, tokens are recomputed from the
 * decrypted value, and a join across two key versions is visibly a mismatch, not a silent miss.
 */
import { createHmac, hkdfSync } from "node:crypto";
import { currentKey, keyFor, type KeyRef, type Keyring } from "./keyring.js";

export interface TokenOptions {
  /** The key version to use (default the current one): for recomputing a token next to old ones. */
  ref?: KeyRef;
  /** Applied to the value first, e.g. removing spaces and dashes from a card number. */
  normalize?: (value: string) => string;
}

/** The blind index of `value` for `purpose`. */
export function blindIndex(ring: Keyring, purpose: string, value: string, opts: TokenOptions = {}): string {
  const { ref, key } = opts.ref ? { ref: opts.ref, key: keyFor(ring, opts.ref) } : currentKey(ring);
  const k = Buffer.from(hkdfSync("sha256", key, Buffer.alloc(0), `sluice blind index v1 ${JSON.stringify(purpose)}`, 32));
  const mac = createHmac("sha256", k)
    .update(opts.normalize ? opts.normalize(value) : value, "utf8")
    .digest("base64url");
  return `tk1:${ref.id}:${ref.version}:${mac}`;
}

/** Digits and letters only, upper case: card numbers, IBANs and account numbers as people type them. */
export function compactId(value: string): string {
  return value.replace(/[^0-9A-Za-z]/g, "").toUpperCase();
}

/**
 * A mask for display: every letter and digit but the last `keep` (default four) becomes `*`;
 * separators are dropped so the mask does not show the grouping. `4111 1111 1111 1111` → `************1111`.
 * A value with no more than `keep` characters is masked whole: its "last four" would be all of it.
 */
export function maskTail(value: string, keep = 4, mark = "*"): string {
  const chars = [...value.replace(/[^0-9A-Za-z]/g, "")];
  if (chars.length <= keep) return mark.repeat(chars.length);
  return mark.repeat(chars.length - keep) + chars.slice(-keep).join("");
}

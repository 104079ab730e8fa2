/**
 * Field-level cells: round trip, the key reference in the text, tampering and a cell moved to
 * another row or column failing to decrypt, and rotation by rewrap.
 */
import { describe, expect, it } from "vitest";
import { cellKeyRef, decryptCell, encryptCell, isCell, rewrapCell } from "../../src/crypto/cells.js";
import { addVersion, newKeyring } from "../../src/crypto/keyring.js";

const place = { table: "payments", column: "card", key: "42" };

describe("encrypted cells", () => {
  const ring = newKeyring("k1");

  it("round-trips, carries the key id and version, and never repeats a ciphertext", () => {
    const card = "4111 1111 1111 1111 — Zoë";
    const a = encryptCell(ring, place, card);
    const b = encryptCell(ring, place, card);
    expect(a).toMatch(/^sl1:k1:1:[A-Za-z0-9_-]+$/);
    expect(isCell(a)).toBe(true);
    expect(a).not.toBe(b); // random nonces
    expect(a).not.toContain("4111");
    expect(cellKeyRef(a)).toEqual({ id: "k1", version: 1 });
    expect(decryptCell(ring, place, a)).toBe(card);
    expect(decryptCell(ring, place, encryptCell(ring, place, ""))).toBe("");
  });

  it("refuses a cell with one flipped bit", () => {
    const cell = encryptCell(ring, place, "secret value");
    const [prefix, kid, ver, data] = cell.split(":");
    const raw = Buffer.from(data!, "base64url");
    for (const at of [0, 13, raw.length - 1]) {
      const bad = Buffer.from(raw);
      bad[at]! ^= 0x01;
      expect(() => decryptCell(ring, place, `${prefix}:${kid}:${ver}:${bad.toString("base64url")}`)).toThrow(/does not authenticate/);
    }
  });

  it("refuses a cell copied to another row, another column or another table, or relabelled with another version", () => {
    const ring2 = addVersion(ring);
    const cell = encryptCell(ring, place, "4111111111111111");
    const err = (p: typeof place, c = cell) => {
      try {
        decryptCell(ring2, p, c);
        return "decrypted";
      } catch (e) {
        return (e as { code: string }).code;
      }
    };
    expect(err({ ...place, key: "43" })).toBe("DECRYPT_FAILED");
    expect(err({ ...place, column: "iban" })).toBe("DECRYPT_FAILED");
    expect(err({ ...place, table: "payouts" })).toBe("DECRYPT_FAILED");
    expect(err(place, cell.replace(":1:", ":2:"))).toBe("DECRYPT_FAILED");
    expect(err(place)).toBe("decrypted");
  });

  it("rewraps an old cell to the current version without changing its value; a current cell is left as it is", () => {
    const cell = encryptCell(ring, place, "DE89370400440532013000");
    const rotated = addVersion(ring);
    const rewrapped = rewrapCell(rotated, place, cell);
    expect(cellKeyRef(rewrapped)).toEqual({ id: "k1", version: 2 });
    expect(decryptCell(rotated, place, rewrapped)).toBe("DE89370400440532013000");
    expect(rewrapCell(rotated, place, rewrapped)).toBe(rewrapped);
    // The old version is still needed for the cells not yet rewrapped, and only for them.
    expect(decryptCell(rotated, place, cell)).toBe("DE89370400440532013000");
  });
});

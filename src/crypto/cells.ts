/**
 * Field-level encryption: one table cell as compact text, `sl1:<kid>:<ver>:<base64url(nonce‖ciphertext‖tag)>`.
 *
 * - The key id and version are in the text (as Vault Transit and Tink do), so a reader picks the
 *   right key version and a rotation can find and rewrap old cells with a plain `LIKE 'sl1:k:1:%'`.
 * - The additional authenticated data binds the cell to where it belongs — table, column, primary
 *   key, key id and version (AWS KMS's encryption context, per cell) — so a ciphertext copied to
 *   another row or column, or relabelled with another key version, fails to decrypt instead of
 *   showing one customer's card as another's. The AAD is the JSON array of those parts, not a
 *   `|`-joined string: a table named `a|b` cannot then forge another table's context.
 * - Each (table, column) encrypts under its own subkey, HKDF-SHA-256 of the KEK, so the random
 *   96-bit nonces of AES-256-GCM stay far below their collision bound (2^32 messages per key)
 *   however many columns a key serves.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { SluiceError } from "../errors.js";
import { currentKey, keyFor, type KeyRef, type Keyring } from "./keyring.js";

const PREFIX = "sl1";
const NONCE = 12;
const TAG = 16;
const CELL = /^sl1:([A-Za-z0-9_-]{1,64}):([1-9][0-9]*):([A-Za-z0-9_-]+)$/;

/** Where a cell lives: its table, its column and its row's primary key (composite keys joined by the caller). */
export interface CellPlace {
  table: string;
  column: string;
  key: string;
}

/** True for text in the cell format (it says nothing about whether it decrypts). */
export function isCell(value: unknown): value is string {
  return typeof value === "string" && CELL.test(value);
}

/** The key id and version a cell was written with. */
export function cellKeyRef(cell: string): KeyRef {
  const m = CELL.exec(cell);
  if (!m) throw new SluiceError("BAD_INPUT", "the value is not an encrypted cell (sl1:<kid>:<ver>:<data>)");
  return { id: m[1]!, version: Number(m[2]) };
}

/** Encrypt one value for one place with the keyring's current key. */
export function encryptCell(ring: Keyring, place: CellPlace, plaintext: string): string {
  const { ref, key } = currentKey(ring);
  return seal(key, ref, place, plaintext);
}

/** Decrypt a cell read from `place`; DECRYPT_FAILED when it was edited, moved or written for another place. */
export function decryptCell(ring: Keyring, place: CellPlace, cell: string): string {
  const m = CELL.exec(cell);
  if (!m) throw new SluiceError("DECRYPT_FAILED", `the value in ${describe(place)} is not an encrypted cell`);
  const ref = { id: m[1]!, version: Number(m[2]) };
  const raw = Buffer.from(m[3]!, "base64url");
  if (raw.length < NONCE + TAG) throw new SluiceError("DECRYPT_FAILED", `the encrypted cell in ${describe(place)} is too short`);
  const decipher = createDecipheriv("aes-256-gcm", subkey(keyFor(ring, ref), place), raw.subarray(0, NONCE));
  decipher.setAAD(aad(ref, place));
  decipher.setAuthTag(raw.subarray(raw.length - TAG));
  try {
    return Buffer.concat([decipher.update(raw.subarray(NONCE, raw.length - TAG)), decipher.final()]).toString("utf8");
  } catch {
    throw new SluiceError(
      "DECRYPT_FAILED",
      `the encrypted cell in ${describe(place)} does not authenticate: it was altered, or copied from another row or column`,
      {
        details: { table: place.table, column: place.column, keyId: ref.id, keyVersion: ref.version },
      },
    );
  }
}

/**
 * Rotation: a cell under an older key version, decrypted and encrypted again under the current
 * one (the plaintext never leaves this function). A cell already current is returned unchanged,
 * so a rewrap that is killed and started again just carries on.
 */
export function rewrapCell(ring: Keyring, place: CellPlace, cell: string): string {
  const ref = cellKeyRef(cell);
  if (ref.id === ring.current.id && ref.version === ring.current.version) return cell;
  return encryptCell(ring, place, decryptCell(ring, place, cell));
}

function seal(kek: Buffer, ref: KeyRef, place: CellPlace, plaintext: string): string {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv("aes-256-gcm", subkey(kek, place), nonce);
  cipher.setAAD(aad(ref, place));
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return `${PREFIX}:${ref.id}:${ref.version}:${Buffer.concat([nonce, body, cipher.getAuthTag()]).toString("base64url")}`;
}

/** One subkey per KEK and (table, column), cached: HKDF costs more than the AES of a short value. */
const subkeys = new WeakMap<Buffer, Map<string, Buffer>>();

function subkey(kek: Buffer, place: CellPlace): Buffer {
  let byColumn = subkeys.get(kek);
  if (!byColumn) subkeys.set(kek, (byColumn = new Map()));
  const name = JSON.stringify([place.table, place.column]);
  let k = byColumn.get(name);
  if (!k) byColumn.set(name, (k = Buffer.from(hkdfSync("sha256", kek, Buffer.alloc(0), `sluice cell key v1 ${name}`, 32))));
  return k;
}

function aad(ref: KeyRef, place: CellPlace): Buffer {
  return Buffer.from(JSON.stringify([PREFIX, place.table, place.column, place.key, ref.id, ref.version]), "utf8");
}

function describe(place: CellPlace): string {
  return `${place.table}.${place.column}`;
}

/**
 * The Ed25519 key that signs audit checkpoints: generated on first use in a folder the caller
 * names (the CLI uses `$SLUICE_HOME/audit/`), the private key in `signing-key.pem` (mode 0600)
 * and its public key beside it in `signing-key.pub.pem`, which is what a verifier needs (copy it
 * off the machine: a verifier that trusts only the public key next to the log trusts whoever can
 * rewrite both).
 *
 * Two processes using it first at the same moment must not end with two keys: the private key is
 * written to a temporary file and *linked* into place, which fails when another process won the
 * race; the loser then reads the winner's key.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SluiceError } from "../errors.js";
import { publicKeyId } from "./audit-chain.js";

export interface AuditSigner {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** publicKeyId(publicKey), the id checkpoints carry. */
  keyId: string;
  publicKeyPath: string;
}

export const SIGNING_KEY_FILE = "signing-key.pem";
export const PUBLIC_KEY_FILE = "signing-key.pub.pem";

/** The signing key in `dir`, created (with its public key) when there is none yet. */
export function loadOrCreateSigningKey(dir: string): AuditSigner {
  const priv = join(dir, SIGNING_KEY_FILE);
  const pub = join(dir, PUBLIC_KEY_FILE);
  if (!existsSync(priv)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync("ed25519");
    const tmp = `${priv}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(tmp, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    try {
      linkSync(tmp, priv);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    } finally {
      rmSync(tmp, { force: true });
    }
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(readFileSync(priv));
  } catch {
    throw new SluiceError("BAD_CONFIG", `the audit signing key ${priv} cannot be read as an Ed25519 private key`);
  }
  if (privateKey.asymmetricKeyType !== "ed25519") throw new SluiceError("BAD_CONFIG", `the audit signing key ${priv} is not an Ed25519 key`);
  const publicKey = createPublicKey(privateKey);
  // Written (again) from the private key, so a deleted or damaged public key file comes back right.
  const pem = publicKey.export({ type: "spki", format: "pem" }) as string;
  if (!existsSync(pub) || readFileSync(pub, "utf8") !== pem) writeFileSync(pub, pem, { mode: 0o644 });
  return { privateKey, publicKey, keyId: publicKeyId(publicKey), publicKeyPath: pub };
}

/** A trusted public key from a PEM file (`sluice audit verify --public-key FILE`). */
export function loadPublicKey(path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(readFileSync(path));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : "is not a PEM public key";
    throw new SluiceError("BAD_CONFIG", `the audit public key ${path} ${why}`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new SluiceError("BAD_CONFIG", `the audit public key ${path} is not an Ed25519 key`);
  return key;
}

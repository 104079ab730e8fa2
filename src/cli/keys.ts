/**
 * `sluice keys init | rotate | list` over a keyring file (default $SLUICE_KEYRING, else
 * `$SLUICE_HOME/keyring.json`). Key material is never printed: only ids, versions, dates and
 * fingerprints. Creating and rotating are audited, and fail closed: the audit entry is written
 * before the new keyring replaces the old one, so a rotation the trail does not show never happens.
 */
import { join, resolve } from "node:path";
import { addVersion, initKeyringFile, keyFingerprint, loadKeyring, saveKeyring, type Keyring } from "../crypto/keyring.js";
import { sluiceHome } from "../store/index.js";
import { cliIdentity } from "./audit.js";
import { withStore } from "./context.js";

interface KeysFlags {
  keyring?: string;
  id?: string;
  json?: boolean;
}

const keyringPath = (o: KeysFlags) => resolve(o.keyring ?? process.env.SLUICE_KEYRING ?? join(sluiceHome(), "keyring.json"));

export async function keysInitCommand(o: KeysFlags): Promise<number> {
  const path = keyringPath(o);
  const ring = initKeyringFile(path, o.id ?? "default");
  await withStore((store) =>
    store.appendAudit({ ...cliIdentity(), event: "key.init", outcome: "success", resource: resource(path, ring), details: { fingerprint: fingerprint(ring) } }),
  );
  process.stdout.write(`keyring ${path} created: key ${ring.current.id} version 1 (fingerprint ${fingerprint(ring)})\n`);
  return 0;
}

export async function keysRotateCommand(o: KeysFlags): Promise<number> {
  const path = keyringPath(o);
  const old = loadKeyring(path);
  const ring = addVersion(old, o.id ?? old.current.id);
  await withStore(async (store) => {
    const entry = { ...cliIdentity(), event: "key.rotate", resource: resource(path, ring), details: { previous: old.current, fingerprint: fingerprint(ring) } };
    await store.appendAudit({ ...entry, outcome: "success" });
    try {
      saveKeyring(path, ring);
    } catch (err) {
      await store.appendAudit({ ...entry, outcome: "failure", details: { ...entry.details, reason: (err as Error).message } });
      throw err;
    }
  });
  process.stdout.write(
    `keyring ${path}: key ${ring.current.id} version ${ring.current.version} is current (fingerprint ${fingerprint(ring)}); ` +
      `data under version ${old.current.version} still decrypts until it is rewrapped\n`,
  );
  return 0;
}

export async function keysListCommand(o: KeysFlags): Promise<number> {
  const path = keyringPath(o);
  const ring = loadKeyring(path);
  const rows = ring.keys.map((k) => ({
    id: k.id,
    version: k.version,
    createdAt: k.createdAt,
    status: k.retiredAt ? "retired" : k.id === ring.current.id && k.version === ring.current.version ? "current" : "active",
    fingerprint: k.key ? keyFingerprint(k.key) : null,
    ...(k.retiredAt ? { retiredAt: k.retiredAt } : {}),
  }));
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ keyring: path, current: ring.current, keys: rows }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`keyring ${path}\n`);
  for (const r of rows)
    process.stdout.write(
      `  ${r.id.padEnd(12)} v${String(r.version).padEnd(4)} ${r.status.padEnd(8)} ${r.fingerprint ?? "-".padEnd(16)}  created ${r.createdAt || "?"}\n`,
    );
  return 0;
}

function fingerprint(ring: Keyring): string {
  const k = ring.keys.find((e) => e.id === ring.current.id && e.version === ring.current.version);
  return k?.key ? keyFingerprint(k.key) : "-";
}

function resource(path: string, ring: Keyring): string {
  return `keyring:${path}#${ring.current.id}/${ring.current.version}`;
}

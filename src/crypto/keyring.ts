/**
 * Key-encryption keys (KEKs): a keyring of 32-byte keys by id and version, one of them current.
 *
 * Every ciphertext Sluice writes names the key id and version that protects it (envelope headers,
 * `sl1:<kid>:<ver>:…` cells), so rotation is adding a version and making it current: old data
 * still decrypts with its own version until it is rewrapped, and only then may that version be
 * retired. Retiring drops the key material from the file (a leaked old copy of the file then opens
 * nothing new) and is refused while the caller's check says data still uses the version — the
 * check is the caller's because only it knows where its ciphertexts live.
 *
 * Two ways to hold keys:
 * - a keyring file, JSON or YAML: `{ format: sluice-keyring/1, current: { id, version },
 *   keys: [{ id, version, key: <base64 of 32 bytes>, createdAt, retiredAt? }] }`, written with mode 0600;
 * - a secret reference (`env:NAME` or `file:PATH`) whose value is one 32-byte key (base64 or hex):
 *   a keyring of one, id `default`, version 1. A `file:` whose content is a keyring document is read as one.
 * Secret references are resolved here rather than through connectors/secrets.ts because this layer
 * sits below connectors; messages name the variable or path, never a key.
 */
import { createHmac, randomBytes } from "node:crypto";
import { readFileSync, renameSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join as pathJoin, resolve as resolvePath } from "node:path";
import { parse as parseYaml } from "yaml";
import { SluiceError } from "../errors.js";
import { registerSecret } from "./masker.js";

export const KEY_BYTES = 32;
const FORMAT = "sluice-keyring/1";
/** Key ids go into cell text between colons and into file names: letters, digits, `_` and `-`. */
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;

export interface KeyRef {
  id: string;
  version: number;
}

export interface KeyEntry extends KeyRef {
  /** The key; undefined once the version is retired. */
  key: Buffer | undefined;
  createdAt: string;
  retiredAt?: string;
}

export interface Keyring {
  current: KeyRef;
  keys: KeyEntry[];
  /** Where it came from, for messages: a file path or a secret reference (never a value). */
  source: string;
}

export interface LoadKeyringOptions {
  /** Environment for `env:` references (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Directory relative paths resolve against (default the working directory). */
  baseDir?: string;
}

/** A short, non-secret name for a key (HMAC of a fixed label): shown by `keys list`, compared across hosts. */
export function keyFingerprint(key: Buffer): string {
  return createHmac("sha256", key).update("sluice key fingerprint").digest("hex").slice(0, 16);
}

/** A keyring with one fresh random key, current. */
export function newKeyring(id = "default", source = "(new keyring)", now = new Date()): Keyring {
  checkId(id);
  return { current: { id, version: 1 }, keys: [{ id, version: 1, key: randomBytes(KEY_BYTES), createdAt: now.toISOString() }], source };
}

/**
 * Load a keyring: `env:NAME` or `file:PATH` (one key, or a keyring document behind `file:`), or a
 * plain path to a keyring file.
 */
export function loadKeyring(spec: string, opts: LoadKeyringOptions = {}): Keyring {
  if (spec.startsWith("env:")) {
    const name = spec.slice(4);
    const value = (opts.env ?? process.env)[name];
    if (value === undefined || value === "")
      throw new SluiceError("BAD_CONFIG", `the encryption key refers to environment variable ${name}, which is not set or is empty`);
    return singleKeyring(decodeKey(value.trim(), `environment variable ${name}`), spec);
  }
  const path = resolvePath(opts.baseDir ?? process.cwd(), spec.startsWith("file:") ? spec.slice(5) : spec);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "EACCES" ? "is not readable" : `cannot be read (${code ?? "unknown error"})`;
    throw new SluiceError("BAD_CONFIG", `the key file ${path} ${why}`, { details: { path } });
  }
  const trimmed = text.trim();
  if (spec.startsWith("file:") && !/^[{]|^format:|^current:|^keys:/m.test(trimmed)) return singleKeyring(decodeKey(trimmed, `key file ${path}`), spec);
  return parseKeyring(trimmed, path);
}

/** A keyring document (JSON or YAML) → a keyring; every problem is reported with the file's name. */
export function parseKeyring(text: string, source: string): Keyring {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch {
    throw new SluiceError("BAD_CONFIG", `the keyring ${source} is neither JSON nor YAML`);
  }
  const bad = (why: string) => new SluiceError("BAD_CONFIG", `the keyring ${source} ${why}`, { details: { source } });
  if (!doc || typeof doc !== "object") throw bad("is not a keyring document");
  const d = doc as { format?: unknown; current?: { id?: unknown; version?: unknown }; keys?: unknown };
  if (d.format !== undefined && d.format !== FORMAT) throw bad(`has format ${JSON.stringify(d.format)}; this Sluice reads ${FORMAT}`);
  if (!Array.isArray(d.keys) || d.keys.length === 0) throw bad("has no keys");
  const keys: KeyEntry[] = d.keys.map((k: Record<string, unknown>, i: number) => {
    const id = k?.id;
    const version = k?.version;
    if (typeof id !== "string" || !KEY_ID.test(id)) throw bad(`key ${i + 1} has no valid id (letters, digits, _ and -)`);
    if (typeof version !== "number" || !Number.isInteger(version) || version < 1) throw bad(`key ${id} has no valid version (a whole number from 1)`);
    const retiredAt = typeof k.retiredAt === "string" ? k.retiredAt : undefined;
    if (retiredAt === undefined && typeof k.key !== "string") throw bad(`key ${id} version ${version} has no key`);
    const key = retiredAt === undefined ? decodeKey(k.key as string, `key ${id} version ${version} of keyring ${source}`) : undefined;
    return { id, version, key, createdAt: typeof k.createdAt === "string" ? k.createdAt : "", ...(retiredAt ? { retiredAt } : {}) };
  });
  const seen = new Set<string>();
  for (const k of keys) {
    const name = `${k.id}/${k.version}`;
    if (seen.has(name)) throw bad(`holds key ${k.id} version ${k.version} twice`);
    seen.add(name);
  }
  const cur = d.current;
  if (!cur || typeof cur.id !== "string" || typeof cur.version !== "number") throw bad("names no current key (current: { id, version })");
  const current = { id: cur.id, version: cur.version };
  const entry = keys.find((k) => k.id === current.id && k.version === current.version);
  if (!entry) throw bad(`names current key ${current.id} version ${current.version}, which it does not hold`);
  if (!entry.key) throw bad(`names current key ${current.id} version ${current.version}, which is retired`);
  return { current, keys, source };
}

/** The keyring as a document to write (keys in base64): what `saveKeyring` writes. */
export function keyringDocument(ring: Keyring): Record<string, unknown> {
  return {
    format: FORMAT,
    current: ring.current,
    keys: ring.keys.map((k) => ({
      id: k.id,
      version: k.version,
      ...(k.key ? { key: k.key.toString("base64") } : {}),
      createdAt: k.createdAt,
      ...(k.retiredAt ? { retiredAt: k.retiredAt } : {}),
    })),
  };
}

/**
 * Write a keyring file atomically (a temporary file renamed over it) with mode 0600, so a crash
 * mid-write never leaves half a keyring and other users of the machine cannot read it.
 */
export function saveKeyring(path: string, ring: Keyring): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(keyringDocument(ring), null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** Create a keyring file with one fresh key; refused when the file exists (it would destroy keys). */
export function initKeyringFile(path: string, id = "default", now = new Date()): Keyring {
  if (existsSync(path)) throw new SluiceError("CONFLICT", `the keyring ${path} already exists; rotate it with: sluice keys rotate`, { retryable: false });
  const ring = newKeyring(id, path, now);
  saveKeyring(path, ring);
  return ring;
}

/** The key of one id and version; fails naming it when the keyring does not hold it (or it is retired). */
export function keyFor(ring: Keyring, ref: KeyRef): Buffer {
  const entry = ring.keys.find((k) => k.id === ref.id && k.version === ref.version);
  if (!entry) throw new SluiceError("BAD_CONFIG", `key ${ref.id} version ${ref.version} is not in the keyring ${ring.source}`, { details: { ...ref } });
  if (!entry.key) throw new SluiceError("BAD_CONFIG", `key ${ref.id} version ${ref.version} of keyring ${ring.source} is retired`, { details: { ...ref } });
  return entry.key;
}

export function currentKey(ring: Keyring): { ref: KeyRef; key: Buffer } {
  return { ref: ring.current, key: keyFor(ring, ring.current) };
}

/**
 * Rotation: a new random version of `id` (default the current key's id) that becomes current.
 * Returns a new keyring; the caller saves it.
 */
export function addVersion(ring: Keyring, id: string = ring.current.id, now = new Date()): Keyring {
  checkId(id);
  const version = Math.max(0, ...ring.keys.filter((k) => k.id === id).map((k) => k.version)) + 1;
  const entry: KeyEntry = { id, version, key: randomBytes(KEY_BYTES), createdAt: now.toISOString() };
  return { ...ring, current: { id, version }, keys: [...ring.keys, entry] };
}

/**
 * Retire a version: its key material leaves the keyring. Refused for the current version, and
 * whenever `stillUsed` reports ciphertexts under it (cells not yet rewrapped, files not yet
 * re-encrypted): they would become unreadable for good.
 */
export async function retire(ring: Keyring, ref: KeyRef, stillUsed: (ref: KeyRef) => Promise<number> | number, now = new Date()): Promise<Keyring> {
  keyFor(ring, ref);
  if (ring.current.id === ref.id && ring.current.version === ref.version)
    throw new SluiceError("CONFLICT", `key ${ref.id} version ${ref.version} is the current key; rotate first, then retire it`, { retryable: false });
  const uses = await stillUsed(ref);
  if (uses > 0)
    throw new SluiceError(
      "CONFLICT",
      `key ${ref.id} version ${ref.version} still protects ${uses} value${uses === 1 ? "" : "s"}; rewrap them before retiring it`,
      {
        retryable: false,
        details: { ...ref, uses },
      },
    );
  return {
    ...ring,
    keys: ring.keys.map((k) => (k.id === ref.id && k.version === ref.version ? { ...k, key: undefined, retiredAt: now.toISOString() } : k)),
  };
}

function singleKeyring(key: Buffer, source: string): Keyring {
  // The key's text forms (as a variable or file held it) are masked in everything this process writes.
  registerSecret(key.toString("base64"), key.toString("hex"), key.toString("base64url"));
  return { current: { id: "default", version: 1 }, keys: [{ id: "default", version: 1, key, createdAt: "" }], source };
}

/** 32 bytes written as base64 (44 characters, or 43 unpadded / base64url) or hex (64 characters). */
function decodeKey(text: string, where: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : /^[A-Za-z0-9+/_-]{43}=?$/.test(t) ? Buffer.from(t, "base64") : undefined;
  if (!key || key.length !== KEY_BYTES)
    throw new SluiceError("BAD_CONFIG", `${where} does not hold a 32-byte key (base64 or hex); make one with: openssl rand -base64 32`);
  return key;
}

function checkId(id: string): void {
  if (!KEY_ID.test(id)) throw new SluiceError("USAGE", `key id ${JSON.stringify(id)} must be 1-64 letters, digits, _ or -`);
}

/**
 * Which keyring a process uses: the one named (a file, or an env:/file: reference), else
 * $SLUICE_KEYRING, else `<home>/keyring.json`. File paths come back absolute.
 */
export function keyringSpec(named: string | undefined, home: string): string {
  const spec = named ?? process.env.SLUICE_KEYRING ?? pathJoin(home, "keyring.json");
  return /^(env|file):/.test(spec) ? spec : resolvePath(spec);
}

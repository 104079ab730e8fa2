/**
 * Envelope encryption of files and streams: a data key (DEK) per (run, dataset), wrapped by the
 * keyring's key-encryption key, and the data in authenticated chunks so a 1 GB staged file is
 * encrypted and read back in constant memory.
 *
 * File layout:
 *   "SLE1" · u32 header length · header JSON { v, alg, kid, ver, wrapped, context, salt, chunk }
 *   then chunks: u8 final · u32 plaintext length · AES-256-GCM ciphertext · 16-byte tag
 * - The DEK is wrapped with AES-256-GCM under the KEK named by `kid`/`ver`, its AAD binding the key
 *   reference and the context (run, dataset): a header moved to another dataset's file, or
 *   relabelled with another key, does not unwrap.
 * - Each file encrypts under its own key, HKDF(DEK, random salt, context), so files sharing a
 *   dataset's DEK never share a (key, nonce) pair; the nonce is the chunk index.
 * - Each chunk's AAD holds its index and the final flag (the STREAM construction of Hoang et al.):
 *   chunks reordered, dropped, duplicated or cut after a non-final chunk fail to decrypt, and a
 *   plaintext chunk is released only after its tag has been checked.
 * - The header is not encrypted (it holds no secret) and names the key id and version, so a
 *   reader picks the right KEK and `keys list` users can tell what a rotation still has to cover.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open } from "node:fs/promises";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { SluiceError } from "../errors.js";
import { currentKey, keyFor, type KeyRef, type Keyring } from "./keyring.js";

const MAGIC = Buffer.from("SLE1", "ascii");
const TAG = 16;
const NONCE = 12;
/** 64 KiB chunks, as age uses: 16 bytes of tag per chunk (0.02%), and little memory per stream. */
export const DEFAULT_CHUNK = 64 * 1024;
const MAX_CHUNK = 16 * 1024 * 1024;
const MAX_HEADER = 64 * 1024;

/** What a data key is for: it is bound to this, and a file of another run or dataset is refused. */
export interface EnvelopeContext {
  runId: string;
  dataset: string;
}

export interface DataKey {
  key: Buffer;
  ref: KeyRef;
  /** The DEK wrapped by the KEK (base64url of nonce ‖ ciphertext ‖ tag): safe to store beside the data. */
  wrapped: string;
  context: EnvelopeContext;
}

export interface EnvelopeHeader {
  v: 1;
  alg: "AES-256-GCM";
  kid: string;
  ver: number;
  wrapped: string;
  context: EnvelopeContext;
  salt: string;
  chunk: number;
}

/** A new random data key for a (run, dataset), wrapped by the keyring's current key. */
export function createDataKey(ring: Keyring, context: EnvelopeContext): DataKey {
  const { ref, key: kek } = currentKey(ring);
  const key = randomBytes(32);
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv("aes-256-gcm", kek, nonce);
  cipher.setAAD(wrapAad(ref, context));
  const ct = Buffer.concat([cipher.update(key), cipher.final()]);
  return { key, ref, wrapped: Buffer.concat([nonce, ct, cipher.getAuthTag()]).toString("base64url"), context };
}

/** The data key behind a wrapped one; DECRYPT_FAILED when the KEK, the reference or the context do not match. */
export function unwrapDataKey(ring: Keyring, ref: KeyRef, wrapped: string, context: EnvelopeContext): DataKey {
  const raw = Buffer.from(wrapped, "base64url");
  const decipher = createDecipheriv("aes-256-gcm", keyFor(ring, ref), raw.subarray(0, NONCE));
  decipher.setAAD(wrapAad(ref, context));
  decipher.setAuthTag(raw.subarray(raw.length - TAG));
  try {
    const key = Buffer.concat([decipher.update(raw.subarray(NONCE, raw.length - TAG)), decipher.final()]);
    return { key, ref, wrapped, context };
  } catch {
    throw new SluiceError(
      "DECRYPT_FAILED",
      `the data key of dataset ${context.dataset} (run ${context.runId}) does not unwrap with key ${ref.id} version ${ref.version}`,
      {
        details: { ...context, keyId: ref.id, keyVersion: ref.version },
      },
    );
  }
}

/** Rotation of a wrapped data key: unwrapped with its version, wrapped again with the current one; the data is untouched. */
export function rewrapDataKey(ring: Keyring, dk: { ref: KeyRef; wrapped: string; context: EnvelopeContext }): DataKey {
  const { key } = unwrapDataKey(ring, dk.ref, dk.wrapped, dk.context);
  const { ref, key: kek } = currentKey(ring);
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv("aes-256-gcm", kek, nonce);
  cipher.setAAD(wrapAad(ref, dk.context));
  const ct = Buffer.concat([cipher.update(key), cipher.final()]);
  return { key, ref, wrapped: Buffer.concat([nonce, ct, cipher.getAuthTag()]).toString("base64url"), context: dk.context };
}

/** A transform that turns plaintext into the envelope format under `dk`. */
export function encryptStream(dk: DataKey, opts: { chunkSize?: number } = {}): Transform {
  const chunk = opts.chunkSize ?? DEFAULT_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1 || chunk > MAX_CHUNK)
    throw new SluiceError("BAD_CONFIG", `the envelope chunk size must be 1 byte to 16 MiB, not ${chunk}`);
  const salt = randomBytes(16);
  const header: EnvelopeHeader = {
    v: 1,
    alg: "AES-256-GCM",
    kid: dk.ref.id,
    ver: dk.ref.version,
    wrapped: dk.wrapped,
    context: dk.context,
    salt: salt.toString("base64url"),
    chunk,
  };
  const fileKey = deriveFileKey(dk.key, salt, dk.context);
  const pending = new Pending();
  let index = 0n;
  let started = false;
  const start = (t: Transform) => {
    if (started) return;
    started = true;
    const json = Buffer.from(JSON.stringify(header), "utf8");
    const len = Buffer.alloc(4);
    len.writeUInt32BE(json.length);
    t.push(Buffer.concat([MAGIC, len, json]));
  };
  return new Transform({
    transform(data: Buffer, _enc, cb: TransformCallback) {
      start(this);
      pending.add(data);
      // Keep at least one byte back: only at the end is it known which chunk is the final one.
      while (pending.length > chunk) this.push(sealChunk(fileKey, index++, false, pending.take(chunk)));
      cb();
    },
    flush(cb: TransformCallback) {
      start(this);
      this.push(sealChunk(fileKey, index++, true, pending.take(pending.length)));
      cb();
    },
  });
}

export interface DecryptOptions {
  /** Refuse a file whose context is not this (a file of another run or dataset put in its place). */
  expect?: Partial<EnvelopeContext>;
  /** Called with the header once it is read (before any plaintext). */
  onHeader?: (h: EnvelopeHeader) => void;
}

/** A transform from the envelope format back to plaintext; fails with DECRYPT_FAILED on any tampering. */
export function decryptStream(ring: Keyring, opts: DecryptOptions = {}): Transform {
  const pending = new Pending();
  let fileKey: Buffer | undefined;
  let maxChunk = 0;
  let index = 0n;
  let done = false;
  return new Transform({
    transform(data: Buffer, _enc, cb: TransformCallback) {
      try {
        pending.add(data);
        if (!fileKey) {
          const h = tryHeader(pending);
          if (!h) return cb();
          checkExpected(h, opts.expect);
          opts.onHeader?.(h);
          const dk = unwrapDataKey(ring, { id: h.kid, version: h.ver }, h.wrapped, h.context);
          fileKey = deriveFileKey(dk.key, Buffer.from(h.salt, "base64url"), h.context);
          maxChunk = h.chunk;
        }
        for (;;) {
          if (pending.length === 0) break;
          if (done) throw broken("has data after its final chunk");
          if (pending.length < 5) break;
          const head = pending.peek(5);
          const final = head[0] === 1;
          if (head[0]! > 1) throw broken(`has a damaged chunk header at chunk ${index}`);
          const len = head.readUInt32BE(1);
          if (len > maxChunk) throw broken(`has a chunk longer than its declared chunk size at chunk ${index}`);
          if (pending.length < 5 + len + TAG) break;
          pending.take(5);
          const body = pending.take(len + TAG);
          this.push(openChunk(fileKey, index++, final, body));
          if (final) done = true;
        }
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      if (!fileKey) return cb(broken("ends before its header"));
      if (!done) return cb(broken(`ends after chunk ${index} without its final chunk: it was truncated`));
      cb();
    },
  });
}

/** Encrypt a file to another (mode 0600), streaming. */
export async function encryptFile(src: string, dst: string, dk: DataKey, opts: { chunkSize?: number } = {}): Promise<void> {
  await pipeline(createReadStream(src), encryptStream(dk, opts), createWriteStream(dst, { mode: 0o600 }));
}

/** Decrypt a file to another, streaming; on failure `dst` may hold the authenticated chunks before the bad one. */
export async function decryptFile(src: string, dst: string, ring: Keyring, opts: DecryptOptions = {}): Promise<void> {
  await pipeline(createReadStream(src), decryptStream(ring, opts), createWriteStream(dst, { mode: 0o600 }));
}

/** A readable of an encrypted file's plaintext, for readers that parse as they go. */
export function openDecrypted(path: string, ring: Keyring, opts: DecryptOptions = {}): Readable {
  const out = decryptStream(ring, opts);
  const src = createReadStream(path);
  src.on("error", (err) => out.destroy(err));
  // A reader that stops early (a sample of the first rows) closes the file too.
  out.on("close", () => src.destroy());
  return src.pipe(out);
}

/** A small payload (a JSON document, a manifest) in the same format, in memory. */
export function encryptBuffer(dk: DataKey, data: Buffer, opts: { chunkSize?: number } = {}): Promise<Buffer> {
  return collect(encryptStream(dk, opts), data);
}

export function decryptBuffer(ring: Keyring, data: Buffer, opts: DecryptOptions = {}): Promise<Buffer> {
  return collect(decryptStream(ring, opts), data);
}

/** The header of an encrypted file, or undefined when the file is not in the envelope format. */
export async function readEnvelopeHeader(path: string): Promise<EnvelopeHeader | undefined> {
  const fh = await open(path, "r");
  try {
    const first = Buffer.alloc(8);
    const { bytesRead } = await fh.read(first, 0, 8, 0);
    if (bytesRead < 8 || !first.subarray(0, 4).equals(MAGIC)) return undefined;
    const len = first.readUInt32BE(4);
    if (len > MAX_HEADER) return undefined;
    const json = Buffer.alloc(len);
    await fh.read(json, 0, len, 8);
    return parseHeader(json);
  } finally {
    await fh.close();
  }
}

function sealChunk(fileKey: Buffer, index: bigint, final: boolean, plain: Buffer): Buffer {
  const cipher = createCipheriv("aes-256-gcm", fileKey, chunkNonce(index));
  cipher.setAAD(chunkAad(index, final));
  const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
  const head = Buffer.alloc(5);
  head[0] = final ? 1 : 0;
  head.writeUInt32BE(plain.length, 1);
  return Buffer.concat([head, ct, cipher.getAuthTag()]);
}

function openChunk(fileKey: Buffer, index: bigint, final: boolean, body: Buffer): Buffer {
  const decipher = createDecipheriv("aes-256-gcm", fileKey, chunkNonce(index));
  decipher.setAAD(chunkAad(index, final));
  decipher.setAuthTag(body.subarray(body.length - TAG));
  try {
    return Buffer.concat([decipher.update(body.subarray(0, body.length - TAG)), decipher.final()]);
  } catch {
    throw broken(`fails authentication at chunk ${index}: it was altered, reordered or cut`);
  }
}

function chunkNonce(index: bigint): Buffer {
  const n = Buffer.alloc(NONCE);
  n.writeBigUInt64BE(index, 4);
  return n;
}

function chunkAad(index: bigint, final: boolean): Buffer {
  const a = Buffer.alloc(18 + 9);
  a.write("sluice-envelope-v1", 0, "ascii");
  a.writeBigUInt64BE(index, 18);
  a[26] = final ? 1 : 0;
  return a;
}

function deriveFileKey(dek: Buffer, salt: Buffer, context: EnvelopeContext): Buffer {
  return Buffer.from(hkdfSync("sha256", dek, salt, `sluice envelope file v1 ${JSON.stringify([context.runId, context.dataset])}`, 32));
}

function wrapAad(ref: KeyRef, context: EnvelopeContext): Buffer {
  return Buffer.from(JSON.stringify(["sluice-dek-v1", ref.id, ref.version, context.runId, context.dataset]), "utf8");
}

function tryHeader(pending: Pending): EnvelopeHeader | undefined {
  if (pending.length < 8) return undefined;
  const first = pending.peek(8);
  if (!first.subarray(0, 4).equals(MAGIC)) throw broken("is not in the Sluice envelope format");
  const len = first.readUInt32BE(4);
  if (len > MAX_HEADER) throw broken("has a header too large to be one");
  if (pending.length < 8 + len) return undefined;
  pending.take(8);
  const h = parseHeader(pending.take(len));
  if (!h) throw broken("has a damaged header");
  return h;
}

function parseHeader(json: Buffer): EnvelopeHeader | undefined {
  try {
    const h = JSON.parse(json.toString("utf8")) as EnvelopeHeader;
    const ok =
      h.v === 1 &&
      typeof h.kid === "string" &&
      Number.isInteger(h.ver) &&
      typeof h.wrapped === "string" &&
      typeof h.salt === "string" &&
      Number.isInteger(h.chunk) &&
      h.chunk > 0 &&
      h.chunk <= MAX_CHUNK &&
      typeof h.context?.runId === "string" &&
      typeof h.context?.dataset === "string";
    return ok ? h : undefined;
  } catch {
    return undefined;
  }
}

function checkExpected(h: EnvelopeHeader, expect: Partial<EnvelopeContext> | undefined): void {
  if (!expect) return;
  if ((expect.runId !== undefined && expect.runId !== h.context.runId) || (expect.dataset !== undefined && expect.dataset !== h.context.dataset))
    throw new SluiceError(
      "DECRYPT_FAILED",
      `the encrypted file belongs to dataset ${h.context.dataset} of run ${h.context.runId}, not to ${expect.dataset ?? h.context.dataset} of run ${expect.runId ?? h.context.runId}`,
    );
}

function broken(why: string): SluiceError {
  return new SluiceError("DECRYPT_FAILED", `the encrypted data ${why}`);
}

function collect(t: Transform, data: Buffer): Promise<Buffer> {
  return new Promise((res, rej) => {
    const out: Buffer[] = [];
    t.on("data", (b: Buffer) => out.push(b));
    t.on("error", rej);
    t.on("end", () => res(Buffer.concat(out)));
    t.end(data);
  });
}

/** Bytes received but not yet used, without concatenating everything on every arrival. */
class Pending {
  private parts: Buffer[] = [];
  length = 0;
  add(b: Buffer): void {
    if (b.length === 0) return;
    this.parts.push(b);
    this.length += b.length;
  }
  peek(n: number): Buffer {
    if (this.parts[0]!.length >= n) return this.parts[0]!.subarray(0, n);
    const joined = Buffer.concat(this.parts);
    this.parts = [joined];
    return joined.subarray(0, n);
  }
  take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const head = this.parts[0]!;
    let out: Buffer;
    if (head.length >= n) {
      out = head.subarray(0, n);
      if (head.length === n) this.parts.shift();
      else this.parts[0] = head.subarray(n);
    } else {
      const joined = Buffer.concat(this.parts);
      out = joined.subarray(0, n);
      this.parts = joined.length > n ? [joined.subarray(n)] : [];
    }
    this.length -= n;
    return out;
  }
}

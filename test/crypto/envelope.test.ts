/**
 * Envelope encryption: a multi-MB file through the streams and back, byte for byte; a file
 * truncated, with chunks reordered or a bit flipped, or presented as another dataset's, failing.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { scratch } from "../helpers.js";
import { addVersion, newKeyring } from "../../src/crypto/keyring.js";
import {
  createDataKey,
  decryptBuffer,
  decryptFile,
  DEFAULT_CHUNK,
  encryptBuffer,
  encryptFile,
  readEnvelopeHeader,
  rewrapDataKey,
  unwrapDataKey,
} from "../../src/crypto/envelope.js";

const dir = scratch();
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("envelope encryption", () => {
  const ring = newKeyring("kek");
  const context = { runId: "run-1", dataset: "accounts" };
  let work: string;
  let plainPath: string;
  let plain: Buffer;
  let encPath: string;
  beforeAll(async () => {
    work = dir("sluice-envelope-");
    // 5 MiB and a bit: 81 chunks, the last one partial.
    plain = Buffer.concat([randomBytes(5 * 1024 * 1024), Buffer.from("tail of the file\n")]);
    plainPath = join(work, "page.ndjson");
    writeFileSync(plainPath, plain);
    encPath = join(work, "page.ndjson.sle");
    await encryptFile(plainPath, encPath, createDataKey(ring, context));
  });

  it("round-trips a multi-MB file and names its key in the header", async () => {
    const out = join(work, "back.ndjson");
    await decryptFile(encPath, out, ring, { expect: context });
    expect(sha(readFileSync(out))).toBe(sha(plain));
    const h = await readEnvelopeHeader(encPath);
    expect(h).toMatchObject({ v: 1, alg: "AES-256-GCM", kid: "kek", ver: 1, context, chunk: DEFAULT_CHUNK });
    const chunks = Math.ceil(plain.length / DEFAULT_CHUNK);
    expect(statSync(encPath).size).toBe(8 + headerLength(readFileSync(encPath)) + plain.length + chunks * (5 + 16));
    expect(readFileSync(encPath).includes(plain.subarray(1000, 1032))).toBe(false);
    expect(await readEnvelopeHeader(plainPath)).toBeUndefined();
  });

  it("round-trips empty and small payloads in memory", async () => {
    const dk = createDataKey(ring, context);
    for (const data of [Buffer.alloc(0), Buffer.from("x"), randomBytes(DEFAULT_CHUNK), randomBytes(DEFAULT_CHUNK + 1)])
      expect((await decryptBuffer(ring, await encryptBuffer(dk, data))).equals(data)).toBe(true);
  });

  const fails = async (bytes: Buffer, opts = {}) => {
    const p = join(work, `bad-${Math.random().toString(36).slice(2)}`);
    writeFileSync(p, bytes);
    return decryptFile(p, `${p}.out`, ring, opts).then(
      () => "decrypted",
      (e: { code?: string; message: string }) => `${e.code}: ${e.message}`,
    );
  };

  it("refuses a truncated file: the final chunk dropped, or cut in the middle of a chunk", async () => {
    const enc = readFileSync(encPath);
    const start = 8 + headerLength(enc);
    const record = 5 + DEFAULT_CHUNK + 16;
    expect(await fails(enc.subarray(0, start + 10 * record))).toMatch(/^DECRYPT_FAILED: .*truncated/);
    expect(await fails(enc.subarray(0, start + 10 * record + 100))).toMatch(/^DECRYPT_FAILED: .*truncated/);
    expect(await fails(enc.subarray(0, 20))).toMatch(/^DECRYPT_FAILED/);
  });

  it("refuses reordered and duplicated chunks, and a flipped bit", async () => {
    const enc = readFileSync(encPath);
    const start = 8 + headerLength(enc);
    const record = 5 + DEFAULT_CHUNK + 16;
    const rec = (i: number) => enc.subarray(start + i * record, start + (i + 1) * record);
    const swapped = Buffer.concat([enc.subarray(0, start), rec(1), rec(0), enc.subarray(start + 2 * record)]);
    expect(await fails(swapped)).toMatch(/^DECRYPT_FAILED: .*chunk 0/);
    const duplicated = Buffer.concat([enc.subarray(0, start + 3 * record), rec(2), enc.subarray(start + 3 * record)]);
    expect(await fails(duplicated)).toMatch(/^DECRYPT_FAILED: .*chunk 3/);
    const flipped = Buffer.from(enc);
    flipped[start + 5 * record + 77]! ^= 0x80;
    expect(await fails(flipped)).toMatch(/^DECRYPT_FAILED: .*chunk 5/);
  });

  it("refuses a file of another dataset put in this one's place, and a header moved onto another file", async () => {
    const other = join(work, "other.sle");
    await encryptFile(plainPath, other, createDataKey(ring, { runId: "run-1", dataset: "payments" }));
    expect(await fails(readFileSync(other), { expect: context })).toMatch(/^DECRYPT_FAILED: .*belongs to dataset payments/);
    // The header of one file (its wrapped key, salt) on the chunks of another does not decrypt.
    const a = readFileSync(encPath);
    const b = readFileSync(other);
    const mixed = Buffer.concat([a.subarray(0, 8 + headerLength(a)), b.subarray(8 + headerLength(b))]);
    expect(await fails(mixed)).toMatch(/^DECRYPT_FAILED/);
  });

  it("unwraps data keys only with their own key and context, and rewraps them on rotation", () => {
    const dk = createDataKey(ring, context);
    expect(() => unwrapDataKey(ring, dk.ref, dk.wrapped, { ...context, runId: "run-2" })).toThrow(/does not unwrap/);
    expect(() => unwrapDataKey(newKeyring("kek"), dk.ref, dk.wrapped, context)).toThrow(/does not unwrap/);
    const rotated = addVersion(ring);
    const again = rewrapDataKey(rotated, dk);
    expect(again.ref).toEqual({ id: "kek", version: 2 });
    expect(unwrapDataKey(rotated, again.ref, again.wrapped, context).key.equals(dk.key)).toBe(true);
  });
});

function headerLength(enc: Buffer): number {
  return enc.readUInt32BE(4);
}

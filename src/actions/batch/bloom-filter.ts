/**
 * A Bloom filter over strings, for "seen before?" over millions of values in fixed memory: the
 * quality step's unique check uses it in front of its on-disk table, the merge step to find the
 * few keys that may repeat. Hand-written: it is a dozen lines over a typed array, and the
 * packages that offer one allocate per call or hash through crypto, both slower on this path.
 */
/**
 * A fixed 16 MiB Bloom filter (2^27 bits, 3 probes by double hashing of two FNV-1a hashes):
 * under 1% false positives up to about 10 million values, and never a false negative.
 */
export class BloomFilter {
  private readonly bits = new Uint32Array(1 << 22);

  add(key: string): void {
    const [h1, h2] = hashes(key);
    for (let i = 0; i < 3; i++) {
      const b = ((h1 + i * h2) >>> 5) & 0x3fffff;
      this.bits[b]! |= 1 << ((h1 + i * h2) & 31);
    }
  }

  /**
   * True when `key` may have been added before (false positives are possible, false negatives
   * never); otherwise adds it and answers false. One hashing for the two questions.
   */
  seenOrAdd(key: string): boolean {
    const [h1, h2] = hashes(key);
    return this.probe(h1, h2);
  }

  private probe(h1: number, h2: number): boolean {
    let present = true;
    for (let i = 0; i < 3; i++) {
      const b = ((h1 + i * h2) >>> 5) & 0x3fffff;
      const bit = 1 << ((h1 + i * h2) & 31);
      if ((this.bits[b]! & bit) === 0) {
        present = false;
        this.bits[b]! |= bit;
      }
    }
    return present;
  }

  /** seenOrAdd over bytes `buf[start, end)` (a field of an undecoded stage line). */
  seenOrAddBytes(buf: Uint8Array, start: number, end: number): boolean {
    let a = 0x811c9dc5;
    let b = 0x01000193 ^ (end - start);
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
    }
    return this.probe(a >>> 0, (b >>> 0) | 1);
  }

  mayHave(key: string): boolean {
    const [h1, h2] = hashes(key);
    for (let i = 0; i < 3; i++) {
      const b = ((h1 + i * h2) >>> 5) & 0x3fffff;
      if ((this.bits[b]! & (1 << ((h1 + i * h2) & 31))) === 0) return false;
    }
    return true;
  }
}

function hashes(key: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ key.length;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  return [a >>> 0, (b >>> 0) | 1];
}

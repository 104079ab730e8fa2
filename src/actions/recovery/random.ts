/**
 * Seeded randomness for the strategy bandit: the same seed gives the same draws, so replaying a
 * run (seeded with its run id) makes the same choice, and a test can pin a whole sequence.
 *
 * Written by hand rather than taken from npm: the generator is ten lines and the samplers are
 * textbook, while the maintained packages that offer Beta sampling (e.g. jStat, stdlib) pull in
 * a whole statistics library and mostly draw from Math.random, which cannot be seeded.
 * - cyrb128 (bryc, public domain) hashes the seed string into four 32-bit words;
 * - sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, from PractRand) turns them into a
 *   stream of uniforms; it passes PractRand and BigCrush, which mulberry32 (one 32-bit word of
 *   state) does not;
 * - Gamma by Marsaglia & Tsang (2000), "A simple method for generating gamma variables", with the
 *   boost U^(1/a) for shapes below 1; Beta(a, b) = X / (X + Y) for X ~ Gamma(a), Y ~ Gamma(b).
 */

/** A source of uniforms in [0, 1). */
export type Uniform = () => number;

/** Four 32-bit words from a string (cyrb128). */
function cyrb128(text: string): [number, number, number, number] {
  let h1 = 1779033703,
    h2 = 3144134277,
    h3 = 1013904242,
    h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

/** A seeded generator of uniforms in [0, 1): sfc32 seeded from the string's cyrb128 hash. */
export function seededUniform(seed: string): Uniform {
  let [a, b, c, d] = cyrb128(seed);
  const next = () => {
    a |= 0;
    b |= 0;
    c |= 0;
    d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  // The first outputs of a freshly seeded sfc32 are still close to its seed words; skip a few.
  for (let i = 0; i < 12; i++) next();
  return next;
}

/** A standard normal draw (Marsaglia's polar method). */
export function normal(u: Uniform): number {
  for (;;) {
    const x = 2 * u() - 1;
    const y = 2 * u() - 1;
    const s = x * x + y * y;
    if (s > 0 && s < 1) return x * Math.sqrt((-2 * Math.log(s)) / s);
  }
}

/** A Gamma(shape, 1) draw, shape > 0 (Marsaglia–Tsang). */
export function gamma(u: Uniform, shape: number): number {
  if (!(shape > 0)) throw new RangeError(`gamma shape must be positive, got ${shape}`);
  // For shape < 1: Gamma(a) = Gamma(a + 1) · U^(1/a); the squeeze below needs a ≥ 1.
  if (shape < 1) return gamma(u, shape + 1) * Math.pow(1 - u(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(u);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const w = 1 - u(); // in (0, 1]: log is finite
    if (w < 1 - 0.0331 * x * x * x * x) return d * v;
    if (Math.log(w) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A Beta(alpha, beta) draw in [0, 1]. */
export function betaSample(u: Uniform, alpha: number, beta: number): number {
  const x = gamma(u, alpha);
  const y = gamma(u, beta);
  return x + y === 0 ? 0.5 : x / (x + y);
}

import { distance } from "fastest-levenshtein";

/** The closest candidate to a misspelt word, when it is close enough to be a useful hint. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD < word.length && bestD <= Math.max(1, Math.ceil(word.length / 3)) ? best : undefined;
}

/** `; did you mean "x"?` or nothing. */
export function hint(word: string, candidates: Iterable<string>): string {
  const s = didYouMean(word, candidates);
  return s ? `; did you mean "${s}"?` : "";
}

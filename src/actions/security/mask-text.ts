/**
 * Masking the sensitive spans of free text (the `mask` action of a policy on a free-text column),
 * apart from policy.ts because it needs the detectors, which the policy's schema does not.
 */
import { findSensitiveSpans, type DetectOptions, type DetectorKind, type Span } from "./detectors.js";
import { maskValue } from "./policy.js";

/**
 * Free text with its sensitive spans masked: card numbers keep their last `keepLast` digits,
 * every other kind becomes `[kind]`. The spans are found again here, row by row, by the same
 * detectors that classified the column.
 */
export function maskText(text: string, kinds: readonly DetectorKind[], opts: DetectOptions & { keepLast?: number } = {}): string {
  const spans: Span[] = findSensitiveSpans(text, opts, kinds);
  let out = "";
  let at = 0;
  for (const s of spans) {
    const piece = text.slice(s.start, s.end);
    out += text.slice(at, s.start) + (s.kind === "card_number" ? maskValue(piece, opts.keepLast ?? 4) : `[${s.kind}]`);
    at = s.end;
  }
  return out + text.slice(at);
}

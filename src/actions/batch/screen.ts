/**
 * The screen a conversion step leaves for the quality step (dataset `meta.screen`): the rules it
 * checked the typed rows against (the schema's rules, `screeningRules` of quality.ts) and, in a
 * JSON file, each stage part's `_line`s of the rows that broke one. The quality step checks every
 * rule on those rows only and, on the others, only the rules that need the rows before them
 * (`unique`), so it need not decode every column of every row again.
 *
 * A screen holds only while the parts are the ones it names; a step that rewrites parts carries
 * it over (`carryScreen`, the merge step) or leaves it behind, and then the quality step checks
 * every row in full. A carried list may name more rows than broke a rule (never fewer): such a
 * row is just checked in full.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Dataset, DatasetPart } from "./dataset.js";
import type { QualityRuleSpec } from "./model.js";

export interface ScreenMeta {
  rules: QualityRuleSpec[];
  file: string;
}

type Flagged = Record<string, number[]>;

/** Writes `flagged` (part path → lines) to `dir`/screen.json; the dataset's `meta.screen`. */
export async function writeScreen(dir: string, rules: QualityRuleSpec[], flagged: Flagged): Promise<ScreenMeta> {
  const file = join(dir, "screen.json");
  await writeFile(file, JSON.stringify(flagged));
  return { rules, file };
}

async function readFlagged(ds: Dataset): Promise<{ screen: ScreenMeta; flagged: Flagged } | undefined> {
  const screen = ds.meta?.screen as ScreenMeta | undefined;
  if (!screen) return undefined;
  try {
    const flagged = JSON.parse(await readFile(screen.file, "utf8")) as Flagged;
    return ds.parts.some((p) => Array.isArray(flagged[p.path])) ? { screen, flagged } : undefined;
  } catch {
    return undefined; // gone (a cleaned-up run folder): check in full
  }
}

/**
 * Per screened part, the lines of the rows that broke a screening rule, when `ds` was screened
 * against exactly `rules`; undefined otherwise (other rules, parts a later step rewrote without
 * carrying the screen). A part missing from the map (its unit had too many rows to list, see
 * convert-unit.ts) is checked in full.
 */
export async function screenedLines(ds: Dataset, rules: QualityRuleSpec[]): Promise<Map<string, Set<number>> | undefined> {
  const read = await readFlagged(ds);
  if (!read || JSON.stringify(read.screen.rules) !== JSON.stringify(rules)) return undefined;
  const out = new Map<string, Set<number>>();
  for (const p of ds.parts) {
    const lines = read.flagged[p.path];
    if (Array.isArray(lines)) out.set(p.path, new Set(lines));
  }
  return out;
}

/**
 * The screen of `ds` for parts rewritten from its rows, one or more per source (the rows copied
 * as they were, some left out): each new part gets the flagged lines of every old part of its
 * source. Undefined when `ds` has no screen.
 */
export async function carryScreen(ds: Dataset, parts: readonly DatasetPart[], dir: string): Promise<ScreenMeta | undefined> {
  const read = await readFlagged(ds);
  if (!read) return undefined;
  // A source with a part that was not screened has no list: its new parts are checked in full.
  const bySource = new Map<string, number[] | undefined>();
  for (const p of ds.parts) {
    const lines = read.flagged[p.path];
    const have = bySource.has(p.source) ? bySource.get(p.source) : [];
    bySource.set(p.source, have && Array.isArray(lines) ? have.concat(lines) : undefined);
  }
  const carried: Flagged = {};
  for (const p of parts) {
    const lines = bySource.has(p.source) ? bySource.get(p.source) : [];
    if (lines) carried[p.path] = lines;
  }
  return writeScreen(dir, read.screen.rules, carried);
}

/**
 * A run's quarantined records, read from the files its steps wrote
 * (`<home>/runs/<run>/artifacts/<step>/quarantine*.ndjson`, one JSON record a line: source, line,
 * step, reasons, record), filtered by reason, for the Quarantine view and its CSV export.
 *
 * Read here rather than through actions/batch (the server layer does not import actions); the
 * format is the stable one `sluice quarantine` reads. Files are streamed line by line: a view
 * keeps the records it shows and counts the rest, so a million rejects cost no million objects.
 */
import { createReadStream, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Workflow } from "../../spec/schema.js";
import { allSteps } from "../../spec/schema.js";

export interface QuarantineRow {
  source: string;
  line: number;
  step: string;
  reasons: string[];
  record: unknown;
}

export interface QuarantineFilter {
  /** Records with a reason containing this text (case-insensitive). */
  reason?: string;
  step?: string;
}

/** Records counted per page view at most; past it the counts say "at least". */
export const SCAN_MAX = 200_000;

export function quarantineFiles(home: string, runId: string, spec: Workflow): string[] {
  return allSteps(spec).flatMap((s) => {
    const dir = join(home, "runs", runId, "artifacts", s.name);
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => /^quarantine.*\.ndjson$/.test(f))
      .sort()
      .map((f) => join(dir, f));
  });
}

function matches(r: QuarantineRow, f: QuarantineFilter): boolean {
  if (f.step && r.step !== f.step) return false;
  if (f.reason) {
    const want = f.reason.toLowerCase();
    if (!r.reasons.some((x) => x.toLowerCase().includes(want))) return false;
  }
  return true;
}

/** Every record of the files, in order; a line that is not a record is skipped (a file cut by a crash). */
export async function* quarantineRecords(files: string[]): AsyncGenerator<QuarantineRow> {
  for (const file of files) {
    const rl = createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Infinity });
    for await (const line of rl) {
      if (!line) continue;
      let r: Partial<QuarantineRow>;
      try {
        r = JSON.parse(line) as Partial<QuarantineRow>;
      } catch {
        continue;
      }
      yield {
        source: String(r.source ?? ""),
        line: Number(r.line ?? 0),
        step: String(r.step ?? ""),
        reasons: Array.isArray(r.reasons) ? r.reasons.map(String) : [],
        record: r.record,
      };
    }
  }
}

export interface QuarantineView {
  shown: QuarantineRow[];
  /** Matching records counted (at most SCAN_MAX scanned). */
  matching: number;
  scanned: number;
  complete: boolean;
  /** The most frequent reasons among every record scanned, for the filter. */
  reasons: { reason: string; count: number }[];
  steps: string[];
}

export async function readQuarantineView(files: string[], f: QuarantineFilter, limit: number): Promise<QuarantineView> {
  const shown: QuarantineRow[] = [];
  const reasons = new Map<string, number>();
  const steps = new Set<string>();
  let matching = 0;
  let scanned = 0;
  let complete = true;
  for await (const r of quarantineRecords(files)) {
    if (scanned >= SCAN_MAX) {
      complete = false;
      break;
    }
    scanned++;
    steps.add(r.step);
    // Reasons name the column and the rule first ("amount: not a decimal: \"12,5\""); the value
    // after the second colon varies per record, so it is left out of the grouping.
    for (const x of r.reasons) {
      const kind = x.split(": ").slice(0, 2).join(": ").slice(0, 120);
      if (reasons.size < 5_000 || reasons.has(kind)) reasons.set(kind, (reasons.get(kind) ?? 0) + 1);
    }
    if (!matches(r, f)) continue;
    matching++;
    if (shown.length < limit) shown.push(r);
  }
  return {
    shown,
    matching,
    scanned,
    complete,
    reasons: [...reasons]
      .map(([reason, count]) => ({ reason, count }))
      .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason))
      .slice(0, 30),
    steps: [...steps].sort(),
  };
}

/**
 * A CSV cell, quoted when needed. A cell starting with = + - @ (or a tab or CR) is prefixed with
 * a quote mark: spreadsheets run such cells as formulas, and records are untrusted input.
 */
export function csvCell(v: string): string {
  const safe = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export async function* quarantineCsv(files: string[], f: QuarantineFilter): AsyncGenerator<string> {
  yield "source,line,step,reasons,record\n";
  let batch = "";
  for await (const r of quarantineRecords(files)) {
    if (!matches(r, f)) continue;
    const record = typeof r.record === "string" ? r.record : JSON.stringify(r.record);
    batch += [r.source, String(r.line), r.step, r.reasons.join("; "), record ?? ""].map(csvCell).join(",") + "\n";
    if (batch.length > 64 * 1024) {
      yield batch;
      batch = "";
    }
  }
  if (batch) yield batch;
}

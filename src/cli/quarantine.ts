/**
 * `sluice quarantine RUN`: every record a run set aside, with where it came from and why.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { SluiceError } from "../errors.js";
import { readQuarantine } from "../actions/batch/dataset.js";
import { withStore } from "./context.js";

export async function quarantineCommand(id: string, o: { json?: boolean; limit: string }): Promise<number> {
  const limit = Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new SluiceError("USAGE", "--limit must be a positive whole number");
  return withStore(async (store, home) => {
    const run = await store.getRun(id);
    if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${id}; list runs with: sluice runs`);
    // Each step keeps its rejects in quarantine*.ndjson (one file per unit when it ran in parallel).
    const files = run.spec.spec.steps.flatMap((s) => {
      const dir = join(home, "runs", id, "artifacts", s.name);
      if (!existsSync(dir)) return [];
      return readdirSync(dir)
        .filter((f) => /^quarantine.*\.ndjson$/.test(f))
        .sort()
        .map((f) => join(dir, f));
    });
    let total = 0;
    const shown: unknown[] = [];
    for (const file of files) {
      for await (const records of readQuarantine(file)) {
        for (const r of records) {
          total++;
          if (shown.length < limit) shown.push(r);
        }
      }
    }
    if (o.json) {
      process.stdout.write(`${JSON.stringify({ run: id, total, records: shown }, null, 2)}\n`);
      return 0;
    }
    for (const r of shown as { source: string; line: number; step: string; reasons: string[] }[])
      process.stdout.write(`${r.source}:${r.line}: [${r.step}] ${r.reasons.join("; ")}\n`);
    process.stdout.write(
      total === 0
        ? `run ${id} quarantined no records\n`
        : `${total} quarantined record${total === 1 ? "" : "s"}${total > shown.length ? ` (first ${shown.length} shown; --limit N for more)` : ""}\n`,
    );
    return 0;
  });
}

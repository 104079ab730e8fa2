/**
 * `data-security/classify_sensitive_data`: which columns of a dataset are sensitive, and what the
 * storage step must do with each. Works on the dataset of any upstream collect or convert step,
 * in any workflow.
 *
 * Reads a sample (default 10,000 rows, spread over the dataset's parts), profiles every column
 * with the detectors (classify.ts), applies the policy (policy.ts), writes the decision as
 * `classification.json` in the step folder, and passes the input dataset on in a new manifest
 * whose `meta.classification` names that file. Outputs carry counts and classes, never a value:
 * they are stored in the state store and shown in the UI.
 *
 * With `failOnUnclassified` (input or policy), a sensitive column the policy does not cover fails
 * the step (BAD_INPUT, naming the columns) after the document is written, so the reason can be read.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isSupportedCountry } from "libphonenumber-js/max";
import { SluiceError } from "../../errors.js";
import type { FileFormat } from "../../formats/index.js";
import type { ActionContext, Outputs } from "../types.js";
import { readDataset, stepFolder, writeDataset } from "../batch/dataset.js";
import { classifyProfile, newProfile, observe, type ColumnProfile } from "./classify.js";
import { CLASSIFICATION_KIND, type ClassificationDocument, type ClassifiedColumn } from "./classification.js";
import { decide, loadPolicy, type PolicyInput } from "./policy.js";
import { sampleDataset } from "./sample.js";

export interface ClassifyInput {
  dataset: string;
  /** Rows to sample. Default 10,000. */
  sample?: number;
  /** Wilson lower bound a class must reach. Default 0.8. */
  threshold?: number;
  policy?: PolicyInput | string;
  failOnUnclassified?: boolean;
  /** Region of phone numbers written without a country code. Default US. */
  region?: string;
  /** Format of raw parts whose extension names none. */
  format?: FileFormat;
}

export async function classifySensitiveData(input: ClassifyInput, ctx: ActionContext): Promise<Outputs> {
  const region = (input.region ?? "US").toUpperCase();
  if (!isSupportedCountry(region))
    throw new SluiceError("BAD_CONFIG", `region ${input.region} is not a country libphonenumber knows (an ISO 3166 alpha-2 code such as US, GB, DE)`, {
      retryable: false,
    });
  const threshold = input.threshold ?? 0.8;
  const requested = input.sample ?? 10_000;
  const policy = await loadPolicy(input.policy);
  const ds = await readDataset(input.dataset);
  const dir = await stepFolder(ctx);

  // A typed dataset names its columns up front: each is listed even when the sample has no rows.
  const profiles = new Map<string, ColumnProfile>((ds.columns ?? []).map((c) => [c.name, newProfile(c.name, c.type)]));
  let rows = 0;
  for await (const batch of sampleDataset(ds, { rows: requested, signal: ctx.signal, ...(input.format ? { format: input.format } : {}) })) {
    for (const c of batch.columns) if (!profiles.has(c.name)) profiles.set(c.name, newProfile(c.name, c.type));
    for (const row of batch.rows)
      for (const [name, value] of row) observe(profiles.get(name) ?? profiles.set(name, newProfile(name)).get(name)!, value, { region });
    rows += batch.rows.length;
    ctx.progress({ rows });
  }

  const names = [...profiles.keys()];
  const classified = [...profiles.values()].map((p) => classifyProfile(p, names, { threshold, region }));
  const decision = decide(policy, classified);
  const columns: ClassifiedColumn[] = classified.map((c) => ({ ...c, rule: decision.rules[c.name]! }));

  const doc: ClassificationDocument = {
    kind: CLASSIFICATION_KIND,
    runId: ctx.runId,
    step: ctx.step,
    dataset: input.dataset,
    createdAt: new Date().toISOString(),
    sample: { requested, rows },
    threshold,
    region,
    columns,
    events: decision.events,
  };
  const classification = join(dir, "classification.json");
  await writeFile(classification, JSON.stringify(doc, null, 2));

  const sensitive = columns.filter((c) => c.class !== "none");
  ctx.log.info("classified columns", { rows, columns: columns.length, sensitive: sensitive.length, events: decision.events.length });
  for (const e of decision.events) {
    if (e.severity === "low") ctx.log.info(`security event: ${e.message}`, { type: e.type, column: e.column });
    else ctx.log.warn(`security event: ${e.message}`, { type: e.type, column: e.column });
  }

  if ((input.failOnUnclassified ?? policy.failOnUnclassified ?? false) && decision.uncovered.length > 0)
    throw new SluiceError(
      "BAD_INPUT",
      `the policy has no rule for sensitive column${decision.uncovered.length > 1 ? "s" : ""} ${decision.uncovered.join(", ")}; add a rule by class or column (see ${classification})`,
      { retryable: false, details: { columns: decision.uncovered, classification } },
    );

  const { kind: _kind, ...rest } = ds;
  const dataset = await writeDataset(dir, { ...rest, step: ctx.step, meta: { ...(ds.meta ?? {}), classification } });
  return {
    columns: columns.map((c) => ({
      name: c.name,
      class: c.class,
      share: c.share,
      sampled: c.sampled,
      lowerBound: c.lowerBound,
      confident: c.confident,
      action: c.rule.action,
      ...(c.contains ? { contains: c.contains } : {}),
      ...(c.testPans ? { testPans: c.testPans } : {}),
    })),
    events: decision.events,
    rowsSampled: rows,
    sensitiveColumns: sensitive.length,
    classification,
    dataset,
  };
}

/**
 * The classification document: what classify_sensitive_data decided, written as
 * `classification.json` in its step folder and named by the dataset it passes on
 * (`meta.classification`), so the storage step reads each column's action from the same record
 * the classifier wrote (and an auditor reads why). Counts and classes only, never a value.
 */
import { readFile } from "node:fs/promises";
import { SluiceError } from "../../errors.js";
import type { Dataset } from "../batch/dataset.js";
import type { ColumnClassification } from "./classify.js";
import type { ResolvedRule, SecurityEvent } from "./policy.js";

export const CLASSIFICATION_KIND = "sluice.dev/classification-v1";

export interface ClassifiedColumn extends ColumnClassification {
  rule: ResolvedRule;
}

export interface ClassificationDocument {
  kind: typeof CLASSIFICATION_KIND;
  runId: string;
  step: string;
  /** The dataset manifest that was classified. */
  dataset: string;
  createdAt: string;
  /** Rows asked for and rows read (the sample spreads over the dataset's parts). */
  sample: { requested: number; rows: number };
  threshold: number;
  region: string;
  columns: ClassifiedColumn[];
  events: SecurityEvent[];
}

/** The classification a dataset carries (meta.classification), or undefined when it has none. */
export async function readClassification(ds: Dataset): Promise<ClassificationDocument | undefined> {
  const ref = ds.meta?.classification;
  if (typeof ref !== "string") return undefined;
  let doc: ClassificationDocument;
  try {
    doc = JSON.parse(await readFile(ref, "utf8")) as ClassificationDocument;
  } catch (err) {
    throw new SluiceError("BAD_INPUT", `classification ${ref} of the dataset from step ${ds.step} cannot be read (${(err as Error).message})`, {
      retryable: false,
    });
  }
  if (doc.kind !== CLASSIFICATION_KIND) throw new SluiceError("BAD_INPUT", `${ref} is not a Sluice classification document`, { retryable: false });
  return doc;
}

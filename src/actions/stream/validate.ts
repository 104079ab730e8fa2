/**
 * base-data-quality/validate_streaming_data: the batch plane's row rules, per record.
 *
 * The rules are the batch ones (`createQualityChecker(rules, columns).check(row)`): required,
 * type, min, max, pattern, allowed. A record that breaks any goes to `batch.rejected` with every
 * reason. Dataset-level rules have no meaning for one record in an endless stream and are refused
 * with BAD_CONFIG naming the rule: `unique` (idempotent storage on the key is what keeps one row
 * per key in a stream; declare `key` on store_streaming_data), `rowCount` and `freshness`.
 *
 * The checker needs the columns, which the decode stage puts on each batch; it is compiled on the
 * first batch (a rule naming an unknown column then fails the pipeline with BAD_CONFIG before
 * anything is written) and again only if a batch brings other columns.
 *
 * `deadLetter` (a destination) is recorded on each batch: the sink dead-letters that batch's
 * rejects there instead of in the destination's quarantine table.
 */
import { SluiceError } from "../../errors.js";
import type { Column, QualityRuleSpec, TypedRow } from "../batch/model.js";
import { createQualityChecker, type QualityChecker } from "../batch/quality.js";
import { streamRuleProblem } from "./rules.js";
import type { RejectedRecord, Stage, StreamBatch, StreamRecord } from "../stream-types.js";
import type { ActionContext, Outputs } from "../types.js";

export interface ValidateStreamInput {
  rules: QualityRuleSpec[];
  deadLetter?: string;
}

export function checkStreamRules(rules: QualityRuleSpec[]): void {
  rules.forEach((r, i) => {
    const problem = streamRuleProblem(r);
    if (problem) throw new SluiceError("BAD_CONFIG", `quality rule ${i + 1}${r.column ? ` (${r.column})` : ""}: ${problem}`, { retryable: false });
  });
}

export async function openValidateStage(input: ValidateStreamInput, ctx: ActionContext): Promise<Stage> {
  checkStreamRules(input.rules);
  let checker: QualityChecker | undefined;
  let checkedColumns: Column[] | undefined;
  const checkerFor = (columns: Column[] | undefined): QualityChecker => {
    if (!columns) {
      throw new SluiceError("BAD_CONFIG", `step ${ctx.step} (validate_streaming_data) needs typed records: put a process_streaming_data step before it`, {
        retryable: false,
      });
    }
    if (checker && (columns === checkedColumns || sameColumns(columns, checkedColumns!))) return checker;
    checker = createQualityChecker(input.rules, columns);
    checkedColumns = columns;
    return checker;
  };
  return {
    kind: "transform",
    stage: {
      async process(batch: StreamBatch): Promise<StreamBatch> {
        const out: StreamBatch = input.deadLetter !== undefined ? { ...batch, deadLetter: input.deadLetter } : { ...batch };
        if (input.rules.length === 0 || batch.records.length === 0) return out;
        const check = checkerFor(batch.columns);
        const records: StreamRecord[] = [];
        const rejected: RejectedRecord[] = [...batch.rejected];
        for (const rec of batch.records) {
          const seq = Number(rec.id);
          const reasons = check.check(rec.value as TypedRow, Number.isSafeInteger(seq) ? seq : 0);
          if (reasons.length === 0) records.push(rec);
          else {
            const r: RejectedRecord = { record: rec, reasons, step: ctx.step };
            if (rec.raw !== undefined) r.raw = rec.raw;
            rejected.push(r);
          }
        }
        out.records = records;
        out.rejected = rejected;
        return out;
      },
    },
  };
}

/** As an ordinary step: check the rules can apply to a stream and say where rejects will go. */
export async function validateStreamingData(input: ValidateStreamInput): Promise<Outputs> {
  checkStreamRules(input.rules);
  return {
    mode: "check",
    note: "records are validated only when this step runs in a continuous group; this run checked the rules",
    rules: input.rules.length,
    deadLetter: input.deadLetter ?? null,
  };
}

function sameColumns(a: Column[], b: Column[]): boolean {
  return a.length === b.length && a.every((c, i) => c.name === b[i]!.name && c.type === b[i]!.type && c.scale === b[i]!.scale);
}

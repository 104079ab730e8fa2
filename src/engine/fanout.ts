/**
 * Fan-out (`forEach`): the items a step runs over, their step names, when too many failed, and
 * the parent's outputs. Pure functions; the scheduler in execute.ts drives the items.
 */
import { SluiceError } from "../errors.js";
import { conditionBody, evaluate, evaluateExpression, type ExpressionScope } from "../spec/expressions.js";
import type { Step } from "../spec/schema.js";

/** The step name of item `index` of fan-out `parent`, as recorded in the store: `load[3]`. */
export function itemName(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/** The fan-out a step name is an item of (`load[3]` → `load`), or undefined for any other step. */
export function fanOutOf(step: string): string | undefined {
  const i = step.lastIndexOf("[");
  return i > 0 && step.endsWith("]") && /^\d+$/.test(step.slice(i + 1, -1)) ? step.slice(0, i) : undefined;
}

/** The list a `forEach` gives in this scope; anything else is a clear error. */
export function forEachItems(step: Step, scope: ExpressionScope): unknown[] {
  const spec = step.forEach!;
  let value: unknown = Array.isArray(spec) ? evaluate(spec, scope) : evaluateExpression(conditionBody(spec), scope);
  // A string parameter may carry a JSON list (`--param files='["a","b"]'`).
  if (typeof value === "string" && value.trim().startsWith("[")) {
    try {
      value = JSON.parse(value);
    } catch {
      // Not JSON: reported as a string below.
    }
  }
  if (!Array.isArray(value)) {
    const what =
      value === null || value === undefined ? "nothing" : typeof value === "object" ? "an object" : `${typeof value} ${JSON.stringify(value).slice(0, 60)}`;
    throw new SluiceError("BAD_INPUT", `forEach of step ${step.name} gave ${what}, not a list`);
  }
  return value;
}

/** Most items that may fail before the step fails: failureThreshold below 1 is a share, else a count. */
export function failureTolerance(step: Step, items: number): number {
  const t = step.failureThreshold;
  if (t === undefined) return step.continueOnError ? Infinity : 0;
  return t < 1 ? Math.floor(t * items) : t;
}

/** The whole fan-out's outputs: every item's outputs in item order (null for an item that did not succeed) and the tallies. */
export function fanOutOutputs(items: { status: string; outputs: Record<string, unknown> | null }[]): Record<string, unknown> {
  let succeeded = 0,
    failed = 0,
    skipped = 0;
  for (const i of items) {
    if (i.status === "succeeded") succeeded++;
    else if (i.status === "failed") failed++;
    else skipped++;
  }
  return { items: items.map((i) => (i.status === "succeeded" ? i.outputs : null)), count: items.length, succeeded, failed, skipped };
}

/** The definition an item runs: the parent's, without what belongs to the fan-out as a whole. */
export function itemStep(parent: Step, index: number): Step {
  const { forEach: _f, parallelism: _p, failureThreshold: _t, dependsOn: _d, ...rest } = parent;
  return { ...rest, name: itemName(parent.name, index) };
}

/** True when the step's condition reads the current item, so it is decided per item, not once. */
export function conditionPerItem(step: Step): boolean {
  return step.forEach !== undefined && step.when !== undefined && /\b(item|index)\b/.test(step.when);
}

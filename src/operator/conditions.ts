/**
 * `metav1.Condition` bookkeeping: a condition's lastTransitionTime moves only when its status
 * changes, so a status computed again from the same facts is equal to the one already written
 * (and the controller writes nothing, which keeps its own watch quiet).
 */
import type { Condition } from "./kube.js";

export type ConditionInput = Omit<Condition, "lastTransitionTime" | "observedGeneration">;

/** The conditions with `next` set: its transition time kept from `previous` when the status is the same. */
export function withCondition(previous: Condition[] | undefined, next: ConditionInput, now: string, generation: number | undefined): Condition[] {
  const list = previous ?? [];
  const old = list.find((c) => c.type === next.type);
  const cond: Condition = {
    type: next.type,
    status: next.status,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    lastTransitionTime: old && old.status === next.status ? old.lastTransitionTime : now,
    reason: next.reason,
    message: next.message,
  };
  return old ? list.map((c) => (c.type === next.type ? cond : c)) : [...list, cond];
}

/** The conditions with each of `next` set, in order; conditions of other types are kept. */
export function withConditions(previous: Condition[] | undefined, next: ConditionInput[], now: string, generation: number | undefined): Condition[] {
  return next.reduce((acc, c) => withCondition(acc, c, now, generation), previous ?? []);
}

/** The conditions without those of `types` (a WorkflowRun's Complete/Failed before its run ends). */
export function withoutConditions(previous: Condition[] | undefined, types: string[]): Condition[] {
  return (previous ?? []).filter((c) => !types.includes(c.type));
}

/**
 * Two statuses say the same thing. Key order does not matter: an API server returns the
 * fields in its own order.
 */
export function sameStatus(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value && typeof value === "object" && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))
      : value,
  );
}

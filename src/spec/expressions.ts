/**
 * `${{ ... }}` expressions in `with:` and `exec:` values.
 *
 * Deliberately small: a reference is a dotted path into one of a few roots, nothing more, so
 * that every reference can be checked when the file is validated, long before a run starts.
 *   params.NAME                 a workflow parameter
 *   steps.STEP.outputs.KEY...   an output of an upstream step
 *   event.data.PATH...          the payload of the event that started the run
 *   run.id | run.workflow       the run itself
 */
import { SluiceError } from "../errors.js";

const EXPR = /\$\{\{\s*([^}]*?)\s*\}\}/g;
const WHOLE_EXPR = /^\$\{\{\s*([^}]*?)\s*\}\}$/;
const SEGMENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export type Reference =
  | { root: "params"; name: string }
  | { root: "steps"; step: string; path: string[] }
  | { root: "event"; path: string[] }
  | { root: "run"; field: "id" | "workflow" };

export interface ExpressionScope {
  params: Record<string, unknown>;
  steps: Record<string, { outputs: Record<string, unknown> | undefined }>;
  event?: { data?: unknown } | undefined;
  run: { id: string; workflow: string };
}

/** Every expression text inside a string, in order. */
export function findExpressions(text: string): string[] {
  return [...text.matchAll(EXPR)].map((m) => m[1]!);
}

/** Parse one expression body (`params.source`), or explain in one sentence why it is not valid. */
export function parseReference(expr: string): Reference | { error: string } {
  const parts = expr.split(".");
  if (parts.some((p) => !SEGMENT.test(p)))
    return { error: `"${expr}" is not a reference; write params.NAME, steps.STEP.outputs.KEY, event.data.KEY or run.id` };
  const [root, ...rest] = parts as [string, ...string[]];
  switch (root) {
    case "params":
      if (rest.length !== 1) return { error: `"${expr}" should be params.NAME` };
      return { root: "params", name: rest[0]! };
    case "steps":
      if (rest.length < 3 || rest[1] !== "outputs") return { error: `"${expr}" should be steps.STEP.outputs.KEY` };
      return { root: "steps", step: rest[0]!, path: rest.slice(2) };
    case "event":
      if (rest[0] !== "data") return { error: `"${expr}" should be event.data or event.data.KEY` };
      return { root: "event", path: rest.slice(1) };
    case "run":
      if (rest.length !== 1 || (rest[0] !== "id" && rest[0] !== "workflow"))
        return { error: `"${expr}" should be run.id or run.workflow` };
      return { root: "run", field: rest[0] };
    default:
      return { error: `"${expr}" starts with an unknown root "${root}"; use params, steps, event or run` };
  }
}

/**
 * Replace expressions in any JSON-like value. A string that is exactly one expression takes the
 * referenced value with its type (a number stays a number); otherwise values are interpolated as text.
 */
export function evaluate(value: unknown, scope: ExpressionScope): unknown {
  if (typeof value === "string") return evaluateString(value, scope);
  if (Array.isArray(value)) return value.map((v) => evaluate(v, scope));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const r = evaluate(v, scope);
      if (r !== undefined) out[k] = r;
    }
    return out;
  }
  return value;
}

function evaluateString(text: string, scope: ExpressionScope): unknown {
  const whole = WHOLE_EXPR.exec(text);
  if (whole) return resolve(whole[1]!, scope);
  if (!text.includes("${{")) return text;
  return text.replace(EXPR, (_m, expr: string) => {
    const v = resolve(expr, scope);
    return typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v);
  });
}

function resolve(expr: string, scope: ExpressionScope): unknown {
  const ref = parseReference(expr);
  if ("error" in ref) throw new SluiceError("BAD_INPUT", `expression ${ref.error}`);
  switch (ref.root) {
    case "params":
      // Validation has checked the name is declared; an optional parameter left unset is undefined,
      // so the action's own default applies.
      return scope.params[ref.name];
    case "run":
      return scope.run[ref.field];
    case "event":
      return dig(scope.event?.data, ref.path, `event.data.${ref.path.join(".")}`);
    case "steps": {
      const step = scope.steps[ref.step];
      if (!step?.outputs) throw new SluiceError("BAD_INPUT", `expression steps.${ref.step}: that step has no outputs yet`);
      return dig(step.outputs, ref.path, `steps.${ref.step}.outputs.${ref.path.join(".")}`);
    }
  }
}

function dig(value: unknown, path: string[], label: string): unknown {
  let cur = value;
  for (const key of path) {
    if (cur === null || typeof cur !== "object" || !(key in (cur as object)))
      throw new SluiceError("BAD_INPUT", `expression ${label}: no such value`);
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/**
 * Turning `--param k=v` text (or API JSON values) into the typed parameters a run starts with.
 */
import { SluiceError } from "../errors.js";
import type { Workflow } from "./schema.js";
import { hint } from "./suggest.js";

export type ParamValue = string | number | boolean;

export function resolveParams(wf: Workflow, given: Record<string, unknown>): Record<string, ParamValue> {
  const declared = wf.spec.params ?? {};
  const out: Record<string, ParamValue> = {};
  for (const name of Object.keys(given)) {
    if (!(name in declared))
      throw new SluiceError(
        "USAGE",
        `workflow "${wf.metadata.name}" has no parameter "${name}"${hint(name, Object.keys(declared))}` +
          (Object.keys(declared).length ? ` (it takes: ${Object.keys(declared).join(", ")})` : " (it takes none)"),
      );
  }
  for (const [name, spec] of Object.entries(declared)) {
    const raw = name in given ? given[name] : spec.default;
    if (raw === undefined) {
      if (spec.required !== false && spec.default === undefined)
        throw new SluiceError("USAGE", `parameter "${name}" of workflow "${wf.metadata.name}" is required: pass --param ${name}=VALUE`);
      continue;
    }
    out[name] = coerce(name, spec.type, raw);
  }
  return out;
}

function coerce(name: string, type: "string" | "integer" | "number" | "boolean", raw: unknown): ParamValue {
  const text = String(raw);
  switch (type) {
    case "string":
      return text;
    case "integer":
      if (!/^-?\d+$/.test(text)) throw new SluiceError("USAGE", `parameter "${name}" must be an integer, not "${text}"`);
      return Number(text);
    case "number":
      if (text.trim() === "" || !Number.isFinite(Number(text))) throw new SluiceError("USAGE", `parameter "${name}" must be a number, not "${text}"`);
      return Number(text);
    case "boolean":
      if (text === "true" || text === "false") return text === "true";
      throw new SluiceError("USAGE", `parameter "${name}" must be true or false, not "${text}"`);
  }
}

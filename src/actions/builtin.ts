/**
 * The built-in catalogue: the founding document's actions, attached to their implementations.
 */
import { SluiceError } from "../errors.js";
import { createRegistry, type ActionRegistry } from "./registry.js";
import { SEED_SIGNATURES, type SeedSignature } from "./seed-catalogue.js";
import type { ActionDefinition } from "./types.js";

/** Implementations by `owner/action`, filled in as capabilities land. */
const IMPLEMENTATIONS: Record<string, ActionDefinition["run"]> = {};

export function builtinRegistry(): ActionRegistry {
  return createRegistry(
    SEED_SIGNATURES.map((s) => ({
      kind: s.kind,
      owner: s.owner,
      action: s.action,
      description: s.description,
      input: s.input,
      run: IMPLEMENTATIONS[`${s.owner}/${s.action}`] ?? awaitingCapability(s),
    })),
  );
}

/** Until its capability lands, an action fails honestly instead of pretending to succeed. */
function awaitingCapability(s: SeedSignature): ActionDefinition["run"] {
  return async () => {
    throw new SluiceError("NOT_IMPLEMENTED", `${s.owner}/${s.action} is not available yet: it arrives with ${s.capability}`);
  };
}

/**
 * The action catalogue: every registered agent/action and service/action pair.
 * Implements the spec layer's ActionLookup so validation can check `with:` blocks.
 */
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { SluiceError } from "../errors.js";
import type { ActionKind, ActionLookup } from "../spec/catalogue.js";
import type { ActionDefinition } from "./types.js";

export interface ActionRegistry extends ActionLookup {
  get(kind: ActionKind, owner: string, action: string): ActionDefinition | undefined;
  register(def: ActionDefinition): void;
  all(): ActionDefinition[];
}

export function createRegistry(defs: ActionDefinition[] = []): ActionRegistry {
  const byKey = new Map<string, ActionDefinition>();
  const key = (kind: string, owner: string, action: string) => `${kind}\0${owner}\0${action}`;
  const registry: ActionRegistry = {
    get: (kind, owner, action) => byKey.get(key(kind, owner, action)),
    find: (kind, owner, action) => byKey.get(key(kind, owner, action)),
    names(kind, owner) {
      const out = new Set<string>();
      for (const d of byKey.values()) if (d.kind === kind && (owner === undefined || d.owner === owner)) out.add(owner === undefined ? d.owner : d.action);
      return [...out].sort();
    },
    register(def) {
      byKey.set(key(def.kind, def.owner, def.action), def);
    },
    all: () => [...byKey.values()],
  };
  defs.forEach(registry.register);
  return registry;
}

/**
 * Load user actions from JavaScript modules (compiled TypeScript): each module exports
 * `actions: ActionDefinition[]` (or a default export of that array). Later modules override
 * built-in actions of the same name, so a team can replace one.
 */
export async function loadActionModules(registry: ActionRegistry, paths: string[]): Promise<void> {
  for (const p of paths) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(resolve(p)).href)) as Record<string, unknown>;
    } catch (err) {
      throw new SluiceError("BAD_CONFIG", `cannot load actions module ${p}: ${(err as Error).message}`);
    }
    const list = (mod.actions ?? mod.default) as unknown;
    if (!Array.isArray(list)) throw new SluiceError("BAD_CONFIG", `actions module ${p} must export "actions", an array of action definitions`);
    for (const def of list as ActionDefinition[]) {
      if (!def || (def.kind !== "agent" && def.kind !== "service") || !def.owner || !def.action || typeof def.run !== "function" || !def.input)
        throw new SluiceError("BAD_CONFIG", `actions module ${p} exports an entry that is not an action definition (kind, owner, action, input, run)`);
      registry.register(def);
    }
  }
}

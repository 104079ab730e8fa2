/**
 * What every command needs: the state store, the action catalogue (built-in plus user modules)
 * and the Sluice home folder.
 */
import type { ActionRegistry } from "../actions/registry.js";
import { openStore, sluiceHome, type StateStore } from "../store/index.js";

export async function loadActions(extra: string[] = []): Promise<ActionRegistry> {
  // Loaded here, not at the top: commands that only read the store skip the data plane's imports.
  const { builtinRegistry } = await import("../actions/builtin.js");
  const { loadActionModules } = await import("../actions/registry.js");
  const registry = builtinRegistry();
  const fromEnv = (process.env.SLUICE_ACTIONS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  await loadActionModules(registry, [...fromEnv, ...extra]);
  return registry;
}

export async function withStore<T>(fn: (store: StateStore, home: string) => Promise<T>): Promise<T> {
  const store = await openStore();
  try {
    return await fn(store, sluiceHome());
  } finally {
    await store.close();
  }
}

/**
 * The built-in catalogue: every action the founding document names has a real implementation.
 * builtin.ts refuses to build a catalogue with a pair left out; this test also calls each one, so
 * none can be a placeholder that answers NOT_IMPLEMENTED.
 */
import { describe, expect, it } from "vitest";
import { SEED_SIGNATURES } from "../../src/actions/seed-catalogue.js";
import { builtinRegistry } from "../../src/actions/builtin.js";
import { SluiceError } from "../../src/errors.js";
import { actionContext, scratch } from "../helpers.js";

const fresh = scratch();

describe("the built-in catalogue", () => {
  it("implements every action of the founding document (none answers NOT_IMPLEMENTED)", async () => {
    const registry = builtinRegistry();
    const missing: string[] = [];
    for (const s of SEED_SIGNATURES) {
      const def = registry.get(s.kind, s.owner, s.action);
      expect(def, `${s.owner}/${s.action}`).toBeDefined();
      // Empty inputs: a real action fails on them (or does nothing); only a placeholder would say NOT_IMPLEMENTED.
      const err = await def!.run({}, actionContext({ artifactsDir: fresh("sluice-cat-"), publish: async () => ({ eventId: "e-test", runIds: [] }) })).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (err instanceof SluiceError && err.code === "NOT_IMPLEMENTED") missing.push(`${s.owner}/${s.action}`);
    }
    expect(missing).toEqual([]);
    expect(SEED_SIGNATURES.length).toBe(27);
  });
});

/**
 * One policy file for the whole secure workflow: the security requirements (requirements.ts) and
 * the data-protection rules (policy.ts) side by side, each step reading its own part; a key that
 * is neither still fails, so a typo never passes for a rule.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { scratch } from "../helpers.js";
import { loadPolicy, PROTECTION_KEYS, REQUIREMENT_KEYS } from "../../src/actions/security/policy.js";
import { SecurityPolicy } from "../../src/actions/security/requirements.js";

const dir = scratch();

describe("a shared policy file", () => {
  it("names the requirement keys of requirements.ts, and no key of both parts", () => {
    expect([...REQUIREMENT_KEYS].sort()).toEqual(Object.keys(SecurityPolicy.shape).sort());
    expect(PROTECTION_KEYS.filter((k) => REQUIREMENT_KEYS.includes(k))).toEqual([]);
  });

  it("gives the classifier its rules and ignores the requirements; a key of neither part fails", async () => {
    const d = dir("sluice-policy-");
    const file = join(d, "policy.yaml");
    writeFileSync(file, "requireClientCertificate: true\nallowedHosts: [127.0.0.1]\nclasses: { card_number: mask }\ncolumns: { notes: encrypt }\n");
    const p = await loadPolicy(file);
    expect(p).toMatchObject({ extends: "default", classes: { card_number: "mask" }, columns: { notes: "encrypt" } });
    const typo = join(d, "typo.yaml");
    writeFileSync(typo, "requireTls: true\nclases: { card_number: mask }\n");
    await expect(loadPolicy(typo)).rejects.toThrow(/clases/);
  });
});

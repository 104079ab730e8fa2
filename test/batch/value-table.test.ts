import { describe, expect, it } from "vitest";
import { hashOf, ValueTable } from "../../src/actions/batch/value-table.js";

describe("ValueTable (the unique check's memory)", () => {
  it("finds what it holds, by exact code units, across every growth", () => {
    const t = new ValueTable();
    const keys = Array.from({ length: 200_000 }, (_, i) => `T-${String(i).padStart(9, "0")}`);
    keys.forEach((k, i) => t.add(k, hashOf(k), i + 2));
    expect(t.size).toBe(200_000);
    for (const i of [0, 1, 65_535, 99_999, 199_999]) expect(t.find(keys[i]!, hashOf(keys[i]!))).toBe(i + 2);
    expect(t.find("T-000200000", hashOf("T-000200000"))).toBe(-1);
    // A prefix or an extension of a held key is another key.
    expect(t.find("T-00000000", hashOf("T-00000000"))).toBe(-1);
    expect(t.find("T-0000000001", hashOf("T-0000000001"))).toBe(-1);
  });

  it("tells apart keys whose hashes collide and keeps any text exactly", () => {
    const t = new ValueTable();
    const odd = ["", "München", "東京", "😀 emoji", "a\u0000b", "x".repeat(20_000)];
    // Same hash given on purpose: only the code units can decide.
    odd.forEach((k, i) => t.add(k, 7, i));
    odd.forEach((k, i) => expect(t.find(k, 7)).toBe(i));
    expect(t.find("Munchen", 7)).toBe(-1);
    expect([...t.keys()]).toEqual(odd);
    expect(t.entries()[3]).toEqual(["😀 emoji", 3]);
    expect(t.unitsUsed).toBe(odd.reduce((n, k) => n + k.length, 0));
  });
});

/**
 * The server-side graph layout: layers follow the longest dependency path, no two nodes overlap,
 * a wide layer is folded into rows, and one shape is laid out once (the cache).
 */
import { describe, expect, test } from "vitest";
import { cachedLayout, layoutGraph, NODE_H, NODE_W } from "../../src/server/ui/dag.js";

describe("layered layout", () => {
  test("layers by longest path; edges point down; nodes never overlap", () => {
    const steps = [
      { name: "a" },
      { name: "b", dependsOn: ["a"] },
      { name: "c", dependsOn: ["a"] },
      { name: "d", dependsOn: ["b", "c"] },
      { name: "e", dependsOn: ["a", "d"] },
    ];
    const l = layoutGraph(steps);
    const at = new Map(l.nodes.map((n) => [n.name, n]));
    expect([...at.values()].map((n) => [n.name, n.layer])).toEqual(
      expect.arrayContaining([
        ["a", 0],
        ["b", 1],
        ["c", 1],
        ["d", 2],
        ["e", 3],
      ]),
    );
    for (const e of l.edges) expect(at.get(e.to)!.y).toBeGreaterThan(at.get(e.from)!.y);
    for (const x of l.nodes) for (const y of l.nodes) if (x !== y) expect(Math.abs(x.x - y.x) >= NODE_W || Math.abs(x.y - y.y) >= NODE_H).toBe(true);
    for (const n of l.nodes) expect(n.x + NODE_W).toBeLessThanOrEqual(l.width);
  });

  test("a 200-wide layer is folded into rows, so the picture stays a few screens wide", () => {
    const steps = [
      { name: "src" },
      ...Array.from({ length: 200 }, (_, i) => ({ name: `p${i}`, dependsOn: ["src"] })),
      { name: "sink", dependsOn: ["p0", "p199"] },
    ];
    const l = layoutGraph(steps);
    expect(l.width).toBeLessThan(2000);
    expect(new Set(l.nodes.filter((n) => n.layer === 1).map((n) => n.y)).size).toBe(25);
    expect(l.nodes.find((n) => n.name === "sink")!.y).toBeGreaterThan(Math.max(...l.nodes.filter((n) => n.layer === 1).map((n) => n.y)));
  });

  test("the barycentre sweeps put children under their parents (no crossing in two parallel chains)", () => {
    const steps = [{ name: "a1" }, { name: "b1" }, { name: "b2", dependsOn: ["a1"] }, { name: "a2", dependsOn: ["b1"] }];
    const l = layoutGraph(steps);
    const x = (n: string) => l.nodes.find((m) => m.name === n)!.x;
    expect(x("b2") === x("a1")).toBe(true);
    expect(x("a2") === x("b1")).toBe(true);
  });

  test("one shape is laid out once", () => {
    const steps = [{ name: "x" }, { name: "y", dependsOn: ["x"], forEach: [1, 2] }];
    const first = cachedLayout(steps);
    expect(cachedLayout(steps.map((s) => ({ ...s })))).toBe(first);
    expect(first.nodes.find((n) => n.name === "y")!.fanOut).toBe(true);
  });
});

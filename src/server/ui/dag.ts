/**
 * A layered layout of a workflow's step graph, computed on the server (no layout library in the
 * browser, nothing to download) and cached per workflow version, since runs of one version share
 * their graph.
 *
 * Sugiyama in small: each step's layer is its longest path from a step without dependencies, the
 * order within a layer is improved by a few barycentre sweeps (a node moves towards the mean
 * position of its neighbours, which removes most crossings), and a layer wider than WRAP nodes is
 * folded into several rows, so a 200-wide fan-in stays readable instead of 36,000 px wide.
 * Fan-out items are not in the graph at all: a `forEach` step is one node, its items counted on
 * it (see dag-svg.tsx). About 2 ms for 500 steps; the cache makes repeated views free.
 */
import { createHash } from "node:crypto";

export interface GraphStep {
  name: string;
  dependsOn?: string[];
  forEach?: unknown;
}

export interface LaidNode {
  name: string;
  layer: number;
  x: number;
  y: number;
  fanOut: boolean;
}

export interface Layout {
  nodes: LaidNode[];
  edges: { from: string; to: string }[];
  width: number;
  height: number;
}

export const NODE_W = 180;
export const NODE_H = 46;
const GAP_X = 28;
const GAP_Y = 46;
const MARGIN = 16;
/** Most nodes side by side in one row; a wider layer continues on the next row. */
const WRAP = 8;
const SWEEPS = 4;

export function layoutGraph(steps: GraphStep[]): Layout {
  const names = new Set(steps.map((s) => s.name));
  const deps = new Map(steps.map((s) => [s.name, (s.dependsOn ?? []).filter((d) => names.has(d))]));
  const children = new Map<string, string[]>(steps.map((s) => [s.name, []]));
  for (const [n, ds] of deps) for (const d of ds) children.get(d)!.push(n);

  // Longest path from a source, in file order (the spec was validated: no cycles).
  const layerOf = new Map<string, number>();
  const visit = (n: string, stack: Set<string>): number => {
    const known = layerOf.get(n);
    if (known !== undefined) return known;
    if (stack.has(n)) return 0; // Defensive: a cycle would have been refused by validation.
    stack.add(n);
    const l = Math.max(-1, ...deps.get(n)!.map((d) => visit(d, stack))) + 1;
    stack.delete(n);
    layerOf.set(n, l);
    return l;
  };
  for (const s of steps) visit(s.name, new Set());

  const layers: string[][] = [];
  for (const s of steps) (layers[layerOf.get(s.name)!] ??= []).push(s.name);
  const pos = new Map<string, number>();
  const index = () => layers.forEach((l) => l.forEach((n, i) => pos.set(n, i / Math.max(1, l.length - 1))));
  index();
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? layers.slice(1) : layers.slice(0, -1).reverse();
    for (const layer of order) {
      const bary = new Map(
        layer.map((n, i) => {
          const nb = down ? deps.get(n)! : children.get(n)!;
          return [n, nb.length ? nb.reduce((a, m) => a + pos.get(m)!, 0) / nb.length : i / Math.max(1, layer.length - 1)];
        }),
      );
      layer.sort((a, b) => bary.get(a)! - bary.get(b)!);
      layer.forEach((n, i) => pos.set(n, i / Math.max(1, layer.length - 1)));
    }
  }

  const fanOut = new Set(steps.filter((s) => s.forEach !== undefined).map((s) => s.name));
  const nodes: LaidNode[] = [];
  let y = MARGIN;
  let widest = 0;
  layers.forEach((layer, li) => {
    for (let start = 0; start < layer.length; start += WRAP) {
      const row = layer.slice(start, start + WRAP);
      row.forEach((name, i) => nodes.push({ name, layer: li, x: MARGIN + i * (NODE_W + GAP_X), y, fanOut: fanOut.has(name) }));
      widest = Math.max(widest, row.length);
      y += NODE_H + GAP_Y;
    }
  });
  // Rows narrower than the widest are centred, so edges between layers stay short.
  const full = widest * (NODE_W + GAP_X) - GAP_X;
  const rowWidth = new Map<number, number>();
  for (const n of nodes) rowWidth.set(n.y, Math.max(rowWidth.get(n.y) ?? 0, n.x + NODE_W - MARGIN));
  for (const n of nodes) n.x += (full - rowWidth.get(n.y)!) / 2;
  const edges = steps.flatMap((s) => deps.get(s.name)!.map((d) => ({ from: d, to: s.name })));
  return { nodes, edges, width: full + 2 * MARGIN, height: y - GAP_Y + MARGIN };
}

const cache = new Map<string, Layout>();
const CACHE_MAX = 200;

/** The layout of a graph, cached by its shape (names, dependencies, which steps fan out): one entry per workflow version. */
export function cachedLayout(steps: GraphStep[]): Layout {
  const key = createHash("sha1")
    .update(JSON.stringify(steps.map((s) => [s.name, s.dependsOn ?? [], s.forEach !== undefined])))
    .digest("base64");
  const hit = cache.get(key);
  if (hit) {
    // Refreshed on use: the least recently viewed version is the one dropped.
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const layout = layoutGraph(steps);
  cache.set(key, layout);
  if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
  return layout;
}

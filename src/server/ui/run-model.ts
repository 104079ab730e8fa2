/**
 * What the Run view shows, computed from the store's records: one node per workflow step (a
 * fan-out's items folded into their parent with counts by status), the records each node moved,
 * and the timeline's rows. Pure, so the page and its live updates render the same picture.
 */
import { allSteps } from "../../spec/schema.js";
import type { AttemptRecord, RunRecord, StepRecord } from "../../store/types.js";
import type { GraphStep } from "./dag.js";

export interface NodeRows {
  in?: number;
  out?: number;
  quarantined?: number;
  duplicate?: number;
}

export interface NodeState {
  name: string;
  status: string;
  /** Fan-out items by status; undefined for a plain step. */
  items?: Record<string, number>;
  itemCount?: number;
  rows: NodeRows;
  attempts: number;
}

export interface RunModel {
  run: RunRecord;
  graph: GraphStep[];
  nodes: Map<string, NodeState>;
  steps: StepRecord[];
  attempts: AttemptRecord[];
}

/** `load[3]` → `load`; undefined for a step that is not a fan-out item. */
export function parentOf(step: string): string | undefined {
  const m = /^(.*)\[\d+\]$/.exec(step);
  return m ? m[1] : undefined;
}

const KEYS: [keyof NodeRows, string[]][] = [
  ["in", ["rowsIn"]],
  ["out", ["rowsStored", "rowsOut", "rows"]],
  ["quarantined", ["rowsQuarantined"]],
  ["duplicate", ["rowsDuplicate"]],
];

/** The record counts a step's outputs report (storage: in, stored, quarantined, duplicate). */
export function rowsOf(outputs: Record<string, unknown> | null): NodeRows {
  const out: NodeRows = {};
  if (!outputs) return out;
  for (const [k, names] of KEYS) {
    const name = names.find((n) => typeof outputs[n] === "number");
    if (name) out[k] = outputs[name] as number;
  }
  return out;
}

function addRows(a: NodeRows, b: NodeRows): NodeRows {
  const out: NodeRows = { ...a };
  for (const [k] of KEYS) if (b[k] !== undefined) out[k] = (out[k] ?? 0) + b[k]!;
  return out;
}

export function runModel(run: RunRecord, steps: StepRecord[], attempts: AttemptRecord[]): RunModel {
  const graph = allSteps(run.spec).map((s) => ({ name: s.name, dependsOn: s.dependsOn, forEach: s.forEach }));
  const byName = new Map(steps.map((s) => [s.name, s]));
  const attemptsOf = new Map<string, number>();
  for (const a of attempts) {
    const key = parentOf(a.step) ?? a.step;
    attemptsOf.set(key, (attemptsOf.get(key) ?? 0) + 1);
  }
  const items = new Map<string, StepRecord[]>();
  for (const s of steps) {
    const p = parentOf(s.name);
    if (p === undefined) continue;
    const list = items.get(p);
    if (list) list.push(s);
    else items.set(p, [s]);
  }
  const nodes = new Map<string, NodeState>();
  for (const g of graph) {
    const rec = byName.get(g.name);
    const kids = g.forEach !== undefined ? (items.get(g.name) ?? []) : undefined;
    let rows = rowsOf(rec?.outputs ?? null);
    if (kids && Object.keys(rows).length === 0) rows = kids.reduce((acc, k) => addRows(acc, rowsOf(k.outputs)), {} as NodeRows);
    const node: NodeState = { name: g.name, status: rec?.status ?? "pending", rows, attempts: attemptsOf.get(g.name) ?? 0 };
    if (kids) {
      node.itemCount = kids.length;
      node.items = {};
      for (const k of kids) node.items[k.status] = (node.items[k.status] ?? 0) + 1;
    }
    nodes.set(g.name, node);
  }
  return { run, graph, nodes, steps, attempts };
}

/** A short fingerprint of what the live view shows: when it changes, the view is sent again. */
export function fingerprint(run: RunRecord, steps: StepRecord[], attempts: AttemptRecord[]): string {
  let h = `${run.status}|${run.endedAt}|${steps.length}|${attempts.length}`;
  for (const s of steps) h += `|${s.status}${s.attempts}`;
  for (const a of attempts) if (a.endedAt === null) h += `|${a.step}#${a.n}`;
  return h;
}

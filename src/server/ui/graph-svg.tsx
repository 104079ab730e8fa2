/**
 * The Run view's two pictures as inline SVG: the step graph (laid out by dag.ts, coloured by
 * status, each node a link to its step panel, so Tab walks the graph) and the timeline of every
 * attempt (a Gantt chart: attempts as bars, the waits between retries hatched).
 */
import type { AttemptRecord } from "../../store/types.js";
import { cachedLayout, NODE_H, NODE_W } from "./dag.js";
import { count, seg, UI } from "./layout.js";
import { parentOf, type NodeRows, type RunModel } from "./run-model.js";

/** Fill and stroke by status: light fills keep the dark label readable (contrast ≥ 7:1). */
const COLOURS: Record<string, [string, string]> = {
  succeeded: ["#dafbe1", "#116329"],
  failed: ["#ffebe9", "#a40e26"],
  timedOut: ["#ffebe9", "#a40e26"],
  running: ["#ddf4ff", "#0550ae"],
  cancelled: ["#fff8c5", "#7d4e00"],
  interrupted: ["#fff8c5", "#7d4e00"],
  skipped: ["#f6f8fa", "#6e7781"],
  pending: ["#ffffff", "#6e7781"],
};
const colour = (s: string) => COLOURS[s] ?? COLOURS.pending!;

function rowsLine(r: NodeRows): string {
  const parts: string[] = [];
  if (r.in !== undefined) parts.push(`in ${count(r.in)}`);
  if (r.out !== undefined) parts.push(`out ${count(r.out)}`);
  if (r.quarantined) parts.push(`q ${count(r.quarantined)}`);
  if (r.duplicate) parts.push(`dup ${count(r.duplicate)}`);
  return parts.join(" · ");
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

export function DagSvg(p: { model: RunModel; selected?: string }) {
  const { model } = p;
  const layout = cachedLayout(model.graph);
  const at = new Map(layout.nodes.map((n) => [n.name, n]));
  const base = `${UI}/runs/${seg(model.run.id)}`;
  return (
    <div class="graph" data-testid="dag">
      <svg
        xmlns="http://www.w3.org/2000/svg"
        width={layout.width}
        height={layout.height}
        viewBox={`0 0 ${layout.width} ${layout.height}`}
        role="img"
        aria-label="step graph"
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#6e7781" />
          </marker>
        </defs>
        {layout.edges.map((e) => {
          const a = at.get(e.from)!;
          const b = at.get(e.to)!;
          const x1 = a.x + NODE_W / 2;
          const y1 = a.y + NODE_H;
          const x2 = b.x + NODE_W / 2;
          const y2 = b.y;
          const mid = (y1 + y2) / 2;
          return (
            <path d={`M${x1},${y1} C${x1},${mid} ${x2},${mid} ${x2},${y2 - 2}`} fill="none" stroke="#8c959f" stroke-width="1.3" marker-end="url(#arrow)" />
          );
        })}
        {layout.nodes.map((n) => {
          const st = model.nodes.get(n.name)!;
          const [fill, stroke] = colour(st.status);
          const items = st.items ? Object.entries(st.items).map(([k, v]) => `${v} ${k}`) : [];
          const second = st.itemCount !== undefined ? `×${st.itemCount}${items.length ? ` (${items.join(", ")})` : ""}` : rowsLine(st.rows);
          const third = st.itemCount !== undefined ? rowsLine(st.rows) : "";
          return (
            <a
              href={`${base}?step=${encodeURIComponent(n.name)}#step-panel`}
              data-testid="dag-node"
              data-step={n.name}
              data-status={st.status}
              aria-label={`${n.name}: ${st.status}${second ? `, ${second}` : ""}`}
            >
              <title>{`${n.name} — ${st.status}${second ? ` — ${second}` : ""}${third ? ` — ${third}` : ""}`}</title>
              <rect
                x={n.x}
                y={n.y}
                width={NODE_W}
                height={NODE_H}
                rx="6"
                fill={fill}
                stroke={stroke}
                stroke-width={p.selected === n.name ? 3 : 1.5}
                {...(n.fanOut && { "stroke-dasharray": "5 3" })}
              />
              <text x={n.x + 8} y={n.y + 16} font-weight="600">
                {clip(n.name, 24)}
              </text>
              <text x={n.x + 8} y={n.y + 30}>
                {clip(`${st.status}${second ? ` · ${second}` : ""}`, 30)}
              </text>
              {third && (
                <text x={n.x + 8} y={n.y + 42}>
                  {clip(third, 30)}
                </text>
              )}
            </a>
          );
        })}
      </svg>
    </div>
  );
}

const ROW_H = 18;
const LABEL_W = 200;
const CHART_W = 820;

interface Bar {
  start: number;
  end: number;
  status: string;
  label: string;
}

/**
 * One row per workflow step: its attempts side by side (retries after the first), the wait
 * before each retry hatched. A fan-out is one row spanning its items' attempts, so a 10,000-item
 * fan-out is one row, not 10,000.
 */
export function TimelineSvg(p: { model: RunModel; now?: number }) {
  const { model } = p;
  const now = p.now ?? Date.now();
  const t = (iso: string | null) => (iso ? Date.parse(iso) : now);
  const byStep = new Map<string, AttemptRecord[]>();
  for (const a of model.attempts) {
    const key = parentOf(a.step) ?? a.step;
    const list = byStep.get(key);
    if (list) list.push(a);
    else byStep.set(key, [a]);
  }
  const rows = model.graph.map((g) => {
    const list = (byStep.get(g.name) ?? []).slice().sort((a, b) => a.startedAt.localeCompare(b.startedAt));
    const bars: Bar[] = [];
    const waits: { start: number; end: number }[] = [];
    if (g.forEach !== undefined && list.length > 0) {
      const failed = list.filter((a) => a.status === "failed" || a.status === "timedOut").length;
      const start = Math.min(...list.map((a) => t(a.startedAt)));
      const end = Math.max(...list.map((a) => t(a.endedAt)));
      const st = model.nodes.get(g.name)!.status;
      bars.push({ start, end, status: st, label: `${list.length} item attempts${failed ? `, ${failed} failed` : ""}` });
    } else {
      list.forEach((a, i) => {
        bars.push({ start: t(a.startedAt), end: t(a.endedAt), status: a.status, label: `attempt ${a.n}: ${a.status}${a.error ? ` — ${a.error.code}` : ""}` });
        const prev = list[i - 1];
        if (prev?.endedAt) waits.push({ start: t(prev.endedAt), end: t(a.startedAt) });
      });
    }
    return { name: g.name, bars, waits };
  });
  const all = rows.flatMap((r) => r.bars);
  const t0 = model.run.startedAt ? Date.parse(model.run.startedAt) : Math.min(now, ...all.map((b) => b.start));
  const t1 = Math.max(t0 + 1, model.run.endedAt ? Date.parse(model.run.endedAt) : now, ...all.map((b) => b.end));
  const x = (ms: number) => LABEL_W + ((ms - t0) / (t1 - t0)) * CHART_W;
  const height = rows.length * ROW_H + 24;
  return (
    <div class="graph" data-testid="timeline">
      <svg xmlns="http://www.w3.org/2000/svg" width={LABEL_W + CHART_W + 20} height={height} role="img" aria-label="timeline of attempts">
        <defs>
          <pattern id="wait" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
            <rect width="3" height="6" fill="#d0d7de" />
          </pattern>
        </defs>
        <text x={LABEL_W} y="12" class="muted">
          0
        </text>
        <text x={LABEL_W + CHART_W} y="12" text-anchor="end">
          {`${((t1 - t0) / 1000).toFixed(1)} s`}
        </text>
        {rows.map((r, i) => {
          const y = 20 + i * ROW_H;
          return (
            <g data-testid="timeline-row" data-step={r.name}>
              <text x="4" y={y + 12}>
                {clip(r.name, 28)}
              </text>
              {r.waits.map((w) => (
                <rect x={x(w.start)} y={y + 3} width={Math.max(1, x(w.end) - x(w.start))} height={ROW_H - 6} fill="url(#wait)" data-testid="timeline-wait">
                  <title>{`waiting ${((w.end - w.start) / 1000).toFixed(2)} s before the retry`}</title>
                </rect>
              ))}
              {r.bars.map((b) => {
                const [fill, stroke] = colour(b.status);
                return (
                  <rect
                    x={x(b.start)}
                    y={y + 2}
                    width={Math.max(2, x(b.end) - x(b.start))}
                    height={ROW_H - 4}
                    fill={fill}
                    stroke={stroke}
                    data-testid="timeline-bar"
                    data-status={b.status}
                  >
                    <title>{`${b.label} (${((b.end - b.start) / 1000).toFixed(2)} s)`}</title>
                  </rect>
                );
              })}
            </g>
          );
        })}
      </svg>
    </div>
  );
}

/**
 * The Streams view: a continuous run's live figures (records, rate, lag, end-to-end p50/p99) as
 * its pipeline head recorded them (RunStore.recordStepOutputs, every five seconds), with small
 * inline SVG charts of the last minutes drawn from the `recent` samples saved with them. The
 * figures block is sent again over SSE whenever the recorded outputs change.
 */
import type { StreamSample } from "../../engine/pipeline.js";
import type { StepRecord } from "../../store/types.js";
import { Badge, count, seg, shortTime, UI } from "./layout.js";

/** One kept point of a continuous run's figures, as the engine records it. */
export type Sample = StreamSample;

export interface StreamFigures {
  step: string;
  status: string;
  source: string;
  records: number;
  stored: number;
  duplicate: number;
  deadLettered: number;
  rate: number;
  lag: number | null;
  p50: number | null;
  p99: number | null;
  /** Whether p50/p99 are the whole run's (the pipeline stopped) rather than the last window's. */
  overall: boolean;
  uptimeMs: number;
  recent: Sample[];
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const lat = (v: unknown) => (v && typeof v === "object" ? { p50: num((v as { p50?: unknown }).p50), p99: num((v as { p99?: unknown }).p99) } : null);

/** The steps that recorded a pipeline's figures (PipelineStats): the heads of continuous groups. */
export function streamFigures(steps: StepRecord[]): StreamFigures[] {
  const out: StreamFigures[] = [];
  let previous = "";
  for (const s of steps) {
    const o = s.outputs;
    if (!o || num(o.records) === null || num(o.ratePerSec) === null || num(o.uptimeMs) === null) continue;
    // A stopped pipeline's steps all keep its final figures: one pipeline is shown once, under its head.
    const same = JSON.stringify(o);
    if (same === previous) continue;
    previous = same;
    const window = lat(o.endToEndMs);
    const e2e = window ?? lat(o.endToEndMsOverall);
    const recent = Array.isArray(o.recent) ? (o.recent as Sample[]).filter((r) => r && num(r.t) !== null && num(r.rate) !== null) : [];
    out.push({
      step: s.name,
      status: s.status,
      source: typeof o.source === "string" ? o.source : "",
      records: o.records as number,
      stored: num(o.stored) ?? 0,
      duplicate: num(o.duplicate) ?? 0,
      deadLettered: num(o.deadLettered) ?? 0,
      rate: o.ratePerSec as number,
      lag: num(o.lag),
      p50: e2e?.p50 ?? null,
      p99: e2e?.p99 ?? null,
      overall: !window && !!e2e,
      uptimeMs: o.uptimeMs as number,
      recent,
    });
  }
  return out;
}

const W = 360;
const H = 80;

/** One series as a polyline, scaled to its own maximum; the axis labels say the scale. */
export function Chart(p: { label: string; unit: string; points: { t: number; v: number | null }[]; testid: string }) {
  const pts = p.points.filter((x): x is { t: number; v: number } => x.v !== null);
  const top = pts.length ? Math.max(...pts.map((x) => x.v)) : 0;
  const max = Math.max(1, top); // the scale; the caption says the real maximum
  const t0 = pts[0]?.t ?? 0;
  const span = Math.max(1, (pts.at(-1)?.t ?? 0) - t0);
  const line = pts.map((x) => `${((x.t - t0) / span) * W},${(H - (x.v / max) * (H - 4)).toFixed(1)}`).join(" ");
  const minutes = Math.round(span / 60_000);
  return (
    <figure class="chart" data-testid={p.testid} data-points={String(pts.length)}>
      <svg width={W} height={H} viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${p.label}, the last ${minutes || "<1"} min, up to ${top} ${p.unit}`}>
        <rect x="0" y="0" width={W} height={H} fill="#f6f8fa" stroke="#d0d5dd" />
        {pts.length > 1 ? (
          <polyline points={line} fill="none" stroke="#0550ae" stroke-width="2" />
        ) : (
          <text x="8" y={H / 2}>
            {p.points.length > 1 ? "not reported by this broker" : "waiting for samples (one every 5 s)"}
          </text>
        )}
      </svg>
      <figcaption class="muted">
        {p.label} · max {top.toLocaleString("en-US")} {p.unit} · last {minutes || "<1"} min
      </figcaption>
    </figure>
  );
}

export function StreamsBlock(p: { figures: StreamFigures[] }) {
  if (p.figures.length === 0) return <p class="muted">This run has recorded no stream figures yet (a continuous pipeline saves them every five seconds).</p>;
  return (
    <>
      {p.figures.map((f) => (
        <section class="panel" data-testid="stream" data-step={f.step}>
          <h2>
            {f.step} <Badge status={f.status} /> <span class="muted">{f.source}</span>
          </h2>
          <dl class="figures">
            <div>
              <dt>Records</dt>
              <dd data-testid="stream-records">{count(f.records)}</dd>
            </div>
            <div>
              <dt>Stored</dt>
              <dd data-testid="stream-stored">{count(f.stored)}</dd>
            </div>
            <div>
              <dt>Dead-lettered</dt>
              <dd>{count(f.deadLettered)}</dd>
            </div>
            <div>
              <dt>Rate</dt>
              <dd data-testid="stream-rate">{count(f.rate)}/s</dd>
            </div>
            <div>
              <dt>Lag</dt>
              <dd data-testid="stream-lag">{f.lag === null ? "n/a" : count(f.lag)}</dd>
            </div>
            <div>
              <dt>End-to-end p50 / p99{f.overall ? " (whole run)" : ""}</dt>
              <dd data-testid="stream-latency">{f.p50 === null ? "n/a" : `${f.p50} ms / ${f.p99} ms`}</dd>
            </div>
          </dl>
          <div class="charts">
            <Chart label="Rate" unit="records/s" testid="chart-rate" points={f.recent.map((r) => ({ t: r.t, v: r.rate }))} />
            <Chart label="Lag" unit="messages" testid="chart-lag" points={f.recent.map((r) => ({ t: r.t, v: r.lag }))} />
            <Chart label="End-to-end p99" unit="ms" testid="chart-p99" points={f.recent.map((r) => ({ t: r.t, v: r.p99 }))} />
          </div>
        </section>
      ))}
    </>
  );
}

export function StreamsView(p: { run: { id: string; workflow: string; status: string; startedAt: string | null }; figures: StreamFigures[]; live: boolean }) {
  return (
    <>
      <h1 data-testid="streams-title">
        Streams of <a href={`${UI}/runs/${seg(p.run.id)}`}>{p.run.id}</a> <span class="muted">· {p.run.workflow}</span> <Badge status={p.run.status} />
      </h1>
      <p class="muted">Started {shortTime(p.run.startedAt)} UTC. Figures are the pipeline's last report window.</p>
      <div {...(p.live && { "hx-ext": "sse", "sse-connect": `${UI}/runs/${seg(p.run.id)}/streams/live`, "sse-close": "done" })}>
        <div id="streams-live" sse-swap="figures" hx-swap="innerHTML" data-testid="streams-live">
          <StreamsBlock figures={p.figures} />
        </div>
      </div>
    </>
  );
}

/**
 * The Logs view of one attempt: the last lines (a window, never the whole file), a "load earlier"
 * button that replaces itself with the window before, a live tail while the attempt runs (SSE,
 * each event's id the byte offset it ends at, so a reconnecting browser resumes with
 * Last-Event-ID and loses or repeats nothing), and the raw file as a download.
 */
import type { LogLine, LogWindow } from "./log-file.js";
import { Badge, count, seg, UI } from "./layout.js";

export function LogLines(p: { lines: LogLine[] }) {
  return (
    <>
      {p.lines.map((l) => (
        <span class="ln" data-at={l.at}>
          {l.text}
          {l.cut > 0 && <span class="cut"> … {count(l.cut)} more bytes (download the raw log)</span>}
          {"\n"}
        </span>
      ))}
    </>
  );
}

/** "Load earlier" and the lines before it: swapped in place of the button (hx-swap outerHTML). */
export function Earlier(p: { base: string; window: LogWindow; n: number }) {
  const w = p.window;
  return (
    <>
      {w.start > 0 && (
        <button
          type="button"
          hx-get={`${p.base}/lines?before=${w.start}&n=${p.n}`}
          hx-swap="outerHTML"
          data-testid="load-earlier"
          aria-label="load earlier lines"
        >
          Load earlier lines
        </button>
      )}
      <LogLines lines={w.lines} />
    </>
  );
}

export function LogView(p: { run: string; step: string; n: number; status: string; window: LogWindow; lines: number; live: boolean; size: number }) {
  const base = `${UI}/runs/${seg(p.run)}/steps/${seg(p.step)}/attempts/${p.n}/log`;
  return (
    <>
      <h1>
        Log of <a href={`${UI}/runs/${seg(p.run)}?step=${encodeURIComponent(p.step)}#step-panel`}>{p.step}</a> attempt {p.n} <Badge status={p.status} />
      </h1>
      <p class="muted">
        run <a href={`${UI}/runs/${seg(p.run)}`}>{p.run}</a> · {count(p.size)} bytes ·{" "}
        <a href={`${base}/raw`} data-testid="log-raw" download>
          download raw
        </a>
        {p.live && <span data-testid="log-live"> · following live</span>}
      </p>
      <div class="log" data-testid="log" role="log" aria-live="off" tabindex={0}>
        <Earlier base={base} window={p.window} n={p.lines} />
        {p.live && <span hx-ext="sse" sse-connect={`${base}/tail?from=${p.window.end}`} sse-swap="lines" hx-swap="beforebegin" sse-close="done"></span>}
      </div>
    </>
  );
}

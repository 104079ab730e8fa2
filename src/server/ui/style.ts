/**
 * The UI's one stylesheet, hand-written and served from the package (no CDN, no build step).
 * Colours were picked for WCAG AA contrast (4.5:1 for text) on the light background, and every
 * status has a text label as well as a colour. Focus rings stay visible for keyboard users.
 */
export const CSS = `
:root { --fg:#1b1f24; --muted:#4b5563; --bg:#ffffff; --panel:#f5f6f8; --line:#d0d5dd; --link:#0b57d0;
  --ok:#116329; --ok-bg:#dafbe1; --bad:#a40e26; --bad-bg:#ffebe9; --run:#0550ae; --run-bg:#ddf4ff;
  --warn:#7d4e00; --warn-bg:#fff8c5; --idle:#4b5563; --idle-bg:#eaeef2; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
a { color:var(--link); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible, [tabindex]:focus-visible,
  input:focus, input:focus-within { outline:3px solid #f59e0b; outline-offset:2px; }
header.top { display:flex; gap:1.5rem; align-items:center; padding:.6rem 1rem; background:#1b1f24; color:#fff; }
header.top a { color:#fff; text-decoration:none; font-weight:600; }
header.top .who { margin-left:auto; font-size:.9em; color:#d0d7de; }
header.top form { display:inline; }
main { padding:1rem; max-width:1400px; }
h1 { font-size:1.35rem; margin:.2rem 0 .8rem; } h2 { font-size:1.1rem; margin:1.2rem 0 .5rem; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:.35rem .5rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:var(--panel); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.badge { display:inline-block; padding:0 .45rem; border-radius:.6rem; font-size:.85em; font-weight:600; border:1px solid currentColor; }
.s-succeeded { color:var(--ok); background:var(--ok-bg); } .s-failed, .s-timedOut { color:var(--bad); background:var(--bad-bg); }
.s-running { color:var(--run); background:var(--run-bg); } .s-cancelled, .s-interrupted, .s-skipped { color:var(--warn); background:var(--warn-bg); }
.s-pending { color:var(--idle); background:var(--idle-bg); }
form.filters { display:flex; flex-wrap:wrap; gap:.6rem; align-items:end; margin-bottom:.8rem; }
label { display:flex; flex-direction:column; font-size:.85em; color:var(--muted); gap:.15rem; }
input, select, button { font:inherit; padding:.3rem .5rem; border:1px solid #8c959f; border-radius:.3rem; background:#fff; color:var(--fg); }
button { cursor:pointer; background:var(--panel); } button.primary { background:#0b57d0; color:#fff; border-color:#0b57d0; }
button.danger { color:var(--bad); border-color:var(--bad); }
.actions { display:flex; gap:.5rem; margin:.6rem 0; flex-wrap:wrap; } .actions form { display:inline; }
.muted { color:var(--muted); } .error { color:var(--bad); } .notice { padding:.5rem .8rem; border-left:4px solid var(--bad); background:var(--bad-bg); margin:.6rem 0; }
.graph { overflow:auto; border:1px solid var(--line); background:#fff; max-height:70vh; }
.graph svg text { font:12px system-ui, sans-serif; fill:#1b1f24; }
.graph a:focus-visible rect { stroke:#f59e0b; stroke-width:3; }
.panel { background:var(--panel); border:1px solid var(--line); padding:.8rem; margin-top:.8rem; }
pre { background:#f6f8fa; border:1px solid var(--line); padding:.6rem; overflow:auto; max-height:28rem; white-space:pre-wrap; word-break:break-all; }
.log { font:12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; background:#0d1117; color:#e6edf3; padding:.6rem; border-radius:.3rem;
  max-height:75vh; overflow:auto; white-space:pre-wrap; word-break:break-all; }
.log .ln { display:block; } .log .cut { color:#f0b72f; }
.log button { background:#30363d; color:#e6edf3; border-color:#6e7681; margin:.3rem 0; }
.pager { margin:.8rem 0; display:flex; gap:1rem; }
pre.diff .ln { display:block; } pre.diff .d-add { color:var(--ok); background:var(--ok-bg); } pre.diff .d-del { color:var(--bad); background:var(--bad-bg); }
pre.diff .d-hunk { color:var(--run); font-weight:600; }
dl.figures { display:flex; flex-wrap:wrap; gap:1.5rem; margin:.4rem 0 .8rem; } dl.figures dt { color:var(--muted); font-size:.85em; }
dl.figures dd { margin:0; font-size:1.35em; font-variant-numeric:tabular-nums; }
.charts { display:flex; flex-wrap:wrap; gap:1rem; } figure.chart { margin:0; } figure.chart svg text { font:12px system-ui, sans-serif; fill:var(--muted); }
details > summary { cursor:pointer; padding:.2rem 0; }
.skip { position:absolute; left:-999px; } .skip:focus { left:1rem; top:.5rem; background:#fff; color:var(--link); padding:.3rem; z-index:10; }
`;

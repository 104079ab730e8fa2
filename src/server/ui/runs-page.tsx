/**
 * The Runs view: filters, one keyset page of slim rows, a "next page" link carrying the cursor,
 * and live status: rows of unfinished runs are swapped in place from a server-sent event stream.
 */
import { TRIGGER_TYPES, type RunPage, type RunSummary } from "../../store/types.js";
import { Badge, count, seg, shortTime, took, UI } from "./layout.js";

export const RUN_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"] as const;
export const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export interface RunsQuery {
  workflow?: string;
  status?: string;
  trigger?: string;
  since?: string;
  until?: string;
  after?: string;
  limit: number;
}

export function RunRow(p: { run: RunSummary }) {
  const r = p.run;
  const live = !FINAL.has(r.status);
  return (
    <tr id={`run-${r.id}`} data-testid="run-row" data-run={r.id} data-status={r.status} {...(live && { "sse-swap": `run-${r.id}`, "hx-swap": "outerHTML" })}>
      <td>
        <a href={`${UI}/runs/${seg(r.id)}`}>{r.id}</a>
      </td>
      <td>
        <Badge status={r.status} />
      </td>
      <td>
        {r.workflow}
        {r.version !== null && <span class="muted"> v{r.version}</span>}
      </td>
      <td>
        {r.trigger?.type ?? ""}
        {r.trigger?.name && <span class="muted"> {r.trigger.name}</span>}
      </td>
      <td>{shortTime(r.startedAt ?? r.createdAt)}</td>
      <td class="num">{took(r.startedAt, r.endedAt)}</td>
      <td class="num" data-testid="rows-in">
        {count(r.rows?.in)}
      </td>
      <td class="num" data-testid="rows-stored">
        {count(r.rows?.stored)}
      </td>
      <td class="num" data-testid="rows-quarantined">
        {r.rows && r.rows.quarantined > 0 ? <a href={`${UI}/runs/${seg(r.id)}/quarantine`}>{count(r.rows.quarantined)}</a> : count(r.rows?.quarantined)}
      </td>
    </tr>
  );
}

function Select(p: { name: string; label: string; value?: string; options: readonly string[] }) {
  return (
    <label>
      {p.label}
      <select name={p.name} data-testid={`filter-${p.name}`}>
        <option value="">any</option>
        {p.options.map((o) => (
          <option value={o} selected={o === p.value}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

export function RunsView(p: { q: RunsQuery; page: RunPage; workflows: string[]; canStart: boolean; first: boolean }) {
  const { q, page } = p;
  const keep = new URLSearchParams();
  for (const k of ["workflow", "status", "trigger", "since", "until"] as const) if (q[k]) keep.set(k, q[k]!);
  if (q.limit !== 50) keep.set("limit", String(q.limit));
  const nextHref = page.next ? `${UI}/runs?${new URLSearchParams([...keep, ["after", page.next]])}` : undefined;
  const live = page.runs.filter((r) => !FINAL.has(r.status));
  // The first page also listens for new runs (matching its filters), added at the top as they are created.
  const liveQuery = new URLSearchParams();
  if (live.length) liveQuery.set("ids", live.map((r) => `${r.id}~${r.status}`).join(","));
  if (p.first) {
    for (const [k, v] of keep) if (k !== "limit" && k !== "since" && k !== "until") liveQuery.set(k, v);
    liveQuery.set("top", page.runs[0]?.id ?? "");
    liveQuery.set("topAt", page.runs[0]?.createdAt ?? new Date().toISOString());
  }
  const liveUrl = live.length || p.first ? `${UI}/runs/live?${liveQuery}` : undefined;
  return (
    <>
      <h1>Runs</h1>
      <form class="filters" method="get" action={`${UI}/runs`} role="search" data-testid="runs-filters">
        <Select name="workflow" label="Workflow" value={q.workflow} options={p.workflows} />
        <Select name="status" label="Status" value={q.status} options={RUN_STATUSES} />
        <Select name="trigger" label="Trigger" value={q.trigger} options={TRIGGER_TYPES} />
        <label>
          From (UTC)
          <input type="datetime-local" name="since" value={q.since ?? ""} data-testid="filter-since" />
        </label>
        <label>
          Until (UTC)
          <input type="datetime-local" name="until" value={q.until ?? ""} data-testid="filter-until" />
        </label>
        <button type="submit" class="primary">
          Filter
        </button>
        <a href={`${UI}/runs`}>Clear</a>
      </form>
      {p.canStart && p.workflows.length > 0 && (
        <form class="filters" method="get" action={`${UI}/start`} data-testid="start-picker">
          <Select name="workflow" label="Start a run of" options={p.workflows} />
          <button type="submit">Open the form</button>
        </form>
      )}
      <table data-testid="runs-table">
        <caption class="muted" style="text-align:left">
          {page.runs.length === 0 ? "No runs match." : `${page.runs.length} runs, newest first${p.first ? "" : " (a later page)"}`}
        </caption>
        <thead>
          <tr>
            <th scope="col">Run</th>
            <th scope="col">Status</th>
            <th scope="col">Workflow</th>
            <th scope="col">Trigger</th>
            <th scope="col">Started (UTC)</th>
            <th scope="col" class="num">
              Duration
            </th>
            <th scope="col" class="num">
              Rows in
            </th>
            <th scope="col" class="num">
              Stored
            </th>
            <th scope="col" class="num">
              Quarantined
            </th>
          </tr>
        </thead>
        <tbody
          {...(liveUrl && { "hx-ext": "sse", "sse-connect": liveUrl, "sse-close": "done" })}
          {...(p.first && { "sse-swap": "new-run", "hx-swap": "afterbegin" })}
          data-testid="runs-body"
        >
          {page.runs.map((r) => (
            <RunRow run={r} />
          ))}
        </tbody>
      </table>
      <nav class="pager" aria-label="pages">
        {!p.first && <a href={`${UI}/runs?${keep}`}>First page</a>}
        {nextHref && (
          <a href={nextHref} rel="next" data-testid="next-page">
            Next page →
          </a>
        )}
      </nav>
    </>
  );
}

/**
 * The Quarantine view of a run: the records its steps set aside, with source file and line, step,
 * reasons and the raw record; a filter by reason (the most frequent offered as links) and by
 * step; a CSV export of what the filter selects.
 */
import { count, seg, UI } from "./layout.js";
import type { QuarantineFilter, QuarantineView } from "./quarantine.js";

const RECORD_MAX = 2_000;

export function QuarantinePage(p: { run: string; filter: QuarantineFilter; view: QuarantineView; limit: number }) {
  const { view, filter } = p;
  const base = `${UI}/runs/${seg(p.run)}/quarantine`;
  const qs = new URLSearchParams();
  if (filter.reason) qs.set("reason", filter.reason);
  if (filter.step) qs.set("step", filter.step);
  return (
    <>
      <h1>
        Quarantine of run <a href={`${UI}/runs/${seg(p.run)}`}>{p.run}</a>
      </h1>
      <form class="filters" method="get" action={base} role="search" data-testid="quarantine-filters">
        <label>
          Reason contains
          <input type="search" name="reason" value={filter.reason ?? ""} data-testid="filter-reason" />
        </label>
        <label>
          Step
          <select name="step" data-testid="filter-step">
            <option value="">any</option>
            {view.steps.map((s) => (
              <option value={s} selected={s === filter.step}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="primary">
          Filter
        </button>
        <a href={base}>Clear</a>
        <a href={`${base}.csv${qs.size ? `?${qs}` : ""}`} data-testid="quarantine-csv">
          Export CSV
        </a>
      </form>
      <p data-testid="quarantine-count">
        {count(view.matching)} of {view.complete ? "" : "at least "}
        {count(view.scanned)} quarantined records match{view.matching > view.shown.length ? `; the first ${view.shown.length} are shown` : ""}.
      </p>
      {view.reasons.length > 0 && (
        <details>
          <summary>Most frequent reasons</summary>
          <ul data-testid="quarantine-reasons">
            {view.reasons.map((r) => (
              <li>
                <a href={`${base}?${new URLSearchParams({ reason: r.reason })}`}>{r.reason}</a> <span class="muted">({count(r.count)})</span>
              </li>
            ))}
          </ul>
        </details>
      )}
      <table data-testid="quarantine-table">
        <thead>
          <tr>
            <th scope="col">Source</th>
            <th scope="col" class="num">
              Line
            </th>
            <th scope="col">Step</th>
            <th scope="col">Reasons</th>
            <th scope="col">Record</th>
          </tr>
        </thead>
        <tbody>
          {view.shown.map((r) => {
            const raw = typeof r.record === "string" ? r.record : JSON.stringify(r.record);
            return (
              <tr data-testid="quarantine-row">
                <td>{r.source}</td>
                <td class="num">{r.line}</td>
                <td>{r.step}</td>
                <td>
                  {r.reasons.map((x) => (
                    <div>{x}</div>
                  ))}
                </td>
                <td>
                  <code>{raw && raw.length > RECORD_MAX ? `${raw.slice(0, RECORD_MAX)}…` : raw}</code>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}

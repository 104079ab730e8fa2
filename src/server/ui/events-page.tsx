/**
 * The Events view: the recent events (EventStore.listEvents, newest first), each with the runs it
 * started and the workflows that refused it, with their reason (control/events.ts keeps each
 * event's refusals in shared state under REFUSED_NAMESPACE).
 */
import type { EventRecord, RunSummary } from "../../store/types.js";
import { Badge, seg, shortTime, UI } from "./layout.js";

export interface Refusal {
  workflow: string;
  code: string;
  message: string;
}

export interface EventRow {
  event: EventRecord;
  runs: RunSummary[];
  refused: Refusal[];
}

/** Joins events with their runs' summaries and their recorded refusals (by event id). */
export function eventRows(events: EventRecord[], runs: RunSummary[], refusals: Map<string, Refusal[]>): EventRow[] {
  const byId = new Map(runs.map((r) => [r.id, r]));
  return events.map((event) => ({
    event,
    runs: event.runIds.map((id) => byId.get(id)).filter((r): r is RunSummary => !!r),
    refused: refusals.get(event.id) ?? [],
  }));
}

export function EventsView(p: { rows: EventRow[]; name?: string; names: string[] }) {
  return (
    <>
      <h1>Events</h1>
      <form class="filters" method="get" action={`${UI}/events`} role="search">
        <label>
          Event name
          <select name="name" data-testid="filter-event">
            <option value="">any</option>
            {p.names.map((n) => (
              <option value={n} selected={n === p.name}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="primary">
          Filter
        </button>
      </form>
      <table data-testid="events-table">
        <caption class="muted" style="text-align:left">
          {p.rows.length === 0 ? "No events." : `${p.rows.length} most recent events, newest first`}
        </caption>
        <thead>
          <tr>
            <th scope="col">Time (UTC)</th>
            <th scope="col">Event</th>
            <th scope="col">Source</th>
            <th scope="col">Data</th>
            <th scope="col">Runs started</th>
            <th scope="col">Refused by</th>
          </tr>
        </thead>
        <tbody>
          {p.rows.map((r) => (
            <tr data-testid="event-row" data-event={r.event.id} data-name={r.event.name}>
              <td>{shortTime(r.event.createdAt)}</td>
              <td>
                {r.event.name} <span class="muted">{r.event.id}</span>
              </td>
              <td>{r.event.source}</td>
              <td>
                <code>{JSON.stringify(r.event.data).slice(0, 300)}</code>
              </td>
              <td data-testid="event-runs">
                {r.runs.length === 0 && <span class="muted">none</span>}
                {r.runs.map((run) => (
                  <div>
                    <a href={`${UI}/runs/${seg(run.id)}`}>{run.id}</a> {run.workflow} <Badge status={run.status} />
                  </div>
                ))}
              </td>
              <td data-testid="event-refused">
                {r.refused.map((x) => (
                  <div>
                    <strong>{x.workflow}</strong>{" "}
                    <span class="error">
                      {x.code}: {x.message.slice(0, 300)}
                    </span>
                  </div>
                ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/**
 * The Run view: the run's status and buttons, its step graph and timeline (swapped in place from
 * a server-sent event stream while the run is going), the steps table and the panel of one step
 * (attempts with errors and resource usage, outputs, links to each attempt's log).
 */
import type { AttemptRecord, AttemptUsage, StepRecord } from "../../store/types.js";
import { Badge, count, CsrfField, seg, shortTime, took, UI } from "./layout.js";
import { DagSvg, TimelineSvg } from "./graph-svg.js";
import { parentOf, type RunModel } from "./run-model.js";
import { FINAL } from "./runs-page.js";
import type { Child } from "hono/jsx";

/** Outputs past this are cut in the panel (a step may report a long manifest). */
const OUTPUTS_MAX = 20_000;
/** Fan-out items listed in a parent's panel; the rest are counted. */
const ITEMS_MAX = 200;

export interface RunViewProps {
  model: RunModel;
  selected?: string;
  canOperate: boolean;
  csrf: string;
  notice?: string;
  /** The run recorded a continuous pipeline's figures: link the Streams view. */
  streams?: boolean;
  /** Sections shown under the steps: recovery and security documents. */
  children?: Child;
}

function Button(p: { run: string; op: "cancel" | "resume" | "retry"; csrf: string; label: string; danger?: boolean }) {
  return (
    <form method="post" action={`${UI}/runs/${seg(p.run)}/${p.op}`}>
      <CsrfField csrf={p.csrf} />
      <button type="submit" class={p.danger ? "danger" : ""} data-testid={`${p.op}-run`}>
        {p.label}
      </button>
    </form>
  );
}

/** The buttons: inside the live part, so Cancel gives way to Retry when the run ends, without a reload. */
function RunActions(p: { run: RunModel["run"]; canOperate: boolean; csrf: string; streams?: boolean }) {
  const { run } = p;
  const open = !FINAL.has(run.status);
  const version = run.version;
  return (
    <div class="actions" data-testid="run-actions">
      {p.canOperate ? (
        <>
          {open && <Button run={run.id} op="cancel" csrf={p.csrf} label="Cancel" danger />}
          {open && <Button run={run.id} op="resume" csrf={p.csrf} label="Resume" />}
          {!open && run.status !== "succeeded" && <Button run={run.id} op="retry" csrf={p.csrf} label="Retry" />}
          <a href={`${UI}/start?workflow=${encodeURIComponent(run.workflow)}`} data-testid="start-again">
            Start a new run…
          </a>
        </>
      ) : (
        <span class="muted">Cancel, resume and retry need the operator role.</span>
      )}
      <a href={`${UI}/runs/${seg(run.id)}/quarantine`} data-testid="quarantine-link">
        Quarantine
      </a>
      {p.streams && (
        <a href={`${UI}/runs/${seg(run.id)}/streams`} data-testid="streams-link">
          Streams
        </a>
      )}
      {run.status === "failed" && version != null && (
        <a href={`${UI}/runs/${seg(run.id)}/diff`} data-testid="diff-link">
          What changed since the last success
        </a>
      )}
    </div>
  );
}

/** The part of the page that changes while the run goes on: sent again, whole, by the live stream. */
export function RunLive(p: { model: RunModel; selected?: string; canOperate: boolean; csrf: string; streams?: boolean }) {
  const { run } = p.model;
  const visible = p.model.steps.filter((s) => parentOf(s.name) === undefined);
  return (
    <div id="run-live" data-testid="run-live" data-status={run.status}>
      <RunActions run={run} canOperate={p.canOperate} csrf={p.csrf} streams={p.streams} />
      <p>
        <Badge status={run.status} /> <span class="muted">created</span> {shortTime(run.createdAt)}{" "}
        {run.startedAt && (
          <>
            <span class="muted">· ran</span> {took(run.startedAt, run.endedAt)}
          </>
        )}
        {run.cancelRequested && !FINAL.has(run.status) && <span class="muted"> · cancel requested</span>}
      </p>
      {run.error && (
        <p class="error" data-testid="run-error">
          {run.error.code}: {run.error.message}
        </p>
      )}
      <h2>Graph</h2>
      <DagSvg model={p.model} selected={p.selected} />
      <h2>Timeline</h2>
      <TimelineSvg model={p.model} />
      <h2>Steps</h2>
      <table data-testid="steps-table">
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">Status</th>
            <th scope="col" class="num">
              Attempts
            </th>
            <th scope="col" class="num">
              Duration
            </th>
            <th scope="col">Error</th>
          </tr>
        </thead>
        <tbody>
          {visible.map((s) => {
            const node = p.model.nodes.get(s.name);
            return (
              <tr data-testid="step-row" data-step={s.name} data-status={s.status}>
                <td>
                  <a href={`${UI}/runs/${seg(run.id)}?step=${encodeURIComponent(s.name)}#step-panel`}>{s.name}</a>
                  {node?.itemCount !== undefined && <span class="muted"> ×{node.itemCount}</span>}
                </td>
                <td>
                  <Badge status={s.status} />
                </td>
                <td class="num">{node?.attempts ?? s.attempts}</td>
                <td class="num">{took(s.startedAt, s.endedAt)}</td>
                <td class="error">{s.error ? `${s.error.code}: ${s.error.message}`.slice(0, 300) : ""}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function RunView(p: RunViewProps) {
  const { run } = p.model;
  const open = !FINAL.has(run.status);
  const version = p.model.run.version;
  return (
    <>
      <h1 data-testid="run-title">
        {run.workflow}
        {version != null && <span class="muted"> v{version}</span>} <span class="muted">·</span> {run.id}
      </h1>
      {p.notice && (
        <p class="notice" role="alert" data-testid="notice">
          {p.notice}
        </p>
      )}
      <div
        {...(open && {
          "hx-ext": "sse",
          "sse-connect": `${UI}/runs/${seg(run.id)}/live${p.selected ? `?step=${encodeURIComponent(p.selected)}` : ""}`,
          "sse-close": "done",
        })}
      >
        <div sse-swap="run" hx-swap="innerHTML">
          <RunLive model={p.model} selected={p.selected} canOperate={p.canOperate} csrf={p.csrf} streams={p.streams} />
        </div>
      </div>
      {p.selected && <StepPanel model={p.model} step={p.selected} />}
      {p.children}
      <h2>Parameters</h2>
      <pre data-testid="run-params">{JSON.stringify(run.params, null, 2)}</pre>
    </>
  );
}

function usageText(u: AttemptUsage | null): string {
  if (!u) return "";
  const mb = (b: number | null) => (b === null ? "?" : `${(b / 1048576).toFixed(1)} MB`);
  return `cpu ${u.cpuMs.toFixed(0)} ms · peak ${mb(u.peakMemoryBytes)} · read ${mb(u.readBytes)} · written ${mb(u.writtenBytes)}${u.scope === "process" ? " (whole process)" : ""}`;
}

function AttemptsTable(p: { run: string; attempts: AttemptRecord[] }) {
  return (
    <table data-testid="attempts-table">
      <thead>
        <tr>
          <th scope="col">#</th>
          <th scope="col">Status</th>
          <th scope="col">Started (UTC)</th>
          <th scope="col" class="num">
            Duration
          </th>
          <th scope="col">Error</th>
          <th scope="col">Usage</th>
          <th scope="col">Log</th>
        </tr>
      </thead>
      <tbody>
        {p.attempts.map((a) => (
          <tr data-testid="attempt-row" data-status={a.status}>
            <td>{a.n}</td>
            <td>
              <Badge status={a.status} />
            </td>
            <td>{shortTime(a.startedAt)}</td>
            <td class="num">{took(a.startedAt, a.endedAt)}</td>
            <td class="error">
              {a.error && `${a.error.code}: ${a.error.message}`}
              {a.error?.details && <pre>{JSON.stringify(a.error.details, null, 2).slice(0, 4000)}</pre>}
            </td>
            <td class="muted">{usageText(a.usage)}</td>
            <td>
              <a href={`${UI}/runs/${seg(p.run)}/steps/${seg(a.step)}/attempts/${a.n}/log`} data-testid="log-link">
                log
              </a>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function StepPanel(p: { model: RunModel; step: string }) {
  const { model } = p;
  const rec: StepRecord | undefined = model.steps.find((s) => s.name === p.step);
  if (!rec)
    return (
      <section class="panel" id="step-panel">
        <p class="error">This run has no step named {p.step}.</p>
      </section>
    );
  const items = model.steps.filter((s) => parentOf(s.name) === rec.name);
  const attempts = model.attempts.filter((a) => a.step === rec.name).sort((a, b) => a.n - b.n);
  const outputs = rec.outputs ? JSON.stringify(rec.outputs, null, 2) : "";
  const node = model.nodes.get(rec.name);
  return (
    <section class="panel" id="step-panel" data-testid="step-panel" data-step={rec.name} tabindex={-1} aria-label={`step ${rec.name}`}>
      <h2>
        Step {rec.name} <Badge status={rec.status} />
      </h2>
      {parentOf(rec.name) && (
        <p>
          An item of <a href={`${UI}/runs/${seg(model.run.id)}?step=${encodeURIComponent(parentOf(rec.name)!)}#step-panel`}>{parentOf(rec.name)}</a>
        </p>
      )}
      {rec.error && (
        <p class="error" data-testid="step-error">
          {rec.error.code}: {rec.error.message}
        </p>
      )}
      {node && Object.keys(node.rows).length > 0 && (
        <p data-testid="step-rows">
          rows in {count(node.rows.in)} · out {count(node.rows.out)} · quarantined {count(node.rows.quarantined ?? 0)} · duplicate{" "}
          {count(node.rows.duplicate ?? 0)}
        </p>
      )}
      {attempts.length > 0 ? <AttemptsTable run={model.run.id} attempts={attempts} /> : <p class="muted">No attempts of its own.</p>}
      {items.length > 0 && (
        <>
          <h3>Items ({items.length})</h3>
          <ul data-testid="step-items">
            {items.slice(0, ITEMS_MAX).map((s) => (
              <li>
                <a href={`${UI}/runs/${seg(model.run.id)}?step=${encodeURIComponent(s.name)}#step-panel`}>{s.name}</a> <Badge status={s.status} />
                {s.error && <span class="error"> {s.error.message.slice(0, 200)}</span>}
              </li>
            ))}
          </ul>
          {items.length > ITEMS_MAX && <p class="muted">…and {items.length - ITEMS_MAX} more.</p>}
        </>
      )}
      {outputs && (
        <>
          <h3>Outputs</h3>
          <pre data-testid="step-outputs">
            {outputs.length > OUTPUTS_MAX ? `${outputs.slice(0, OUTPUTS_MAX)}\n… (${outputs.length - OUTPUTS_MAX} more characters)` : outputs}
          </pre>
        </>
      )}
    </section>
  );
}

/**
 * The Workflows view: every current workflow with its version, one workflow's versions with the
 * YAML of each as applied, a line diff between two versions (the `diff` package's structured
 * patch, three lines of context), and a rollback button per older version for admins (the
 * server checks the role again: control/workflows.ts rollbackWorkflow).
 */
import { structuredPatch } from "diff";
import type { WorkflowVersion } from "../../store/types.js";
import { CsrfField, seg, shortTime, UI } from "./layout.js";

export interface DiffLine {
  kind: "add" | "del" | "same" | "hunk";
  text: string;
}

/** The lines of a unified diff from `a` to `b`: hunk headers, then each line marked. */
export function diffLines(a: string, b: string): DiffLine[] {
  const patch = structuredPatch("a", "b", a, b, "", "", { context: 3 });
  const out: DiffLine[] = [];
  for (const h of patch.hunks) {
    out.push({ kind: "hunk", text: `@@ -${h.oldStart},${h.oldLines} +${h.newStart},${h.newLines} @@` });
    for (const l of h.lines) {
      if (l.startsWith("\\")) continue; // "\ No newline at end of file"
      out.push({ kind: l[0] === "+" ? "add" : l[0] === "-" ? "del" : "same", text: l });
    }
  }
  return out;
}

export function WorkflowsList(p: { workflows: WorkflowVersion[] }) {
  return (
    <>
      <h1>Workflows</h1>
      <table data-testid="workflows-table">
        <caption class="muted" style="text-align:left">
          {p.workflows.length === 0 ? "No workflow has been applied (sluice apply FILE)." : `${p.workflows.length} workflows`}
        </caption>
        <thead>
          <tr>
            <th scope="col">Workflow</th>
            <th scope="col" class="num">
              Current version
            </th>
            <th scope="col">Applied (UTC)</th>
            <th scope="col">From file</th>
            <th scope="col">Runs</th>
          </tr>
        </thead>
        <tbody>
          {p.workflows.map((w) => (
            <tr data-testid="workflow-row" data-workflow={w.name}>
              <td>
                <a href={`${UI}/workflows/${seg(w.name)}`}>{w.name}</a>
              </td>
              <td class="num" data-testid="workflow-version">
                v{w.version}
              </td>
              <td>{shortTime(w.createdAt)}</td>
              <td class="muted">{w.source ?? ""}</td>
              <td>
                <a href={`${UI}/runs?workflow=${encodeURIComponent(w.name)}`}>runs</a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function VersionSelect(p: { name: string; label: string; versions: number[]; value: number }) {
  return (
    <label>
      {p.label}
      <select name={p.name} data-testid={`diff-${p.name}`}>
        {p.versions.map((v) => (
          <option value={String(v)} selected={v === p.value}>
            v{v}
          </option>
        ))}
      </select>
    </label>
  );
}

export function WorkflowView(p: { name: string; history: WorkflowVersion[]; canRollback: boolean; csrf: string; notice?: string }) {
  const versions = [...p.history].sort((a, b) => b.version - a.version);
  const current = versions.find((v) => v.current);
  const numbers = versions.map((v) => v.version);
  return (
    <>
      <h1 data-testid="workflow-title">
        {p.name} {current && <span class="muted">· current v{current.version}</span>}
      </h1>
      {p.notice && (
        <p class="notice" role="status" data-testid="notice">
          {p.notice}
        </p>
      )}
      <div class="actions">
        <a href={`${UI}/runs?workflow=${encodeURIComponent(p.name)}`}>Runs of {p.name}</a>
        {current && <a href={`${UI}/start?workflow=${encodeURIComponent(p.name)}`}>Start a run…</a>}
      </div>
      {numbers.length > 1 && (
        <form class="filters" method="get" action={`${UI}/workflows/${seg(p.name)}/diff`} data-testid="diff-form">
          <VersionSelect name="from" label="Diff from" versions={numbers} value={numbers[1]!} />
          <VersionSelect name="to" label="to" versions={numbers} value={numbers[0]!} />
          <button type="submit">Show the diff</button>
        </form>
      )}
      <table data-testid="versions-table">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Applied (UTC)</th>
            <th scope="col">From file</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr data-testid="version-row" data-version={String(v.version)} data-current={String(v.current)}>
              <td>
                v{v.version}
                {v.current && <strong> (current)</strong>}
              </td>
              <td>{shortTime(v.createdAt)}</td>
              <td class="muted">{v.source ?? ""}</td>
              <td class="actions">
                <a href={`#yaml-${v.version}`}>YAML</a>
                {v.version > 1 && <a href={`${UI}/workflows/${seg(p.name)}/diff?from=${v.version - 1}&to=${v.version}`}>diff with v{v.version - 1}</a>}
                {!v.current && p.canRollback && (
                  <form method="post" action={`${UI}/workflows/${seg(p.name)}/rollback`}>
                    <CsrfField csrf={p.csrf} />
                    <input type="hidden" name="to" value={String(v.version)} />
                    <button type="submit" class="danger" data-testid={`rollback-${v.version}`}>
                      Make v{v.version} current
                    </button>
                  </form>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {!p.canRollback && <p class="muted">Rolling back needs the admin role.</p>}
      <h2>YAML of every version</h2>
      {versions.map((v) => (
        <details id={`yaml-${v.version}`} open={v.current}>
          <summary>
            v{v.version}
            {v.current ? " (current)" : ""}
          </summary>
          <pre data-testid="workflow-yaml" data-version={String(v.version)}>
            {v.yaml}
          </pre>
        </details>
      ))}
    </>
  );
}

export function DiffBlock(p: { lines: DiffLine[] }) {
  if (p.lines.length === 0) return <p data-testid="diff-same">The two versions are the same text.</p>;
  return (
    <pre class="diff" data-testid="diff">
      {p.lines.map((l) => (
        <span class={`ln d-${l.kind}`} data-kind={l.kind}>
          {l.text}
        </span>
      ))}
    </pre>
  );
}

export function DiffView(p: { name: string; from: WorkflowVersion; to: WorkflowVersion; lines: DiffLine[]; why?: string }) {
  const added = p.lines.filter((l) => l.kind === "add").length;
  const removed = p.lines.filter((l) => l.kind === "del").length;
  return (
    <>
      <h1 data-testid="diff-title">
        <a href={`${UI}/workflows/${seg(p.name)}`}>{p.name}</a> v{p.from.version} → v{p.to.version}
      </h1>
      {p.why && <p data-testid="diff-why">{p.why}</p>}
      <p class="muted">
        {added} line{added === 1 ? "" : "s"} added, {removed} removed.
      </p>
      <DiffBlock lines={p.lines} />
    </>
  );
}

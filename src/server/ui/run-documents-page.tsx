/**
 * The Run view's recovery and security sections: the strategy decision with every strategy
 * considered, the gap ledgers before and after, the conflict report, the classification of each
 * column, and the run's audit trail under the log's verdict. Shown only when the run has them.
 */
import { shortTime } from "./layout.js";
import type { AuditView, Classification, Gaps, Range, RecoveryDocs } from "./run-documents.js";

const RANGES_SHOWN = 50;
const CONFLICTS_SHOWN = 100;
const p2 = (n: number | undefined) => (typeof n === "number" ? n.toFixed(2) : "");
const range = (r: Range) => (r.from === r.to ? `${r.from}` : `${r.from}–${r.to}`);

function GapsRow(p: { label: string; g?: Gaps; testid: string }) {
  if (!p.g) return null;
  const g = p.g;
  return (
    <p data-testid={p.testid}>
      <strong>{p.label}:</strong>{" "}
      {"problem" in g ? (
        <span class="error">{g.problem}</span>
      ) : g.gaps.length === 0 ? (
        <>none ({g.step})</>
      ) : (
        <>
          {g.missing.toLocaleString("en-US")} missing in {g.gaps.length} range{g.gaps.length === 1 ? "" : "s"}:{" "}
          {g.gaps.slice(0, RANGES_SHOWN).map(range).join(", ")}
          {g.gaps.length > RANGES_SHOWN && ` … ${g.gaps.length - RANGES_SHOWN} more`} <span class="muted">({g.step})</span>
        </>
      )}
    </p>
  );
}

export function RecoverySection(p: { docs: RecoveryDocs }) {
  const { decision, conflicts } = p.docs;
  return (
    <section data-testid="recovery">
      <h2>Recovery</h2>
      {decision &&
        ("problem" in decision ? (
          <p class="error" data-testid="decision-problem">
            strategy ({decision.step}): {decision.problem}
          </p>
        ) : (
          <>
            <p data-testid="decision">
              <strong>Strategy</strong> ({decision.step}): <strong data-testid="decision-choice">{decision.record.choice}</strong>
              {decision.record.waitMs !== undefined && ` after ${Math.round(decision.record.waitMs / 1000)} s`} · failure class{" "}
              {decision.record.class ?? "none"}
              <br />
              <span data-testid="decision-why">{decision.record.why}</span>
            </p>
            <table data-testid="decision-table">
              <caption class="muted" style="text-align:left">
                Strategies considered (→ chosen, ✗ excluded)
              </caption>
              <thead>
                <tr>
                  <th scope="col">Strategy</th>
                  <th scope="col" class="num">
                    P(success)
                  </th>
                  <th scope="col" class="num">
                    Sample
                  </th>
                  <th scope="col" class="num">
                    α
                  </th>
                  <th scope="col" class="num">
                    β
                  </th>
                  <th scope="col">Excluded because</th>
                </tr>
              </thead>
              <tbody>
                {decision.record.considered.map((c) => (
                  <tr data-strategy={c.strategy} data-chosen={String(c.strategy === decision.record.choice)}>
                    <td>
                      {c.strategy === decision.record.choice ? "→ " : c.allowed ? "" : "✗ "}
                      {c.strategy}
                    </td>
                    <td class="num">{c.strategy === "give_up" ? "" : p2(c.estimatedSuccess)}</td>
                    <td class="num">{p2(c.sample)}</td>
                    <td class="num">{c.strategy === "give_up" ? "" : p2(c.alpha)}</td>
                    <td class="num">{c.strategy === "give_up" ? "" : p2(c.beta)}</td>
                    <td>{c.excludedBecause ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        ))}
      <GapsRow label="Gaps before" g={p.docs.before} testid="gaps-before" />
      <GapsRow label="Gaps after" g={p.docs.after} testid="gaps-after" />
      {conflicts && (
        <div data-testid="conflicts">
          {"problem" in conflicts ? (
            <p class="error">
              conflicts ({conflicts.step}): {conflicts.problem}
            </p>
          ) : (
            <>
              <p>
                <strong>Conflicts:</strong> <span data-testid="conflict-count">{conflicts.count}</span>
                {conflicts.policy && ` · kept by ${conflicts.policy}`} <span class="muted">({conflicts.step})</span>
              </p>
              {conflicts.list && conflicts.list.length > 0 && (
                <table data-testid="conflicts-table">
                  <thead>
                    <tr>
                      <th scope="col">Key</th>
                      <th scope="col">Fields</th>
                      <th scope="col">Kept</th>
                      <th scope="col">Other</th>
                    </tr>
                  </thead>
                  <tbody>
                    {conflicts.list.slice(0, CONFLICTS_SHOWN).map((c) => (
                      <tr data-testid="conflict-row">
                        <td>{JSON.stringify(c.key)}</td>
                        <td>{(c.fields ?? []).join(", ")}</td>
                        <td>
                          {c.kept?.source}: <code>{JSON.stringify(c.kept?.value).slice(0, 300)}</code>
                        </td>
                        <td>
                          {c.other?.source}: <code>{JSON.stringify(c.other?.value).slice(0, 300)}</code>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
              {conflicts.list && conflicts.list.length > CONFLICTS_SHOWN && <p class="muted">…and {conflicts.list.length - CONFLICTS_SHOWN} more.</p>}
            </>
          )}
        </div>
      )}
    </section>
  );
}

export function ClassificationSection(p: { list: Classification[] }) {
  return (
    <section data-testid="classification">
      <h2>Classification</h2>
      {p.list.map((c) =>
        "problem" in c ? (
          <p class="error">
            {c.step}: {c.problem}
          </p>
        ) : (
          <table data-testid="classification-table" data-step={c.step}>
            <caption class="muted" style="text-align:left">
              Step {c.step}
              {c.region && ` · region ${c.region}`}
              {c.threshold !== undefined && ` · threshold ${c.threshold}`}
            </caption>
            <thead>
              <tr>
                <th scope="col">Column</th>
                <th scope="col">Class</th>
                <th scope="col" class="num">
                  Share
                </th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {c.columns.map((col) => (
                <tr data-testid="classified-column" data-column={col.name}>
                  <td>{col.name}</td>
                  <td>{col.class}</td>
                  <td class="num">
                    {(col.share * 100).toFixed(1)} %{col.sampled !== undefined && <span class="muted"> of {col.sampled}</span>}
                  </td>
                  <td>{col.action}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ),
      )}
    </section>
  );
}

export function AuditSection(p: { audit: AuditView }) {
  const { verdict } = p.audit;
  return (
    <section data-testid="audit">
      <h2>Audit trail</h2>
      <p data-testid="audit-verdict" data-ok={String(verdict.ok)} class={verdict.ok ? "" : "notice"} role={verdict.ok ? undefined : "alert"}>
        {verdict.ok
          ? `audit log intact: ${verdict.entries} entries, ${verdict.checkpoints} signed checkpoints${p.audit.keyed ? "" : " (no public key found to check signatures)"}`
          : verdict.problem.message}
      </p>
      <table data-testid="audit-table">
        <thead>
          <tr>
            <th scope="col" class="num">
              #
            </th>
            <th scope="col">Time (UTC)</th>
            <th scope="col">Event</th>
            <th scope="col">Outcome</th>
            <th scope="col">Actor</th>
            <th scope="col">Resource</th>
            <th scope="col">Step</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {p.audit.entries.map((e) => (
            <tr data-testid="audit-row" data-event={e.event}>
              <td class="num">{e.seq}</td>
              <td>{shortTime(e.time)}</td>
              <td>{e.event}</td>
              <td class={e.outcome === "failure" ? "error" : ""}>{e.outcome}</td>
              <td>{e.actor}</td>
              <td>{e.resource}</td>
              <td>{e.step ?? ""}</td>
              <td>
                <code>{e.details ? JSON.stringify(e.details).slice(0, 300) : ""}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

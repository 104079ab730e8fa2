import pc from "picocolors";
import type { PipelineStats } from "../engine/pipeline.js";
import { describeStream } from "./stream-figures.js";
import { SluiceError } from "../errors.js";
import { runDetail, type RunDetail } from "../engine/index.js";
import { PROCESS_NOTE, usageCells } from "./usage-figures.js";
import { formatDuration } from "../spec/duration.js";
import type { RunStatus } from "../store/types.js";
import { withStore } from "./context.js";
import { recoveryLines, recoverySummary } from "./recovery-status.js";

const RUN_STATUSES: RunStatus[] = ["pending", "running", "succeeded", "failed", "cancelled"];
type Attempt = RunDetail["steps"][number]["attempts"][number];

export async function runsCommand(o: { workflow?: string; status?: string; limit: string; json?: boolean }): Promise<number> {
  if (o.status && !RUN_STATUSES.includes(o.status as RunStatus)) throw new SluiceError("USAGE", `--status must be one of ${RUN_STATUSES.join(", ")}`);
  const limit = Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new SluiceError("USAGE", `--limit must be a positive whole number`);
  return withStore(async (store) => {
    const runs = await store.listRuns({ workflow: o.workflow, status: o.status as RunStatus | undefined, limit });
    if (o.json) {
      const out = runs.map((r) => ({
        id: r.id,
        workflow: r.workflow,
        status: r.status,
        createdAt: r.createdAt,
        startedAt: r.startedAt,
        endedAt: r.endedAt,
        params: r.params,
        error: r.error,
        trigger: r.trigger,
      }));
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    }
    if (runs.length === 0) {
      process.stdout.write("no runs yet\n");
      return 0;
    }
    // A child run (started by a `workflow:` step) names its parent run and step.
    const parentOf = (r: (typeof runs)[number]) => (r.trigger?.parent ? `${r.trigger.parent.runId} ${r.trigger.parent.step}` : "");
    const withParents = runs.some((r) => r.trigger?.parent);
    const rows = runs.map((r) => [
      r.id,
      r.workflow,
      r.status,
      r.createdAt.replace("T", " ").slice(0, 19),
      took(r.startedAt, r.endedAt),
      ...(withParents ? [parentOf(r)] : []),
    ]);
    printTable(["RUN", "WORKFLOW", "STATUS", "CREATED (UTC)", "DURATION", ...(withParents ? ["PARENT"] : [])], rows);
    return 0;
  });
}

export async function statusCommand(id: string, o: { json?: boolean }): Promise<number> {
  return withStore(async (store) => {
    const d = await runDetail(store, id);
    if (o.json) {
      process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`${pc.bold(d.workflow)} ${d.id}  ${colour(d.status)}  ${took(d.startedAt, d.endedAt)}\n`);
    if (d.error) process.stdout.write(`  ${d.error.code}: ${d.error.message}\n`);
    const rows: string[][] = [];
    const errorOf = (a: Attempt | undefined) => (a?.error ? `${a.error.code}: ${a.error.message}`.slice(0, 120) : "");
    for (const s of d.steps) {
      const last = s.attempts.at(-1);
      rows.push([
        s.name,
        colour(s.status),
        String(s.attempts.length),
        last ? took(last.startedAt, last.endedAt) : "",
        ...usageCells(last?.usage ?? null),
        errorOf(last),
      ]);
      // The attempts before the last one, each with its own figures, under their step.
      for (const a of s.attempts.slice(0, -1))
        rows.push([pc.dim(`  #${a.n}`), colour(a.status), "", took(a.startedAt, a.endedAt), ...usageCells(a.usage), errorOf(a)]);
    }
    printTable(["STEP", "STATUS", "ATTEMPTS", "LAST", "CPU", "PEAK MEM", "READ", "WRITTEN", "ERROR"], rows);
    if (d.steps.some((s) => s.attempts.some((a) => a.usage?.scope === "process"))) process.stdout.write(`${pc.dim(PROCESS_NOTE)}\n`);
    // A continuous group keeps its live figures in its first step's outputs.
    const stream = d.steps.find((s) => s.outputs && "ratePerSec" in s.outputs && "endToEndMs" in s.outputs);
    if (stream) process.stdout.write(`stream: ${describeStream(stream.outputs as unknown as PipelineStats)}\n`);
    // A recovery run: its decision record, gap ledgers and conflicts, read from the documents its steps wrote.
    for (const line of recoveryLines(await recoverySummary(d))) process.stdout.write(`${line}\n`);
    return 0;
  });
}

function took(start: string | null, end: string | null): string {
  if (!start) return "";
  return formatDuration((end ? Date.parse(end) : Date.now()) - Date.parse(start));
}

function colour(status: string): string {
  if (status === "succeeded") return pc.green(status);
  if (status === "failed") return pc.red(status);
  if (status === "running") return pc.cyan(status);
  if (status === "cancelled") return pc.yellow(status);
  return pc.dim(status);
}

function printTable(head: string[], rows: string[][]): void {
  // eslint-disable-next-line no-control-regex
  const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "").length;
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c + " ".repeat(widths[i]! - visible(c)))
      .join("  ")
      .trimEnd();
  process.stdout.write(`${pc.dim(line(head))}\n${rows.map(line).join("\n")}\n`);
}

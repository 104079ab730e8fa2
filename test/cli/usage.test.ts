/**
 * `sluice status RUN` shows what each attempt consumed: the real CLI runs a workflow with a
 * 200 MB exec program, a 50 MB file written by another, a step that fails once and is retried,
 * and an in-process action; then `status` (the table and --json) is read back. Both stores.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURE_ACTIONS, sluice } from "./cli-helpers.js";
import { bothStores, PG_URL } from "../stores.js";

const MiB = 1024 * 1024;
// eslint-disable-next-line no-control-regex
const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

/** "200 MiB" → bytes (the table's binary units). */
function bytes(cell: string): number {
  const m = /^([\d.]+) (B|KiB|MiB|GiB)\*?$/.exec(cell);
  if (!m) throw new Error(`not a byte figure: ${JSON.stringify(cell)}`);
  return Number(m[1]) * { B: 1, KiB: 1024, MiB: MiB, GiB: 1024 * MiB }[m[2] as "B"];
}

describe.each(bothStores("cliusage"))("sluice status shows resource usage ($dialect)", (backend) => {
  let cwd: string;
  let env: Record<string, string>;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), "sluice-usage-cli-"));
    env = { SLUICE_ACTIONS: FIXTURE_ACTIONS, ...(backend.schema ? { SLUICE_DATABASE_URL: PG_URL, SLUICE_PG_SCHEMA: backend.schema } : {}) };
  });
  afterAll(async () => {
    rmSync(cwd, { recursive: true, force: true });
    await backend.drop();
  });

  it("per step and per attempt, with in-process figures marked as the whole process's", () => {
    const out = join(cwd, "fifty.bin");
    const marker = join(cwd, "tried");
    const wf = join(cwd, "usage.yaml");
    writeFileSync(
      wf,
      `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: usage-flow
spec:
  steps:
    - name: allocate
      exec: { command: [node, -e, "const b = Buffer.alloc(200 * 1024 * 1024, 1); setTimeout(() => b.length, 500)"] }
    - name: write
      exec: { command: [node, -e, "require('fs').writeFileSync(process.env.OUT, Buffer.alloc(50 * 1024 * 1024, 7))"], env: { OUT: "${out}" } }
    - name: flaky
      exec: { command: [sh, -c, 'if [ -e "${marker}" ]; then exit 0; fi; touch "${marker}"; exit 3'] }
      retry: { limit: 1, backoff: { initial: 10ms } }
    - name: mark
      agent: fixture
      action: mark
      with: { file: "${join(cwd, "marks.txt")}" }
`,
    );
    const r = sluice(["run", wf, "--json"], { cwd, env });
    expect(r.code, r.stderr).toBe(0);
    const id = JSON.parse(r.stdout).id as string;
    expect(statSync(out).size).toBe(50 * MiB);

    const s = sluice(["status", id], { cwd, env });
    expect(s.code, s.stderr).toBe(0);
    const lines = plain(s.stdout).split("\n");
    const head = lines.find((l) => l.startsWith("STEP"))!;
    expect(head).toMatch(/^STEP\s+STATUS\s+ATTEMPTS\s+LAST\s+CPU\s+PEAK MEM\s+READ\s+WRITTEN\s+ERROR$/);
    const row = (name: string) => {
      const l = lines.find((x) => x.trimStart().startsWith(`${name} `));
      expect(l, `a row for ${name} in:\n${s.stdout}`).toBeDefined();
      return l!.trim().split(/\s{2,}/);
    };
    // STEP, STATUS, ATTEMPTS, LAST, CPU, PEAK MEM, READ, WRITTEN
    const allocate = row("allocate");
    expect(allocate.slice(0, 3)).toEqual(["allocate", "succeeded", "1"]);
    expect(allocate[4]).toMatch(/^\d+ms$|^[\d.]+s$/);
    expect(bytes(allocate[5]!)).toBeGreaterThanOrEqual(200 * MiB);
    const write = row("write");
    expect(bytes(write[7]!)).toBeGreaterThanOrEqual(50 * MiB);
    expect(bytes(write[7]!)).toBeLessThan(51 * MiB);
    // The retried step: its last attempt on the step's row, the failed first one under it.
    expect(row("flaky").slice(0, 3)).toEqual(["flaky", "succeeded", "2"]);
    const first = row("#1");
    expect(first[1]).toBe("failed");
    expect(first.at(-1)).toBe('EXEC_FAILED: command "sh" exited with code 3');
    // In-process: every figure marked, and the mark explained.
    const mark = row("mark");
    expect(mark.slice(4, 8).every((c) => c.endsWith("*"))).toBe(true);
    expect(lines).toContain("* the whole sluice process while the action ran, shared with the steps running at the same time");

    const doc = JSON.parse(sluice(["status", id, "--json"], { cwd, env }).stdout);
    const usage = (step: string, n = 1) => doc.steps.find((x: { name: string }) => x.name === step).attempts[n - 1].usage;
    expect(usage("allocate")).toMatchObject({ scope: "process-tree", cpuMs: expect.any(Number), readBytes: expect.any(Number) });
    expect(usage("allocate").peakMemoryBytes).toBeGreaterThanOrEqual(200 * MiB);
    expect(usage("write").writtenBytes).toBeGreaterThanOrEqual(50 * MiB);
    expect(usage("flaky", 1)).toMatchObject({ scope: "process-tree" });
    expect(usage("mark")).toMatchObject({ scope: "process", cpuMs: expect.any(Number), peakMemoryBytes: expect.any(Number) });
  });
});

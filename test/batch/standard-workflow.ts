/**
 * The standard ingestion workflow loaded once for a test file, with a temporary home, a SQLite
 * state store and a scratch folder for data, and a way to run it to its end.
 */
import { afterAll, beforeAll, expect } from "vitest";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { createRun, executeRun, runDetail } from "../../src/engine/index.js";
import { loadWorkflowFile } from "../../src/spec/load.js";
import type { Workflow } from "../../src/spec/schema.js";
import { testEnv, tempDir, type TestEnv } from "../helpers.js";
import { ROOT } from "../cli/cli-helpers.js";

export const STANDARD_WORKFLOW = join(ROOT, "workflows", "base-data-ingestion-workflow-standard-ingestion.yaml");

export interface StandardWorkflow {
  readonly env: TestEnv;
  readonly wf: Workflow;
  /** A scratch folder for the test's files, removed after the file's tests. */
  readonly data: string;
  /** Runs the workflow with `params` to its end; the run and its detail. */
  run(params: Record<string, string>): Promise<{ run: Awaited<ReturnType<typeof executeRun>>; detail: Awaited<ReturnType<typeof runDetail>>; id: string }>;
}

export function standardWorkflow(prefix: string): StandardWorkflow {
  let env: TestEnv;
  let wf: Workflow;
  let data = "";
  beforeAll(async () => {
    env = testEnv();
    const loaded = await loadWorkflowFile(STANDARD_WORKFLOW, { actions: env.actions });
    expect(loaded.problems).toEqual([]);
    wf = loaded.workflows[0]!.workflow;
    data = tempDir(prefix);
  });
  afterAll(async () => {
    await env.cleanup();
    rmSync(data, { recursive: true, force: true });
  });
  return {
    get env() {
      return env;
    },
    get wf() {
      return wf;
    },
    get data() {
      return data;
    },
    async run(params) {
      const created = await createRun(env.store, { workflow: wf, params });
      const done = await executeRun(created.id, { store: env.store, actions: env.actions, home: env.home });
      return { run: done, detail: await runDetail(env.store, created.id), id: created.id };
    },
  };
}

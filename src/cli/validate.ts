import { existsSync } from "node:fs";
import { join } from "node:path";
import { formatProblem, loadWorkflowFile } from "../spec/load.js";
import { sluiceHome } from "../store/index.js";
import { loadActions, withStore } from "./context.js";

export async function validateCommand(files: string[], o: { actions?: string[] }): Promise<number> {
  const actions = await loadActions(o.actions);
  const workflows = await registeredNames();
  let failed = false;
  for (const file of files) {
    const result = await loadWorkflowFile(file, { actions, workflows });
    if (result.problems.length > 0) {
      failed = true;
      for (const p of result.problems) process.stderr.write(`${formatProblem(p)}\n`);
    } else {
      const names = result.workflows.map((w) => w.workflow.metadata.name).join(", ");
      process.stdout.write(`${file}: ok (${names})\n`);
    }
  }
  return failed ? 1 : 0;
}

/**
 * The workflows a `workflow:` step may name besides its own file's and the files beside it: the
 * registry of this environment's store, read only when there is one (validating never creates a
 * store).
 */
async function registeredNames(): Promise<Set<string>> {
  const url = process.env.SLUICE_DATABASE_URL;
  if (!url && !existsSync(join(sluiceHome(), "sluice.db"))) return new Set();
  return withStore(async (store) => new Set((await store.listWorkflows()).map((w) => w.name)));
}

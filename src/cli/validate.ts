import { formatProblem, loadWorkflowFile } from "../spec/load.js";
import { loadActions } from "./context.js";

export async function validateCommand(files: string[], o: { actions?: string[] }): Promise<number> {
  const actions = await loadActions(o.actions);
  let failed = false;
  for (const file of files) {
    const result = await loadWorkflowFile(file, { actions });
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

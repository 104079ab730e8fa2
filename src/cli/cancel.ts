/**
 * `sluice cancel`: ask the owner of a running run to stop it, or, when no live process owns it,
 * mark it cancelled directly.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { SluiceError } from "../errors.js";
import { cancelRun } from "../control/runs.js";
import { withStore } from "./context.js";

export async function cancelCommand(id: string): Promise<number> {
  return withStore(async (store) => {
    const run = await store.getRun(id);
    if (!run) throw new SluiceError("NOT_FOUND", `no run with id ${id}; list runs with: sluice runs`);
    if (run.status !== "pending" && run.status !== "running") {
      process.stdout.write(`run ${id} already ended (${run.status})\n`);
      return 0;
    }
    const { ended } = await cancelRun(store, id);
    if (ended) {
      process.stdout.write(`run ${id} cancelled\n`);
      return 0;
    }
    // The owner notices at its next heartbeat (at most a second); wait a little to report the outcome.
    for (let i = 0; i < 50; i++) {
      await sleep(200);
      const now = await store.getRun(id);
      if (now && now.status !== "running" && now.status !== "pending") {
        process.stdout.write(`run ${id} ${now.status}\n`);
        return 0;
      }
    }
    process.stdout.write(`cancellation of run ${id} requested; its process (${run.leaseOwner}) will stop it\n`);
    return 0;
  });
}

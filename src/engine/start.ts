/**
 * Creating a run: the workflow snapshot, its typed parameters and every step as pending,
 * written in one transaction before anything executes.
 */
import { resolveParams } from "../spec/params.js";
import type { Workflow } from "../spec/schema.js";
import type { RunRecord, RunTrigger, RunStore } from "../store/types.js";
import { newRunId } from "./ids.js";

export interface StartRunInput {
  workflow: Workflow;
  params?: Record<string, unknown>;
  source?: string | null;
  trigger?: RunTrigger | null;
  /** A chosen run id (a cron fire derives it from the fire, so starting it twice is refused). */
  id?: string;
  /** Create the run already leased to this owner (see NewRun.lease). */
  lease?: { owner: string; expiresAt: number };
  /** The registry version of `workflow`, when it came from the registry. */
  version?: number;
}

export async function createRun(store: RunStore, input: StartRunInput): Promise<RunRecord> {
  const params = resolveParams(input.workflow, input.params ?? {});
  return store.createRun({
    id: input.id ?? newRunId(),
    workflow: input.workflow,
    source: input.source ?? null,
    params,
    trigger: input.trigger ?? { type: "manual" },
    createdAt: new Date().toISOString(),
    lease: input.lease,
    version: input.version ?? null,
  });
}

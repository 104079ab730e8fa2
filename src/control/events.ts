/**
 * Events: store the event, then start every current workflow with a trigger naming it, the payload
 * available to the run as `${{ event.data.* }}`. Used by `POST /api/v1/events`, `sluice emit`,
 * the file-arrival watcher and the engine's platform events.
 */
import { randomBytes } from "node:crypto";
import { toErrorInfo } from "../errors.js";
import type { EventRecord, EventStore, RegistryStore, RunRecord, RunStore, SharedStateStore } from "../store/types.js";
import { startWorkflowRun } from "./runs.js";

export interface EmitInput {
  name: string;
  data?: unknown;
  source: string;
}

export interface EmitResult {
  event: EventRecord;
  runs: RunRecord[];
  /** Workflows whose run could not start (bad params in the payload, …), with the reason. */
  refused: { workflow: string; code: string; message: string }[];
}

export function newEventId(now = Date.now()): string {
  return `e-${now.toString(36)}-${randomBytes(4).toString("hex").slice(0, 6)}`;
}

export async function emitEvent(store: RunStore & RegistryStore & EventStore, input: EmitInput): Promise<EmitResult> {
  const event = { id: newEventId(), name: input.name, data: input.data ?? {}, source: input.source, createdAt: new Date().toISOString() };
  await store.recordEvent(event);
  const runs: RunRecord[] = [];
  const refused: EmitResult["refused"] = [];
  for (const wf of await store.listWorkflows()) {
    if (!(wf.spec.spec.triggers ?? []).some((t) => t.event === input.name)) continue;
    try {
      const params = paramsFromEvent(wf.spec.spec.params, event.data);
      runs.push(
        await startWorkflowRun(store, {
          workflow: wf.name,
          version: wf.version,
          params,
          trigger: { type: "event", name: input.name, data: event.data, eventId: event.id },
        }),
      );
    } catch (err) {
      const e = toErrorInfo(err);
      refused.push({ workflow: wf.name, code: e.code, message: e.message });
    }
  }
  // Kept beside the event so the web UI's Events view can say which workflows refused it, and why.
  if (refused.length > 0 && "putState" in store)
    await (store as unknown as SharedStateStore).putState(REFUSED_NAMESPACE, event.id, refused, 0, event.createdAt).catch(() => null);
  return { event: { ...event, runIds: runs.map((r) => r.id) }, runs, refused };
}

/** Shared-state namespace of the refusals of each event (key: the event id). */
export const REFUSED_NAMESPACE = "events.refused";

/** A payload field named like a declared param sets it (`{"source": "…"}` → params.source). */
function paramsFromEvent(declared: Record<string, unknown> | undefined, data: unknown): Record<string, unknown> {
  if (!declared || !data || typeof data !== "object" || Array.isArray(data)) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data as Record<string, unknown>)) if (k in declared && v !== null && typeof v !== "object") out[k] = v;
  return out;
}

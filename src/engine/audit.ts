/**
 * The audit trail as the engine hands it to actions (`ctx.audit`), and the signed checkpoint
 * that closes each run that wrote to it.
 *
 * An action says what happened (event, outcome, resource, details); the engine fills in who and
 * where (PCI DSS 10.2.2: the workflow as the actor, this host and process as the origin) and the
 * run and step, so no action can write an entry in another run's name. A write that fails raises
 * AUDIT_FAILED: the action's step fails (fail closed, as Vault refuses requests it cannot log).
 *
 * At a run's end, if the run wrote any entry, a `run.end` entry is appended and a checkpoint
 * (count, head) is signed with the home's Ed25519 key (crypto/audit-key.ts, `<home>/audit/`), so
 * a truncation or rewrite of this run's entries is caught by `sluice audit verify`. Runs that
 * wrote nothing cost one indexed query and no signature.
 */
import { hostname } from "node:os";
import { join } from "node:path";
import { signCheckpoint } from "../crypto/audit-chain.js";
import { loadOrCreateSigningKey } from "../crypto/audit-key.js";
import { maskSecrets } from "../crypto/masker.js";
import { SluiceError } from "../errors.js";
import type { AuditTrail } from "../actions/types.js";
import type { AuditStore, RunRecord, RunStatus } from "../store/types.js";

/** Where a home keeps its checkpoint signing key (the CLI's `sluice audit` uses the same). */
export const auditKeyDir = (home: string) => join(home, "audit");

/** Who writes an engine entry and from where. */
export function engineIdentity(run: Pick<RunRecord, "workflow">): { actor: string; origin: string } {
  return { actor: `workflow:${run.workflow}`, origin: `engine@${hostname()}:${process.pid}` };
}

/** The trail one step's action writes to; `onWrite` tells the run it has entries to close with a checkpoint. */
export function auditTrailOf(store: AuditStore, run: Pick<RunRecord, "id" | "workflow">, step: string, onWrite?: () => void): AuditTrail {
  const who = engineIdentity(run);
  return {
    async append(e) {
      try {
        await store.appendAudit({ ...who, ...e, runId: run.id, step });
      } catch (err) {
        throw new SluiceError("AUDIT_FAILED", maskSecrets(`the audit entry ${e.event} for ${e.resource} could not be written: ${(err as Error).message}`), {
          retryable: true,
          cause: err,
        });
      }
      onWrite?.();
    },
  };
}

/**
 * Close a run's part of the trail: a `run.end` entry and a signed checkpoint over the whole log,
 * when the run wrote entries (in this process, or in one that ran it before a resume).
 */
export async function closeRunAudit(
  store: AuditStore,
  home: string,
  run: Pick<RunRecord, "id" | "workflow">,
  status: RunStatus,
  wrote: boolean,
): Promise<boolean> {
  if (!wrote && (await store.listAudit({ runId: run.id, limit: 1 })).length === 0) return false;
  await store.appendAudit({
    ...engineIdentity(run),
    event: "run.end",
    outcome: status === "succeeded" ? "success" : "failure",
    resource: `run:${run.id}`,
    runId: run.id,
    details: { status },
  });
  const signer = loadOrCreateSigningKey(auditKeyDir(home));
  await store.appendCheckpoint(signCheckpoint(await store.auditHead(), signer.privateKey, new Date().toISOString(), run.id));
  return true;
}

/**
 * `sluice audit verify | checkpoint | list`: the tamper-evident audit trail from the command line.
 *
 * verify reads the whole log in pages, checks the hash chain and every signed checkpoint against
 * the trusted public keys — by default the one beside this home's signing key, or only those
 * given with --public-key (a verifier should trust a key kept away from the log it checks) —
 * and exits 0 when intact, 1 with one sentence naming the first bad entry or checkpoint.
 */
import { existsSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import { join } from "node:path";
import type { KeyObject } from "node:crypto";
import { signCheckpoint, verifyChain, type AuditCheckpoint, type AuditEntry, type AuditEvent } from "../crypto/audit-chain.js";
import { loadOrCreateSigningKey, loadPublicKey, PUBLIC_KEY_FILE, type AuditSigner } from "../crypto/audit-key.js";
import { SluiceError } from "../errors.js";
import type { AuditStore } from "../store/types.js";
import { withStore } from "./context.js";
import { auditKeyDir } from "../engine/audit.js";

const PAGE = 10_000;

/** Where this home keeps its checkpoint signing key (the engine signs run checkpoints with it too). */
export { auditKeyDir };

/** Who and where for entries the CLI writes: the OS user, `cli@host`. */
export function cliIdentity(): Pick<AuditEvent, "actor" | "origin"> {
  let actor = "unknown";
  try {
    actor = userInfo().username;
  } catch {
    // No passwd entry (some containers): the entry still says where it came from.
  }
  return { actor, origin: `cli@${hostname()}` };
}

/** Every entry, in order, read in pages so one query never holds the whole log. */
export async function readAuditLog(store: AuditStore): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  for (;;) {
    const page = await store.listAudit({ afterSeq: out.at(-1)?.seq ?? 0, limit: PAGE });
    out.push(...page);
    if (page.length < PAGE) return out;
  }
}

/** Sign the log's current head with this home's key (created on first use) and store the checkpoint. */
export async function writeCheckpoint(store: AuditStore, signer: AuditSigner, runId?: string): Promise<AuditCheckpoint> {
  const cp = signCheckpoint(await store.auditHead(), signer.privateKey, new Date().toISOString(), runId);
  await store.appendCheckpoint(cp);
  return cp;
}

export async function auditVerifyCommand(o: { publicKey?: string[]; json?: boolean }): Promise<number> {
  return withStore(async (store, home) => {
    const keys: KeyObject[] = [];
    for (const p of o.publicKey ?? []) keys.push(loadPublicKey(p));
    const local = join(auditKeyDir(home), PUBLIC_KEY_FILE);
    if (keys.length === 0 && existsSync(local)) keys.push(loadPublicKey(local));
    const entries = await readAuditLog(store);
    const checkpoints = await store.listCheckpoints();
    const verdict = verifyChain(entries, checkpoints, keys);
    if (o.json) process.stdout.write(`${JSON.stringify(verdict, null, 2)}\n`);
    if (!verdict.ok) {
      if (!o.json) process.stderr.write(`sluice: ${verdict.problem.message}\n`);
      return 1;
    }
    if (!o.json) {
      const newest = Math.max(0, ...checkpoints.map((c) => c.count));
      const open = entries.length - newest;
      process.stdout.write(
        `audit log intact: ${entries.length} entr${entries.length === 1 ? "y" : "ies"}, ${checkpoints.length} signed checkpoint${checkpoints.length === 1 ? "" : "s"}` +
          (open > 0 ? `; the last ${open} entr${open === 1 ? "y is" : "ies are"} not yet under a checkpoint (sluice audit checkpoint)` : "") +
          "\n",
      );
    }
    return 0;
  });
}

export async function auditCheckpointCommand(o: { run?: string }): Promise<number> {
  return withStore(async (store, home) => {
    const signer = loadOrCreateSigningKey(auditKeyDir(home));
    const cp = await writeCheckpoint(store, signer, o.run);
    process.stdout.write(`checkpoint signed: ${cp.count} entries, head ${cp.head.slice(0, 16)}…, key ${cp.keyId} (public key ${signer.publicKeyPath})\n`);
    return 0;
  });
}

export async function auditListCommand(o: { run?: string; limit: string; json?: boolean }): Promise<number> {
  const limit = Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new SluiceError("USAGE", "--limit must be a positive whole number");
  return withStore(async (store) => {
    const all = await store.listAudit({ runId: o.run });
    const shown = all.slice(-limit);
    if (o.json) {
      process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
      return 0;
    }
    if (shown.length === 0) process.stdout.write("the audit log is empty\n");
    for (const e of shown)
      process.stdout.write(
        `${String(e.seq).padStart(6)}  ${e.time}  ${e.outcome === "success" ? "ok  " : "FAIL"}  ${e.event}  ${e.actor} from ${e.origin}  ${e.resource}${e.runId ? `  run ${e.runId}${e.step ? `/${e.step}` : ""}` : ""}\n`,
      );
    return 0;
  });
}

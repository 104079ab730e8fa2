/**
 * The audit trail as a hash chain with signed checkpoints (pure: no I/O).
 *
 * Every entry carries the fields PCI DSS 4.0.1 requirement 10.2.2 names — who (actor), what
 * (event type), when (time), success or failure (outcome), where from (origin), which object
 * (resource) — plus the run and step, and its hash is SHA-256 over the previous entry's hash and
 * the canonical JSON of the entry. Editing an entry breaks its hash; deleting or reordering one
 * breaks the link of the entry after it. Rewriting the whole tail consistently is what signed
 * checkpoints catch (as RFC 6962's signed tree heads do): a checkpoint is (count, head hash)
 * signed with Ed25519 and kept apart from the entries, so a log cut back to fewer entries, or
 * rewritten before a checkpoint, no longer matches it. What a checkpoint cannot cover are entries
 * written after the newest one: a checkpoint per run bounds that window to one run.
 *
 * The chain's position is the entry's `seq` (1, 2, …), not part of the hashed content: a moved
 * entry is then recognised as moved (its own hash still holds, its link does not), not as edited.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";

export type AuditOutcome = "success" | "failure";

/** What a caller records; the store adds the time when missing, the position and the hashes. */
export interface AuditEvent {
  /** The user or service identity behind it (`alice`, `worker@host`, `api-token:ops`). */
  actor: string;
  /** What happened, dotted: `data.decrypt`, `key.rotate`, `policy.decision`, `step.end`. */
  event: string;
  outcome: AuditOutcome;
  /** Where it came from: a host, `cli@host`, an API client's address. */
  origin: string;
  /** The object affected: `table:payments.card`, `keyring:/etc/sluice/keys.json#k1/2`, `run:R123`. */
  resource: string;
  /** ISO-8601 UTC; the store fills in its clock when missing. */
  time?: string;
  runId?: string | null;
  step?: string | null;
  /** Counts, reasons, classes — never secret values or personal data. */
  details?: Record<string, unknown> | null;
}

export interface AuditEntry extends Required<Pick<AuditEvent, "actor" | "event" | "outcome" | "origin" | "resource" | "time">> {
  seq: number;
  runId: string | null;
  step: string | null;
  details: Record<string, unknown> | null;
  prevHash: string;
  hash: string;
}

export interface AuditCheckpoint {
  /** How many entries it covers (seq 1..count). */
  count: number;
  /** The hash of entry `count`. */
  head: string;
  time: string;
  /** The fingerprint of the public key that signed it (see publicKeyId). */
  keyId: string;
  /** Ed25519 signature (base64) over checkpointMessage(count, head, time). */
  signature: string;
  runId?: string | null;
}

/** The previous hash of the first entry. */
export const GENESIS = "0".repeat(64);

/** JSON with object keys sorted at every depth and undefined dropped: one text per value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  const keys = Object.keys(value as object)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
}

/** The event as it is hashed and stored: every field present, details as JSON round-trips them. */
export function normalizeEvent(e: AuditEvent, now: () => string = () => new Date().toISOString()): Omit<AuditEntry, "seq" | "prevHash" | "hash"> {
  return {
    time: e.time ?? now(),
    actor: e.actor,
    event: e.event,
    outcome: e.outcome,
    origin: e.origin,
    resource: e.resource,
    runId: e.runId ?? null,
    step: e.step ?? null,
    details: e.details ? (JSON.parse(JSON.stringify(e.details)) as Record<string, unknown>) : null,
  };
}

/** SHA-256 (hex) of the previous hash and the entry's canonical content. */
export function entryHash(prevHash: string, e: Omit<AuditEntry, "seq" | "prevHash" | "hash">): string {
  const content = canonicalJson({
    actor: e.actor,
    details: e.details,
    event: e.event,
    origin: e.origin,
    outcome: e.outcome,
    resource: e.resource,
    runId: e.runId,
    step: e.step,
    time: e.time,
  });
  return createHash("sha256").update(prevHash).update("\n").update(content).digest("hex");
}

/** The next entry after `prev` (undefined: the first of the log). */
export function chainEntry(prev: { seq: number; hash: string } | undefined, event: AuditEvent, now?: () => string): AuditEntry {
  const e = normalizeEvent(event, now);
  const prevHash = prev?.hash ?? GENESIS;
  return { seq: (prev?.seq ?? 0) + 1, ...e, prevHash, hash: entryHash(prevHash, e) };
}

/** What a checkpoint signs. */
export function checkpointMessage(count: number, head: string, time: string): Buffer {
  return Buffer.from(canonicalJson({ count, head, time, type: "sluice-audit-checkpoint/1" }), "utf8");
}

/** A short id for a public key: the first 16 hex digits of SHA-256 of its DER (SPKI) form. */
export function publicKeyId(publicKey: KeyObject): string {
  return createHash("sha256")
    .update(publicKey.export({ type: "spki", format: "der" }))
    .digest("hex")
    .slice(0, 16);
}

/** Sign (count, head) with an Ed25519 private key. */
export function signCheckpoint(
  head: { count: number; head: string },
  privateKey: KeyObject,
  time = new Date().toISOString(),
  runId?: string | null,
): AuditCheckpoint {
  const signature = sign(null, checkpointMessage(head.count, head.head, time), privateKey).toString("base64");
  return { count: head.count, head: head.head, time, keyId: publicKeyId(createPublicKey(privateKey)), signature, runId: runId ?? null };
}

export type ChainProblemKind = "edited" | "deleted" | "reordered" | "truncated" | "checkpoint" | "signature";

export interface ChainProblem {
  kind: ChainProblemKind;
  /** The entry (seq) or, for checkpoint problems, the checkpoint's count. */
  at: number;
  /** One sentence for people. */
  message: string;
}

export type ChainVerdict = { ok: true; entries: number; checkpoints: number } | { ok: false; problem: ChainProblem };

/**
 * Check a log (entries in seq order, as the store lists them) against its checkpoints and the
 * trusted public keys. Reports the first problem: in the entries first (lowest seq), then in
 * the checkpoints (lowest count).
 */
export function verifyChain(
  entries: readonly AuditEntry[],
  checkpoints: readonly AuditCheckpoint[],
  publicKeys: KeyObject | readonly KeyObject[],
): ChainVerdict {
  const problem =
    firstEntryProblem(entries) ?? firstCheckpointProblem(entries, checkpoints, Array.isArray(publicKeys) ? publicKeys : [publicKeys as KeyObject]);
  return problem ? { ok: false, problem } : { ok: true, entries: entries.length, checkpoints: checkpoints.length };
}

function firstEntryProblem(entries: readonly AuditEntry[]): ChainProblem | undefined {
  const hashes = new Set(entries.map((e) => e.hash));
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const expectedSeq = i === 0 ? 1 : entries[i - 1]!.seq + 1;
    if (e.seq > expectedSeq) {
      const gap = e.seq - expectedSeq === 1 ? `entry ${expectedSeq} was deleted` : `entries ${expectedSeq} to ${e.seq - 1} were deleted`;
      return { kind: "deleted", at: expectedSeq, message: `audit log broken: ${gap} (entry ${e.seq} follows entry ${expectedSeq - 1})` };
    }
    if (e.seq < expectedSeq) return { kind: "reordered", at: e.seq, message: `audit log broken: entry ${e.seq} appears out of order` };
    if (entryHash(e.prevHash, e) !== e.hash)
      return {
        kind: "edited",
        at: e.seq,
        message: `audit log broken: entry ${e.seq} (${e.event} at ${e.time}) was edited: its content no longer matches its hash`,
      };
    const expectedPrev = i === 0 ? GENESIS : entries[i - 1]!.hash;
    if (e.prevHash !== expectedPrev) {
      if (hashes.has(e.prevHash))
        return {
          kind: "reordered",
          at: e.seq,
          message: `audit log broken: entry ${e.seq} was moved: it was written after an entry that now stands elsewhere in the log`,
        };
      if (i === 0) return { kind: "deleted", at: 1, message: "audit log broken: the first entries were deleted (entry 1 does not start the chain)" };
      return {
        kind: "edited",
        at: e.seq - 1,
        message: `audit log broken: entry ${e.seq - 1} was rewritten, or entries after it were deleted and the rest renumbered (entry ${e.seq} no longer links to it)`,
      };
    }
  }
  return undefined;
}

function firstCheckpointProblem(entries: readonly AuditEntry[], checkpoints: readonly AuditCheckpoint[], keys: readonly KeyObject[]): ChainProblem | undefined {
  const byId = new Map(keys.map((k) => [publicKeyId(k), k]));
  for (const c of [...checkpoints].sort((a, b) => a.count - b.count)) {
    const key = byId.get(c.keyId);
    if (!key)
      return {
        kind: "signature",
        at: c.count,
        message: `audit checkpoint at entry ${c.count} (${c.time}) was signed by key ${c.keyId}, which is not a trusted key here`,
      };
    if (!verify(null, checkpointMessage(c.count, c.head, c.time), key, Buffer.from(c.signature, "base64")))
      return { kind: "signature", at: c.count, message: `audit checkpoint at entry ${c.count} (${c.time}) has an invalid signature: it was altered` };
    if (c.count > entries.length)
      return {
        kind: "truncated",
        at: c.count,
        message: `audit log truncated: checkpoint of ${c.time} covers ${c.count} entries but the log holds ${entries.length}`,
      };
    if ((c.count === 0 ? GENESIS : entries[c.count - 1]!.hash) !== c.head)
      return { kind: "checkpoint", at: c.count, message: `audit log rewritten: entry ${c.count} no longer matches the checkpoint signed at ${c.time}` };
  }
  return undefined;
}

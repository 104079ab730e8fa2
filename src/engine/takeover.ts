/**
 * Taking over a run whose process died, without waiting for its lease to run out, and waiting for
 * the lease when its holder may still be alive.
 *
 * A lease owner id is `host:pid:random` (ids.ts). When the host is this host, the kernel can say
 * whether the process still exists: `kill(pid, 0)` fails with ESRCH when it does not (EPERM means
 * it exists under another user). A `sluice run` killed with `kill -9` is gone at once, yet its
 * lease stays live for up to SLUICE_LEASE_TTL_MS (15 s), and `resume` used to refuse until then.
 * Now the resumer takes the run over at once, with a compare-and-set on that exact owner
 * (RunStore.takeOverRun): two resumers racing cannot both win, and a lease that changed hands
 * meanwhile is left alone. Any other holder (another host, a live process) keeps the lease rule:
 * refuse, or with `sluice resume --wait` wait for the lease to be released or expire.
 *
 * What "gone" rests on, each doubt failing toward waiting except the first:
 * - host name + pid name one process: true on one machine, or a container with a host name of its
 *   own. Processes in two PID namespaces that share a host name and a store (containers given the
 *   same fixed host name) could take each other's live runs; fencing then refuses the loser's
 *   writes (LEASE_LOST), so the history stays whole, but the run is moved from a live process.
 * - a pid reused by another process looks alive: the lease rule applies, as before.
 * - a zombie (killed, not yet reaped by its parent, as under some container inits) is gone: it
 *   runs nothing and renews nothing.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { SluiceError } from "../errors.js";
import type { RunRecord, RunStore } from "../store/types.js";

/** The host and pid in a lease owner id (`host:pid:random`; a host name holds no colon, but take it from the right). */
export function parseOwner(owner: string): { host: string; pid: number } | undefined {
  const parts = owner.split(":");
  if (parts.length < 3) return undefined;
  const pid = Number(parts[parts.length - 2]);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  return { host: parts.slice(0, -2).join(":"), pid };
}

/** Whether no process with this pid runs on this host (a zombie counts as gone). */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH"; // EPERM: it exists, owned by someone else
  }
  return isZombie(pid);
}

/** Linux only (elsewhere: not known, so alive). `/proc/PID/stat` is "pid (comm) STATE …"; comm may hold ")". */
function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT" && process.platform === "linux"; // reaped since the kill
  }
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state === "Z" || state === "X";
}

/** The pid of `owner` when it is a process of this host that no longer exists; else undefined. */
export function deadLocalOwner(owner: string | null, host = hostname()): number | undefined {
  const id = owner ? parseOwner(owner) : undefined;
  return id && id.host === host && processGone(id.pid) ? id.pid : undefined;
}

export type TakeOver =
  /** `run` as stored after the takeover: read once the dead owner could no longer have changed it. */
  { taken: true; run: RunRecord; previousOwner: string; pid: number } | { taken: false; error: SluiceError };

/**
 * After claimRun was refused (a live lease): take the run from its holder if that holder is a
 * dead process of this host, else say who holds it and until when.
 */
export async function takeOverFromDeadOwner(store: RunStore, runId: string, owner: string, ttlMs: number): Promise<TakeOver> {
  const run = await store.getRun(runId);
  if (!run) return { taken: false, error: new SluiceError("NOT_FOUND", `no run with id ${runId}`) };
  if (run.status !== "pending" && run.status !== "running")
    return { taken: false, error: new SluiceError("CONFLICT", `run ${runId} ended (${run.status}) while being resumed`, { retryable: false }) };
  const pid = deadLocalOwner(run.leaseOwner);
  if (pid !== undefined && (await store.takeOverRun(runId, run.leaseOwner!, owner, ttlMs, Date.now()))) {
    // The run as read above may predate the dead owner's last writes (it died after the read);
    // now that we hold the lease nobody else writes to it, so this read is the whole picture.
    return { taken: true, run: (await store.getRun(runId))!, previousOwner: run.leaseOwner!, pid };
  }
  return { taken: false, error: leaseHeldError(pid === undefined ? run : ((await store.getRun(runId)) ?? run)) };
}

/** The refusal while a live process holds the run: who, until when, and the way to wait for it. */
export function leaseHeldError(run: RunRecord, now = Date.now()): SluiceError {
  const secs = run.leaseExpiresAt ? Math.max(0, Math.ceil((run.leaseExpiresAt - now) / 1000)) : 0;
  return new SluiceError(
    "CONFLICT",
    `run ${run.id} is being executed by ${describeHolder(run.leaseOwner)}; its lease expires in ${secs}s unless renewed; ` +
      `to wait for that and resume then: sluice resume ${run.id} --wait`,
    { retryable: false, details: { leaseOwner: run.leaseOwner, leaseExpiresAt: run.leaseExpiresAt } },
  );
}

/** "h1:4242:ab12cd (pid 4242, alive on this host)", or the id alone for another host. */
export function describeHolder(owner: string | null, host = hostname()): string {
  if (!owner) return "another process";
  const id = parseOwner(owner);
  return id?.host === host ? `${owner} (pid ${id.pid}, alive on this host)` : owner;
}

/** Whether `err` is the refusal above, after which a waiting resumer waits again. */
export function isLeaseHeld(err: unknown): boolean {
  return err instanceof SluiceError && err.code === "CONFLICT" && err.details !== undefined && "leaseOwner" in err.details;
}

export interface LeaseWait {
  owner: string;
  /** When the lease runs out unless its holder renews it (every second while it lives). */
  expiresAt: number;
}

/**
 * Resolve once the run can be resumed: its lease released, expired, or held by a dead process
 * of this host, or the run ended (the caller finds out which). `onWait` is told the first time it
 * has to wait, with the holder and the expiry it waits for.
 */
export async function waitForLease(store: RunStore, runId: string, onWait: (w: LeaseWait) => void, pollMs = 500): Promise<void> {
  let told = false;
  for (;;) {
    const run = await store.getRun(runId);
    if (!run || (run.status !== "pending" && run.status !== "running")) return;
    const now = Date.now();
    const { leaseOwner: owner, leaseExpiresAt: expiresAt } = run;
    if (!owner || expiresAt === null || expiresAt < now || deadLocalOwner(owner) !== undefined) return;
    if (!told) onWait({ owner, expiresAt });
    told = true;
    // Poll rather than sleep to the expiry: the holder may renew, release or end the run first.
    await new Promise((r) => setTimeout(r, Math.min(pollMs, expiresAt - now + 10)));
  }
}

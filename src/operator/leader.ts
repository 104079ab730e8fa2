/**
 * One active operator: the operator reconciles only while it holds a named lease in the state
 * store (the same lease mechanism the scheduler uses, on SQLite and PostgreSQL alike), renews it
 * at a third of its TTL, and stops reconciling at once when a renewal fails or finds another
 * owner. Stopping releases the lease, so a replacement pod (a rolling update, a SIGTERM) takes
 * over within one poll instead of a whole TTL.
 */
import type { ActionLog } from "../actions/types.js";
import type { NamedLeaseStore } from "../store/types.js";
import type { Clock } from "./clock.js";

export const OPERATOR_LEASE = "operator";

export interface LeaderOptions {
  store: NamedLeaseStore;
  owner: string;
  clock: Clock;
  ttlMs?: number;
  /** Lease name: one per operator installation sharing a store. */
  name?: string;
  log?: ActionLog;
  /** Called when this process becomes the leader. */
  onElected: () => void | Promise<void>;
  /** Called when it loses the lease (or stops): reconciling must end. */
  onDeposed: () => void | Promise<void>;
}

export interface Leadership {
  leading(): boolean;
  /** Stop leading (onDeposed runs) and release the lease. */
  stop(): Promise<void>;
}

export function startLeaderElection(o: LeaderOptions): Leadership {
  const ttl = o.ttlMs ?? 15_000;
  const name = o.name ?? OPERATOR_LEASE;
  let leading = false;
  let stopped = false;
  let timer: unknown;
  let pending: Promise<void> = Promise.resolve();

  const tick = async () => {
    let held = false;
    try {
      held = await o.store.acquireLease(name, o.owner, ttl, o.clock.now());
    } catch (err) {
      o.log?.error("operator: cannot renew the leader lease", { error: (err as Error).message });
    }
    if (stopped) return;
    if (held && !leading) {
      leading = true;
      o.log?.info("operator: leading", { owner: o.owner, lease: name });
      await o.onElected();
    } else if (!held && leading) {
      leading = false;
      o.log?.warn("operator: leadership lost; reconciling stops", { owner: o.owner, lease: name });
      await o.onDeposed();
    }
    if (!stopped) timer = o.clock.setTimeout(() => void (pending = tick()), Math.max(50, Math.floor(ttl / 3)));
  };
  pending = tick();

  return {
    leading: () => leading,
    async stop() {
      stopped = true;
      o.clock.clearTimeout(timer);
      await pending;
      if (leading) {
        leading = false;
        await o.onDeposed();
      }
      await o.store.releaseNamedLease(name, o.owner).catch(() => {});
    },
  };
}

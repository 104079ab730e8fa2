/**
 * Exec programs left behind by a process that lost a run.
 *
 * An exec step's program runs in a process group of its own (so a timeout can stop the whole
 * tree), which also means it outlives a `sluice run` killed with `kill -9`. When the run is
 * taken over, at once or after the lease ran out, the interrupted step runs again: the old copy
 * must not go on beside the new one (two writers of the same output). Every program Sluice starts
 * carries SLUICE_RUN_ID in its environment, so the new owner finds the leftovers of this run on
 * this host in /proc and stops their process groups: SIGTERM, then SIGKILL after a grace period,
 * as a timeout does. Programs on another host cannot be reached; the README says so.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Process groups of programs of `runId` running on this host, not counting this process's own. */
export function orphanedGroups(runId: string): number[] {
  if (process.platform !== "linux") return [];
  const marker = `SLUICE_RUN_ID=${runId}\0`;
  const own = groupOf(process.pid);
  const groups = new Set<number>();
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
  for (const d of pids) {
    const pid = Number(d);
    if (pid === process.pid) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${pid}/environ`, "latin1");
    } catch {
      continue; // gone meanwhile, or another user's
    }
    if (!(env.startsWith(marker) || env.includes(`\0${marker}`))) continue;
    const g = groupOf(pid);
    if (g !== undefined && g !== own && g > 1) groups.add(g);
  }
  return [...groups];
}

/** Stop the leftovers of `runId` and wait until they are gone; returns how many groups there were. */
export async function stopOrphanedPrograms(runId: string, graceMs = 2_000): Promise<number> {
  const groups = orphanedGroups(runId);
  if (groups.length === 0) return 0;
  signal(groups, "SIGTERM");
  const until = Date.now() + graceMs;
  while (Date.now() < until && groups.some(alive)) await new Promise((r) => setTimeout(r, 25));
  signal(groups.filter(alive), "SIGKILL");
  return groups.length;
}

function signal(groups: number[], sig: NodeJS.Signals): void {
  for (const g of groups) {
    try {
      process.kill(-g, sig);
    } catch {
      // Already gone.
    }
  }
}

function alive(group: number): boolean {
  try {
    process.kill(-group, 0);
    return true;
  } catch {
    return false;
  }
}

/** The process group of a pid (field 5 of /proc/PID/stat, after the command in parentheses). */
function groupOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const g = Number(fields[2]);
    return Number.isSafeInteger(g) ? g : undefined;
  } catch {
    return undefined;
  }
}

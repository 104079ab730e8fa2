import { randomBytes } from "node:crypto";
import { hostname } from "node:os";

/** Run ids sort by creation time and are short enough to type: `r-lx3k9a2b-7f3q1z`. */
export function newRunId(now = Date.now()): string {
  return `r-${now.toString(36)}-${randomBytes(4).toString("hex").slice(0, 6)}`;
}

/** Who holds a lease: host, pid and a random suffix, so a restarted process is a new owner. */
export function newOwnerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
}

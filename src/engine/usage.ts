/**
 * What an in-process attempt consumed, as well as Node can tell: the figures of the whole Sluice
 * process over the attempt, recorded with `scope: "process"` because every attempt running at
 * the same time (and the engine, the store, the worker threads) shares them.
 *
 * - CPU: process.resourceUsage() user + system time, the delta over the attempt (µs precision).
 * - Peak memory: the process's resident set. When its lifetime high (resourceUsage().maxRSS, the
 *   kernel's) rose during the attempt, the new high is the attempt's peak, exactly; otherwise the
 *   highest RSS sampled around and during the attempt (every SAMPLE_MS by one timer shared by
 *   all attempts; an attempt shorter than that gets the latest sample, at most SAMPLE_MS old).
 * - Bytes read and written: /proc/self/io rchar and wchar (Linux), the delta: every read and
 *   write system call of the process — files, sockets (the PostgreSQL store's too), pipes.
 *
 * Cost per attempt: two resourceUsage calls and two reads of /proc/self/io on a descriptor kept
 * open, 9–14 µs on the loaded 2-core machine; reading the RSS at each end as well cost 27–50 µs,
 * a fifth of a no-op step's engine overhead, hence the shared sampler that outlives attempts.
 */
import { openSync, readSync } from "node:fs";
import type { AttemptUsage } from "../store/types.js";

const SAMPLE_MS = 100;
/** The sampler outlives the last attempt by this much, so a chain of short steps never restarts it. */
const IDLE_STOP_MS = 2_000;

interface Tracker {
  peakRss: number;
}

const active = new Set<Tracker>();
let sampler: NodeJS.Timeout | undefined;
/** The RSS of the latest sample (at most SAMPLE_MS old while the sampler runs). */
let lastRss = 0;
let idleSince = 0;

function sampleAll(): void {
  lastRss = process.memoryUsage.rss();
  for (const t of active) if (lastRss > t.peakRss) t.peakRss = lastRss;
  if (active.size === 0 && Date.now() - idleSince > IDLE_STOP_MS) {
    clearInterval(sampler);
    sampler = undefined;
  }
}

let ioFd: number | null | undefined;
const ioBuf = Buffer.alloc(512);

/** rchar and wchar of this process, or null without /proc. */
function selfIo(): { rchar: number; wchar: number } | null {
  if (ioFd === undefined) {
    try {
      ioFd = openSync("/proc/self/io", "r");
    } catch {
      ioFd = null;
    }
  }
  if (ioFd === null) return null;
  try {
    // A proc file is generated afresh by every read from offset 0.
    const text = ioBuf.toString("latin1", 0, readSync(ioFd, ioBuf, 0, ioBuf.length, 0));
    const rchar = /^rchar: (\d+)/m.exec(text);
    const wchar = /^wchar: (\d+)/m.exec(text);
    return rchar && wchar ? { rchar: Number(rchar[1]), wchar: Number(wchar[1]) } : null;
  } catch {
    return null;
  }
}

/** Start measuring; the returned function ends the measurement and gives the attempt's figures. */
export function trackProcessUsage(): () => AttemptUsage {
  const r0 = process.resourceUsage();
  const io0 = selfIo();
  if (!sampler) {
    lastRss = process.memoryUsage.rss();
    sampler = setInterval(sampleAll, SAMPLE_MS);
    sampler.unref();
  }
  const t: Tracker = { peakRss: lastRss };
  active.add(t);
  let result: AttemptUsage | undefined;
  return () => {
    if (result) return result;
    active.delete(t);
    if (active.size === 0) idleSince = Date.now();
    const r1 = process.resourceUsage();
    const io1 = selfIo();
    // A new lifetime high of the process was reached during the attempt: that is its peak, exactly.
    const peak = r1.maxRSS > r0.maxRSS ? r1.maxRSS * 1024 : Math.max(t.peakRss, lastRss);
    result = {
      cpuMs: (r1.userCPUTime - r0.userCPUTime + r1.systemCPUTime - r0.systemCPUTime) / 1000,
      peakMemoryBytes: peak,
      readBytes: io0 && io1 ? io1.rchar - io0.rchar : null,
      writtenBytes: io0 && io1 ? io1.wchar - io0.wchar : null,
      scope: "process",
    };
    return result;
  };
}

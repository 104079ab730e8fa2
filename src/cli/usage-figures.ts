/**
 * An attempt's resource usage as `sluice status` shows it: short figures for table cells, with a
 * mark on the figures that are the whole Sluice process's (in-process actions), not the step's own.
 */
import { formatDuration } from "../spec/duration.js";
import type { AttemptUsage } from "../store/types.js";

/** Marks a process-wide figure; `PROCESS_NOTE` explains it under the table. */
export const PROCESS_MARK = "*";
export const PROCESS_NOTE = `${PROCESS_MARK} the whole sluice process while the action ran, shared with the steps running at the same time`;

/** Binary units, as the kernel counts memory: 1.5 KiB, 200 MiB, 3.2 GiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) ((v /= 1024), i++);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/**
 * CPU time. A program's comes in whole 10 ms clock ticks, so under one tick it is "<10ms", not
 * a misleading 0; the process's (in-process actions) is precise to the µs and keeps a decimal.
 */
export function formatCpu(ms: number, scope: AttemptUsage["scope"]): string {
  if (scope === "process-tree" && ms < 10) return "<10ms";
  return ms > 0 && ms < 10 ? `${ms.toFixed(1)}ms` : formatDuration(ms);
}

/** The four cells CPU, PEAK MEM, READ, WRITTEN; empty for an attempt without figures. */
export function usageCells(u: AttemptUsage | null): string[] {
  if (!u) return ["", "", "", ""];
  const mark = u.scope === "process" ? PROCESS_MARK : "";
  const bytes = (n: number | null) => (n === null ? "?" : formatBytes(n) + mark);
  return [formatCpu(u.cpuMs, u.scope) + mark, bytes(u.peakMemoryBytes), bytes(u.readBytes), bytes(u.writtenBytes)];
}

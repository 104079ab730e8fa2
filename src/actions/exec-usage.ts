/**
 * What an `exec` step's program consumed — CPU time, peak memory, bytes read and written — from
 * the kernel, for the program and its descendants and nothing else.
 *
 * Node has no getrusage(RUSAGE_CHILDREN) and reaps its children at once, folding their figures
 * into its own, where concurrent exec steps cannot be told apart. So the program runs under a
 * holder, a POSIX `sh` that waits for it, reports its exit status on fd 3 and then waits for us
 * before exiting (HOLDER_SCRIPT). While the holder waits, the kernel has already added the reaped
 * program's CPU time to the holder's cutime/cstime (/proc/PID/stat) and its I/O to the holder's
 * /proc/PID/io — recursively, for every descendant that was waited for — so one read of the
 * holder then gives the whole tree's CPU and I/O exactly (CPU in 10 ms clock ticks).
 *
 * Peak memory has no such after-the-fact figure outside getrusage: it is sampled while the tree
 * runs (SAMPLE_AT_MS, then every SAMPLE_EVERY_MS) from /proc/PID/status — VmHWM, each process's
 * own high-water mark kept by the kernel, so a spike between two samples is still seen if the
 * process lives to the next sample, and VmRSS summed over the tree. A program that ends before
 * the first sample has no memory figure (null), and a peak reached in its last interval of life
 * can be missed.
 *
 * Descendants that leave the tree (daemonised, reparented to init) count only while sampled.
 * Linux only: elsewhere (no /proc) an exec step runs without holder and records no usage.
 */
import { accessSync, closeSync, constants, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { delimiter, isAbsolute, resolve } from "node:path";

export interface TreeUsage {
  cpuMs: number;
  peakMemoryBytes: number | null;
  readBytes: number | null;
  writtenBytes: number | null;
}

/**
 * The program (a path, so never a shell builtin or function) is exec'd in a forked subshell
 * with the original stderr and without the report socket, so the redirections apply to it
 * alone: the holder's own stderr is /dev/null, and its notices ("Killed" after a signal, which
 * dash prints under a plain command's redirections) never reach the attempt log. The holder
 * exits with the program's status, but the status line is what counts: it may be killed first.
 */
export const HOLDER_SCRIPT = `exec 4>&2 2>/dev/null
(exec "$@" 2>&4 3>&- 4>&-)
s=$?
echo "$s" >&3
read -r _ <&3
exit "$s"`;

/** Early samples catch short programs; then a steady pace (a sample of a small tree costs ~0.1 ms). */
const SAMPLE_AT_MS = [2, 5, 10, 20, 40, 70];
const SAMPLE_EVERY_MS = 100;
/** /proc/PID/stat reports CPU in USER_HZ ticks, 100 a second on every Linux architecture Node runs on. */
const MS_PER_TICK = 10;
/** A bound on the processes one sample reads (a `make -j` tree stays far below it). */
const MAX_TREE = 512;

let supported: boolean | undefined;

/** Whether usage can be measured here: Linux with /proc and a /bin/sh to hold the program. */
export function treeUsageSupported(): boolean {
  if (supported === undefined) {
    try {
      readFileSync("/proc/self/io");
      accessSync("/bin/sh", constants.X_OK);
      supported = process.platform === "linux";
    } catch {
      supported = false;
    }
  }
  return supported;
}

/**
 * The program's path as execvp would find it: with a slash, relative to the working directory;
 * without, the first executable file of that name on PATH (an empty entry is the working
 * directory). The holder is handed the path so that `sh` runs the file itself, not a builtin of
 * the same name (`echo`, `test`, `printf`). `missing` when there is none, `not executable` for
 * a named file without the execute permission.
 */
export function resolveProgram(cmd: string, cwd: string, path: string | undefined): { path: string } | { problem: "missing" | "not executable" } {
  const usable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes("/")) {
    const p = isAbsolute(cmd) ? cmd : resolve(cwd, cmd);
    if (usable(p)) return { path: p };
    try {
      return { problem: statSync(p).isFile() ? "not executable" : "missing" };
    } catch {
      return { problem: "missing" };
    }
  }
  for (const dir of (path ?? "/usr/local/bin:/usr/bin:/bin").split(delimiter)) {
    const p = resolve(cwd, dir || ".", cmd);
    if (usable(p)) return { path: p };
  }
  return { problem: "missing" };
}

interface ProcFigures {
  /** utime + stime + cutime + cstime, in ticks: the process and its reaped descendants. */
  ticks: number;
  /** Only the reaped descendants' part (cutime + cstime): what the holder's own CPU adds nothing to. */
  childTicks: number;
  rssKb: number | null;
  hwmKb: number | null;
  rchar: number | null;
  wchar: number | null;
}

/** One buffer for every /proc read: open, one read, close (readFileSync costs twice as much here). */
const buf = Buffer.alloc(16 * 1024);

function readText(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return undefined;
  }
  try {
    return buf.toString("latin1", 0, readSync(fd, buf, 0, buf.length, 0));
  } catch {
    return undefined; // A process that exits while being read.
  } finally {
    closeSync(fd);
  }
}

const VM_RSS = /^VmRSS:\s+(\d+) kB/m;
const VM_HWM = /^VmHWM:\s+(\d+) kB/m;
const RCHAR = /^rchar: (\d+)/m;
const WCHAR = /^wchar: (\d+)/m;

function readProc(pid: number, memory: boolean): ProcFigures | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined; // Gone between listing and reading.
  // The command name may hold spaces and parentheses: the fields start after the last ")".
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 15);
  const [utime, stime, cutime, cstime] = [f[11], f[12], f[13], f[14]].map(Number) as [number, number, number, number];
  // A zombie has no memory lines; a setuid program's io is not ours to read (its figures reach
  // the holder when it is reaped).
  const status = memory ? readText(`/proc/${pid}/status`) : undefined;
  const io = readText(`/proc/${pid}/io`);
  const num = (text: string | undefined, re: RegExp) => {
    const m = text === undefined ? null : re.exec(text);
    return m ? Number(m[1]) : null;
  };
  return {
    ticks: utime + stime + cutime + cstime,
    childTicks: cutime + cstime,
    rssKb: num(status, VM_RSS),
    hwmKb: num(status, VM_HWM),
    rchar: num(io, RCHAR),
    wchar: num(io, WCHAR),
  };
}

/** The live descendants of a process (every thread's children file), breadth first, bounded. */
function descendants(root: number): number[] {
  const out: number[] = [];
  const queue = [root];
  while (queue.length && out.length < MAX_TREE) {
    const pid = queue.shift()!;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      const children = readText(`/proc/${pid}/task/${tid}/children`) ?? "";
      for (const c of children.split(" ")) if (c) (out.push(Number(c)), queue.push(Number(c)));
    }
  }
  return out;
}

/**
 * Watch the tree under a holder from its spawn: samples on a timer, `final()` once the holder
 * has reported (the program reaped, the holder waiting), `latest()` for what is known so far
 * (an attempt that timed out is recorded before its program is gone).
 */
export function watchTree(holderPid: number) {
  let peakKb: number | null = null;
  let last: TreeUsage = { cpuMs: 0, peakMemoryBytes: null, readBytes: null, writtenBytes: null };
  let timer: NodeJS.Timeout | undefined;
  let k = 0;
  let stopped = false;

  const sample = (): TreeUsage => {
    const holder = readProc(holderPid, false);
    if (!holder) return last;
    // The holder's own CPU is nil (it waits); its own I/O is the few kB sh reads to start.
    let ticks = holder.childTicks;
    let rchar = holder.rchar;
    let wchar = holder.wchar;
    let rssKb = 0;
    for (const pid of descendants(holderPid)) {
      const p = readProc(pid, true);
      if (!p) continue;
      ticks += p.ticks;
      if (rchar !== null) rchar = p.rchar === null ? rchar : rchar + p.rchar;
      if (wchar !== null) wchar = p.wchar === null ? wchar : wchar + p.wchar;
      rssKb += p.rssKb ?? 0;
      if (p.hwmKb !== null) peakKb = Math.max(peakKb ?? 0, p.hwmKb);
    }
    if (rssKb > 0) peakKb = Math.max(peakKb ?? 0, rssKb);
    // CPU and I/O only grow; a process that left the tree between samples must not make them shrink.
    last = {
      cpuMs: Math.max(last.cpuMs, ticks * MS_PER_TICK),
      peakMemoryBytes: peakKb === null ? null : peakKb * 1024,
      readBytes: rchar === null ? last.readBytes : Math.max(last.readBytes ?? 0, rchar),
      writtenBytes: wchar === null ? last.writtenBytes : Math.max(last.writtenBytes ?? 0, wchar),
    };
    return last;
  };

  const schedule = () => {
    if (stopped) return;
    const wait = k < SAMPLE_AT_MS.length ? SAMPLE_AT_MS[k]! - (SAMPLE_AT_MS[k - 1] ?? 0) : SAMPLE_EVERY_MS;
    k++;
    timer = setTimeout(() => (sample(), schedule()), wait);
    timer.unref();
  };
  schedule();

  return {
    /** The tree's figures now that the program has been reaped by the holder: exact CPU and I/O. */
    final(): TreeUsage {
      stopped = true;
      clearTimeout(timer);
      return sample();
    },
    latest: (): TreeUsage => last,
    stop(): void {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

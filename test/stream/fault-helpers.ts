/**
 * Scaffolding for the stream fault tests (faults.test.ts):
 *
 * - brokers the test may restart: a NATS server, a Mosquitto and a RabbitMQ node of our own (own
 *   port, own data folder, same binaries as the CI servers; NATS and RabbitMQ are those of
 *   test/connectors/streams/private-brokers.ts), so restarting one never breaks the other test
 *   files sharing the CI servers (rabbitmq.test.ts, nats.test.ts, ...) and every process the
 *   test stops is one it started. Redis is the shared CI server, never restarted.
 * - a publisher that keeps a steady rate, can pause (confirmed and disconnected) around a broker
 *   restart, and re-opens and publishes a chunk again when the broker fails under it;
 * - the `sluice` CLI as real processes (bin/sluice.js, which runs dist/);
 * - the SQLite warehouse the pipeline writes, read while it runs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { userInfo } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Redis } from "ioredis";
import { openStreamPublisher, type BrokerKind, type StreamPublisher, type StreamSourceConfig } from "../../src/connectors/streams/index.js";
import { sluiceAsync } from "../cli/cli-helpers.js";
import { freePort, startPrivateNats, startPrivateRabbit, type PrivateBroker } from "../connectors/streams/private-brokers.js";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolve once `cond` holds (polled every `every` ms); throw naming `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, what: () => string, every = 100): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await sleep(every);
  }
}

export const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

export function exited(p: ChildProcess): Promise<number | null> {
  if (!alive(p)) return Promise.resolve(p.exitCode);
  return new Promise((resolve) => p.once("exit", (code) => resolve(code)));
}

// ---------------------------------------------------------------------------------------------
// Processes: every child the tests start, so afterEach/afterAll can kill what is left.

const children = new Set<ChildProcess>();

export function track<T extends ChildProcess>(p: T): T {
  children.add(p);
  p.once("exit", () => children.delete(p));
  return p;
}

/** kill -9 every child still running (sluice processes; brokers are stopped by their own stop()). */
export function killChildren(filter: (p: ChildProcess) => boolean = () => true): void {
  for (const p of children) if (alive(p) && filter(p)) p.kill("SIGKILL");
}

async function stopChild(p: ChildProcess | undefined, signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000): Promise<void> {
  if (!p || !alive(p)) return;
  const done = exited(p);
  p.kill(signal);
  const timer = setTimeout(() => alive(p) && p.kill("SIGKILL"), graceMs);
  await done;
  clearTimeout(timer);
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Retry `probe` until it resolves true without throwing. */
async function answers(probe: () => Promise<unknown>, ms: number, what: string): Promise<void> {
  let last: unknown;
  await until(
    async () => {
      try {
        await probe();
        return true;
      } catch (err) {
        last = err;
        return false;
      }
    },
    ms,
    () => `${what} to answer (${last instanceof Error ? last.message : String(last)})`,
    100,
  );
}

// ---------------------------------------------------------------------------------------------
// Brokers

export interface FaultBroker {
  kind: BrokerKind;
  url: string;
  /** A stream / topic / queue name of this broker's kind, unique to `tag`. */
  subject(tag: string): string;
  /** Restart the server, keeping its data; resolves once it answers again. */
  restart?: () => Promise<void>;
  /** Delete what a test created (stream key, queue); brokers of our own are stopped instead. */
  cleanup(subject: string): Promise<void>;
  /** Stop a broker of our own and wait until it is gone (a no-op for the shared Redis). */
  stop(): Promise<void>;
}

/** Restart = a clean stop (SIGTERM: the broker saves what it persists) and a start on the same port and data folder. */
function ownBroker(kind: BrokerKind, broker: PrivateBroker, subject: (tag: string) => string): FaultBroker {
  return {
    kind,
    url: broker.url,
    subject,
    async restart() {
      await broker.stop();
      await broker.start();
    },
    async cleanup() {},
    stop: () => broker.dispose(),
  };
}

/** A NATS server with JetStream of our own (private-brokers.ts): JetStream keeps its streams on disk across the restart. */
export async function privateNats(): Promise<FaultBroker> {
  return ownBroker("nats", await startPrivateNats(), (tag) => `sluice.fault.${tag}`);
}

/**
 * A RabbitMQ node of our own (private-brokers.ts). Its restart is a full one: the node stops
 * cleanly (every connection closed) and boots again, reloading durable queues and persistent
 * messages from disk (a few seconds).
 */
export async function privateRabbit(): Promise<FaultBroker> {
  return ownBroker("rabbitmq", await startPrivateRabbit(), (tag) => `sluice.fault.${tag}`);
}

/**
 * A Mosquitto configured as /etc/mosquitto/mosquitto.conf (persistence on, anonymous listener on
 * 127.0.0.1) on its own port and persistence folder. Not the one of private-brokers.ts, which
 * cannot raise `max_queued_messages` from its default of 1,000: Mosquitto drops QoS 1 messages
 * beyond that for an offline client, and at 10,000/s the seconds between the kill -9 and the
 * resume queue far more (the connector documents raising it for outages). As there, it runs as
 * the current user (as root Mosquitto would switch to user mosquitto, who cannot write our folder).
 *
 * On SIGTERM Mosquitto saves its persistence file (sessions, subscriptions, queued and in-flight
 * QoS 1 messages, with their properties) and loads it on start: queued messages survive a restart.
 */
export async function privateMosquitto(dir: string): Promise<FaultBroker> {
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  const lines = [
    "persistence true",
    `persistence_location ${dir}/`,
    "log_dest none",
    `listener ${port} 127.0.0.1`,
    "allow_anonymous true",
    "max_queued_messages 200000",
  ];
  if (process.getuid?.() === 0) lines.unshift(`user ${userInfo().username}`);
  writeFileSync(conf, lines.join("\n") + "\n");
  let child: ChildProcess | undefined;
  const start = async () => {
    child = track(spawn("mosquitto", ["-c", conf], { stdio: "ignore" }));
    await until(
      () => portOpen(port),
      10_000,
      () => `mosquitto on ${port}`,
      50,
    );
  };
  await start();
  return {
    kind: "mqtt",
    url: `mqtt://127.0.0.1:${port}`,
    subject: (tag) => `sluice/fault/${tag}`,
    async restart() {
      await stopChild(child);
      if (!existsSync(join(dir, "mosquitto.db"))) throw new Error("mosquitto saved no persistence file on SIGTERM");
      await start();
    },
    async cleanup() {},
    async stop() {
      await stopChild(child);
    },
  };
}

/**
 * The shared CI Redis (127.0.0.1:6379). Never restarted: that server keeps nothing on disk
 * (`--save "" --appendonly no`), so a restart loses the stream itself, its consumer group and
 * the pending entries; there would be nothing left to redeliver or to check.
 */
export function sharedRedis(): FaultBroker {
  const url = "redis://127.0.0.1:6379";
  return {
    kind: "redis",
    url,
    subject: (tag) => `sluice:fault:${tag}`,
    async cleanup(subject) {
      const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await r.connect();
        await r.del(subject);
      } finally {
        r.disconnect();
      }
    },
    async stop() {},
  };
}

// ---------------------------------------------------------------------------------------------
// Publishing at a steady rate

/**
 * Publishes `payloads` in order at `ratePerSec`, in chunks confirmed by the broker (`flush`)
 * before the next. `sent` counts confirmed messages. `pause()` stops after the current chunk is
 * confirmed and closes the connection (for a broker restart); `unpause()` reconnects and goes on.
 * When publishing or confirming a chunk fails, the publisher is opened again (retried until the
 * broker answers) and the whole chunk is published again; `republished` counts those messages,
 * some of which the broker may then hold twice.
 */
export class SteadyPublisher {
  sent = 0;
  republished = 0;
  readonly errors: string[] = [];
  private pauseWanted: (() => void) | undefined;
  private unpaused: (() => void) | undefined;
  private finished = false;
  private done: Promise<void> | undefined;

  constructor(
    private readonly config: StreamSourceConfig,
    private readonly payloads: readonly string[],
    private readonly ratePerSec: number,
    private readonly chunk = 250,
  ) {}

  start(): this {
    this.done = this.loop().finally(() => {
      this.finished = true;
      this.pauseWanted?.();
      this.pauseWanted = undefined;
    });
    return this;
  }

  /** Resolves when every message is published and confirmed. */
  whenDone(): Promise<void> {
    return this.done ?? Promise.resolve();
  }

  /** Resolves once publishing has stopped with everything so far confirmed, and disconnected (or finished). */
  pause(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => (this.pauseWanted = resolve));
  }

  unpause(): void {
    this.unpaused?.();
    this.unpaused = undefined;
  }

  private async loop(): Promise<void> {
    const n = this.payloads.length;
    let pub = await this.open();
    let t0 = performance.now();
    let base = 0;
    for (let i = 0; i < n;) {
      if (this.pauseWanted) {
        await pub.close().catch(() => undefined);
        const gate = new Promise<void>((resolve) => (this.unpaused = resolve));
        this.pauseWanted();
        this.pauseWanted = undefined;
        await gate;
        pub = await this.open();
        t0 = performance.now();
        base = i;
      }
      const end = Math.min(i + this.chunk, n);
      try {
        for (let k = i; k < end; k++) {
          await pub.publish(this.payloads[k]!);
          // Steady: wait until the next message is due, in steps of at least a millisecond.
          const wait = t0 + ((k + 1 - base) / this.ratePerSec) * 1000 - performance.now();
          if (wait >= 1) await sleep(wait);
        }
        await pub.flush();
        this.sent = end;
        i = end;
      } catch (err) {
        this.errors.push(err instanceof Error ? err.message : String(err));
        this.republished += end - i;
        await pub.close().catch(() => undefined);
        pub = await this.open();
      }
    }
    await pub.close();
  }

  private async open(): Promise<StreamPublisher> {
    let pub: StreamPublisher | undefined;
    await answers(async () => (pub = await openStreamPublisher(this.config)), 30_000, `a ${this.config.broker} publisher`);
    return pub!;
  }
}

// ---------------------------------------------------------------------------------------------
// The warehouse

export interface WarehouseCounts {
  rows: number;
  distinctIds: number;
  deadLetters: number;
  /** Distinct raw payloads among the dead letters: each published record is unique, so a repeat is a duplicate. */
  distinctDeadRaw: number;
  /** Distinct message ids (the dead-letter key) among the dead letters. */
  distinctDeadIds: number;
}

/** Counts of `table` and `<table>_quarantine` in the SQLite file at `path` (zeros before the pipeline made them). */
export function warehouseCounts(path: string, table: string): WarehouseCounts {
  const zero = { rows: 0, distinctIds: 0, deadLetters: 0, distinctDeadRaw: 0, distinctDeadIds: 0 };
  if (!existsSync(path)) return zero;
  const db = new Database(path, { fileMustExist: true });
  try {
    db.pragma("busy_timeout = 5000");
    const has = (t: string) => db.prepare("select 1 from sqlite_master where type = 'table' and name = ?").get(t) !== undefined;
    const out = { ...zero };
    if (has(table)) {
      const r = db.prepare(`select count(*) as n, count(distinct trade_id) as d from "${table}"`).get() as { n: number; d: number };
      out.rows = r.n;
      out.distinctIds = r.d;
    }
    const qt = `${table}_quarantine`;
    if (has(qt)) {
      const r = db.prepare(`select count(*) as n, count(distinct json_extract(record, '$.raw')) as raw, count(distinct source) as ids from "${qt}"`).get() as {
        n: number;
        raw: number;
        ids: number;
      };
      out.deadLetters = r.n;
      out.distinctDeadRaw = r.raw;
      out.distinctDeadIds = r.ids;
    }
    return out;
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The sluice CLI

export interface CliOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a sluice command to its end without blocking the event loop (the publisher keeps its rate). */
export function sluiceCommand(args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<CliOutcome> {
  const child = track(sluiceAsync(args, opts));
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
}

/** The log of a step attempt, as the engine writes it ($SLUICE_HOME/runs/RUN/logs/STEP.N.log). */
export function attemptLog(cwd: string, runId: string, step: string, attempt: number): string {
  const file = join(cwd, ".sluice", "runs", runId, "logs", `${step}.${attempt}.log`);
  return existsSync(file) ? readFileSync(file, "utf8") : "";
}

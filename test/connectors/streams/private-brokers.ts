/**
 * Brokers of a test's own, for the tests that stop, restart or kill their broker: a nats-server,
 * redis-server, Mosquitto or RabbitMQ node on free ports of 127.0.0.1, with its data in a
 * temporary folder, started and stopped by the test.
 *
 * The shared brokers (127.0.0.1:4222, 6379, 1883, 5672) serve every test file at once (vitest
 * runs files in parallel, CI runs the whole suite together): no test may stop, restart or flush
 * them. Each private broker is the same binary as the shared one, so a restart test proves the
 * same thing.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect as natsConnect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as amqpConnect } from "amqplib";
import { connect as mqttConnect } from "mqtt";

export interface PrivateBroker {
  /** The URL to connect to (no credentials). */
  readonly url: string;
  readonly port: number;
  /** The data folder, kept across `stop` and `start`. */
  readonly dir: string;
  /** Stop it cleanly (SIGTERM: it saves what it persists) and wait until the process is gone. */
  stop(): Promise<void>;
  /** Start it again: same port, same data folder; resolves once it answers. */
  start(): Promise<void>;
  /** Kill it (SIGKILL: no chance to save anything) and wait until the process is gone. */
  kill(): Promise<void>;
  /** Kill it if it runs and remove its data folder. */
  dispose(): Promise<void>;
}

export interface PrivateMosquitto extends PrivateBroker {
  /** A second listener of the same broker that refuses anonymous clients. */
  readonly authPort: number;
}

const NATS_SERVER = "/usr/sbin/nats-server";
const REDIS_SERVER = "/usr/bin/redis-server";
const MOSQUITTO = "/usr/sbin/mosquitto";
/** The server script itself, not the /usr/sbin wrapper that switches to user rabbitmq. */
const RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/** Why a private broker of this kind cannot run here (its binary is missing), or undefined. */
export function privateBrokerMissing(kind: "nats" | "redis" | "mqtt" | "rabbitmq"): string | undefined {
  const bin = { nats: NATS_SERVER, redis: REDIS_SERVER, mqtt: MOSQUITTO, rabbitmq: RABBITMQ_SERVER }[kind];
  return existsSync(bin) ? undefined : `skipped: ${bin} is not installed`;
}

/** A nats-server with JetStream (file store in its data folder); `auth` makes it require that user. */
export async function startPrivateNats(opts: { auth?: { user: string; pass: string } } = {}): Promise<PrivateBroker> {
  return privateBroker({
    name: "nats-server",
    dir: tempDir("sluice-nats-"),
    readyMs: 10_000,
    url: (port) => `nats://127.0.0.1:${port}`,
    spawn: (port, dir) => {
      const auth = opts.auth ? ["--user", opts.auth.user, "--pass", opts.auth.pass] : [];
      return { command: NATS_SERVER, args: ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir, ...auth] };
    },
    // JetStream answers, not just the port.
    answers: async (port) => {
      const nc = await natsConnect({ servers: `127.0.0.1:${port}`, timeout: 1000, reconnect: false, ...(opts.auth ?? {}) });
      try {
        await (await jetstreamManager(nc)).getAccountInfo();
      } finally {
        await nc.close();
      }
    },
  });
}

/**
 * A redis-server that keeps nothing on disk, like the shared one (a restart loses every key), or
 * with `persistent` an append-only file in its data folder written at every command (a restart,
 * even a kill, keeps everything). `password` makes it require that password.
 */
export async function startPrivateRedis(opts: { persistent?: boolean; password?: string } = {}): Promise<PrivateBroker> {
  return privateBroker({
    name: "redis-server",
    dir: tempDir("sluice-redis-"),
    readyMs: 10_000,
    url: (port) => `redis://127.0.0.1:${port}`,
    spawn: (port, dir) => {
      const persistence = opts.persistent ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"];
      const auth = opts.password ? ["--requirepass", opts.password] : [];
      return { command: REDIS_SERVER, args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", ...persistence, "--dir", dir, ...auth] };
    },
    // PING answered (PONG, or NOAUTH when a password is required); LOADING means not yet.
    answers: async (port) => {
      const reply = await tcpExchange(port, "PING\r\n");
      if (!/^(\+PONG|-NOAUTH)/.test(reply)) throw new Error(`redis answered ${reply.trim()}`);
    },
  });
}

/**
 * A Mosquitto with persistence on (saved on SIGTERM, loaded on start), an anonymous listener on
 * `port` and a listener on `authPort` that refuses anonymous clients.
 */
export async function startPrivateMosquitto(): Promise<PrivateMosquitto> {
  const authPort = await freePort();
  const broker = await privateBroker({
    name: "mosquitto",
    dir: tempDir("sluice-mosquitto-"),
    readyMs: 10_000,
    url: (port) => `mqtt://127.0.0.1:${port}`,
    spawn: (port, dir) => {
      const conf = join(dir, "mosquitto.conf");
      const lines = [
        "per_listener_settings true",
        "persistence true",
        `persistence_location ${dir}/`,
        "log_dest none",
        `listener ${port} 127.0.0.1`,
        "allow_anonymous true",
        `listener ${authPort} 127.0.0.1`,
        "allow_anonymous false",
      ];
      // Run as root, Mosquitto would switch to user "mosquitto", who cannot write our folder.
      if (process.getuid?.() === 0) lines.unshift(`user ${userInfo().username}`);
      writeFileSync(conf, lines.join("\n") + "\n");
      return { command: MOSQUITTO, args: ["-c", conf] };
    },
    // A CONNACK for a clean session that ends with the connection (nothing is left behind).
    answers: (port) =>
      new Promise<void>((resolve, reject) => {
        const c = mqttConnect(`mqtt://127.0.0.1:${port}`, {
          protocolVersion: 5,
          clean: true,
          reconnectPeriod: 0,
          connectTimeout: 1000,
          properties: { sessionExpiryInterval: 0 },
        });
        const done = (err?: Error) => {
          c.end(true);
          if (err) reject(err);
          else resolve();
        };
        c.once("connect", () => done());
        c.once("error", (err) => done(err));
        c.once("close", () => done(new Error("closed before CONNACK")));
      }),
  });
  return Object.assign(broker, { authPort });
}

/**
 * A RabbitMQ node of our own: own node name, AMQP and distribution ports, data folder and Erlang
 * cookie (HOME), user guest/guest. It takes a few seconds to boot (start it early, e.g. in a
 * beforeAll that does not wait for it). SIGTERM to the server script stops the node cleanly;
 * durable queues and persistent messages survive a restart.
 */
export async function startPrivateRabbit(): Promise<PrivateBroker> {
  const distPort = await freePort();
  return privateBroker({
    name: "rabbitmq-server",
    dir: tempDir("sluice-rabbit-"),
    readyMs: 45_000,
    url: (port) => `amqp://guest:guest@127.0.0.1:${port}`,
    spawn: (port, dir) => {
      writeFileSync(join(dir, "enabled_plugins"), "[].\n");
      const env = {
        ...process.env,
        HOME: dir,
        RABBITMQ_NODENAME: `sluicetest${process.pid}x${port}@localhost`,
        RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
        RABBITMQ_NODE_PORT: String(port),
        RABBITMQ_DIST_PORT: String(distPort),
        RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
        RABBITMQ_LOG_BASE: join(dir, "log"),
        RABBITMQ_CONFIG_FILE: join(dir, "none"),
        RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
        RABBITMQ_FEATURE_FLAGS_FILE: join(dir, "feature_flags"),
        RABBITMQ_PID_FILE: join(dir, "rabbit.pid"),
        ERL_EPMD_ADDRESS: "127.0.0.1",
      };
      return { command: RABBITMQ_SERVER, args: [], env, cwd: dir };
    },
    answers: async (port) => {
      const model = await amqpConnect(`amqp://guest:guest@127.0.0.1:${port}`, { timeout: 1000 });
      await model.close();
    },
    stopMs: 20_000,
  });
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------

interface BrokerSpec {
  name: string;
  dir: string;
  /** How long a start may take until the broker answers. */
  readyMs: number;
  /** How long a clean stop may take before the process is killed (default 10 s). */
  stopMs?: number;
  url(port: number): string;
  /** The command that runs the broker on `port` with its data in `dir`, in the foreground. */
  spawn(port: number, dir: string): { command: string; args: string[]; env?: NodeJS.ProcessEnv; cwd?: string };
  /** Resolves when the broker on `port` answers; rejects when it does not (yet). */
  answers(port: number): Promise<void>;
}

/** Every broker process started here, killed should the test process exit without stopping it. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) signal(child, "SIGKILL");
});

async function privateBroker(spec: BrokerSpec): Promise<PrivateBroker> {
  let port = 0;
  let child: ChildProcess | undefined;

  /** Start the broker and wait until it answers; "exited" when it died at once (the port was taken, say). */
  const launch = async (): Promise<void | "exited"> => {
    const { command, args, env, cwd } = spec.spawn(port, spec.dir);
    // Its own process group, so `kill` takes a wrapper script and the server behind it together.
    const c = spawn(command, args, { env: env ?? process.env, cwd: cwd ?? spec.dir, detached: true, stdio: "ignore" });
    c.on("error", () => undefined); // a failed spawn shows as an exit
    running.add(c);
    c.once("exit", () => running.delete(c));
    child = c;
    const deadline = Date.now() + spec.readyMs;
    let last: unknown;
    for (;;) {
      if (!alive(c)) return "exited";
      try {
        await spec.answers(port);
        return;
      } catch (err) {
        last = err;
      }
      if (Date.now() > deadline) {
        await end(c, "SIGKILL", 5000);
        throw new Error(
          `private ${spec.name} on port ${port} did not answer within ${spec.readyMs} ms: ${last instanceof Error ? last.message : String(last)}`,
        );
      }
      await sleep(50);
    }
  };
  const mustLaunch = async (): Promise<void> => {
    if ((await launch()) === "exited") throw new Error(`private ${spec.name} on port ${port} exited before it answered`);
  };

  // A port found free can be taken before the broker binds it (another test file starting a
  // broker): the broker then exits at once, and another port is tried.
  try {
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      if ((await launch()) !== "exited") break;
      if (attempt === 3) throw new Error(`private ${spec.name} exited at once three times (last on port ${port})`);
    }
  } catch (err) {
    rmSync(spec.dir, { recursive: true, force: true });
    throw err;
  }

  return {
    url: spec.url(port),
    port,
    dir: spec.dir,
    async start() {
      if (child && alive(child)) return;
      await mustLaunch();
    },
    async stop() {
      if (child) await end(child, "SIGTERM", spec.stopMs ?? 10_000);
    },
    async kill() {
      if (child) await end(child, "SIGKILL", 5000);
    },
    async dispose() {
      if (child) await end(child, "SIGKILL", 5000);
      rmSync(spec.dir, { recursive: true, force: true });
    },
  };
}

const alive = (c: ChildProcess) => c.pid !== undefined && c.exitCode === null && c.signalCode === null;

/** Send `sig` and wait until the process exits; SIGKILL after `graceMs`. */
async function end(c: ChildProcess, sig: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!alive(c)) return;
  const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
  signal(c, sig);
  const timer = setTimeout(() => signal(c, "SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** SIGTERM to the broker process (a wrapper script passes it on as a clean stop), SIGKILL to its whole group. */
function signal(c: ChildProcess, sig: NodeJS.Signals): void {
  try {
    if (sig === "SIGKILL" && c.pid) process.kill(-c.pid, sig);
    else c.kill(sig);
  } catch {
    /* already gone */
  }
}

function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Connect to 127.0.0.1:`port`, send `request`, resolve with the first reply. */
function tcpExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: "127.0.0.1", port }, () => s.write(request));
    s.setTimeout(1000, () => s.destroy(new Error("no reply within 1 s")));
    s.once("data", (d) => {
      s.destroy();
      resolve(d.toString());
    });
    s.once("error", reject);
    s.once("close", () => reject(new Error("closed without a reply")));
  });
}

/**
 * The real-time workflow (workflows/base-data-ingestion-workflow-realtime-stream.yaml) as a real
 * `sluice run` process on each real broker, through faults: 50,000 trades (1% defective) are
 * published at 10,000/s; the broker is restarted once where it keeps its data (NATS, Mosquitto,
 * RabbitMQ); the sluice process is killed with -9 in the middle and `sluice resume` takes over.
 * In the end every record is stored once or dead-lettered once: no row or dead letter is lost
 * or doubled, and the run's figures balance.
 *
 * Order of the faults: the kill -9 after ~20,000 published; publishing goes on while no sluice
 * runs, so the resumed pipeline starts with a backlog; the broker restart comes while it works
 * through that backlog (batches read and being stored, not yet acknowledged: the case where a
 * redelivery must not store or dead-letter anything twice). NATS and Redis redeliver what the
 * dead consumer left unacknowledged after the workflow's `redeliverAfter` (the consumer's ack
 * wait; the idle time before XAUTOCLAIM), 30 s by default, 3 s here.
 *
 * Brokers: NATS, Mosquitto and RabbitMQ are instances of our own (see fault-helpers.ts), so the
 * restart disturbs no other test file; Redis is the shared CI server and is not restarted (it
 * keeps nothing on disk: a restart would lose the stream itself).
 *
 * Expected split, from the sample's exact counts and the workflow's rules (trade_id required,
 * quantity min 1) over the standard trade schema the decode step types to: as JSON messages the
 * sample has no malformed-CSV defects; bad_timestamp, bad_price, missing_required (typing) and
 * bad_quantity (typing, or quantity min 1 for -3) are dead-lettered; bad_side and bad_symbol
 * break no rule of this workflow and are stored under their own new trade_id; a
 * duplicate_id_conflict reuses an earlier good trade_id, so it updates that row (stored, no new
 * row).
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { emptyTradeSummary, tradeRecords } from "../../src/samples/trades.js";
import { ROOT, sluiceAsync, waitForStderr } from "../cli/cli-helpers.js";
import { scratch } from "../helpers.js";
import {
  SteadyPublisher,
  alive,
  attemptLog,
  exited,
  killChildren,
  privateMosquitto,
  privateNats,
  privateRabbit,
  sharedRedis,
  sleep,
  sluiceCommand,
  track,
  until,
  warehouseCounts,
  type FaultBroker,
} from "./fault-helpers.js";

const WORKFLOW = join(ROOT, "workflows", "base-data-ingestion-workflow-realtime-stream.yaml");
const RUN = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
const RECORDS = 50_000;
const RATE = 10_000;
const KILL_AT = 20_000;
const TABLE = "t";
const tmp = scratch();

/** Lease short enough that `sluice resume` takes over ~1.5 s after the kill. */
const ENV = { SLUICE_LEASE_TTL_MS: "1500" };
/** The workflow's `redeliverAfter`: what a killed pipeline held comes back after this. */
const REDELIVER = "3s";

interface Case {
  kind: string;
  /** Why the broker is not restarted, when it is not. */
  noRestart?: string;
  /**
   * How long the warehouse may stay unchanged before the test stops waiting for the expected
   * counts: longer than the broker takes to redeliver what a dead consumer held (NATS ack wait,
   * Redis claim idle time: REDELIVER; RabbitMQ and MQTT at once).
   */
  settleMs: number;
  open(dir: string): Promise<FaultBroker>;
}

const CASES: Case[] = [
  { kind: "nats", settleMs: 8_000, open: privateNats },
  {
    kind: "redis",
    settleMs: 8_000,
    // The CI redis-server runs with --save "" --appendonly no: a restart loses the stream, its
    // group and the pending entries, so nothing could be redelivered; never restarted.
    noRestart: "redis keeps nothing on disk here",
    open: async () => sharedRedis(),
  },
  { kind: "mqtt", settleMs: 5_000, open: privateMosquitto },
  { kind: "rabbitmq", settleMs: 5_000, open: privateRabbit },
];

afterEach(() => killChildren((p) => p.spawnargs.some((a) => a.endsWith("sluice.js"))));

describe.each(CASES)("realtime-stream workflow on $kind through faults", (c) => {
  let broker: FaultBroker | undefined;
  let subject: string | undefined;

  beforeAll(async () => {
    broker = await c.open(tmp(`sluice-fault-${c.kind}-`));
  }, 60_000);

  afterAll(async () => {
    killChildren((p) => p.spawnargs.some((a) => a.endsWith("sluice.js")));
    if (broker && subject) await broker.cleanup(subject).catch(() => undefined);
    await broker?.stop();
  }, 60_000);

  const title = c.noRestart
    ? `50,000 trades through kill -9 + resume (no broker restart: ${c.noRestart}): each stored or dead-lettered exactly once`
    : "50,000 trades through a broker restart and kill -9 + resume: each stored or dead-lettered exactly once";

  it(
    title,
    async () => {
      const b = broker!;
      const t0 = Date.now();
      const marks: string[] = [];
      const mark = (what: string) => marks.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${what}`);
      onTestFinished(() => console.info(`[${c.kind}] ${marks.join(" | ")}`));
      const dir = tmp(`sluice-fault-run-${c.kind}-`);
      const db = join(dir, "wh.db");
      const counts = () => warehouseCounts(db, TABLE);
      subject = b.subject(`${RUN}${c.kind}`);

      // The records, with their exact counts.
      const summary = emptyTradeSummary();
      const payloads: string[] = [];
      for await (const r of tradeRecords({ rows: RECORDS, idPrefix: `F${RUN}-` }, summary)) payloads.push(JSON.stringify(r));
      const d = summary.defects;
      expect(d.wrong_field_count + d.stray_quote).toBe(0);
      const expectedDead = d.bad_timestamp + d.bad_quantity + d.bad_price + d.missing_required;
      const expectedRows = summary.good + d.bad_side + d.bad_symbol;
      expect(summary.rows).toBe(RECORDS);
      expect(expectedRows + d.duplicate_id_conflict + expectedDead).toBe(RECORDS);

      // 1. sluice run, as a real process.
      const params = [`broker=${b.kind}`, `url=${b.url}`, `subject=${subject}`, `destination=sqlite:${db}`, `table=${TABLE}`, `redeliverAfter=${REDELIVER}`];
      const first = track(sluiceAsync(["run", WORKFLOW, ...params.flatMap((p) => ["-p", p])], { cwd: dir, env: ENV }));
      const id = (await waitForStderr(first, /sluice: run (\S+) created/))[1]!;
      // Publish only once the source is subscribed (an MQTT or RabbitMQ message with no
      // subscription or bound queue yet would be dropped).
      await until(
        () => /source open/i.test(attemptLog(dir, id, "stream-connection", 1)) || !alive(first),
        20_000,
        () => "the stream source to open",
      );
      expect(alive(first)).toBe(true);
      mark(`run ${id} open`);

      // 2. Publish at a steady rate.
      const pub = new SteadyPublisher({ broker: b.kind, url: b.url, subject }, payloads, RATE).start();
      const publishing = pub.whenDone();
      publishing.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
      const progress = () => `published ${pub.sent}, ${JSON.stringify(counts())}`;

      // 3. kill -9 in the middle, then resume once the lease has expired. Publishing goes on
      // meanwhile: the broker holds a backlog for the resumed pipeline.
      await until(() => pub.sent >= KILL_AT && counts().rows > 0, 20_000, progress);
      first.kill("SIGKILL");
      await exited(first);
      const atKill = counts(); // what the killed attempt committed, all of it
      mark(`kill -9 (published ${pub.sent}, stored ${atKill.rows}, dead ${atKill.deadLetters})`);
      expect(atKill.rows + atKill.deadLetters).toBeLessThan(RECORDS);
      const resumed = await resume(dir, id);
      mark("resumed");

      // 4. The broker restart while the resumed pipeline works through the backlog (batches read,
      // being stored, not yet acknowledged); publishing pauses around it.
      if (b.restart) {
        await until(() => counts().rows > atKill.rows + 1000, 30_000, progress, 20);
        await pub.pause();
        const before = counts();
        mark(`broker restart (published ${pub.sent}, stored ${before.rows}, dead ${before.deadLetters})`);
        try {
          await b.restart();
        } finally {
          pub.unpause();
        }
        mark("broker back");
        // The pipeline reconnected by itself and stores again.
        await until(() => counts().rows > before.rows + 1000, 30_000, progress);
        mark(`storing again (${counts().rows})`);
      }

      // 5. Everything published is stored or dead-lettered.
      await publishing;
      mark(`published ${pub.sent}`);
      expect(pub.sent).toBe(RECORDS);
      // Until the expected counts are reached, or nothing more arrives (then the assertions below
      // say what is missing or doubled).
      let last = "";
      let changedAt = Date.now();
      await until(
        () => {
          const n = counts();
          const key = JSON.stringify(n);
          if (key !== last) [last, changedAt] = [key, Date.now()];
          return (n.rows >= expectedRows && n.distinctDeadRaw >= expectedDead) || Date.now() - changedAt > c.settleMs;
        },
        60_000,
        () => `${expectedRows} rows and ${expectedDead} dead letters; ${progress()}`,
        200,
      );
      mark("settled");
      const cancel = await sluiceCommand(["cancel", id], { cwd: dir, env: ENV });
      expect(cancel.code, cancel.stderr).toBe(0);
      expect(await Promise.race([exited(resumed), sleep(15_000).then(() => "still running")])).not.toBe("still running");
      mark("cancelled");

      // 6. Exactly once, in the warehouse.
      const end = counts();
      mark(
        `expected rows ${expectedRows}, dead letters ${expectedDead}, id conflicts ${d.duplicate_id_conflict}; got ${JSON.stringify(end)}; publisher retries ${pub.republished}${pub.errors.length ? ` (${pub.errors[0]})` : ""}`,
      );
      expect(end.rows, "rows in t").toBe(expectedRows);
      expect(end.distinctIds, "distinct trade_ids in t").toBe(expectedRows);
      expect(end.distinctDeadRaw, "distinct rejected records in t_quarantine").toBe(expectedDead);
      expect(end.distinctDeadIds).toBe(end.deadLetters);
      // No dead letter twice. (A republished chunk may legitimately hold a record twice in the broker.)
      expect(end.deadLetters - end.distinctDeadRaw, "dead letters written twice for one record").toBeLessThanOrEqual(pub.republished);
      if (pub.republished === 0) expect(end.deadLetters).toBe(expectedDead);

      // The run: attempt 1 interrupted by the kill, the last cancelled; its figures balance.
      const status = await sluiceCommand(["status", id, "--json"], { cwd: dir, env: ENV });
      expect(status.code, status.stderr).toBe(0);
      const detail = JSON.parse(status.stdout) as {
        status: string;
        steps: {
          name: string;
          status: string;
          attempts: { n: number; status: string }[];
          outputs: { records: number; stored: number; duplicate: number; deadLettered: number } | null;
        }[];
      };
      expect(detail.status).toBe("cancelled");
      const storage = detail.steps.find((s) => s.name === "streaming-storage")!;
      expect(storage.attempts[0]!.status).toBe("interrupted");
      expect(storage.attempts.at(-1)!.status).toBe("cancelled");
      const o = storage.outputs!;
      expect(o.records).toBeGreaterThan(0);
      expect(o.records).toBe(o.stored + o.duplicate + o.deadLettered);
      // The resumed attempt read at least what the killed one had not stored.
      expect(o.records).toBeGreaterThanOrEqual(RECORDS - atKill.rows - atKill.deadLetters - d.duplicate_id_conflict);
    },
    150_000,
  );
});

/** `sluice resume RUN`, tried again while the killed process's lease has not expired yet. */
async function resume(dir: string, id: string): Promise<ChildProcess> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const child = track(sluiceAsync(["resume", id], { cwd: dir, env: ENV }));
    const outcome = await Promise.race([
      waitForStderr(child, /step stream-connection started \(attempt/, 20_000).then(
        () => "started",
        () => "silent",
      ),
      exited(child).then(() => "exited"),
    ]);
    if (outcome === "started") return child;
    if (alive(child)) child.kill("SIGKILL");
    const said = await waitForStderr(child, /sluice: .*/, 1000).then(
      (m) => m[0],
      () => "(nothing on stderr)",
    );
    if (!/is being executed by/.test(said) || Date.now() > deadline) throw new Error(`sluice resume ${id} was not accepted: ${said}`);
    await sleep(250);
  }
}

/**
 * Redis Streams source and publisher against the shared redis-server (127.0.0.1:6379, no
 * persistence): every run uses its own stream keys and deletes them afterwards. The restart and
 * credential tests run a redis-server of their own (private-brokers.ts): the shared one is never
 * shut down or flushed.
 */
import { hostname } from "node:os";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { openRedisPublisher, openRedisSource } from "../../../src/connectors/streams/redis.js";
import type { StreamSourceConfig } from "../../../src/connectors/streams/types.js";
import { privateBrokerMissing, startPrivateRedis } from "./private-brokers.js";
import { sourceContract } from "./source-contract.js";
import { collect, expectDeliveryAfterRestart, expectRedeliveryAcrossRestart, never, publishAll, recordingLog, runId, text } from "./stream-helpers.js";

const URL = "redis://127.0.0.1:6379";
const RUN = runId();
const keys = new Set<string>();
const noRedis = privateBrokerMissing("redis");

function cfg(name: string, url = URL): StreamSourceConfig {
  const subject = `sluicetest:${RUN}:${name}`;
  if (url === URL) keys.add(subject);
  return { broker: "redis", url, subject, consumer: "sluice" };
}

const publish = (config: StreamSourceConfig, items: string[]) => publishAll(openRedisPublisher, config, items);

afterAll(async () => {
  const r = new Redis({ host: "127.0.0.1", port: 6379, lazyConnect: true, maxRetriesPerRequest: 1 });
  r.on("error", () => undefined);
  try {
    await r.connect();
    if (keys.size > 0) await r.del(...keys);
  } catch {
    /* the server is down: nothing left to clean */
  } finally {
    r.disconnect();
  }
});

describe("Redis Streams source", () => {
  sourceContract({
    kind: "redis",
    label: "Redis",
    openSource: (config) => openRedisSource(config),
    openPublisher: (config) => openRedisPublisher(config),
    config: cfg,
    description: (config) => `${URL} stream ${config.subject} group sluice consumer ${hostname()}:${process.pid}`,
    lagCountsUnacknowledged: true,
    badUrl: { broker: "redis", url: "redis://u:hunter2@127.0.0.1:6379/notanumber", subject: "x" },
    unreachable: (port) => ({ broker: "redis", url: `redis://u:hunter2@127.0.0.1:${port}`, subject: "x" }),
    shown: (port) => `redis://127.0.0.1:${port}`,
    refusingMissing: noRedis,
    async refusing() {
      const server = await startPrivateRedis({ password: "secret" });
      return {
        config: { broker: "redis", url: `redis://:wrong-pass@127.0.0.1:${server.port}`, subject: "x" },
        port: server.port,
        dispose: () => server.dispose(),
      };
    },
  });

  it("redelivers this consumer's unacknowledged entries first when reopened (pending-entries path)", async () => {
    const config = cfg("pending");
    await publish(config, ["m0", "m1", "m2", "m3", "m4"]);
    const first = await openRedisSource(config);
    expect((await collect(first, 5)).map(text)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    await first.close(); // no ack

    await publish(config, ["m5"]);
    const second = await openRedisSource(config);
    const t0 = Date.now();
    const owed = await second.next(100, 2000, never);
    expect(Date.now() - t0).toBeLessThan(500); // no waiting for an idle time: they are our own
    expect(owed.map(text)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(owed.every((m) => m.deliveries === 2)).toBe(true);
    const fresh = await second.next(100, 2000, never);
    expect(fresh.map(text)).toEqual(["m5"]);
    expect(fresh[0]!.deliveries).toBe(1);
    await second.ack([...owed, ...fresh]);
    expect(await second.lag!()).toBe(0);
    await second.close();
  });

  it("claims entries left pending by a dead consumer once they have been idle for claimIdleMs", async () => {
    const config = cfg("claim");
    await publish(config, ["a", "b", "c"]);
    const dead = await openRedisSource(config, { consumerName: `dead-${RUN}` });
    expect(await collect(dead, 3)).toHaveLength(3);
    await dead.close();

    const alive = await openRedisSource(config, { consumerName: `alive-${RUN}`, claimIdleMs: 200 });
    // Too early: the entries are not idle long enough, so nothing is claimed yet.
    expect(await alive.next(10, 50, never)).toEqual([]);
    await new Promise((r) => setTimeout(r, 250));
    const claimed = await collect(alive, 3, 3000);
    expect(claimed.map(text).sort()).toEqual(["a", "b", "c"]);
    expect(claimed.every((m) => m.deliveries === 2)).toBe(true);
    await alive.ack(claimed);
    expect(await alive.lag!()).toBe(0);
    await alive.close();
  });
});

describe("Redis Streams source across a server restart (a redis-server of its own)", () => {
  it.skipIf(noRedis)("without persistence (as the shared server runs): keeps waiting, recreates the group and delivers what is added afterwards", async () => {
    const server = await startPrivateRedis();
    const config = cfg("restart", server.url);
    const log = recordingLog();
    const pub = await openRedisPublisher(config);
    const source = await openRedisSource(config, { log });
    try {
      // The restart loses the stream and the group: the publisher's XADD creates a new stream and
      // the source recreates its group (NOGROUP) from id 0.
      await expectDeliveryAfterRestart({ broker: server, source, pub });
      expect(log.lines.some((m) => /group missing/.test(m))).toBe(true);
    } finally {
      await source.close();
      await pub.close();
      await server.dispose();
    }
  });

  it.skipIf(noRedis)("with persistence: keeps waiting, and the unacknowledged entry comes back (claimed) with the new one", async () => {
    const server = await startPrivateRedis({ persistent: true });
    const config = cfg("restart-aof", server.url);
    const log = recordingLog();
    const source = await openRedisSource(config, { log, claimIdleMs: 300 });
    try {
      // Down longer than claimIdleMs, so "b" is idle long enough to be claimed once the server is back.
      await expectRedeliveryAcrossRestart({ broker: server, source, publish: (items) => publish(config, items), downMs: 500 });
      expect(log.lines.some((m) => /group missing/.test(m))).toBe(false);
      expect(await source.lag!()).toBe(0);
    } finally {
      await source.close();
      await server.dispose();
    }
  });
});

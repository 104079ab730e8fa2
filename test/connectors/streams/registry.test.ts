/**
 * The broker registry is the one list: what derives from it (the README table, the catalogue's
 * `broker:` values and connection fields, the errors naming the brokers) matches it, every broker
 * in it runs the shared source contract, and reading it loads no broker's client library.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { builtinRegistry } from "../../../src/actions/builtin.js";
import { SEED_SIGNATURES } from "../../../src/actions/seed-catalogue.js";
import { publishCommand } from "../../../src/cli/publish.js";
import { README_MARKERS, brokerTable, withBrokerTable } from "../../../src/connectors/streams/docs.js";
import { openStreamPublisher, openStreamSource } from "../../../src/connectors/streams/index.js";
import { BROKERS, BROKER_KINDS, connectionShape } from "../../../src/connectors/streams/registry.js";
import { formatProblem, loadWorkflowText } from "../../../src/spec/load.js";
import { failure, tempDir } from "../../helpers.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const connection = SEED_SIGNATURES.find((s) => s.action === "establish_stream_connection")!.input as z.ZodObject;

describe("the broker registry", () => {
  it("has one descriptor per kind, each reading a url, every other field optional", () => {
    expect(new Set(BROKER_KINDS).size).toBe(BROKERS.length);
    expect(BROKER_KINDS).toEqual(["nats", "redis", "mqtt", "rabbitmq", "kafka", "http"]);
    for (const b of BROKERS) {
      expect(b.config.shape.url.safeParse(undefined).success, b.kind).toBe(false);
      for (const [name, field] of Object.entries(b.config.shape)) {
        if (name !== "url") expect(field!.safeParse(undefined).success, `${b.kind}.${name}`).toBe(true);
        expect(field!.description, `${b.kind}.${name} is described`).toMatch(/\w/);
      }
      for (const text of [b.title, b.description, b.delivery, b.ack]) expect(text, b.kind).toMatch(/\w/);
    }
  });

  it("gives a field shared by brokers the same type in each", () => {
    const typeOf = (t: z.ZodType) => {
      const { description: _, ...schema } = z.toJSONSchema(t) as Record<string, unknown>;
      return schema;
    };
    const seen = new Map<string, { kind: string; type: unknown }>();
    for (const b of BROKERS) {
      for (const [name, field] of Object.entries(b.config.shape)) {
        const first = seen.get(name);
        if (first) expect(typeOf(field!), `${name} of ${b.kind} and ${first.kind}`).toEqual(first.type);
        else seen.set(name, { kind: b.kind, type: typeOf(field!) });
      }
    }
  });

  it("runs the shared source contract for every kind", () => {
    const dir = join(ROOT, "test", "connectors", "streams");
    const contracted = new Set<string>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".test.ts"))) {
      const text = readFileSync(join(dir, file), "utf8");
      for (const m of text.matchAll(/sourceContract\(\{\s*kind: "([^"]+)"/g)) contracted.add(m[1]!);
    }
    expect([...contracted].sort()).toEqual([...BROKER_KINDS].sort());
  });
});

describe("what derives from the registry", () => {
  it("the README's broker table is the one docs.ts writes (run npm run gen after changing a descriptor)", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    expect(readme).toContain(README_MARKERS.begin);
    expect(withBrokerTable(readme)).toBe(readme);
    const table = brokerTable().split("\n");
    expect(table).toHaveLength(2 + BROKERS.length);
    for (const [i, b] of BROKERS.entries()) expect(table[2 + i]).toContain(`| \`${b.kind}\` | ${b.title}: `);
  });

  it("the catalogue's connection step takes exactly the registry's kinds and every field a broker reads", () => {
    expect((connection.shape.broker as z.ZodEnum).options).toEqual(BROKER_KINDS);
    const fields = new Set(BROKERS.flatMap((b) => Object.keys(b.config.shape)));
    expect(Object.keys(connectionShape()).sort()).toEqual([...fields].sort());
    for (const name of fields) expect(Object.keys(connection.shape)).toContain(name);
    for (const kind of BROKER_KINDS) expect(connection.safeParse({ broker: kind, url: "x://y", subject: "s" }).success, kind).toBe(true);
    // A field's description says what it is to each broker that reads it.
    expect(connection.shape.queue!.description).toBe("RabbitMQ (AMQP 0-9-1): the durable queue consumed, declared when missing (default: subject).");
    expect(connection.shape.consumer!.description).toMatch(/^NATS JetStream: the durable consumer .*; Kafka: the consumer group/);
  });

  it("sluice validate names every broker when a workflow gives another, at the field", () => {
    const text = [
      "apiVersion: sluice.dev/v1alpha1",
      "kind: Workflow",
      "metadata: { name: w }",
      "spec:",
      "  steps:",
      "    - name: s",
      "      agent: stream-manager",
      "      action: establish_stream_connection",
      "      with: { broker: kafak, url: kafka://h:9092 }",
      "",
    ].join("\n");
    const problems = loadWorkflowText(text, "w.yaml", { actions: builtinRegistry() }).problems.map(formatProblem);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toBe(
      `w.yaml:9:23: input "broker" of stream-manager/establish_stream_connection: must be one of ${BROKER_KINDS.map((k) => `"${k}"`).join(", ")}`,
    );
  });

  it("the connectors and sluice publish refuse an unknown broker with the list", async () => {
    const list = BROKER_KINDS.join(", ");
    for (const p of [openStreamSource({ broker: "kafak", url: "x" }), openStreamPublisher({ broker: "kafak", url: "x" })]) {
      const err = await failure(p);
      expect(err.code).toBe("BAD_CONFIG");
      expect(err.message).toBe(`Unknown stream broker "kafak": expected one of ${list}.`);
    }
    const usage = await failure(publishCommand("kafak", "x", { count: "1", rate: "1" }));
    expect(usage.code).toBe("USAGE");
    expect(usage.message).toBe(`unknown broker "kafak"; one of ${list}`);
  });
});

describe("loading", () => {
  /** The packages a fresh node process resolves running `script` (ESM), from the built dist/. */
  function packagesLoaded(script: string): string[] {
    const dir = tempDir("sluice-loads-");
    const log = join(dir, "resolved.log");
    writeFileSync(log, "");
    writeFileSync(
      join(dir, "hooks.mjs"),
      `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, r.url + "\\n");
  return r;
}
`,
    );
    writeFileSync(
      join(dir, "register.mjs"),
      `import { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(join(dir, "hooks.mjs")).href)});\n`,
    );
    const r = spawnSync(process.execPath, ["--import", pathToFileURL(join(dir, "register.mjs")).href, "--input-type=module", "-e", script], {
      cwd: ROOT,
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const packages = readFileSync(log, "utf8")
      .split("\n")
      .map((u) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u)?.[1])
      .filter((p): p is string => !!p);
    return [...new Set(packages)].sort();
  }
  const BROKER_LIBRARIES = ["@nats-io/jetstream", "@nats-io/transport-node", "amqplib", "ioredis", "kafkajs", "mqtt", "ws"];
  const dist = (path: string) => JSON.stringify(pathToFileURL(join(ROOT, "dist", path)).href);

  it("reading the registry and the catalogue loads no broker's client library (needs npm run build)", () => {
    const loaded = packagesLoaded(`await import(${dist("connectors/streams/registry.js")}); await import(${dist("actions/builtin.js")});`);
    expect(loaded).toContain("zod");
    expect(loaded.filter((p) => BROKER_LIBRARIES.includes(p))).toEqual([]);
  });

  it("opening a source loads its own library and no other", () => {
    const loaded = packagesLoaded(`const { openStreamSource } = await import(${dist("connectors/streams/index.js")});
const source = await openStreamSource({ broker: "http", url: "http://127.0.0.1:0/in" });
await source.close();`);
    expect(loaded.filter((p) => BROKER_LIBRARIES.includes(p))).toEqual(["ws"]);
  });
});

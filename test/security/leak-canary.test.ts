/**
 * The leak canary: a sentinel API token (given to the workflow as env:) and a sentinel card
 * number go through collect_with_encryption → classify_sensitive_data → store_with_encryption,
 * run by a real `sluice serve` (JSON logs, the worker, the API, /metrics), into SQLite and into
 * PostgreSQL. The API fails the first request with a body quoting the token, so the failure
 * path (error messages in the store, attempt logs, the retry) is exercised too; the card is in a
 * card column, in a free-text note, and in a record without a key (quarantined).
 *
 * Then everything the run left is searched for both values in their raw, base64 (standard and
 * URL alphabets), hex, URL-encoded and JSON-escaped forms: the server's log lines, every file of
 * the Sluice home (state store and its -wal, artifacts, attempt logs, quarantine files), the
 * SQLite destination and its -wal, a pg_dump of the PostgreSQL destination schema, the run's API
 * document and the /metrics text. Zero hits; the card's last four digits may appear (masked).
 * The audit trail of the run verifies, with a checkpoint signed for it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { stringify } from "yaml";
import { scratch } from "../helpers.js";
import { PG_URL, dropSchema } from "../stores.js";
import { call, killAll, startServe, waitFor, type Proc } from "../cli/serve-helpers.js";
import { sluice } from "../cli/cli-helpers.js";
import { accounts, luhn, makeCerts, startApi, type Api } from "./secure-api.js";

const dir = scratch();
const TOKEN = `canary-${randomBytes(16).toString("hex")}`;
const CARD = luhn("453201511283036");
const KEY = randomBytes(32).toString("base64");
const SCHEMA = `canary_${process.pid}_${Date.now().toString(36)}`;

/** Every form a value takes when it travels: raw, base64 (both alphabets, padded or not), hex, URL- and JSON-escaped. */
function forms(v: string): string[] {
  const b = Buffer.from(v, "utf8");
  const b64 = b.toString("base64");
  return [
    ...new Set([
      v,
      b64,
      b64.replace(/=+$/, ""),
      b.toString("base64url"),
      b.toString("hex"),
      b.toString("hex").toUpperCase(),
      encodeURIComponent(v),
      JSON.stringify(v).slice(1, -1),
    ]),
  ];
}

function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(root, e.name)) : [join(root, e.name)]));
}

let cwd: string;
let api: Api;
let serve: Proc & { url: string };

beforeAll(async () => {
  cwd = dir("sluice-canary-");
  const certs = makeCerts(dir("sluice-canary-certs-"));
  const records = accounts(40, { card: CARD, noteCard: CARD });
  records.push({ ...accounts(41)[40]!, id: "", card: CARD }); // no key: quarantined, card protected
  api = await startApi(certs, { token: TOKEN, records, failFirst: true });
  const c = new pg.Client(PG_URL);
  await c.connect();
  await c.query(`CREATE SCHEMA "${SCHEMA}"`);
  await c.end();

  mkdirSync(join(cwd, "workflows"));
  writeFileSync(
    join(cwd, "workflows", "canary.yaml"),
    stringify({
      apiVersion: "sluice.dev/v1alpha1",
      kind: "Workflow",
      metadata: { name: "canary" },
      spec: {
        params: { destination: { type: "string" }, table: { type: "string" } },
        steps: [
          {
            name: "secure-data-collection",
            agent: "data-collector",
            action: "collect_with_encryption",
            with: { source: api.url, auth: { type: "bearer", token: "env:SLUICE_API_TOKEN" }, key: "env:SLUICE_ENCRYPTION_KEY", caFile: certs.caFile },
            retry: { limit: 2, backoff: { initial: "100ms", factor: 1, max: "1s", jitter: 0 } },
          },
          {
            name: "data-classification",
            agent: "data-security",
            action: "classify_sensitive_data",
            dependsOn: ["secure-data-collection"],
            with: { dataset: "${{ steps.secure-data-collection.outputs.dataset }}" },
          },
          {
            name: "encrypted-storage",
            agent: "data-security",
            action: "store_with_encryption",
            dependsOn: ["data-classification"],
            with: {
              dataset: "${{ steps.data-classification.outputs.dataset }}",
              destination: "${{ params.destination }}",
              table: "${{ params.table }}",
              key: "env:SLUICE_ENCRYPTION_KEY",
            },
          },
        ],
      },
    }),
  );
  serve = await startServe(["--workflows", join(cwd, "workflows")], {
    cwd,
    env: { SLUICE_HOME: join(cwd, ".sluice"), SLUICE_LOG_FORMAT: "json", SLUICE_API_TOKEN: TOKEN, SLUICE_ENCRYPTION_KEY: KEY },
  });
}, 60_000);

afterAll(async () => {
  await serve?.stop("SIGTERM", 5_000);
  killAll();
  await api?.close();
  await dropSchema(SCHEMA);
});

async function runToEnd(params: Record<string, string>): Promise<{ id: string; detail: string }> {
  const started = await call(serve.url, "POST", "/api/v1/workflows/canary/runs", { json: { params } });
  expect(started.status, started.text).toBe(201);
  const id = started.json.id as string;
  const detail = await waitFor(
    `run ${id} to end`,
    async () => {
      const d = await call(serve.url, "GET", `/api/v1/runs/${id}`);
      return ["succeeded", "failed", "cancelled"].includes(d.json.status) && d;
    },
    60_000,
    200,
  );
  expect(detail.json.status, detail.text).toBe("succeeded");
  return { id, detail: detail.text };
}

describe("leak canary", () => {
  it("neither the sentinel token nor the sentinel card is anywhere the run left, in any encoding", async () => {
    const db = join(cwd, "warehouse.db");
    const sqliteRun = await runToEnd({ destination: `sqlite:${db}`, table: "accounts" });
    const pgRun = await runToEnd({ destination: PG_URL, table: `${SCHEMA}.accounts` });
    expect(api.requests).toBeGreaterThan(8);

    // The failure really happened, and was stored masked.
    const attempts = JSON.parse(sqliteRun.detail).steps[0].attempts as { status: string; error: { message: string; details?: { body?: string } } | null }[];
    expect(attempts.map((a) => a.status)).toEqual(["failed", "succeeded"]);
    expect(attempts[0]!.error!.message).toMatch(/HTTP 500/);
    expect(attempts[0]!.error!.details?.body).toMatch(/your token \*\*\* was logged/);

    const haystacks: [string, string][] = [
      ["serve stdout", serve.stdout()],
      ["serve stderr", serve.stderr()],
      ["sqlite run", sqliteRun.detail],
      ["postgres run", pgRun.detail],
      ["metrics", (await call(serve.url, "GET", "/metrics")).text],
      ["pg_dump", execFileSync("pg_dump", ["-h", "127.0.0.1", "-U", "postgres", "-n", SCHEMA, "test"], { encoding: "utf8" })],
    ];
    for (const f of [...filesUnder(join(cwd, ".sluice")), ...["", "-wal", "-shm"].map((s) => db + s).filter(existsSync)])
      haystacks.push([f, readFileSync(f).toString("latin1")]);
    expect(haystacks.filter(([name]) => name.includes(`${join("runs", sqliteRun.id)}`)).length).toBeGreaterThan(10);
    expect(statSync(db).size).toBeGreaterThan(0);
    expect(haystacks.find(([n]) => n === "pg_dump")![1]).toMatch(/accounts_quarantine/);

    const hits: string[] = [];
    for (const [what, value] of [
      ["token", TOKEN],
      ["card", CARD],
    ] as const)
      for (const form of forms(value)) for (const [name, text] of haystacks) if (text.includes(form)) hits.push(`${what} as ${form} in ${name}`);
    expect(hits).toEqual([]);
    // Masked where the policy masks: the note keeps the card's last four digits.
    expect(haystacks.find(([n]) => n === "pg_dump")![1]).toContain(`************${CARD.slice(-4)}`);

    // The run's audit trail: the steps' entries, the run's end, a checkpoint signed for it; intact.
    const trail = JSON.parse(sluice(["audit", "list", "--run", sqliteRun.id, "--json"], { cwd, env: { SLUICE_HOME: join(cwd, ".sluice") } }).stdout) as {
      event: string;
      actor: string;
      origin: string;
      step: string | null;
    }[];
    const events = trail.map((e) => e.event);
    expect(events[0]).toBe("data.collect");
    expect(events).toContain("policy.decision");
    expect(events.slice(-2)).toEqual(["data.store", "run.end"]);
    expect(trail[0]).toMatchObject({ actor: "workflow:canary", step: "secure-data-collection", origin: expect.stringMatching(/^engine@/) });
    const verify = sluice(["audit", "verify", "--json"], { cwd, env: { SLUICE_HOME: join(cwd, ".sluice") } });
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, checkpoints: 2 });
  }, 120_000);
});

/**
 * Issue 12 end to end: workflows/base-data-ingestion-workflow-secure-api.yaml as shipped, run by the
 * built CLI against `sluice sample secure-api` (a separate process: mTLS, OAuth2 client credentials
 * bound to the certificate, a TOTP header) with a keyring from `sluice keys init`, into SQLite and
 * into PostgreSQL. Then: every step succeeded; the rows are stored as the classification says
 * (names, phones, IBANs encrypted; e-mails and cards tokenized; notes masked; ids in clear);
 * `sluice decrypt` gives them back in clear and is audited; `sluice audit verify` exits 0; the run
 * has a checkpoint signed for it; no clear value of any account is under the run's folder; and
 * `sluice audit report` makes the record of processing of the workflow from those runs.
 * Last, the event path: `sluice serve` with the workflow deployed, a `compliance_audit_request`
 * and a `high_security_source_update` event each start a run that succeeds by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { parse, stringify } from "yaml";
import { scratch } from "../helpers.js";
import { PG_URL, dropSchema } from "../stores.js";
import { ROOT, sluice } from "../cli/cli-helpers.js";
import { call, killAll, spawnSluice, startServe, waitFor, type Proc } from "../cli/serve-helpers.js";
import { account } from "../../src/samples/secure-api.js";
import { openStore } from "../../src/store/index.js";

const WORKFLOW = join(ROOT, "workflows", "base-data-ingestion-workflow-secure-api.yaml");
const dir = scratch();
const SCHEMA = `secwf_${process.pid}_${Date.now().toString(36)}`;
const ACCOUNTS = Array.from({ length: 120 }, (_, i) => account(i + 1));

let cwd: string;
let env: Record<string, string>;
let sample: Proc;
let api: { url: string; tokenUrl: string; certs: string };

function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(root, e.name)) : [join(root, e.name)]));
}

/** The run's params as a user passes them: references to the sample's files, never a secret value. */
function connectionParams(): string[] {
  const c = api.certs;
  return Object.entries({
    source: api.url,
    tokenUrl: api.tokenUrl,
    caFile: join(c, "ca.pem"),
    clientCert: `file:${join(c, "client.pem")}`,
    clientKey: `file:${join(c, "client.key")}`,
    clientSecret: `file:${join(c, "client-secret")}`,
    totpSecret: `file:${join(c, "totp-seed")}`,
    key: join(cwd, ".sluice", "keyring.json"),
  }).flatMap(([k, v]) => ["--param", `${k}=${v}`]);
}

function runWorkflow(extra: Record<string, string>): { id: string; steps: { name: string; status: string; outputs: Record<string, unknown> }[] } {
  const r = sluice(["run", WORKFLOW, ...connectionParams(), ...Object.entries(extra).flatMap(([k, v]) => ["--param", `${k}=${v}`])], { cwd, env });
  expect(r.code, r.stderr + r.stdout).toBe(0);
  const id = /run (r-[a-z0-9-]+) succeeded/.exec(r.stdout + r.stderr)![1]!;
  const status = sluice(["status", id, "--json"], { cwd, env });
  expect(status.code, status.stderr).toBe(0);
  return { id, ...(JSON.parse(status.stdout) as { steps: { name: string; status: string; outputs: Record<string, unknown> }[] }) };
}

type Row = Record<string, unknown>;

/** The stored rows protect each column as the classification says; notes keep only a card's last four digits. */
function expectProtected(rows: Row[], cards: "tokenize" | "mask" = "tokenize"): void {
  expect(rows).toHaveLength(120);
  const byId = new Map(rows.map((r) => [String(r["customer_id"]), r]));
  for (const a of ACCOUNTS) {
    const r = byId.get(String(a["customer_id"]))!;
    expect(r, String(a["customer_id"])).toBeDefined();
    for (const c of ["holder_name", "phone", "iban"]) expect(r[c]).toMatch(/^sl1:default:1:/);
    expect(r["email"]).toMatch(/^tk1:default:1:/);
    const pan = String(a["card_number"]);
    if (cards === "tokenize") expect(r["card_number"]).toMatch(/^tk1:default:1:/);
    else expect(r["card_number"]).toBe(`${"*".repeat(pan.length - 4)}${pan.slice(-4)}`);
    expect(String(r["account_id"])).toBe(String(a["account_id"]));
    expect(r["balance"]).toBe(a["balance"]);
    const card = /\d{13,19}/.exec(String(a["notes"]))?.[0];
    if (card) {
      expect(r["notes"]).not.toContain(card);
      expect(r["notes"]).toContain(`${"*".repeat(card.length - 4)}${card.slice(-4)}`);
    } else expect(r["notes"]).toBe(a["notes"]);
  }
}

/** `sluice decrypt` of one account gives its clear values back; tokens stay tokens. */
function expectDecrypts(destination: string, table: string): void {
  const a = ACCOUNTS[3]!;
  const r = sluice(
    [
      "decrypt",
      "--destination",
      destination,
      "--table",
      table,
      "--where",
      `customer_id=${a["customer_id"]}`,
      "--keyring",
      join(cwd, ".sluice", "keyring.json"),
    ],
    {
      cwd,
      env,
    },
  );
  expect(r.code, r.stderr).toBe(0);
  const rows = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Row);
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({ holder_name: a["holder_name"], phone: a["phone"], iban: a["iban"], customer_id: a["customer_id"] });
  expect(rows[0]!["email"]).toMatch(/^tk1:/);
}

async function expectRunSealed(runId: string): Promise<void> {
  const verify = sluice(["audit", "verify", "--json"], { cwd, env });
  expect(verify.code, verify.stderr).toBe(0);
  expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });
  const store = await openStore({ ...process.env, SLUICE_HOME: env.SLUICE_HOME });
  try {
    const cps = await store.listCheckpoints();
    expect(cps.filter((c) => c.runId === runId)).toHaveLength(1);
    const trail = (await store.listAudit({ runId })).map((e) => e.event);
    expect(trail).toEqual(expect.arrayContaining(["data.collect", "policy.decision", "data.store", "run.end"]));
  } finally {
    await store.close();
  }
  // Nothing of any account in clear under the run's folder (pages, checkpoint, classification, logs).
  const files = filesUnder(join(env.SLUICE_HOME!, "runs", runId));
  expect(files.length).toBeGreaterThan(5);
  const hits: string[] = [];
  for (const f of files) {
    const text = readFileSync(f).toString("latin1");
    for (const a of ACCOUNTS)
      for (const c of ["holder_name", "email", "phone", "iban", "card_number"])
        if (text.includes(String(a[c]))) hits.push(`${c} of ${a["customer_id"]} in ${f}`);
  }
  expect(hits).toEqual([]);
}

beforeAll(async () => {
  cwd = dir("sluice-secwf-");
  env = { SLUICE_HOME: join(cwd, ".sluice") };
  sample = spawnSluice(["sample", "secure-api", "--dir", "certs"], { cwd, env });
  const line = await waitFor(
    "the sample's first line",
    () => /secure API on (https:\S+) \(token endpoint (https:\S+)\)/.exec(sample.stdout()) ?? undefined,
    30_000,
    50,
  );
  api = { url: line[1]!, tokenUrl: line[2]!, certs: resolve(cwd, "certs") };
  const init = sluice(["keys", "init"], { cwd, env });
  expect(init.code, init.stderr).toBe(0);
  const c = new pg.Client(PG_URL);
  await c.connect();
  await c.query(`CREATE SCHEMA "${SCHEMA}"`);
  await c.end();
}, 60_000);

afterAll(async () => {
  await sample?.stop("SIGTERM", 5_000);
  killAll();
  await dropSchema(SCHEMA);
});

describe("the secure API workflow end to end (issue 12)", () => {
  it("validates as shipped", () => {
    const r = sluice(["validate", WORKFLOW], { cwd, env });
    expect(r.code, r.stderr).toBe(0);
  });

  it("runs into SQLite: every step succeeds, columns protected per the classification, decrypt audited, the trail sealed", async () => {
    const db = join(cwd, "warehouse.db");
    const run = runWorkflow({ destination: `sqlite:${db}`, table: "accounts" });
    expect(run.steps.map((s) => [s.name, s.status])).toEqual(
      ["security-validation", "authentication-verification", "encrypted-connection", "secure-data-collection", "data-classification", "encrypted-storage"].map(
        (n) => [n, "succeeded"],
      ),
    );
    expect(run.steps[1]!.outputs).toMatchObject({ verified: true, passed: expect.arrayContaining(["possession", "knowledge", "totp"]) });
    expect(run.steps[3]!.outputs).toMatchObject({ records: 120, encryption: { keyId: "default", keyVersion: 1 } });
    const classes = Object.fromEntries(
      (run.steps[4]!.outputs["columns"] as { name: string; class: string; action: string }[]).map((c) => [c.name, [c.class, c.action]]),
    );
    expect(classes).toMatchObject({
      holder_name: ["person_name", "encrypt"],
      email: ["email", "tokenize"],
      phone: ["phone", "encrypt"],
      iban: ["iban", "encrypt"],
      card_number: ["card_number", "tokenize"],
      notes: ["free_text_with_pii", "mask"],
      customer_id: ["none", "allow"],
    });
    const conn = new Database(db, { readonly: true });
    try {
      expectProtected(conn.prepare("SELECT * FROM accounts").all() as Row[]);
    } finally {
      conn.close();
    }
    expectDecrypts(`sqlite:${db}`, "accounts");
    const decrypts = JSON.parse(sluice(["audit", "list", "--json", "-n", "1000"], { cwd, env }).stdout) as {
      event: string;
      resource: string;
      outcome: string;
    }[];
    expect(decrypts.filter((e) => e.event === "data.decrypt")).toEqual([expect.objectContaining({ resource: "table:accounts", outcome: "success" })]);
    await expectRunSealed(run.id);
  }, 120_000);

  it("runs into PostgreSQL the same way, with one policy file for the requirements and the protection rules", async () => {
    const table = `${SCHEMA}.accounts`;
    const policy = join(cwd, "policy.yaml");
    writeFileSync(
      policy,
      "requireClientCertificate: true\nallowedHosts: [127.0.0.1]\nminTlsVersion: TLSv1.2\nclasses:\n  card_number: { action: mask, keepLast: 4 }\n",
    );
    const run = runWorkflow({ destination: PG_URL, table, policy, retention: "7 years after the account is closed" });
    expect(run.steps.every((s) => s.status === "succeeded")).toBe(true);
    expect(run.steps[0]!.outputs["policy"]).toMatchObject({ allowedHosts: ["127.0.0.1"], requireClientCertificate: true });
    const c = new pg.Client(PG_URL);
    await c.connect();
    try {
      expectProtected((await c.query(`SELECT * FROM "${SCHEMA}".accounts`)).rows as Row[], "mask");
    } finally {
      await c.end();
    }
    expectDecrypts(PG_URL, table);
    await expectRunSealed(run.id);
  }, 120_000);

  it("sluice audit report: the record of processing of the workflow from its runs, text and JSON", () => {
    const json = sluice(["audit", "report", "--workflow", "secure-api-ingestion", "--json"], { cwd, env });
    expect(json.code, json.stderr).toBe(0);
    const r = JSON.parse(json.stdout);
    expect(r.runs).toMatchObject({ considered: 2, succeeded: 2 });
    expect(r.purposes).toEqual([expect.stringMatching(/^Enhanced security workflow for sensitive API data sources/)]);
    const cats = Object.fromEntries(
      (r.categories as { class: string; columns: { table: string; column: string; action: string }[] }[]).map((c) => [c.class, c.columns]),
    );
    expect(Object.keys(cats).sort()).toEqual(["card_number", "email", "free_text_with_pii", "iban", "person_name", "phone"]);
    expect(cats["iban"]).toEqual(
      expect.arrayContaining([
        { table: "accounts", column: "iban", action: "encrypt" },
        { table: `${SCHEMA}.accounts`, column: "iban", action: "encrypt" },
      ]),
    );
    expect(r.recipients).toEqual(
      expect.arrayContaining([
        { destination: `sqlite:${join(cwd, "warehouse.db")}`, table: "accounts", rows: 120, runs: 1 },
        expect.objectContaining({ table: `${SCHEMA}.accounts`, rows: 120, runs: 1 }),
      ]),
    );
    expect(r.sources).toEqual([api.url]);
    // The newest run declares the retention.
    expect(r.retention).toBe("7 years after the account is closed");
    expect(r.measures.tls).toMatchObject({ clientCertificate: true, protocols: [expect.stringMatching(/^TLSv1\.[23]$/)] });
    expect(r.measures.mfa).toEqual({ factors: ["knowledge", "possession", "totp"], required: 2 });
    expect(r.measures.encryption).toEqual([{ algorithm: "AES-256-GCM", keyId: "default", keyVersion: 1 }]);
    expect(r.measures.masked).toEqual(expect.arrayContaining(["accounts.notes"]));
    expect(r.measures.tokenized).toEqual(expect.arrayContaining(["accounts.card_number", "accounts.email"]));
    expect(r.measures.masked).toEqual(expect.arrayContaining([`${SCHEMA}.accounts.card_number`]));
    expect(r.categories.find((c: { class: string }) => c.class === "card_number").columns).toEqual(
      expect.arrayContaining([{ table: `${SCHEMA}.accounts`, column: "card_number", action: "mask" }]),
    );
    expect(r.measures.keyEvents).toEqual([expect.objectContaining({ event: "key.init", outcome: "success" })]);
    expect(r.measures.decrypts).toBe(2);
    expect(r.measures.auditChain).toMatchObject({ verified: true });
    // Classes and columns, never values.
    for (const a of ACCOUNTS.slice(0, 10)) for (const c of ["holder_name", "iban", "card_number", "email"]) expect(json.stdout).not.toContain(String(a[c]));

    const text = sluice(["audit", "report", "--workflow", "secure-api-ingestion"], { cwd, env });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain("Record of processing (GDPR Art. 30) — workflow secure-api-ingestion");
    expect(text.stdout).toMatch(/Purposes:\n {2}Enhanced security workflow/);
    expect(text.stdout).toContain("  iban: accounts.iban (encrypt)");
    expect(text.stdout).toContain("Retention: 7 years after the account is closed");
    expect(text.stdout).toContain("MFA: knowledge, possession, totp proven (2 required)");
    expect(text.stdout).toMatch(/audit chain: verified \(\d+ entries, 2 signed checkpoints\)/);

    const none = sluice(["audit", "report", "--workflow", "no-such-workflow"], { cwd, env });
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('workflow "no-such-workflow" has no runs');
  }, 60_000);

  it("through sluice serve, compliance_audit_request and high_security_source_update each run the workflow to success by itself", async () => {
    // The deployment: the workflow as shipped, its connection params pointed at this API.
    const home = join(cwd, "serve-home");
    const wdir = join(cwd, "deployed");
    mkdirSync(wdir);
    const doc = parse(readFileSync(WORKFLOW, "utf8")) as { spec: { params: Record<string, { default?: string; required?: boolean }> } };
    const args = connectionParams();
    for (let i = 0; i < args.length; i += 2) {
      const [k, v] = [args[i + 1]!.slice(0, args[i + 1]!.indexOf("=")), args[i + 1]!.slice(args[i + 1]!.indexOf("=") + 1)];
      doc.spec.params[k]!.default = k === "key" ? join(home, "keyring.json") : v;
    }
    doc.spec.params["destination"]!.default = `sqlite:${join(cwd, "served.db")}`;
    writeFileSync(join(wdir, "secure.yaml"), stringify(doc));
    expect(sluice(["keys", "init"], { cwd, env: { SLUICE_HOME: home } }).code).toBe(0);
    const srv = await startServe(["--workflows", wdir], { cwd, env: { SLUICE_HOME: home } });
    try {
      await waitFor("the workflow to load", async () => (await call(srv.url, "GET", "/api/v1/workflows")).json?.workflows?.length === 1, 20_000);
      const events = [
        { name: "compliance_audit_request", data: { table: "audit_copy", reason: "DPO request 2026-117" } },
        { name: "high_security_source_update", data: { table: "accounts_updated", source: api.url } },
      ];
      for (const ev of events) {
        const emitted = await call(srv.url, "POST", "/api/v1/events", { json: ev });
        expect(emitted.status, emitted.text).toBeLessThan(300);
        const run = await waitFor(
          `the run ${ev.name} starts to end`,
          async () => {
            const runs = (await call(srv.url, "GET", "/api/v1/runs?workflow=secure-api-ingestion")).json.runs as {
              id: string;
              status: string;
              trigger: { name?: string } | null;
            }[];
            return runs.find((r) => r.trigger?.name === ev.name && ["succeeded", "failed", "cancelled"].includes(r.status));
          },
          90_000,
          250,
        );
        const detail = (await call(srv.url, "GET", `/api/v1/runs/${run.id}`)).json;
        expect(detail.status, JSON.stringify(detail.steps?.map((s: { name: string; status: string; error: unknown }) => [s.name, s.status, s.error]))).toBe(
          "succeeded",
        );
        expect(detail.trigger).toMatchObject({ type: "event", name: ev.name });
        expect(detail.params).toMatchObject({ table: ev.data.table });
        expect(detail.steps.map((s: { status: string }) => s.status)).toEqual(Array(6).fill("succeeded"));
      }
      const conn = new Database(join(cwd, "served.db"), { readonly: true });
      try {
        for (const t of ["audit_copy", "accounts_updated"]) expectProtected(conn.prepare(`SELECT * FROM ${t}`).all() as Row[]);
      } finally {
        conn.close();
      }
      const verify = sluice(["audit", "verify"], { cwd, env: { SLUICE_HOME: home } });
      expect(verify.code, verify.stderr).toBe(0);
    } finally {
      expect(await srv.stop("SIGTERM")).toBe(0);
    }
  }, 180_000);
});

/**
 * `sluice audit` and `sluice keys` as a user runs them (the built CLI, a real store): a keyring
 * created and rotated with both steps in the audit trail; `audit verify` exiting 0 on an intact
 * log and 1 with one sentence naming an edited, a deleted or a moved entry, or the checkpoint a
 * truncated log no longer reaches — tampering done with SQL on the SQLite file, and once on PostgreSQL.
 */
import { afterAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { openSqliteStore } from "../../src/store/sqlite.js";
import { openPostgresStore } from "../../src/store/postgres.js";
import type { StateStore } from "../../src/store/types.js";
import { scratch } from "../helpers.js";
import { dropSchema, PG_URL } from "../stores.js";
import { sluice } from "./cli-helpers.js";

const dir = scratch();

async function fill(store: StateStore, n: number) {
  for (let i = 1; i <= n; i++)
    await store.appendAudit({ actor: "etl", event: "data.decrypt", outcome: "success", origin: "cli@host", resource: `table:payments.card#${i}`, runId: "R1" });
}

/** A home with ten entries and a checkpoint signed by `sluice audit checkpoint`. */
async function home(): Promise<{ cwd: string; sql: (text: string) => void }> {
  const cwd = dir("sluice-audit-cli-");
  const file = join(cwd, ".sluice", "sluice.db");
  const store = openSqliteStore(file);
  await fill(store, 10);
  await store.close();
  const cp = sluice(["audit", "checkpoint", "--run", "R1"], { cwd });
  expect(cp.stderr).toBe("");
  expect(cp.stdout).toMatch(/^checkpoint signed: 10 entries, head [0-9a-f]{16}…, key [0-9a-f]{16}/);
  return {
    cwd,
    sql: (text) => {
      const db = new Database(file);
      db.exec(`DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; ${text}`);
      db.close();
    },
  };
}

describe("sluice audit verify", () => {
  it("exits 0 on an intact log and says how much of it the checkpoints cover", async () => {
    const { cwd } = await home();
    const ok = sluice(["audit", "verify"], { cwd });
    expect([ok.code, ok.stdout, ok.stderr]).toEqual([0, "audit log intact: 10 entries, 1 signed checkpoint\n", ""]);
    const store = openSqliteStore(join(cwd, ".sluice", "sluice.db"));
    await fill(store, 2);
    await store.close();
    expect(sluice(["audit", "verify"], { cwd }).stdout).toMatch(/12 entries, 1 signed checkpoint; the last 2 entries are not yet under a checkpoint/);
    const json = JSON.parse(sluice(["audit", "verify", "--json"], { cwd }).stdout);
    expect(json).toEqual({ ok: true, entries: 12, checkpoints: 1 });
    expect(sluice(["audit", "list", "--limit", "1"], { cwd }).stdout).toMatch(
      /^ +12 {2}\S+ {2}ok {4}data\.decrypt {2}etl from cli@host {2}table:payments\.card#2 {2}run R1\n$/,
    );
  });

  const cases: [string, string, RegExp][] = [
    [
      "an edited entry",
      `UPDATE audit_log SET actor = 'mallory' WHERE seq = 3`,
      /^sluice: audit log broken: entry 3 \(data\.decrypt at \S+\) was edited: its content no longer matches its hash\n$/,
    ],
    ["a deleted entry", `DELETE FROM audit_log WHERE seq = 5`, /^sluice: audit log broken: entry 5 was deleted \(entry 6 follows entry 4\)\n$/],
    [
      "a moved entry",
      `UPDATE audit_log SET seq = -2 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = -2`,
      /^sluice: audit log broken: entry 2 was moved/,
    ],
    ["a truncated log", `DELETE FROM audit_log WHERE seq > 6`, /^sluice: audit log truncated: checkpoint of \S+ covers 10 entries but the log holds 6\n$/],
  ];
  it.each(cases)("exits 1 naming %s", async (_name, tamper, message) => {
    const { cwd, sql } = await home();
    sql(tamper);
    const r = sluice(["audit", "verify"], { cwd });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
  });

  it("trusts only the keys given with --public-key when any are given", async () => {
    const { cwd } = await home();
    const other = await home();
    const foreign = join(other.cwd, ".sluice", "audit", "signing-key.pub.pem");
    const r = sluice(["audit", "verify", "--public-key", foreign], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^sluice: audit checkpoint at entry 10 \(\S+\) was signed by key [0-9a-f]{16}, which is not a trusted key here\n$/);
    expect(sluice(["audit", "verify", "--public-key", join(cwd, ".sluice", "audit", "signing-key.pub.pem")], { cwd }).code).toBe(0);
  });
});

describe("sluice audit verify on PostgreSQL", () => {
  const schema = `sluice_auditcli_${process.pid}_${Date.now().toString(36)}`;
  afterAll(() => dropSchema(schema));

  it("verifies the shared store and catches a truncation", async () => {
    const cwd = dir("sluice-audit-pg-");
    const env = { SLUICE_DATABASE_URL: PG_URL, SLUICE_PG_SCHEMA: schema };
    const store = await openPostgresStore(PG_URL, { schema });
    await fill(store, 4);
    await store.close();
    expect(sluice(["audit", "checkpoint"], { cwd, env }).code).toBe(0);
    expect(sluice(["audit", "verify"], { cwd, env })).toMatchObject({ code: 0, stdout: "audit log intact: 4 entries, 1 signed checkpoint\n" });
    const c = new pg.Client(PG_URL);
    await c.connect();
    await c.query(`SET session_replication_role = replica; DELETE FROM "${schema}".audit_log WHERE seq = 4`);
    await c.end();
    const r = sluice(["audit", "verify"], { cwd, env });
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/^sluice: audit log truncated: checkpoint of \S+ covers 4 entries but the log holds 3\n$/)]);
  });
});

describe("sluice keys", () => {
  it("creates, rotates and lists a keyring, never printing a key, and audits both changes", () => {
    const cwd = dir("sluice-keys-cli-");
    const init = sluice(["keys", "init", "--id", "main"], { cwd });
    expect(init.stderr).toBe("");
    expect(init.stdout).toMatch(/^keyring \S+keyring\.json created: key main version 1 \(fingerprint [0-9a-f]{16}\)\n$/);
    const path = join(cwd, ".sluice", "keyring.json");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(sluice(["keys", "init"], { cwd })).toMatchObject({ code: 1, stderr: expect.stringMatching(/already exists; rotate it with: sluice keys rotate/) });
    const rotate = sluice(["keys", "rotate"], { cwd });
    expect(rotate.stdout).toMatch(/key main version 2 is current .*data under version 1 still decrypts until it is rewrapped/);
    const list = JSON.parse(sluice(["keys", "list", "--json"], { cwd }).stdout);
    expect(list.current).toEqual({ id: "main", version: 2 });
    expect(list.keys.map((k: any) => [k.id, k.version, k.status])).toEqual([
      ["main", 1, "active"],
      ["main", 2, "current"],
    ]);
    const file = JSON.parse(readFileSync(path, "utf8"));
    const printed = sluice(["keys", "list"], { cwd }).stdout + init.stdout + rotate.stdout + JSON.stringify(list);
    for (const k of file.keys) expect(printed).not.toContain(k.key);
    const audit = sluice(["audit", "list", "--json"], { cwd });
    expect(JSON.parse(audit.stdout).map((e: any) => [e.event, e.outcome, e.resource.replace(/^keyring:.*#/, "")])).toEqual([
      ["key.init", "success", "main/1"],
      ["key.rotate", "success", "main/2"],
    ]);
    expect(sluice(["audit", "verify"], { cwd }).code).toBe(0);
  });
});

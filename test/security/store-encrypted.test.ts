/**
 * store_with_encryption into a real SQLite file, and the commands that read and maintain it (the
 * built CLI): each column protected as the classification says, no sensitive value in the
 * database files (-wal included); `sluice decrypt` printing rows in clear and auditing each read;
 * a cell swapped between two rows failing to decrypt; `sluice keys rewrap` killed with SIGKILL
 * mid-way and run again ending with every cell on the new version; `sluice keys retire` refused
 * while a cell uses the version and allowed once none does.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { PG_URL, dropSchema } from "../stores.js";
import Database from "better-sqlite3";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { collectWithEncryption } from "../../src/actions/security/collect-encrypted.js";
import { classifySensitiveData } from "../../src/actions/security/classify-action.js";
import { storeWithEncryption } from "../../src/actions/security/store-encrypted.js";
import { initKeyringFile } from "../../src/crypto/keyring.js";
import { actionContext, memoryAudit, scratch, waitUntil } from "../helpers.js";
import { sluice, sluiceAsync, waitForStderr } from "../cli/cli-helpers.js";
import { accounts, makeCerts, startApi, type Account, type Certs } from "./secure-api.js";

const dir = scratch();
const SCHEMA = `sluice_cells_${process.pid}_${Date.now().toString(36)}`;
let certs: Certs;
const TOKEN = `tok-${randomBytes(12).toString("hex")}`;

beforeAll(async () => {
  certs = makeCerts(dir("sluice-certs-"));
  process.env.SLUICE_TEST_STORE_TOKEN = TOKEN;
  const c = new pg.Client(PG_URL);
  await c.connect();
  await c.query(`CREATE SCHEMA "${SCHEMA}"`);
  await c.end();
});
afterAll(() => dropSchema(SCHEMA));

/** A home (cwd with .sluice), a keyring file in it, and a table `accounts` loaded through the three steps. */
async function loaded(
  n: number,
  destination?: string,
): Promise<{ cwd: string; keyring: string; db: string; records: Account[]; audit: ReturnType<typeof memoryAudit> }> {
  const cwd = dir("sluice-store-");
  const keyring = join(cwd, "keyring.json");
  initKeyringFile(keyring);
  const records = accounts(n);
  const api = await startApi(certs, { token: TOKEN, records });
  const artifactsDir = join(cwd, ".sluice", "runs", "R1", "artifacts");
  const audit = memoryAudit();
  try {
    const c = await collectWithEncryption(
      { source: api.url, auth: { type: "bearer", token: "env:SLUICE_TEST_STORE_TOKEN" }, key: keyring, caFile: certs.caFile },
      actionContext({ artifactsDir, step: "collect", audit }),
    );
    const k = await classifySensitiveData({ dataset: c.dataset as string }, actionContext({ artifactsDir, step: "classify" }));
    const db = join(cwd, "dest.db");
    const out = await storeWithEncryption(
      { dataset: k.dataset as string, destination: destination ?? `sqlite:${db}`, table: destination ? `${SCHEMA}.accounts` : "accounts", key: keyring },
      actionContext({ artifactsDir, step: "store", audit }),
    );
    expect(out).toMatchObject({ rowsIn: n, rowsStored: n, rowsQuarantined: 0, balanced: true, key: ["id"] });
    return { cwd, keyring, db, records, audit };
  } finally {
    await api.close();
  }
}

const rowsOf = (db: string) => {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare("select * from accounts order by id").all() as Record<string, string>[];
  } finally {
    d.close();
  }
};

describe("store_with_encryption", () => {
  it("protects each column by its rule, audits the decisions, leaves no sensitive value in the database files", async () => {
    const { db, records, audit } = await loaded(40);
    const rows = rowsOf(db);
    expect(rows).toHaveLength(40);
    const r = rows[0]!;
    const a = records[0]!;
    expect(r.id).toBe(a.id);
    expect(r.iban).toMatch(/^sl1:default:1:/);
    expect(r.card).toMatch(/^tk1:default:1:/);
    expect(r.email).toMatch(/^tk1:default:1:/);
    expect(r.name).toMatch(/^sl1:default:1:/);
    expect(r.balance).toBe(a.balance);
    // Deterministic e-mail tokens: equal values give equal tokens (joinable); card tokens differ per row.
    expect(new Set(rows.map((x) => x.card)).size).toBe(40);
    const bytes = ["", "-wal", "-shm"].map((s) => (existsSync(db + s) ? readFileSync(db + s).toString("latin1") : "")).join("");
    for (const x of records) for (const v of [x.card, x.iban, x.email, x.name]) expect(bytes.includes(v)).toBe(false);
    const events = audit.entries.map((e) => e.event);
    expect(events.filter((e) => e === "policy.decision")).toHaveLength(Object.keys(r).filter((k) => !k.startsWith("_sluice")).length);
    expect(events.at(-1)).toBe("data.store");
    expect(audit.entries.find((e) => e.resource === "table:accounts.card")?.details).toMatchObject({ class: "card_number", action: "tokenize" });
  });

  it("sluice decrypt prints rows in clear and audits the read; a swapped cell fails to decrypt", async () => {
    const { cwd, keyring, db, records } = await loaded(12);
    const args = ["decrypt", "--destination", `sqlite:${db}`, "--table", "accounts", "--keyring", keyring];
    const one = sluice([...args, "--where", "id=A0003"], { cwd });
    expect(one.stderr).toBe("");
    expect(one.code).toBe(0);
    const row = JSON.parse(one.stdout.trim()) as Record<string, string>;
    expect(row).toMatchObject({ id: "A0003", iban: records[2]!.iban, name: records[2]!.name });
    expect(row.card).toMatch(/^tk1:/);
    const all = sluice(args, { cwd });
    expect(all.stdout.trim().split("\n")).toHaveLength(12);

    const d = new Database(db);
    const [x, y] = d.prepare("select id, iban from accounts where id in ('A0001', 'A0002') order by id").all() as { id: string; iban: string }[];
    d.prepare("update accounts set iban = ? where id = ?").run(y!.iban, x!.id);
    d.close();
    const bad = sluice([...args, "--where", "id=A0001"], { cwd });
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toMatch(/accounts\.iban does not authenticate: it was altered, or copied from another row or column/);

    const trail = JSON.parse(sluice(["audit", "list", "--json"], { cwd }).stdout) as { event: string; outcome: string; details: Record<string, unknown> }[];
    const reads = trail.filter((e) => e.event === "data.decrypt");
    expect(reads.map((e) => e.outcome)).toEqual(["success", "success", "failure"]);
    expect(reads[0]!.details).toMatchObject({ rows: 1, where: "id" });
    expect(JSON.stringify(trail).includes(records[2]!.iban)).toBe(false);
  });

  it("rewrap killed mid-way and run again ends with every cell on the new version; retire is refused until then", async () => {
    const { cwd, keyring, db, records } = await loaded(60);
    expect(sluice(["keys", "rotate", "--keyring", keyring], { cwd }).code).toBe(0);
    const dest = ["--destination", `sqlite:${db}`];
    const cells = () => {
      const rows = rowsOf(db);
      const all = rows.flatMap((r) => Object.values(r).filter((v): v is string => typeof v === "string" && v.startsWith("sl1:")));
      return { v1: all.filter((c) => c.startsWith("sl1:default:1:")).length, v2: all.filter((c) => c.startsWith("sl1:default:2:")).length };
    };
    const before = cells();
    expect(before.v2).toBe(0);

    const child = sluiceAsync(["keys", "rewrap", ...dest, "--table", "accounts", "--keyring", keyring, "--batch", "5", "--pause", "200"], { cwd });
    await waitForStderr(child, /rewrapped \d+ cells in 10 rows/);
    child.kill("SIGKILL");
    await waitUntil(() => child.exitCode !== null || child.signalCode !== null, 10_000, "the rewrap to die");
    const mid = cells();
    expect(mid.v2).toBeGreaterThan(0);
    expect(mid.v1).toBeGreaterThan(0);
    expect(mid.v1 + mid.v2).toBe(before.v1);

    const refused = sluice(["keys", "retire", "default:1", ...dest, "--keyring", keyring], { cwd });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`key default version 1 still protects ${mid.v1} values; rewrap them before retiring it`));

    const again = sluice(["keys", "rewrap", ...dest, "--table", "accounts", "--keyring", keyring], { cwd });
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`^table accounts: ${mid.v1} cells rewrapped to key default version 2`));
    expect(cells()).toEqual({ v1: 0, v2: before.v1 });

    const ok = sluice(["keys", "retire", "default:1", ...dest, "--keyring", keyring], { cwd });
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toMatch(/^key default version 1 retired: no cell of sqlite:.* uses it; 120 tokens made with it remain/);
    const list = JSON.parse(sluice(["keys", "list", "--keyring", keyring, "--json"], { cwd }).stdout) as { keys: { version: number; status: string }[] };
    expect(list.keys.map((k) => k.status)).toEqual(["retired", "current"]);
    // Still readable after the retirement: every cell is under version 2.
    const row = JSON.parse(sluice(["decrypt", ...dest, "--table", "accounts", "--keyring", keyring, "--where", "id=A0060"], { cwd }).stdout) as Record<
      string,
      string
    >;
    expect(row.iban).toBe(records[59]!.iban);
    const events = (JSON.parse(sluice(["audit", "list", "--json"], { cwd }).stdout) as { event: string; outcome: string }[]).map(
      (e) => `${e.event}:${e.outcome}`,
    );
    expect(events).toEqual(
      expect.arrayContaining(["key.rotate:success", "key.retire:failure", "key.rewrap:success", "key.retire:success", "data.decrypt:success"]),
    );
  }, 60_000);

  it("on PostgreSQL: decrypt, a swapped cell refused, rewrap and retire", async () => {
    const { cwd, keyring, records } = await loaded(15, PG_URL);
    const table = `${SCHEMA}.accounts`;
    const dest = ["--destination", PG_URL, "--table", table, "--keyring", keyring];
    const one = sluice(["decrypt", ...dest, "--where", "id=A0007"], { cwd });
    expect(one.stderr).toBe("");
    expect(JSON.parse(one.stdout)).toMatchObject({ id: "A0007", iban: records[6]!.iban, name: records[6]!.name });
    expect(sluice(["keys", "rotate", "--keyring", keyring], { cwd }).code).toBe(0);
    const rewrap = sluice(["keys", "rewrap", ...dest, "--batch", "4"], { cwd });
    expect(rewrap.stdout).toMatch(/^table .*accounts: \d+ cells rewrapped to key default version 2/);
    const retire = sluice(["keys", "retire", "default:1", "--destination", PG_URL, "--table", table, "--keyring", keyring], { cwd });
    expect(retire.stderr).toBe("");
    expect(JSON.parse(sluice(["decrypt", ...dest, "--where", "id=A0015"], { cwd }).stdout).iban).toBe(records[14]!.iban);
    const c = new pg.Client(PG_URL);
    await c.connect();
    await c.query(`update "${SCHEMA}".accounts set name = (select name from "${SCHEMA}".accounts where id = 'A0002') where id = 'A0001'`);
    await c.end();
    const bad = sluice(["decrypt", ...dest, "--where", "id=A0001"], { cwd });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/accounts\.name does not authenticate/);
  }, 60_000);
});

/**
 * The audit role on SQLite and PostgreSQL: appends form one chain even from concurrent writers in
 * two connections, the tables refuse UPDATE and DELETE, and an entry edited, deleted or moved, or
 * a log truncated, by someone who bypasses that (raw SQL with the triggers off) is caught by
 * verifyChain, which names the entry or checkpoint.
 */
import { afterAll, describe, expect, it } from "vitest";
import Database from "better-sqlite3";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import pg from "pg";
import { chainEntry, GENESIS, signCheckpoint, verifyChain, type AuditEvent } from "../../src/crypto/audit-chain.js";
import { openPostgresStore } from "../../src/store/postgres.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { StateStore } from "../../src/store/types.js";
import { bothStores, dropSchema, PG_URL } from "../stores.js";
import { scratch } from "../helpers.js";

const dir = scratch();
const { privateKey, publicKey } = generateKeyPairSync("ed25519");

const event = (i: number, extra: Partial<AuditEvent> = {}): AuditEvent => ({
  actor: "alice",
  event: i % 2 ? "data.decrypt" : "key.rotate",
  outcome: i % 3 ? "success" : "failure",
  origin: "cli@test-host",
  resource: `table:payments.card#${i}`,
  runId: `run-${Math.ceil(i / 5)}`,
  step: "store",
  details: { rows: i, note: "é\u2028" },
  ...extra,
});

describe.each(bothStores("audit"))("audit trail on $dialect", (backend) => {
  /**
   * A fresh store per test (the tamper tests ruin their log), with raw SQL on its tables: `strict`
   * as any client sends it, `tamper` as someone who can switch the append-only triggers off.
   */
  interface Opened {
    store: StateStore;
    strict: (text: string) => Promise<void>;
    tamper: (text: string) => Promise<void>;
    /** A second handle on the same store, as a second process would have. */
    reopen: () => Promise<StateStore>;
    close: () => Promise<void>;
  }
  const opened: Opened[] = [];
  const schemas: string[] = [];
  afterAll(async () => {
    for (const o of opened) await o.close();
    for (const s of schemas) await dropSchema(s);
  });
  async function fresh(): Promise<Opened> {
    let o: Opened;
    if (backend.dialect === "sqlite") {
      const file = join(dir("sluice-audit-"), "sluice.db");
      const store = openSqliteStore(file);
      const raw = new Database(file);
      o = {
        store,
        strict: async (text) => void raw.exec(text),
        tamper: async (text) => void raw.exec(`DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete; ${text}`),
        reopen: async () => openSqliteStore(file),
        close: async () => (raw.close(), await store.close()),
      };
    } else {
      const schema = `${backend.schema}_${schemas.length}`;
      schemas.push(schema);
      const store = await openPostgresStore(PG_URL, { schema });
      const c = new pg.Client(PG_URL);
      await c.connect();
      await c.query(`SET search_path TO "${schema}"`);
      o = {
        store,
        strict: async (text) => void (await c.query(text)),
        // A superuser's session in replica mode skips the triggers.
        tamper: async (text) => void (await c.query(`SET session_replication_role = replica; ${text}; SET session_replication_role = DEFAULT`)),
        reopen: () => openPostgresStore(PG_URL, { schema }),
        close: async () => (await c.end(), await store.close()),
      };
    }
    opened.push(o);
    return o;
  }

  const verdict = async (store: StateStore) => verifyChain(await store.listAudit(), await store.listCheckpoints(), publicKey);

  it("appends a chain with every PCI DSS 10.2.2 field, lists it by run and page, and verifies", async () => {
    const { store } = await fresh();
    expect(await store.auditHead()).toEqual({ count: 0, head: GENESIS });
    const first = await store.appendAudit(event(1));
    expect(first).toMatchObject({ seq: 1, prevHash: GENESIS, actor: "alice", event: "data.decrypt", outcome: "success", origin: "cli@test-host" });
    expect(first.time).toMatch(/^\d{4}-\d\d-\d\dT/);
    for (let i = 2; i <= 10; i++) await store.appendAudit(event(i));
    const all = await store.listAudit();
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(all[1]!.prevHash).toBe(all[0]!.hash);
    expect(all[0]).toEqual(first);
    expect((await store.listAudit({ runId: "run-2" })).map((e) => e.seq)).toEqual([6, 7, 8, 9, 10]);
    expect((await store.listAudit({ afterSeq: 3, limit: 2 })).map((e) => e.seq)).toEqual([4, 5]);
    const head = await store.auditHead();
    expect(head).toEqual({ count: 10, head: all[9]!.hash });
    const cp = signCheckpoint(head, privateKey, "2026-03-01T00:00:00.000Z", "run-2");
    await store.appendCheckpoint(cp);
    await store.appendCheckpoint(cp); // again: harmless
    expect(await store.listCheckpoints()).toEqual([cp]);
    expect(await verdict(store)).toEqual({ ok: true, entries: 10, checkpoints: 1 });
  });

  it("keeps one chain under concurrent appends from two connections", async () => {
    const { store, reopen } = await fresh();
    const second = await reopen();
    try {
      await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? store : second).appendAudit(event(i + 1))));
      const all = await store.listAudit();
      expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      expect(await verdict(store)).toMatchObject({ ok: true, entries: 40 });
    } finally {
      await second.close();
    }
  });

  it("refuses UPDATE and DELETE on the audit tables", async () => {
    const { store, strict } = await fresh();
    await store.appendAudit(event(1));
    await store.appendCheckpoint(signCheckpoint(await store.auditHead(), privateKey));
    await expect(strict(`UPDATE audit_log SET outcome = 'success'`)).rejects.toThrow(/append-only/);
    await expect(strict(`DELETE FROM audit_log`)).rejects.toThrow(/append-only/);
    await expect(strict(`DELETE FROM audit_checkpoints`)).rejects.toThrow(/append-only/);
    if (backend.dialect === "postgres") await expect(strict(`TRUNCATE audit_log`)).rejects.toThrow(/append-only/);
    expect(await store.listAudit()).toHaveLength(1);
    expect(await store.listCheckpoints()).toHaveLength(1);
  });

  const tenWithCheckpoint = async () => {
    const o = await fresh();
    for (let i = 1; i <= 10; i++) await o.store.appendAudit(event(i));
    await o.store.appendCheckpoint(signCheckpoint(await o.store.auditHead(), privateKey));
    return o;
  };

  it("names an edited entry", async () => {
    const { store, tamper } = await tenWithCheckpoint();
    await tamper(`UPDATE audit_log SET outcome = 'success' WHERE seq = 3`);
    expect(await verdict(store)).toMatchObject({ ok: false, problem: { kind: "edited", at: 3 } });
  });

  it("names a deleted entry", async () => {
    const { store, tamper } = await tenWithCheckpoint();
    await tamper(`DELETE FROM audit_log WHERE seq = 4`);
    const v = await verdict(store);
    expect(v).toMatchObject({ ok: false, problem: { kind: "deleted", at: 4 } });
    expect(!v.ok && v.problem.message).toBe("audit log broken: entry 4 was deleted (entry 5 follows entry 3)");
  });

  it("names a moved entry (two rows' contents swapped)", async () => {
    const { store, tamper } = await tenWithCheckpoint();
    await tamper(`UPDATE audit_log SET seq = -6 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = 7; UPDATE audit_log SET seq = 7 WHERE seq = -6`);
    expect(await verdict(store)).toMatchObject({ ok: false, problem: { kind: "reordered", at: 6 } });
  });

  it("names the checkpoint a truncated log no longer reaches", async () => {
    const { store, tamper } = await tenWithCheckpoint();
    await tamper(`DELETE FROM audit_log WHERE seq > 7`);
    const v = await verdict(store);
    expect(v).toMatchObject({ ok: false, problem: { kind: "truncated", at: 10 } });
    expect(!v.ok && v.problem.message).toMatch(/covers 10 entries but the log holds 7/);
  });

  it("names the checkpoint that an edit with every later hash recomputed no longer matches", async () => {
    const { store, tamper } = await tenWithCheckpoint();
    // The careful forger: entry 3 changed and the chain from it recomputed, so every link holds.
    const all = await store.listAudit();
    let prev = all[1]!;
    const rewritten = all.slice(2).map((e) => {
      const next = chainEntry(prev, { ...e, outcome: e.seq === 3 ? "success" : e.outcome });
      prev = next;
      return next;
    });
    await tamper(
      rewritten.map((e) => `UPDATE audit_log SET outcome = '${e.outcome}', prev_hash = '${e.prevHash}', hash = '${e.hash}' WHERE seq = ${e.seq}`).join("; "),
    );
    const v = await verdict(store);
    expect(v).toMatchObject({ ok: false, problem: { kind: "checkpoint", at: 10 } });
    expect(!v.ok && v.problem.message).toMatch(/^audit log rewritten: entry 10 no longer matches the checkpoint signed at /);
  });
});

/**
 * The audit role on SQLite. An append is one IMMEDIATE transaction (it takes the database's write
 * lock before reading the last entry), so two processes appending to one file are serialised and
 * the chain never forks; the seq primary key would refuse a fork anyway.
 */
import type Database from "better-sqlite3";
import { chainEntry, GENESIS, type AuditEntry } from "../crypto/audit-chain.js";
import { auditColumns, toAuditCheckpoint, toAuditEntry, type Row } from "./rows.js";
import type { AuditStore } from "./types.js";

export function sqliteAudit(db: Database.Database): AuditStore {
  const q = {
    last: db.prepare(`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`),
    insert: db.prepare(
      `INSERT INTO audit_log (seq, time, actor, event, outcome, origin, resource, run_id, step, details, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertCheckpoint: db.prepare(
      `INSERT INTO audit_checkpoints (count, head, time, key_id, signature, run_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    ),
    checkpoints: db.prepare(`SELECT * FROM audit_checkpoints ORDER BY count, key_id`),
  };
  const append = db.transaction((event: Parameters<AuditStore["appendAudit"]>[0]): AuditEntry => {
    const prev = q.last.get() as { seq: number; hash: string } | undefined;
    const entry = chainEntry(prev, event);
    q.insert.run(...auditColumns(entry));
    return entry;
  });
  return {
    async appendAudit(event) {
      return append.immediate(event);
    },
    async listAudit(filter = {}) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.runId !== undefined) (where.push("run_id = ?"), args.push(filter.runId));
      if (filter.afterSeq !== undefined) (where.push("seq > ?"), args.push(filter.afterSeq));
      const sql = `SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq ${filter.limit !== undefined ? "LIMIT ?" : ""}`;
      if (filter.limit !== undefined) args.push(filter.limit);
      return (db.prepare(sql).all(...args) as Row[]).map(toAuditEntry);
    },
    async auditHead() {
      const last = q.last.get() as { seq: number; hash: string } | undefined;
      return last ? { count: last.seq, head: last.hash } : { count: 0, head: GENESIS };
    },
    async appendCheckpoint(c) {
      q.insertCheckpoint.run(c.count, c.head, c.time, c.keyId, c.signature, c.runId ?? null);
    },
    async listCheckpoints() {
      return (q.checkpoints.all() as Row[]).map(toAuditCheckpoint);
    },
  };
}

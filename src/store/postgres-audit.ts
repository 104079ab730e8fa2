/**
 * The audit role on PostgreSQL. An append is one transaction holding an advisory lock keyed on the
 * store's schema while it reads the last entry and inserts the next, so appends from any number of
 * processes and machines form one chain (the seq primary key would refuse a fork anyway). Audit
 * writes are rare next to step transitions, so the two round trips this costs do not matter.
 */
import type pg from "pg";
import { chainEntry, GENESIS } from "../crypto/audit-chain.js";
import { auditColumns, toAuditCheckpoint, toAuditEntry, type Row } from "./rows.js";
import type { AuditStore } from "./types.js";

type Tx = <T>(doing: string, fn: (c: pg.PoolClient) => Promise<T>) => Promise<T>;
type Fail = (err: unknown, doing: string) => Error;

export function postgresAudit(pool: pg.Pool, schema: string, tx: Tx, fail: Fail): AuditStore {
  const log = `"${schema}".audit_log`;
  const checkpoints = `"${schema}".audit_checkpoints`;
  const lastSql = `SELECT seq, hash FROM ${log} ORDER BY seq DESC LIMIT 1`;
  const query = async (doing: string, text: string, values: unknown[] = []) => {
    try {
      return (await pool.query<Row>(text, values)).rows;
    } catch (err) {
      throw fail(err, doing);
    }
  };
  return {
    async appendAudit(event) {
      return tx(`recording audit event ${event.event}`, async (c) => {
        await c.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`sluice.audit:${schema}`]);
        const prev = (await c.query<Row>(lastSql)).rows[0];
        const entry = chainEntry(prev ? { seq: Number(prev.seq), hash: prev.hash as string } : undefined, event);
        await c.query(
          `INSERT INTO ${log} (seq, time, actor, event, outcome, origin, resource, run_id, step, details, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
          auditColumns(entry),
        );
        return entry;
      });
    },
    async listAudit(filter = {}) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.runId !== undefined) (args.push(filter.runId), where.push(`run_id = $${args.length}`));
      if (filter.afterSeq !== undefined) (args.push(filter.afterSeq), where.push(`seq > $${args.length}`));
      let sql = `SELECT * FROM ${log} ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq`;
      if (filter.limit !== undefined) (args.push(filter.limit), (sql += ` LIMIT $${args.length}`));
      return (await query("reading the audit log", sql, args)).map(toAuditEntry);
    },
    async auditHead() {
      const last = (await query("reading the audit log", lastSql))[0];
      return last ? { count: Number(last.seq), head: last.hash as string } : { count: 0, head: GENESIS };
    },
    async appendCheckpoint(c) {
      await query(
        "recording an audit checkpoint",
        `INSERT INTO ${checkpoints} (count, head, time, key_id, signature, run_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
        [c.count, c.head, c.time, c.keyId, c.signature, c.runId ?? null],
      );
    },
    async listCheckpoints() {
      return (await query("reading audit checkpoints", `SELECT * FROM ${checkpoints} ORDER BY count, key_id`)).map(toAuditCheckpoint);
    },
  };
}

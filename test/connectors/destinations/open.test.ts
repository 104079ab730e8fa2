/**
 * openDestination: the accepted spec forms, secrets, and connection failures.
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDestination } from "../../../src/connectors/destinations/index.js";
import { failure } from "../../helpers.js";

const PG = "postgres://postgres@127.0.0.1:5432/test";
const dir = mkdtempSync(join(tmpdir(), "sluice-dest-open-"));
const table = `sluice_dest_open_${randomUUID().replace(/-/g, "").slice(0, 10)}`;
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: PG });
  await admin.connect();
});
afterAll(async () => {
  await admin?.query(`drop table if exists ${table}, ${table}_quarantine`);
  await admin?.end();
  rmSync(dir, { recursive: true, force: true });
});

describe("openDestination", () => {
  it("refuses a password in a plain PostgreSQL URL without echoing it", async () => {
    const e = await failure(openDestination("postgres://postgres:hunter2@127.0.0.1:5432/test"));
    expect(e.code).toBe("BAD_CONFIG");
    expect(e.retryable).toBe(false);
    expect(e.message).toContain("contains a password");
    expect(e.message).not.toContain("hunter2");
  });

  it("reports connection refused as a retryable NETWORK_ERROR naming host:port only", async () => {
    const e = await failure(openDestination("env:DEST", { env: { DEST: "postgresql://postgres:s3cret@127.0.0.1:1/test" } }));
    expect(e.code).toBe("NETWORK_ERROR");
    expect(e.retryable).toBe(true);
    expect(e.message).toContain("127.0.0.1:1");
    expect(e.message).toContain("connection refused");
    expect(e.message).not.toContain("s3cret");
  });

  it("resolves env: and file: references (a password is allowed there) and shows no credentials", async () => {
    const d = await openDestination("env:SLUICE_TEST_DEST", { env: { SLUICE_TEST_DEST: PG } });
    try {
      expect(d.kind).toBe("postgres");
      await d.prepare({ table, columns: [{ name: "v", type: "string" }], key: undefined });
      expect(await d.write([{ v: "a" }, { v: "b" }], { runId: "r", step: "s" })).toEqual({ stored: 2, duplicate: 0 });
      const r = await admin.query(`select count(*)::int as n from ${table}`);
      expect(r.rows[0].n).toBe(2);
    } finally {
      await d.close();
    }
    writeFileSync(join(dir, "dest.secret"), "sqlite:from-secret.db\n");
    const s = await openDestination("file:dest.secret", { baseDir: dir });
    try {
      expect(s.kind).toBe("sqlite");
      expect(s.display).toBe(`sqlite:${join(dir, "from-secret.db")}`);
    } finally {
      await s.close();
    }
    const missing = await failure(openDestination("env:NOPE_NOT_SET", { env: {} }));
    expect(missing.code).toBe("BAD_CONFIG");
    const wrong = await failure(openDestination("env:X", { env: { X: "mysql://u:topsecret@h/db" } }));
    expect(wrong.code).toBe("BAD_CONFIG");
    expect(wrong.message).not.toContain("topsecret");
  });

  it("opens SQLite paths relative to baseDir, creating parent folders", async () => {
    const d = await openDestination("sqlite:a/b/c.db", { baseDir: dir });
    await d.close();
    expect(existsSync(join(dir, "a", "b", "c.db"))).toBe(true);
  });

  it("names the accepted forms for anything else", async () => {
    for (const spec of ["mysql://h/db", "out.csv", "", "sqlite:"]) {
      const e = await failure(openDestination(spec, { baseDir: dir }));
      expect(e.code).toBe("BAD_CONFIG");
    }
    const e = await failure(openDestination("out.csv"));
    expect(e.message).toMatch(/sqlite:PATH.*postgres:\/\/.*env:NAME.*\.parquet/);
  });

  it("refuses bad targets with BAD_CONFIG", async () => {
    const d = await openDestination("sqlite:t.db", { baseDir: dir });
    try {
      await expect(d.prepare({ table: "t", columns: [], key: undefined })).rejects.toMatchObject({ code: "BAD_CONFIG" });
      await expect(d.prepare({ table: "t", columns: [{ name: "a", type: "string" }], key: ["b"] })).rejects.toMatchObject({
        code: "BAD_CONFIG",
        message: expect.stringContaining("key column"),
      });
      await expect(d.prepare({ table: "t", columns: [{ name: "_sluice_hash", type: "string" }], key: undefined })).rejects.toMatchObject({
        code: "BAD_CONFIG",
      });
      await expect(d.prepare({ table: "s.t", columns: [{ name: "a", type: "string" }], key: undefined })).rejects.toMatchObject({ code: "BAD_CONFIG" });
    } finally {
      await d.close();
    }
  });
});

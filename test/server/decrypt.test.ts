/**
 * POST /api/v1/decrypt: an admin reads an encrypted table in clear, every read audited with the
 * token's name; a viewer or operator is refused and nothing is read; a cell moved to another row
 * fails to decrypt, and the failure is audited too.
 */
import Database from "better-sqlite3";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { rowKeyText } from "../../src/connectors/destinations/table-cells.js";
import { encryptCell } from "../../src/crypto/cells.js";
import { initKeyringFile } from "../../src/crypto/keyring.js";
import { resolveAuth } from "../../src/server/auth.js";
import { parseServerConfig } from "../../src/server/config.js";
import { scratch } from "../helpers.js";
import { startApi } from "./api-helpers.js";

const dir = scratch()("sluice-decrypt-api-");
const configFile = join(dir, "serve.yaml");
const config = parseServerConfig(
  `auth:
  tokens:
    - { name: dash, token: env:TEST_DECRYPT_VIEWER, role: viewer }
    - { name: ci, token: env:TEST_DECRYPT_OPERATOR, role: operator }
    - { name: ops, token: env:TEST_DECRYPT_ADMIN, role: admin }
`,
  configFile,
);
const auth = await resolveAuth(config.auth, {
  env: { TEST_DECRYPT_VIEWER: "viewer-secret-1", TEST_DECRYPT_OPERATOR: "operator-secret-1", TEST_DECRYPT_ADMIN: "admin-secret-1" },
  configFile,
});
const keyring = join(dir, "keyring.json");
const ring = initKeyringFile(keyring);
process.env.SLUICE_KEYRING = keyring; // the server's keyring; a request never names one
const api = await startApi({ auth });

const db = join(dir, "dest.db");
{
  const d = new Database(db);
  d.exec("CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT, city TEXT)");
  const put = d.prepare("INSERT INTO accounts VALUES (?, ?, ?)");
  for (const [id, name] of [
    ["A1", "Alice Martin"],
    ["A2", "Bruno Keller"],
  ])
    put.run(id, encryptCell(ring, { table: "accounts", column: "name", key: rowKeyText([id]) }, name!), "Lyon");
  d.close();
}
const body = { destination: `sqlite:${db}`, table: "accounts" };

describe("POST /api/v1/decrypt", () => {
  it("gives an admin the rows in clear and audits the read with the token's name", async () => {
    const r = await api.call("POST", "/api/v1/decrypt", { json: body, token: "admin-secret-1" });
    expect(r.status).toBe(200);
    expect(r.json.rows).toEqual([
      expect.objectContaining({ id: "A1", name: "Alice Martin", city: "Lyon" }),
      expect.objectContaining({ id: "A2", name: "Bruno Keller", city: "Lyon" }),
    ]);
    const where = await api.call("POST", "/api/v1/decrypt", { json: { ...body, where: { column: "id", value: "A2" } }, token: "admin-secret-1" });
    expect(where.json.rows.map((x: { name: string }) => x.name)).toEqual(["Bruno Keller"]);
    const reads = (await api.env.store.listAudit()).filter((e) => e.event === "data.decrypt");
    expect(reads.map((e) => [e.actor, e.outcome, e.resource])).toEqual([
      ["token:ops", "success", "table:accounts"],
      ["token:ops", "success", "table:accounts"],
    ]);
    expect(reads[0]!.details).toMatchObject({ rows: 2, columns: ["name"] });
  });

  it("refuses viewers and operators before anything is read", async () => {
    const before = (await api.env.store.listAudit()).length;
    for (const token of ["viewer-secret-1", "operator-secret-1"]) {
      const r = await api.call("POST", "/api/v1/decrypt", { json: body, token });
      expect(r.status).toBe(403);
      expect(JSON.stringify(r.json)).not.toContain("Alice");
    }
    expect((await api.env.store.listAudit()).length).toBe(before);
  });

  it("fails on a cell moved to another row, and audits the failure", async () => {
    const d = new Database(db);
    const a1 = (d.prepare("SELECT name FROM accounts WHERE id = 'A1'").get() as { name: string }).name;
    d.prepare("UPDATE accounts SET name = ? WHERE id = 'A2'").run(a1);
    d.close();
    const r = await api.call("POST", "/api/v1/decrypt", { json: body, token: "admin-secret-1" });
    expect(r.status, r.text).toBeGreaterThanOrEqual(400);
    expect(r.json.error.code).toBe("DECRYPT_FAILED");
    expect(JSON.stringify(r.json)).not.toContain("Alice");
    const last = (await api.env.store.listAudit()).at(-1)!;
    expect([last.event, last.outcome, last.actor]).toEqual(["data.decrypt", "failure", "token:ops"]);
  });
});

/**
 * `sluice decrypt --destination D --table T [--where COLUMN=VALUE] [--keyring K] [--limit N]`:
 * rows of a table written by store_with_encryption, printed as JSON lines with their encrypted
 * cells in clear (tokens and masks stay as they are: they are one-way).
 *
 * Every read is audited, fail closed (connectors/destinations/decrypt-rows.ts, shared with the
 * admin-only `POST /api/v1/decrypt`): the `data.decrypt` entry (who, from where, which table,
 * how many rows, which columns, the filter) is written before the first row is printed, and a
 * cell that does not authenticate stops the command with DECRYPT_FAILED and a `failure` entry.
 * At most --limit rows (default 1,000), all decrypted before any is printed.
 */
import { readDecryptedRows } from "../connectors/destinations/decrypt-rows.js";
import { loadKeyring } from "../crypto/keyring.js";
import { SluiceError } from "../errors.js";
import { cliIdentity } from "./audit.js";
import { withStore } from "./context.js";
import { keyringPath } from "./keys.js";

export interface DecryptFlags {
  destination: string;
  table: string;
  where?: string;
  keyring?: string;
  limit?: string;
}

export async function decryptCommand(o: DecryptFlags): Promise<number> {
  const limit = o.limit === undefined ? 1_000 : Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new SluiceError("USAGE", "--limit must be a positive whole number");
  let where: { column: string; value: string } | undefined;
  if (o.where !== undefined) {
    const at = o.where.indexOf("=");
    if (at < 1) throw new SluiceError("USAGE", "--where must be COLUMN=VALUE");
    where = { column: o.where.slice(0, at), value: o.where.slice(at + 1) };
  }
  const ring = loadKeyring(keyringPath(o));
  return withStore(async (store) => {
    const base = { ...cliIdentity(), event: "data.decrypt", resource: `table:${o.table}` };
    const rows = await readDecryptedRows({ destination: o.destination, table: o.table, limit, ...(where ? { where } : {}) }, ring, (outcome, details) =>
      store.appendAudit({ ...base, outcome, details }).then(() => undefined),
    );
    for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  });
}

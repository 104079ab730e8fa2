/**
 * `sluice decrypt --destination D --table T [--where COLUMN=VALUE] [--keyring K] [--limit N]`:
 * rows of a table written by store_with_encryption, printed as JSON lines with their encrypted
 * cells in clear (tokens and masks stay as they are: they are one-way).
 *
 * Every read is audited, fail closed: the `data.decrypt` entry (who, from where, which table,
 * how many rows, which columns, the filter) is written before the first row is printed, and a
 * cell that does not authenticate (edited, or copied from another row or column) stops the
 * command with DECRYPT_FAILED and a `failure` entry. Rows are decrypted before any is printed,
 * at most --limit of them (default 1,000), so a failure never leaves half the answer on a screen.
 */
import { openCellTable, rowKeyText } from "../connectors/destinations/table-cells.js";
import { decryptCell, isCell } from "../crypto/cells.js";
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
  const table = await openCellTable(o.destination);
  return withStore(async (store) => {
    const resource = `table:${o.table}`;
    const base = { ...cliIdentity(), event: "data.decrypt", resource };
    try {
      const key = await table.keyColumns(o.table);
      const rows = await table.rows(o.table, { key, limit, ...(where ? { where } : {}) });
      const decrypted = new Set<string>();
      const out = rows.map((row) => {
        const keyText = rowKeyText(key.map((k) => row[k]));
        const clear: Record<string, unknown> = {};
        for (const [column, value] of Object.entries(row)) {
          if (isCell(value)) {
            clear[column] = decryptCell(ring, { table: o.table, column, key: keyText }, value);
            decrypted.add(column);
          } else clear[column] = value;
        }
        return clear;
      });
      await store.appendAudit({
        ...base,
        outcome: "success",
        details: { destination: table.display, rows: out.length, columns: [...decrypted], ...(where ? { where: where.column } : {}) },
      });
      for (const r of out) process.stdout.write(`${JSON.stringify(r)}\n`);
      return 0;
    } catch (err) {
      await store.appendAudit({ ...base, outcome: "failure", details: { destination: table.display, reason: (err as Error).message } });
      throw err;
    } finally {
      await table.close();
    }
  });
}

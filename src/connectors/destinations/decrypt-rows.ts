/**
 * Rows of a table written by store_with_encryption, with their encrypted cells in clear (tokens
 * and masks stay as they are: they are one-way). Shared by `sluice decrypt` and the admin-only
 * API endpoint, so both read, check and audit alike.
 *
 * Every read is audited, fail closed: `audit("success", …)` is awaited before the rows are handed
 * back (a caller prints or sends nothing the trail does not show), and a cell that does not
 * authenticate (edited, or copied from another row or column) ends the read with DECRYPT_FAILED
 * after `audit("failure", …)`. Rows are all decrypted before any is returned, at most `limit`.
 */
import { decryptCell, isCell } from "../../crypto/cells.js";
import type { Keyring } from "../../crypto/keyring.js";
import { openCellTable, rowKeyText } from "./table-cells.js";

export interface DecryptRequest {
  destination: string;
  table: string;
  where?: { column: string; value: string };
  limit: number;
}

/** Write one audit entry of the read; a throw fails the read. */
export type DecryptAudit = (outcome: "success" | "failure", details: Record<string, unknown>) => Promise<void>;

export async function readDecryptedRows(req: DecryptRequest, ring: Keyring, audit: DecryptAudit): Promise<Record<string, unknown>[]> {
  const table = await openCellTable(req.destination);
  try {
    const key = await table.keyColumns(req.table);
    const rows = await table.rows(req.table, { key, limit: req.limit, ...(req.where ? { where: req.where } : {}) });
    const decrypted = new Set<string>();
    const out = rows.map((row) => {
      const keyText = rowKeyText(key.map((k) => row[k]));
      const clear: Record<string, unknown> = {};
      for (const [column, value] of Object.entries(row)) {
        if (isCell(value)) {
          clear[column] = decryptCell(ring, { table: req.table, column, key: keyText }, value);
          decrypted.add(column);
        } else clear[column] = value;
      }
      return clear;
    });
    await audit("success", { destination: table.display, rows: out.length, columns: [...decrypted], ...(req.where ? { where: req.where.column } : {}) });
    return out;
  } catch (err) {
    await audit("failure", { destination: table.display, reason: (err as Error).message });
    throw err;
  } finally {
    await table.close();
  }
}

/**
 * `sluice keys init | rotate | list | rewrap | retire` over a keyring file (default $SLUICE_KEYRING, else
 * `$SLUICE_HOME/keyring.json`). Key material is never printed: only ids, versions, dates and
 * fingerprints. Creating and rotating are audited, and fail closed: the audit entry is written
 * before the new keyring replaces the old one, so a rotation the trail does not show never happens.
 */
import { addVersion, initKeyringFile, keyFingerprint, keyringSpec, loadKeyring, retire, saveKeyring, type Keyring, type KeyRef } from "../crypto/keyring.js";
import { rewrapCell } from "../crypto/cells.js";
import { openCellTable, rowKeyText, type CellTable } from "../connectors/destinations/table-cells.js";
import { SluiceError } from "../errors.js";
import { sluiceHome } from "../store/index.js";
import { cliIdentity } from "./audit.js";
import { withStore } from "./context.js";

interface KeysFlags {
  keyring?: string;
  id?: string;
  json?: boolean;
}

/** The keyring a command uses: --keyring (a file, or an env:/file: reference), else $SLUICE_KEYRING, else the home's keyring.json. */
export const keyringPath = (o: { keyring?: string }) => keyringSpec(o.keyring, sluiceHome());

export async function keysInitCommand(o: KeysFlags): Promise<number> {
  const path = keyringPath(o);
  const ring = initKeyringFile(path, o.id ?? "default");
  await withStore((store) =>
    store.appendAudit({ ...cliIdentity(), event: "key.init", outcome: "success", resource: resource(path, ring), details: { fingerprint: fingerprint(ring) } }),
  );
  process.stdout.write(`keyring ${path} created: key ${ring.current.id} version 1 (fingerprint ${fingerprint(ring)})\n`);
  return 0;
}

export async function keysRotateCommand(o: KeysFlags): Promise<number> {
  const path = keyringPath(o);
  const old = loadKeyring(path);
  const ring = addVersion(old, o.id ?? old.current.id);
  await withStore(async (store) => {
    const entry = { ...cliIdentity(), event: "key.rotate", resource: resource(path, ring), details: { previous: old.current, fingerprint: fingerprint(ring) } };
    await store.appendAudit({ ...entry, outcome: "success" });
    try {
      saveKeyring(path, ring);
    } catch (err) {
      await store.appendAudit({ ...entry, outcome: "failure", details: { ...entry.details, reason: (err as Error).message } });
      throw err;
    }
  });
  process.stdout.write(
    `keyring ${path}: key ${ring.current.id} version ${ring.current.version} is current (fingerprint ${fingerprint(ring)}); ` +
      `data under version ${old.current.version} still decrypts until it is rewrapped\n`,
  );
  return 0;
}

export async function keysListCommand(o: KeysFlags): Promise<number> {
  const path = keyringPath(o);
  const ring = loadKeyring(path);
  const rows = ring.keys.map((k) => ({
    id: k.id,
    version: k.version,
    createdAt: k.createdAt,
    status: k.retiredAt ? "retired" : k.id === ring.current.id && k.version === ring.current.version ? "current" : "active",
    fingerprint: k.key ? keyFingerprint(k.key) : null,
    ...(k.retiredAt ? { retiredAt: k.retiredAt } : {}),
  }));
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ keyring: path, current: ring.current, keys: rows }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`keyring ${path}\n`);
  for (const r of rows)
    process.stdout.write(
      `  ${r.id.padEnd(12)} v${String(r.version).padEnd(4)} ${r.status.padEnd(8)} ${r.fingerprint ?? "-".padEnd(16)}  created ${r.createdAt || "?"}\n`,
    );
  return 0;
}

function fingerprint(ring: Keyring): string {
  const k = ring.keys.find((e) => e.id === ring.current.id && e.version === ring.current.version);
  return k?.key ? keyFingerprint(k.key) : "-";
}

function resource(path: string, ring: Keyring): string {
  return `keyring:${path}#${ring.current.id}/${ring.current.version}`;
}

/**
 * `sluice keys rewrap --destination D --table T [--batch N] [--pause MS]`: every encrypted cell
 * of the table re-encrypted under the keyring's current version, batch by batch (one transaction
 * each), in primary-key order. The plaintext never leaves crypto/cells.ts rewrapCell. The
 * progress is the cells themselves: each batch is the next rows still holding a cell under
 * another version, so a rewrap killed at any point (kill -9 included) and run again carries on
 * where the last committed batch ended, and ends with every cell on the current version.
 */
export async function keysRewrapCommand(o: KeysFlags & { destination: string; table: string; batch?: string; pause?: string }): Promise<number> {
  const batch = o.batch === undefined ? 500 : Number(o.batch);
  const pause = o.pause === undefined ? 0 : Number(o.pause);
  if (!Number.isInteger(batch) || batch < 1) throw new SluiceError("USAGE", "--batch must be a positive whole number");
  if (!Number.isFinite(pause) || pause < 0) throw new SluiceError("USAGE", "--pause must be milliseconds (0 or more)");
  const path = keyringPath(o);
  const ring = loadKeyring(path);
  const current = `sl1:${ring.current.id}:${ring.current.version}:`;
  const table = await openCellTable(o.destination);
  return withStore(async (store) => {
    const base = { ...cliIdentity(), event: "key.rewrap", resource: `table:${o.table}` };
    let cells = 0;
    let rows = 0;
    try {
      const key = await table.keyColumns(o.table);
      const columns = await cellColumns(table, o.table);
      for (;;) {
        const stale = await table.staleRows(o.table, { key, columns, current, limit: batch });
        if (stale.length === 0) break;
        const changes = stale.map((row) => {
          const keyText = rowKeyText(key.map((k) => row[k]));
          const changed: Record<string, string> = {};
          for (const column of columns) {
            const v = row[column];
            if (typeof v === "string" && v.startsWith("sl1:") && !v.startsWith(current))
              changed[column] = rewrapCell(ring, { table: o.table, column, key: keyText }, v);
          }
          cells += Object.keys(changed).length;
          return { key: key.map((k) => row[k]), cells: changed };
        });
        await table.update(o.table, key, changes);
        rows += stale.length;
        process.stderr.write(`rewrapped ${cells} cells in ${rows} rows\n`);
        if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      }
      await store.appendAudit({ ...base, outcome: "success", details: { destination: table.display, to: ring.current, cells, rows, columns } });
      process.stdout.write(
        `table ${o.table}: ${cells} cell${cells === 1 ? "" : "s"} rewrapped to key ${ring.current.id} version ${ring.current.version}; every cell is on it now\n`,
      );
      return 0;
    } catch (err) {
      await store.appendAudit({ ...base, outcome: "failure", details: { destination: table.display, cells, rows, reason: (err as Error).message } });
      throw err;
    } finally {
      await table.close();
    }
  });
}

/**
 * `sluice keys retire ID:VERSION --destination D [--table T]`: drop a key version's material from
 * the keyring, refused (CONFLICT, exit 1) while any cell of the destination's tables (or of T)
 * is still under it. Blind-index tokens under the version are counted and named: they need no
 * key to be read, but new tokens of the same values will not match them.
 */
export async function keysRetireCommand(o: KeysFlags & { destination: string; table?: string }, version: string): Promise<number> {
  const m = /^([A-Za-z0-9_-]{1,64}):([1-9][0-9]*)$/.exec(version);
  if (!m) throw new SluiceError("USAGE", `the key to retire is ID:VERSION (e.g. default:1), not ${JSON.stringify(version)}`);
  const ref: KeyRef = { id: m[1]!, version: Number(m[2]) };
  const path = keyringPath(o);
  const ring = loadKeyring(path);
  const table = await openCellTable(o.destination);
  return withStore(async (store) => {
    const base = { ...cliIdentity(), event: "key.retire", resource: `keyring:${path}#${ref.id}/${ref.version}` };
    let tokens = 0;
    try {
      const tables = o.table ? [o.table] : await table.tables();
      const uses = async () => {
        let n = 0;
        for (const t of tables) {
          const cols = await table.textColumns(t);
          n += await table.countPrefix(t, cols, `sl1:${ref.id}:${ref.version}:`);
          tokens += await table.countPrefix(t, cols, `tk1:${ref.id}:${ref.version}:`);
        }
        return n;
      };
      const next = await retire(ring, ref, uses);
      await store.appendAudit({ ...base, outcome: "success", details: { destination: table.display, tables, tokens } });
      saveKeyring(path, next);
      process.stdout.write(
        `key ${ref.id} version ${ref.version} retired: no cell of ${table.display} uses it` +
          (tokens > 0 ? `; ${tokens} token${tokens === 1 ? "" : "s"} made with it remain (load the data again to renew them)` : "") +
          "\n",
      );
      return 0;
    } catch (err) {
      await store.appendAudit({ ...base, outcome: "failure", details: { destination: table.display, reason: (err as Error).message } });
      throw err;
    } finally {
      await table.close();
    }
  });
}

/** The text columns of a table that hold at least one encrypted cell. */
async function cellColumns(table: CellTable, name: string): Promise<string[]> {
  const out: string[] = [];
  for (const c of await table.textColumns(name)) if ((await table.countPrefix(name, [c], "sl1:")) > 0) out.push(c);
  return out;
}

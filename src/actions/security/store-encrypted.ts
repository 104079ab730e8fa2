/**
 * `data-security/store_with_encryption`: store a classified dataset in SQLite or PostgreSQL with
 * each column protected as the classification's policy says (classify_sensitive_data wrote it,
 * the dataset names it in `meta.classification`):
 * - `encrypt`: a field-level cell (crypto/cells.ts, `sl1:<kid>:<ver>:…`), its AAD binding table,
 *   column, the row's primary key and the key version, so a cell copied to another row or column
 *   does not decrypt; read back with `sluice decrypt`, rewrapped with `sluice keys rewrap`;
 * - `tokenize`: a keyed blind index (crypto/tokens.ts, HMAC-SHA-256 under a key derived from the
 *   KEK). With `deterministic: true` the token's purpose is the class (`email`), so equal values
 *   give equal tokens in every table and tables join on them; otherwise it is the column
 *   (`accounts.card`), so two tables cannot be linked. Tokens are one-way;
 * - `mask`: card numbers and other identifiers keep their last `keepLast` (default 4) characters;
 *   free text keeps its words, its sensitive spans masked (policy.ts maskText);
 * - `drop`: the column is not stored; `allow`: stored as it is.
 * A column the classification does not list (it appeared after the sample) is encrypted: fail closed.
 * A column allowed in clear whose sample held card numbers (the `card_outside_card_column` event)
 * has those numbers masked to their last four digits.
 *
 * Every protected value is text, so every column is a text column (typed datasets keep the types
 * of their allowed columns). The rows go through the batch destinations (connectors/destinations),
 * upserted on the key, so a retried step does not duplicate rows. The key columns are stored as
 * they are (allow) or as deterministic tokens: a row must be found again, and the cells' AAD binds
 * the stored key. A record without a key is quarantined with its values protected the same way.
 * Encrypted input parts (collect_with_encryption) are read through a decrypting stream.
 *
 * Audit entries: one `policy.decision` per column (class, action, where the rule came from) and
 * one `data.store` with the counts; a failed audit write fails the step before any row is stored.
 */
import { openDestination, type Destination } from "../../connectors/destinations/index.js";
import { rowKeyText } from "../../connectors/destinations/table-cells.js";
import { encryptCell } from "../../crypto/cells.js";
import { loadKeyring, type Keyring } from "../../crypto/keyring.js";
import { blindIndex, compactId, maskTail } from "../../crypto/tokens.js";
import { SluiceError } from "../../errors.js";
import { openReader, type FileFormat } from "../../formats/index.js";
import type { Column, QuarantinedRecord, TypedRow } from "../../formats/typed.js";
import type { ActionContext, Outputs } from "../types.js";
import { partDecryption, readDataset, readQuarantine, type Dataset, type DatasetPart } from "../batch/dataset.js";
import { readTypedRows } from "../batch/typed-dataset.js";
import { defaultDestination } from "../batch/store.js";
import type { ColumnClass } from "./classify.js";
import { readClassification } from "./classification.js";
import { maskText } from "./mask-text.js";
import type { ResolvedRule } from "./policy.js";
import { flatten } from "./sample.js";

const BATCH = 1_000;

export interface StoreEncryptedInput {
  dataset: string;
  destination?: string;
  table: string;
  /** The key-encryption key: a keyring file, or env:NAME / file:PATH holding one 32-byte key. */
  key: string;
  /** The record key columns (default the dataset's key, else `id`). */
  primaryKey?: string[];
  /** Columns to encrypt whatever the classification says. */
  encryptColumns?: string[];
  /** Format of raw parts whose extension names none. */
  format?: FileFormat;
}

/** A column as it is stored: its rule and its class. */
interface Protection {
  name: string;
  class: ColumnClass | "unclassified";
  rule: ResolvedRule;
  /** Card numbers were found in the column's sample although its class is another: masked even where the rule allows the column. */
  cards?: boolean;
}

export async function storeWithEncryption(input: StoreEncryptedInput, ctx: ActionContext): Promise<Outputs> {
  const ds = await readDataset(input.dataset);
  const doc = await readClassification(ds);
  if (!doc)
    throw new SluiceError(
      "BAD_INPUT",
      `store_with_encryption needs a classified dataset; ${input.dataset} (from step ${ds.step}) has no classification: run classify_sensitive_data first`,
      { retryable: false },
    );
  const ring = loadKeyring(input.key);
  const protections = new Map<string, Protection>(
    doc.columns.map((c) => [
      c.name,
      { name: c.name, class: c.class, rule: c.rule, ...(c.contains?.some((k) => k.class === "card_number") ? { cards: true } : {}) },
    ]),
  );
  for (const name of input.encryptColumns ?? []) {
    const p = protections.get(name);
    protections.set(name, { name, class: p?.class ?? "unclassified", rule: { action: "encrypt", from: "column" } });
  }
  const key = input.primaryKey ?? ds.key ?? (protections.has("id") ? ["id"] : undefined);
  if (!key || key.length === 0)
    throw new SluiceError("BAD_CONFIG", `store_with_encryption needs the record key: set primaryKey (the dataset has no key and no id column)`, {
      retryable: false,
    });
  for (const k of key) {
    const p = protections.get(k);
    if (p && p.rule.action !== "allow" && !(p.rule.action === "tokenize" && p.rule.deterministic !== false))
      throw new SluiceError(
        "BAD_CONFIG",
        `key column ${k} is to be ${p.rule.action}ed; a key column must be stored as it is or as a deterministic token (a policy rule: { action: tokenize, deterministic: true })`,
        { retryable: false },
      );
  }

  // The decisions are in the trail before the first row is written (fail closed).
  for (const p of protections.values())
    await ctx.audit.append({
      event: "policy.decision",
      outcome: "success",
      resource: `table:${input.table}.${p.name}`,
      details: { class: p.class, action: p.rule.action, from: p.rule.from, ...(p.rule.deterministic ? { deterministic: true } : {}) },
    });

  const typedOf = new Map((ds.typed ? (ds.columns ?? []) : []).map((c) => [c.name, c]));
  const stored = [...protections.values()].filter((p) => p.rule.action !== "drop");
  const columns: Column[] = stored.map((p) => (p.rule.action === "allow" && typedOf.has(p.name) ? typedOf.get(p.name)! : { name: p.name, type: "string" }));
  const dest = await openDestination(input.destination ?? defaultDestination(ctx.home));
  const protect = protector(ring, input.table, protections, doc.region);
  let rowsIn = 0;
  let rowsStored = 0;
  let rowsDuplicate = 0;
  const quarantine: QuarantinedRecord[] = [];
  const late = new Set<string>();
  try {
    await dest.prepare({ table: input.table, columns, key });
    const wctx = { runId: ctx.runId, step: ctx.step };
    let batch: TypedRow[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const r = await dest.write(batch, wctx);
      rowsStored += r.stored;
      rowsDuplicate += r.duplicate;
      for (const x of r.rejected ?? [])
        quarantine.push({ source: "destination", line: x.line ?? x.index, step: ctx.step, reasons: x.reasons, record: x.record });
      batch = [];
      ctx.progress({ rows: rowsStored + rowsDuplicate + quarantine.length });
    };
    for await (const { part, line, record } of datasetRecords(ds, input, ctx.signal)) {
      rowsIn++;
      for (const name of record.keys())
        if (!protections.has(name)) {
          // Not in the classification (beyond its sample): encrypted, and said so.
          protections.set(name, { name, class: "unclassified", rule: { action: "encrypt", from: "uncovered" } });
          late.add(name);
        }
      const missing = key.filter((k) => record.get(k) === undefined || record.get(k) === "");
      if (missing.length > 0) {
        quarantine.push({
          source: part.source,
          line,
          step: ctx.step,
          reasons: [`no value for key column ${missing.join(", ")}`],
          record: protect(record, `quarantine:${part.source}#${line}`, true),
        });
        continue;
      }
      const keyText = rowKeyText(key.map((k) => stored1(protect, record, k)));
      batch.push(protect(record, keyText, false) as TypedRow);
      if (batch.length >= BATCH) await flush();
    }
    await flush();
    if (late.size > 0) {
      ctx.log.warn("columns outside the classification were encrypted", { columns: [...late] });
      throw new SluiceError(
        "BAD_INPUT",
        `column${late.size > 1 ? "s" : ""} ${[...late].join(", ")} appeared after the classification's sample; classify the dataset again (nothing of them was stored in clear)`,
        { retryable: false, details: { columns: [...late] } },
      );
    }
    if (quarantine.length > 0) await dest.writeQuarantine(quarantine, wctx);
    const upstream = await storeQuarantine(ds, dest, wctx);
    const byAction: Record<string, string[]> = {};
    for (const p of protections.values()) (byAction[p.rule.action] ??= []).push(p.name);
    await ctx.audit.append({
      event: "data.store",
      outcome: "success",
      resource: `table:${input.table}`,
      details: {
        destination: dest.display,
        rowsIn,
        rowsStored,
        rowsDuplicate,
        rowsQuarantined: quarantine.length + upstream,
        keyId: ring.current.id,
        keyVersion: ring.current.version,
        columns: byAction,
      },
    });
    ctx.log.info("stored with field-level protection", {
      destination: dest.display,
      table: input.table,
      rowsStored,
      rowsDuplicate,
      quarantined: quarantine.length,
    });
    return {
      destination: dest.display,
      table: input.table,
      quarantineTable: `${input.table}_quarantine`,
      rowsIn,
      rowsStored,
      rowsDuplicate,
      rowsQuarantined: quarantine.length + upstream,
      balanced: rowsIn === rowsStored + rowsDuplicate + quarantine.length,
      key,
      encryption: { algorithm: "AES-256-GCM", keyId: ring.current.id, keyVersion: ring.current.version },
      columns: [...protections.values()].map((p) => ({ name: p.name, class: p.class, action: p.rule.action })),
    };
  } finally {
    await dest.close().catch(() => undefined);
  }
}

type Protect = (record: Map<string, string>, keyText: string, quarantined: boolean) => Record<string, string | null>;

/** A key column's stored value (allowed: itself; tokenized: its token). */
function stored1(protect: Protect, record: Map<string, string>, k: string): string {
  return protect(new Map([[k, record.get(k)!]]), "", false)[k]!;
}

/**
 * The function that turns one record into the row to store: every column by its rule. Cells are
 * bound to `keyText` (the stored primary key); quarantined records get their place's name instead.
 */
function protector(ring: Keyring, table: string, protections: Map<string, Protection>, region: string): Protect {
  return (record, keyText, quarantined) => {
    const row: Record<string, string | null> = {};
    for (const [name, value] of record) {
      const p = protections.get(name) ?? { name, class: "unclassified" as const, rule: { action: "encrypt" as const, from: "uncovered" as const } };
      const rule = p.rule;
      if (rule.action === "drop") continue;
      const place = { table: quarantined ? `${table}_quarantine` : table, column: name, key: keyText };
      switch (rule.action) {
        case "allow":
          // A card number in an allowed column (a note that quotes one) is masked all the same: PCI DSS 3.4.1.
          row[name] = p.cards && p.class !== "card_number" ? maskText(value, ["card_number"], { keepLast: 4, region }) : value;
          break;
        case "encrypt":
          row[name] = encryptCell(ring, place, value);
          break;
        case "tokenize": {
          const purpose = rule.deterministic ? String(p.class) : `${table}.${name}`;
          const normalize = p.class === "email" ? (v: string) => v.trim().toLowerCase() : p.class === "ip_address" ? (v: string) => v.trim() : compactId;
          row[name] = blindIndex(ring, purpose, value, { normalize });
          break;
        }
        case "mask":
          row[name] =
            p.class === "free_text_with_pii" || p.class === "mixed_pii"
              ? maskText(value, rule.maskKinds ?? [], { keepLast: rule.keepLast ?? 4, region })
              : maskTail(value, rule.keepLast ?? 4);
          break;
      }
    }
    // Absent values of stored columns are null (the destination writes every column).
    for (const p of protections.values()) if (p.rule.action !== "drop" && !(p.name in row)) row[p.name] = null;
    return row;
  };
}

/** Every record of the dataset as column → text (nested objects flattened as in sample.ts), with where it came from. */
async function* datasetRecords(
  ds: Dataset,
  input: StoreEncryptedInput,
  signal: AbortSignal,
): AsyncGenerator<{ part: DatasetPart; line: number; record: Map<string, string> }> {
  if (ds.typed && ds.columns) {
    for await (const { part, rows } of readTypedRows(ds, ds.columns, signal))
      for (const { row, line } of rows) {
        const m = new Map<string, string>();
        for (const [k, v] of Object.entries(row)) if (v !== null) m.set(k, String(v));
        yield { part, line, record: m };
      }
    return;
  }
  for (const part of ds.parts) {
    const format = part.format === "unknown" ? input.format : part.format;
    if (!format || format === "stage")
      throw new SluiceError("BAD_INPUT", `cannot tell the format of ${part.source}; set the step's format`, { retryable: false });
    const decrypt = partDecryption(part);
    for await (const b of openReader(part.path, {
      format,
      batchSize: 1_000,
      name: part.source,
      ...(part.csv ?? {}),
      ...(part.read ?? {}),
      ...(decrypt ? { decrypt } : {}),
    })) {
      if (signal.aborted) throw signal.reason;
      if (b.errors.length > 0)
        throw new SluiceError("BAD_INPUT", `${part.source} has ${b.errors.length} unreadable record(s), first at line ${b.errors[0]!.line}`, {
          retryable: false,
        });
      for (let i = 0; i < b.rows.length; i++) {
        const m = new Map<string, string>();
        flatten(b.rows[i], "", m);
        yield { part, line: b.lines?.[i] ?? i + 1, record: m };
      }
    }
  }
}

async function storeQuarantine(ds: Dataset, dest: Destination, wctx: { runId: string; step: string }): Promise<number> {
  let n = 0;
  for (const file of ds.quarantine)
    for await (const records of readQuarantine(file)) {
      await dest.writeQuarantine(records, wctx);
      n += records.length;
    }
  return n;
}

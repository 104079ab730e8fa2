/**
 * `sluice audit report --workflow NAME [--json]`: a GDPR Art. 30-style record of processing for one
 * workflow, made from what its runs recorded — never from the data itself:
 * - purposes: the workflow's description (the newest run's spec);
 * - categories: the classification of its runs (classify_sensitive_data's `outputs.columns`:
 *   column names, classes and actions; the classifier never puts values there);
 * - recipients: the destinations and tables its storage steps wrote to;
 * - retention: the run's `retention` param, else the `sluice.dev/retention` label, else "not declared";
 * - measures: the TLS facts of its connections, the MFA factors proven, the encryption key ids and
 *   versions, the columns masked or tokenized, and whether the audit chain verifies.
 * Only succeeded runs count (a failed run's outputs are partial); the report says how many there were.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { KeyObject } from "node:crypto";
import { verifyChain, type AuditEntry } from "../crypto/audit-chain.js";
import { loadPublicKey, PUBLIC_KEY_FILE } from "../crypto/audit-key.js";
import { SluiceError } from "../errors.js";
import type { RunRecord, StepRecord } from "../store/types.js";
import { auditKeyDir } from "../engine/audit.js";
import { readAuditLog } from "./audit.js";
import { withStore } from "./context.js";

export const RETENTION_LABEL = "sluice.dev/retention";

export interface ProcessingRecord {
  workflow: string;
  generatedAt: string;
  runs: { considered: number; succeeded: number; first: string | null; last: string | null };
  purposes: string[];
  /** Personal-data categories: class → the columns (per table) that held it, and what was done to them. */
  categories: { class: string; columns: { table: string | null; column: string; action: string }[] }[];
  recipients: { destination: string; table: string; rows: number; runs: number }[];
  sources: string[];
  retention: string;
  measures: {
    tls: { protocols: string[]; ciphers: string[]; clientCertificate: boolean; pinned: boolean; certificateValidTo: string | null };
    mfa: { factors: string[]; required: number | null };
    encryption: { algorithm: string; keyId: string; keyVersion: number }[];
    masked: string[];
    tokenized: string[];
    encrypted: string[];
    /** Key management from the audit trail (init, rotate, rewrap, retire): the keys of old runs may have moved on since. */
    keyEvents: { event: string; time: string; resource: string; outcome: string }[];
    /** Reads of the stored data in clear (`sluice decrypt`), from the audit trail. */
    decrypts: number;
    auditChain: { verified: boolean; entries: number; checkpoints: number; problem?: string };
  };
}

type Outputs = Record<string, unknown>;

const SENSITIVE_NONE = new Set(["none"]);

/** Build the record from runs and their steps (pure: the command reads the store, this decides). */
export function processingRecord(
  workflow: string,
  runs: { run: RunRecord; steps: StepRecord[] }[],
  audit: ProcessingRecord["measures"]["auditChain"],
  trail: Pick<AuditEntry, "event" | "time" | "resource" | "outcome">[] = [],
  now = new Date(),
): ProcessingRecord {
  const ok = runs.filter((r) => r.run.status === "succeeded").sort((a, b) => a.run.createdAt.localeCompare(b.run.createdAt));
  const newest = ok.at(-1)?.run ?? runs.at(-1)?.run;
  const purposes = newest?.spec.spec.description ? [newest.spec.spec.description.trim()] : [];
  const categories = new Map<string, Map<string, { table: string | null; column: string; action: string }>>();
  const recipients = new Map<string, { destination: string; table: string; rows: number; runs: Set<string> }>();
  const sources = new Set<string>();
  const protocols = new Set<string>();
  const ciphers = new Set<string>();
  const factors = new Set<string>();
  const keys = new Map<string, { algorithm: string; keyId: string; keyVersion: number }>();
  const masked = new Set<string>();
  const tokenized = new Set<string>();
  const encrypted = new Set<string>();
  let required: number | null = null;
  let clientCertificate = false;
  let pinned = false;
  let validTo: string | null = null;

  for (const { run, steps } of ok) {
    const actionOf = new Map(run.spec.spec.steps.map((s) => [s.name, s.action ?? ""]));
    // The storage step names the table the classified columns went to; a classification alone has none.
    const stored = steps.map((s) => s.outputs ?? {}).find((o) => typeof o["table"] === "string" && Array.isArray(o["columns"]));
    const table = stored ? String(stored["table"]) : null;
    for (const step of steps) {
      const o: Outputs = step.outputs ?? {};
      const action = actionOf.get(step.name) ?? "";
      if (typeof o["source"] === "string") sources.add(o["source"]);
      collectTls(o, protocols, ciphers);
      if (typeof o["tls"] === "object" && o["tls"]) collectTls(o["tls"] as Outputs, protocols, ciphers);
      if (o["clientCertificate"] === true) clientCertificate = true;
      if (o["pinned"] === true) pinned = true;
      if (typeof o["validTo"] === "string") validTo = o["validTo"];
      if (Array.isArray(o["passed"]) && typeof o["required"] === "number") {
        for (const f of o["passed"]) factors.add(String(f));
        required = Math.max(required ?? 0, o["required"]);
      }
      const enc = o["encryption"] as { algorithm?: string; keyId?: string; keyVersion?: number } | undefined;
      if (enc?.keyId !== undefined && enc.keyVersion !== undefined)
        keys.set(`${enc.keyId}:${enc.keyVersion}`, { algorithm: enc.algorithm ?? "AES-256-GCM", keyId: enc.keyId, keyVersion: enc.keyVersion });
      if (action === "store_with_encryption" || (typeof o["destination"] === "string" && typeof o["table"] === "string")) {
        const dest = String(o["destination"] ?? "");
        const t = String(o["table"] ?? "");
        if (dest && t) {
          const r = recipients.get(`${dest}|${t}`) ?? { destination: dest, table: t, rows: 0, runs: new Set<string>() };
          r.rows += typeof o["rowsStored"] === "number" ? o["rowsStored"] : 0;
          r.runs.add(run.id);
          recipients.set(`${dest}|${t}`, r);
        }
      }
      if (action === "classify_sensitive_data" && Array.isArray(o["columns"]))
        for (const c of o["columns"] as { name?: unknown; class?: unknown; action?: unknown }[]) {
          const cls = String(c.class ?? "none");
          const col = String(c.name ?? "");
          const act = String(c.action ?? "allow");
          if (!col || SENSITIVE_NONE.has(cls)) continue;
          const byCol = categories.get(cls) ?? new Map();
          byCol.set(`${table}|${col}`, { table, column: col, action: act });
          categories.set(cls, byCol);
          const named = table ? `${table}.${col}` : col;
          if (act === "mask") masked.add(named);
          else if (act === "tokenize") tokenized.add(named);
          else if (act === "encrypt") encrypted.add(named);
        }
    }
  }

  const recipientTables = new Set([...recipients.values()].map((r) => r.table));
  const retention =
    (newest && typeof newest.params["retention"] === "string" && newest.params["retention"] !== "not declared"
      ? String(newest.params["retention"])
      : undefined) ??
    newest?.spec.metadata.labels?.[RETENTION_LABEL] ??
    "not declared";
  return {
    workflow,
    generatedAt: now.toISOString(),
    runs: { considered: runs.length, succeeded: ok.length, first: ok[0]?.run.createdAt ?? null, last: ok.at(-1)?.run.createdAt ?? null },
    purposes,
    categories: [...categories].sort(([a], [b]) => a.localeCompare(b)).map(([cls, cols]) => ({ class: cls, columns: [...cols.values()] })),
    recipients: [...recipients.values()].map((r) => ({ destination: r.destination, table: r.table, rows: r.rows, runs: r.runs.size })),
    sources: [...sources].sort(),
    retention,
    measures: {
      tls: { protocols: [...protocols].sort(), ciphers: [...ciphers].sort(), clientCertificate, pinned, certificateValidTo: validTo },
      mfa: { factors: [...factors].sort(), required },
      encryption: [...keys.values()],
      masked: [...masked].sort(),
      tokenized: [...tokenized].sort(),
      encrypted: [...encrypted].sort(),
      keyEvents: trail.filter((e) => e.event.startsWith("key.")).map((e) => ({ event: e.event, time: e.time, resource: e.resource, outcome: e.outcome })),
      decrypts: trail.filter((e) => e.event === "data.decrypt" && e.outcome === "success" && recipientTables.has(e.resource.replace(/^table:/, ""))).length,
      auditChain: audit,
    },
  };
}

function collectTls(o: Outputs, protocols: Set<string>, ciphers: Set<string>): void {
  if (typeof o["protocol"] === "string" && /^TLS/.test(o["protocol"])) protocols.add(o["protocol"]);
  if (typeof o["cipher"] === "string") ciphers.add(o["cipher"]);
}

export function formatProcessingRecord(r: ProcessingRecord): string {
  const m = r.measures;
  const list = (xs: string[]) => (xs.length ? xs.join(", ") : "none");
  const lines = [
    `Record of processing (GDPR Art. 30) — workflow ${r.workflow}`,
    `generated ${r.generatedAt} from ${r.runs.succeeded} succeeded run${r.runs.succeeded === 1 ? "" : "s"} of ${r.runs.considered}` +
      (r.runs.first ? ` (${r.runs.first} to ${r.runs.last})` : ""),
    "",
    "Purposes:",
    ...(r.purposes.length ? r.purposes.map((p) => `  ${p}`) : ["  not declared (the workflow has no description)"]),
    "Categories of personal data (from the classification; columns and classes, never values):",
    ...(r.categories.length
      ? r.categories.map((c) => `  ${c.class}: ${c.columns.map((x) => `${x.table ? `${x.table}.` : ""}${x.column} (${x.action})`).join(", ")}`)
      : ["  none found"]),
    "Sources:",
    ...(r.sources.length ? r.sources.map((s) => `  ${s}`) : ["  none recorded"]),
    "Recipients (destinations stored to):",
    ...(r.recipients.length
      ? r.recipients.map((x) => `  ${x.destination} table ${x.table}: ${x.rows} rows over ${x.runs} run${x.runs === 1 ? "" : "s"}`)
      : ["  none"]),
    `Retention: ${r.retention}`,
    "Technical and organisational measures:",
    `  TLS: ${list(m.tls.protocols)}; ciphers ${list(m.tls.ciphers)}; client certificate (mTLS) ${m.tls.clientCertificate ? "yes" : "no"}; pinned ${m.tls.pinned ? "yes" : "no"}` +
      (m.tls.certificateValidTo ? `; server certificate valid to ${m.tls.certificateValidTo}` : ""),
    `  MFA: ${m.mfa.factors.length ? `${m.mfa.factors.join(", ")} proven` : "no factors recorded"}${m.mfa.required !== null ? ` (${m.mfa.required} required)` : ""}`,
    `  encryption at rest: ${m.encryption.length ? m.encryption.map((k) => `${k.algorithm} key ${k.keyId} version ${k.keyVersion}`).join(", ") : "none recorded"}`,
    `  encrypted columns: ${list(m.encrypted)}`,
    `  tokenized columns: ${list(m.tokenized)}`,
    `  masked columns: ${list(m.masked)}`,
    `  key management: ${m.keyEvents.length ? m.keyEvents.map((e) => `${e.event.slice(4)} ${e.time}${e.outcome === "success" ? "" : " (failed)"}`).join(", ") : "none recorded"}`,
    `  reads in clear (sluice decrypt, audited): ${m.decrypts}`,
    `  audit chain: ${m.auditChain.verified ? `verified (${m.auditChain.entries} entries, ${m.auditChain.checkpoints} signed checkpoint${m.auditChain.checkpoints === 1 ? "" : "s"})` : `NOT intact: ${m.auditChain.problem}`}`,
  ];
  return `${lines.join("\n")}\n`;
}

export async function auditReportCommand(o: { workflow: string; json?: boolean }): Promise<number> {
  return withStore(async (store, home) => {
    const records = await store.listRuns({ workflow: o.workflow, limit: 10_000 });
    if (records.length === 0)
      throw new SluiceError("NOT_FOUND", `workflow "${o.workflow}" has no runs in this store; a record of processing is made from its runs`);
    const runs = await Promise.all(records.map(async (run) => ({ run, steps: await store.getSteps(run.id) })));
    const keys: KeyObject[] = [];
    const local = join(auditKeyDir(home), PUBLIC_KEY_FILE);
    if (existsSync(local)) keys.push(loadPublicKey(local));
    const entries = await readAuditLog(store);
    const checkpoints = await store.listCheckpoints();
    const verdict = verifyChain(entries, checkpoints, keys);
    const audit = verdict.ok
      ? { verified: true, entries: entries.length, checkpoints: checkpoints.length }
      : { verified: false, entries: entries.length, checkpoints: checkpoints.length, problem: verdict.problem.message };
    const record = processingRecord(o.workflow, runs, audit, entries);
    process.stdout.write(o.json ? `${JSON.stringify(record, null, 2)}\n` : formatProcessingRecord(record));
    return 0;
  });
}

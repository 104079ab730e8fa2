/**
 * The data-protection policy: what the storage step does with each column, by its class or by
 * name, and the security events a classification raises against it. Pure, except loading a
 * policy file.
 *
 * Actions:
 * - `encrypt`: field-level encryption (AES-256-GCM cell, key id in the cell; reversible by
 *   `sluice decrypt`, audited);
 * - `tokenize`: a keyed token (HMAC blind index; `deterministic: true` asks for a joinable,
 *   reversible deterministic encryption instead);
 * - `mask`: keep `keepLast` characters (cards: the last four digits, as PCI DSS 3.4.1 allows),
 *   replace the rest; in free text, only the sensitive spans are masked (maskText);
 * - `drop`: the column is not stored;
 * - `allow`: stored as it is.
 *
 * Defaults (DEFAULT_RULES, `extends: default`): card numbers are tokenized (PCI DSS 3.5.1.1's
 * keyed hash: the PAN itself is rarely needed downstream and a token keeps the table out of
 * scope), IBANs, SSNs, phones, dates of birth and names encrypted, e-mails tokenized
 * deterministically (joinable across tables), IP addresses tokenized, ABA routing numbers allowed
 * (a routing number names a bank, not a person), free text masked, `none` allowed. A mixed
 * column (several kinds of sensitive value) has no default rule: it is the unclassified case, an
 * `uncovered_column` event until the policy names the column.
 *
 * Security events (never a value, only column, class and counts): a sensitive column the policy
 * does not cover (it is encrypted anyway — fail closed — and `failOnUnclassified` fails the
 * step), a card number outside a card column, a policy naming a column the data no longer has
 * (a rename would leave the new column unprotected), published test card numbers in the data,
 * and a class decided on a sample too small to be sure.
 */
import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { SluiceError } from "../../errors.js";
import type { ColumnClassification } from "./classify.js";
import { COLUMN_CLASSES, type ColumnClass } from "./column-classes.js";
import type { DetectorKind } from "./detectors.js";

export const POLICY_ACTIONS = ["encrypt", "tokenize", "mask", "drop", "allow"] as const;
export type PolicyAction = (typeof POLICY_ACTIONS)[number];

const RuleObject = z
  .object({
    action: z.enum(POLICY_ACTIONS),
    keepLast: z.number().int().min(0).max(8).optional().describe("mask: characters (digits for cards) left in clear at the end."),
    deterministic: z.boolean().optional().describe("tokenize: a joinable deterministic encryption instead of a one-way keyed hash."),
  })
  .strict();
export const PolicyRule = z.union([z.enum(POLICY_ACTIONS), RuleObject]);
export type PolicyRuleInput = z.infer<typeof PolicyRule>;

export const PolicyDocument = z
  .object({
    extends: z.enum(["default", "none"]).default("default").describe("default: start from the documented defaults; none: only the rules given."),
    classes: z.partialRecord(z.enum(COLUMN_CLASSES), PolicyRule).optional().describe("An action per class."),
    columns: z.record(z.string().min(1), PolicyRule).optional().describe("An action per column name; wins over its class."),
    failOnUnclassified: z.boolean().optional().describe("Fail the step when a sensitive column has no rule."),
  })
  .strict();
export type PolicyInput = z.input<typeof PolicyDocument>;

/** The keys of this policy, which a shared policy file may hold beside the security requirements' (requirements.ts). */
export const PROTECTION_KEYS: readonly string[] = Object.keys(PolicyDocument.shape);
/**
 * The security requirements' keys (requirements.ts SecurityPolicy; a test keeps the two lists equal):
 * one policy file serves the whole secure workflow, each step reading its own part of it.
 */
export const REQUIREMENT_KEYS: readonly string[] = [
  "requireTls",
  "minTlsVersion",
  "allowedHosts",
  "pin",
  "requirePin",
  "requireClientCertificate",
  "requireSecretRefs",
  "requireEncryptionKey",
  "requireAudit",
];

/** A policy file's document without the other part's keys (unknown keys still fail: a typo is not a rule). */
export function withoutKeys(doc: unknown, keys: readonly string[]): unknown {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) return doc;
  return Object.fromEntries(Object.entries(doc).filter(([k]) => !keys.includes(k)));
}
export type Policy = z.output<typeof PolicyDocument>;

/** A rule as the storage step reads it. */
export interface ResolvedRule {
  action: PolicyAction;
  keepLast?: number;
  deterministic?: boolean;
  /** free_text_with_pii + mask: the kinds of span to mask. */
  maskKinds?: DetectorKind[];
  /** Where the rule came from; `uncovered`: no rule, encrypted to fail closed. */
  from: "column" | "class" | "uncovered";
}

/** No rule for `mixed_pii`: a column of several kinds of sensitive value is unclassified until a rule names it. */
export const DEFAULT_RULES: Readonly<Partial<Record<ColumnClass, PolicyRuleInput>>> = {
  card_number: "tokenize",
  iban: "encrypt",
  aba_routing: "allow",
  ssn: "encrypt",
  email: { action: "tokenize", deterministic: true },
  phone: "encrypt",
  ip_address: "tokenize",
  date_of_birth: "encrypt",
  person_name: "encrypt",
  free_text_with_pii: { action: "mask", keepLast: 4 },
  none: "allow",
};

export type EventType = "uncovered_column" | "card_outside_card_column" | "policy_column_missing" | "test_card_numbers" | "low_confidence";

/** A security event of a classification: column, class and counts, never a value. */
export interface SecurityEvent {
  type: EventType;
  severity: "high" | "medium" | "low";
  column: string;
  class?: ColumnClass;
  rows?: number;
  message: string;
}

/** A policy given inline or as the path of a YAML/JSON file (relative to the working directory). */
export async function loadPolicy(ref: PolicyInput | string | undefined): Promise<Policy> {
  if (ref === undefined) return PolicyDocument.parse({});
  if (typeof ref !== "string") return parsePolicy(ref, "the step's policy");
  const path = isAbsolute(ref) ? ref : resolve(ref);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SluiceError(code === "ENOENT" ? "FILE_NOT_FOUND" : "BAD_CONFIG", `policy file ${ref} cannot be read (${code ?? (err as Error).message})`, {
      retryable: false,
    });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new SluiceError("BAD_CONFIG", `policy file ${ref} is not valid YAML or JSON: ${(err as Error).message.split("\n")[0]}`, { retryable: false });
  }
  return parsePolicy(withoutKeys(data ?? {}, REQUIREMENT_KEYS), `policy file ${ref}`);
}

function parsePolicy(data: unknown, where: string): Policy {
  const r = PolicyDocument.safeParse(data);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  throw new SluiceError("BAD_CONFIG", `${where}: ${issue.path.join(".") || "(top)"}: ${issue.message}`, { retryable: false });
}

function normalise(rule: PolicyRuleInput): Omit<ResolvedRule, "from"> {
  return typeof rule === "string" ? { action: rule } : { ...rule };
}

/** The rule for one classified column: by its name, else by its class, else none (undefined). */
export function ruleFor(policy: Policy, column: ColumnClassification): ResolvedRule | undefined {
  const byName = policy.columns?.[column.name];
  const byClass = policy.classes?.[column.class] ?? (policy.extends === "default" || column.class === "none" ? DEFAULT_RULES[column.class] : undefined);
  const picked =
    byName !== undefined
      ? { ...normalise(byName), from: "column" as const }
      : byClass !== undefined
        ? { ...normalise(byClass), from: "class" as const }
        : undefined;
  if (!picked) return undefined;
  if (picked.action === "mask" && column.class === "free_text_with_pii") picked.maskKinds = (column.contains ?? []).map((c) => c.class);
  if (picked.action === "mask" && picked.keepLast === undefined && column.class === "card_number") picked.keepLast = 4;
  return picked;
}

export interface PolicyDecision {
  rules: Record<string, ResolvedRule>;
  events: SecurityEvent[];
  /** Sensitive columns without a rule. */
  uncovered: string[];
}

/** Apply the policy to every classified column; list the events. */
export function decide(policy: Policy, columns: readonly ColumnClassification[]): PolicyDecision {
  const rules: Record<string, ResolvedRule> = {};
  const events: SecurityEvent[] = [];
  const uncovered: string[] = [];
  for (const c of columns) {
    const rule = ruleFor(policy, c);
    if (rule) rules[c.name] = rule;
    else {
      rules[c.name] = { action: "encrypt", from: "uncovered" };
      uncovered.push(c.name);
      events.push({
        type: "uncovered_column",
        severity: "high",
        column: c.name,
        class: c.class,
        rows: c.sampled,
        message: `column ${c.name} is classified ${c.class} but the policy has no rule for it; it will be encrypted`,
      });
    }
    const cards = c.contains?.find((k) => k.class === "card_number");
    if (cards && c.class !== "card_number")
      events.push({
        type: "card_outside_card_column",
        severity: "high",
        column: c.name,
        class: c.class,
        rows: cards.rows,
        message: `column ${c.name} (${c.class}) holds card numbers in ${cards.rows} of ${c.sampled} sampled rows`,
      });
    if (c.testPans)
      events.push({
        type: "test_card_numbers",
        severity: "low",
        column: c.name,
        class: c.class,
        rows: c.testPans,
        message: `column ${c.name} holds ${c.testPans} published test card numbers (treated as cards)`,
      });
    if (!c.confident)
      events.push({
        type: "low_confidence",
        severity: "low",
        column: c.name,
        class: c.class,
        rows: c.sampled,
        message: `column ${c.name} is classified ${c.class} from only ${c.sampled} rows; too few to be sure, protected as ${c.class}`,
      });
  }
  const present = new Set(columns.map((c) => c.name));
  for (const name of Object.keys(policy.columns ?? {}))
    if (!present.has(name))
      events.push({
        type: "policy_column_missing",
        severity: "medium",
        column: name,
        message: `the policy has a rule for column ${name} but the dataset has no such column (renamed?)`,
      });
  return { rules, events, uncovered };
}

/** Every character but the last `keepLast` letters or digits replaced by `*` (separators kept). */
export function maskValue(value: string, keepLast = 0): string {
  let keep = keepLast;
  const chars = [...value];
  for (let i = chars.length - 1; i >= 0; i--) {
    if (!/[\p{L}\p{N}]/u.test(chars[i]!)) continue;
    if (keep > 0) keep--;
    else chars[i] = "*";
  }
  return chars.join("");
}

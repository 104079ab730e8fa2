/**
 * What a column's NAME says it holds: `card_number`, `customerEmail`, `dob`, `first_name`.
 * Pure. The classifier uses a hint to let a detector's bare form count (a 10-digit integer in a
 * `phone` column), to ask for a little less evidence, and as the only way to tell a date of
 * birth from any other date and a person's name from any other words. A hint never makes a
 * column sensitive on its own: the values still have to pass (classify.ts).
 *
 * Names are split into lower-case words at `_`, `-`, `.`, spaces and camelCase humps; short,
 * ambiguous words (`ip`, `tel`, `pan`, `dob`) must be whole words, distinctive ones (`iban`,
 * `email`, `phone`) may sit inside a longer one (`ibanno`, `emailaddress`, `telephone`).
 */
import type { DetectorKind } from "./detectors.js";

export function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
}

interface HintRule {
  kind: DetectorKind;
  /** Any of these as a whole word. */
  words?: readonly string[];
  /** Any of these inside the name with separators removed. */
  inside?: readonly string[];
  /** Any of these word pairs, adjacent (`card number`, `given name`). */
  pairs?: readonly (readonly [string, string])[];
}

// The people a `…_name` column names, as opposed to `product_name`, `file_name`, `bank_name`.
const PERSON_WORDS = [
  "first",
  "last",
  "full",
  "given",
  "family",
  "middle",
  "maiden",
  "customer",
  "client",
  "person",
  "holder",
  "cardholder",
  "account",
  "contact",
  "employee",
  "patient",
  "owner",
  "beneficiary",
  "payee",
  "payer",
  "recipient",
  "sender",
  "member",
  "applicant",
  "student",
  "guest",
  "passenger",
  "legal",
  "display",
] as const;

const RULES: readonly HintRule[] = [
  {
    kind: "card_number",
    words: ["pan", "cc", "ccn", "ccnum", "cardnumber", "cardno", "card"],
    inside: ["creditcard", "debitcard", "cardnumber", "cardnum", "primaryaccountnumber"],
  },
  { kind: "iban", inside: ["iban"] },
  { kind: "aba_routing", words: ["aba", "rtn"], inside: ["routing"] },
  { kind: "ssn", words: ["ssn", "ssnum"], inside: ["socialsecurity"] },
  { kind: "email", words: ["mail"], inside: ["email"] },
  { kind: "phone", words: ["tel", "cell", "fax", "msisdn", "mobile", "sms"], inside: ["phone", "whatsapp"] },
  { kind: "ip_address", words: ["ip", "ipv4", "ipv6", "ipaddr", "ipaddress"], pairs: [["remote", "addr"]], inside: ["ipaddress"] },
  { kind: "date_of_birth", words: ["dob", "born", "birthday", "birthdate"], inside: ["birth"] },
  {
    kind: "person_name",
    words: ["surname", "forename", "firstname", "lastname", "fullname", "givenname", "familyname", "middlename", "cardholder", "holdername"],
    pairs: PERSON_WORDS.map((w) => [w, "name"] as const),
  },
];

const PERSON_LINKED: readonly DetectorKind[] = ["email", "phone", "ssn", "date_of_birth", "person_name"];

/**
 * The kinds a column's name suggests. `siblings` are the other columns of the dataset: a column
 * called just `name` (or `name` + a person word) is a person's name when the dataset also holds
 * a person's e-mail, phone, SSN, birth date or other name parts — the context words of the row.
 */
export function columnHints(name: string, siblings: readonly string[] = []): Set<DetectorKind> {
  const hints = directHints(name);
  const words = nameWords(name);
  if (!hints.has("person_name") && words.length > 0 && words.every((w) => w === "name" || w === "names")) {
    const context = siblings.filter((s) => s !== name).some((s) => [...directHints(s)].some((k) => PERSON_LINKED.includes(k)));
    if (context) hints.add("person_name");
  }
  return hints;
}

function directHints(name: string): Set<DetectorKind> {
  const words = nameWords(name);
  const compact = words.join("");
  const out = new Set<DetectorKind>();
  for (const r of RULES) {
    const hit =
      (r.words?.some((w) => words.includes(w)) ?? false) ||
      (r.inside?.some((s) => compact.includes(s)) ?? false) ||
      (r.pairs?.some(([a, b]) => words.some((w, i) => w === a && words[i + 1] === b)) ?? false);
    if (hit) out.add(r.kind);
  }
  return out;
}

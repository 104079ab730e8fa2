import { describe, expect, test } from "vitest";
import { classifyColumns, wilsonLowerBound, type ColumnClassification } from "../../src/actions/security/classify.js";
import { maskText } from "../../src/actions/security/mask-text.js";
import { decide, loadPolicy, maskValue } from "../../src/actions/security/policy.js";

/** A seeded generator, so every run classifies the same columns. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(12);
const digits = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 10)).join("");
function pick(xs: string): string;
function pick<T>(xs: readonly T[]): T;
function pick<T>(xs: readonly T[] | string): T | string {
  return xs[Math.floor(rand() * xs.length)]!;
}
/** Append the Luhn check digit. */
function withCheck(body: string): string {
  for (let c = 0; c <= 9; c++) {
    const s = body + c;
    let sum = 0;
    for (let i = 0; i < s.length; i++) {
      let d = Number(s[s.length - 1 - i]);
      if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
      sum += d;
    }
    if (sum % 10 === 0) return s;
  }
  throw new Error("unreachable");
}
const card = () => {
  const [prefix, len] = pick([
    ["4", 16],
    ["4", 19],
    ["53", 16],
    ["2221", 16],
    ["2720", 16],
    ["37", 15],
    ["6011", 16],
    ["62", 19],
    ["3530", 16],
  ] as const);
  return withCheck(prefix + digits(len - prefix.length - 1));
};
const rows = <T>(n: number, f: (i: number) => T) => Array.from({ length: n }, (_, i) => f(i));
const byName = (cs: ColumnClassification[]) => Object.fromEntries(cs.map((c) => [c.name, c]));
const now = new Date("2026-06-01T00:00:00Z");

describe("Wilson lower bound", () => {
  test("known values", () => {
    expect(wilsonLowerBound(8, 10)).toBeCloseTo(0.4902, 4);
    expect(wilsonLowerBound(950, 1000)).toBeCloseTo(0.9346, 3);
    expect(wilsonLowerBound(0, 10)).toBe(0);
    expect(wilsonLowerBound(0, 0)).toBe(0);
  });
});

describe("labelled columns", () => {
  const N = 2_000;
  const FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Tim", "Barbara", "Dennis", "Frances"];
  const LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Berners-Lee", "Liskov", "Ritchie", "Allen"];
  const IBANS = ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NL91ABNA0417164300", "ES9121000418450200051332"];
  const columns = [
    { name: "pan", values: rows(N, card) },
    { name: "order_id", values: rows(N, () => "4" + digits(15)) }, // ~10% pass Luhn, all in Visa's range
    { name: "card_number", values: rows(N, () => pick("123456789") + digits(15)) }, // a hint, but random digits
    { name: "created_ms", values: rows(N, () => String(1_700_000_000_000 + Math.floor(rand() * 1e11))) },
    { name: "account_ref", values: rows(N, () => pick(["415", "212", "646", "312"]) + pick("23456789") + digits(6)) }, // phone-looking integers
    { name: "mobile", values: rows(N, () => pick(["415", "212", "646", "312"]) + pick("23456789") + digits(6)) }, // the same, named phone
    { name: "contact_phone", values: rows(N, () => `+1 ${pick(["415", "212", "646"])}-${pick("23456789")}${digits(2)}-${digits(4)}`) },
    { name: "email", values: rows(N, (i) => `${pick(FIRST).toLowerCase()}.${i}@example.com`) },
    { name: "customer_name", values: rows(N, () => `${pick(FIRST)} ${pick(LAST)}`) },
    { name: "product_name", values: rows(N, () => `${pick(["Blue", "Red", "Large"])} ${pick(["Widget", "Gadget", "Sprocket"])}`) },
    { name: "iban", values: rows(N, () => pick(IBANS)) },
    {
      name: "ssn",
      values: rows(N, (i) => (i % 20 === 0 ? "078-05-1120" : `${pick(["123", "456", "219"])}-${pick(["12", "45", "67"])}-${digits(3)}${pick("123456789")}`)),
    },
    { name: "birth_date", values: rows(N, () => `19${pick(["55", "68", "74", "83", "99"])}-0${pick("123456789")}-1${pick("0123456789")}`) },
    { name: "shipped_on", values: rows(N, () => `19${pick(["55", "68", "74", "83", "99"])}-0${pick("123456789")}-1${pick("0123456789")}`) },
    { name: "client_ip", values: rows(N, () => `203.0.113.${Math.floor(rand() * 256)}`) },
    {
      name: "notes",
      values: rows(N, (i) =>
        i % 50 === 7 ? `customer read out card ${card()} over the phone` : i % 3 === 0 ? null : `delivered to the back door, ticket ${digits(6)}`,
      ),
    },
    { name: "mostly_null_cards", values: rows(N, (i) => (i % 10 === 0 ? card() : null)) },
    { name: "contact", values: rows(N, (i) => (i % 2 ? `${pick(FIRST).toLowerCase()}@example.org` : `+44 20 7946 ${digits(4)}`)) },
  ];
  const got = byName(classifyColumns(columns, { now }));

  test("identifier columns by the share of valid values", () => {
    expect(got.pan).toMatchObject({ class: "card_number", share: 1, sampled: N, confident: true });
    expect(got.pan!.lowerBound).toBeGreaterThan(0.99);
    expect(got.email).toMatchObject({ class: "email", share: 1 });
    expect(got.iban).toMatchObject({ class: "iban", share: 1 });
    expect(got.contact_phone).toMatchObject({ class: "phone", share: 1 });
    expect(got.client_ip).toMatchObject({ class: "ip_address", share: 1 });
    // One row in twenty is 078-05-1120, voided by the SSA; the rest pass.
    expect(got.ssn).toMatchObject({ class: "ssn", share: 0.95 });
  });

  test("random 16-digit ids are not cards, even those that pass Luhn by chance", () => {
    expect(got.order_id!.class).toBe("none");
    expect(got.order_id!.nearest!.class).toBe("card_number");
    expect(got.order_id!.nearest!.share).toBeGreaterThan(0.07);
    expect(got.order_id!.nearest!.share).toBeLessThan(0.13);
    expect(got.order_id!.contains).toBeUndefined();
  });

  test("a name hint never overrides the values", () => {
    expect(got.card_number!.class).toBe("none");
    expect(got.card_number!.hinted).toBe(false);
  });

  test("epoch milliseconds and phone-looking integers are neither cards nor phones", () => {
    expect(got.created_ms).toMatchObject({ class: "none" });
    expect(got.created_ms!.nearest).toBeUndefined();
    expect(got.account_ref).toMatchObject({ class: "none" });
    // The same digits under a phone name: the bare form counts.
    expect(got.mobile).toMatchObject({ class: "phone", hinted: true });
  });

  test("names and birth dates need a name that says so", () => {
    expect(got.customer_name).toMatchObject({ class: "person_name", share: 1, hinted: true });
    expect(got.product_name!.class).toBe("none");
    expect(got.birth_date).toMatchObject({ class: "date_of_birth", share: 1 });
    expect(got.shipped_on!.class).toBe("none");
  });

  test("free text with an embedded card contains PII; it is not a card column", () => {
    const notes = got.notes!;
    expect(notes.class).toBe("free_text_with_pii");
    expect(notes.contains).toEqual([{ class: "card_number", rows: 40 }]);
    expect(notes.sampled).toBe(N - rows(N, (i) => i).filter((i) => i % 3 === 0 && i % 50 !== 7).length);
  });

  test("shares are of non-null rows", () => {
    expect(got.mostly_null_cards).toMatchObject({ class: "card_number", sampled: N / 10, share: 1 });
  });

  test("whole values of several kinds make a mixed column", () => {
    expect(got.contact!.class).toBe("mixed_pii");
    expect(got.contact!.contains!.map((c) => c.class).sort()).toEqual(["email", "phone"]);
  });
});

describe("thresholds and small samples", () => {
  test("a card column with 5% dirty values is still cards; 75% is not, unless named so", () => {
    const dirty = (share: number) => rows(1_000, (i) => (i < share * 1000 ? card() : "n/a"));
    const got = byName(
      classifyColumns([
        { name: "c95", values: dirty(0.95) },
        { name: "c75", values: dirty(0.75) },
        { name: "cc_number", values: dirty(0.75) },
      ]),
    );
    expect(got.c95!.class).toBe("card_number");
    expect(got.c75!.class).toBe("mixed_pii"); // far above chance: reported, not called a card column
    expect(got.c75!.contains).toEqual([{ class: "card_number", rows: 750 }]);
    expect(got.cc_number).toMatchObject({ class: "card_number", hinted: true });
  });

  test("five rows cannot prove a class: the share decides, marked not confident", () => {
    const [c] = classifyColumns([{ name: "x", values: rows(5, card) }]);
    expect(c).toMatchObject({ class: "card_number", share: 1, sampled: 5, confident: false });
    expect(c!.lowerBound).toBeLessThan(0.8);
  });

  test("typed columns: only what the type can hold is tested", () => {
    const got = byName(
      classifyColumns(
        [
          { name: "amount", type: "decimal", values: rows(100, () => "4111111111111111.00") },
          { name: "dob", type: "date", values: rows(100, () => "1980-05-17") },
          { name: "created", type: "timestamp", values: rows(100, () => "1980-05-17T10:00:00.000Z") },
        ],
        { now },
      ),
    );
    expect(got.amount!.class).toBe("none");
    expect(got.dob!.class).toBe("date_of_birth");
    expect(got.created!.class).toBe("none");
  });
});

describe("policy", () => {
  const cols = classifyColumns([
    { name: "pan", values: rows(100, card) },
    { name: "email", values: rows(100, (i) => `u${i}@example.com`) },
    { name: "notes", values: rows(100, (i) => (i === 3 ? "card 4111 1111 1111 1111 given" : "nothing to see here")) },
    { name: "contact", values: rows(100, (i) => (i % 2 ? `u${i}@example.org` : `+44 20 7946 ${String(1000 + i)}`)) },
    { name: "amount", values: rows(100, (i) => String(i)) },
  ]);

  test("defaults, and the events: a card in free text, a test PAN, an uncovered mixed column", async () => {
    const d = decide(await loadPolicy(undefined), cols);
    expect(Object.fromEntries(Object.entries(d.rules).map(([k, r]) => [k, r.action]))).toEqual({
      pan: "tokenize",
      email: "tokenize",
      notes: "mask",
      contact: "encrypt",
      amount: "allow",
    });
    expect(d.rules.email!.deterministic).toBe(true);
    expect(d.rules.notes!.maskKinds).toEqual(["card_number"]);
    expect(d.rules.contact!.from).toBe("uncovered");
    expect(d.uncovered).toEqual(["contact"]);
    const types = d.events.map((e) => `${e.type}:${e.column}`).sort();
    expect(types).toEqual(["card_outside_card_column:notes", "test_card_numbers:notes", "uncovered_column:contact"]);
    expect(JSON.stringify(d.events)).not.toContain("4111");
  });

  test("extends none: only the rules given; per-column rules win; a rule for a missing column is an event", async () => {
    const policy = await loadPolicy({
      extends: "none",
      classes: { card_number: "encrypt" },
      columns: { contact: "drop", email: { action: "mask", keepLast: 0 }, old_col: "drop" },
    });
    const d = decide(policy, cols);
    expect(d.rules.pan!.action).toBe("encrypt");
    expect(d.rules.email).toMatchObject({ action: "mask", keepLast: 0, from: "column" });
    expect(d.rules.contact!.action).toBe("drop");
    expect(d.rules.amount!.action).toBe("allow");
    expect(d.uncovered).toEqual(["notes"]);
    expect(d.events.map((e) => e.type)).toContain("policy_column_missing");
  });

  test("a bad policy is one sentence", async () => {
    await expect(loadPolicy({ classes: { card_number: "shred" } } as never)).rejects.toMatchObject({ code: "BAD_CONFIG" });
    await expect(loadPolicy("/nonexistent/policy.yaml")).rejects.toMatchObject({ code: "FILE_NOT_FOUND" });
  });

  test("masking keeps a card's last four digits and replaces other spans", () => {
    expect(maskValue("4111 1111 1111 1111", 4)).toBe("**** **** **** 1111");
    expect(maskText("card 4111 1111 1111 1111, mail jo@example.com", ["card_number", "email"])).toBe("card **** **** **** 1111, mail [email]");
    expect(maskText("card 4111 1111 1111 1111, mail jo@example.com", ["card_number"])).toBe("card **** **** **** 1111, mail jo@example.com");
  });
});

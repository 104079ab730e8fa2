/**
 * classify_sensitive_data over real datasets: JSON pages collected from a local HTTP API by the
 * collect step of a run, a CSV file collected and typed by the convert step, and an NDJSON
 * dataset of two parts written by hand. Checks the outputs, the classification document, the
 * dataset passed on, and that no value reaches the outputs or the state store.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { stringify } from "yaml";
import { runDetail } from "../../src/engine/index.js";
import { readDataset, writeDataset } from "../../src/actions/batch/dataset.js";
import { classifySensitiveData } from "../../src/actions/security/classify-action.js";
import { readClassification, type ClassificationDocument } from "../../src/actions/security/classification.js";
import { actionContext, failure, runWorkflow, scratch, testEnv, workflow, type TestEnv } from "../helpers.js";

const tmp = scratch();

// Fixed values the test searches for afterwards: none may appear in outputs or the store.
// All but the first are published test numbers.
const CARDS = ["4532015112830366", "5555555555554444", "2223003122003222", "378282246310005", "6011111111111117"];
const NOTE_CARD = "4916338506082832";
const FIRST = ["Ada", "Grace", "Alan", "Katherine", "Linus"];
const LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Torvalds"];
const IBANS = ["DE89370400440532013000", "GB82WEST12345698765432", "NL91ABNA0417164300"];

function account(i: number) {
  return {
    id: String(4_000_000_000_000_000 + i * 7_919),
    holder_name: `${FIRST[i % 5]} ${LAST[(i * 3) % 5]}`,
    email: `${FIRST[i % 5]!.toLowerCase()}.${i}@example.com`,
    phone: `+1 415-555-${String(1000 + i).slice(-4)}`,
    iban: IBANS[i % 3],
    card_number: CARDS[i % 5],
    created_ms: 1_760_000_000_000 + i * 86_400_123,
    notes: i % 10 === 4 ? `customer read card ${NOTE_CARD} over the phone` : `order ${i} shipped to the back door`,
    address: { city: ["Oslo", "Lyon", "Leeds"][i % 3], zip: String(10_000 + i) },
  };
}

let server: Server;
let url = "";
let env: TestEnv;
beforeAll(async () => {
  server = createServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ data: Array.from({ length: 200 }, (_, i) => account(i)) }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/accounts`;
  env = testEnv();
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await env.cleanup();
});

const outputsOf = async (runId: string) => Object.fromEntries((await runDetail(env.store, runId)).steps.map((s) => [s.name, s]));
const byName = (cols: unknown) => Object.fromEntries((cols as { name: string }[]).map((c) => [c.name, c])) as Record<string, Record<string, unknown>>;

function expectNoValues(text: string, where: string): void {
  for (const v of [...CARDS, NOTE_CARD, "ada.0@example.com", "DE89370400440532013000", "415-555-1000", "Ada Lovelace"])
    expect(text.includes(v), `${v} in ${where}`).toBe(false);
}

describe("after the collect step of a run (JSON pages from an HTTP API)", () => {
  test("every column classified, the dataset passed on with the classification, no value stored", async () => {
    const wf = workflow(
      {
        steps: [
          { name: "collect", agent: "data-collector", action: "collect_data_from_source", with: { source: url, recordsPath: "data" } },
          {
            name: "classify",
            agent: "data-security",
            action: "classify_sensitive_data",
            dependsOn: ["collect"],
            with: { dataset: "${{ steps.collect.outputs.dataset }}" },
          },
        ],
      },
      env.actions,
    );
    const run = await runWorkflow(env, wf);
    const steps = await outputsOf(run.id);
    expect(run.status, JSON.stringify(steps.classify?.error)).toBe("succeeded");
    const out = steps.classify!.outputs!;
    const cols = byName(out.columns);
    expect(Object.keys(cols).sort()).toEqual([
      "address.city",
      "address.zip",
      "card_number",
      "created_ms",
      "email",
      "holder_name",
      "iban",
      "id",
      "notes",
      "phone",
    ]);
    expect(cols.card_number).toMatchObject({ class: "card_number", share: 1, sampled: 200, action: "tokenize", testPans: 160 });
    expect(cols.email).toMatchObject({ class: "email", action: "tokenize" });
    expect(cols.phone).toMatchObject({ class: "phone", action: "encrypt" });
    expect(cols.iban).toMatchObject({ class: "iban", action: "encrypt" });
    expect(cols.holder_name).toMatchObject({ class: "person_name", action: "encrypt" });
    expect(cols.notes).toMatchObject({ class: "free_text_with_pii", action: "mask", contains: [{ class: "card_number", rows: 20 }] });
    for (const c of ["id", "created_ms", "address.city", "address.zip"]) expect(cols[c], c).toMatchObject({ class: "none", action: "allow" });
    expect(out.rowsSampled).toBe(200);
    expect((out.events as { type: string; column: string }[]).map((e) => `${e.type}:${e.column}`).sort()).toEqual([
      "card_outside_card_column:notes",
      "test_card_numbers:card_number",
    ]);

    // The dataset passed on: the collect step's parts, with the classification beside it.
    const ds = await readDataset(out.dataset as string);
    const collected = await readDataset(steps.collect!.outputs!.dataset as string);
    expect(ds.step).toBe("classify");
    expect(ds.parts).toEqual(collected.parts);
    expect(ds.meta!.classification).toBe(out.classification);
    const doc = (await readClassification(ds))!;
    expect(doc.sample).toEqual({ requested: 10_000, rows: 200 });
    expect(doc.columns.find((c) => c.name === "notes")!.rule).toEqual({ action: "mask", keepLast: 4, maskKinds: ["card_number"], from: "class" });

    // Counts and classes only: no value in the outputs, the document, or the state store's files.
    expectNoValues(JSON.stringify(out), "outputs");
    expectNoValues(readFileSync(out.classification as string, "utf8"), "classification.json");
    for (const f of ["sluice.db", "sluice.db-wal"]) if (existsSync(join(env.home, f))) expectNoValues(readFileSync(join(env.home, f)).toString("latin1"), f);
    const log = join(env.home, "runs", run.id, "logs", "classify.1.log");
    expect(readFileSync(log, "utf8")).toContain("security event");
    expectNoValues(readFileSync(log, "utf8"), "the step's log");
  });
});

describe("after the convert step (a typed CSV dataset), with a policy file", () => {
  test("typed columns classified; failOnUnclassified fails naming the uncovered columns", async () => {
    const data = tmp("pii-csv-");
    const csv = join(data, "customers.csv");
    const lines = ["customer_id,first_name,last_name,email,ssn,birth_date,signup_at,contact,balance"];
    for (let i = 0; i < 120; i++)
      lines.push(
        [
          1000 + i,
          FIRST[i % 5],
          LAST[i % 5],
          `c${i}@example.org`,
          `${123 + (i % 500)}-45-${String(1000 + i)}`,
          `19${60 + (i % 40)}-0${1 + (i % 9)}-1${i % 10}`,
          `2026-01-0${1 + (i % 9)}T10:00:00Z`,
          i % 2 ? `c${i}@example.net` : `+44 20 7946 ${String(1000 + i)}`,
          `${i}.50`,
        ].join(","),
      );
    await writeFile(csv, lines.join("\n") + "\n");
    const policy = join(data, "policy.yaml");
    await writeFile(policy, stringify({ extends: "default", classes: { ssn: "drop" }, failOnUnclassified: true }));
    const schema = {
      columns: [
        { name: "customer_id", type: "integer" },
        { name: "first_name", type: "string" },
        { name: "last_name", type: "string" },
        { name: "email", type: "string" },
        { name: "ssn", type: "string" },
        { name: "birth_date", type: "date" },
        { name: "signup_at", type: "timestamp" },
        { name: "contact", type: "string" },
        { name: "balance", type: "decimal", scale: 2 },
      ],
      key: ["customer_id"],
    };
    const steps = (policyRef: string | Record<string, unknown>) => [
      { name: "collect", agent: "data-collector", action: "collect_data_from_source", with: { source: csv } },
      {
        name: "convert",
        agent: "data-converter",
        action: "convert_to_standard_format",
        dependsOn: ["collect"],
        with: { dataset: "${{ steps.collect.outputs.dataset }}", schema },
      },
      {
        name: "classify",
        agent: "data-security",
        action: "classify_sensitive_data",
        dependsOn: ["convert"],
        with: { dataset: "${{ steps.convert.outputs.dataset }}", policy: policyRef },
      },
    ];
    const failed = await runWorkflow(env, workflow({ steps: steps(policy) }, env.actions));
    const f = await outputsOf(failed.id);
    expect(failed.status).toBe("failed");
    expect(f.classify!.error).toMatchObject({ code: "BAD_INPUT" });
    expect(f.classify!.error!.message).toContain("sensitive column contact");
    expect(f.classify!.attempts).toHaveLength(1); // not retryable

    // Naming the column in the policy covers it.
    const ok = await runWorkflow(
      env,
      workflow({ steps: steps({ classes: { ssn: "drop" }, columns: { contact: "encrypt" }, failOnUnclassified: true }) }, env.actions),
    );
    const s = await outputsOf(ok.id);
    expect(ok.status, JSON.stringify(s.classify?.error)).toBe("succeeded");
    const cols = byName(s.classify!.outputs!.columns);
    expect(cols.first_name).toMatchObject({ class: "person_name", action: "encrypt" });
    expect(cols.last_name).toMatchObject({ class: "person_name" });
    expect(cols.email).toMatchObject({ class: "email" });
    expect(cols.ssn).toMatchObject({ class: "ssn", action: "drop" });
    expect(cols.birth_date).toMatchObject({ class: "date_of_birth", action: "encrypt" });
    expect(cols.contact).toMatchObject({ class: "mixed_pii", action: "encrypt" });
    for (const c of ["customer_id", "signup_at", "balance"]) expect(cols[c], c).toMatchObject({ class: "none", action: "allow" });
    const ds = await readDataset(s.classify!.outputs!.dataset as string);
    expect(ds.typed).toBe(true);
    expect(ds.columns!.map((c) => c.name)).toEqual(schema.columns.map((c) => c.name));
  });
});

describe("a hand-written NDJSON dataset of two parts", () => {
  test("the sample spreads over the parts; inputs are checked", async () => {
    const dir = tmp("pii-ndjson-");
    const part = async (name: string, rows: Record<string, unknown>[]) => {
      const path = join(dir, name);
      await writeFile(path, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
      return { path, format: "ndjson" as const, source: name, rows: rows.length };
    };
    // The first part holds no cards at all: a sample from the front would miss the second part's.
    const a = await part(
      "a.ndjson",
      Array.from({ length: 500 }, (_, i) => ({ ref: `A-${i}`, pay: `n/a ${i}` })),
    );
    const b = await part(
      "b.ndjson",
      Array.from({ length: 500 }, (_, i) => ({ ref: `B-${i}`, pay: CARDS[i % 5] })),
    );
    const manifest = await writeDataset(dir, { step: "hand", typed: false, parts: [a, b], quarantine: [] });
    const ctx = actionContext({ artifactsDir: tmp("pii-art-"), step: "classify" });
    const out = await classifySensitiveData({ dataset: manifest, sample: 200 }, ctx);
    const pay = byName(out.columns).pay!;
    expect(pay.sampled).toBe(200);
    expect(pay).toMatchObject({ class: "mixed_pii", contains: [{ class: "card_number", rows: 100 }] });
    const doc = JSON.parse(readFileSync(out.classification as string, "utf8")) as ClassificationDocument;
    expect(doc.events.map((e) => e.type).sort()).toEqual(["card_outside_card_column", "test_card_numbers", "uncovered_column"]);

    expect((await failure(classifySensitiveData({ dataset: manifest, region: "ZZ" }, ctx))).code).toBe("BAD_CONFIG");
    expect((await failure(classifySensitiveData({ dataset: join(dir, "missing.json") }, ctx))).code).toBe("BAD_INPUT");
  });
});

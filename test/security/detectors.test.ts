import { describe, expect, test } from "vitest";
import {
  TEST_PANS,
  cardIssuer,
  findSensitiveSpans,
  isAbaRouting,
  isCardNumber,
  isEmail,
  isIban,
  isIpAddress,
  isPhone,
  isPlausibleBirthDate,
  isPlausibleName,
  isSsn,
  isTestPan,
  luhn,
} from "../../src/actions/security/detectors.js";
import { columnHints } from "../../src/actions/security/hints.js";

describe("payment cards", () => {
  test.each([
    ["4111111111111111", "visa"],
    ["4532015112830366", "visa"],
    ["4222222222222", "visa"], // 13 digits
    ["4111111111111111110", "visa"], // 19 digits
    ["5555555555554444", "mastercard"],
    ["2223003122003222", "mastercard"], // 2-series, low end
    ["2222400070000005", "mastercard"],
    ["378282246310005", "amex"],
    ["6011111111111117", "discover"],
    ["3530111333300000", "jcb"],
    ["30569309025904", "diners"],
    ["38520000023237", "diners"],
    ["6200000000000005", "unionpay"],
    ["6205500000000000004", "unionpay"], // 19 digits
    ["6759649826438453", "maestro"],
  ])("%s is a %s card", (pan, issuer) => {
    expect(isCardNumber(pan)).toBe(true);
    expect(cardIssuer(pan)).toBe(issuer);
  });

  test("written with spaces or hyphens between groups", () => {
    expect(isCardNumber("4111 1111 1111 1111")).toBe(true);
    expect(isCardNumber("4111-1111-1111-1111")).toBe(true);
    expect(isCardNumber("3782 822463 10005")).toBe(true);
    expect(isCardNumber("4111  1111 1111 1111")).toBe(false);
    expect(isCardNumber("4111.1111.1111.1111")).toBe(false);
  });

  test.each([
    ["4111111111111112", "Luhn fails"],
    ["2721000000000004", "Luhn holds, above the 2-series range"],
    ["2220000000000000", "Luhn holds, below the 2-series range"],
    ["3782822463000005", "an Amex prefix at 16 digits"],
    ["5555555555000000000", "a Mastercard prefix at 19 digits"],
    ["453200000000008", "Visa at 15 digits"],
    ["1234567812345670", "Luhn holds, no issuer starts with 1"],
    ["0000000000000000", "all zeros"],
    ["501800000009", "Maestro at 12 digits (below 13)"],
    ["41111111111111111111", "20 digits"],
  ])("%s is not a card (%s)", (pan) => {
    expect(isCardNumber(pan)).toBe(false);
  });

  test("the published test numbers are cards, and tagged", () => {
    for (const pan of TEST_PANS) {
      expect(luhn(pan), pan).toBe(true);
      expect(isCardNumber(pan), pan).toBe(true);
    }
    expect(isTestPan("4111 1111 1111 1111")).toBe(true);
    expect(isTestPan("4532015112830366")).toBe(false);
  });

  test("found in free text, not in ids glued to letters", () => {
    const text = "Paid with 4111 1111 1111 1111 exp 12 25; refund to 5555555555554444.";
    const spans = findSensitiveSpans(text).filter((s) => s.kind === "card_number");
    expect(spans.map((s) => text.slice(s.start, s.end))).toEqual(["4111 1111 1111 1111", "5555555555554444"]);
    expect(spans[0]!.testPan).toBe(true);
    expect(findSensitiveSpans("ticket ref 12 4532015112830366 closed").map((s) => s.kind)).toEqual(["card_number"]);
    expect(findSensitiveSpans("order ORD-4532015112830366 and id4532015112830366 shipped")).toEqual([]);
    expect(findSensitiveSpans("order 4532015112830367 shipped")).toEqual([]);
  });
});

describe("IBAN", () => {
  test.each([
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "ES9121000418450200051332",
    "IT60X0542811101000000123456",
    "BE68539007547034",
    "GB82 WEST 1234 5698 7654 32",
    "de89 3704 0044 0532 0130 00",
  ])("%s is an IBAN", (v) => expect(isIban(v)).toBe(true));

  test.each([
    ["DE88370400440532013000", "wrong check digits"],
    ["GB82WEST12345698765433", "wrong account digit"],
    ["DE8937040044053201300", "one character short for DE"],
    ["NL91ABNA04171643001", "one character long for NL"],
    ["XX89370400440532013000", "no such country"],
  ])("%s is not an IBAN (%s)", (v) => expect(isIban(v)).toBe(false));

  test("found in text, cut at the country's length", () => {
    const text = "Please pay to DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX today";
    const s = findSensitiveSpans(text);
    expect(s.map((x) => [x.kind, text.slice(x.start, x.end)])).toEqual([["iban", "DE89 3704 0044 0532 0130 00"]]);
  });
});

describe("ABA routing numbers", () => {
  test.each(["021000021", "011000015", "121000248", "026009593"])("%s is a routing number", (v) => expect(isAbaRouting(v)).toBe(true));
  test.each([
    ["021000022", "checksum fails"],
    ["500000005", "checksum holds, 50 is no Federal Reserve prefix"],
    ["000000000", "zeros"],
    ["02100002", "eight digits"],
  ])("%s is not (%s)", (v) => expect(isAbaRouting(v)).toBe(false));
  test("in text only after a word that says so", () => {
    expect(findSensitiveSpans("routing number: 021000021").map((s) => s.kind)).toEqual(["aba_routing"]);
    expect(findSensitiveSpans("invoice 021000021 paid")).toEqual([]);
  });
});

describe("US SSN", () => {
  test("area, group and serial rules", () => {
    expect(isSsn("123-45-6789")).toBe(true);
    expect(isSsn("899 45 6789")).toBe(true);
    for (const bad of ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000", "078-05-1120", "123-45-678", "123-456789"])
      expect(isSsn(bad), bad).toBe(false);
  });
  test("bare nine digits only in the loose form", () => {
    expect(isSsn("123456789")).toBe(false);
    expect(isSsn("123456789", { loose: true })).toBe(true);
    expect(isSsn("666456789", { loose: true })).toBe(false);
  });
});

describe("e-mail, phones, IP addresses", () => {
  test("e-mail", () => {
    expect(isEmail("jane.doe+news@example.co.uk")).toBe(true);
    for (const bad of ["jane@localhost", "a@b.c", "jane..doe@example.com", "@example.com", "jane doe@example.com", "jane@exa_mple.com"])
      expect(isEmail(bad), bad).toBe(false);
  });

  test("phones as people write them, in a default region", () => {
    expect(isPhone("+1 415-555-2671")).toBe(true);
    expect(isPhone("(415) 555-2671")).toBe(true);
    expect(isPhone("+44 20 7946 0958")).toBe(true);
    expect(isPhone("020 7946 0958")).toBe(false); // a national GB number read as US
    expect(isPhone("020 7946 0958", { region: "GB" })).toBe(true);
    expect(isPhone("+49 30 901820")).toBe(true);
    expect(isPhone("123-456-7890")).toBe(false); // no US area code starts with 1
  });

  test("bare digit runs are phones only in the loose form", () => {
    expect(isPhone("4155552671")).toBe(false);
    expect(isPhone("4155552671", { loose: true })).toBe(true);
    expect(isPhone("1717171717171", { loose: true })).toBe(false); // epoch milliseconds
  });

  test("phones in text: formatted, or after a word that says so", () => {
    expect(findSensitiveSpans("ring +1 415-555-2671 after 5").map((s) => s.kind)).toEqual(["phone"]);
    expect(findSensitiveSpans("call 4155552671").map((s) => s.kind)).toEqual(["phone"]);
    expect(findSensitiveSpans("batch 4155552671 done")).toEqual([]);
  });

  test("IP addresses", () => {
    for (const ok of ["192.168.0.1", "10.0.0.255", "2001:db8::1", "::1", "fe80::1ff:fe23:4567:890a"]) expect(isIpAddress(ok), ok).toBe(true);
    for (const bad of ["256.1.1.1", "1.2.3", "09:30:00", "::", "1.2.3.4.5"]) expect(isIpAddress(bad), bad).toBe(false);
    const text = "login from 203.0.113.7 at 09:30:00 via 2001:db8::1, version 1.2.3";
    expect(findSensitiveSpans(text).map((s) => text.slice(s.start, s.end))).toEqual(["203.0.113.7", "2001:db8::1"]);
  });
});

describe("dates of birth and names", () => {
  const now = new Date("2026-06-01T00:00:00Z");
  test("a valid date at an age of 0 to 120 years", () => {
    expect(isPlausibleBirthDate("1985-02-11", { now })).toBe(true);
    expect(isPlausibleBirthDate("31/12/1990", { now })).toBe(true);
    expect(isPlausibleBirthDate("1850-01-01", { now })).toBe(false);
    expect(isPlausibleBirthDate("2027-01-01", { now })).toBe(false);
    expect(isPlausibleBirthDate("1990-02-30", { now })).toBe(false);
  });
  test("text that can be a name", () => {
    for (const ok of ["Ada Lovelace", "María José O'Neil", "Jean-Luc", "Nguyễn Văn An"]) expect(isPlausibleName(ok), ok).toBe(true);
    for (const bad of ["ACME-123", "x", "jane@example.com", "one two three four five six"]) expect(isPlausibleName(bad), bad).toBe(false);
  });
  test("column names that say what a column holds", () => {
    expect([...columnHints("card_number")]).toEqual(["card_number"]);
    expect([...columnHints("customerEmail")]).toEqual(["email"]);
    expect([...columnHints("HolderIBAN")]).toEqual(["iban"]);
    expect([...columnHints("first_name")]).toEqual(["person_name"]);
    expect([...columnHints("customer_name")]).toEqual(["person_name"]);
    expect([...columnHints("dob")]).toEqual(["date_of_birth"]);
    expect([...columnHints("client_ip")]).toEqual(["ip_address"]);
    expect([...columnHints("mobilePhone")]).toEqual(["phone"]);
    expect([...columnHints("product_name")]).toEqual([]);
    expect([...columnHints("description")]).toEqual([]);
    expect([...columnHints("name")]).toEqual([]);
    expect([...columnHints("name", ["name", "email", "amount"])]).toEqual(["person_name"]);
  });
});

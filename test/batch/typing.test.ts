import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, describe, expect, it } from "vitest";
import type { z } from "zod";
import { type TargetColumn, TargetSchema } from "../../src/actions/inputs.js";
import type { TargetSchemaSpec, TypedValue } from "../../src/actions/batch/model.js";
import { compileSchema, compileValueParser, formatProblem, Invalid } from "../../src/actions/batch/typing.js";
import { readCsv } from "../../src/formats/csv.js";

type ColumnInput = Omit<z.input<typeof TargetColumn>, "name">;

/** Types one value in a one-column schema (as a user writes it: through the zod schema). */
function typed(col: ColumnInput, value: unknown): TypedValue | string[] {
  const schema = compileSchema(TargetSchema.parse({ columns: [{ name: "c", ...col }] }));
  const r = schema.convert(value === undefined ? {} : { c: value });
  return r.ok ? r.row.c! : r.reasons;
}

/** Several inputs → their outputs (a typed value, or the reasons). */
function table(col: ColumnInput, inputs: unknown[]): [unknown, TypedValue | string[]][] {
  const schema = compileSchema(TargetSchema.parse({ columns: [{ name: "c", ...col }] }));
  return inputs.map((v) => {
    const r = schema.convert({ c: v });
    return [v, r.ok ? r.row.c! : r.reasons];
  });
}

describe("string", () => {
  it("keeps strings as given, converts other JSON values to text", () => {
    expect(table({ type: "string" }, ["AAPL", "  padded  ", "   ", 42, 1.5, true, 12n, { a: 1 }, [1, "x"], new Date("2026-11-02T09:30:00.125Z")])).toEqual([
      ["AAPL", "AAPL"],
      ["  padded  ", "  padded  "],
      ["   ", "   "],
      [42, "42"],
      [1.5, "1.5"],
      [true, "true"],
      [12n, "12"],
      [{ a: 1 }, '{"a":1}'],
      [[1, "x"], '[1,"x"]'],
      [new Date("2026-11-02T09:30:00.125Z"), "2026-11-02T09:30:00.125Z"],
    ]);
  });

  it("trims only with trim: true; a string that trims to nothing is empty", () => {
    expect(typed({ trim: true }, "  AAPL \t")).toBe("AAPL");
    expect(typed({ trim: true }, "   ")).toBe(null);
    expect(typed({ trim: true, required: true }, "   ")).toEqual(["c: required but empty"]);
    expect(typed({}, "")).toBe(null);
  });
});

describe("integer", () => {
  it("accepts plain digits, signs, leading zeros, safe JS integers and bigints, canonically", () => {
    expect(
      table({ type: "integer" }, [
        "42",
        "-7",
        "+3",
        "007",
        "-007",
        "-0",
        "0",
        " 12 ",
        42,
        -0,
        -17,
        12n,
        "9223372036854775807",
        "-9223372036854775808",
        9007199254740991,
      ]),
    ).toEqual([
      ["42", "42"],
      ["-7", "-7"],
      ["+3", "3"],
      ["007", "7"],
      ["-007", "-7"],
      ["-0", "0"],
      ["0", "0"],
      [" 12 ", "12"],
      [42, "42"],
      [-0, "0"],
      [-17, "-17"],
      [12n, "12"],
      ["9223372036854775807", "9223372036854775807"],
      ["-9223372036854775808", "-9223372036854775808"],
      [9007199254740991, "9007199254740991"],
    ]);
  });

  it("rejects fractions, exponents, separators, floats, unsafe numbers and out-of-range values", () => {
    expect(
      table({ type: "integer" }, [
        "1,000",
        "1e3",
        "1.5",
        "42.0",
        "abc",
        "-",
        "+",
        "1 000",
        1.5,
        2 ** 53,
        Number.NaN,
        true,
        "9223372036854775808",
        "-9223372036854775809",
        "99999999999999999999",
        2n ** 63n,
      ]),
    ).toEqual([
      ["1,000", ['c: "1,000" is not a valid integer (thousands separators are not accepted)']],
      ["1e3", ['c: "1e3" is not a valid integer (exponent notation is not accepted)']],
      ["1.5", ['c: "1.5" is not a valid integer (a fraction)']],
      ["42.0", ['c: "42.0" is not a valid integer (a fraction)']],
      ["abc", ['c: "abc" is not a valid integer']],
      ["-", ['c: "-" is not a valid integer']],
      ["+", ['c: "+" is not a valid integer']],
      ["1 000", ['c: "1 000" is not a valid integer (thousands separators are not accepted)']],
      [1.5, ["c: 1.5 is not an integer"]],
      [2 ** 53, ["c: 9007199254740992 is beyond 2^53 and may already have been rounded; send it as a string"]],
      [Number.NaN, ["c: NaN is not a valid integer"]],
      [true, ["c: true is not a valid integer"]],
      ["9223372036854775808", ["c: 9223372036854775808 is out of the 64-bit integer range"]],
      ["-9223372036854775809", ["c: -9223372036854775809 is out of the 64-bit integer range"]],
      ["99999999999999999999", ["c: 99999999999999999999 is out of the 64-bit integer range"]],
      [2n ** 63n, ["c: 9223372036854775808 is out of the 64-bit integer range"]],
    ]);
  });

  it("names the column in the range message", () => {
    const s = compileSchema(TargetSchema.parse({ columns: [{ name: "quantity", type: "integer" }] }));
    expect(s.convert({ quantity: "99999999999999999999" })).toEqual({
      ok: false,
      reasons: ["quantity: 99999999999999999999 is out of the 64-bit integer range"],
    });
  });
});

describe("decimal", () => {
  it("pads to the scale exactly, never through a float", () => {
    expect(
      table({ type: "decimal", scale: 4 }, [
        "189.25",
        "0.1",
        "-0.5",
        ".5",
        "5.",
        "+1.0",
        "007.10",
        "-0.0000",
        "12345678901234567890.1234",
        "1.23450",
        0.1,
        189.25,
        5,
        12n,
        "1.5E-3",
        " 2.5 ",
      ]),
    ).toEqual([
      ["189.25", "189.2500"],
      ["0.1", "0.1000"],
      ["-0.5", "-0.5000"],
      [".5", "0.5000"],
      ["5.", "5.0000"],
      ["+1.0", "1.0000"],
      ["007.10", "7.1000"],
      ["-0.0000", "0.0000"],
      ["12345678901234567890.1234", "12345678901234567890.1234"],
      ["1.23450", "1.2345"],
      [0.1, "0.1000"],
      [189.25, "189.2500"],
      [5, "5.0000"],
      [12n, "12.0000"],
      ["1.5E-3", "0.0015"],
      [" 2.5 ", "2.5000"],
    ]);
  });

  it("keeps the input's own fraction digits without a scale", () => {
    expect(
      table({ type: "decimal" }, [
        "189.25",
        "189.2500",
        "5.",
        ".5",
        "-0.0",
        "00012",
        "+1.0",
        1e21,
        1e-7,
        0.30000000000000004,
        "1.5e3",
        "-2.50E+1",
        "123456789012345678901234567890.12345678",
      ]),
    ).toEqual([
      ["189.25", "189.25"],
      ["189.2500", "189.2500"],
      ["5.", "5"],
      [".5", "0.5"],
      ["-0.0", "0.0"],
      ["00012", "12"],
      ["+1.0", "1.0"],
      [1e21, "1000000000000000000000"],
      [1e-7, "0.0000001"],
      [0.30000000000000004, "0.30000000000000004"],
      ["1.5e3", "1500"],
      ["-2.50E+1", "-25.0"],
      ["123456789012345678901234567890.12345678", "123456789012345678901234567890.12345678"],
    ]);
  });

  it("rejects extra decimal places, more than 38 digits and non-numbers", () => {
    expect(
      table({ type: "decimal", scale: 4 }, [
        "1.23456",
        "abc",
        "1,5",
        ".",
        "-",
        "1.2.3",
        "1e",
        Number.POSITIVE_INFINITY,
        true,
        "123456789012345678901234567890123456.5",
      ]),
    ).toEqual([
      ["1.23456", ["c: 1.23456 has more than 4 decimal places"]],
      ["abc", ['c: "abc" is not a valid decimal']],
      ["1,5", ['c: "1,5" is not a valid decimal (use "." as the decimal point, no thousands separators)']],
      [".", ['c: "." is not a valid decimal']],
      ["-", ['c: "-" is not a valid decimal']],
      ["1.2.3", ['c: "1.2.3" is not a valid decimal']],
      ["1e", ['c: "1e" is not a valid decimal']],
      [Number.POSITIVE_INFINITY, ["c: Infinity is not a valid decimal"]],
      [true, ["c: true is not a valid decimal"]],
      ["123456789012345678901234567890123456.5", ["c: 123456789012345678901234567890123456.5 has more than 38 digits of precision"]],
    ]);
    expect(typed({ type: "decimal", scale: 1 }, 0.25)).toEqual(["c: 0.25 has more than 1 decimal place"]);
    expect(typed({ type: "decimal", scale: 0 }, "5.0")).toBe("5");
  });
});

describe("boolean", () => {
  it("accepts the usual spellings in any case", () => {
    const yes = ["true", "TRUE", "True", "t", "T", "yes", "Yes", "y", "Y", "1", " true ", true, 1];
    const no = ["false", "FALSE", "f", "F", "no", "NO", "n", "N", "0", false, 0];
    expect(yes.map((v) => typed({ type: "boolean" }, v))).toEqual(yes.map(() => true));
    expect(no.map((v) => typed({ type: "boolean" }, v))).toEqual(no.map(() => false));
  });

  it("rejects anything else", () => {
    expect(table({ type: "boolean" }, ["maybe", "tru", "2", 2, "on"])).toEqual([
      ["maybe", ['c: "maybe" is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)']],
      ["tru", ['c: "tru" is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)']],
      ["2", ['c: "2" is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)']],
      [2, ["c: 2 is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)"]],
      ["on", ['c: "on" is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)']],
    ]);
  });
});

describe("timestamp", () => {
  it("normalises ISO-8601 / RFC 3339 with offsets to UTC", () => {
    expect(
      table({ type: "timestamp" }, [
        "2026-11-02T09:30:00.125Z",
        "2026-11-02T09:30:00Z",
        "2026-11-02 09:30:00",
        "2026-11-02t09:30:00z",
        "2026-11-02T09:30",
        "2026-11-02",
        "2026-11-02T09:30:00+01:00",
        "2026-11-02T09:30:00-0530",
        "2026-11-02T01:30:00+05",
        "2026-01-01T00:30:00+01:00",
        "2025-12-31T23:30:00-01:00",
        " 2026-11-02T09:30:00.1Z ",
        "2026-11-02T09:30:00.12+00:00",
      ]),
    ).toEqual([
      ["2026-11-02T09:30:00.125Z", "2026-11-02T09:30:00.125Z"],
      ["2026-11-02T09:30:00Z", "2026-11-02T09:30:00.000Z"],
      ["2026-11-02 09:30:00", "2026-11-02T09:30:00.000Z"],
      ["2026-11-02t09:30:00z", "2026-11-02T09:30:00.000Z"],
      ["2026-11-02T09:30", "2026-11-02T09:30:00.000Z"],
      ["2026-11-02", "2026-11-02T00:00:00.000Z"],
      ["2026-11-02T09:30:00+01:00", "2026-11-02T08:30:00.000Z"],
      ["2026-11-02T09:30:00-0530", "2026-11-02T15:00:00.000Z"],
      ["2026-11-02T01:30:00+05", "2026-11-01T20:30:00.000Z"],
      ["2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000Z"],
      ["2025-12-31T23:30:00-01:00", "2026-01-01T00:30:00.000Z"],
      [" 2026-11-02T09:30:00.1Z ", "2026-11-02T09:30:00.100Z"],
      ["2026-11-02T09:30:00.12+00:00", "2026-11-02T09:30:00.120Z"],
    ]);
  });

  it("keeps microseconds, truncates beyond them, and has one text per instant", () => {
    expect(
      table({ type: "timestamp" }, [
        "2026-11-02T09:30:00.125001Z",
        "2026-11-02T09:30:00.1250019Z",
        "2026-11-02T09:30:00.123456789Z",
        "2026-11-02T09:30:00.125000Z",
        "2026-11-02T09:30:00.000001+02:00",
        "2026-12-31T23:59:59.9999999Z",
        "2026-11-02T09:30:00.1234567891Z",
      ]),
    ).toEqual([
      ["2026-11-02T09:30:00.125001Z", "2026-11-02T09:30:00.125001Z"],
      ["2026-11-02T09:30:00.1250019Z", "2026-11-02T09:30:00.125001Z"],
      ["2026-11-02T09:30:00.123456789Z", "2026-11-02T09:30:00.123456Z"],
      ["2026-11-02T09:30:00.125000Z", "2026-11-02T09:30:00.125Z"],
      ["2026-11-02T09:30:00.000001+02:00", "2026-11-02T07:30:00.000001Z"],
      ["2026-12-31T23:59:59.9999999Z", "2026-12-31T23:59:59.999999Z"],
      ["2026-11-02T09:30:00.1234567891Z", ['c: "2026-11-02T09:30:00.1234567891Z" is not a valid timestamp (expected YYYY-MM-DDTHH:MM:SS[.fff][Z|±hh:mm])']],
    ]);
  });

  it("validates the calendar: months, days, Feb 29 on leap years only, hours, minutes, seconds", () => {
    expect(
      table({ type: "timestamp" }, [
        "2024-02-29T12:00:00Z",
        "2000-02-29T12:00:00Z",
        "2025-02-29T12:00:00Z",
        "1900-02-29T12:00:00Z",
        "2026-13-01",
        "2026-00-10T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-11-02T24:00:00Z",
        "2026-11-02T09:60:00Z",
        "2026-11-02T09:30:60Z",
        "2026-11-02T09:30:00+25:00",
        "02/11/2026",
        "yesterday",
      ]),
    ).toEqual([
      ["2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000Z"],
      ["2000-02-29T12:00:00Z", "2000-02-29T12:00:00.000Z"],
      ["2025-02-29T12:00:00Z", ['c: "2025-02-29T12:00:00Z" is not a valid timestamp (2025-02 has no day 29)']],
      ["1900-02-29T12:00:00Z", ['c: "1900-02-29T12:00:00Z" is not a valid timestamp (1900-02 has no day 29)']],
      ["2026-13-01", ['c: "2026-13-01" is not a valid timestamp (month 13)']],
      ["2026-00-10T00:00:00Z", ['c: "2026-00-10T00:00:00Z" is not a valid timestamp (month 0)']],
      ["2026-04-31T00:00:00Z", ['c: "2026-04-31T00:00:00Z" is not a valid timestamp (2026-04 has no day 31)']],
      ["2026-11-02T24:00:00Z", ['c: "2026-11-02T24:00:00Z" is not a valid timestamp (hour 24)']],
      ["2026-11-02T09:60:00Z", ['c: "2026-11-02T09:60:00Z" is not a valid timestamp (minute 60)']],
      ["2026-11-02T09:30:60Z", ['c: "2026-11-02T09:30:60Z" is not a valid timestamp (second 60)']],
      ["2026-11-02T09:30:00+25:00", ['c: "2026-11-02T09:30:00+25:00" is not a valid timestamp (expected YYYY-MM-DDTHH:MM:SS[.fff][Z|±hh:mm])']],
      ["02/11/2026", ['c: "02/11/2026" is not a valid timestamp (expected YYYY-MM-DDTHH:MM:SS[.fff][Z|±hh:mm])']],
      ["yesterday", ['c: "yesterday" is not a valid timestamp (expected YYYY-MM-DDTHH:MM:SS[.fff][Z|±hh:mm])']],
    ]);
  });

  it("names the column and the value in the reason", () => {
    const s = compileSchema(TargetSchema.parse({ columns: [{ name: "executed_at", type: "timestamp" }] }));
    expect(s.convert({ executed_at: "2026-13-01" })).toEqual({ ok: false, reasons: ['executed_at: "2026-13-01" is not a valid timestamp (month 13)'] });
    expect(s.convert({ executed_at: 1700000000 })).toEqual({
      ok: false,
      reasons: ["executed_at: 1700000000 is not a valid timestamp (a number; set format: epoch_s or epoch_ms)"],
    });
  });

  it("reads wall times in America/New_York on both sides of both DST changes", () => {
    const ny = { type: "timestamp", timezone: "America/New_York" } as const;
    expect(
      table(ny, [
        "2026-01-15 12:00:00", // EST, UTC-5
        "2026-07-01 12:00:00", // EDT, UTC-4
        "2026-03-08 01:59:59", // last second of EST
        "2026-03-08 02:30:00", // does not exist: moved forward by the gap (= 03:30 EDT)
        "2026-03-08 03:00:00", // first second of EDT
        "2026-11-01 00:30:00", // EDT
        "2026-11-01 01:30:00", // happens twice: the earlier (EDT) instant
        "2026-11-01 02:30:00", // EST
        "2026-11-01T01:30:00-05:00", // an explicit offset wins over the zone
      ]),
    ).toEqual([
      ["2026-01-15 12:00:00", "2026-01-15T17:00:00.000Z"],
      ["2026-07-01 12:00:00", "2026-07-01T16:00:00.000Z"],
      ["2026-03-08 01:59:59", "2026-03-08T06:59:59.000Z"],
      ["2026-03-08 02:30:00", "2026-03-08T07:30:00.000Z"],
      ["2026-03-08 03:00:00", "2026-03-08T07:00:00.000Z"],
      ["2026-11-01 00:30:00", "2026-11-01T04:30:00.000Z"],
      ["2026-11-01 01:30:00", "2026-11-01T05:30:00.000Z"],
      ["2026-11-01 02:30:00", "2026-11-01T07:30:00.000Z"],
      ["2026-11-01T01:30:00-05:00", "2026-11-01T06:30:00.000Z"],
    ]);
    // Same hour again (served from the per-hour cache): same answers.
    expect(typed(ny, "2026-07-01 12:59:00")).toBe("2026-07-01T16:59:00.000Z");
    expect(typed(ny, "2026-03-08 01:00:00")).toBe("2026-03-08T06:00:00.000Z");
  });

  it("handles half-hour zones and a DST change inside an hour (Lord Howe: 30-minute shift)", () => {
    expect(table({ type: "timestamp", timezone: "Asia/Kolkata" }, ["2026-11-02 09:30:00"])).toEqual([["2026-11-02 09:30:00", "2026-11-02T04:00:00.000Z"]]);
    expect(table({ type: "timestamp", timezone: "+05:30" }, ["2026-11-02 09:30:00"])).toEqual([["2026-11-02 09:30:00", "2026-11-02T04:00:00.000Z"]]);
    expect(
      table({ type: "timestamp", timezone: "Australia/Lord_Howe" }, [
        "2026-10-04 01:59:00",
        "2026-10-04 02:15:00",
        "2026-10-04 02:30:00",
        "2026-04-05 01:45:00",
        "2026-04-05 02:15:00",
      ]),
    ).toEqual([
      ["2026-10-04 01:59:00", "2026-10-03T15:29:00.000Z"], // +10:30
      ["2026-10-04 02:15:00", "2026-10-03T15:45:00.000Z"], // in the gap: moved forward
      ["2026-10-04 02:30:00", "2026-10-03T15:30:00.000Z"], // +11:00
      ["2026-04-05 01:45:00", "2026-04-04T14:45:00.000Z"], // twice: the earlier (+11:00)
      ["2026-04-05 02:15:00", "2026-04-04T15:45:00.000Z"], // +10:30
    ]);
  });

  it("reads epoch seconds and milliseconds", () => {
    expect(
      table({ type: "timestamp", format: "epoch_ms" }, ["1700000000123", 1700000000123, " 0 ", "-1500", "1700000000123.456", 1700000000123n, "1.7e12", "abc"]),
    ).toEqual([
      ["1700000000123", "2023-11-14T22:13:20.123Z"],
      [1700000000123, "2023-11-14T22:13:20.123Z"],
      [" 0 ", "1970-01-01T00:00:00.000Z"],
      ["-1500", "1969-12-31T23:59:58.500Z"],
      ["1700000000123.456", "2023-11-14T22:13:20.123456Z"],
      [1700000000123n, "2023-11-14T22:13:20.123Z"],
      ["1.7e12", ['c: "1.7e12" is not a valid timestamp (expected milliseconds since 1970-01-01T00:00:00Z)']],
      ["abc", ['c: "abc" is not a valid timestamp (expected milliseconds since 1970-01-01T00:00:00Z)']],
    ]);
    expect(table({ type: "timestamp", format: "epoch_s" }, [1700000000, "1700000000.5", "1700000000.1234567", -1, "999999999999"])).toEqual([
      [1700000000, "2023-11-14T22:13:20.000Z"],
      ["1700000000.5", "2023-11-14T22:13:20.500Z"],
      ["1700000000.1234567", "2023-11-14T22:13:20.123456Z"],
      [-1, "1969-12-31T23:59:59.000Z"],
      ["999999999999", ['c: "999999999999" is not a valid timestamp (outside the years 0000–9999)']],
    ]);
  });

  it("reads strftime-like formats", () => {
    expect(
      table({ type: "timestamp", format: "%d/%m/%Y %H:%M:%S" }, [
        "02/11/2026 09:30:00",
        "2/1/2026 9:05:07",
        "31/02/2026 09:30:00",
        "2026-11-02 09:30:00",
        "02/11/2026 09:30:00 ",
      ]),
    ).toEqual([
      ["02/11/2026 09:30:00", "2026-11-02T09:30:00.000Z"],
      ["2/1/2026 9:05:07", "2026-01-02T09:05:07.000Z"],
      ["31/02/2026 09:30:00", ['c: "31/02/2026 09:30:00" is not a valid timestamp (2026-02 has no day 31)']],
      ["2026-11-02 09:30:00", ['c: "2026-11-02 09:30:00" is not a valid timestamp (expected format %d/%m/%Y %H:%M:%S)']],
      ["02/11/2026 09:30:00 ", "2026-11-02T09:30:00.000Z"],
    ]);
    expect(table({ type: "timestamp", format: "%m/%d/%Y", timezone: "America/New_York" }, ["11/02/2026", "07/04/2026"])).toEqual([
      ["11/02/2026", "2026-11-02T05:00:00.000Z"],
      ["07/04/2026", "2026-07-04T04:00:00.000Z"],
    ]);
    expect(table({ type: "timestamp", format: "%Y%m%d%H%M%S" }, ["20261102093000", "20240229235959", "2026110209300", "202611020930001"])).toEqual([
      ["20261102093000", "2026-11-02T09:30:00.000Z"],
      ["20240229235959", "2024-02-29T23:59:59.000Z"],
      ["2026110209300", ['c: "2026110209300" is not a valid timestamp (expected format %Y%m%d%H%M%S)']],
      ["202611020930001", ['c: "202611020930001" is not a valid timestamp (expected format %Y%m%d%H%M%S)']],
    ]);
    expect(
      table({ type: "timestamp", format: "%Y-%m-%d %H:%M:%S.%f %z", timezone: "America/New_York" }, [
        "2026-11-02 09:30:00.5 +0100",
        "2026-11-02 09:30:00.1234567 Z",
      ]),
    ).toEqual([
      ["2026-11-02 09:30:00.5 +0100", "2026-11-02T08:30:00.500Z"],
      ["2026-11-02 09:30:00.1234567 Z", "2026-11-02T09:30:00.123456Z"],
    ]);
    expect(typed({ type: "timestamp", format: "%Y%%%m%%%d" }, "2026%11%02")).toBe("2026-11-02T00:00:00.000Z");
  });

  it("accepts Dates (as Parquet readers give them)", () => {
    expect(typed({ type: "timestamp" }, new Date("2026-11-02T09:30:00.125Z"))).toBe("2026-11-02T09:30:00.125Z");
    expect(typed({ type: "timestamp" }, new Date(Number.NaN))).toEqual(['c: "Invalid Date" is not a valid timestamp (an invalid Date)']);
  });
});

describe("date", () => {
  it("accepts calendar dates and rejects timestamps rather than truncating them", () => {
    expect(
      table({ type: "date" }, [
        "2026-11-02",
        " 2024-02-29 ",
        "2023-02-29",
        "2026-11-02T09:30:00Z",
        "2026-11-02 00:00:00",
        "2026-1-2",
        "20261102",
        new Date("2026-11-02T00:00:00Z"),
        new Date("2026-11-02T09:00:00Z"),
        20261102,
      ]),
    ).toEqual([
      ["2026-11-02", "2026-11-02"],
      [" 2024-02-29 ", "2024-02-29"],
      ["2023-02-29", ['c: "2023-02-29" is not a valid date (2023-02 has no day 29)']],
      ["2026-11-02T09:30:00Z", ['c: "2026-11-02T09:30:00Z" is not a valid date (it has a time of day; use a timestamp column)']],
      ["2026-11-02 00:00:00", ['c: "2026-11-02 00:00:00" is not a valid date (it has a time of day; use a timestamp column)']],
      ["2026-1-2", ['c: "2026-1-2" is not a valid date (expected YYYY-MM-DD)']],
      ["20261102", ['c: "20261102" is not a valid date (expected YYYY-MM-DD)']],
      [new Date("2026-11-02T00:00:00Z"), "2026-11-02"],
      [new Date("2026-11-02T09:00:00Z"), ['c: "2026-11-02T09:00:00.000Z" is not a valid date (not a UTC midnight)']],
      [20261102, ["c: 20261102 is not a valid date (expected YYYY-MM-DD)"]],
    ]);
  });

  it("reads formats with %Y %m %d", () => {
    expect(table({ type: "date", format: "%d.%m.%Y" }, ["02.11.2026", "2.1.2026", "29.02.2025"])).toEqual([
      ["02.11.2026", "2026-11-02"],
      ["2.1.2026", "2026-01-02"],
      ["29.02.2025", ['c: "29.02.2025" is not a valid date (2025-02 has no day 29)']],
    ]);
    expect(typed({ type: "date", format: "%Y%m%d" }, "20240229")).toBe("2024-02-29");
  });
});

describe("schema: renames, defaults, required, several reasons", () => {
  const trades = compileSchema(
    TargetSchema.parse({
      key: ["trade_id"],
      columns: [
        { name: "trade_id", from: "Trade ID", required: true, trim: true },
        { name: "executed_at", type: "timestamp", required: true },
        { name: "quantity", type: "integer", required: true },
        { name: "price", type: "decimal", scale: 4, required: true },
        { name: "fee", type: "decimal", scale: 2, default: "0" },
        { name: "venue", default: "XNAS" },
        { name: "settled", type: "boolean", default: false },
        { name: "notes" },
      ],
    }),
  );

  it("describes its output columns and key", () => {
    expect(trades.columns).toEqual([
      { name: "trade_id", type: "string" },
      { name: "executed_at", type: "timestamp" },
      { name: "quantity", type: "integer" },
      { name: "price", type: "decimal", scale: 4 },
      { name: "fee", type: "decimal", scale: 2 },
      { name: "venue", type: "string" },
      { name: "settled", type: "boolean" },
      { name: "notes", type: "string" },
    ]);
    expect(trades.key).toEqual(["trade_id"]);
  });

  it("renames, fills typed defaults, ignores extra columns, keeps schema order", () => {
    const r = trades.convert({
      extra: "ignored",
      notes: "n",
      price: "189.25",
      quantity: "100",
      executed_at: "2026-11-02T09:30:00Z",
      "Trade ID": " T-1 ",
      fee: "",
      venue: null,
    });
    expect(r).toEqual({
      ok: true,
      row: {
        trade_id: "T-1",
        executed_at: "2026-11-02T09:30:00.000Z",
        quantity: "100",
        price: "189.2500",
        fee: "0.00",
        venue: "XNAS",
        settled: false,
        notes: "n",
      },
    });
    expect(r.ok && Object.keys(r.row)).toEqual(["trade_id", "executed_at", "quantity", "price", "fee", "venue", "settled", "notes"]);
    const r2 = trades.convert({ "Trade ID": "T-2", executed_at: "2026-11-02", quantity: 1, price: 2, fee: "1.5", venue: "XLON", settled: "yes" });
    expect(r2).toEqual({
      ok: true,
      row: { trade_id: "T-2", executed_at: "2026-11-02T00:00:00.000Z", quantity: "1", price: "2.0000", fee: "1.50", venue: "XLON", settled: true, notes: null },
    });
  });

  it("collects every failing column of a row, in schema order", () => {
    expect(trades.convert({ trade_id: "T-3", executed_at: "2026-02-30T00:00:00Z", quantity: "1.5", price: "1.23456", settled: "maybe" })).toEqual({
      ok: false,
      reasons: [
        "trade_id: required (key column) but empty",
        'executed_at: "2026-02-30T00:00:00Z" is not a valid timestamp (2026-02 has no day 30)',
        'quantity: "1.5" is not a valid integer (a fraction)',
        "price: 1.23456 has more than 4 decimal places",
        'settled: "maybe" is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)',
      ],
    });
    expect(trades.convert({})).toEqual({
      ok: false,
      reasons: ["trade_id: required (key column) but empty", "executed_at: required but empty", "quantity: required but empty", "price: required but empty"],
    });
  });

  it("treats whitespace-only values of non-string types as empty", () => {
    expect(typed({ type: "integer" }, "   ")).toBe(null);
    expect(typed({ type: "integer", required: true }, " ")).toEqual(["c: required but empty"]);
    expect(typed({ type: "integer", default: 7 }, " ")).toBe("7");
    expect(typed({ type: "timestamp", default: "1970-01-01" }, undefined)).toBe("1970-01-01T00:00:00.000Z");
  });

  it("truncates long values in reasons to 60 characters", () => {
    const long = "x".repeat(100);
    expect(typed({ type: "integer" }, long)).toEqual([`c: "${"x".repeat(60)}…" is not a valid integer`]);
  });

  it("reads a missing key named like an Object member as empty", () => {
    const s = compileSchema(TargetSchema.parse({ columns: [{ name: "constructor" }, { name: "toString", type: "integer" }] }));
    expect(s.convert({})).toEqual({ ok: true, row: { constructor: null, toString: null } });
    expect(s.convert({ constructor: "c", toString: "1" })).toEqual({ ok: true, row: { constructor: "c", toString: "1" } });
  });
});

describe("strftime formats: every token, good and bad values", () => {
  it("%b %h %e: month abbreviations (any case, and Sept), a space-padded day, spaces matching runs of whitespace", () => {
    expect(
      table({ type: "date", format: "%b %e %Y" }, [
        "Jan 1 2000",
        "Jun 12 1998",
        "Jun  2 1998",
        "jun 2 1998",
        "JUN 2 1998",
        "Sept 30 1998",
        "Sep 30 1998",
        "June 2 1998",
        "Jun 31 1998",
        "Jun2 1998",
        "Foo 2 1998",
      ]),
    ).toEqual([
      ["Jan 1 2000", "2000-01-01"],
      ["Jun 12 1998", "1998-06-12"],
      ["Jun  2 1998", "1998-06-02"],
      ["jun 2 1998", "1998-06-02"],
      ["JUN 2 1998", "1998-06-02"],
      ["Sept 30 1998", "1998-09-30"],
      ["Sep 30 1998", "1998-09-30"],
      ["June 2 1998", ['c: "June 2 1998" is not a valid date (expected format %b %e %Y)']],
      ["Jun 31 1998", ['c: "Jun 31 1998" is not a valid date (1998-06 has no day 31)']],
      ["Jun2 1998", ['c: "Jun2 1998" is not a valid date (expected format %b %e %Y)']],
      ["Foo 2 1998", ['c: "Foo 2 1998" is not a valid date (expected format %b %e %Y)']],
    ]);
    // %e right after a name takes its padding space itself; %h is %b.
    expect(table({ type: "date", format: "%b%e %Y" }, ["Jun 2 1998", "Jun12 1998"])).toEqual([
      ["Jun 2 1998", "1998-06-02"],
      ["Jun12 1998", "1998-06-12"],
    ]);
    expect(typed({ type: "date", format: "%d %h %Y" }, "05 Mar 2024")).toBe("2024-03-05");
    expect(typed({ type: "date", format: "%e.%m.%Y" }, " 5.03.2024")).toBe("2024-03-05");
  });

  it("%B: full month names only", () => {
    expect(
      table({ type: "date", format: "%B %-d, %Y" }, [
        "February 29, 2024",
        "february 29, 2024",
        "MAY 1, 2024",
        "Feb 29, 2024",
        "February 29, 2023",
        "Mayo 1, 2024",
      ]),
    ).toEqual([
      ["February 29, 2024", "2024-02-29"],
      ["february 29, 2024", "2024-02-29"],
      ["MAY 1, 2024", "2024-05-01"],
      ["Feb 29, 2024", ['c: "Feb 29, 2024" is not a valid date (expected format %B %-d, %Y)']],
      ["February 29, 2023", ['c: "February 29, 2023" is not a valid date (2023-02 has no day 29)']],
      ["Mayo 1, 2024", ['c: "Mayo 1, 2024" is not a valid date (expected format %B %-d, %Y)']],
    ]);
  });

  it("%I with %p: a 12-hour clock, 12 AM is midnight and 12 PM noon", () => {
    expect(
      table({ type: "timestamp", format: "%m/%d/%Y %I:%M %p" }, [
        "03/04/2021 2:05 PM",
        "03/04/2021 12:00 AM",
        "03/04/2021 12:30 PM",
        "03/04/2021 12:30 am",
        "03/04/2021 11:59 p.m.",
        "03/04/2021 1:00 A.M.",
        "03/04/2021 13:05 PM",
        "03/04/2021 0:05 AM",
        "03/04/2021 2:05",
        "03/04/2021 2:05 XM",
        "03/04/2021 2:05 p.m",
      ]),
    ).toEqual([
      ["03/04/2021 2:05 PM", "2021-03-04T14:05:00.000Z"],
      ["03/04/2021 12:00 AM", "2021-03-04T00:00:00.000Z"],
      ["03/04/2021 12:30 PM", "2021-03-04T12:30:00.000Z"],
      ["03/04/2021 12:30 am", "2021-03-04T00:30:00.000Z"],
      ["03/04/2021 11:59 p.m.", "2021-03-04T23:59:00.000Z"],
      ["03/04/2021 1:00 A.M.", "2021-03-04T01:00:00.000Z"],
      ["03/04/2021 13:05 PM", ['c: "03/04/2021 13:05 PM" is not a valid timestamp (hour 13 on a 12-hour clock)']],
      ["03/04/2021 0:05 AM", ['c: "03/04/2021 0:05 AM" is not a valid timestamp (hour 0 on a 12-hour clock)']],
      ["03/04/2021 2:05", ['c: "03/04/2021 2:05" is not a valid timestamp (expected format %m/%d/%Y %I:%M %p)']],
      ["03/04/2021 2:05 XM", ['c: "03/04/2021 2:05 XM" is not a valid timestamp (expected format %m/%d/%Y %I:%M %p)']],
      ["03/04/2021 2:05 p.m", ['c: "03/04/2021 2:05 p.m" is not a valid timestamp (expected format %m/%d/%Y %I:%M %p)']],
    ]);
    expect(typed({ type: "timestamp", format: "%F %-I%p" }, "2024-01-02 3PM")).toBe("2024-01-02T15:00:00.000Z");
  });

  it("%A %a: weekdays are checked against the date, never ignored", () => {
    expect(
      table({ type: "timestamp", format: "%A, %d-%b-%y %T" }, [
        "Tuesday, 05-Mar-24 14:05:09",
        "TUESDAY, 05-mar-24 14:05:09",
        "Monday, 05-Mar-24 14:05:09",
        "Tue, 05-Mar-24 14:05:09",
      ]),
    ).toEqual([
      ["Tuesday, 05-Mar-24 14:05:09", "2024-03-05T14:05:09.000Z"],
      ["TUESDAY, 05-mar-24 14:05:09", "2024-03-05T14:05:09.000Z"],
      ["Monday, 05-Mar-24 14:05:09", ['c: "Monday, 05-Mar-24 14:05:09" is not a valid timestamp (2024-03-05 is a Tuesday, not a Monday)']],
      ["Tue, 05-Mar-24 14:05:09", ['c: "Tue, 05-Mar-24 14:05:09" is not a valid timestamp (expected format %A, %d-%b-%y %T)']],
    ]);
    // RFC 2822 (e-mail and HTTP dates).
    expect(
      table({ type: "timestamp", format: "%a, %d %b %Y %T %z" }, [
        "Tue, 05 Mar 2024 14:05:09 +0100",
        "Wed, 05 Mar 2024 14:05:09 +0100",
        "Tues, 05 Mar 2024 14:05:09 +0100",
      ]),
    ).toEqual([
      ["Tue, 05 Mar 2024 14:05:09 +0100", "2024-03-05T13:05:09.000Z"],
      ["Wed, 05 Mar 2024 14:05:09 +0100", ['c: "Wed, 05 Mar 2024 14:05:09 +0100" is not a valid timestamp (2024-03-05 is a Tuesday, not a Wednesday)']],
      ["Tues, 05 Mar 2024 14:05:09 +0100", ['c: "Tues, 05 Mar 2024 14:05:09 +0100" is not a valid timestamp (expected format %a, %d %b %Y %T %z)']],
    ]);
    expect(typed({ type: "date", format: "%a %F" }, "Wed 1969-03-05")).toBe("1969-03-05");
  });

  it("%y: the POSIX pivot (69–99 → 19xx, 00–68 → 20xx)", () => {
    expect(table({ type: "date", format: "%d/%m/%y" }, ["01/01/68", "31/12/69", "15/06/99", "29/02/00", "1/1/5", "01/01/2024"])).toEqual([
      ["01/01/68", "2068-01-01"],
      ["31/12/69", "1969-12-31"],
      ["15/06/99", "1999-06-15"],
      ["29/02/00", "2000-02-29"],
      ["1/1/5", "2005-01-01"],
      ["01/01/2024", ['c: "01/01/2024" is not a valid date (expected format %d/%m/%y)']],
    ]);
  });

  it("%j: the day of the year", () => {
    expect(table({ type: "date", format: "%Y-%j" }, ["2024-060", "2023-060", "2024-366", "2024-1", "2023-366", "2024-000", "2024-0600"])).toEqual([
      ["2024-060", "2024-02-29"],
      ["2023-060", "2023-03-01"],
      ["2024-366", "2024-12-31"],
      ["2024-1", "2024-01-01"],
      ["2023-366", ['c: "2023-366" is not a valid date (2023 has no day 366)']],
      ["2024-000", ['c: "2024-000" is not a valid date (2024 has no day 0)']],
      ["2024-0600", ['c: "2024-0600" is not a valid date (expected format %Y-%j)']],
    ]);
    expect(table({ type: "date", format: "%Y%j" }, ["2024060", "202460"])).toEqual([
      ["2024060", "2024-02-29"],
      ["202460", ['c: "202460" is not a valid date (expected format %Y%j)']],
    ]);
    expect(typed({ type: "timestamp", format: "%Y-%jT%R" }, "2024-060T12:00")).toBe("2024-02-29T12:00:00.000Z");
  });

  it("%-m %-d %-H %-M %-S, %T %R %D %F, %n %t", () => {
    expect(table({ type: "date", format: "%-m/%-d/%Y" }, ["3/4/2021", "03/04/2021"])).toEqual([
      ["3/4/2021", "2021-03-04"],
      ["03/04/2021", "2021-03-04"],
    ]);
    expect(typed({ type: "timestamp", format: "%Y-%m-%d %-H:%-M:%-S" }, "2024-01-02 3:4:5")).toBe("2024-01-02T03:04:05.000Z");
    expect(typed({ type: "timestamp", format: "%D %R" }, "03/04/21 14:05")).toBe("2021-03-04T14:05:00.000Z");
    expect(typed({ type: "timestamp", format: "%F %T.%f" }, "2024-02-29 23:59:59.1234567")).toBe("2024-02-29T23:59:59.123456Z");
    expect(table({ type: "date", format: "%d%n%b%t%Y" }, ["5 Mar\t2024", "5\n\nMar  2024", "5Mar 2024"])).toEqual([
      ["5 Mar\t2024", "2024-03-05"],
      ["5\n\nMar  2024", "2024-03-05"],
      ["5Mar 2024", ['c: "5Mar 2024" is not a valid date (expected format %d%n%b%t%Y)']],
    ]);
  });

  it("%Z: UTC, the North-American abbreviations, IANA names across DST; other abbreviations refused", () => {
    expect(
      table({ type: "timestamp", format: "%F %T %Z", timezone: "Asia/Tokyo" }, [
        "2024-07-01 12:00:00 EST",
        "2024-07-01 12:00:00 EDT",
        "2024-01-15 12:00:00 CST",
        "2024-01-15 12:00:00 MDT",
        "2024-01-15 12:00:00 PST",
        "2024-01-15 12:00:00 pdt",
        "2024-01-15 12:00:00 AKST",
        "2024-01-15 12:00:00 HST",
        "2024-01-15 12:00:00 UTC",
        "2024-01-15 12:00:00 GMT",
        "2024-01-15 12:00:00 Z",
        "2024-07-01 12:00:00 Europe/Berlin",
        "2024-03-10 01:59:59 America/New_York", // last second of EST
        "2024-03-10 02:30:00 America/New_York", // does not exist: moved forward by the gap
        "2024-03-10 03:00:00 America/New_York", // first second of EDT
        "2024-11-03 01:30:00 America/New_York", // happens twice: the earlier (EDT) instant
        "2024-11-03 02:30:00 America/New_York", // EST
        "2024-01-15 12:00:00 IST",
        "2024-01-15 12:00:00 Mars/Olympus",
        "2024-01-15 12:00:00",
      ]),
    ).toEqual([
      ["2024-07-01 12:00:00 EST", "2024-07-01T17:00:00.000Z"],
      ["2024-07-01 12:00:00 EDT", "2024-07-01T16:00:00.000Z"],
      ["2024-01-15 12:00:00 CST", "2024-01-15T18:00:00.000Z"],
      ["2024-01-15 12:00:00 MDT", "2024-01-15T18:00:00.000Z"],
      ["2024-01-15 12:00:00 PST", "2024-01-15T20:00:00.000Z"],
      ["2024-01-15 12:00:00 pdt", "2024-01-15T19:00:00.000Z"],
      ["2024-01-15 12:00:00 AKST", "2024-01-15T21:00:00.000Z"],
      ["2024-01-15 12:00:00 HST", "2024-01-15T22:00:00.000Z"],
      ["2024-01-15 12:00:00 UTC", "2024-01-15T12:00:00.000Z"],
      ["2024-01-15 12:00:00 GMT", "2024-01-15T12:00:00.000Z"],
      ["2024-01-15 12:00:00 Z", "2024-01-15T12:00:00.000Z"],
      ["2024-07-01 12:00:00 Europe/Berlin", "2024-07-01T10:00:00.000Z"],
      ["2024-03-10 01:59:59 America/New_York", "2024-03-10T06:59:59.000Z"],
      ["2024-03-10 02:30:00 America/New_York", "2024-03-10T07:30:00.000Z"],
      ["2024-03-10 03:00:00 America/New_York", "2024-03-10T07:00:00.000Z"],
      ["2024-11-03 01:30:00 America/New_York", "2024-11-03T05:30:00.000Z"],
      ["2024-11-03 02:30:00 America/New_York", "2024-11-03T07:30:00.000Z"],
      [
        "2024-01-15 12:00:00 IST",
        [
          'c: "2024-01-15 12:00:00 IST" is not a valid timestamp (time zone "IST" is ambiguous or unknown: only UTC, GMT, the North-American EST EDT CST CDT MST MDT PST PDT AKST AKDT HST and IANA names such as Europe/Paris are read)',
        ],
      ],
      ["2024-01-15 12:00:00 Mars/Olympus", ['c: "2024-01-15 12:00:00 Mars/Olympus" is not a valid timestamp (time zone "Mars/Olympus" does not exist)']],
      ["2024-01-15 12:00:00", ['c: "2024-01-15 12:00:00" is not a valid timestamp (expected format %F %T %Z)']],
    ]);
    // An offset in the value wins over a zone in it.
    expect(typed({ type: "timestamp", format: "%F %T%z %Z" }, "2024-01-15 12:00:00+01:00 America/New_York")).toBe("2024-01-15T11:00:00.000Z");
  });

  it("%s: seconds since the epoch, alone or with %f", () => {
    expect(table({ type: "timestamp", format: "%s" }, ["1700000000", 1700000000, 1700000000n, "-1", "0", "1.5", "abc", "999999999999"])).toEqual([
      ["1700000000", "2023-11-14T22:13:20.000Z"],
      [1700000000, "2023-11-14T22:13:20.000Z"],
      [1700000000n, "2023-11-14T22:13:20.000Z"],
      ["-1", "1969-12-31T23:59:59.000Z"],
      ["0", "1970-01-01T00:00:00.000Z"],
      ["1.5", ['c: "1.5" is not a valid timestamp (expected format %s)']],
      ["abc", ['c: "abc" is not a valid timestamp (expected format %s)']],
      ["999999999999", ['c: "999999999999" is not a valid timestamp (outside the years 0000–9999)']],
    ]);
    expect(table({ type: "timestamp", format: "%s.%f" }, ["1700000000.123456", "-1.5", 1700000000.5])).toEqual([
      ["1700000000.123456", "2023-11-14T22:13:20.123456Z"],
      ["-1.5", "1969-12-31T23:59:58.500Z"],
      [1700000000.5, "2023-11-14T22:13:20.500Z"],
    ]);
  });

  it("reads real-world shapes: web server logs, Excel exports, e-mail dates", () => {
    expect(typed({ type: "timestamp", format: "[%d/%b/%Y:%H:%M:%S %z]" }, "[10/Oct/2000:13:55:36 -0700]")).toBe("2000-10-10T20:55:36.000Z");
    expect(typed({ type: "timestamp", format: "%-m/%-d/%Y %-I:%M:%S %p", timezone: "America/Chicago" }, "3/4/2021 2:05:00 PM")).toBe(
      "2021-03-04T20:05:00.000Z",
    );
    expect(typed({ type: "timestamp", format: "%a, %e %b %Y %T %z" }, "Tue, 5 Mar 2024 14:05:09 -0500")).toBe("2024-03-05T19:05:09.000Z");
  });
});

describe("strftime formats written by DuckDB, read back", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-typing-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("agrees with DuckDB's strftime on 3,034 instants across 25 years, leap days and DST changes", async () => {
    const file = join(dir, "duck.csv");
    const db = await DuckDBInstance.create(":memory:");
    const con = await db.connect();
    await con.run("SET TimeZone = 'America/New_York'");
    // Every 2 days 7 h 13 min 17.123 s from 1999-12-25: wall times of every hour, both halves of the day.
    await con.run(`COPY (
      SELECT i,
        epoch_ms(ts) AS ms,
        strftime(ts, '%b %-d %Y %I:%M:%S %p') AS us12,
        strftime(ts, '%A, %d-%b-%y %H:%M:%S.%f') AS weekday,
        strftime(ts, '%Y-%j %H:%M:%S.%f') AS doy,
        strftime(ts, '%B %d, %Y') AS long_date,
        strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f %Z') AS zoned,
        strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f%z') AS offset
      FROM (
        SELECT i, TIMESTAMP '1999-12-25 00:00:00' + INTERVAL (i * 198797123) MILLISECOND AS ts FROM range(3000) t(i)
        UNION ALL -- both 2024 DST changes in New York, every 15 minutes
        SELECT 3000 + j, TIMESTAMP '2024-03-10 05:00:00' + INTERVAL (j * 15) MINUTE FROM range(17) t(j)
        UNION ALL
        SELECT 4000 + j, TIMESTAMP '2024-11-03 04:00:00' + INTERVAL (j * 15) MINUTE FROM range(17) t(j)
      )
      ORDER BY i
    ) TO '${file}' (HEADER, DELIMITER ',')`);
    con.closeSync();

    const schema = compileSchema(
      TargetSchema.parse({
        key: ["i"],
        columns: [
          { name: "i", type: "integer" },
          { name: "us12", type: "timestamp", format: "%b %-d %Y %I:%M:%S %p" },
          { name: "weekday", type: "timestamp", format: "%A, %d-%b-%y %H:%M:%S.%f" },
          { name: "doy", type: "timestamp", format: "%Y-%j %H:%M:%S.%f" },
          { name: "long_date", type: "date", format: "%B %d, %Y" },
          { name: "zoned", type: "timestamp", format: "%Y-%m-%d %H:%M:%S.%f %Z" },
          { name: "offset", type: "timestamp", format: "%Y-%m-%d %H:%M:%S.%f%z" },
          { name: "ms", type: "timestamp", format: "epoch_ms" },
        ],
      }),
    );
    let rows = 0;
    let repeatedHour = 0;
    for await (const batch of readCsv(file)) {
      expect(batch.errors).toEqual([]);
      for (const raw of batch.rows) {
        const r = schema.convert(raw);
        if (!r.ok) throw new Error(`${JSON.stringify(raw)}: ${r.reasons.join("; ")}`);
        const utc = new Date(Number(raw.ms)).toISOString();
        // The wall-clock columns were written from a TIMESTAMP (no zone), read here as UTC.
        expect([r.row.us12, r.row.weekday, r.row.doy, r.row.offset, r.row.ms]).toEqual([utc.slice(0, 19) + ".000Z", utc, utc, utc, utc]);
        expect(r.row.long_date).toBe(utc.slice(0, 10));
        // A zone name alone cannot tell the two 01:30s of a November night apart: the earlier wins.
        if (r.row.zoned !== utc) {
          repeatedHour++;
          expect(Date.parse(r.row.zoned as string)).toBe(Date.parse(utc) - 3_600_000);
          expect(raw.offset).toMatch(/ 01:\d\d:\d\d\.\d{6}-05$/);
        }
        rows++;
      }
    }
    expect(rows).toBe(3034);
    // 06:00–06:45 UTC on 2024-11-03 is the second 01:00–01:45 in New York (and perhaps some of the 3,000).
    expect(repeatedHour).toBeGreaterThanOrEqual(4);
    expect(repeatedHour).toBeLessThan(10);
  });
});

describe("null markers and key columns in a CSV written by DuckDB", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-typing-nulls-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads NULLSTR 'N/A' as null, keeps an empty string as empty, rejects the record without its key", async () => {
    const file = join(dir, "nulls.csv");
    const db = await DuckDBInstance.create(":memory:");
    const con = await db.connect();
    await con.run(`COPY (SELECT * FROM (VALUES
        ('T-1', 100, 1.5::DECIMAL(10, 2), DATE '2024-02-29', 'note'),
        ('T-2', NULL, NULL, NULL, NULL),
        (NULL, 7, 2.25::DECIMAL(10, 2), DATE '2024-03-01', ''),
        ('T-4', 8, 3.00::DECIMAL(10, 2), DATE '2024-03-02', '')
      ) t(id, qty, price, day, note)) TO '${file}' (HEADER, NULLSTR 'N/A')`);
    con.closeSync();
    const schema = compileSchema(
      TargetSchema.parse({
        key: ["id"],
        nullValues: ["N/A"],
        columns: [
          { name: "id" },
          { name: "qty", type: "integer" },
          { name: "price", type: "decimal", scale: 2 },
          { name: "day", type: "date" },
          { name: "note" },
        ],
      }),
    );
    const out: unknown[] = [];
    for await (const batch of readCsv(file)) {
      expect(batch.errors).toEqual([]);
      for (const raw of batch.rows) {
        const r = schema.convert(raw);
        out.push(r.ok ? r.row : r.reasons);
      }
    }
    expect(out).toEqual([
      { id: "T-1", qty: "100", price: "1.50", day: "2024-02-29", note: "note" },
      { id: "T-2", qty: null, price: null, day: null, note: null },
      ["id: required (key column) but empty"],
      { id: "T-4", qty: "8", price: "3.00", day: "2024-03-02", note: "" },
    ]);
  });
});

describe("null markers (nullValues)", () => {
  const schema = compileSchema(
    TargetSchema.parse({
      nullValues: ["", "NA", "N/A", "null", "-"],
      columns: [
        { name: "id", type: "integer" },
        { name: "price", type: "decimal", scale: 2, default: "0" },
        { name: "at", type: "timestamp", required: true },
        { name: "note" }, // untrimmed string: compared exactly
        { name: "sym", trim: true },
        { name: "qty", type: "integer", nullValues: ["-"] }, // replaces the schema's list
        { name: "code", nullValues: [] }, // no markers: "" stays an empty string
        { name: "flag", type: "boolean", nullValues: ["?"] },
      ],
    }),
  );

  it("turns markers into null, the default or a required reason, after trimming where the column trims", () => {
    expect(schema.convert({ id: " NA ", price: "N/A", at: "2024-01-01", note: "NA", sym: " N/A ", qty: " - ", code: "", flag: "?" })).toEqual({
      ok: true,
      row: { id: null, price: "0.00", at: "2024-01-01T00:00:00.000Z", note: null, sym: null, qty: null, code: "", flag: null },
    });
    expect(schema.convert({ id: "7", price: "null", at: "2024-01-01", note: " NA", sym: "-", qty: "3", code: "NA", flag: "" })).toEqual({
      ok: true,
      row: { id: "7", price: "0.00", at: "2024-01-01T00:00:00.000Z", note: " NA", sym: null, qty: "3", code: "NA", flag: null },
    });
    expect(schema.convert({ at: "N/A", qty: "NA" })).toEqual({ ok: false, reasons: ["at: required but empty", 'qty: "NA" is not a valid integer'] });
  });

  it("never takes a JSON number or boolean for a marker", () => {
    const s = compileSchema(
      TargetSchema.parse({
        nullValues: ["", "0", "false"],
        columns: [
          { name: "n", type: "integer" },
          { name: "b", type: "boolean" },
        ],
      }),
    );
    expect(s.convert({ n: 0, b: false })).toEqual({ ok: true, row: { n: "0", b: false } });
    expect(s.convert({ n: "0", b: "false" })).toEqual({ ok: true, row: { n: null, b: null } });
  });

  it("keeps today's behaviour without nullValues: only empty cells are empty", () => {
    expect(table({ type: "integer" }, ["", "  ", "NA"])).toEqual([
      ["", null],
      ["  ", null],
      ["NA", ['c: "NA" is not a valid integer']],
    ]);
    expect(table({ type: "string" }, ["", "NA"])).toEqual([
      ["", null],
      ["NA", "NA"],
    ]);
  });

  it("compares many markers through a set", () => {
    const markers = ["", "NA", "N/A", "n/a", "null", "NULL", "None", "-", "--", "?", "#N/A"];
    const s = compileSchema(TargetSchema.parse({ nullValues: markers, columns: [{ name: "x", type: "decimal" }] }));
    expect(markers.map((m) => s.convert({ x: m }))).toEqual(markers.map(() => ({ ok: true, row: { x: null } })));
    expect(s.convert({ x: "#N/B" })).toEqual({ ok: false, reasons: ['x: "#N/B" is not a valid decimal'] });
  });
});

describe("key columns and NUL characters", () => {
  const keyed = compileSchema(
    TargetSchema.parse({
      key: ["id", "day"],
      nullValues: ["", "NA"],
      columns: [{ name: "id" }, { name: "day", type: "date", default: "1970-01-01" }, { name: "v", type: "integer" }],
    }),
  );

  it("rejects a record whose key column is empty or a null marker, unless the column has a default", () => {
    expect(keyed.convert({ id: "", day: "2024-01-01" })).toEqual({ ok: false, reasons: ["id: required (key column) but empty"] });
    expect(keyed.convert({ id: "NA", v: "1" })).toEqual({ ok: false, reasons: ["id: required (key column) but empty"] });
    expect(keyed.convert({})).toEqual({ ok: false, reasons: ["id: required (key column) but empty"] });
    expect(keyed.convert({ id: "A", day: "NA" })).toEqual({ ok: true, row: { id: "A", day: "1970-01-01", v: null } });
  });

  it('treats "" in a key column as empty even when the markers leave "" out', () => {
    const s = compileSchema(TargetSchema.parse({ key: ["id"], nullValues: [], columns: [{ name: "id" }, { name: "note" }] }));
    expect(s.convert({ id: "", note: "" })).toEqual({ ok: false, reasons: ["id: required (key column) but empty"] });
    expect(s.convert({ id: "NA", note: "" })).toEqual({ ok: true, row: { id: "NA", note: "" } });
  });

  it("rejects strings holding U+0000, which PostgreSQL cannot store", () => {
    const s = compileSchema(TargetSchema.parse({ columns: [{ name: "notes" }, { name: "sym", trim: true }, { name: "n", type: "integer" }] }));
    expect(s.convert({ notes: "abc\u0000def", sym: " \u0000 ", n: "1\u0000" })).toEqual({
      ok: false,
      reasons: [
        "notes: contains a NUL character (U+0000), which databases cannot store",
        "sym: contains a NUL character (U+0000), which databases cannot store",
        'n: "1\\u0000" is not a valid integer',
      ],
    });
    expect(s.convert({ notes: "abc", sym: "X", n: "1" })).toEqual({ ok: true, row: { notes: "abc", sym: "X", n: "1" } });
  });
});

describe("configuration errors (BAD_CONFIG at run time, the same sentence at validation)", () => {
  /** compileSchema on a schema that skipped validation (as a TypeScript caller may hand it). */
  const compileRaw = (columns: unknown[], key?: string[]) => () => compileSchema({ columns, ...(key ? { key } : {}) } as TargetSchemaSpec);
  const config = (message: string) => expect.objectContaining({ code: "BAD_CONFIG", message });
  const SUPPORTED = "%Y %y %m %-m %d %-d %e %j %H %-H %I %-I %M %-M %S %-S %p %b %h %B %a %A %f %z %Z %s %T %R %D %F %n %t %%";

  it("says what is wrong with a format, naming the token and its character position", () => {
    const cases: [string, "timestamp" | "date", string | undefined][] = [
      ["%Y-%Q", "timestamp", `uses %Q at character 4, which is not supported (supported: ${SUPPORTED})`],
      ["%Y-%m-%d %", "timestamp", "ends with a lone % at character 10 (write %% for a literal %)"],
      ["%-y/%m/%d", "date", `uses %-y at character 1, which is not supported (supported: ${SUPPORTED})`],
      ["%Y-%m-%d %H:%M", "date", "uses %H at character 10, a time field, but the column is a date (use a timestamp column, or date fields only)"],
      ["%F %T", "date", "uses %T at character 4, a time field, but the column is a date (use a timestamp column, or date fields only)"],
      ["%Y-%m-%d %b", "date", "sets the month twice (%m at character 4 and %b at character 10)"],
      ["%F %m", "timestamp", "sets the month twice (%F at character 1 and %m at character 4)"],
      ["%Y-%m-%d %I:%M", "timestamp", "uses %I at character 10 (hour 1–12) without %p (AM or PM)"],
      ["%Y-%m-%d %H:%M %p", "timestamp", "uses %p at character 16 with %H at character 10 (a 24-hour clock); use %I for hours 1–12"],
      ["%Y-%m-%d %p", "timestamp", "uses %p at character 10 without %I (hour 1–12)"],
      ["%Y-%m-%j", "date", "uses %j at character 7 (day of the year) together with %m at character 4"],
      ["%s %Y", "timestamp", "uses %s at character 1 together with %Y at character 4; %s (seconds since the epoch) stands alone (with %f at most)"],
      [
        "%H:%M",
        "timestamp",
        "must contain a year (%Y or %y) and either a month and a day (%m, %b or %B with %d or %e) or a day of the year (%j), or else %s alone",
      ],
      ["%Y-%m", "date", "must contain a year (%Y or %y) and either a month and a day (%m, %b or %B with %d or %e) or a day of the year (%j)"],
      [
        "YYYY-MM-DD",
        "date",
        "has no % fields (write strftime tokens such as %d/%m/%Y or iso); it must contain a year (%Y or %y) and either a month and a day (%m, %b or %B with %d or %e) or a day of the year (%j)",
      ],
      ["epoch_s", "date", "is for timestamps (numbers since the epoch); a date column takes iso or a pattern of date fields such as %d/%m/%Y"],
      ["%b %e %Y", "date", undefined],
      ["ISO", "timestamp", undefined],
      ["epoch_ms", "timestamp", undefined],
      ["%s.%f", "timestamp", undefined],
      ["%D %I:%M %p %Z", "timestamp", undefined],
    ];
    expect(cases.map(([format, type]) => [format, type, formatProblem(format, type)])).toEqual(cases);
  });

  it("throws the same sentences from compileSchema, naming the column", () => {
    expect(compileRaw([{ name: "t", type: "timestamp", format: "%Y-%Q" }])).toThrow(
      config(`column t: format "%Y-%Q" uses %Q at character 4, which is not supported (supported: ${SUPPORTED})`),
    );
    expect(compileRaw([{ name: "t", type: "timestamp", format: "%I:%M %F" }])).toThrow(
      config('column t: format "%I:%M %F" uses %I at character 1 (hour 1–12) without %p (AM or PM)'),
    );
    expect(compileRaw([{ name: "d", type: "date", format: "%Y-%m-%d %H" }])).toThrow(
      config('column d: format "%Y-%m-%d %H" uses %H at character 10, a time field, but the column is a date (use a timestamp column, or date fields only)'),
    );
    expect(compileRaw([{ name: "t", type: "timestamp", timezone: "Mars/Olympus" }])).toThrow(
      config('column t: time zone "Mars/Olympus" does not exist (use an IANA name such as America/New_York, a fixed offset such as +05:30, or UTC)'),
    );
    expect(compileRaw([{ name: "t", type: "timestamp", timezone: "+25:00" }])).toThrow(
      config('column t: time zone "+25:00" is not a valid offset (hours 00–23, minutes 00–59)'),
    );
    expect(compileRaw([{ name: "p", type: "decimal", scale: 2, default: "abc" }])).toThrow(config('column p: default "abc" is not a valid decimal'));
    expect(compileRaw([{ name: "s", default: "a\u0000" }])).toThrow(
      config('column s: default "a\\u0000" contains a NUL character (U+0000), which databases cannot store'),
    );
    expect(compileRaw([{ name: "q", type: "integer", scale: 2 }])).toThrow(config("column q: scale applies only to decimal columns, not integer"));
    expect(compileRaw([{ name: "q", type: "integer", format: "%Y" }])).toThrow(
      config("column q: format applies only to timestamp and date columns, not integer"),
    );
    expect(compileRaw([{ name: "a" }, { name: "a" }])).toThrow(config("column a is declared twice in the target schema"));
    expect(compileRaw([{ name: "a" }], ["id"])).toThrow(config("key column id is not in the target schema (columns: a)"));
  });

  it("refuses them already in the TargetSchema (what `sluice validate` checks), at the field", () => {
    const issues = (schema: unknown) => {
      const r = TargetSchema.safeParse(schema);
      return r.success ? [] : r.error.issues.map((i) => [i.path.join("."), i.message]);
    };
    expect(
      issues({
        key: ["id"],
        columns: [
          { name: "a", type: "timestamp", format: "%Y-%Q" },
          { name: "b", type: "integer", format: "%Y" },
          { name: "c", type: "timestamp", timezone: "Mars/Olympus" },
          { name: "d", scale: 2 },
          { name: "e", type: "decimal", scale: 2, default: "abc" },
          { name: "f", type: "integer", default: 1.5 },
          { name: "a" },
        ],
      }),
    ).toEqual([
      ["columns.0.format", `uses %Q at character 4, which is not supported (supported: ${SUPPORTED})`],
      ["columns.1.format", "cannot apply: this column is integer, and a format is only for timestamp and date columns"],
      ["columns.2.timezone", "does not exist (use an IANA name such as America/New_York, a fixed offset such as +05:30, or UTC)"],
      ["columns.3.scale", "applies only to decimal columns, not string"],
      ["columns.4.default", "is not a valid decimal"],
      ["columns.5.default", "1.5 is not an integer"],
      ["columns.6.name", "is declared twice (also columns[0])"],
      ["key.0", "is not a column of the target schema (columns: a, b, c, d, e, f)"],
    ]);
  });

  it("the value parsers are reusable on their own", () => {
    const p = compileValueParser({ type: "decimal", scale: 2 });
    expect(p("1.5")).toBe("1.50");
    expect(p("x")).toBeInstanceOf(Invalid);
  });
});

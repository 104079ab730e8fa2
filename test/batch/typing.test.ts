import { describe, expect, it } from "vitest";
import { z } from "zod";
import { TargetColumn, TargetSchema } from "../../src/actions/inputs.js";
import type { TypedValue } from "../../src/actions/batch/model.js";
import { compileSchema, compileValueParser, Invalid } from "../../src/actions/batch/typing.js";

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
      table({ type: "integer" }, ["42", "-7", "+3", "007", "-007", "-0", "0", " 12 ", 42, -0, -17, 12n, "9223372036854775807", "-9223372036854775808", 9007199254740991]),
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
      table({ type: "integer" }, ["1,000", "1e3", "1.5", "42.0", "abc", "-", "+", "1 000", 1.5, 2 ** 53, Number.NaN, true, "9223372036854775808", "-9223372036854775809", "99999999999999999999", 2n ** 63n]),
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
    expect(s.convert({ quantity: "99999999999999999999" })).toEqual({ ok: false, reasons: ["quantity: 99999999999999999999 is out of the 64-bit integer range"] });
  });
});

describe("decimal", () => {
  it("pads to the scale exactly, never through a float", () => {
    expect(
      table({ type: "decimal", scale: 4 }, ["189.25", "0.1", "-0.5", ".5", "5.", "+1.0", "007.10", "-0.0000", "12345678901234567890.1234", "1.23450", 0.1, 189.25, 5, 12n, "1.5E-3", " 2.5 "]),
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
    expect(table({ type: "decimal" }, ["189.25", "189.2500", "5.", ".5", "-0.0", "00012", "+1.0", 1e21, 1e-7, 0.30000000000000004, "1.5e3", "-2.50E+1", "123456789012345678901234567890.12345678"])).toEqual([
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
    expect(table({ type: "decimal", scale: 4 }, ["1.23456", "abc", "1,5", ".", "-", "1.2.3", "1e", Number.POSITIVE_INFINITY, true, "123456789012345678901234567890123456.5"])).toEqual([
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
    expect(s.convert({ executed_at: 1700000000 })).toEqual({ ok: false, reasons: ["executed_at: 1700000000 is not a valid timestamp (a number; set format: epoch_s or epoch_ms)"] });
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
      table({ type: "timestamp", timezone: "Australia/Lord_Howe" }, ["2026-10-04 01:59:00", "2026-10-04 02:15:00", "2026-10-04 02:30:00", "2026-04-05 01:45:00", "2026-04-05 02:15:00"]),
    ).toEqual([
      ["2026-10-04 01:59:00", "2026-10-03T15:29:00.000Z"], // +10:30
      ["2026-10-04 02:15:00", "2026-10-03T15:45:00.000Z"], // in the gap: moved forward
      ["2026-10-04 02:30:00", "2026-10-03T15:30:00.000Z"], // +11:00
      ["2026-04-05 01:45:00", "2026-04-04T14:45:00.000Z"], // twice: the earlier (+11:00)
      ["2026-04-05 02:15:00", "2026-04-04T15:45:00.000Z"], // +10:30
    ]);
  });

  it("reads epoch seconds and milliseconds", () => {
    expect(table({ type: "timestamp", format: "epoch_ms" }, ["1700000000123", 1700000000123, " 0 ", "-1500", "1700000000123.456", 1700000000123n, "1.7e12", "abc"])).toEqual([
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
    expect(table({ type: "timestamp", format: "%d/%m/%Y %H:%M:%S" }, ["02/11/2026 09:30:00", "2/1/2026 9:05:07", "31/02/2026 09:30:00", "2026-11-02 09:30:00", "02/11/2026 09:30:00 "])).toEqual([
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
    expect(table({ type: "timestamp", format: "%Y-%m-%d %H:%M:%S.%f %z", timezone: "America/New_York" }, ["2026-11-02 09:30:00.5 +0100", "2026-11-02 09:30:00.1234567 Z"])).toEqual([
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
    expect(table({ type: "date" }, ["2026-11-02", " 2024-02-29 ", "2023-02-29", "2026-11-02T09:30:00Z", "2026-11-02 00:00:00", "2026-1-2", "20261102", new Date("2026-11-02T00:00:00Z"), new Date("2026-11-02T09:00:00Z"), 20261102])).toEqual([
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
    const r = trades.convert({ extra: "ignored", notes: "n", price: "189.25", quantity: "100", executed_at: "2026-11-02T09:30:00Z", "Trade ID": " T-1 ", fee: "", venue: null });
    expect(r).toEqual({
      ok: true,
      row: { trade_id: "T-1", executed_at: "2026-11-02T09:30:00.000Z", quantity: "100", price: "189.2500", fee: "0.00", venue: "XNAS", settled: false, notes: "n" },
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
        "trade_id: required but empty",
        'executed_at: "2026-02-30T00:00:00Z" is not a valid timestamp (2026-02 has no day 30)',
        'quantity: "1.5" is not a valid integer (a fraction)',
        "price: 1.23456 has more than 4 decimal places",
        'settled: "maybe" is not a valid boolean (true/false, t/f, yes/no, y/n, 1/0)',
      ],
    });
    expect(trades.convert({})).toEqual({
      ok: false,
      reasons: ["trade_id: required but empty", "executed_at: required but empty", "quantity: required but empty", "price: required but empty"],
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

describe("configuration errors (BAD_CONFIG)", () => {
  const bad = (columns: unknown[], key?: string[]) => () => compileSchema(TargetSchema.parse({ columns, ...(key ? { key } : {}) }));
  const config = (message: RegExp) => expect.objectContaining({ code: "BAD_CONFIG", message: expect.stringMatching(message) });

  it("names the column and the problem", () => {
    expect(bad([{ name: "t", type: "timestamp", timezone: "Mars/Olympus" }])).toThrow(config(/column t: time zone "Mars\/Olympus" does not exist/));
    expect(bad([{ name: "t", type: "timestamp", format: "%d %b %Y" }])).toThrow(config(/%b, which is not supported \(supported: %Y %m %d %H %M %S %f %z %%\)/));
    expect(bad([{ name: "t", type: "timestamp", format: "%H:%M" }])).toThrow(config(/must contain %Y, %m and %d/));
    expect(bad([{ name: "d", type: "date", format: "%Y-%m-%d %H" }])).toThrow(config(/column d: .*time of day/));
    expect(bad([{ name: "p", type: "decimal", scale: 2, default: "abc" }])).toThrow(config(/column p: default "abc" is not a valid decimal/));
    expect(bad([{ name: "q", type: "integer", scale: 2 }])).toThrow(config(/scale applies only to decimal/));
    expect(bad([{ name: "q", type: "integer", format: "%Y" }])).toThrow(config(/format applies only to timestamp and date/));
    expect(bad([{ name: "a" }, { name: "a" }])).toThrow(config(/column a is declared twice/));
    expect(bad([{ name: "a" }], ["id"])).toThrow(config(/key column id is not in the target schema \(columns: a\)/));
  });

  it("the value parsers are reusable on their own", () => {
    const p = compileValueParser({ type: "decimal", scale: 2 });
    expect(p("1.5")).toBe("1.50");
    expect(p("x")).toBeInstanceOf(Invalid);
  });
});

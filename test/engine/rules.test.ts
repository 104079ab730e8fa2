/** The pure decisions of the engine: trigger rules, retries, the expression language, error codes. */
import { describe, expect, it } from "vitest";
import { decide, type DependencyOutcome } from "../../src/engine/rules.js";
import { retryDecision } from "../../src/engine/backoff.js";
import { failureTolerance, fanOutOutputs } from "../../src/engine/fanout.js";
import { evaluateCondition, evaluateExpression, parseExpression, type ExpressionScope } from "../../src/spec/expressions.js";
import { asErrorCode, ERROR_CODES, SluiceError } from "../../src/errors.js";
import type { Step } from "../../src/spec/schema.js";

const dep = (name: string, status: DependencyOutcome["status"], extra: Partial<DependencyOutcome> = {}): DependencyOutcome => ({
  name,
  status,
  continueOnError: false,
  upstreamFailed: false,
  ...extra,
});

describe("trigger rules", () => {
  it("allSucceeded runs past successes, condition skips and tolerated failures, and skips after a failure", () => {
    expect(decide("allSucceeded", [dep("a", "succeeded"), dep("b", "skipped"), dep("c", "failed", { continueOnError: true })], undefined)).toEqual({
      run: true,
    });
    expect(decide("allSucceeded", [dep("a", "succeeded"), dep("b", "failed")], undefined)).toEqual({
      run: false,
      reason: "dependency b failed",
      upstreamFailed: true,
    });
    expect(decide("allSucceeded", [dep("a", "skipped", { upstreamFailed: true })], undefined)).toEqual({
      run: false,
      reason: "dependency a was skipped after a failure upstream",
      upstreamFailed: true,
    });
    expect(decide("allSucceeded", [dep("a", "succeeded")], { by: "x" })).toEqual({
      run: false,
      reason: "not started: step x failed and the run stops",
      upstreamFailed: true,
    });
  });
  it("anyFailed runs only after a failure, even a tolerated or propagated one; always always runs", () => {
    expect(decide("anyFailed", [dep("a", "succeeded")], undefined)).toMatchObject({ run: false, upstreamFailed: false });
    expect(decide("anyFailed", [dep("a", "failed", { continueOnError: true })], undefined)).toEqual({ run: true });
    expect(decide("anyFailed", [dep("a", "skipped", { upstreamFailed: true })], { by: "z" })).toEqual({ run: true });
    expect(decide("always", [dep("a", "failed"), dep("b", "cancelled")], { by: "a" })).toEqual({ run: true });
  });
});

describe("the retry decision", () => {
  const policy = { limit: 2, initialMs: 1000, factor: 2, maxMs: 10_000, jitter: 0 };
  it("retries a retryable failure while budget is left, with the backoff delay", () => {
    expect(retryDecision(policy, 1, { retryable: true, stopping: false })).toEqual({ retry: true, delayMs: 1000 });
    expect(retryDecision(policy, 2, { retryable: true, stopping: false })).toEqual({ retry: true, delayMs: 2000 });
    expect(retryDecision(policy, 3, { retryable: true, stopping: false })).toEqual({ retry: false });
  });
  it("never retries what retrying cannot fix, nor when the run stops", () => {
    expect(retryDecision(policy, 1, { retryable: false, stopping: false })).toEqual({ retry: false });
    expect(retryDecision(policy, 1, { retryable: true, stopping: true })).toEqual({ retry: false });
  });
});

describe("fan-out arithmetic", () => {
  const step = (s: Partial<Step>) => ({ name: "x", exec: { command: ["true"] }, forEach: [], ...s }) as Step;
  it("reads failureThreshold as a share below 1 and a count from 1", () => {
    expect(failureTolerance(step({}), 100)).toBe(0);
    expect(failureTolerance(step({ continueOnError: true }), 100)).toBe(Infinity);
    expect(failureTolerance(step({ failureThreshold: 0.1 }), 100)).toBe(10);
    expect(failureTolerance(step({ failureThreshold: 3 }), 100)).toBe(3);
  });
  it("lists item outputs in order with null for items that did not succeed", () => {
    expect(
      fanOutOutputs([
        { status: "succeeded", outputs: { a: 1 } },
        { status: "failed", outputs: null },
        { status: "skipped", outputs: null },
      ]),
    ).toEqual({ items: [{ a: 1 }, null, null], count: 3, succeeded: 1, failed: 1, skipped: 1 });
  });
});

describe("expressions", () => {
  const scope: ExpressionScope = {
    params: { n: 3, mode: "full", flag: "true" },
    steps: { "check-rows": { outputs: { rows: 12, list: [{ id: "a" }], day: "2026-12-03" } }, none: { outputs: undefined } },
    run: { id: "r-1", workflow: "w" },
  };
  it("evaluates comparisons, logic, literals and dashed step names", () => {
    expect(evaluateCondition("${{ params.n > 2 && steps.check-rows.outputs.rows != 0 }}", scope)).toBe(true);
    expect(evaluateCondition("!(params.mode == 'full') || params.n >= 4", scope)).toBe(false);
    expect(evaluateCondition('params.flag == true && steps.check-rows.outputs.day < "2027-01-01"', scope)).toBe(true);
    expect(evaluateExpression('steps.check-rows.outputs.list[0]["id"]', scope)).toBe("a");
    expect(evaluateCondition("params.n == '3'", scope)).toBe(true);
    expect(evaluateCondition("null == steps.check-rows.outputs.list[0].id", scope)).toBe(false);
  });
  it("refuses what it cannot mean, with the column", () => {
    expect(parseExpression("params.n >> 2")).toEqual({ error: '"params.n >> 2" at column 11: unexpected ">"' });
    expect(parseExpression("params.n = 2")).toEqual({ error: '"params.n = 2" at column 10: use "==" to compare' });
    expect(parseExpression("a < b < c")).toMatchObject({ error: expect.stringContaining("unknown name") });
    expect(parseExpression("params.n < 1 < 2")).toEqual({ error: '"params.n < 1 < 2" at column 14: comparisons do not chain; combine them with && or ||' });
    expect(parseExpression("(params.n")).toEqual({ error: '"(params.n" at column 10: missing ")"' });
    expect(parseExpression("'open")).toEqual({ error: '"\'open" at column 1: the string is not closed' });
    expect(() => evaluateCondition("params.n", scope)).toThrow('condition "params.n" gave number 3, not true or false; compare it, e.g. "!= 0"');
    expect(() => evaluateCondition("params.mode > 2", scope)).toThrow(
      'expression "params.mode > 2" at column 13: cannot order the string "full" and number 2 with >',
    );
    expect(() => evaluateExpression("steps.none.outputs.x", scope)).toThrow("that step has no outputs");
    expect(() => evaluateExpression("item.x", scope)).toThrow("item is known only in a step with forEach");
  });
});

describe("the error vocabulary", () => {
  it("is closed: a code from outside comes back as the fallback", () => {
    expect(asErrorCode("BAD_INPUT", "INTERNAL")).toBe("BAD_INPUT");
    expect(asErrorCode("ENOENT", "IO_ERROR")).toBe("IO_ERROR");
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    expect(new SluiceError("BAD_CONFIG", "x").retryable).toBe(false);
    expect(new SluiceError("NETWORK_ERROR", "x").retryable).toBe(true);
  });
});

describe("the migration plan", () => {
  it("applies what is missing in version order and refuses a store from a newer Sluice", async () => {
    const { migrationPlan } = await import("../../src/store/migrate.js");
    const ms = [
      { version: 2, sql: "b" },
      { version: 1, sql: "a" },
      { version: 3, sql: "c" },
    ];
    expect(migrationPlan([], ms).map((m) => m.version)).toEqual([1, 2, 3]);
    expect(migrationPlan([1, 2], ms).map((m) => m.version)).toEqual([3]);
    expect(() => migrationPlan([1, 2, 3, 4], ms)).toThrow("the state store was written by a newer Sluice (schema 4, this one knows 3); upgrade Sluice");
  });
});

import { describe, expect, it } from "vitest";
import { cronFor, decideFire, dueFires, fireRunId, firesBetween, nextFire, scheduleTriggers, triggerKey } from "../../src/triggers/schedule.js";
import { workflow } from "../helpers.js";

const ms = (iso: string) => Date.parse(iso);
const iso = (xs: number[]) => xs.map((x) => new Date(x).toISOString());

describe("fire computation", () => {
  it("the standard workflow's 0 */6 * * * in UTC fires at 00, 06, 12 and 18", () => {
    const cron = cronFor("0 */6 * * *", "UTC");
    expect(iso(firesBetween(cron, ms("2026-01-01T00:00:00Z"), ms("2026-01-02T00:00:00Z")))).toEqual([
      "2026-01-01T06:00:00.000Z",
      "2026-01-01T12:00:00.000Z",
      "2026-01-01T18:00:00.000Z",
      "2026-01-02T00:00:00.000Z",
    ]);
    // (since, now]: the fire at `since` is not due again, the one at `now` is.
    expect(iso(firesBetween(cron, ms("2026-01-01T06:00:00Z"), ms("2026-01-01T12:00:00Z")))).toEqual(["2026-01-01T12:00:00.000Z"]);
    expect(firesBetween(cron, ms("2026-01-01T06:00:00Z"), ms("2026-01-01T11:59:59.999Z"))).toEqual([]);
  });

  it("the bulk workflow's 0 2 * * * in UTC: due fires after three days down", () => {
    const cron = cronFor("0 2 * * *");
    expect(dueFires(cron, ms("2026-01-01T02:00:00Z"), ms("2026-01-04T02:00:30Z"))).toEqual({
      newest: ms("2026-01-04T02:00:00Z"),
      count: 3,
      capped: false,
    });
    expect(dueFires(cron, ms("2026-01-04T02:00:00Z"), ms("2026-01-05T01:59:59Z"))).toBeNull();
    // A workflow applied half a second after 02:00 does not fire for that 02:00.
    expect(nextFire(cron, ms("2026-01-01T02:00:00.500Z"))).toBe(ms("2026-01-02T02:00:00Z"));
  });

  it("honours a time zone across the spring-forward and fall-back changes (Europe/London)", () => {
    const cron = cronFor("30 1 * * *", "Europe/London");
    // 29 March 2026: 01:00 GMT jumps to 02:00 BST, so 01:30 local does not exist; it fires once, at the shifted instant.
    expect(iso(firesBetween(cron, ms("2026-03-27T12:00:00Z"), ms("2026-03-31T00:00:00Z")))).toEqual([
      "2026-03-28T01:30:00.000Z", // 01:30 GMT
      "2026-03-29T01:30:00.000Z", // the missing 01:30, run at 02:30 BST
      "2026-03-30T00:30:00.000Z", // 01:30 BST
    ]);
    // 25 October 2026: 01:30 local happens twice (BST, then GMT); it fires once.
    expect(iso(firesBetween(cron, ms("2026-10-24T12:00:00Z"), ms("2026-10-27T00:00:00Z")))).toEqual([
      "2026-10-25T00:30:00.000Z", // 01:30 BST, the first of the two
      "2026-10-26T01:30:00.000Z", // 01:30 GMT
    ]);
  });

  it("a daily fire in New York keeps its local time across the change", () => {
    const cron = cronFor("0 9 * * *", "America/New_York");
    expect(iso(firesBetween(cron, ms("2026-03-07T00:00:00Z"), ms("2026-03-10T00:00:00Z")))).toEqual([
      "2026-03-07T14:00:00.000Z", // EST, UTC-5
      "2026-03-08T13:00:00.000Z", // EDT, UTC-4
      "2026-03-09T13:00:00.000Z",
    ]);
  });

  it("counts at most a bounded number of missed fires, and still finds the newest", () => {
    const cron = cronFor("* * * * *");
    const due = dueFires(cron, ms("2025-01-01T00:00:00Z"), ms("2026-01-01T12:34:56Z"), 100);
    expect(due).toEqual({ newest: ms("2026-01-01T12:34:00Z"), count: 100, capped: true });
    expect(decideFire(due, ms("2026-01-01T12:34:56Z"), "skip")!.outcome).toBe("started (skipped 99+ earlier fires missed while down)");
    expect(decideFire(due, ms("2026-01-01T12:34:56Z"), "skip", 10_000)!.outcome).toBe("skipped: missed 100+ fires while down");
    const tz = cronFor("0 * * * *", "Europe/Paris");
    expect(dueFires(tz, ms("2025-01-01T00:00:00Z"), ms("2026-01-01T12:34:56Z"), 50)).toEqual({
      newest: ms("2026-01-01T12:00:00Z"),
      count: 50,
      capped: true,
    });
  });
});

describe("catch-up decisions", () => {
  const cron = cronFor("*/5 * * * *");
  const t0 = ms("2026-03-01T00:00:00Z");
  const min = 60_000;

  it("an on-time fire starts", () => {
    const d = decideFire(dueFires(cron, t0, t0 + 5 * min + 1000), t0 + 5 * min + 1000, "skip");
    expect(d).toEqual({ fireAt: t0 + 5 * min, run: true, outcome: "started", missed: 0 });
  });

  it("skip: the newest fire still runs within the grace; past it, one skipped row for all", () => {
    const now = t0 + 60 * min + 30_000; // 12 fires since t0, the newest 30 s ago
    expect(decideFire(dueFires(cron, t0, now), now, "skip")).toEqual({
      fireAt: t0 + 60 * min,
      run: true,
      outcome: "started (skipped 11 earlier fires missed while down)",
      missed: 11,
    });
    const later = t0 + 62 * min; // the newest is 2 minutes late
    expect(decideFire(dueFires(cron, t0, later), later, "skip")).toEqual({
      fireAt: t0 + 60 * min,
      run: false,
      outcome: "skipped: missed 12 fires while down",
      missed: 12,
    });
    const one = t0 + 7 * min; // a single fire, 2 minutes late
    expect(decideFire(dueFires(cron, t0, one), one, "skip")!.outcome).toBe("skipped: missed 1 fire while down");
  });

  it("runOnce: one run for the newest fire, however late", () => {
    const later = t0 + 62 * min;
    expect(decideFire(dueFires(cron, t0, later), later, "runOnce")).toEqual({
      fireAt: t0 + 60 * min,
      run: true,
      outcome: "caught up 12 missed fires",
      missed: 12,
    });
  });

  it("the grace is configurable", () => {
    const now = t0 + 5 * min + 10_000;
    expect(decideFire(dueFires(cron, t0, now), now, "skip", 5000)!.run).toBe(false);
  });
});

describe("trigger keys and run ids", () => {
  it("keys name the expression and the zone (UTC by default), one per distinct schedule", () => {
    const wf = workflow({
      triggers: [
        { schedule: "0 2 * * *" },
        { schedule: "0 2 * * *", timezone: "UTC" },
        { schedule: "0 2 * * *", timezone: "Europe/London", catchUp: "runOnce", concurrencyPolicy: "Forbid" },
        { event: "x" },
        { manual: {} },
      ],
      steps: [{ name: "a", agent: "test", action: "echo", with: { value: 1 } }],
    });
    expect(scheduleTriggers(wf)).toEqual([
      { key: "schedule:0 2 * * *@UTC", expr: "0 2 * * *", timezone: "UTC", catchUp: "skip", concurrencyPolicy: "Allow" },
      { key: "schedule:0 2 * * *@Europe/London", expr: "0 2 * * *", timezone: "Europe/London", catchUp: "runOnce", concurrencyPolicy: "Forbid" },
    ]);
    expect(triggerKey("*/5 * * * *")).toBe("schedule:*/5 * * * *@UTC");
  });

  it("a fire's run id is derived from the fire alone", () => {
    const a = fireRunId("wf", "schedule:0 2 * * *@UTC", ms("2026-01-01T02:00:00Z"));
    expect(a).toMatch(/^r-[0-9a-z]+-[0-9a-f]{6}$/);
    expect(fireRunId("wf", "schedule:0 2 * * *@UTC", ms("2026-01-01T02:00:00Z"))).toBe(a);
    expect(fireRunId("wf", "schedule:0 2 * * *@UTC", ms("2026-01-02T02:00:00Z"))).not.toBe(a);
    expect(fireRunId("wf2", "schedule:0 2 * * *@UTC", ms("2026-01-01T02:00:00Z"))).not.toBe(a);
  });
});

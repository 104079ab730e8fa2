/**
 * Keyset paging of runs on both stores: every run on exactly one page whatever the ties in
 * created_at, filters by workflow, status, trigger and time, and the row counts a run's storage
 * steps wrote, summed when it ends.
 */
import { afterAll, describe, expect, test } from "vitest";
import { testEnv, workflow } from "../helpers.js";
import { bothStores } from "../stores.js";
import type { RunTrigger, StateStore } from "../../src/store/types.js";

const wf = workflow({ steps: [{ name: "a", agent: "test", action: "echo", with: { value: 1 } }] }, undefined, "page-a");
const wfB = workflow({ steps: [{ name: "b", agent: "test", action: "echo", with: { value: 1 } }] }, undefined, "page-b");

for (const backend of bothStores("uipage")) {
  describe(`keyset paging on ${backend.dialect}`, async () => {
    const shared = await backend.open();
    const env = testEnv([], { store: shared });
    const store: StateStore = env.store;
    afterAll(async () => {
      await env.cleanup();
      await shared?.close();
      await backend.drop();
    });

    const ids: string[] = [];
    const base = Date.parse("2024-05-01T00:00:00.000Z");
    const triggers: RunTrigger[] = [{ type: "manual" }, { type: "schedule", name: "0 * * * *" }, { type: "event", name: "x" }];
    // 237 runs, three per millisecond: ties in created_at are broken by id.
    for (let i = 0; i < 237; i++) {
      const id = `run-${String(i).padStart(4, "0")}`;
      await store.createRun({
        id,
        workflow: i % 2 ? wfB : wf,
        source: null,
        params: {},
        trigger: triggers[i % 3]!,
        createdAt: new Date(base + Math.floor(i / 3)).toISOString(),
        version: 1 + (i % 4),
      });
      ids.push(id);
    }

    const pageAll = async (filter: Omit<Parameters<StateStore["listRunsPage"]>[0], "limit" | "after">, limit: number) => {
      const seen: string[] = [];
      let after: string | undefined;
      for (let n = 0; n < 1000; n++) {
        const page = await store.listRunsPage({ ...filter, limit, after });
        seen.push(...page.runs.map((r) => r.id));
        expect(page.runs.length).toBeLessThanOrEqual(limit);
        if (!page.next) break;
        after = page.next;
      }
      return seen;
    };

    test("every run exactly once across pages, newest first", async () => {
      const seen = await pageAll({}, 20);
      expect(seen.length).toBe(237);
      expect(new Set(seen).size).toBe(237);
      expect(seen).toEqual([...ids].reverse());
    });

    test("a run created while paging does not shift the pages after it", async () => {
      const first = await store.listRunsPage({ limit: 10 });
      await store.createRun({ id: "run-late", workflow: wf, source: null, params: {}, trigger: null, createdAt: new Date(base + 10_000).toISOString() });
      const second = await store.listRunsPage({ limit: 10, after: first.next! });
      expect(second.runs[0]!.id).toBe([...ids].reverse()[10]);
    });

    test("filters by workflow, trigger type and time range, each paged completely", async () => {
      const b = await pageAll({ workflow: "page-b" }, 7);
      expect(b).toEqual(ids.filter((_, i) => i % 2 === 1).reverse());
      const sched = await pageAll({ trigger: "schedule" }, 9);
      expect(sched).toEqual(ids.filter((_, i) => i % 3 === 1).reverse());
      const window = await pageAll({ since: new Date(base + 10).toISOString(), until: new Date(base + 20).toISOString() }, 4);
      expect(window).toEqual(ids.slice(30, 60).reverse());
      const page = await store.listRunsPage({ workflow: "page-a", until: new Date(base + 1000).toISOString(), limit: 1 });
      expect(page.runs[0]).toMatchObject({ workflow: "page-a", status: "pending", version: expect.any(Number), rows: null });
      expect(page.runs[0]).not.toHaveProperty("spec");
    });

    test("a cursor that was not made by the store is refused", async () => {
      await expect(store.listRunsPage({ limit: 5, after: "bm90IGEgY3Vyc29y" })).rejects.toMatchObject({ code: "BAD_INPUT" });
    });

    test("the storage step's counts are summed onto the run when it ends; status filter", async () => {
      const id = ids[0]!;
      const now = Date.now();
      expect(await store.claimRun(id, "me", 60_000, now)).toBe(true);
      await store.markRunStarted(id, "me", new Date(now).toISOString(), null);
      await store.beginAttempt(id, "a", 1, "me", new Date(now).toISOString());
      await store.endAttempt({
        runId: id,
        step: "a",
        n: 1,
        owner: "me",
        status: "succeeded",
        endedAt: new Date(now + 5).toISOString(),
        error: null,
        outputs: { rowsIn: 10, rowsStored: 7, rowsQuarantined: 2, rowsDuplicate: 1, table: "t" },
        stepStatus: "succeeded",
        notBefore: null,
      });
      await store.finishRun(id, "me", "succeeded", new Date(now + 6).toISOString(), null);
      const ok = await pageAll({ status: "succeeded" }, 3);
      expect(ok).toEqual([id]);
      const [summary] = await store.getRunSummaries([id, "no-such-run"]);
      expect(summary).toMatchObject({ id, status: "succeeded", rows: { in: 10, stored: 7, quarantined: 2, duplicate: 1 } });
    });
  });
}

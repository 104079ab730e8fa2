/**
 * Real sources for the recovery tests: a paginated JSON API on 127.0.0.1 (pages linked by
 * `Link: <…>; rel="next"`, with scripted failures), item rows 1..N, and a destination table
 * filled through the real destination code.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { openDestination } from "../../src/connectors/destinations/index.js";
import type { Column, TypedRow } from "../../src/formats/typed.js";

export type Item = {
  id: number;
  updated_at: string;
  name: string;
  amount: string;
};

export const ITEM_COLUMNS: Column[] = [
  { name: "id", type: "integer" },
  { name: "updated_at", type: "timestamp" },
  { name: "name", type: "string" },
  { name: "amount", type: "decimal", scale: 2 },
];

export const ITEM_SCHEMA = { key: ["id"], columns: ITEM_COLUMNS.map((c) => ({ ...c })) };

/** Item `id`, last updated `ageMs` before `now` (fixed per test run so sources agree). */
export function item(id: number, now: number, ageMs = 0): Item {
  return {
    id,
    updated_at: new Date(now - ageMs - (1000 - (id % 1000)) * 1000).toISOString(),
    name: `item-${id}`,
    amount: `${id}.${String(id % 100).padStart(2, "0")}`,
  };
}

export interface PagedApi {
  url: string;
  /** Every request's path and query, in order. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * `/api?page=N` answers a JSON array of `pageSize` rows of `rows`, with a next link while rows
 * remain. `status(page)` may script a failure (e.g. 503 from page 4); `token` demands
 * `Authorization: Bearer token` (else 401).
 */
export async function startPagedApi(opts: {
  rows: Record<string, unknown>[];
  pageSize?: number;
  status?: (page: number) => number | undefined;
  token?: string;
  /** Milliseconds before each answer (a slow API, to stop a run in the middle). */
  delayMs?: number;
}): Promise<PagedApi> {
  const pageSize = opts.pageSize ?? 100;
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    if (opts.delayMs) setTimeout(() => answer(req, res), opts.delayMs);
    else answer(req, res);
  });
  const answer = (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? "/", "http://x");
    requests.push(`${u.pathname}${u.search}`);
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"error":"unauthorized"}');
      return;
    }
    const page = Number(u.searchParams.get("page") ?? "1");
    const failure = opts.status?.(page);
    if (failure) {
      res.writeHead(failure, { "content-type": "application/json" }).end('{"error":"scripted"}');
      return;
    }
    const rows = opts.rows.slice((page - 1) * pageSize, page * pageSize);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (page * pageSize < opts.rows.length) headers.link = `<${u.pathname}?page=${page + 1}>; rel="next"`;
    res.writeHead(200, headers).end(JSON.stringify(rows));
  };
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/api`,
    requests,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/** Store `items` into `table` of `destination` with the real destination code (as a standard run would). */
export async function fillDestination(destination: string, table: string, items: Item[]): Promise<void> {
  const dest = await openDestination(destination);
  try {
    await dest.prepare({ table, columns: ITEM_COLUMNS, key: ["id"] });
    const rows: TypedRow[] = items.map((i) => ({ id: String(i.id), updated_at: i.updated_at, name: i.name, amount: i.amount }));
    for (let i = 0; i < rows.length; i += 500) await dest.write(rows.slice(i, i + 500), { runId: "r-seed", step: "seed" });
  } finally {
    await dest.close();
  }
}

export const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Items as CSV text (a file fallback). */
export function itemsCsv(items: Item[]): string {
  return "id,updated_at,name,amount\n" + items.map((i) => `${i.id},${i.updated_at},${i.name},${i.amount}`).join("\n") + "\n";
}

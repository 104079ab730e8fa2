/**
 * POST /api/v1/decrypt (admin only): rows of a table written by store_with_encryption, with
 * their encrypted cells in clear — the API face of `sluice decrypt`, the same reader
 * (connectors/destinations/decrypt-rows.ts) and the same audit entry, fail closed: the
 * `data.decrypt` entry, with the token's name as the actor, is written before a row is sent.
 * The keyring is the server's ($SLUICE_KEYRING, else <home>/keyring.json); a request never names one.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context } from "hono";
import { readDecryptedRows } from "../../connectors/destinations/decrypt-rows.js";
import { keyringSpec, loadKeyring } from "../../crypto/keyring.js";
import type { ServerDeps } from "../deps.js";
import { requireRole } from "../auth.js";
import { bearer, newRouter } from "../router.js";
import { errorResponses } from "../schemas.js";

const DecryptRequest = z
  .object({
    destination: z.string().min(1).openapi({ example: "sqlite:/data/.sluice/warehouse.db", description: "sqlite:PATH or a postgres:// URL." }),
    table: z.string().min(1).openapi({ example: "accounts_secure" }),
    where: z
      .object({ column: z.string().min(1), value: z.string() })
      .strict()
      .optional()
      .openapi({ description: "Only rows whose column equals the value." }),
    limit: z.number().int().min(1).max(10_000).default(1_000),
  })
  .strict();

const decrypt = createRoute({
  method: "post",
  path: "/decrypt",
  tags: ["security"],
  security: bearer,
  summary: "Rows of an encrypted table in clear (admin; every read audited)",
  middleware: [requireRole("admin")] as const,
  request: { body: { content: { "application/json": { schema: DecryptRequest } }, required: true } },
  responses: {
    200: {
      description: "The rows, encrypted cells decrypted; tokens and masks as stored",
      content: { "application/json": { schema: z.object({ rows: z.array(z.record(z.string(), z.unknown())) }) } },
    },
    ...errorResponses(403, 415),
  },
});

export function decryptRoutes(deps: ServerDeps) {
  const r = newRouter();
  r.openapi(decrypt, async (c) => {
    const req = c.req.valid("json");
    const ring = loadKeyring(keyringSpec(undefined, deps.home));
    const who = c.get("principal");
    const base = { actor: `token:${who.name}`, origin: `api@${clientAddress(c)}`, event: "data.decrypt", resource: `table:${req.table}` };
    const rows = await readDecryptedRows(
      { destination: req.destination, table: req.table, limit: req.limit, ...(req.where ? { where: req.where } : {}) },
      ring,
      (outcome, details) => deps.store.appendAudit({ ...base, outcome, details }).then(() => undefined),
    );
    deps.log?.info({ table: req.table, rows: rows.length, by: who.name }, "rows decrypted");
    return c.json({ rows }, 200);
  });
  return r;
}

/** The peer's address (not a forwarded header, which the client writes); `in-process` for app.request in tests. */
function clientAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? "unknown";
  } catch {
    return "in-process";
  }
}

/**
 * The router every route module builds on, so a request failing its schema answers with the
 * same 400 (`{ error: { code: "BAD_INPUT", message: "query.limit: must be ≤ 500", field } }`)
 * whichever module declared the route.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./auth.js";
import { validationHook } from "./errors.js";

export function newRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}

/** Declared on every /api/v1 route in the OpenAPI document. */
export const bearer = [{ bearerAuth: [] }];

/**
 * The batch data plane's shared vocabulary. The typed-row types live below every user, in
 * formats/typed.ts (destinations import them from there); the zod-derived spec types of a
 * workflow's `with:` blocks live here, next to the actions that take them.
 */
import type { z } from "zod";
import type { QualityRule, targetSchemaWith } from "../input-shapes.js";

export type { Column, ColumnTypeName, QuarantinedRecord, TypedRow, TypedValue } from "../../formats/typed.js";
export type TargetSchemaSpec = z.infer<ReturnType<typeof targetSchemaWith>>;
export type QualityRuleSpec = z.infer<typeof QualityRule>;

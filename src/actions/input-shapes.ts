/**
 * The shapes of a target schema and of a quality rule, without the checks that ask the typer.
 *
 * WHY a file of its own: the typer (batch/typing.ts) is typed by the target schema (its
 * TargetSchemaSpec, batch/model.ts), and the target schema's column check (inputs.ts) asks the
 * typer whether a format or a default is valid. With the shapes and the types in inputs.ts, the
 * three files imported one another in a circle; here the types derive from zod shapes that
 * import nothing of ours, and inputs.ts adds the typer's checks to the column.
 */
import { z } from "zod";

export const ColumnType = z.enum(["string", "integer", "decimal", "boolean", "timestamp", "date"]);

const NullValues = z.array(z.string());

/** A target column as written; inputs.ts's TargetColumn adds the checks compileSchema would make at run time. */
export const TargetColumnShape = z
  .object({
    name: z.string().min(1),
    from: z.string().optional().describe("Source column name when it differs (a rename)."),
    type: ColumnType.default("string"),
    scale: z.number().int().min(0).max(18).optional().describe("Digits after the point, for decimals."),
    format: z
      .string()
      .optional()
      .describe(
        "Input format of timestamps and dates when not ISO-8601: epoch_s, epoch_ms, or strftime tokens such as %d/%m/%Y %H:%M, %b %e %Y, %m/%d/%Y %I:%M %p, %Y-%m-%dT%H:%M:%S%z.",
      ),
    timezone: z
      .string()
      .optional()
      .describe("Time zone of timestamps that carry no offset (%z) or zone (%Z): an IANA name, a fixed offset such as +05:30, or UTC (the default)."),
    trim: z.boolean().optional(),
    required: z.boolean().optional(),
    default: z.union([z.string(), z.number(), z.boolean()]).optional(),
    nullValues: NullValues.optional().describe('Strings that mean "no value" in this column, replacing the schema\'s nullValues, e.g. ["", NA, N/A].'),
  })
  .strict();

/** The target schema around a column schema (inputs.ts passes TargetColumn, with its checks). */
export function targetSchemaWith(column: typeof TargetColumnShape) {
  return z
    .object({
      columns: z.array(column).min(1),
      key: z.array(z.string()).optional().describe("Columns that identify a record, for idempotent storage; a record whose key column is empty is rejected."),
      nullValues: NullValues.optional().describe(
        'Strings that mean "no value" (null, then the column\'s default or a required reason); default [""]. Compared after trimming, except in string columns without trim: true; a string column whose list leaves "" out keeps "" as an empty string.',
      ),
    })
    .strict()
    .superRefine((s, ctx) => {
      const names = new Map<string, number>();
      s.columns.forEach((c, i) => {
        const first = names.get(c.name);
        if (first !== undefined) ctx.addIssue({ code: "custom", path: ["columns", i, "name"], message: `is declared twice (also columns[${first}])` });
        else names.set(c.name, i);
        if (c.name === "__proto__") ctx.addIssue({ code: "custom", path: ["columns", i, "name"], message: "is not allowed as a column name" });
      });
      (s.key ?? []).forEach((k, i) => {
        if (!names.has(k))
          ctx.addIssue({ code: "custom", path: ["key", i], message: `is not a column of the target schema (columns: ${[...names.keys()].join(", ")})` });
      });
    });
}

export const QualityRule = z
  .object({
    column: z.string().optional(),
    required: z.boolean().optional(),
    type: ColumnType.optional(),
    unique: z.boolean().optional(),
    min: z.union([z.number(), z.string()]).optional(),
    max: z.union([z.number(), z.string()]).optional(),
    pattern: z.string().optional(),
    allowed: z.array(z.union([z.string(), z.number(), z.boolean()])).optional(),
    rowCount: z.object({ min: z.number().int().optional(), max: z.number().int().optional() }).strict().optional(),
    freshness: z.object({ column: z.string(), maxAge: z.string() }).strict().optional(),
  })
  .strict();

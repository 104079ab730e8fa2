/**
 * Input pieces shared by several actions' `with:` schemas, so a source, a target schema or a
 * quality rule is written the same way in every workflow.
 */
import { z } from "zod";
import { Invalid, formatProblem, showValue, timezoneProblem, typeDefault } from "./batch/typing.js";
import { QualityRule, TargetColumnShape, targetSchemaWith } from "./input-shapes.js";

export { QualityRule } from "./input-shapes.js";

const SECRET_REF = /^(env|file):.+/;

export const SecretRef = z
  .string()
  .regex(SECRET_REF, "must be a secret reference, env:NAME or file:PATH, never the secret itself")
  .describe("A secret reference: env:NAME or file:PATH.");

/** A file path, directory, glob, http(s):// URL or postgres:// URL (credentials only through `auth`). */
export const Source = z.string().min(1).describe("A file, directory, glob, http(s):// URL or postgres:// URL.");

/** A dataset produced by an earlier step, usually `${{ steps.NAME.outputs.dataset }}`. */
export const DatasetRef = z.string().min(1).describe("A dataset from an earlier step: ${{ steps.NAME.outputs.dataset }}.");

export const Auth = z
  .object({
    type: z.enum(["bearer", "basic", "apiKey"]),
    token: SecretRef.optional(),
    username: z.string().optional(),
    password: SecretRef.optional(),
    header: z.string().optional(),
    value: SecretRef.optional(),
  })
  .strict();

/** How an HTTP source pages: a next link (JSON path or Link header), a cursor, or page numbers. */
export const Pagination = z
  .object({
    type: z.enum(["nextLink", "cursor", "page"]),
    path: z.string().optional().describe("nextLink: JSON path of the next URL; default the Link header."),
    cursorParam: z.string().optional(),
    cursorPath: z.string().optional(),
    pageParam: z.string().optional(),
    startPage: z.number().int().optional(),
    pageSize: z.number().int().min(1).optional(),
    pageSizeParam: z.string().optional(),
  })
  .strict();

export const CsvOptions = z
  .object({
    delimiter: z.string().length(1).optional(),
    quote: z.string().length(1).optional(),
    header: z.boolean().optional(),
    columns: z.array(z.string()).optional(),
    encoding: z.string().min(1).optional().describe("Text encoding (utf-8, utf-16le, latin1, windows-1252, …); default utf-8."),
  })
  .strict();

export const Format = z.enum(["csv", "tsv", "ndjson", "json", "parquet", "arrow"]);

export const TargetColumn = TargetColumnShape
  // What compileSchema would refuse at run time, refused by `sluice validate` at the field.
  .superRefine((c, ctx) => {
    let clean = true;
    const problem = (path: string, message: string): void => {
      clean = false;
      ctx.addIssue({ code: "custom", path: [path], message });
    };
    if (c.format !== undefined) {
      if (c.type !== "timestamp" && c.type !== "date")
        problem("format", `cannot apply: this column is ${c.type}, and a format is only for timestamp and date columns`);
      else {
        const why = formatProblem(c.format, c.type);
        if (why !== undefined) problem("format", why);
      }
    }
    if (c.timezone !== undefined) {
      const why = timezoneProblem(c.timezone);
      if (why !== undefined) problem("timezone", why);
    }
    if (c.scale !== undefined && c.type !== "decimal") problem("scale", `applies only to decimal columns, not ${c.type}`);
    if (clean && c.default !== undefined) {
      const typed = typeDefault(c);
      if (typed instanceof Invalid) problem("default", typeof c.default === "string" ? typed.why : `${showValue(c.default, typed.quoted)} ${typed.why}`);
    }
  });

export const TargetSchema = targetSchemaWith(TargetColumn);

export const QualityInput = {
  dataset: DatasetRef,
  rules: z.array(QualityRule).default([]),
  schema: z
    .lazy(() => SchemaRef)
    .optional()
    .describe("A schema (inline or a file) whose rules: are applied as well."),
  threshold: z.number().min(0).max(1).default(0.95).describe("Lowest quality score (0..1) that passes."),
};

export const Destination = z.string().min(1).describe("sqlite:PATH, postgres:// URL or env:/file: reference to one, or a .parquet/.ndjson path.");

/** How a raw file is read: its format and text encoding and, for CSV, the dialect. */
export const ReadOptions = z
  .object({
    format: Format.optional().describe("The file format; default from the file's extension."),
    encoding: z.string().min(1).optional().describe("Text encoding (utf-8, utf-16le, latin1, windows-1252, …); default utf-8."),
    delimiter: z.string().length(1).optional(),
    quote: z.string().length(1).optional(),
    header: z.boolean().optional().describe("CSV: the first record names the columns (default true)."),
    columns: z.array(z.string()).optional().describe("CSV without a header: the column names."),
  })
  .strict();

/**
 * A schema document: the target schema plus how to read the source, what to do with columns the
 * schema does not declare, and quality rules. Written inline in a step's `with: schema:` or as a
 * schema file (`sluice infer --print-schema FILE` writes one), named by its path.
 */
export const SchemaDocument = TargetSchema.extend({
  read: ReadOptions.optional(),
  extraColumns: z
    .enum(["ignore", "error", "keep"])
    .optional()
    .describe("Source columns the schema does not declare: ignore (default; reported), error, or keep as string columns."),
  rules: z.array(QualityRule).optional().describe("Quality rules, applied by a quality step that names this schema."),
}).strict();

/** A schema inline, or the path of a schema file. */
export const SchemaRef = z.union([SchemaDocument, z.string().min(1).describe("The path of a schema file (YAML or JSON).")]);

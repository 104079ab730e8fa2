/**
 * `sluice convert INPUT OUTPUT`: the ingestion readers and writers as a command, so a user can
 * check or convert a file before ingesting it. Malformed records are listed and exit 1.
 */
import { mkdir, readFile } from "node:fs/promises";
import { parse } from "yaml";
import { TargetSchema } from "../actions/inputs.js";
import { compileSchema, type CompiledSchema } from "../actions/batch/typing.js";
import { dirname } from "node:path";
import { SluiceError } from "../errors.js";
import { convertFile } from "../formats/convert.js";
import type { FileFormat } from "../formats/types.js";

const FORMATS: FileFormat[] = ["csv", "tsv", "ndjson", "json", "parquet"];

export async function convertCommand(input: string, output: string, o: { from?: string; to?: string; schema?: string }): Promise<number> {
  for (const [flag, value] of [["--from", o.from], ["--to", o.to]] as const)
    if (value !== undefined && !FORMATS.includes(value as FileFormat))
      throw new SluiceError("USAGE", `${flag} must be one of ${FORMATS.join(", ")}, not "${value}"`);
  const schema = o.schema ? await loadSchema(o.schema) : undefined;
  await mkdir(dirname(output), { recursive: true });
  const result = await convertFile({
    input, output, from: o.from as FileFormat | undefined, to: o.to as FileFormat | undefined,
    ...(schema ? { schema: schema.columns.map((c) => c.name), transform: (row) => schema.convert(row) } : {}),
  });
  for (const e of result.errors) process.stderr.write(`${e.file}:${e.line}: ${e.reason}\n`);
  if (result.errorCount > result.errors.length)
    process.stderr.write(`… and ${result.errorCount - result.errors.length} more malformed records\n`);
  process.stdout.write(
    `${output}: ${result.rowsOut} rows written (${result.rowsIn} read, ${result.errorCount} malformed), ${result.columns.length} columns\n`,
  );
  return result.errorCount > 0 ? 1 : 0;
}

/**
 * A target schema file: YAML or JSON holding `columns:` (and optionally `key:`), the same shape
 * as a conversion step's `schema:` block.
 */
async function loadSchema(file: string): Promise<CompiledSchema> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new SluiceError("USAGE", `--schema ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new SluiceError("BAD_CONFIG", `${file}: not valid YAML or JSON: ${(err as Error).message.split("\n")[0]}`);
  }
  const parsed = TargetSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new SluiceError("BAD_CONFIG", `${file}: ${issue.path.join(".") || "schema"}: ${issue.message}`);
  }
  return compileSchema(parsed.data);
}

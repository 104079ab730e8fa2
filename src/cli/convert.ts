/**
 * `sluice convert INPUT OUTPUT`: the ingestion readers and writers as a command, so a user can
 * check or convert a file before ingesting it. Malformed records are listed and exit 1.
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { SluiceError } from "../errors.js";
import { convertFile } from "../formats/convert.js";
import type { FileFormat } from "../formats/types.js";

const FORMATS: FileFormat[] = ["csv", "tsv", "ndjson", "json", "parquet"];

export async function convertCommand(input: string, output: string, o: { from?: string; to?: string }): Promise<number> {
  for (const [flag, value] of [["--from", o.from], ["--to", o.to]] as const)
    if (value !== undefined && !FORMATS.includes(value as FileFormat))
      throw new SluiceError("USAGE", `${flag} must be one of ${FORMATS.join(", ")}, not "${value}"`);
  await mkdir(dirname(output), { recursive: true });
  const result = await convertFile({ input, output, from: o.from as FileFormat | undefined, to: o.to as FileFormat | undefined });
  for (const e of result.errors) process.stderr.write(`${e.file}:${e.line}: ${e.reason}\n`);
  if (result.errorCount > result.errors.length)
    process.stderr.write(`… and ${result.errorCount - result.errors.length} more malformed records\n`);
  process.stdout.write(
    `${output}: ${result.rowsOut} rows written (${result.rowsIn} read, ${result.errorCount} malformed), ${result.columns.length} columns\n`,
  );
  return result.errorCount > 0 ? 1 : 0;
}

/**
 * `sluice convert INPUT OUTPUT`: the ingestion readers and writers as a command, so a user can
 * check or convert a file before ingesting it.
 *
 * With `--schema` the records are typed exactly as a conversion step types them and the output
 * carries the types (typed Parquet columns; canonical values in CSV/NDJSON/JSON). Rejected
 * records are listed (the first 20 on stderr as `file:line: reason`, every one of them as
 * NDJSON with `--rejects FILE`) and make the exit code 1. A missing or unreadable input or an
 * unwritable output is one sentence and exit 1, like `sluice run`.
 */
import { access, constants, mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { compileSchema } from "../actions/batch/typing.js";
import { loadSchemaFile, targetSchemaOf, type SchemaDocument } from "../actions/batch/schema-file.js";
import { SluiceError } from "../errors.js";
import { convertFile, type RejectedRecord } from "../formats/convert.js";
import { parseFormat } from "../formats/dispatch.js";
import { TextFileWriter, stringifyJson } from "../formats/io.js";
import type { ParquetColumnSpec } from "../formats/parquet.js";
import type { FileFormat } from "../formats/types.js";

/** Rejected records printed on stderr; the rest are counted (and all go to --rejects). */
const SHOWN_REJECTS = 20;

export interface ConvertFlags {
  from?: string;
  to?: string;
  schema?: string;
  rejects?: string;
}

export async function convertCommand(input: string, output: string, o: ConvertFlags): Promise<number> {
  const from = o.from !== undefined ? formatFlag("--from", o.from) : undefined;
  const to = o.to !== undefined ? formatFlag("--to", o.to) : undefined;
  if (to === "arrow" || (to === undefined && /\.(arrow|arrows|feather|ipc)$/i.test(output))) {
    throw new SluiceError("USAGE", "writing Arrow files is not supported; write parquet");
  }
  await checkReadable(input);
  await prepareOutput(output);
  if (o.rejects) await prepareOutput(o.rejects);
  // The schema: given, or for CSV/TSV (whose values are all text) inferred as `sluice infer` does.
  const inputFormat = from ?? (await import("../formats/dispatch.js")).detectFormat(input);
  let doc: SchemaDocument | undefined;
  if (o.schema) doc = await loadSchemaFile(o.schema);
  else if (inputFormat === "csv" || inputFormat === "tsv") {
    const { inferSource } = await import("../actions/batch/infer-source.js");
    doc = (await inferSource(input, { format: inputFormat })).schema;
    process.stderr.write(`sluice: no --schema: column types inferred from ${input} (sluice infer ${input} shows them)\n`);
  }
  const schema = doc ? compileSchema(targetSchemaOf(doc)) : undefined;
  const { format: _format, ...read } = doc?.read ?? {};

  const rejects = o.rejects ? new TextFileWriter(o.rejects) : undefined;
  const specs: ParquetColumnSpec[] | undefined = schema?.columns.map((c) => ({
    name: c.name,
    type: c.type,
    ...(c.scale !== undefined ? { scale: c.scale } : {}),
  }));
  let result;
  try {
    result = await convertFile({
      input,
      output,
      from,
      to,
      maxErrors: SHOWN_REJECTS,
      ...(Object.keys(read).length ? { read } : {}),
      ...(schema ? { schema: schema.columns.map((c) => c.name), transform: (row) => schema.convert(row), write: { schema: specs } } : {}),
      ...(rejects
        ? { onReject: (r: RejectedRecord) => rejects.write(`${stringifyJson({ file: r.file, line: r.line, reason: r.reason, raw: r.raw })}\n`) }
        : {}),
    });
  } catch (err) {
    throw fileError(err, input, output);
  } finally {
    if (rejects) await rejects.close().catch(() => undefined);
  }
  for (const e of result.errors) process.stderr.write(`${e.file}:${e.line}: ${e.reason}\n`);
  const more = result.errorCount - result.errors.length;
  if (more > 0) {
    const where = o.rejects ? `all of them in ${o.rejects}` : "all of them: --rejects FILE";
    process.stderr.write(`… and ${more} more rejected record${more === 1 ? "" : "s"} (${where})\n`);
  }
  process.stdout.write(`${output}: ${result.rowsOut} rows written (${result.rowsIn} read, ${result.errorCount} malformed), ${result.columns.length} columns\n`);
  return result.errorCount > 0 ? 1 : 0;
}

function formatFlag(flag: string, value: string): FileFormat {
  try {
    return parseFormat(value);
  } catch {
    throw new SluiceError("USAGE", `${flag} must be one of csv, tsv, ndjson, json, parquet, arrow, not ${JSON.stringify(value)}`);
  }
}

function why(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    case "ENOTDIR":
    case "EEXIST": // mkdir -p over a file
      return "a part of the path is not a directory";
    case "ENOSPC":
      return "no space left on the device";
    case "EROFS":
      return "read-only file system";
    default:
      return (err as Error).message;
  }
}

async function checkReadable(input: string): Promise<void> {
  try {
    const s = await stat(input);
    if (s.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    await access(input, constants.R_OK);
  } catch (err) {
    throw new SluiceError((err as NodeJS.ErrnoException).code === "ENOENT" ? "FILE_NOT_FOUND" : "BAD_INPUT", `cannot read ${input}: ${why(err)}`, {
      cause: err,
    });
  }
}

async function prepareOutput(output: string): Promise<void> {
  try {
    await mkdir(dirname(output), { recursive: true });
    const s = await stat(output).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    if (s?.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    await access(dirname(output), constants.W_OK);
  } catch (err) {
    throw new SluiceError("IO_ERROR", `cannot write ${output}: ${why(err)}`, { cause: err });
  }
}

/** An operating-system error met while converting, as one sentence naming the file. */
function fileError(err: unknown, input: string, output: string): unknown {
  if (err instanceof SluiceError || !(err instanceof Error)) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (!code || !/^E[A-Z]+$/.test(code)) return err;
  const path = (err as NodeJS.ErrnoException).path ?? "";
  const writing = path !== "" && path !== input;
  return new SluiceError("IO_ERROR", `cannot ${writing ? "write" : "read"} ${writing ? (path.startsWith(output) ? output : path) : input}: ${why(err)}`, {
    cause: err,
  });
}

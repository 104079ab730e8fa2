/**
 * `sluice ingest SOURCE` and `sluice infer SOURCE`: one's own file into a table without writing a
 * workflow.
 *
 * `ingest` runs the standard ingestion workflow (the bundled file, six steps, each its own
 * attempts, timeout and retry; durable and resumable with `sluice resume`) with the source, the
 * destination, the table and a schema: the one given with `--schema`, or else one inferred from
 * the source and printed first. The schema used is kept under `$SLUICE_HOME/schemas/`, named by
 * its content, so a resumed run reads the very same file.
 */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SluiceError } from "../errors.js";
import { sluiceHome } from "../store/index.js";
import type { InferResult } from "../actions/batch/infer-source.js";
import type { SchemaDocument } from "../actions/batch/schema-file.js";
import type { FileFormat } from "../formats/types.js";

/** The bundled standard workflow, next to the compiled CLI (dist/cli → workflows/). */
export const STANDARD_WORKFLOW = fileURLToPath(new URL("../../workflows/base-data-ingestion-workflow-standard-ingestion.yaml", import.meta.url));

export interface InferFlags {
  format?: string;
  encoding?: string;
  delimiter?: string;
  header?: boolean;
  key?: string;
  sample?: string;
  printSchema?: string;
  json?: boolean;
}

export interface IngestFlags extends InferFlags {
  to?: string;
  table?: string;
  schema?: string;
  infer?: boolean;
  actions?: string[];
}

export async function inferCommand(source: string, o: InferFlags): Promise<number> {
  const result = await infer(source, o);
  if (o.printSchema) await writeSchema(o.printSchema, result);
  if (o.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(await schemaText(result));
  return 0;
}

export async function ingestCommand(source: string, o: IngestFlags): Promise<number> {
  if (o.schema && o.infer) throw new SluiceError("USAGE", "--schema and --infer exclude each other: give a schema file, or let Sluice infer one");
  const { loadSchemaFile, schemaToYaml } = await import("../actions/batch/schema-file.js");
  let schema: SchemaDocument;
  if (o.schema) {
    schema = await loadSchemaFile(o.schema);
    if (o.key) schema = { ...schema, key: keyList(o.key) };
    process.stderr.write(`sluice: schema from ${o.schema}\n`);
  } else {
    const result = await infer(source, o, true);
    schema = result.schema;
    process.stderr.write(await schemaText(result));
    if (o.printSchema) await writeSchema(o.printSchema, result);
    if (!schema.key && result.keyCandidates.length > 0)
      process.stderr.write(
        `sluice: no key: rows are told apart by their content; ${result.keyCandidates.join(", ")} ${result.keyCandidates.length === 1 ? "is" : "are"} unique in the sample (--key ${result.keyCandidates[0]} upserts on it)\n`,
      );
  }
  const text = schemaToYaml(schema, [`the schema of sluice ingest ${source}`]);
  const file = join(sluiceHome(), "schemas", `${createHash("sha256").update(text).digest("hex").slice(0, 16)}.yaml`);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, text);
  const params: Record<string, string> = { source: absoluteSource(source), table: o.table ?? tableName(source), schema: file };
  if (o.to) params.destination = o.to;
  const { runWorkflowFile } = await import("./run.js");
  return runWorkflowFile(STANDARD_WORKFLOW, params, { json: o.json === true, ...(o.actions ? { actions: o.actions } : {}) });
}

/** `inWorker`: sample on a worker thread (see inferInWorker), for `sluice ingest`. */
async function infer(source: string, o: InferFlags, inWorker = false): Promise<InferResult> {
  const { inferInWorker, inferSource } = await import("../actions/batch/infer-source.js");
  const sample = o.sample === undefined ? undefined : Number(o.sample);
  if (sample !== undefined && !(Number.isInteger(sample) && sample > 0))
    throw new SluiceError("USAGE", `--sample must be a positive whole number, not ${o.sample}`);
  let format: FileFormat | undefined;
  if (o.format) {
    const { parseFormat } = await import("../formats/dispatch.js");
    format = parseFormat(o.format);
  }
  if (o.delimiter !== undefined && [...o.delimiter.replace("\\t", "\t")].length !== 1)
    throw new SluiceError("USAGE", `--delimiter must be one character, not ${JSON.stringify(o.delimiter)}`);
  return (inWorker ? inferInWorker : inferSource)(source, {
    ...(format ? { format } : {}),
    ...(o.encoding ? { encoding: o.encoding } : {}),
    ...(o.delimiter !== undefined ? { delimiter: o.delimiter.replace("\\t", "\t") } : {}),
    ...(o.header !== undefined ? { header: o.header } : {}),
    ...(o.key ? { key: keyList(o.key) } : {}),
    ...(sample ? { sampleRows: sample } : {}),
  });
}

function keyList(key: string): string[] {
  const cols = key
    .split(",")
    .map((k) => k.trim())
    .filter(Boolean);
  if (cols.length === 0) throw new SluiceError("USAGE", "--key takes column names separated by commas");
  return cols;
}

/** The inferred schema as YAML with what was read and what each column's values looked like. */
async function schemaText(r: InferResult): Promise<string> {
  const { schemaToYaml } = await import("../actions/batch/schema-file.js");
  const what = [
    `inferred by sluice infer from ${r.source}`,
    `${r.sampled.toLocaleString("en-US")} records sampled${r.format === "parquet" || r.format === "arrow" ? " (types from the file's schema)" : ""}`,
    ...(r.encoding
      ? [
          `encoding ${r.encoding.encoding} (${r.encoding.confidence === "bom" ? "from its byte order mark or as given" : r.encoding.confidence === "valid" ? "every byte valid" : "a guess"})`,
        ]
      : []),
    ...(r.delimiter !== undefined ? [`delimiter ${JSON.stringify(r.delimiter)}, ${r.header ? "a header row" : "no header row"}`] : []),
    ...r.notes,
    "edit freely: columns (name, type, scale, format, nullValues, from, required, default), key, read, rules",
  ];
  const notes = Object.fromEntries(
    r.columns.map((c) => [c.name, [...c.notes, ...(c.nulls > 0 ? [`${c.nulls} empty of ${c.nulls + c.nonNull} sampled`] : [])]]),
  );
  return schemaToYaml(r.schema, what, notes);
}

async function writeSchema(path: string, r: InferResult): Promise<void> {
  await mkdir(dirname(resolve(path)), { recursive: true });
  await writeFile(path, await schemaText(r));
  process.stderr.write(`sluice: schema written to ${path}\n`);
}

/** Local paths absolute, so the run reads the same file whatever directory resumes it. */
function absoluteSource(source: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(source) ? source : resolve(source);
}

/** A table name from the source: the file name without its extension, as a SQL-friendly word. */
export function tableName(source: string): string {
  let name: string;
  const pg = /^postgres(ql)?:\/\//i.test(source) ? new URL(source).searchParams.get("table") : null;
  if (pg) name = pg.split(".").pop()!;
  else if (/^https?:\/\//i.test(source)) name = new URL(source).pathname.split("/").filter(Boolean).pop() ?? "data";
  else name = basename(source.replace(/[/\\]+$/, ""));
  name = name.replace(/\*.*$/, "");
  const ext = extname(name);
  if (ext) name = name.slice(0, -ext.length);
  let t = name
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, "_")
    .replace(/^_+|_+$/g, "");
  if (t === "") t = "data";
  if (/^\d/.test(t)) t = `t_${t}`;
  return t.slice(0, 50);
}

/**
 * Schema files: a target schema with its reading options and quality rules in a YAML (or JSON)
 * file of its own, so one file describes a source once and every command uses it — the standard
 * workflow's `schema` param, `sluice ingest --schema`, `sluice convert --schema`, and what
 * `sluice infer --print-schema` writes for a user to edit.
 *
 * A problem in the file is one sentence naming the file, the line and column, and the field.
 */
import { readFile } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { Document, isMap, isSeq, LineCounter, parseDocument, type Node as YamlNode } from "yaml";
import type { z } from "zod";
import { SluiceError } from "../../errors.js";
import { SchemaDocument as SchemaDocumentZ } from "../inputs.js";
import type { TargetSchemaSpec } from "./model.js";

export type SchemaDocument = z.infer<typeof SchemaDocumentZ>;

/** A schema given inline, or the path of a schema file (relative to the working directory). */
export async function loadSchemaRef(ref: SchemaDocument | string): Promise<SchemaDocument> {
  return typeof ref === "string" ? loadSchemaFile(ref) : ref;
}

/** The target-schema part of a schema document: what the typing layer compiles. */
export function targetSchemaOf(doc: SchemaDocument): TargetSchemaSpec {
  const { read: _read, rules: _rules, extraColumns: _extra, ...target } = doc;
  return target;
}

export async function loadSchemaFile(file: string): Promise<SchemaDocument> {
  const path = isAbsolute(file) ? file : resolve(file);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "it is a directory" : (err as Error).message;
    const rel = isAbsolute(file) ? "" : ` (a relative path is read from the working directory, ${process.cwd()})`;
    throw new SluiceError(code === "ENOENT" ? "FILE_NOT_FOUND" : "BAD_CONFIG", `schema file ${file} cannot be read: ${why}${rel}`, { retryable: false });
  }
  return parseSchemaText(text, file);
}

export function parseSchemaText(text: string, file: string): SchemaDocument {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const at = (offset: number | undefined): string => {
    if (offset === undefined) return file;
    const p = lines.linePos(offset);
    return `${file}:${p.line}:${p.col}`;
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new SluiceError("BAD_CONFIG", `${at(e.pos[0])}: not valid YAML or JSON: ${e.message.split("\n")[0]}`, { retryable: false });
  }
  const data: unknown = doc.toJS();
  const parsed = SchemaDocumentZ.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path as (string | number)[];
    const where = at(nodeAt(doc, issue.code === "unrecognized_keys" ? path : path)?.range?.[0]);
    const field = path.length
      ? path
          .map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`))
          .join("")
          .slice(1)
      : "the schema";
    const what =
      issue.code === "unrecognized_keys"
        ? `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`
        : issue.message.replace(/^Invalid input: /, "");
    throw new SluiceError("BAD_CONFIG", `${where}: ${field}: ${what}`, { retryable: false, details: { file } });
  }
  return parsed.data;
}

function nodeAt(doc: Document, path: (string | number)[]): YamlNode | undefined {
  let node = doc.contents as YamlNode | null;
  let found: YamlNode | undefined = node ?? undefined;
  for (const key of path) {
    if (isMap(node)) node = (node.get(key, true) as YamlNode | undefined) ?? null;
    else if (isSeq(node) && typeof key === "number") node = (node.get(key, true) as YamlNode | undefined) ?? null;
    else node = null;
    if (!node) break;
    found = node;
  }
  return found;
}

/**
 * A schema document as YAML for a person to read and edit: a comment header, one line per
 * column (`- { name: price, type: decimal, scale: 4 }`) with what inference noticed about it as
 * a comment above it.
 */
export function schemaToYaml(schema: SchemaDocument, header: string[] = [], notes: Record<string, string[]> = {}): string {
  const doc = new Document(schema);
  const columns = doc.get("columns", true);
  if (isSeq(columns)) {
    for (const item of columns.items) {
      if (!isMap(item)) continue;
      item.flow = true;
      const name = String(item.get("name"));
      const n = notes[name];
      if (n?.length) item.commentBefore = n.map((x) => ` ${name}: ${x}`).join("\n");
    }
  }
  for (const k of ["key", "nullValues"]) {
    const node = doc.get(k, true);
    if (isSeq(node)) node.flow = true;
  }
  const rules = doc.get("rules", true);
  if (isSeq(rules)) for (const r of rules.items) if (isMap(r)) r.flow = true;
  if (header.length) doc.commentBefore = header.map((h) => ` ${h}`).join("\n");
  return doc.toString({ lineWidth: 0, flowCollectionPadding: true });
}

/**
 * The `sluice serve` configuration file: where to listen, who may call the API, where alerts go.
 *
 * Tokens are secret references (`env:NAME`, `file:PATH`), never literal values, for the same
 * reason workflow files hold none: configuration gets committed and copied around. The file is
 * parsed here; auth.ts resolves the references, the alerting module reads `alerts`.
 */
import { readFile } from "node:fs/promises";
import { LineCounter, parseDocument, isCollection, isMap, isScalar, type Document, type Node as YamlNode } from "yaml";
import { z } from "zod";
import { SluiceError } from "../errors.js";
import { isSecretRef } from "../connectors/secrets.js";
import type { Problem } from "../spec/load.js";
import { describeIssue } from "./errors.js";

export const Role = z.enum(["viewer", "operator", "admin"]);
export type Role = z.infer<typeof Role>;

const SecretReference = z.string().refine(isSecretRef, "must be a secret reference (env:NAME or file:PATH), never the value itself");

const TokenConfig = z
  .object({
    name: z.string().min(1),
    token: SecretReference,
    role: Role,
  })
  .strict();

export const ALERT_KINDS = ["run_failed", "sla_breach", "quality_breach"] as const;

export const AlertTargetConfig = z
  .object({
    name: z.string().min(1),
    /** An http(s) URL, or a secret reference holding one (Slack webhook URLs are credentials). */
    url: z.string().refine((u) => isSecretRef(u) || /^https?:\/\/./.test(u), "must be an http(s):// URL or a secret reference (env:NAME or file:PATH)"),
    format: z.enum(["json", "slack"]).default("json"),
    on: z
      .array(z.enum(ALERT_KINDS))
      .min(1)
      .default([...ALERT_KINDS]),
    /** Only these workflows' alerts; all workflows when absent. */
    workflows: z.array(z.string().min(1)).optional(),
  })
  .strict();
export type AlertTargetConfig = z.output<typeof AlertTargetConfig>;

export const ServerConfig = z
  .object({
    server: z
      .object({
        host: z.string().min(1).optional(),
        port: z.number().int().min(0).max(65535).optional(),
      })
      .strict()
      .default({}),
    auth: z
      .object({ tokens: z.array(TokenConfig).default([]) })
      .strict()
      .default({ tokens: [] }),
    alerts: z.array(AlertTargetConfig).default([]),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    // Names appear in logs and alert payloads; two entries with one name make those ambiguous.
    unique(cfg.auth.tokens, ["auth", "tokens"], ctx);
    unique(cfg.alerts, ["alerts"], ctx);
  });
export type ServerConfig = z.output<typeof ServerConfig>;

function unique(items: { name: string }[], path: (string | number)[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (seen.has(item.name)) ctx.addIssue({ code: "custom", path: [...path, i, "name"], message: `duplicate name "${item.name}"` });
    seen.add(item.name);
  });
}

/** No file: the defaults (loopback, no tokens, no alerts). */
export async function loadServerConfig(file: string | undefined): Promise<ServerConfig> {
  if (file === undefined) return ServerConfig.parse({});
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "EISDIR" ? "is a directory" : (err as Error).message;
    throw new SluiceError("BAD_CONFIG", `server config file ${file} ${why}`, { details: { file } });
  }
  return parseServerConfig(text, file);
}

/** Parse the text of a config file; problems name FILE:LINE:COL and the field, all at once. */
export function parseServerConfig(text: string, file: string): ServerConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined, message: string): Problem => {
    const pos = lineCounter.linePos(offset ?? 0);
    return { file, line: pos.line, col: pos.col, message };
  };
  let problems: Problem[];
  if (doc.errors.length > 0) {
    problems = doc.errors.map((e) => at(e.pos[0], `YAML syntax error: ${e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`));
  } else {
    const parsed = ServerConfig.safeParse(doc.toJS() ?? {});
    if (parsed.success) return parsed.data;
    problems = parsed.error.issues.flatMap((issue) => {
      const path = issue.path.map((p) => (typeof p === "number" ? p : String(p)));
      const where = path.length ? path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("") : "the file";
      // An unknown key is shown where the key is, one problem per key, like workflow files.
      if (issue.code === "unrecognized_keys")
        return issue.keys.map((key) => at(keyAt(doc, path, key) ?? nodeAt(doc, path)?.range?.[0], `${where}: unknown field "${key}"`));
      return [at(nodeAt(doc, path)?.range?.[0], `${where}: ${describeIssue(issue)}`)];
    });
  }
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  const list = problems.map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`).join("\n");
  throw new SluiceError("BAD_CONFIG", `invalid server config:\n${list}`, { details: { file, problems } });
}

function keyAt(doc: Document, path: (string | number)[], key: string): number | undefined {
  const node = nodeAt(doc, path);
  if (!isMap(node)) return undefined;
  const pair = node.items.find((p) => isScalar(p.key) && p.key.value === key);
  return isScalar(pair?.key) ? pair.key.range?.[0] : undefined;
}

/** The node at a path, or the deepest one that exists on the way (a missing field points at its parent). */
function nodeAt(doc: Document, path: (string | number)[]): YamlNode | undefined {
  let node = doc.contents as YamlNode | null;
  for (const key of path) {
    if (!isCollection(node)) break;
    const next = node.get(key, true) as YamlNode | undefined;
    if (next === undefined || next === null) break;
    node = next;
  }
  return node ?? undefined;
}

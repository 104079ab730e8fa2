/**
 * Generated artefacts of the one schema: the JSON Schema for editors and the Kubernetes CRD.
 * `npm run gen` rewrites them under deploy/; a test fails when the committed copies are stale.
 */
import { writeFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { stringify } from "yaml";
import { z } from "zod";
import { API_VERSION, Workflow, WorkflowSpec } from "./schema.js";

type Json = Record<string, unknown>;

export const GENERATED_FILES = {
  jsonSchema: "deploy/workflow.schema.json",
  crd: "deploy/crd/workflows.sluice.dev.yaml",
} as const;

export function workflowJsonSchema(): string {
  const schema = z.toJSONSchema(Workflow, { io: "input", unrepresentable: "any" }) as Json;
  schema.$id = "https://sluice.dev/schemas/workflow-v1alpha1.json";
  schema.title = "Sluice Workflow";
  return JSON.stringify(schema, null, 2) + "\n";
}

export function crdManifest(): string {
  const spec = toStructural(z.toJSONSchema(WorkflowSpec, { io: "input", unrepresentable: "any" }) as Json);
  const [group, version] = API_VERSION.split("/") as [string, string];
  const crd = {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `workflows.${group}` },
    spec: {
      group,
      scope: "Namespaced",
      names: { kind: "Workflow", listKind: "WorkflowList", plural: "workflows", singular: "workflow", shortNames: ["swf"] },
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: "object",
              required: ["spec"],
              properties: { apiVersion: { type: "string" }, kind: { type: "string" }, metadata: { type: "object" }, spec },
            },
          },
          additionalPrinterColumns: [
            { name: "Steps", type: "integer", jsonPath: ".spec.steps[*].name", priority: 1 },
            { name: "Timeout", type: "string", jsonPath: ".spec.timeout" },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
        },
      ],
    },
  };
  return `# Generated from src/spec/schema.ts by \`npm run gen\`; do not edit.\n${stringify(crd, { lineWidth: 0 })}`;
}

/**
 * JSON Schema (draft 2020-12) → Kubernetes structural OpenAPI v3: no `additionalProperties: false`,
 * no `propertyNames`, no `const`; free-form maps and unions keep unknown fields instead.
 */
function toStructural(node: Json): Json {
  const out: Json = {};
  if (node.anyOf || node.oneOf || Array.isArray(node.type))
    return { "x-kubernetes-preserve-unknown-fields": true, ...(node.description ? { description: node.description } : {}) };
  for (const [k, v] of Object.entries(node)) {
    if (k === "$schema" || k === "propertyNames" || k === "additionalProperties") continue;
    if (k === "const") out.enum = [v];
    else if (k === "properties") out.properties = Object.fromEntries(Object.entries(v as Json).map(([pk, pv]) => [pk, toStructural(pv as Json)]));
    else if (k === "items") out.items = toStructural(v as Json);
    else out[k] = v;
  }
  if (node.type === "object" && !node.properties) {
    const ap = node.additionalProperties as Json | undefined;
    if (ap && Object.keys(ap).length > 0 && ap.type) out.additionalProperties = toStructural(ap);
    else out["x-kubernetes-preserve-unknown-fields"] = true;
  }
  if (out.const !== undefined) delete out.const;
  if (out.type === undefined && !out["x-kubernetes-preserve-unknown-fields"] && out.enum) out.type = typeof (out.enum as unknown[])[0];
  return out;
}

async function writeGenerated(root: string): Promise<void> {
  for (const [file, text] of [
    [GENERATED_FILES.jsonSchema, workflowJsonSchema()],
    [GENERATED_FILES.crd, crdManifest()],
  ] as const) {
    const path = join(root, file);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text);
    process.stdout.write(`wrote ${file}\n`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await writeGenerated(join(dirname(fileURLToPath(import.meta.url)), "..", ".."));
}

/**
 * Generated artefacts of the one schema: the JSON Schema for editors and the Kubernetes CRDs of
 * the Workflow and WorkflowRun resources. `npm run gen` rewrites them under deploy/; a test fails
 * when the committed copies are stale.
 */
import { writeFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { stringify } from "yaml";
import { z } from "zod";
import { API_VERSION, Workflow, WorkflowSpec } from "./schema.js";
import { RUN_KIND, WorkflowRunSpec, WorkflowRunStatus, WorkflowStatus } from "./resources.js";

type Json = Record<string, unknown>;

export const GENERATED_FILES = {
  jsonSchema: "deploy/workflow.schema.json",
  // Inside the kustomize base, which includes them: kustomize reads no file outside its root.
  workflowCrd: "deploy/k8s/base/crd/workflows.sluice.dev.yaml",
  workflowRunCrd: "deploy/k8s/base/crd/workflowruns.sluice.dev.yaml",
} as const;

export function workflowJsonSchema(): string {
  const schema = z.toJSONSchema(Workflow, { io: "input", unrepresentable: "any" }) as Json;
  schema.$id = "https://sluice.dev/schemas/workflow-v1alpha1.json";
  schema.title = "Sluice Workflow";
  return JSON.stringify(schema, null, 2) + "\n";
}

interface CrdParts {
  kind: string;
  plural: string;
  shortNames: string[];
  spec: z.ZodType;
  status: z.ZodType;
  columns: Json[];
  source: string;
}

/** One CustomResourceDefinition: a namespaced kind with a spec, a status subresource and printer columns. */
function crd(parts: CrdParts): string {
  const [group, version] = API_VERSION.split("/") as [string, string];
  const structural = (schema: z.ZodType) => toStructural(z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Json);
  const status = structural(parts.status);
  const props = status.properties as Json;
  // Conditions as Kubernetes keeps them (metav1.Condition): at most one per type, and a
  // server-side apply of status merges them by type instead of replacing the whole list.
  props.conditions = { ...(props.conditions as Json), "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] };
  const doc = {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${parts.plural}.${group}` },
    spec: {
      group,
      scope: "Namespaced",
      names: {
        kind: parts.kind,
        listKind: `${parts.kind}List`,
        plural: parts.plural,
        singular: parts.kind.toLowerCase(),
        shortNames: parts.shortNames,
      },
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          // The operator writes status through its own endpoint, so a user's apply of the spec
          // never overwrites it, and a spec change bumps metadata.generation.
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: "object",
              required: ["spec"],
              properties: { apiVersion: { type: "string" }, kind: { type: "string" }, metadata: { type: "object" }, spec: structural(parts.spec), status },
            },
          },
          additionalPrinterColumns: [...parts.columns, { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" }],
        },
      ],
    },
  };
  return `# Generated from ${parts.source} by \`npm run gen\`; do not edit.\n${stringify(doc, { lineWidth: 0 })}`;
}

export function workflowCrdManifest(): string {
  return crd({
    kind: "Workflow",
    plural: "workflows",
    shortNames: ["swf"],
    spec: WorkflowSpec,
    status: WorkflowStatus,
    source: "src/spec/schema.ts and src/spec/resources.ts",
    columns: [
      { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
      // Why it is not Ready (SpecInvalid, ManagedElsewhere) at a glance; the message is in `kubectl describe`.
      { name: "Reason", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
      { name: "Version", type: "integer", jsonPath: ".status.registryVersion" },
    ],
  });
}

export function workflowRunCrdManifest(): string {
  return crd({
    kind: RUN_KIND,
    plural: "workflowruns",
    shortNames: ["swfr"],
    spec: WorkflowRunSpec,
    status: WorkflowRunStatus,
    source: "src/spec/resources.ts",
    columns: [
      { name: "Workflow", type: "string", jsonPath: ".spec.workflowRef.name" },
      { name: "Phase", type: "string", jsonPath: ".status.phase" },
      { name: "Run", type: "string", jsonPath: ".status.runId" },
      { name: "Stored", type: "integer", jsonPath: ".status.rows.stored" },
    ],
  });
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
    [GENERATED_FILES.workflowCrd, workflowCrdManifest()],
    [GENERATED_FILES.workflowRunCrd, workflowRunCrdManifest()],
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

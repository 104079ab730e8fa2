import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { builtinRegistry } from "../../src/actions/builtin.js";
import { loadWorkflowText, formatProblem } from "../../src/spec/load.js";
import { parseDuration } from "../../src/spec/duration.js";
import { evaluate } from "../../src/spec/expressions.js";
import { GENERATED_FILES, workflowCrdManifest, workflowJsonSchema, workflowRunCrdManifest } from "../../src/spec/generate.js";
import { parse } from "yaml";

const actions = builtinRegistry();
const ROOT = join(import.meta.dirname, "..", "..");

/** Problems of an inline file, as the CLI prints them. */
function problems(text: string): string[] {
  return loadWorkflowText(text, "w.yaml", { actions }).problems.map(formatProblem);
}

const HEAD = `apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata:
  name: demo
spec:
`;

describe("workflow validation", () => {
  it("accepts a minimal workflow and keeps its values", () => {
    const r = loadWorkflowText(`${HEAD}  steps:\n    - name: a\n      exec: { command: ["true"] }\n`, "w.yaml", { actions });
    expect(r.problems).toEqual([]);
    expect(r.workflows[0]!.workflow.spec.steps[0]!.exec!.command).toEqual(["true"]);
  });

  it("reports YAML syntax errors with their position", () => {
    expect(problems(`${HEAD}  steps: [\n`)).toEqual([expect.stringMatching(/^w\.yaml:7:1: YAML syntax error: /)]);
    expect(problems(`${HEAD}  steps: []\n  steps: []\n`)).toEqual([expect.stringMatching(/^w\.yaml:7:3: YAML syntax error: Map keys must be unique/)]);
  });

  it("names unknown fields with a suggestion", () => {
    expect(problems(`${HEAD}  stepz: []\n  steps:\n    - name: a\n      exec: { command: ["true"] }\n      dependOn: []\n`)).toEqual([
      'w.yaml:6:3: unknown field "stepz" in spec; did you mean "steps"?',
      'w.yaml:10:7: unknown field "dependOn" in spec.steps[0]; did you mean "dependsOn"?',
    ]);
  });

  it("reports wrong types, bad durations, bad cron expressions and time zones", () => {
    const text = `${HEAD}  timeout: soon
  parallelism: "4"
  triggers:
    - schedule: "61 * * * *"
      timezone: Nowhere/City
  steps:
    - name: a
      exec: { command: "true" }
      retry: { limit: 2, backoff: { initial: 1x } }
`;
    expect(problems(text)).toEqual([
      'w.yaml:6:12: spec.timeout: "soon" is not a duration: use a number and a unit, like 500ms, 30s, 5m, 2h or 1h30m',
      'w.yaml:7:16: spec.parallelism: must be a number, not the text "4"',
      'w.yaml:9:17: spec.triggers[0].schedule: "61 * * * *" is not a valid cron expression (five fields: minute hour day-of-month month day-of-week; or six with seconds first)',
      'w.yaml:10:17: spec.triggers[0].timezone: "Nowhere/City" is not a known IANA time zone, like UTC or Europe/London',
      'w.yaml:13:24: spec.steps[0].exec.command: must be a list, not the text "true"',
      'w.yaml:14:46: spec.steps[0].retry.backoff.initial: "1x" is not a duration: use a number and a unit, like 500ms, 30s, 5m, 2h or 1h30m',
    ]);
  });

  it("checks agent/action and service/action pairs and their with: inputs", () => {
    const text = `${HEAD}  steps:
    - name: a
      agent: data-colector
      action: collect_data_from_source
    - name: b
      service: base-data-quality
      action: validate_quality
    - name: c
      service: base-data-quality
      action: validate_data_quality
      with:
        dataset: x
        treshold: 0.5
        rules: [{ column: id, unique: "yes" }]
`;
    expect(problems(text)).toEqual([
      'w.yaml:8:14: unknown agent "data-colector"; did you mean "data-collector"?',
      'w.yaml:12:15: service "base-data-quality" has no action "validate_quality"; did you mean "validate_data_quality"?',
      'w.yaml:18:9: unknown input "treshold" for base-data-quality/validate_data_quality; did you mean "threshold"?',
      'w.yaml:19:39: input "rules.0.unique" of base-data-quality/validate_data_quality: must be a boolean, not the text "yes"',
    ]);
  });

  it("refuses a target schema's bad format, time zone and key at the field, before anything runs", () => {
    const text = `${HEAD}  steps:
    - name: format-conversion
      agent: data-converter
      action: convert_to_standard_format
      with:
        dataset: x
        schema:
          key: [trade_id, venue]
          nullValues: ["", NA]
          columns:
            - { name: trade_id, required: true }
            - { name: executed_at, type: timestamp, format: "%Y-%Q" }
            - name: settled_on
              type: date
              format: "%d/%m/%Y %H:%M"
            - { name: booked_at, type: timestamp, format: "%m/%d/%Y %I:%M", timezone: Mars/Olympus }
            - { name: quantity, type: integer, format: "%Y" }
`;
    expect(problems(text)).toEqual([
      'w.yaml:13:27: input "schema.key.1" of data-converter/convert_to_standard_format: "venue" is not a column of the target schema (columns: trade_id, executed_at, settled_on, booked_at, quantity)',
      'w.yaml:17:61: input "schema.columns.1.format" of data-converter/convert_to_standard_format: "%Y-%Q" uses %Q at character 4, which is not supported (supported: %Y %y %m %-m %d %-d %e %j %H %-H %I %-I %M %-M %S %-S %p %b %h %B %a %A %f %z %Z %s %T %R %D %F %n %t %%)',
      'w.yaml:20:23: input "schema.columns.2.format" of data-converter/convert_to_standard_format: "%d/%m/%Y %H:%M" uses %H at character 10, a time field, but the column is a date (use a timestamp column, or date fields only)',
      'w.yaml:21:59: input "schema.columns.3.format" of data-converter/convert_to_standard_format: "%m/%d/%Y %I:%M" uses %I at character 10 (hour 1–12) without %p (AM or PM)',
      'w.yaml:21:87: input "schema.columns.3.timezone" of data-converter/convert_to_standard_format: "Mars/Olympus" does not exist (use an IANA name such as America/New_York, a fixed offset such as +05:30, or UTC)',
      'w.yaml:22:56: input "schema.columns.4.format" of data-converter/convert_to_standard_format: "%Y" cannot apply: this column is integer, and a format is only for timestamp and date columns',
    ]);
  });

  it("does not type-check inputs computed by expressions until run time", () => {
    const text = `${HEAD}  params:\n    t: { type: number, default: 0.5 }\n  steps:
    - name: c
      service: base-data-quality
      action: validate_data_quality
      with: { dataset: x, threshold: "\${{ params.t }}" }
`;
    expect(problems(text)).toEqual([]);
  });

  it("finds missing dependencies, duplicates and cycles, naming the steps", () => {
    const text = `${HEAD}  steps:
    - { name: a, exec: { command: ["true"] }, dependsOn: [c] }
    - { name: b, exec: { command: ["true"] }, dependsOn: [a] }
    - { name: c, exec: { command: ["true"] }, dependsOn: [b, extract] }
    - { name: b, exec: { command: ["true"] } }
    - { name: d, exec: { command: ["true"] }, dependsOn: [d] }
`;
    expect(problems(text)).toEqual([
      "w.yaml:7:58: dependency cycle: a → c → b → a",
      'w.yaml:9:62: step "c" depends on "extract", which is not a step of this workflow',
      'w.yaml:10:15: duplicate step name "b"',
      'w.yaml:11:59: step "d" depends on itself',
    ]);
  });

  it("checks expressions: unknown params and steps, and steps that are not upstream", () => {
    const text = `${HEAD}  params:\n    source: { default: x.csv }\n  steps:
    - name: a
      exec: { command: [echo, "\${{ params.sorce }}"] }
    - name: b
      exec: { command: [echo, "\${{ steps.a.outputs.stdout }}", "\${{ steps.z.outputs.x }}", "\${{ nope.x }}"] }
`;
    expect(problems(text)).toEqual([
      'w.yaml:10:31: expression "params.sorce" names an unknown parameter "sorce"; did you mean "source"?',
      'w.yaml:12:31: expression "steps.a.outputs.stdout" reads step "a", which step "b" does not depend on; add it to dependsOn',
      'w.yaml:12:64: expression "steps.z.outputs.x" names an unknown step "z"',
      'w.yaml:12:92: expression "nope.x" starts with an unknown name "nope"; use params, steps, event, run, item or index, a quoted string or a number',
    ]);
  });

  it("requires exactly one of agent, service or exec", () => {
    expect(problems(`${HEAD}  steps:\n    - name: a\n      agent: data-collector\n      exec: { command: [x] }\n`)).toEqual([
      "w.yaml:7:7: spec.steps[0]: a step needs exactly one of agent, service, exec or workflow",
      "w.yaml:7:7: spec.steps[0]: a step with agent needs an action",
    ]);
  });

  it("reports an empty file and a wrong kind", () => {
    expect(problems("")).toEqual(["w.yaml:1:1: the file holds no workflow (it is empty)"]);
    expect(problems(HEAD.replace("Workflow", "CronWorkflow") + "  steps: [{ name: a, exec: { command: [x] } }]\n")).toEqual([
      'w.yaml:2:7: kind: must be "Workflow"',
    ]);
  });
});

describe("durations and expressions", () => {
  it("parses Go/Argo style durations", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("2.5s")).toBe(2_500);
    expect(parseDuration("5 minutes")).toBeUndefined();
    expect(parseDuration("10")).toBeUndefined();
  });

  it("keeps the type of a whole-value expression and interpolates inside text", () => {
    const scope = { params: { n: 3, name: "x" }, steps: { a: { outputs: { rows: 10, meta: { ok: true } } } }, run: { id: "r-1", workflow: "w" } };
    expect(evaluate({ a: "${{ params.n }}", b: "n=${{ params.n }} ${{ run.id }}", c: ["${{ steps.a.outputs.meta }}"] }, scope)).toEqual({
      a: 3,
      b: "n=3 r-1",
      c: [{ ok: true }],
    });
    expect(() => evaluate("${{ steps.a.outputs.missing }}", scope)).toThrow(/no such value/);
  });
});

describe("generated schema artefacts", () => {
  it("match the committed JSON Schema and CRDs (run npm run gen after changing the schema)", () => {
    expect(readFileSync(join(ROOT, GENERATED_FILES.jsonSchema), "utf8")).toBe(workflowJsonSchema());
    expect(readFileSync(join(ROOT, GENERATED_FILES.workflowCrd), "utf8")).toBe(workflowCrdManifest());
    expect(readFileSync(join(ROOT, GENERATED_FILES.workflowRunCrd), "utf8")).toBe(workflowRunCrdManifest());
  });

  it("produce a CRD with a structural openAPIV3Schema for the Workflow kind", () => {
    const crd = parse(workflowCrdManifest());
    expect(crd).toMatchObject({ apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition", metadata: { name: "workflows.sluice.dev" } });
    const v = crd.spec.versions[0];
    expect(v.name).toBe("v1alpha1");
    const steps = v.schema.openAPIV3Schema.properties.spec.properties.steps;
    expect(steps.items.properties.with["x-kubernetes-preserve-unknown-fields"]).toBe(true);
    expect(JSON.stringify(v.schema)).not.toMatch(/"additionalProperties":false|"propertyNames"|"\$schema"/);
  });

  it("produce a WorkflowRun CRD from resources.ts, both with the status subresource and conditions keyed by type", () => {
    const run = parse(workflowRunCrdManifest());
    expect(run.metadata.name).toBe("workflowruns.sluice.dev");
    expect(run.spec.names).toEqual({ kind: "WorkflowRun", listKind: "WorkflowRunList", plural: "workflowruns", singular: "workflowrun", shortNames: ["swfr"] });
    const schema = run.spec.versions[0].schema.openAPIV3Schema;
    expect(schema.properties.spec.required).toEqual(["workflowRef"]);
    expect(schema.properties.status.properties.rows.properties.stored.type).toBe("integer");
    for (const crd of [parse(workflowCrdManifest()), run]) {
      const v = crd.spec.versions[0];
      expect(v.subresources).toEqual({ status: {} });
      const conditions = v.schema.openAPIV3Schema.properties.status.properties.conditions;
      expect(conditions).toMatchObject({ type: "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] });
      expect(conditions.items.required).toEqual(expect.arrayContaining(["type", "status", "lastTransitionTime", "reason", "message"]));
      expect(JSON.stringify(v.schema)).not.toMatch(/"additionalProperties":false|"propertyNames"|"\$schema"/);
    }
  });
});

/**
 * Reading workflow files: YAML → schema → cross-references, every problem with FILE:LINE:COL.
 *
 * All problems of a file are collected, never just the first: a user fixing a workflow wants the
 * whole list in one go, like a compiler gives it.
 */
import { readFile } from "node:fs/promises";
import { LineCounter, parseAllDocuments, isMap, isSeq, isScalar, isPair, type Document, type Node as YamlNode } from "yaml";
import { z } from "zod";
import { Workflow, type Step } from "./schema.js";
import { existsSync } from "node:fs";
import { dirname, resolve as resolvePath } from "node:path";
import { conditionBody, findExpressions, parseExpression, referencesOf, type Reference } from "./expressions.js";
import { hint } from "./suggest.js";
import type { ActionLookup } from "./catalogue.js";

export interface Problem {
  file: string;
  line: number;
  col: number;
  message: string;
}

export interface LoadedWorkflow {
  file: string;
  /** 0-based index of the YAML document inside the file. */
  document: number;
  workflow: Workflow;
}

export interface LoadResult {
  workflows: LoadedWorkflow[];
  problems: Problem[];
}

export interface LoadOptions {
  /** Checks agent/service actions and their `with:` inputs when given. */
  actions?: ActionLookup;
  /**
   * Names of the workflows a `workflow:` step may call besides those of the same file (the
   * registry, the files beside it). When given, an unknown name is an error at load time.
   */
  workflows?: ReadonlySet<string>;
}

/** True when a `workflow:` value names a file rather than a registered workflow. */
export function isWorkflowPath(ref: string): boolean {
  return ref.includes("/") || /\.ya?ml$/i.test(ref);
}

export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

export async function loadWorkflowFile(file: string, opts: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : (err as Error).message;
    return { workflows: [], problems: [{ file, line: 1, col: 1, message: `cannot read workflow file: ${why}` }] };
  }
  return loadWorkflowText(text, file, opts);
}

export function loadWorkflowText(text: string, file: string, opts: LoadOptions = {}): LoadResult {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: Problem[] = [];
  const workflows: LoadedWorkflow[] = [];
  const at = (offset: number | undefined, message: string): Problem => {
    const pos = lineCounter.linePos(offset ?? 0);
    return { file, line: pos.line, col: pos.col, message };
  };

  const list = Array.isArray(docs) ? docs : [docs];
  const nonEmpty = list.filter((d) => d.contents !== null || d.errors.length > 0);
  if (nonEmpty.length === 0) return { workflows, problems: [at(0, "the file holds no workflow (it is empty)")] };
  const ctx = fileContext(nonEmpty, file);

  nonEmpty.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) problems.push(at(e.pos[0], `YAML syntax error: ${firstSentence(e.message)}`));
      return;
    }
    const docProblems = checkDocument(doc, at, opts, ctx);
    problems.push(...docProblems.problems);
    if (docProblems.workflow && docProblems.problems.length === 0) workflows.push({ file, document: index, workflow: docProblems.workflow });
  });
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  return { workflows, problems };
}

type At = (offset: number | undefined, message: string) => Problem;

function checkDocument(doc: Document, at: At, opts: LoadOptions, ctx: FileContext): { workflow?: Workflow; problems: Problem[] } {
  const data: unknown = doc.toJS({ maxAliasCount: 100 });
  const parsed = Workflow.safeParse(data);
  const problems: Problem[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(...issueToProblems(issue, doc, data, at));
    // Cross-references are still worth checking when the step list itself is readable.
    const steps = (data as { spec?: { steps?: unknown } } | null)?.spec?.steps;
    if (Array.isArray(steps) && steps.every((s) => s && typeof s === "object" && typeof (s as Step).name === "string"))
      problems.push(...checkReferences(data as Workflow, doc, at, opts, ctx));
    return { problems };
  }
  problems.push(...checkReferences(parsed.data, doc, at, opts, ctx));
  return { workflow: parsed.data, problems };
}

function issueToProblems(issue: z.core.$ZodIssue, doc: Document, data: unknown, at: At): Problem[] {
  const path = issue.path as (string | number)[];
  if (issue.code === "unrecognized_keys") {
    const known = knownKeysAt(Workflow, path);
    return issue.keys.map((key) => at(keyOffset(doc, path, key), `unknown field "${key}" in ${describePath(path)}${hint(key, known)}`));
  }
  const node = nodeAt(doc, path);
  const where = path.length ? `${describePath(path)}` : "the document";
  return [at(node?.range?.[0], `${where}: ${issueMessage(issue, getIn(data, path))}`)];
}

/** One readable sentence for a schema issue; `value` is what the file holds at the issue's path. */
function issueMessage(issue: z.core.$ZodIssue, value: unknown): string {
  if (issue.code === "invalid_type") {
    if (value === undefined) return `is required`;
    return `must be ${article(issue.expected)}, not ${describeValue(value)}`;
  }
  if (issue.code === "too_small" || issue.code === "too_big") {
    const bound = String(issue.code === "too_small" ? issue.minimum : issue.maximum);
    const most = issue.code === "too_small" ? "at least" : "at most";
    if (issue.origin === "array") return `must have ${most} ${bound} item${bound === "1" ? "" : "s"}`;
    if (issue.origin === "string") return `must be ${most} ${bound} characters long`;
    return `must be ${most} ${bound}${issue.inclusive === false ? " (exclusive)" : ""}`;
  }
  if (issue.code === "invalid_value") {
    const allowed = issue.values.map((v) => JSON.stringify(v)).join(", ");
    return issue.values.length === 1 ? `must be ${allowed}` : `must be one of ${allowed}`;
  }
  if (issue.code === "custom" && typeof value === "string") return `"${value}" ${issue.message}`;
  return issue.message.replace(/^Invalid string: /, "");
}

interface FileContext {
  file: string;
  /** Workflow name → the names of the workflows its steps call, for every document of the file. */
  calls: Map<string, string[]>;
}

function fileContext(docs: Document[], file: string): FileContext {
  const calls = new Map<string, string[]>();
  for (const d of docs) {
    const w = d.errors.length ? undefined : (d.toJS() as { metadata?: { name?: unknown }; spec?: { steps?: unknown; finally?: unknown } } | null);
    const name = w?.metadata?.name;
    if (typeof name !== "string") continue;
    const steps = [w?.spec?.steps, w?.spec?.finally].flatMap((l) => (Array.isArray(l) ? l : []));
    calls.set(
      name,
      steps.map((st) => (st as { workflow?: unknown })?.workflow).filter((x): x is string => typeof x === "string" && !isWorkflowPath(x)),
    );
  }
  return { file, calls };
}

/** A step with where it sits in the file and which list it belongs to. */
interface Placed {
  s: Step;
  path: (string | number)[];
  final: boolean;
}

function checkReferences(wf: Workflow, doc: Document, at: At, opts: LoadOptions, ctx: FileContext): Problem[] {
  const problems: Problem[] = [];
  const main = wf.spec.steps;
  const fin = wf.spec.finally ?? [];
  const placed: Placed[] = [
    ...main.map((s, i) => ({ s, path: ["spec", "steps", i], final: false })),
    ...fin.map((s, i) => ({ s, path: ["spec", "finally", i], final: true })),
  ];
  const pos = (p: Placed, ...rest: (string | number)[]) => nodeAt(doc, [...p.path, ...rest])?.range?.[0];
  const stepNames = new Set<string>();
  const finalNames = new Set(fin.map((s) => s.name));

  for (const p of placed) {
    if (stepNames.has(p.s.name)) problems.push(at(pos(p, "name"), `duplicate step name "${p.s.name}"`));
    stepNames.add(p.s.name);
  }

  for (const p of placed) {
    const s = p.s;
    (s.dependsOn ?? []).forEach((dep, j) => {
      const off = pos(p, "dependsOn", j);
      if (dep === s.name) problems.push(at(off, `step "${s.name}" depends on itself`));
      else if (!stepNames.has(dep)) problems.push(at(off, `step "${s.name}" depends on "${dep}", which is not a step of this workflow${hint(dep, stepNames)}`));
      else if (p.final && !finalNames.has(dep))
        problems.push(
          at(
            off,
            `finally step "${s.name}" depends on "${dep}", a main step; finally steps run after every main step and may depend on other finally steps only`,
          ),
        );
      else if (!p.final && finalNames.has(dep))
        problems.push(at(off, `step "${s.name}" depends on "${dep}", a finally step, which runs after every main step`));
    });
  }

  for (const cycle of findCycles(placed.map((p) => p.s))) {
    const p = placed.find((x) => x.s.name === cycle[0])!;
    problems.push(at(pos(p, "dependsOn"), `dependency cycle: ${[...cycle, cycle[0]].join(" → ")}`));
  }

  problems.push(...checkContinuous(main, doc, at, opts));
  for (const p of placed.filter((x) => x.final && x.s.continuous)) problems.push(at(pos(p, "continuous"), `finally step "${p.s.name}" cannot be continuous`));

  const params = wf.spec.params ?? {};
  const upstream = upstreamSets(placed.map((x) => x.s));
  const mainNames = new Set(main.map((s) => s.name));
  for (const p of placed) {
    const s = p.s;
    // A finally step runs after every main step: it may read any of them.
    const readable = new Set([...(upstream.get(s.name) ?? []), ...(p.final ? mainNames : [])]);
    const scope: RefScope = { params, stepNames, readable, step: s.name, final: p.final, fanOut: s.forEach !== undefined };
    for (const field of ["with", "exec"] as const) {
      walkStrings(s[field], [], (text, rel) => {
        for (const expr of findExpressions(text)) {
          const message = checkExpression(expr, scope);
          if (message) problems.push(at(pos(p, field, ...rel), message));
        }
      });
    }
    if (s.when !== undefined) {
      const message = checkExpression(conditionBody(s.when), scope, "when");
      if (message) problems.push(at(pos(p, "when"), message));
    }
    if (typeof s.forEach === "string") {
      const message = checkExpression(conditionBody(s.forEach), { ...scope, fanOut: false }, "forEach");
      if (message) problems.push(at(pos(p, "forEach"), message));
    }
    if (s.workflow !== undefined) problems.push(...checkWorkflowRef(wf, p, pos(p, "workflow"), at, opts, ctx));
    if (opts.actions && s.action && (s.agent || s.service)) problems.push(...checkAction(s, p.path, doc, at, opts.actions));
  }
  return problems;
}

/** A `workflow:` step names a file that exists, or a workflow that is known; never itself, directly or around a cycle. */
function checkWorkflowRef(wf: Workflow, p: Placed, off: number | undefined, at: At, opts: LoadOptions, ctx: FileContext): Problem[] {
  const ref = p.s.workflow!;
  const self = wf.metadata.name;
  if (isWorkflowPath(ref)) {
    const target = resolvePath(dirname(ctx.file), ref);
    if (!existsSync(target)) return [at(off, `step "${p.s.name}" calls workflow file ${ref}, which does not exist (looked for ${target})`)];
    if (target === resolvePath(ctx.file) && ctx.calls.size === 1)
      return [at(off, `step "${p.s.name}" calls the workflow it belongs to (${ref}): a workflow cannot call itself`)];
    return [];
  }
  if (ref === self) return [at(off, `step "${p.s.name}" calls workflow "${ref}", the workflow it belongs to: a workflow cannot call itself`)];
  const cycle = callCycle(ctx.calls, self, ref);
  if (cycle) return [at(off, `step "${p.s.name}" calls workflow "${ref}", which calls back: ${[self, ...cycle].join(" → ")}`)];
  if (ctx.calls.has(ref) || opts.workflows === undefined || opts.workflows.has(ref)) return [];
  // At run time a name not registered is looked for as NAME.yaml beside this file.
  if ([".yaml", ".yml"].some((ext) => existsSync(resolvePath(dirname(ctx.file), ref + ext)))) return [];
  const known = new Set([...ctx.calls.keys(), ...opts.workflows]);
  return [
    at(off, `step "${p.s.name}" calls workflow "${ref}", which is not in this file, not registered, and not a file ${ref}.yaml beside it${hint(ref, known)}`),
  ];
}

/** The call path from `from` back to `self` through the workflows of the file, if there is one. */
function callCycle(calls: Map<string, string[]>, self: string, from: string): string[] | undefined {
  const seen = new Set<string>();
  const walk = (n: string, path: string[]): string[] | undefined => {
    if (n === self) return path;
    if (seen.has(n)) return undefined;
    seen.add(n);
    for (const next of calls.get(n) ?? []) {
      const found = walk(next, [...path, next]);
      if (found) return found;
    }
    return undefined;
  };
  return walk(from, [from]);
}

/**
 * Continuous steps form one chain in file order (each depends on the one before it and on no
 * other step), run together as a pipeline; only the group's first step may wait for ordinary
 * steps, and only its last step may be waited for.
 */
function checkContinuous(steps: Step[], doc: Document, at: At, opts: LoadOptions): Problem[] {
  const problems: Problem[] = [];
  const group = steps.map((s, i) => ({ s, i })).filter(({ s }) => s.continuous);
  if (group.length === 0) return problems;
  const pos = (i: number, ...rest: (string | number)[]) => nodeAt(doc, ["spec", "steps", i, ...rest])?.range?.[0];
  if (group.length === 1) {
    problems.push(
      at(pos(group[0]!.i, "continuous"), `step "${group[0]!.s.name}" is the only continuous step; a continuous pipeline needs a source step and a sink step`),
    );
    return problems;
  }
  const names = new Set(group.map(({ s }) => s.name));
  group.forEach(({ s, i }, k) => {
    if (k === 0) {
      const inner = (s.dependsOn ?? []).filter((d) => names.has(d));
      if (inner.length)
        problems.push(
          at(pos(i, "dependsOn"), `step "${s.name}" starts the continuous group (the first continuous step in the file) and cannot depend on "${inner[0]}"`),
        );
      return;
    }
    const prev = group[k - 1]!.s.name;
    const deps = s.dependsOn ?? [];
    if (deps.length !== 1 || deps[0] !== prev)
      problems.push(
        at(
          pos(i, "dependsOn") ?? pos(i, "name"),
          `continuous step "${s.name}" must depend on "${prev}" and nothing else: continuous steps form one chain, in file order`,
        ),
      );
  });
  const last = group.at(-1)!.s.name;
  steps.forEach((s, i) => {
    if (s.continuous) return;
    for (const d of s.dependsOn ?? [])
      if (names.has(d) && d !== last)
        problems.push(
          at(
            pos(i, "dependsOn"),
            `step "${s.name}" depends on "${d}" inside the continuous group; depend on its last step "${last}", which ends when the pipeline stops`,
          ),
        );
  });
  if (opts.actions)
    for (const { s, i } of group) {
      if (!s.action || !(s.agent || s.service)) continue;
      const sig = opts.actions.find(s.agent !== undefined ? "agent" : "service", (s.agent ?? s.service)!, s.action);
      if (sig && !sig.stream) problems.push(at(pos(i, "continuous"), `${s.agent ?? s.service}/${s.action} cannot run continuously: it has no streaming stage`));
    }
  return problems;
}

function checkAction(s: Step, base: (string | number)[], doc: Document, at: At, actions: ActionLookup): Problem[] {
  const kind = s.agent !== undefined ? "agent" : "service";
  const owner = (s.agent ?? s.service)!;
  const owners = actions.names(kind);
  if (!owners.includes(owner)) return [at(nodeAt(doc, [...base, kind])?.range?.[0], `unknown ${kind} "${owner}"${hint(owner, owners)}`)];
  const sig = actions.find(kind, owner, s.action!);
  if (!sig) {
    const known = actions.names(kind, owner);
    return [at(nodeAt(doc, [...base, "action"])?.range?.[0], `${kind} "${owner}" has no action "${s.action}"${hint(s.action!, known)}`)];
  }
  const result = sig.input.safeParse(s.with ?? {});
  if (result.success) return [];
  const problems: Problem[] = [];
  for (const issue of result.error.issues) {
    const rel = issue.path as (string | number)[];
    // A value computed by an expression is only known at run time; its type is checked then.
    if (rel.length > 0 && containsExpression(getIn(s.with, rel.slice(0, 1)))) continue;
    if (issue.code === "unrecognized_keys") {
      const known = knownKeysAt(sig.input, rel);
      for (const key of issue.keys)
        problems.push(
          at(
            keyOffset(doc, [...base, "with", ...rel], key) ?? nodeAt(doc, [...base])?.range?.[0],
            `unknown input "${key}" for ${owner}/${s.action}${hint(key, known)}`,
          ),
        );
      continue;
    }
    const node = nodeAt(doc, [...base, "with", ...rel]) ?? nodeAt(doc, [...base, "with"]) ?? nodeAt(doc, base);
    const name = rel.length ? `input "${rel.join(".")}"` : "inputs";
    problems.push(at(node?.range?.[0], `${name} of ${owner}/${s.action}: ${issueMessage(issue, getIn(s.with ?? {}, rel))}`));
  }
  return problems;
}

interface RefScope {
  params: Record<string, { type: string }>;
  stepNames: Set<string>;
  /** Steps whose outputs this step may read (its upstream; for finally steps every main step too). */
  readable: Set<string>;
  step: string;
  final: boolean;
  fanOut: boolean;
}

/** One sentence on what is wrong with an expression body, or undefined when it is sound. */
function checkExpression(expr: string, scope: RefScope, field?: "when" | "forEach"): string | undefined {
  const parsed = parseExpression(expr);
  const label = field ? `${field} expression` : "expression";
  if ("error" in parsed) return `${label} ${parsed.error}`;
  for (const { ref, text } of referencesOf(parsed)) {
    const message = checkReference(ref, text, scope);
    if (message) return `${label} ${message}`;
  }
  if (field === "forEach") {
    if (parsed.kind !== "ref")
      return `forEach of step "${scope.step}" must give a list, and "${expr}" gives ${parsed.kind === "literal" ? `the literal ${JSON.stringify(parsed.value)}` : "true or false"}`;
    const ref = parsed.ref;
    if (ref.root === "params" && scope.params[ref.name] && scope.params[ref.name]!.type !== "string")
      return `forEach of step "${scope.step}" reads params.${ref.name}, ${article(scope.params[ref.name]!.type)}, not a list`;
    if (ref.root === "run" || ref.root === "index") return `forEach of step "${scope.step}" must give a list, and ${expr} never is one`;
  }
  return undefined;
}

function checkReference(ref: Reference, text: string, scope: RefScope): string | undefined {
  switch (ref.root) {
    case "params":
      if (!(ref.name in scope.params)) return `"${text}" names an unknown parameter "${ref.name}"${hint(ref.name, new Set(Object.keys(scope.params)))}`;
      return undefined;
    case "steps":
      if (!scope.stepNames.has(ref.step)) return `"${text}" names an unknown step "${ref.step}"${hint(ref.step, scope.stepNames)}`;
      if (!scope.readable.has(ref.step)) return `"${text}" reads step "${ref.step}", which step "${scope.step}" does not depend on; add it to dependsOn`;
      return undefined;
    case "run":
      if (ref.field === "status" && !scope.final) return `"${text}": the run's status is known only in spec.finally steps`;
      return undefined;
    case "item":
    case "index":
      if (!scope.fanOut) return `"${text}": ${ref.root} is known only in a step with forEach`;
      return undefined;
    case "event":
      return undefined;
  }
}

/** Step name → its dependencies; the first of duplicate names wins (duplicates are reported separately). */
function dependencyMap(steps: Pick<Step, "name" | "dependsOn">[]): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const s of steps) if (!deps.has(s.name)) deps.set(s.name, s.dependsOn ?? []);
  return deps;
}

/** Each dependency cycle once, as the list of step names around it. */
export function findCycles(steps: Pick<Step, "name" | "dependsOn">[]): string[][] {
  const deps = dependencyMap(steps);
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const visit = (n: string) => {
    state.set(n, "visiting");
    stack.push(n);
    for (const d of deps.get(n) ?? []) {
      if (!deps.has(d) || d === n) continue;
      if (state.get(d) === "visiting") {
        const cycle = stack.slice(stack.indexOf(d));
        const key = [...cycle].sort().join("\0");
        if (!seen.has(key)) (seen.add(key), cycles.push(cycle));
      } else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const s of steps) if (!state.has(s.name)) visit(s.name);
  return cycles;
}

/** For each step, every step it transitively depends on. */
function upstreamSets(steps: Pick<Step, "name" | "dependsOn">[]): Map<string, Set<string>> {
  const deps = dependencyMap(steps);
  const memo = new Map<string, Set<string>>();
  const get = (n: string, guard: Set<string>): Set<string> => {
    const cached = memo.get(n);
    if (cached) return cached;
    const out = new Set<string>();
    if (guard.has(n)) return out;
    guard.add(n);
    for (const d of deps.get(n) ?? []) {
      out.add(d);
      for (const x of get(d, guard)) out.add(x);
    }
    memo.set(n, out);
    return out;
  };
  for (const s of steps) get(s.name, new Set());
  return memo;
}

function walkStrings(value: unknown, path: (string | number)[], fn: (text: string, path: (string | number)[]) => void): void {
  if (typeof value === "string") fn(value, path);
  else if (Array.isArray(value)) value.forEach((v, i) => walkStrings(v, [...path, i], fn));
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) walkStrings(v, [...path, k], fn);
}

function containsExpression(value: unknown): boolean {
  let found = false;
  walkStrings(value, [], (t) => (found ||= t.includes("${{")));
  return found;
}

function getIn(value: unknown, path: (string | number)[]): unknown {
  let cur = value;
  for (const k of path) cur = cur && typeof cur === "object" ? (cur as Record<string | number, unknown>)[k] : undefined;
  return cur;
}

/** The YAML node at a path, or the deepest node that exists on the way there. */
function nodeAt(doc: Document, path: (string | number)[]): YamlNode | undefined {
  let cur: unknown = doc.contents;
  for (const key of path) {
    let next: unknown;
    if (isMap(cur)) next = cur.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key)?.value;
    else if (isSeq(cur) && typeof key === "number") next = cur.items[key];
    if (next === undefined || next === null) return cur as YamlNode;
    cur = next;
  }
  return cur as YamlNode;
}

function keyOffset(doc: Document, path: (string | number)[], key: string): number | undefined {
  const map = nodeAt(doc, path);
  if (!isMap(map)) return map?.range?.[0];
  const pair = map.items.find((p) => isScalar(p.key) && p.key.value === key);
  return (pair?.key as YamlNode | undefined)?.range?.[0] ?? map.range?.[0];
}

/** The field names a strict object schema accepts at a path, for did-you-mean hints. */
function knownKeysAt(schema: z.ZodType, path: (string | number)[]): string[] {
  let cur: z.ZodType | undefined = schema;
  for (const key of path) {
    cur = unwrap(cur);
    if (cur instanceof z.ZodObject) cur = (cur.shape as Record<string, z.ZodType>)[key as string];
    else if (cur instanceof z.ZodArray) cur = cur.element as z.ZodType;
    else if (cur instanceof z.ZodRecord) cur = cur.valueType as z.ZodType;
    else return [];
  }
  cur = unwrap(cur);
  return cur instanceof z.ZodObject ? Object.keys(cur.shape) : [];
}

function unwrap(s: z.ZodType | undefined): z.ZodType | undefined {
  let cur = s;
  while (cur instanceof z.ZodOptional || cur instanceof z.ZodDefault || cur instanceof z.ZodNullable) cur = cur.unwrap() as z.ZodType;
  return cur;
}

function describePath(path: (string | number)[]): string {
  if (path.length === 0) return "the workflow";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return `the text "${v.length > 40 ? v.slice(0, 40) + "…" : v}"`;
  return `${typeof v} ${String(v)}`;
}

function article(expected: string): string {
  const word = expected === "object" ? "mapping" : expected === "array" ? "list" : expected;
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}

function firstSentence(message: string): string {
  return message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
}

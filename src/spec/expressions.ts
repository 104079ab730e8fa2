/**
 * `${{ ... }}` expressions: in `with:` and `exec:` values, in `when:` conditions and `forEach:`.
 *
 * Deliberately small, so that every expression can be checked when the file is validated, long
 * before a run starts. An expression is a reference, a literal, or a condition over them:
 *   params.NAME                 a workflow parameter
 *   steps.STEP.outputs.KEY...   an output of an upstream step (`[0]` or `["k"]` index into it)
 *   event.data.PATH...          the payload of the event that started the run
 *   run.id | run.workflow       the run itself; run.status in `spec.finally` steps
 *   item, item.FIELD, index     the current item of a `forEach` step and its position
 *   'text' "text" 12 1.5 true false null
 *   == != < <= > >= && || ! ( )
 *
 * The parser is written here rather than taken from a JavaScript-expression library because the
 * language is Sluice's own: step names carry dashes (`steps.check-rows.outputs.rows`, which a JS
 * parser reads as a subtraction), there is no arithmetic, calls or assignment, and every error
 * names the column in the user's expression.
 */
import { SluiceError } from "../errors.js";

const EXPR = /\$\{\{\s*([^}]*?)\s*\}\}/g;
const WHOLE_EXPR = /^\$\{\{\s*([^}]*?)\s*\}\}$/;

export type Reference =
  | { root: "params"; name: string }
  | { root: "steps"; step: string; path: (string | number)[] }
  | { root: "event"; path: (string | number)[] }
  | { root: "run"; field: "id" | "workflow" | "status" }
  | { root: "item"; path: (string | number)[] }
  | { root: "index" };

export interface ExpressionScope {
  params: Record<string, unknown>;
  steps: Record<string, { outputs: Record<string, unknown> | undefined }>;
  event?: { data?: unknown } | undefined;
  run: { id: string; workflow: string; status?: string };
  /** The current item of a fan-out and its position. */
  item?: unknown;
  index?: number;
}

export type Expr =
  | { kind: "literal"; value: string | number | boolean | null; at: number }
  | { kind: "ref"; ref: Reference; text: string; at: number }
  | { kind: "not"; arg: Expr; at: number }
  | { kind: "binary"; op: BinaryOp; left: Expr; right: Expr; at: number };

type BinaryOp = "==" | "!=" | "<" | "<=" | ">" | ">=" | "&&" | "||";

/** Every expression text inside a string, in order. */
export function findExpressions(text: string): string[] {
  return [...text.matchAll(EXPR)].map((m) => m[1]!);
}

/** The body of a string that is exactly one `${{ }}` expression; a bare condition is its own body. */
export function conditionBody(text: string): string {
  return WHOLE_EXPR.exec(text.trim())?.[1] ?? text.trim();
}

/** True when a string is exactly one `${{ }}` expression (its value keeps its type). */
export function isWholeExpression(text: string): boolean {
  return WHOLE_EXPR.test(text);
}

/** Every reference an expression makes, in order (for validation). */
export function referencesOf(e: Expr): Extract<Expr, { kind: "ref" }>[] {
  switch (e.kind) {
    case "literal":
      return [];
    case "ref":
      return [e];
    case "not":
      return referencesOf(e.arg);
    case "binary":
      return [...referencesOf(e.left), ...referencesOf(e.right)];
  }
}

/** Parse one expression body, or explain in one sentence (with its column) why it is not valid. */
export function parseExpression(text: string): Expr | { error: string } {
  try {
    const p = new Parser(text);
    const e = p.or();
    p.skip();
    if (p.pos < text.length) p.fail(`unexpected "${text.slice(p.pos, p.pos + 12)}"`);
    return e;
  } catch (err) {
    if (err instanceof ExpressionSyntaxError) return { error: err.message };
    throw err;
  }
}

/** Parse one reference body (`params.source`), for callers that accept nothing else. */
export function parseReference(expr: string): Reference | { error: string } {
  const e = parseExpression(expr);
  if ("error" in e) return e;
  if (e.kind !== "ref") return { error: `"${expr}" is not a reference; write params.NAME, steps.STEP.outputs.KEY, event.data.KEY or run.id` };
  return e.ref;
}

class ExpressionSyntaxError extends Error {}

const ROOTS = "params, steps, event, run, item or index";

/** Recursive descent; precedence from loosest: ||, &&, comparison, !, primary. */
class Parser {
  pos = 0;
  constructor(private readonly src: string) {}

  fail(message: string, at = this.pos): never {
    throw new ExpressionSyntaxError(`"${this.src}" at column ${at + 1}: ${message}`);
  }

  skip(): void {
    while (this.pos < this.src.length && /\s/.test(this.src[this.pos]!)) this.pos++;
  }

  private eat(token: string): boolean {
    this.skip();
    if (!this.src.startsWith(token, this.pos)) return false;
    this.pos += token.length;
    return true;
  }

  or(): Expr {
    let left = this.and();
    for (let at = this.at(); this.eat("||"); at = this.at()) left = { kind: "binary", op: "||", left, right: this.and(), at };
    return left;
  }

  private and(): Expr {
    let left = this.comparison();
    for (let at = this.at(); this.eat("&&"); at = this.at()) left = { kind: "binary", op: "&&", left, right: this.comparison(), at };
    return left;
  }

  private comparison(): Expr {
    const left = this.unary();
    const at = this.at();
    for (const op of ["==", "!=", "<=", ">=", "<", ">"] as const) {
      if (this.eat(op)) {
        const right = this.unary();
        if (["==", "!=", "<=", ">=", "<", ">"].some((o) => this.peek(o))) this.fail("comparisons do not chain; combine them with && or ||");
        return { kind: "binary", op, left, right, at };
      }
    }
    if (this.peek("=") && !this.peek("==")) this.fail('use "==" to compare');
    return left;
  }

  private peek(token: string): boolean {
    this.skip();
    return this.src.startsWith(token, this.pos);
  }

  private at(): number {
    this.skip();
    return this.pos;
  }

  private unary(): Expr {
    const at = this.at();
    if (this.peek("!") && !this.peek("!=")) {
      this.pos++;
      return { kind: "not", arg: this.unary(), at };
    }
    return this.primary();
  }

  private primary(): Expr {
    const at = this.at();
    const c = this.src[this.pos];
    if (c === undefined) this.fail("the expression ends too early");
    if (c === "(") {
      this.pos++;
      const e = this.or();
      if (!this.eat(")")) this.fail('missing ")"');
      return e;
    }
    if (c === "'" || c === '"') return { kind: "literal", value: this.string(), at };
    const num = /^-?\d+(\.\d+)?([eE][-+]?\d+)?/.exec(this.src.slice(this.pos));
    if (num) {
      this.pos += num[0].length;
      return { kind: "literal", value: Number(num[0]), at };
    }
    const word = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.src.slice(this.pos));
    if (!word) this.fail(`unexpected "${c}"`);
    if (word[0] === "true" || word[0] === "false" || word[0] === "null") {
      this.pos += word[0].length;
      return { kind: "literal", value: word[0] === "null" ? null : word[0] === "true", at };
    }
    return this.reference(at);
  }

  private string(): string {
    const quote = this.src[this.pos]!;
    const start = this.pos++;
    let out = "";
    while (this.pos < this.src.length && this.src[this.pos] !== quote) {
      if (this.src[this.pos] === "\\" && this.pos + 1 < this.src.length) this.pos++;
      out += this.src[this.pos++];
    }
    if (this.pos >= this.src.length) this.fail("the string is not closed", start);
    this.pos++;
    return out;
  }

  /** A dotted path: segments may hold dashes (step names do); `[0]` and `["key"]` index into values. */
  private reference(at: number): Expr {
    const path: (string | number)[] = [];
    const segment = () => {
      const m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(this.src.slice(this.pos));
      if (!m) this.fail("expected a name after the dot");
      this.pos += m[0].length;
      // A trailing dash is never part of a name ("a-" before a number would be a typo).
      path.push(m[0]);
    };
    segment();
    for (;;) {
      if (this.src[this.pos] === ".") {
        this.pos++;
        segment();
      } else if (this.src[this.pos] === "[") {
        this.pos++;
        this.skip();
        const c = this.src[this.pos];
        if (c === "'" || c === '"') path.push(this.string());
        else {
          const m = /^\d+/.exec(this.src.slice(this.pos));
          if (!m) this.fail("expected a number or a quoted key inside [ ]");
          this.pos += m[0].length;
          path.push(Number(m[0]));
        }
        if (!this.eat("]")) this.fail('missing "]"');
      } else break;
    }
    const text = this.src.slice(at, this.pos);
    const ref = toReference(text, path);
    if ("error" in ref) {
      // The whole expression is this reference: its text already says where.
      if (at === 0 && this.src.slice(this.pos).trim() === "") throw new ExpressionSyntaxError(ref.error);
      this.fail(ref.error, at);
    }
    return { kind: "ref", ref, text, at };
  }
}

function toReference(text: string, parts: (string | number)[]): Reference | { error: string } {
  const [root, ...rest] = parts as [string, ...(string | number)[]];
  switch (root) {
    case "params":
      if (rest.length !== 1 || typeof rest[0] !== "string") return { error: `"${text}" should be params.NAME` };
      return { root: "params", name: rest[0] };
    case "steps":
      if (rest.length < 2 || typeof rest[0] !== "string" || rest[1] !== "outputs")
        return { error: `"${text}" should be steps.STEP.outputs or steps.STEP.outputs.KEY` };
      return { root: "steps", step: rest[0], path: rest.slice(2) };
    case "event":
      if (rest[0] !== "data") return { error: `"${text}" should be event.data or event.data.KEY` };
      return { root: "event", path: rest.slice(1) };
    case "run":
      if (rest.length !== 1 || (rest[0] !== "id" && rest[0] !== "workflow" && rest[0] !== "status"))
        return { error: `"${text}" should be run.id, run.workflow or run.status` };
      return { root: "run", field: rest[0] };
    case "item":
      return { root: "item", path: rest };
    case "index":
      if (rest.length) return { error: `"${text}": index is a number and has no fields` };
      return { root: "index" };
    default:
      return { error: `"${text}" starts with an unknown name "${root}"; use ${ROOTS}, a quoted string or a number` };
  }
}

/**
 * Replace expressions in any JSON-like value. A string that is exactly one expression takes the
 * value with its type (a number stays a number); otherwise values are interpolated as text.
 */
export function evaluate(value: unknown, scope: ExpressionScope): unknown {
  if (typeof value === "string") return evaluateString(value, scope);
  if (Array.isArray(value)) return value.map((v) => evaluate(v, scope));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const r = evaluate(v, scope);
      if (r !== undefined) out[k] = r;
    }
    return out;
  }
  return value;
}

/** The value of one expression body (`steps.a.outputs.rows > 0`). */
export function evaluateExpression(body: string, scope: ExpressionScope): unknown {
  const e = parseExpression(body);
  if ("error" in e) throw new SluiceError("BAD_INPUT", `expression ${e.error}`);
  try {
    return evalExpr(e, scope);
  } catch (err) {
    // An operator's complaint names its column; say which expression it is in.
    if (err instanceof OperandError) throw new SluiceError("BAD_INPUT", `expression "${body}" at column ${err.at + 1}: ${err.message}`);
    throw err;
  }
}

class OperandError extends Error {
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(message);
  }
}

/** A `when:` condition's truth (`${{ … }}` or a bare expression); a non-boolean result is an error. */
export function evaluateCondition(text: string, scope: ExpressionScope): boolean {
  const v = evaluateExpression(conditionBody(text), scope);
  if (typeof v !== "boolean") throw new SluiceError("BAD_INPUT", `condition "${text}" gave ${describe(v)}, not true or false; compare it, e.g. "!= 0"`);
  return v;
}

function evaluateString(text: string, scope: ExpressionScope): unknown {
  const whole = WHOLE_EXPR.exec(text);
  if (whole) return evaluateExpression(whole[1]!, scope);
  if (!text.includes("${{")) return text;
  return text.replace(EXPR, (_m, expr: string) => {
    const v = evaluateExpression(expr, scope);
    return typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v);
  });
}

function evalExpr(e: Expr, scope: ExpressionScope): unknown {
  switch (e.kind) {
    case "literal":
      return e.value;
    case "ref":
      return resolve(e, scope);
    case "not":
      return !truthy(evalExpr(e.arg, scope));
    case "binary": {
      if (e.op === "&&") return truthy(evalExpr(e.left, scope)) && truthy(evalExpr(e.right, scope));
      if (e.op === "||") return truthy(evalExpr(e.left, scope)) || truthy(evalExpr(e.right, scope));
      return compare(e.op, evalExpr(e.left, scope), evalExpr(e.right, scope), e);
    }
  }
}

function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  return Boolean(v);
}

/**
 * Comparisons coerce the way workflow authors expect across YAML and JSON: a numeric string
 * equals its number (a param given on the command line compares with an output), "true" and
 * "false" equal their booleans. Ordering compares numbers as numbers and strings as strings
 * (so ISO dates order correctly); anything else is an error, never a silent false.
 */
function compare(op: BinaryOp, a: unknown, b: unknown, e: Expr): boolean {
  const [x, y] = coerce(a, b);
  if (op === "==") return equal(x, y);
  if (op === "!=") return !equal(x, y);
  const comparable = (typeof x === "number" && typeof y === "number") || (typeof x === "string" && typeof y === "string");
  if (!comparable) throw new OperandError(`cannot order ${describe(a)} and ${describe(b)} with ${op}`, e.at);
  const xs = x as number | string,
    ys = y as number | string;
  return op === "<" ? xs < ys : op === "<=" ? xs <= ys : op === ">" ? xs > ys : xs >= ys;
}

function coerce(a: unknown, b: unknown): [unknown, unknown] {
  const num = (s: string) => (s.trim() !== "" && Number.isFinite(Number(s)) ? Number(s) : undefined);
  if (typeof a === "number" && typeof b === "string" && num(b) !== undefined) return [a, num(b)];
  if (typeof b === "number" && typeof a === "string" && num(a) !== undefined) return [num(a), b];
  if (typeof a === "boolean" && (b === "true" || b === "false")) return [a, b === "true"];
  if (typeof b === "boolean" && (a === "true" || a === "false")) return [a === "true", b];
  return [a, b];
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return (a ?? null) === (b ?? null);
  if (typeof a === "object" && typeof b === "object" && a !== null && b !== null) return JSON.stringify(a) === JSON.stringify(b);
  return false;
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}

function resolve(e: Extract<Expr, { kind: "ref" }>, scope: ExpressionScope): unknown {
  const ref = e.ref;
  switch (ref.root) {
    case "params":
      // Validation has checked the name is declared; an optional parameter left unset is undefined,
      // so the action's own default applies.
      return scope.params[ref.name];
    case "run":
      if (ref.field === "status" && scope.run.status === undefined)
        throw new SluiceError("BAD_INPUT", "expression run.status: the run's status is known only in spec.finally steps");
      return scope.run[ref.field];
    case "event":
      return dig(scope.event?.data, ref.path, e.text);
    case "item":
      if (!("item" in scope)) throw new SluiceError("BAD_INPUT", `expression ${e.text}: item is known only in a step with forEach`);
      return dig(scope.item, ref.path, e.text);
    case "index":
      if (scope.index === undefined) throw new SluiceError("BAD_INPUT", "expression index: index is known only in a step with forEach");
      return scope.index;
    case "steps": {
      const step = scope.steps[ref.step];
      if (!step?.outputs) throw new SluiceError("BAD_INPUT", `expression steps.${ref.step}: that step has no outputs (it has not succeeded)`);
      return dig(step.outputs, ref.path, e.text);
    }
  }
}

function dig(value: unknown, path: (string | number)[], label: string): unknown {
  let cur = value;
  for (const key of path) {
    if (cur === null || typeof cur !== "object" || !(key in (cur as object))) throw new SluiceError("BAD_INPUT", `expression ${label}: no such value`);
    cur = (cur as Record<string | number, unknown>)[key];
  }
  return cur;
}

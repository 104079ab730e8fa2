/**
 * `sluice/no-cycle`: no import — value, type-only or dynamic — may lead back to the file it is in.
 *
 * WHY not import-x/no-cycle alone: it skips type-only imports by design (its rule filters out
 * `import type` and declarations whose every specifier is a type), so two files that name each
 * other's types pass it. Such a pair still cannot be understood, moved or split apart one at a
 * time, which is what the layer picture promises; this rule counts every import.
 *
 * The graph is read with TypeScript's import scanner (`ts.preProcessFile`: no parse, no type
 * check), once per file and lint run, re-read when the file changes. Relative specifiers only
 * (packages cannot import us back), resolved the way NodeNext resolves this code base's imports:
 * `./x.js` is `./x.ts` when that exists.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import ts from "typescript";

const graph = new Map(); // absolute file -> { mtimeMs, imports: absolute files }

function resolveSpecifier(fromFile, specifier) {
  if (!specifier.startsWith(".")) return undefined;
  const base = resolve(dirname(fromFile), specifier);
  const candidates = /\.[cm]?js$/.test(base) ? [base.replace(/js$/, "ts"), base.replace(/\.js$/, ".tsx"), base] : [base, `${base}.ts`, `${base}/index.ts`];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
}

function importsOfText(file, text) {
  const { importedFiles } = ts.preProcessFile(text, true, true);
  return importedFiles.map((f) => resolveSpecifier(file, f.fileName)).filter((f) => f !== undefined);
}

function importsOf(file) {
  let mtimeMs;
  try {
    mtimeMs = statSync(file).mtimeMs;
  } catch {
    return [];
  }
  const known = graph.get(file);
  if (known && known.mtimeMs === mtimeMs) return known.imports;
  const imports = importsOfText(file, readFileSync(file, "utf8"));
  graph.set(file, { mtimeMs, imports });
  return imports;
}

/** The shortest import path from `start` back to `target` (both included), or undefined. */
function pathBack(start, target) {
  const cameFrom = new Map([[start, undefined]]);
  const queue = [start];
  while (queue.length > 0) {
    const file = queue.shift();
    if (file === target) {
      const path = [];
      for (let at = file; at !== undefined; at = cameFrom.get(at)) path.unshift(at);
      return path;
    }
    for (const next of importsOf(file)) {
      if (!cameFrom.has(next)) {
        cameFrom.set(next, file);
        queue.push(next);
      }
    }
  }
  return undefined;
}

/** @type {import("eslint").Rule.RuleModule} */
export const noCycle = {
  meta: {
    type: "problem",
    docs: { description: "Forbid import cycles, counting type-only and dynamic imports" },
    schema: [],
    messages: { cycle: "Import cycle: {{path}} (type-only and dynamic imports count: move the shared declarations to a file both can import)" },
  },
  create(context) {
    const file = context.physicalFilename;
    if (!existsSync(file)) return {};
    const root = context.cwd;
    function check(sourceNode) {
      if (!sourceNode || typeof sourceNode.value !== "string") return;
      const target = resolveSpecifier(file, sourceNode.value);
      if (!target || target === file) return;
      const path = pathBack(target, file);
      if (path) context.report({ node: sourceNode, messageId: "cycle", data: { path: [file, ...path].map((f) => relative(root, f)).join(" → ") } });
    }
    return {
      ImportDeclaration: (node) => check(node.source),
      ExportNamedDeclaration: (node) => check(node.source),
      ExportAllDeclaration: (node) => check(node.source),
      ImportExpression: (node) => check(node.source),
      // `import("./x.js").T` in a type position (typescript-eslint 8 calls the literal `argument.literal`, later `source`).
      TSImportType: (node) => check(node.source ?? node.argument?.literal),
    };
  },
};

/** @type {import("eslint").ESLint.Plugin} */
const plugin = { meta: { name: "sluice" }, rules: { "no-cycle": noCycle } };
export default plugin;

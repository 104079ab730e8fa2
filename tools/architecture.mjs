/**
 * What derives from tools/layers.mjs: the ESLint zones that enforce the layers, and the README's
 * architecture picture with its table of allowed imports.
 *
 * `node tools/architecture.mjs` (`npm run gen:arch`, part of `npm run gen`) rewrites the README
 * between the markers; test/tools/architecture.test.ts fails when the committed README differs.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { EXCEPTIONS, INNER_RULES, LAYERS, layerOf, mayImport } from "./layers.mjs";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
export const README = join(ROOT, "README.md");
export const BEGIN = "<!-- architecture:begin — generated from tools/layers.mjs by `npm run gen:arch`; edit that file, not this picture -->";
export const END = "<!-- architecture:end -->";

const label = (layer) => (layer.dir.endsWith(".ts") ? posix.basename(layer.dir) : `${posix.basename(layer.dir)}/`);
const mayList = (layer) => (layer.may === "*" ? LAYERS.filter((l) => l !== layer) : layer.may.map((n) => LAYERS.find((l) => l.name === n)));

// ---------------------------------------------------------------------------------------------
// ESLint

/** The zones for files of `layer`; `file` narrows them to one file and lets its EXCEPTIONS through. */
function zonesFor(layer, file) {
  const zones = [];
  const allowed = layer.may === "*" ? "every layer" : mayList(layer).map(label).join(", ") || "nothing";
  for (const other of LAYERS) {
    if (other === layer) continue;
    const excepted = EXCEPTIONS.filter((e) => e.from === file && layerOf(e.to) === other).map((e) => `./${posix.relative(other.dir, e.to)}`);
    if (!mayImport(layer, other)) {
      zones.push({
        target: file ?? layer.dir,
        from: other.dir,
        ...(excepted.length > 0 ? { except: excepted } : {}),
        message: `${label(layer)} may import ${allowed}, not ${label(other)} (tools/layers.mjs).`,
      });
    } else if (other.publicFiles && layer.may !== "*") {
      zones.push({
        target: file ?? layer.dir,
        from: other.dir,
        except: [...other.publicFiles.map((f) => `./${f}`), ...excepted],
        message: `outside ${label(other)}, import only ${other.publicFiles.join(", ")}: ${other.publicWhy.replaceAll("`", "")} (tools/layers.mjs).`,
      });
    }
  }
  for (const rule of INNER_RULES) {
    const inTarget = file ? file.startsWith(`${rule.target}/`) : layerOf(rule.target) === layer;
    if (inTarget)
      zones.push({ target: file ?? rule.target, from: rule.from, message: `${rule.target}/ never imports ${rule.from}/: ${rule.why} (tools/layers.mjs).` });
  }
  return zones;
}

function filesGlob(layer) {
  return layer.dir.endsWith(".ts") ? [layer.dir] : [`${layer.dir}/**/*.ts`, `${layer.dir}/**/*.tsx`];
}

/**
 * One ESLint config block per layer, then one per file with an exception (a later block's options
 * replace an earlier one's for the same rule, so the exception file gets its layer's zones less
 * the one import it is allowed).
 */
export function layerZoneConfigs() {
  const rule = (zones) => ({ "import-x/no-restricted-paths": zones.length > 0 ? ["error", { basePath: ROOT, zones }] : "off" });
  const perLayer = LAYERS.map((layer) => ({ name: `sluice/layer/${layer.name}`, files: filesGlob(layer), rules: rule(zonesFor(layer)) }));
  const exceptionFiles = [...new Set(EXCEPTIONS.map((e) => e.from))];
  const perException = exceptionFiles.map((file) => ({ name: `sluice/exception/${file}`, files: [file], rules: rule(zonesFor(layerOf(file), file)) }));
  return [...perLayer, ...perException];
}

// ---------------------------------------------------------------------------------------------
// The README picture

const GAP = 4;

/** A layer's block of lines: its folder name, then its `about` lines under one another. */
function block(layer) {
  const head = label(layer);
  const indent = " ".repeat(head.length + 2);
  const lines = layer.about.map((line, i) => (i === 0 ? `${head}  ${line}` : `${indent}${line}`));
  if (layer.about.length === 0) lines.push(head);
  if (layer.role) lines.push(`${indent}${layer.role}`);
  return lines;
}

/** Layers of one row side by side, each in a column as wide as its longest line. */
function drawRow(layers) {
  const blocks = layers.map(block);
  const widths = blocks.map((b) => Math.max(...b.map((l) => l.length)));
  const height = Math.max(...blocks.map((b) => b.length));
  const out = [];
  for (let i = 0; i < height; i++) {
    const cells = blocks.map((b, j) => (b[i] ?? "").padEnd(j < blocks.length - 1 ? widths[j] + GAP : 0));
    out.push(` ${cells.join("")}`.trimEnd());
  }
  return out;
}

export function renderPicture() {
  const rows = [...new Set(LAYERS.map((l) => l.row))].sort((a, b) => a - b);
  const lines = [];
  rows.forEach((row, i) => {
    if (i > 0) lines.push("   │");
    lines.push(...drawRow(LAYERS.filter((l) => l.row === row)));
  });
  return lines.join("\n");
}

export function renderTable() {
  const rows = LAYERS.map((layer) => {
    const may =
      layer.may === "*"
        ? "every layer, internals included"
        : mayList(layer)
            .map((l) => `\`${label(l)}\``)
            .join(", ") || "nothing";
    const pub = layer.publicFiles ? `only ${layer.publicFiles.map((f) => `\`${f}\``).join(", ")}: ${layer.publicWhy}` : "any file";
    return `| \`${label(layer)}\` | ${may} | ${pub} |`;
  });
  const exceptions = EXCEPTIONS.map((e) => `- \`${e.from}\` → \`${e.to}\`: ${e.why}.`);
  const inner = INNER_RULES.map((r) => `- \`${r.target}/\` never imports \`${r.from}/\`: ${r.why}.`);
  return [
    "| layer | may import | what others may import from it |",
    "|---|---|---|",
    ...rows,
    "",
    "Imports against the arrows, each allowed for one file only:",
    "",
    ...exceptions,
    "",
    "Inside a layer:",
    "",
    ...inner,
  ].join("\n");
}

export function renderSection() {
  return `${BEGIN}\n\n\`\`\`\n${renderPicture()}\n\`\`\`\n\n${renderTable()}\n\n${END}`;
}

/** The README with its generated section replaced (throws when the markers are missing). */
export function withSection(readme) {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md: the markers ${BEGIN} … ${END} are missing`);
  return readme.slice(0, start) + renderSection() + readme.slice(end + END.length);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const before = readFileSync(README, "utf8");
  const after = withSection(before);
  if (after !== before) writeFileSync(README, after);
  console.log(after === before ? "README.md: architecture section up to date" : "README.md: architecture section rewritten");
}

/**
 * The architecture check itself: the README's picture is the one tools/layers.mjs draws, every
 * source file is in a layer, and the ESLint rules built from the layers refuse exactly the imports
 * the table refuses (probed with files ESLint is given as text, so no source file is touched).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { ESLint } from "eslint";
import tseslint from "typescript-eslint";
import { afterAll, describe, expect, it } from "vitest";
import { README, withSection } from "../../tools/architecture.mjs";
import sluice from "../../tools/eslint/no-cycle.mjs";
import { EXCEPTIONS, INNER_RULES, LAYERS, layerOf, mayImport } from "../../tools/layers.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const sourceFiles = readdirSync(join(ROOT, "src"), { recursive: true, encoding: "utf8" })
  .filter((f) => f.endsWith(".ts"))
  .map((f) => posix.join("src", f.split("\\").join("/")));

describe("the architecture picture", () => {
  it("in README.md is the one tools/layers.mjs draws (run `npm run gen:arch` when this fails)", () => {
    const readme = readFileSync(README, "utf8");
    expect(withSection(readme)).toBe(readme);
  });

  it("covers every source file with exactly one layer, and names only folders and files that exist", () => {
    for (const f of sourceFiles)
      expect(
        LAYERS.filter((l) => f === l.dir || f.startsWith(`${l.dir}/`)).map((l) => l.name),
        f,
      ).toHaveLength(1);
    const names = new Set(LAYERS.map((l) => l.name));
    for (const l of LAYERS) {
      expect(
        sourceFiles.some((f) => layerOf(f) === l),
        `${l.dir} holds no file`,
      ).toBe(true);
      if (l.may !== "*") for (const n of l.may) expect(names.has(n), `${l.name} may import an unknown layer ${n}`).toBe(true);
      for (const p of l.publicFiles ?? []) expect(sourceFiles, `${l.name}'s public file ${p}`).toContain(`${l.dir}/${p}`);
    }
    for (const r of INNER_RULES)
      for (const dir of [r.target, r.from])
        expect(
          sourceFiles.some((f) => f.startsWith(`${dir}/`)),
          dir,
        ).toBe(true);
  });

  it("lists only exceptions the code still needs: each file still imports the other", () => {
    for (const e of EXCEPTIONS) {
      const text = readFileSync(join(ROOT, e.from), "utf8");
      const specifier = `"${posix
        .relative(posix.dirname(e.from), e.to)
        .replace(/^(?!\.)/, "./")
        .replace(/\.ts$/, ".js")}"`;
      expect(text, `${e.from} no longer imports ${e.to}: remove the exception from tools/layers.mjs`).toContain(specifier);
    }
  });
});

describe("the layer rules", () => {
  const eslint = new ESLint({ cwd: ROOT });
  const zoneErrors = async (file: string, code: string) => {
    const [result] = await eslint.lintText(code, { filePath: join(ROOT, file) });
    return result!.messages.filter((m) => m.ruleId === "import-x/no-restricted-paths");
  };
  // One file of each layer to import: a public one where the layer has them, else any.
  const someFileOf = (l: (typeof LAYERS)[number], internal = false) =>
    internal
      ? sourceFiles.find((f) => layerOf(f) === l && !(l.publicFiles ?? []).some((p) => f === `${l.dir}/${p}`))!
      : l.publicFiles
        ? `${l.dir}/${l.publicFiles[0]}`
        : sourceFiles.find((f) => layerOf(f) === l)!;
  const specifier = (from: string, to: string) => {
    const r = posix.relative(posix.dirname(from), to).replace(/\.ts$/, ".js");
    return r.startsWith(".") ? r : `./${r}`;
  };

  it("refuse, in every layer, a type-only import of each layer the table does not allow, and let the allowed ones through", async () => {
    for (const layer of LAYERS) {
      const probe = layer.dir.endsWith(".ts") ? layer.dir : `${layer.dir}/__probe__.ts`;
      const targets = LAYERS.filter((l) => l !== layer).map((l) => ({ l, file: someFileOf(l) }));
      const code = targets.map(({ file }, i) => `import type * as m${i} from "${specifier(probe, file)}";`).join("\n");
      const errors = await zoneErrors(probe, code);
      const refusedLines = new Set(errors.map((e) => e.line));
      targets.forEach(({ l }, i) => {
        expect(refusedLines.has(i + 1), `${layer.name} → ${l.name}: ${mayImport(layer, l) ? "allowed" : "refused"} by the table`).toBe(!mayImport(layer, l));
      });
    }
  });

  it("refuse a lazy import() too, with a sentence naming both layers and the file that defines them", async () => {
    const errors = await zoneErrors("src/connectors/__probe__.ts", `export const load = () => import("../engine/index.js");`);
    expect(errors.map((e) => e.message)).toEqual([
      'Unexpected path "../engine/index.js" imported in restricted zone. connectors/ may import formats/, spec/, crypto/, errors.ts, not engine/ (tools/layers.mjs).',
    ]);
  });

  it("let other layers import only a layer's public files (cli/ excepted)", async () => {
    const internals = LAYERS.filter((l) => l.publicFiles);
    for (const l of internals) {
      const internal = someFileOf(l, true);
      const importers = LAYERS.filter((a) => a !== l && mayImport(a, l));
      for (const a of importers) {
        const probe = `${a.dir}/__probe__.ts`;
        const errors = await zoneErrors(
          probe,
          `import type * as m from "${specifier(probe, internal)}";\nimport type * as p from "${specifier(probe, someFileOf(l))}";`,
        );
        expect(
          errors.map((e) => e.line),
          `${a.name} → ${internal}`,
        ).toEqual(a.may === "*" ? [] : [1]);
      }
    }
  });

  it("allow each exception in its one file only", async () => {
    for (const e of EXCEPTIONS) {
      const code = `export const load = () => import("${specifier(e.from, e.to)}");`;
      expect(await zoneErrors(e.from, code), e.from).toEqual([]);
      const sibling = posix.join(posix.dirname(e.from), "__probe__.ts");
      expect(await zoneErrors(sibling, code), sibling).toHaveLength(1);
    }
  });

  it("keep actions/batch/ from importing actions/stream/", async () => {
    const errors = await zoneErrors("src/actions/batch/__probe__.ts", `import type * as m from "../stream/decode.js";`);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toContain("the continuous stages reuse the batch parts");
  });
});

describe("sluice/no-cycle", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-cycle-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const lint = async (files: Record<string, string>, target: string) => {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const eslint = new ESLint({
      cwd: dir,
      overrideConfigFile: true,
      overrideConfig: [{ files: ["**/*.ts"], languageOptions: { parser: tseslint.parser }, plugins: { sluice }, rules: { "sluice/no-cycle": "error" } }],
    });
    const [result] = await eslint.lintFiles([join(dir, target)]);
    return result!.messages.map((m) => `${m.line}: ${m.message}`);
  };

  it("finds a cycle made only of type-only imports, which import-x/no-cycle skips, and names its path", async () => {
    const found = await lint(
      {
        "a.ts": `import type { B } from "./b.js";\nexport interface A { b: B }\n`,
        "b.ts": `import type { C } from "./c.js";\nexport interface B { c: C }\n`,
        "c.ts": `import { type A } from "./a.js";\nexport interface C { a?: A }\n`,
      },
      "a.ts",
    );
    expect(found).toEqual([
      "1: Import cycle: a.ts → b.ts → c.ts → a.ts (type-only and dynamic imports count: move the shared declarations to a file both can import)",
    ]);
  });

  it("finds one through a lazy import() and a re-export, and passes a graph without cycles", async () => {
    expect(await lint({ "d.ts": `export const load = () => import("./e.js");\n`, "e.ts": `export * from "./d.js";\n` }, "d.ts")).toHaveLength(1);
    expect(await lint({ "f.ts": `import { g } from "./g.js";\nexport const f = g;\n`, "g.ts": `export const g = 1;\n` }, "f.ts")).toEqual([]);
  });
});

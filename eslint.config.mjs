/**
 * ESLint: the architecture as a check (run by `npm run lint`, and so by `npm test`).
 *
 * The layer rules are not written here: tools/layers.mjs defines the layers once, and
 * tools/architecture.mjs turns them into import-x/no-restricted-paths zones (the README's picture
 * comes from the same file). Cycles are checked by sluice/no-cycle, which counts type-only
 * imports (see tools/eslint/no-cycle.mjs for why import-x/no-cycle is not enough). Formatting is
 * Prettier's (.prettierrc); nothing here checks layout.
 */
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import { createTypeScriptImportResolver } from "eslint-import-resolver-typescript";
import { importX } from "eslint-plugin-import-x";
import globals from "globals";
import tseslint from "typescript-eslint";
import { layerZoneConfigs } from "./tools/architecture.mjs";
import sluice from "./tools/eslint/no-cycle.mjs";

export default defineConfig(
  { ignores: ["dist/", "node_modules/", "deploy/", ".sluice/", "bench/out/", "tmp/"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    plugins: { "import-x": importX, sluice },
    settings: { "import-x/resolver-next": [createTypeScriptImportResolver({ project: "tsconfig.json" })] },
    rules: {
      // A type-only import says so (`import type`, or `type` inside the braces, as the code writes it):
      // it is erased from the JavaScript, so it can never load a module or start a load-order cycle.
      "@typescript-eslint/consistent-type-imports": ["error", { prefer: "type-imports", fixStyle: "inline-type-imports" }],
      // Keys left out of an object by destructuring are named `_key` (`const { read: _read, ...target } = doc`).
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      // Off: every finding was the code base's way of writing two effects of one condition,
      // `if (c) (a.push(x), b++)`, or of draining an iterator (`[...rows]`) — none was a slip.
      "@typescript-eslint/no-unused-expressions": "off",
      // A variable a closure reads before its one assignment (serve.ts's `apiUrl`, known once the
      // server listens) cannot become a const at that assignment.
      "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
    },
  },
  {
    files: ["test/**/*.ts"],
    rules: {
      // Tests read HTTP answers and JSON documents loosely and then assert their shape with
      // expect(); typing every response would restate the assertions.
      "@typescript-eslint/no-explicit-any": "off",
    },
  },
  {
    files: ["src/**/*.ts", "src/**/*.tsx"],
    rules: {
      "sluice/no-cycle": "error",
    },
  },
  ...layerZoneConfigs(),
);

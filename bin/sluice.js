#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/ (built by `npm install` through the prepare script).
import("../dist/cli/main.js")
  .then((m) => m.main(process.argv))
  .catch((err) => {
    console.error(`sluice: ${err && err.message ? err.message : err}`);
    process.exit(70);
  });

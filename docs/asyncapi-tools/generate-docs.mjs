// Renders an AsyncAPI document as one self-contained HTML page with the official AsyncAPI generator
// and HTML template, both pinned in package-lock.json and used from node_modules: nothing is
// fetched while generating, and the page loads no script, style or font from elsewhere.
import { createRequire } from "node:module";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const Generator = require("@asyncapi/generator");

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: node generate-docs.mjs <asyncapi.yaml> <output directory>");
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const template = path.join(here, "node_modules", "@asyncapi", "html-template");
await mkdir(output, { recursive: true });
const generator = new Generator(template, path.resolve(output), {
  templateParams: { singleFile: "true", outFilename: "index.html" },
  forceWrite: true,
  // The transpiled copy the template ships requires files by its build machine's absolute paths,
  // so the generator transpiles the template again here (most of the run's half minute).
  compile: true,
});
await generator.generateFromFile(path.resolve(input));
console.log(`${path.join(output, "index.html")}: AsyncAPI HTML documentation of ${input}`);

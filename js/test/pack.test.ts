/**
 * The published shape: `npm pack` (which builds through `prepack`/`prepare`) gives a tarball that a fresh
 * project installs (from npm's cache where it can, else the registry) and imports as an ES module with TypeScript types.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, existsSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { test } from "node:test";
import { JS_DIR, runNode, tempDir } from "./support.js";

const run = promisify(execFile);

test("npm pack, install into a fresh folder, import and type-check", async () => {
  // a copy of the package's sources, so the build that `npm pack` runs does not rewrite js/dist under the
  // other test files
  const source = tempDir("leap0-src-");
  for (const entry of [
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "tsconfig.build.json",
    "README.md",
    "src",
  ]) {
    cpSync(join(JS_DIR, entry), join(source, entry), { recursive: true });
  }
  symlinkSync(join(JS_DIR, "node_modules"), join(source, "node_modules"), "dir");
  const out = tempDir("leap0-pack-");
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", out], { cwd: source });
  const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  assert.ok(existsSync(join(source, "dist", "index.js")), "npm pack built the package (prepare)");
  const files = info!.files.map((f) => f.path).sort();
  assert.ok(files.includes("dist/index.js") && files.includes("dist/index.d.ts"), files.join(" "));
  assert.ok(files.includes("package.json"));
  assert.deepEqual(
    files.filter((f) => f.startsWith("src/") || f.startsWith("test/") || f.startsWith("build-test/")),
    [],
  );

  const project = tempDir("leap0-consumer-");
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "consumer", version: "1.0.0", type: "module", private: true }),
  );
  await run(
    "npm",
    ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", join(out, info!.filename)],
    {
      cwd: project,
    },
  );
  assert.ok(readdirSync(join(project, "node_modules", "leap0", "dist")).includes("index.js"));

  writeFileSync(
    join(project, "main.mjs"),
    `import { Leap0Client, Leap0Error, SandboxNotFoundError, VERSION } from "leap0";
console.log(typeof Leap0Client, new SandboxNotFoundError("x", "y") instanceof Leap0Error, VERSION);
`,
  );
  const result = await runNode([join(project, "main.mjs")], { cwd: project });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.trim(), "function true 0.1.0");

  // the declarations are found through the package's "exports" and check a typed use
  writeFileSync(
    join(project, "main.ts"),
    `import { Leap0Client, type Sandbox, type ProcessResult } from "leap0";
export async function run(client: Leap0Client): Promise<ProcessResult> {
  const sandbox: Sandbox = await client.sandboxes.create({ vcpu: 2, memory: 2048, envVars: { A: "1" } });
  return sandbox.process.execute("echo hi", { cwd: "/tmp", timeout: 5 });
}
`,
  );
  writeFileSync(
    join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: [],
      },
      files: ["main.ts"],
    }),
  );
  const tsc = join(JS_DIR, "node_modules", "typescript", "bin", "tsc");
  const typed = await runNode([tsc, "-p", join(project, "tsconfig.json")], { cwd: project });
  assert.equal(typed.code, 0, typed.stdout + typed.stderr);
});

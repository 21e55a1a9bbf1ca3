/** examples/sdk_quickstart.mjs runs as documented against the emulator (KUBECONFIG from the emulator). */

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  type ApiServer,
  newNamespace,
  REPO_DIR,
  runNode,
  standInOperator,
  startApiServer,
  tempDir,
} from "./support.js";

const EXAMPLE = join(REPO_DIR, "examples", "sdk_quickstart.mjs");
let api: ApiServer;
const home = tempDir();

before(async () => {
  api = await startApiServer();
});
after(async () => {
  await api.stop();
});

function run(namespace: string, ...args: string[]): ReturnType<typeof runNode> {
  return runNode([EXAMPLE, "--namespace", namespace, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: home, KUBECONFIG: api.kubeconfig },
  });
}

test("against the bare API", async () => {
  const result = await run(await newNamespace(api), "--no-wait");
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /created sandbox sbx-/);
  assert.match(result.stdout, /deleted sandbox sbx-/);
});

test("without anything running pods it says so", async () => {
  const ns = await newNamespace(api);
  const result = await run(ns, "--wait-timeout", "0.5");
  assert.equal(result.code, 1);
  assert.match(result.stderr, /not Running after 0\.5 s/);
  assert.match(result.stderr, /--no-wait/);
  assert.deepEqual(
    (
      await api.custom.listNamespacedCustomObject({
        group: "leap0.dev",
        version: "v1alpha1",
        namespace: ns,
        plural: "sandboxes",
      })
    ).items,
    [],
  );
});

test("the full path with pods running", async () => {
  const ns = await newNamespace(api);
  const operator = await standInOperator(api, ns);
  const result = await run(ns);
  operator.stop();
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /exit code 0, stdout: "hello from leap0\\nLinux"/);
  assert.match(result.stdout, /read back: written by the SDK/);
});

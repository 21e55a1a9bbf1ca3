/**
 * `sandbox.process` and `sandbox.filesystem` through the Kubernetes exec websocket: the embedded API server
 * answers exec with the kubelet's protocol and runs the command as a local process. Each test runs over
 * v5.channel.k8s.io (what the server picks) and over v4.channel.k8s.io (a proxy withholds v5 from the offer).
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  FilesystemError,
  Leap0Client,
  Leap0Error,
  ProcessError,
  ProcessTimeoutError,
  SandboxNotRunningError,
  SandboxTimeoutError,
  type Sandbox,
} from "leap0";
import {
  type ApiServer,
  kubeconfigWithServer,
  newNamespace,
  runningStatus,
  setSandboxStatus,
  startApiServer,
  tempDir,
  apiProxy,
  type Proxy,
} from "./support.js";

let api: ApiServer;
let proxy: Proxy;
const dir = tempDir();

before(async () => {
  api = await startApiServer();
  proxy = await apiProxy(api.url, { withholdV5: true });
});
after(async () => {
  await proxy.stop();
  await api.stop();
});

/** A Running sandbox with its pod, as the operator and kubelet would leave it. */
async function runningSandbox(protocol: "v5" | "v4"): Promise<Sandbox> {
  const ns = await newNamespace(api);
  const kubeconfig = protocol === "v5" ? undefined : kubeconfigWithServer(api, proxy.url, ns, dir);
  const sdk = new Leap0Client({ namespace: ns, kubeconfig: kubeconfig ?? api.kubeconfig, sdkOtelEnabled: false });
  const sandbox = await sdk.sandboxes.create({ wait: false });
  await api.core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name: sandbox.id }, spec: { containers: [{ name: "sandbox", image: "python:3.12-slim" }] } },
  });
  await setSandboxStatus(api, ns, sandbox.id, runningStatus(sandbox.id));
  return sandbox;
}

for (const protocol of ["v5", "v4"] as const) {
  describe(`process.execute over ${protocol}.channel.k8s.io`, () => {
    test("exit codes and stderr are results, not errors", async () => {
      const sandbox = await runningSandbox(protocol);
      assert.deepEqual(await sandbox.process.execute("echo hello"), { exitCode: 0, stdout: "hello\n", stderr: "" });
      assert.deepEqual(await sandbox.process.execute("echo out; echo err >&2; exit 3"), {
        exitCode: 3,
        stdout: "out\n",
        stderr: "err\n",
      });
      assert.deepEqual(await sandbox.process.execute(["printf", "%s|", "a b", "it's"]), {
        exitCode: 0,
        stdout: "a b|it's|",
        stderr: "",
      });
    });

    test("cwd and env need no quoting", async () => {
      const sandbox = await runningSandbox(protocol);
      await sandbox.process.execute("mkdir -p 'dir with space'");
      const result = await sandbox.process.execute('pwd; printf "%s\\n" "$GREETING" "$OTHER"', {
        cwd: "dir with space",
        env: { GREETING: 'it\'s $HOME `x` "q"', OTHER: "" },
      });
      assert.equal(result.exitCode, 0, result.stderr);
      const [pwd, greeting, other] = result.stdout.split("\n");
      assert.match(pwd!, /dir with space$/);
      assert.equal(greeting, 'it\'s $HOME `x` "q"');
      assert.equal(other, "");
      const missing = await sandbox.process.execute("pwd", { cwd: "/no/such/dir" });
      assert.equal(missing.exitCode, 1);
      await assert.rejects(sandbox.process.execute("true", { env: { "BAD-NAME": "x" } }), RangeError);
    });

    test("a command running past its timeout is stopped and rejects with ProcessTimeoutError", async () => {
      const sandbox = await runningSandbox(protocol);
      await assert.rejects(sandbox.process.execute("echo started; sleep 30", { timeout: 1 }), (err: unknown) => {
        assert.ok(
          err instanceof ProcessTimeoutError && err instanceof SandboxTimeoutError && err instanceof Leap0Error,
        );
        assert.equal(err.stdout, "started\n");
        return true;
      });
      assert.deepEqual(await sandbox.process.execute("exit 124", { timeout: 10 }), {
        exitCode: 124,
        stdout: "",
        stderr: "",
      });
    });

    test("a command that cannot start is a ProcessError", async () => {
      const sandbox = await runningSandbox(protocol);
      await assert.rejects(sandbox.process.execute(["/no/such/binary"]), (err: unknown) => {
        assert.ok(err instanceof ProcessError);
        assert.match(err.message, /executable file not found|no such file/i);
        return true;
      });
    });
  });

  describe(`filesystem over ${protocol}.channel.k8s.io`, () => {
    test("round trip of text and binary data, parents created", async () => {
      const sandbox = await runningSandbox(protocol);
      const binary = Buffer.from(Array.from({ length: 256 * 3 + 70000 }, (_, i) => (i * 7) % 256));
      await sandbox.filesystem.write("a/b/data.bin", binary);
      const back = await sandbox.filesystem.read("a/b/data.bin");
      assert.ok(Buffer.isBuffer(back));
      assert.ok(back.equals(binary));
      await sandbox.filesystem.write("note.txt", "héllo\n");
      assert.equal(await sandbox.filesystem.readText("note.txt"), "héllo\n");
      await sandbox.filesystem.write("empty", new Uint8Array());
      assert.equal((await sandbox.filesystem.read("empty")).length, 0);
      await sandbox.filesystem.writeFile({ path: "hosted.txt", content: "x" });
      assert.equal(await sandbox.filesystem.readFile({ path: "hosted.txt" }), "x");
      assert.equal((await sandbox.process.execute("cat a/b/data.bin | wc -c")).stdout.trim(), String(binary.length));
      if (protocol === "v4") {
        assert.ok(proxy.chosen.length >= 10);
        assert.deepEqual(new Set(proxy.chosen), new Set(["v4.channel.k8s.io"]));
      }
    });

    test("a missing file is a FilesystemError with the command's stderr", async () => {
      const sandbox = await runningSandbox(protocol);
      await assert.rejects(sandbox.filesystem.read("nope.txt"), (err: unknown) => {
        assert.ok(err instanceof FilesystemError && err instanceof Leap0Error);
        assert.equal(err.path, "nope.txt");
        assert.equal(err.exitCode, 1);
        assert.match(err.stderr, /No such file/);
        return true;
      });
    });
  });
}

test("tool calls on a sandbox without a running pod reject with SandboxNotRunningError", async () => {
  const ns = await newNamespace(api);
  const sdk = new Leap0Client({ namespace: ns, kubeconfig: api.kubeconfig, sdkOtelEnabled: false });
  const sandbox = await sdk.sandboxes.create({ wait: false });
  await assert.rejects(sandbox.process.execute("true"), SandboxNotRunningError);
  await setSandboxStatus(api, ns, sandbox.id, { phase: "Failed", reason: "ImagePullError" });
  await assert.rejects(sandbox.filesystem.read("x"), /no running pod \(phase Failed, ImagePullError\)/);
});

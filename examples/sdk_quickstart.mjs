// Quickstart of the leap0 JavaScript SDK (the same steps as examples/sdk_quickstart.py).
//
// Against the local emulator:
//
//     leap0 dev apiserver --port 6443 --kubeconfig kubeconfig.yaml &     # the Kubernetes API, in memory
//     export KUBECONFIG=$PWD/kubeconfig.yaml
//     (cd js && npm ci)                                                    # builds the package
//     node examples/sdk_quickstart.mjs --no-wait                           # API only: nothing starts pods
//
// With something that runs sandboxes (`leap0 dev up`, or a real cluster with the operator installed), drop
// --no-wait: the script then waits for the sandbox to be Running and runs a command and a file round trip in
// it. Set OTEL_EXPORTER_OTLP_ENDPOINT to also get the SDK's own spans and metrics, and --otel-export to
// forward the sandbox's telemetry there. In a project of your own, `npm install <path to js/>` and import
// from "leap0"; this file imports the built package from the checkout.

import { parseArgs } from "node:util";
import {
  Leap0Client,
  Leap0Error,
  SandboxTimeoutError,
} from "../js/dist/index.js";

const { values: args } = parseArgs({
  options: {
    namespace: { type: "string" },
    "no-wait": { type: "boolean", default: false },
    "otel-export": { type: "boolean", default: false },
    "wait-timeout": { type: "string", default: "120" },
  },
});

async function main() {
  const client = new Leap0Client({ namespace: args.namespace });
  try {
    console.log(`namespace: ${client.namespace}`);
    let sandbox;
    try {
      sandbox = await client.sandboxes.create({
        vcpu: 1,
        memory: 1024,
        timeout: 300,
        envVars: { GREETING: "hello from leap0" },
        otelExport: args["otel-export"],
        wait: !args["no-wait"],
        waitTimeout: Number(args["wait-timeout"]),
      });
    } catch (err) {
      if (err instanceof SandboxTimeoutError) {
        console.error(
          `error: ${err.message} (is an operator running? try --no-wait)`,
        );
        if (err.sandboxId) await client.sandboxes.delete(err.sandboxId);
        return 1;
      }
      if (err instanceof Leap0Error) {
        console.error(`error: ${err.message}`);
        return 1;
      }
      throw err;
    }
    try {
      console.log(
        `created sandbox ${sandbox.id} (phase: ${sandbox.phase ?? "Pending"})`,
      );
      console.log(
        "sandboxes here:",
        (await client.sandboxes.list()).map((s) => s.id).join(", "),
      );
      if (!args["no-wait"]) {
        const result = await sandbox.process.execute(
          "echo hello from leap0; uname -s",
        );
        console.log(
          `exit code ${result.exitCode}, stdout: ${JSON.stringify(result.stdout.trim())}`,
        );
        await sandbox.filesystem.write("hello.txt", "written by the SDK\n");
        console.log(
          "read back:",
          (await sandbox.filesystem.readText("hello.txt")).trim(),
        );
      }
    } catch (err) {
      if (!(err instanceof Leap0Error)) throw err;
      console.error(`error: ${err.message}`);
      return 1;
    } finally {
      await sandbox.delete();
      console.log(`deleted sandbox ${sandbox.id}`);
    }
    return 0;
  } finally {
    await client.close();
  }
}

process.exitCode = await main();

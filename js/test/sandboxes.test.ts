/** `client.sandboxes` against the embedded API server, with the operator played by the test. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import {
  ApiError,
  ApiUnreachableError,
  ConfigurationError,
  Leap0Client,
  Leap0Error,
  SandboxFailedError,
  SandboxNotFoundError,
  SandboxTimeoutError,
  SandboxValidationError,
} from "leap0";
import {
  apiProxy,
  type ApiServer,
  failedStatus,
  getSandbox,
  kubeconfigFor,
  kubeconfigWithServer,
  newNamespace,
  pendingStatus,
  runningStatus,
  setSandboxStatus,
  standInOperator,
  startApiServer,
  tempDir,
  waitFor,
} from "./support.js";

let api: ApiServer;
const dir = tempDir();

before(async () => {
  api = await startApiServer();
});
after(async () => {
  await api.stop();
});

async function client(namespace: string): Promise<Leap0Client> {
  return new Leap0Client({ namespace, kubeconfig: api.kubeconfig, sdkOtelEnabled: false });
}

function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  return fn().finally(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

describe("create, get, list, delete", () => {
  test("create without wait, then get, list and delete", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    const sandbox = await sdk.sandboxes.create({
      vcpu: 2,
      memory: 2048,
      timeout: 30,
      wait: false,
      labels: { team: "a" },
    });
    assert.match(sandbox.id, /^sbx-[a-z0-9]{10}$/);
    assert.equal(sandbox.namespace, ns);
    assert.deepEqual([sandbox.vcpu, sandbox.memory, sandbox.timeout], [2, 2048, 30]);
    assert.deepEqual(sandbox.labels, { team: "a" });
    const got = await sdk.sandboxes.get(sandbox.id);
    assert.equal(got.uid, sandbox.uid);
    assert.deepEqual(
      (await sdk.sandboxes.list()).map((s) => s.id),
      [sandbox.id],
    );
    assert.deepEqual(await sdk.sandboxes.list("team=b"), []);
    await sdk.sandboxes.delete(sandbox);
    await assert.rejects(sdk.sandboxes.get(sandbox.id), SandboxNotFoundError);
    await assert.rejects(sdk.sandboxes.delete(sandbox.id), (err: unknown) => {
      assert.ok(err instanceof SandboxNotFoundError && err instanceof ApiError && err instanceof Leap0Error);
      assert.equal(err.sandboxId, sandbox.id);
      assert.equal(err.status, 404);
      return true;
    });
    await sdk.close();
  });

  test("values left out are not sent, so the template's apply", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    const sandbox = await sdk.sandboxes.create({ wait: false });
    assert.deepEqual((await getSandbox(api, ns, sandbox.id)).spec, {});
    assert.equal(sandbox.vcpu, undefined);
  });

  test("the hosted SDK's spellings and env as an object or an EnvVar list", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    const a = await sdk.sandboxes.create({
      templateName: "default",
      memoryMib: 1024,
      timeoutMin: 2,
      envVars: { A: "1" },
      command: ["sleep"],
      args: ["60"],
      image: "python:3.12-slim",
      wait: false,
    });
    assert.deepEqual((await getSandbox(api, ns, a.id)).spec, {
      template: "default",
      memory: 1024,
      timeout: 120,
      env: [{ name: "A", value: "1" }],
      command: ["sleep"],
      args: ["60"],
      image: "python:3.12-slim",
    });
    const b = await sdk.sandboxes.create({
      envVars: [{ name: "S", valueFrom: { secretKeyRef: { name: "s", key: "k" } } }],
      telemetrySidecar: false,
      wait: false,
    });
    assert.deepEqual((await getSandbox(api, ns, b.id)).spec, {
      env: [{ name: "S", valueFrom: { secretKeyRef: { name: "s", key: "k" } } }],
      telemetry: { enabled: false },
    });
    await assert.rejects(sdk.sandboxes.create({ memory: 1024, memoryMib: 2048, wait: false }), TypeError);
    await assert.rejects(sdk.sandboxes.create({ otelExport: true, telemetry: false, wait: false }), TypeError);
    assert.equal((await sdk.sandboxes.list()).length, 2);
  });

  test("refresh and setTimeout", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    const sandbox = await sdk.sandboxes.create({ timeout: 60, wait: false });
    await setSandboxStatus(api, ns, sandbox.id, {
      phase: "Pending",
      reason: "PodCreated",
      expiresAt: "2030-01-01T00:00:00Z",
    });
    assert.equal(sandbox.phase, undefined);
    assert.equal(await sandbox.refresh(), sandbox);
    assert.deepEqual(
      [sandbox.phase, sandbox.reason, sandbox.expiresAt],
      ["Pending", "PodCreated", "2030-01-01T00:00:00Z"],
    );
    await sandbox.setTimeout(600);
    assert.equal(sandbox.timeout, 600);
    assert.equal((await getSandbox(api, ns, sandbox.id)).spec.timeout, 600);
    await assert.rejects(sandbox.setTimeout(0), SandboxValidationError);
  });

  test("a 422 comes back as SandboxValidationError with the API server's message; nothing is created", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    await assert.rejects(sdk.sandboxes.create({ vcpu: 9, wait: false }), (err: unknown) => {
      assert.ok(err instanceof SandboxValidationError && err instanceof Leap0Error);
      assert.match(err.message, /spec\.vcpu/);
      assert.equal(err.status, 422);
      return true;
    });
    await assert.rejects(sdk.sandboxes.create({ memory: 1023, wait: false }), /spec\.memory/);
    assert.deepEqual(await sdk.sandboxes.list(), []);
  });

  test("any other API error is an ApiError with the status (a name already taken: 409)", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    await sdk.sandboxes.create({ name: "taken", wait: false });
    await assert.rejects(sdk.sandboxes.create({ name: "taken", wait: false }), (err: unknown) => {
      assert.ok(err instanceof ApiError && err instanceof Leap0Error);
      assert.ok(!(err instanceof SandboxValidationError) && !(err instanceof SandboxNotFoundError));
      assert.equal(err.status, 409);
      assert.equal(err.reason, "AlreadyExists");
      assert.match(err.message, /taken/);
      return true;
    });
  });

  test("a closed client refuses calls; close is idempotent", async () => {
    const sdk = await client(await newNamespace(api));
    await sdk.close();
    await sdk.close();
    await assert.rejects(
      sdk.sandboxes.list(),
      (err: unknown) => err instanceof Leap0Error && /closed/.test(err.message),
    );
  });
});

describe("waiting for Running", () => {
  test("create waits by watching: one create and one watch, not a poll loop", async () => {
    const ns = await newNamespace(api);
    // the SDK's own requests, recorded by a proxy; the stand-in operator answers after a second
    const proxy = await apiProxy(api.url);
    const sdk = new Leap0Client({
      namespace: ns,
      kubeconfig: kubeconfigWithServer(api, proxy.url, ns, dir),
      sdkOtelEnabled: false,
    });
    const operator = await standInOperator(api, ns, runningStatus, 1000);
    const before = await api.requests();
    const sandbox = await sdk.sandboxes.create({ vcpu: 1 });
    const used = (await api.requests()) - before;
    operator.stop();
    await proxy.stop();
    assert.equal(sandbox.phase, "Running");
    assert.equal(sandbox.podName, sandbox.id);
    const base = `/apis/leap0.dev/v1alpha1/namespaces/${ns}/sandboxes`;
    assert.equal(proxy.requests.length, 2, proxy.requests.join("\n"));
    assert.equal(proxy.requests[0], `POST ${base}`);
    const watch = new URL(proxy.requests[1]!.slice("GET ".length), "http://x");
    assert.equal(watch.pathname, base);
    assert.equal(watch.searchParams.get("watch"), "true");
    assert.equal(watch.searchParams.get("fieldSelector"), `metadata.name=${sandbox.id}`);
    assert.ok(watch.searchParams.get("resourceVersion"), "watches from the create's resourceVersion");
    // the server agrees: the SDK's two, the stand-in's pod create and status patch, the stats read
    assert.ok(used <= 6, `${used} requests while waiting`);
  });

  test("a Failed sandbox rejects with the operator's reason", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    const operator = await standInOperator(api, ns, () => failedStatus("ImagePullError", "pull access denied"));
    await assert.rejects(sdk.sandboxes.create({ image: "nope:latest" }), (err: unknown) => {
      assert.ok(err instanceof SandboxFailedError && err instanceof Leap0Error);
      assert.equal(err.phase, "Failed");
      assert.equal(err.reason, "ImagePullError");
      assert.match(err.message, /ImagePullError: pull access denied/);
      return true;
    });
    operator.stop();
  });

  test("the wait timeout rejects with SandboxTimeoutError and keeps the sandbox", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    await assert.rejects(sdk.sandboxes.create({ waitTimeout: 1 }), (err: unknown) => {
      assert.ok(err instanceof SandboxTimeoutError && err instanceof Leap0Error);
      assert.match(err.message, /not Running after 1 s/);
      assert.match(err.sandboxId ?? "", /^sbx-/);
      return true;
    });
    assert.equal((await sdk.sandboxes.list()).length, 1);
  });

  test("a start that waits (Unschedulable, CreateContainerConfigError) is waited for until Running", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    const operator = await standInOperator(api, ns, (name) => {
      void setSandboxStatus(api, ns, name, pendingStatus("Unschedulable", "0/3 nodes are available."))
        .then(() => setSandboxStatus(api, ns, name, pendingStatus("CreateContainerConfigError", "no secret")))
        .then(() => setSandboxStatus(api, ns, name, runningStatus(name)));
      return undefined;
    });
    assert.equal((await sdk.sandboxes.create({ waitTimeout: 30 })).phase, "Running");
    operator.stop();
  });

  test("a start that keeps waiting rejects at the wait timeout with its phase and reason", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    const operator = await standInOperator(api, ns, () => pendingStatus("Unschedulable", "0/3 nodes."), 0);
    await assert.rejects(sdk.sandboxes.create({ waitTimeout: 3 }), (err: unknown) => {
      assert.ok(err instanceof SandboxTimeoutError);
      assert.match(err.message, /not Running after 3 s \(phase Pending, Unschedulable\)/);
      assert.equal(err.phase, "Pending");
      assert.equal(err.reason, "Unschedulable");
      return true;
    });
    operator.stop();
  });

  test("a sandbox deleted while waiting rejects with SandboxNotFoundError", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    const operator = await standInOperator(api, ns, (name) => {
      void sdk.sandboxes.delete(name);
      return undefined;
    });
    await assert.rejects(sdk.sandboxes.create({ waitTimeout: 30 }), (err: unknown) => {
      assert.ok(err instanceof SandboxNotFoundError);
      assert.match(err.message, /deleted while starting/);
      return true;
    });
    operator.stop();
  });
});

describe("otelExport", () => {
  test("headers go into a Secret owned by the Sandbox, never into its spec; GC deletes the Secret", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    await withEnv(
      { OTEL_EXPORTER_OTLP_ENDPOINT: "https://otel.example.com", OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=abc123secret" },
      async () => {
        const sandbox = await sdk.sandboxes.create({
          vcpu: 2,
          memory: 2048,
          timeout: 30,
          otelExport: true,
          wait: false,
        });
        const raw = await getSandbox(api, ns, sandbox.id);
        assert.ok(!JSON.stringify(raw).includes("abc123secret"));
        const secretName = `${sandbox.id}-otlp`;
        assert.deepEqual(raw.spec.env, [
          { name: "OTEL_EXPORTER_OTLP_ENDPOINT", value: "https://otel.example.com" },
          {
            name: "OTEL_EXPORTER_OTLP_HEADERS",
            valueFrom: { secretKeyRef: { name: secretName, key: "OTEL_EXPORTER_OTLP_HEADERS" } },
          },
        ]);
        const secret = await api.core.readNamespacedSecret({ name: secretName, namespace: ns });
        assert.equal(
          Buffer.from(secret.data!.OTEL_EXPORTER_OTLP_HEADERS!, "base64").toString(),
          "x-api-key=abc123secret",
        );
        assert.deepEqual(secret.metadata!.labels, {
          "leap0.dev/sandbox-id": sandbox.id,
          "app.kubernetes.io/managed-by": "leap0-sdk",
        });
        const [owner] = secret.metadata!.ownerReferences!;
        assert.deepEqual([owner!.kind, owner!.name, owner!.uid], ["Sandbox", sandbox.id, sandbox.uid]);

        await sandbox.delete();
        await waitFor(
          () =>
            api.core.readNamespacedSecret({ name: secretName, namespace: ns }).then(
              () => false,
              (e: { code?: number }) => e.code === 404,
            ),
          "garbage collection of the Secret",
        );
      },
    );
  });

  test("without headers there is no Secret, and the user's envVars win on equal names", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    await withEnv(
      { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", OTEL_EXPORTER_OTLP_HEADERS: undefined },
      async () => {
        const sandbox = await sdk.sandboxes.create({ otelExport: true, envVars: { APP: "x" }, wait: false });
        assert.deepEqual((await getSandbox(api, ns, sandbox.id)).spec.env, [
          { name: "OTEL_EXPORTER_OTLP_ENDPOINT", value: "http://collector:4318" },
          { name: "APP", value: "x" },
        ]);
        const mine = await sdk.sandboxes.create({
          telemetry: true,
          envVars: { OTEL_EXPORTER_OTLP_ENDPOINT: "http://mine:4318" },
          wait: false,
        });
        assert.deepEqual((await getSandbox(api, ns, mine.id)).spec.env, [
          { name: "OTEL_EXPORTER_OTLP_ENDPOINT", value: "http://mine:4318" },
        ]);
        assert.deepEqual((await api.core.listNamespacedSecret({ namespace: ns })).items, []);
      },
    );
  });

  test("without a local endpoint it fails before creating anything", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    await withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: undefined, OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=abc" }, async () => {
      await assert.rejects(sdk.sandboxes.create({ otelExport: true }), (err: unknown) => {
        assert.ok(err instanceof ConfigurationError && err instanceof Leap0Error);
        assert.match(err.message, /OTEL_EXPORTER_OTLP_ENDPOINT/);
        return true;
      });
    });
    assert.deepEqual(await sdk.sandboxes.list(), []);
    assert.deepEqual((await api.core.listNamespacedSecret({ namespace: ns })).items, []);
  });

  test("a failed Sandbox create removes the Secret it made first", async () => {
    const ns = await newNamespace(api);
    const sdk = await client(ns);
    await withEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_EXPORTER_OTLP_HEADERS: "k=v" }, async () => {
      await assert.rejects(sdk.sandboxes.create({ otelExport: true, vcpu: 99, wait: false }), SandboxValidationError);
    });
    assert.deepEqual((await api.core.listNamespacedSecret({ namespace: ns })).items, []);
  });
});

describe("configuration", () => {
  test("the namespace comes from the kubeconfig context; KUBECONFIG may list several files", async () => {
    const ns = await newNamespace(api);
    const path = kubeconfigFor(api, ns, dir);
    const empty = join(dir, "empty-kubeconfig");
    writeFileSync(empty, "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n");
    await withEnv({ KUBECONFIG: `${path}:${empty}` }, async () => {
      const sdk = new Leap0Client({ sdkOtelEnabled: false });
      assert.equal(sdk.namespace, ns);
      assert.equal(sdk.host, api.url);
      await sdk.sandboxes.create({ wait: false });
      assert.equal((await sdk.sandboxes.list()).length, 1);
      assert.equal(new Leap0Client({ namespace: "other", sdkOtelEnabled: false }).namespace, "other");
    });
  });

  test("no configuration at all is a ConfigurationError saying what to do", async () => {
    await withEnv({ KUBECONFIG: undefined, HOME: dir, KUBERNETES_SERVICE_HOST: undefined }, async () => {
      assert.throws(
        () => new Leap0Client({ sdkOtelEnabled: false }),
        (err: unknown) =>
          err instanceof ConfigurationError &&
          /KUBECONFIG/.test(err.message) &&
          /leap0 dev apiserver/.test(err.message),
      );
    });
    assert.throws(() => new Leap0Client({ kubeconfig: join(dir, "missing") }), ConfigurationError);
  });

  test("an API server that does not answer is an ApiUnreachableError, not the HTTP library's error", async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port)); // a port nobody listens on any more
      });
    });
    const sdk = new Leap0Client({
      kubeconfig: kubeconfigWithServer(api, `http://127.0.0.1:${port}`, "nowhere", dir),
      sdkOtelEnabled: false,
    });
    const calls: [string, () => Promise<unknown>][] = [
      ["get", () => sdk.sandboxes.get("x")],
      ["list", () => sdk.sandboxes.list()],
      ["create", () => sdk.sandboxes.create({ wait: false })],
      ["delete", () => sdk.sandboxes.delete("x")],
      ["setTimeout", () => sdk.sandboxes.setTimeout("x", 60)],
    ];
    for (const [name, call] of calls) {
      await assert.rejects(call, (err: unknown) => {
        assert.ok(err instanceof ApiUnreachableError, `${name}: ${String(err)}`);
        assert.ok(err instanceof Leap0Error);
        assert.equal(err.status, undefined);
        assert.match(err.message, new RegExp(`^cannot reach the Kubernetes API server \\(.*127\\.0\\.0\\.1:${port}`));
        return true;
      });
    }
    await sdk.close();
  });
});

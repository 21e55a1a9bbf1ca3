/**
 * Finding and loading the cluster's configuration: the kubeconfig given, else `$KUBECONFIG` (a list of files,
 * merged), else `~/.kube/config`, else the in-cluster service account; nothing found is a ConfigurationError.
 * Loading and merging are `@kubernetes/client-node`'s own.
 */

import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { ConfigurationError } from "./errors.js";

export const DEFAULT_NAMESPACE = "default";

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Which kubeconfig to load: the option, else `$KUBECONFIG`, else `~/.kube/config` if it exists. */
export function kubeconfigPath(
  explicit: string | undefined,
  env: Record<string, string | undefined>,
): string | undefined {
  if (explicit !== undefined) return explicit;
  const fromEnv = (env.KUBECONFIG ?? "").trim();
  if (fromEnv) return fromEnv;
  const home = join(env.HOME || homedir(), ".kube", "config");
  return isFile(home) ? home : undefined;
}

/** The namespace the client works in: the option, else the context's (or the pod's), else `default`. */
export function resolveNamespace(explicit: string | undefined, configured: string | undefined): string {
  for (const candidate of [explicit, configured]) {
    if (candidate && candidate.trim()) return candidate.trim();
  }
  return DEFAULT_NAMESPACE;
}

/**
 * A plain `http://` server (such as `leap0 dev apiserver`) is used as kubectl and the Python client use it;
 * `@kubernetes/client-node` only accepts one marked `insecure-skip-tls-verify` (there is no TLS to verify).
 */
export function allowPlainHttp(kc: KubeConfig): void {
  kc.clusters = kc.clusters.map((cluster) =>
    cluster.server.startsWith("http:") && !cluster.skipTLSVerify ? { ...cluster, skipTLSVerify: true } : cluster,
  );
}

/** A KubeConfig and the namespace its current context names (if any). */
export function loadKubeConfig(
  explicit: string | undefined,
  env: Record<string, string | undefined>,
): { kubeConfig: KubeConfig; namespace: string | undefined } {
  const kc = new KubeConfig();
  const path = kubeconfigPath(explicit, env);
  if (path !== undefined) {
    const files = path.split(delimiter).filter((f) => f);
    if (explicit !== undefined) {
      for (const file of files) {
        if (!existsSync(file)) throw new ConfigurationError(`kubeconfig file '${file}' does not exist`);
      }
    }
    try {
      kc.loadFromFile(files[0] ?? path);
      for (const file of files.slice(1)) {
        const other = new KubeConfig();
        other.loadFromFile(file);
        kc.mergeConfig(other, true);
      }
    } catch (err) {
      throw new ConfigurationError(`cannot load kubeconfig '${path}': ${(err as Error).message}`, { cause: err });
    }
    if (!kc.getCurrentCluster()) {
      throw new ConfigurationError(`cannot load kubeconfig '${path}': its current context names no cluster`);
    }
    allowPlainHttp(kc);
    return { kubeConfig: kc, namespace: kc.getContextObject(kc.getCurrentContext())?.namespace };
  }
  if (env.KUBERNETES_SERVICE_HOST) {
    try {
      kc.loadFromCluster();
    } catch (err) {
      throw new ConfigurationError(`cannot load the in-cluster configuration: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return { kubeConfig: kc, namespace: kc.getContextObject(kc.getCurrentContext())?.namespace };
  }
  throw new ConfigurationError(
    "no Kubernetes configuration found: pass { kubeconfig }, set KUBECONFIG, create ~/.kube/config, " +
      "or run inside a cluster (for a local try: `leap0 dev apiserver --kubeconfig FILE`)",
  );
}

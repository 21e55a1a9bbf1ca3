"""Finding and loading the cluster's configuration: kubeconfig file, else in-cluster service account.

The ``kubernetes`` client reads ``KUBECONFIG`` once, at import; this module reads it when a client is made,
and always loads into an explicit ``Configuration`` (never the library's global default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from leap0.exceptions import ConfigurationError


def api_call_errors() -> tuple[type[BaseException], ...]:
    """What a call of the kubernetes client raises: an answer with an error status (``ApiException``), or no
    answer at all (urllib3's errors: a connection refused, reset or timed out, after its retries)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError)


IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "default"


def kubeconfig_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> str | None:
    """Which kubeconfig to load: the argument, else ``$KUBECONFIG``, else ``~/.kube/config`` if it exists."""
    if explicit is not None:
        return os.fspath(explicit)
    from_env = env.get("KUBECONFIG", "").strip()
    if from_env:
        return from_env
    home = Path(env.get("HOME") or Path.home()) / ".kube" / "config"
    return str(home) if home.is_file() else None


def resolve_namespace(explicit: str | None, configured: str | None) -> str:
    """The namespace the client works in: the argument, else the context's / pod's, else default."""
    for candidate in (explicit, configured):
        if candidate and candidate.strip():
            return candidate.strip()
    return DEFAULT_NAMESPACE


def load_configuration(
    kubeconfig: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> tuple[Any, str | None]:
    """(a kubernetes ``Configuration``, the namespace the config names or None)."""
    import kubernetes.client
    import kubernetes.config
    import yaml
    from kubernetes.config.config_exception import ConfigException

    k8s: Any = kubernetes.client
    k8s_config: Any = kubernetes.config

    configuration = k8s.Configuration()
    path = kubeconfig_path(kubeconfig, env)
    if path is not None:
        for single in path.split(os.pathsep):
            if single and not Path(single).expanduser().exists() and kubeconfig is not None:
                raise ConfigurationError(f"kubeconfig file {single!r} does not exist")
        try:
            k8s_config.load_kube_config(
                config_file=path, client_configuration=configuration, persist_config=False
            )
            _, current = k8s_config.list_kube_config_contexts(config_file=path)
        except (ConfigException, OSError, ValueError, TypeError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot load kubeconfig {path!r}: {exc}") from exc
        namespace = ((current or {}).get("context") or {}).get("namespace")
        return configuration, namespace
    if env.get("KUBERNETES_SERVICE_HOST"):
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ConfigurationError(f"cannot load the in-cluster configuration: {exc}") from exc
        try:
            pod_namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or None
        except OSError:
            pod_namespace = None
        return configuration, pod_namespace
    raise ConfigurationError(
        "no Kubernetes configuration found: pass kubeconfig=..., set KUBECONFIG, create ~/.kube/config, "
        "or run inside a cluster (for a local try: `leap0 dev apiserver --kubeconfig FILE`)"
    )

"""Inside a pod: with no kubeconfig, the client uses the pod's service account and the pod's namespace.

The service-account files live at fixed paths in a pod; the test points the ``kubernetes`` library and the SDK
at a fake service-account directory instead (both read those module-level paths when a client is made).
"""

from __future__ import annotations

import os
from pathlib import Path

import kubernetes.config.incluster_config as incluster
import pytest

import leap0._kube
from leap0 import Leap0Client
from leap0._kube import load_configuration


@pytest.fixture
def service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("pod-token")  # as the kubelet writes it: no newline
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    (sa / "namespace").write_text("team-pod\n")
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
    monkeypatch.setattr(leap0._kube, "IN_CLUSTER_NAMESPACE_FILE", sa / "namespace")
    home = tmp_path / "home"  # no ~/.kube/config there
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    return sa


def test_in_cluster_config_uses_the_service_account_and_the_pods_namespace(service_account: Path) -> None:
    cfg, namespace = load_configuration(None, dict(os.environ))
    assert cfg.host == "https://10.96.0.1:443"
    assert cfg.api_key["BearerToken"] == "bearer pod-token"
    assert cfg.ssl_ca_cert == str(service_account / "ca.crt")
    assert namespace == "team-pod"

    with Leap0Client(sdk_otel_enabled=False) as client:
        assert client.namespace == "team-pod"
        assert "https://10.96.0.1:443" in repr(client)
    with Leap0Client(namespace="explicit", sdk_otel_enabled=False) as client:
        assert client.namespace == "explicit"  # the argument still wins


def test_in_cluster_without_a_namespace_file_uses_default(service_account: Path) -> None:
    (service_account / "namespace").unlink()
    with Leap0Client(sdk_otel_enabled=False) as client:
        assert client.namespace == "default"

"""Only kube-apiserver reaches the kubelet endpoint, and only leap0-kubelet the runner's local endpoint.

A pod's exec endpoint runs commands in its containers: anyone who could call it directly would bypass the API
server's authentication, RBAC (``pods/exec``) and audit. Each way in is tried and refused.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request

import pytest

from leap0_dev.controlplane import ControlPlane
from leap0_dev.controlplane.node import LocalNode

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

EXEC_PATH = "/exec/default/any-pod/sandbox?command=id&output=1"


def _context(plane: ControlPlane, client_cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(plane.layout.cert("ca")))  # the kubelet's serving CA
    if client_cert is not None:
        context.load_cert_chain(plane.layout.cert(client_cert), plane.layout.key(client_cert))
    return context


def _get(port: int, context: ssl.SSLContext, path: str = EXEC_PATH) -> tuple[int, str]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_the_kubelet_endpoint_takes_only_kube_apiservers_client_certificate(
    control_plane: ControlPlane, kubelet_node: LocalNode
) -> None:
    assert kubelet_node.kubelet is not None
    port = kubelet_node.kubelet.port
    # Its serving certificate is the one kube-apiserver verifies (--kubelet-certificate-authority).
    assert _get(port, _context(control_plane, "apiserver-kubelet-client"), "/healthz") == (200, "ok")
    # No client certificate: the TLS handshake fails.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(port, _context(control_plane, None))
    # A certificate of the same CA, even the cluster admin's (system:masters): refused, naming the user.
    status, body = _get(port, _context(control_plane, "admin"))
    assert status == 403
    assert "kubernetes-admin" in body


def test_the_runners_local_endpoint_wants_leap0_kubelets_token(kubelet_node: LocalNode) -> None:
    assert kubelet_node.kubelet is not None
    url = kubelet_node.kubelet.endpoint.url + "/containerLogs/default/any-pod/sandbox"
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic eDp5"}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30)
        assert refused.value.code == 401
    token = kubelet_node.kubelet.endpoint.token
    with pytest.raises(urllib.error.HTTPError) as missing:  # with it: past the check, to "no such pod"
        urllib.request.urlopen(
            urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=30
        )
    assert missing.value.code == 404
    assert kubelet_node.kubelet.endpoint.url.startswith("http://127.0.0.1:")

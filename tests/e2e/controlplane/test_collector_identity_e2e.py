"""The sidecar's verifiable identity, end to end (docs/security.md, "Identity towards the platform's
collector"): a ServiceAccount token of the sidecar's audience issued by the real kube-apiserver, the real
sidecar process sending it, and the OpenTelemetry Collector (built by its builder: `leap0 dev collector
build`) running the configuration docs/security.md gives, which verifies it against the API server's issuer
(OIDC discovery and JWKS, over TLS, anonymously). Without a token, with one of another audience, expired or
forged, a request is refused; the sidecar's is accepted and reaches the backend with the subject the API
server vouched for, whatever the payload claimed."""

from __future__ import annotations

import copy
import http.client
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from collector_support import (
    ClusterNames,
    collector_process,
    documented_config,
    es256_jwt,
    jwt_parts,
    load_ec_key,
)
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from sidecar_support import (
    IDENTITY_ENV,
    PROTOBUF,
    SidecarProcess,
    Upstream,
    free_port,
    post,
    resource_attributes,
)
from support import REPO, kubectl, subprocess_env, wait_for

import leap0_contract as contract
from leap0_dev.controlplane import ControlPlane
from leap0_dev.controlplane.plan import SERVICE_ACCOUNT_ISSUER

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]

AUDIENCE = "leap0-telemetry"  # the operator's --telemetry-token-audience in docs/security.md's configuration
SUBJECT = contract.ATTR_AUTHENTICATED_SUBJECT
DISCOVERY = "oidc-discovery-for-anonymous"  # the ClusterRoleBinding docs/security.md tells admins to create


def spans(name: str, **resource: str) -> bytes:
    """An OTLP trace request of one span, its resource with ``resource``'s attributes."""
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=name)
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    for key, value in resource.items():
        request.resource_spans[0].resource.attributes.add(key=key).value.string_value = value
    return request.SerializeToString()


def send(port: int, body: bytes, authorization: str | None) -> int:
    """POST OTLP/HTTP traces straight to the Collector, as the app could: the status."""
    headers = dict(PROTOBUF)
    if authorization is not None:
        headers["authorization"] = authorization
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/traces", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def received(upstream: Upstream) -> dict[str, dict[str, str]]:
    """Each span the backend received, by name: its resource's attributes."""
    found: dict[str, dict[str, str]] = {}
    for message in upstream.messages("/v1/traces"):
        for resource_spans in message.resource_spans:
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    found[span.name] = resource_attributes(resource_spans.resource)
    return found


def collector_config(plane: ControlPlane, port: int, backend: str) -> dict[str, Any]:
    """docs/security.md's configuration; only the addresses differ: where it listens, the cluster's CA (in a
    pod, its ServiceAccount's ca.crt), the backend; and its own metrics are off (they take a fixed port)."""
    config = copy.deepcopy(documented_config())
    (provider,) = config["extensions"]["oidc"]["providers"]
    assert (provider["issuer_url"], provider["audience"]) == (SERVICE_ACCOUNT_ISSUER, AUDIENCE)
    provider["issuer_ca_path"] = str(plane.ca_file)
    config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = f"127.0.0.1:{port}"
    config["exporters"]["otlp_http"]["endpoint"] = backend
    config["service"]["telemetry"] = {"metrics": {"level": "none"}}
    return config


def test_the_collector_accepts_only_the_sidecars_token_and_attaches_its_subject(
    control_plane: ControlPlane, k8s_namespace: str, otel_collector: Path, tmp_path: Path
) -> None:
    plane, ns = control_plane, k8s_namespace

    def token(*args: str) -> str:
        return kubectl(plane.kubeconfig, "create", "token", "default", "-n", ns, *args).stdout.strip()

    valid = token(f"--audience={AUDIENCE}", "--duration=1h")
    header, claims = jwt_parts(valid)
    subject = f"system:serviceaccount:{ns}:default"
    assert (claims["iss"], claims["sub"], claims["aud"]) == (SERVICE_ACCOUNT_ISSUER, subject, [AUDIENCE])
    # Signed with the API server's own key, but expired; and valid claims signed with another key.
    past = {"iat": claims["iat"] - 7200, "nbf": claims["nbf"] - 7200, "exp": int(time.time()) - 600}
    expired = es256_jwt(header, {**claims, **past}, load_ec_key(plane.layout.sa_private.read_bytes()))
    forged = es256_jwt(header, claims, ec.generate_private_key(ec.SECP256R1()))
    attempts = {
        "no token": None,
        "not a token": "Bearer not.a.token",
        "the API server's own audience": f"Bearer {token('--duration=1h')}",
        "another audience": f"Bearer {token('--audience=someone-else', '--duration=1h')}",
        "expired": f"Bearer {expired}",
        "forged": f"Bearer {forged}",
    }

    upstream = Upstream()
    upstream.start()
    port = free_port()
    config = collector_config(plane, port, upstream.url)
    api_server = urllib.parse.urlparse(plane.url)
    issuer = f"{urllib.parse.urlparse(SERVICE_ACCOUNT_ISSUER).hostname}:443"
    sidecar: SidecarProcess | None = None
    try:
        with ClusterNames({issuer: (str(api_server.hostname), int(api_server.port or 443))}) as names:
            # A pod's view: the issuer's name leads to the API server (HTTPS_PROXY plays the cluster's DNS).
            env = {"HTTPS_PROXY": names.url, "NO_PROXY": ""}
            # Anonymous discovery is refused by default: the Collector does not start (it fails closed).
            with collector_process(otel_collector, config, tmp_path / "refused", **env) as collector:
                assert collector.wait(60) != 0
            log = (tmp_path / "refused" / "collector.log").read_text()
            assert f'failed to create OIDC provider for "{SERVICE_ACCOUNT_ISSUER}"' in log
            assert "403 Forbidden" in log
            assert names.tunnels == [issuer]  # it asked for the issuer by its name

            kubectl(plane.kubeconfig, "create", "clusterrolebinding", DISCOVERY,
                    "--clusterrole=system:service-account-issuer-discovery",
                    "--group=system:unauthenticated")  # fmt: skip
            with collector_process(otel_collector, config, tmp_path / "running", **env):
                wait_for(lambda: _status_or_none(port) == 401, timeout=60, what="the Collector listening")
                for what, authorization in attempts.items():
                    assert send(port, spans(what), authorization) == 401, what

                # The real sidecar, its token in a file as the kubelet projects it.
                (tmp_path / "token").write_text(valid)
                sidecar = SidecarProcess(
                    {**IDENTITY_ENV, "LEAP0_METRICS_INTERVAL": "3600",
                     "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                     "LEAP0_TELEMETRY_TOKEN_FILE": str(tmp_path / "token")},
                    tmp_path / "sidecar.log",
                ).start()  # fmt: skip
                assert (
                    post(sidecar, spans("from-the-sandbox", **{SUBJECT: "system:serviceaccount:victim:x"}))[0]
                    == 200
                )
                # the same token sent straight, claiming another tenant's subject in the payload
                claimed = spans("claimed", **{SUBJECT: "system:serviceaccount:victim:default"})
                assert send(port, claimed, f"Bearer {valid}") == 200
                got = wait_for(
                    lambda: (found := received(upstream)).keys() >= {"from-the-sandbox", "claimed"} and found,
                    timeout=60, what="the accepted spans at the backend",
                )  # fmt: skip
    finally:
        if sidecar is not None:
            sidecar.stop()
        upstream.stop()
        kubectl(plane.kubeconfig, "delete", "clusterrolebinding", DISCOVERY, "--ignore-not-found")

    assert set(got) == {"from-the-sandbox", "claimed"}  # nothing of the refused requests
    for name, attributes in got.items():
        assert attributes[SUBJECT] == subject, name
    assert (
        got["from-the-sandbox"]["leap0.sandbox.id"] == IDENTITY_ENV["LEAP0_SANDBOX_ID"]
    )  # the sidecar's stamp


def _status_or_none(port: int) -> int | None:
    try:
        return send(port, spans("probe"), None)
    except OSError:
        return None


def test_collector_build_prints_the_binary_built_outside_the_repository(otel_collector: Path) -> None:
    """`leap0 dev collector build` with the cache warm: one line, the Collector the tests run."""
    command = [sys.executable, "-m", "leap0.cli", "dev", "collector", "build"]
    result = subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(), timeout=120, check=True
    )
    (line,) = result.stdout.splitlines()
    assert Path(line) == otel_collector
    assert not otel_collector.is_relative_to(REPO)
    version = subprocess.run([line, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.split() == ["leap0-otelcol", "version", "0.165.0"]

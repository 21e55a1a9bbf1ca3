"""The platform's OpenTelemetry Collector in the tests (docs/security.md, "Identity towards the platform's
collector"): the configuration docs/security.md gives, the Collector built by ``leap0 dev collector build``
run as a process, a stand-in for a cluster's DNS so it reaches the API server by the issuer's name, and JWTs
made the way kube-apiserver makes them (to show an expired or forged one refused)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from support import REPO, logged_process, subprocess_env

SECURITY_DOC = REPO / "docs" / "security.md"


def documented_config() -> dict[str, Any]:
    """The Collector configuration of docs/security.md: the one YAML block with an ``oidc`` extension."""
    blocks = re.findall(r"```yaml\n(.*?)```", SECURITY_DOC.read_text(), re.DOTALL)
    (found,) = [yaml.safe_load(b) for b in blocks if "oidc:" in b and "receivers:" in b]
    config: dict[str, Any] = found
    return config


# --- A cluster's DNS and Service routing, for one name ------------------------------------------------
class ClusterNames:
    """An HTTP ``CONNECT`` proxy on a free loopback port standing in for a cluster's DNS and its
    ``kubernetes`` Service: a tunnel to one of ``routes``' ``host:port`` names goes to its local address, any
    other is refused (403). A Go client given ``HTTPS_PROXY`` (the Collector's OIDC discovery) then reaches
    the API server at the issuer's URL, verifying the serving certificate for that name, as a pod does.
    ``tunnels`` lists the names asked for."""

    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self.routes = routes
        self.tunnels: list[str] = []
        names = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 16384:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                names.tunnels.append(target)
                if method != "CONNECT" or target not in names.routes:
                    self.request.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                    return
                with socket.create_connection(names.routes[target], timeout=10) as upstream:
                    self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    _pipe(self.request, upstream)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ClusterNames:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (at most 10 minutes: a test's tunnel)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        readable, _, _ = select.select([a, b], [], [], 1)
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (b if source is a else a).sendall(data)


# --- The Collector process ------------------------------------------------------------------------------
@contextlib.contextmanager
def collector_process(
    binary: Path, config: dict[str, Any], workdir: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``leap0-otelcol --config <config>`` with ``env`` added, its output in ``workdir/collector.log``
    (printed on exit, so a failed test shows it); SIGTERM, then SIGKILL after 15 s, on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [str(binary), f"--config={path}"]
    with logged_process(argv, workdir / "collector.log", subprocess_env(**env), append=True) as process:
        yield process


# --- JWTs -------------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and claims (not verified)."""
    header, claims, _ = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(claims))


def es256_jwt(header: dict[str, Any], claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """A JWT signed as kube-apiserver signs with an ECDSA P-256 key (ES256: the raw r || s signature)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def load_ec_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key

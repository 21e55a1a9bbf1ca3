"""The sidecar cannot import leap0.constants (its image installs only leap0_sidecar): the names both define
must stay equal."""

from __future__ import annotations

import leap0.constants as shared
import leap0_sidecar.settings as sidecar

SHARED_NAMES = [
    "ATTR_SANDBOX_ID",
    "ATTR_ORG_ID",
    "ATTR_TEMPLATE_ID",
    "ENV_SANDBOX_ID",
    "ENV_ORG_ID",
    "ENV_TEMPLATE_ID",
    "ENV_OTLP_GRPC_ENDPOINT",
    "ENV_OTLP_HTTP_ENDPOINT",
    "ENV_METRICS_INTERVAL",
    "OTLP_GRPC_PORT",
    "OTLP_HTTP_PORT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "ENV_K8S_NAMESPACE",
    "ENV_K8S_POD_NAME",
    "ENV_HEALTH_ENDPOINT",
    "SIDECAR_HEALTH_PORT",
    "SIDECAR_HEALTH_PATH",
    "SIDECAR_READY_PATH",
]


def test_names_defined_in_both_places_are_equal() -> None:
    for name in SHARED_NAMES:
        assert getattr(sidecar, name) == getattr(shared, name), name
    # and every name both modules define (including ones added later) agrees
    for name in set(dir(sidecar)) & set(dir(shared)):
        if name.isupper():
            assert getattr(sidecar, name) == getattr(shared, name), name


def test_sidecar_package_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    from support import subprocess_env

    code = (
        "import sys, leap0_sidecar.app, leap0_sidecar.__main__;"
        "heavy = ('kopf', 'kubernetes', 'kubernetes_asyncio', 'leap0', 'aiohttp', 'requests',"
        " 'leap0_operator');"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

"""The documented sidecar settings, letter for letter: the metrics interval defaults to 10 s and
``LEAP0_METRICS_INTERVAL`` sets it; ``LEAP0_OTLP_GRPC_ENDPOINT``/``LEAP0_OTLP_HTTP_ENDPOINT`` move the
receivers (host:port)."""

from __future__ import annotations

from leap0_sidecar.config import load

IDENTITY = {"LEAP0_SANDBOX_ID": "sb-1", "LEAP0_ORG_ID": "org-1", "LEAP0_TEMPLATE_ID": "tpl-1"}


def test_metrics_interval_defaults_to_10_seconds_and_is_set_by_its_variable() -> None:
    assert load(IDENTITY).metrics_interval_s == 10.0
    assert load({**IDENTITY, "LEAP0_METRICS_INTERVAL": "2.5"}).metrics_interval_s == 2.5


def test_receiver_endpoints_move_with_their_variables() -> None:
    config = load(
        {
            **IDENTITY,
            "LEAP0_OTLP_GRPC_ENDPOINT": "127.0.0.1:5317",
            "LEAP0_OTLP_HTTP_ENDPOINT": "127.0.0.1:5318",
        }
    )
    assert (str(config.grpc_endpoint), str(config.http_endpoint)) == ("127.0.0.1:5317", "127.0.0.1:5318")

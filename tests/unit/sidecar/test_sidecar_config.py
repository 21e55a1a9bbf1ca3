"""Reading the sidecar's environment as the OpenTelemetry specification defines the OTLP variables."""

from __future__ import annotations

import pytest

from leap0_sidecar.config import ConfigError, load, parse_headers, parse_host_port, parse_size, signal_url

IDENTITY = {"LEAP0_SANDBOX_ID": "sb", "LEAP0_ORG_ID": "org", "LEAP0_TEMPLATE_ID": "tpl"}


def cfg(**env: str):  # type: ignore[no-untyped-def]
    return load({**IDENTITY, **env})


@pytest.mark.parametrize(
    ("base", "traces"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otlp.example.com/api/otel", "https://otlp.example.com/api/otel/v1/traces"),
        ("https://otlp.example.com/api/otel/", "https://otlp.example.com/api/otel/v1/traces"),
    ],
)
def test_base_endpoint_gets_signal_paths_appended(base: str, traces: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": base}
    assert signal_url(env, "traces") == traces
    assert signal_url(env, "logs") == traces.replace("/v1/traces", "/v1/logs")


def test_per_signal_endpoint_is_used_as_is_and_wins() -> None:
    config = cfg(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://base:4318",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT="http://metrics-only:9000/custom?x=1",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="http://logs-only:9001",
    )
    metrics, logs, traces = config.upstreams["metrics"], config.upstreams["logs"], config.upstreams["traces"]
    assert metrics is not None
    assert (metrics.host, metrics.port, metrics.target) == ("metrics-only", 9000, "/custom?x=1")
    assert logs is not None
    assert logs.target == "/"  # as-is: no path means the root
    assert traces is not None
    assert (traces.host, traces.port, traces.target) == ("base", 4318, "/v1/traces")


def test_default_ports_and_no_endpoint_means_export_off() -> None:
    config = cfg()
    assert not config.export_enabled
    assert config.upstreams == {"traces": None, "metrics": None, "logs": None}
    assert (str(config.grpc_endpoint), str(config.http_endpoint)) == ("127.0.0.1:4317", "127.0.0.1:4318")
    assert config.health_endpoint is not None
    assert str(config.health_endpoint) == "0.0.0.0:13133"
    https = cfg(OTEL_EXPORTER_OTLP_ENDPOINT="https://h").upstreams["traces"]
    assert https is not None
    assert https.port == 443


def test_only_traces_endpoint_leaves_others_off() -> None:
    config = cfg(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://t/v1/traces")
    assert config.export_enabled
    assert config.upstreams["metrics"] is None


def test_headers_are_url_decoded_and_per_signal_replaces_general() -> None:
    assert parse_headers("H", "api-key=a%20b%3Dc, X-Tenant = acme ,,") == (
        ("api-key", "a b=c"),
        ("x-tenant", "acme"),
    )
    config = cfg(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://c",
        OTEL_EXPORTER_OTLP_HEADERS="authorization=Basic%20xyz",
        OTEL_EXPORTER_OTLP_LOGS_HEADERS="x-logs=1",
    )
    traces, logs = config.upstreams["traces"], config.upstreams["logs"]
    assert traces is not None
    assert logs is not None
    assert traces.headers == (("authorization", "Basic xyz"),)
    assert logs.headers == (("x-logs", "1"),)


@pytest.mark.parametrize("value", ["novalue", "=x", "bad key=v", "k=a%0Ab"])
def test_bad_headers_are_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_HEADERS"):
        cfg(OTEL_EXPORTER_OTLP_ENDPOINT="http://c", OTEL_EXPORTER_OTLP_HEADERS=value)


def test_compression_and_timeout_in_milliseconds() -> None:
    config = cfg(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://c",
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        OTEL_EXPORTER_OTLP_TIMEOUT="2500",
        OTEL_EXPORTER_OTLP_METRICS_COMPRESSION="none",
    )
    traces, metrics = config.upstreams["traces"], config.upstreams["metrics"]
    assert traces is not None
    assert metrics is not None
    assert (traces.gzip, traces.timeout_s) == (True, 2.5)
    assert metrics.gzip is False
    default = cfg(OTEL_EXPORTER_OTLP_ENDPOINT="http://c").upstreams["logs"]
    assert default is not None
    assert default.timeout_s == 10.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "br"}, "gzip and none"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-1"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "ten"}, "not a number"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "http:// or https://"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://:4318"}, "no host"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "no such file"),
        ({"LEAP0_METRICS_INTERVAL": "0"}, "greater than 0"),
        ({"LEAP0_METRICS_INTERVAL": "nan"}, "LEAP0_METRICS_INTERVAL"),
        ({"LEAP0_SIDECAR_QUEUE_BYTES": "lots"}, "byte count"),
        (
            {"LEAP0_SIDECAR_QUEUE_BYTES": "1Mi", "LEAP0_SIDECAR_MAX_REQUEST_BYTES": "2Mi"},
            "could never be queued",
        ),
        ({"LEAP0_OTLP_GRPC_ENDPOINT": "127.0.0.1"}, "host:port"),
        ({"LEAP0_OTLP_HTTP_ENDPOINT": "127.0.0.1:http"}, "not a number"),
        ({"LEAP0_SIDECAR_RETRY_INITIAL_INTERVAL": "5", "LEAP0_SIDECAR_RETRY_MAX_INTERVAL": "1"}, "below"),
        ({"LEAP0_SIDECAR_LOG_LEVEL": "LOUD"}, "LEAP0_SIDECAR_LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg(**env)


def test_identity_is_required() -> None:
    with pytest.raises(ConfigError, match="LEAP0_ORG_ID, LEAP0_TEMPLATE_ID not set"):
        load({"LEAP0_SANDBOX_ID": "sb"})


def test_identity_attributes_include_kubernetes_names_when_known() -> None:
    plain = cfg().identity.attributes()
    assert plain == [("leap0.sandbox.id", "sb"), ("leap0.org.id", "org"), ("leap0.template.id", "tpl")]
    k8s = cfg(LEAP0_K8S_NAMESPACE="ns", LEAP0_K8S_POD_NAME="pod").identity.attributes()
    assert k8s[3:] == [("k8s.namespace.name", "ns"), ("k8s.pod.name", "pod")]


def test_sizes_and_host_ports() -> None:
    assert parse_size("X", "16Mi") == 16 * 1024 * 1024
    assert parse_size("X", "512Ki") == 512 * 1024
    assert parse_size("X", "1000") == 1000
    assert parse_size("X", "2M") == 2_000_000
    assert str(parse_host_port("X", "[::1]:4317")) == "[::1]:4317"
    assert parse_host_port("X", "0.0.0.0:0").port == 0


def test_grpc_protocol_setting_is_warned_about_not_fatal() -> None:
    config = cfg(OTEL_EXPORTER_OTLP_ENDPOINT="http://c", OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    assert any("always forwards OTLP/HTTP protobuf" in w for w in config.warnings)
    assert cfg(OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf").warnings == ()


def test_health_can_be_turned_off() -> None:
    assert cfg(LEAP0_HEALTH_ENDPOINT="off").health_endpoint is None

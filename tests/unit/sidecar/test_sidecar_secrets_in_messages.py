"""The sidecar's configuration errors and logs never show a header's value, URL credentials or a URL's
query string: each may hold the user's OTLP key."""

from __future__ import annotations

import pytest

from leap0_sidecar.config import ConfigError, load, safe_url

IDENTITY = {"LEAP0_SANDBOX_ID": "sb", "LEAP0_ORG_ID": "org", "LEAP0_TEMPLATE_ID": "tpl"}
SECRET = "s3cr3t-k3y"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"OTEL_EXPORTER_OTLP_HEADERS": f"x-ok=1,Bearer {SECRET}"}, "entry 2 is not key=value"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization: Bearer {SECRET}=x"}, "header name of entry 1"),
        ({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"{SECRET}"}, "OTEL_EXPORTER_OTLP_TRACES_HEADERS: entry 1"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": f"ftp://user:{SECRET}@otel.example.com/?key={SECRET}"}, "http://"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": f"https://user:{SECRET}@otel.example.com:99999/?k={SECRET}"},
            "Port out of range",
        ),
        ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"https://{SECRET}@/v1/logs?api_key={SECRET}"}, "has no host"),
    ],
)
def test_configuration_errors_do_not_quote_secrets(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        load({**IDENTITY, **env})
    assert SECRET not in str(caught.value)


def test_a_value_with_a_line_break_names_the_header_not_the_value() -> None:
    with pytest.raises(ConfigError, match="the value of 'authorization' \\(entry 1\\) contains") as caught:
        load({**IDENTITY, "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{SECRET}%0Aevil"})
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://otel.example.com:4318/v1/traces", "https://otel.example.com:4318/v1/traces"),
        (f"https://u:{SECRET}@otel.example.com/v1/traces", "https://otel.example.com/v1/traces"),
        (f"http://c:4318/v1/logs?api-key={SECRET}#frag", "http://c:4318/v1/logs?<redacted>"),
        (f"https://[::1]:4318/?{SECRET}", "https://[::1]:4318/?<redacted>"),
    ],
)
def test_safe_url(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_upstreams_display_their_url_safely() -> None:
    config = load(
        {**IDENTITY, "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://u:{SECRET}@otel.example.com/?k={SECRET}"}
    )
    upstream = config.upstreams["traces"]
    assert upstream is not None
    assert upstream.display == "https://otel.example.com/v1/traces?<redacted>"
    assert SECRET in upstream.url  # what is sent is unchanged

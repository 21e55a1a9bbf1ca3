"""The ``leap0 mcp`` command: the missing-extra message, the token and the bearer-token middleware."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from leap0.cli import main
from leap0.mcp.run import BearerAuth, read_token


def test_without_the_extra_it_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if `mcp` were not installed
    assert main(["mcp"]) == 2
    assert "pip install 'leap0[mcp]'" in capsys.readouterr().err


FILE_TOKEN = "f" * 32
ENV_TOKEN = "e" * 40


def test_token_from_file_else_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {FILE_TOKEN}\n")
    assert read_token(path, {"LEAP0_MCP_TOKEN": ENV_TOKEN}) == FILE_TOKEN
    assert read_token(None, {"LEAP0_MCP_TOKEN": f" {ENV_TOKEN} "}) == ENV_TOKEN
    assert read_token(None, {}) is None
    path.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_token(path, {})


@pytest.mark.parametrize("token", ["short", "x" * 31, "é" * 15])
def test_a_token_shorter_than_32_bytes_is_refused_without_quoting_it(tmp_path: Path, token: str) -> None:
    path = tmp_path / "token"
    path.write_text(token)
    for source, env in ((path, {}), (None, {"LEAP0_MCP_TOKEN": token})):
        with pytest.raises(ValueError, match="at least 32 random bytes") as caught:
            read_token(source, env)
        assert token not in str(caught.value)


def _request(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, list[Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers}
    anyio.run(app, scope, receive, send)
    return sent[0]["status"], sent


async def _inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(b"authorization", b"Bearer tok")], 200),
        ([(b"Authorization", b"Bearer tok")], 200),
        ([], 401),
        ([(b"authorization", b"Bearer tok2")], 401),
        ([(b"authorization", b"bearer tok")], 200),
        ([(b"authorization", b"Basic tok")], 401),
        ([(b"authorization", b"Bearer ")], 401),
        ([(b"authorization", b"tok")], 401),
    ],
)
def test_bearer_auth(headers: list[tuple[bytes, bytes]], status: int) -> None:
    got, sent = _request(BearerAuth(_inner, "tok"), headers)
    assert got == status
    if status == 401:
        assert (b"www-authenticate", b'Bearer realm="leap0-mcp"') in sent[0]["headers"]


def test_bearer_auth_passes_lifespan_through() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> dict[str, Any]:
        return {}

    async def drop(message: dict[str, Any]) -> None:
        pass

    anyio.run(BearerAuth(app, "tok"), {"type": "lifespan"}, nothing, drop)
    assert seen == ["lifespan"]

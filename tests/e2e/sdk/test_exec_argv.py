"""The command line the SDK execs: run here with the local /bin/sh, as the sandbox's shell would run it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from leap0._exec import build_exec_argv

pytestmark = pytest.mark.e2e


def _sh(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


def test_plain_string_runs_in_sh_and_list_runs_as_argv() -> None:
    assert build_exec_argv("echo hi") == ["/bin/sh", "-c", "echo hi"]
    assert build_exec_argv(["ls", "-l"]) == ["ls", "-l"]


def test_env_values_are_not_reinterpreted_by_the_shell(tmp_path: Path) -> None:
    nasty = 'it\'s $HOME `id` "q"\nnext'
    res = _sh(build_exec_argv('printf %s "$V"', env={"V": nasty}))
    assert res.stdout == nasty


def test_cwd_applies_and_a_missing_cwd_fails_the_command(tmp_path: Path) -> None:
    assert _sh(build_exec_argv("pwd", cwd=str(tmp_path))).stdout.strip() == str(tmp_path)
    res = _sh(build_exec_argv("echo should-not-run", cwd=str(tmp_path / "missing")))
    assert res.returncode != 0
    assert "should-not-run" not in res.stdout


def test_list_command_with_cwd_keeps_arguments_intact(tmp_path: Path) -> None:
    res = _sh(build_exec_argv(["printf", "%s|", "a b", "$X", "'"], cwd=str(tmp_path)))
    assert res.stdout == "a b|$X|'|"


def test_timeout_stops_the_command() -> None:
    res = _sh(build_exec_argv("sleep 10", timeout=0.3))
    assert res.returncode == 124  # timeout(1)'s code: stopped, not finished


def test_exit_code_of_the_command_is_kept() -> None:
    assert _sh(build_exec_argv("exit 7", env={"A": "1"})).returncode == 7


@pytest.mark.parametrize(
    ("command", "kw"),
    [("", {}), ([], {}), ("ls", {"env": {"BAD-NAME": "x"}}), ("ls", {"timeout": 0})],
)
def test_bad_input_is_rejected(command: str | list[str], kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        build_exec_argv(command, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"env": 5}, r"env must be a mapping .* timeout=\.\.\."),  # execute(cmd, cwd, 5), the short form
        ({"env": ["A=1"]}, "env must be a mapping"),
        ({"timeout": "5"}, "timeout must be a number"),
    ],
)
def test_wrongly_typed_env_or_timeout_is_a_clear_type_error(kw: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        build_exec_argv("ls", cwd="/tmp", **kw)  # type: ignore[arg-type]

"""Where the Go programs of the dev tools are built to, outside the repository, and one build at a time.

The real control plane (``leap0 dev control-plane build``), the test Collector (``leap0 dev collector build``)
and the sandbox supervisor (``leap0 dev supervisor build``) each keep their binaries under
``$XDG_CACHE_HOME/leap0/<kind>/`` (``~/.cache`` without it; an environment variable of each kind moves it), in
a folder named after what they were built from, so another checkout or CI on the same machine finds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path


class BuildError(RuntimeError):
    """The binaries cannot be had; ``exit_code`` 2 means a tool is missing (nothing was tried)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def stderr_progress(line: str) -> None:
    """The default progress of a build: a line on stderr."""
    print(line, file=sys.stderr, flush=True)


def find_go(env: Mapping[str, str], missing: str, how: str) -> str:
    """Go on ``env``'s PATH; without it a :class:`BuildError` (exit code 2) saying that ``missing`` is not
    built, to install Go, then ``how`` (what Go would build, or another way)."""
    go = shutil.which("go", path=env.get("PATH"))
    if go is None:
        raise BuildError(
            f"{missing} is not built and Go is not installed: install Go 1.26 or newer {how}", exit_code=2
        )
    return go


def cache_root(kind: str, override_env: str, env: Mapping[str, str]) -> Path:
    """``$override_env`` when set, else ``$XDG_CACHE_HOME/leap0/<kind>`` (``~/.cache/leap0/<kind>``)."""
    if env.get(override_env):
        return Path(env[override_env])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "leap0" / kind


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One build per cache folder at a time (two test sessions, or a session and a manual build); the lock
    file stands beside the folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_command(command: str, ensure: Callable[[Callable[[str], None]], Path]) -> int:
    """A ``leap0 dev ... build`` command: ``ensure(progress)`` builds what is missing (progress lines on
    stderr) and returns what to print, one line on stdout; a :class:`BuildError` is one line on stderr and
    its exit code, Ctrl-C 130 (a half-written binary is never taken as built)."""

    say = stderr_progress
    try:
        built = ensure(say)
    except BuildError as exc:
        say(f"{command}: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        say(f"{command}: interrupted")
        return 130
    print(built, flush=True)
    return 0

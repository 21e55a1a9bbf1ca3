"""Child processes that end when the process that started them ends, however it ends.

``leap0 dev up`` starts the operator, each pod's sidecar and app, and ``kubectl exec`` commands. Each one is
started by :func:`popen` in a session (and process group) of its own, so stopping the group stops what the
child started too, and a terminal's Ctrl-C reaches ``leap0 dev up`` alone, which stops them in order. Two
guards make sure none outlives ``leap0 dev up`` when it cannot stop them itself (SIGKILL, a crash):

- the Linux parent-death signal: each child asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to be
  killed when the thread that started it ends, through util-linux's ``setpriv --pdeathsig KILL`` in front of
  its command when this machine has it (which keeps Python's fast spawn), else in a ``preexec_fn``. So the
  thread calling :func:`popen` must outlive the child (the runner's loop stops its pods before it ends;
  ``leap0 dev up`` starts the operator from its main thread);
- a reaper: a small process of its own, told each child's process group as it is started and forgotten when
  it is stopped. When its pipe from this process closes (this process ended, for whatever reason, or called
  :func:`close`), it kills the groups still registered, so the children's own children go too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

# Reads "<pgid>" (a group to kill at the end) and "-<pgid>" (a group already stopped) lines; at end of input
# kills the groups left. Standard library only, run with -S: it starts fast and imports nothing of ours.
_REAPER = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line.startswith("-"):
        groups.discard(int(line[1:]))
    elif line:
        groups.add(int(line))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl

_setpriv: list[str] | None = None  # the setpriv prefix once known to work here; [] when it does not

_lock = threading.Lock()
_reaper: subprocess.Popen[bytes] | None = None


def _die_with(parent: int) -> Callable[[], None]:
    """The child's last step before exec: die with the thread that started it (and now if it is gone)."""

    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent ended before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _guard(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """The command and ``preexec_fn`` giving a child the parent-death signal (tied to the calling thread)."""
    global _setpriv
    if _setpriv is None:
        _setpriv = []
        found = shutil.which("setpriv") if _prctl is not None else None
        if found is not None:
            prefix = [found, "--pdeathsig", "KILL", "--"]
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                    _setpriv = prefix
    if _setpriv:
        return [*_setpriv, *argv], None
    return argv, _die_with(os.getpid())


def _tell_reaper(line: str, start: bool = True) -> None:
    global _reaper
    with _lock:
        if _reaper is None:
            if not start:
                return
            _reaper = subprocess.Popen(
                [sys.executable, "-S", "-c", _REAPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # not in the terminal's group: Ctrl-C must not end it first
            )
        stdin: IO[bytes] | None = _reaper.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(OSError):
            stdin.write(f"{line}\n".encode())
            stdin.flush()


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` for a child that must end with this process: its own session and process group
    (its pid is the group's id), the parent-death signal (tied to the calling thread), and its group
    registered with the reaper."""
    command, preexec = _guard(argv)
    process: subprocess.Popen[Any] = subprocess.Popen(
        command, start_new_session=True, preexec_fn=preexec, **kwargs
    )
    _tell_reaper(str(process.pid))
    return process


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` giving the child the parent-death signal, tied to the thread that starts it; for
    children that :func:`popen` cannot start (asyncio's), where a command in front would change what a
    missing executable looks like."""
    return _die_with(os.getpid())


def adopt(pid: int) -> None:
    """Register a child started elsewhere in a session of its own (asyncio's subprocesses) with the reaper."""
    _tell_reaper(str(pid))


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a child's process group (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def forget(pgid: int) -> None:
    """The group was stopped: the reaper must not signal it (its id may be reused)."""
    _tell_reaper(f"-{pgid}", start=False)


def close() -> None:
    """End the reaper now (it kills the groups still registered); the next :func:`popen` starts another."""
    global _reaper
    with _lock:
        reaper, _reaper = _reaper, None
    if reaper is None:
        return
    if reaper.stdin is not None:
        with contextlib.suppress(OSError):
            reaper.stdin.close()
    try:
        reaper.wait(10)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait(5)

"""The app must not reach into the sidecar (docs/security.md, "The code in a sandbox").

The pod shares its process namespace so the sidecar can measure the sandbox. Here the real sidecar and an
"app" run as processes with the exact users, groups, capability sets and no_new_privs of the containers the
operator builds (``setpriv``, as the attack was reproduced), in both pod security modes. The app tries what
was reported: SIGSTOP the sidecar, read its ``/proc/<pid>/environ`` (the OTLP headers) and reach its files
through ``/proc/<pid>/root`` (its token), as itself and after taking the sidecar's UID. A package manager's
change of user (apt's ``_apt``) must keep working in the baseline container.

Needs root (setpriv to other users); a control process shows each check can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pss_support import BASELINE_CAPABILITIES
from sidecar_support import IDENTITY_ENV, SidecarProcess, readable_sidecar_install
from support import subprocess_env, wait_for

import leap0_contract as contract
from leap0_operator.config import OperatorConfig
from leap0_operator.pod import build_pod
from leap0_operator.resolve import resolve

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: setpriv to the pod's users"),
]

# The container runtimes' default capability set (containerd, CRI-O, Docker): baseline's plus NET_RAW.
RUNTIME_DEFAULT_CAPABILITIES = BASELINE_CAPABILITIES | {"NET_RAW"}
SECRET = "platform-secret-4f1c"
APT_HELPER = "/usr/lib/apt/apt-helper"

# What the app tries, printed as JSON: each attempt's outcome ("ok" or the errno's name).
ATTEMPTS = r"""
import errno, json, os, signal, sys
pid, token_path, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def attempt(action):
    try:
        result = action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "leaked" if isinstance(result, bytes) and secret.encode() in result else "ok"

def read(path):
    with open(path, "rb") as f:
        return f.read()

def tries():
    return {
        "sigstop": attempt(lambda: os.kill(pid, signal.SIGSTOP)),
        "environ": attempt(lambda: read(f"/proc/{pid}/environ")),
        "root": attempt(lambda: read(f"/proc/{pid}/root{token_path}")),
        "mem": attempt(lambda: read(f"/proc/{pid}/cmdline") and open(f"/proc/{pid}/mem", "rb").close()),
    }

out = {"as_itself": tries()}
def become(uid, gid):
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
out["setuid_sidecar"] = attempt(lambda: become(int(sys.argv[4]), int(sys.argv[4])))
if out["setuid_sidecar"] == "ok":
    out["as_sidecar_uid"] = tries()
print(json.dumps(out))
"""


def pod_for(template: Mapping[str, Any] | None) -> dict[str, Any]:
    owner = {
        "apiVersion": contract.API_VERSION,
        "kind": contract.SANDBOX_KIND,
        "metadata": {"name": "sbx", "namespace": "ns", "uid": "u"},
    }
    config = OperatorConfig()
    return build_pod(owner=owner, effective=resolve({}, template, config), org_id="o", config=config)


def setpriv(pod: Mapping[str, Any], container_name: str, image_user: int = 0) -> tuple[str, ...]:
    """setpriv arguments giving a process what the container gets from the pod spec: its user and group
    (the container's, else the pod's, else the image's), fsGroup as a supplementary group, the runtime's
    default capabilities minus those dropped (none left for ALL), and no_new_privs unless escalation may."""
    spec = pod["spec"]
    container = next(
        c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == container_name
    )
    pod_sc, sc = spec.get("securityContext", {}), container.get("securityContext", {})
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", image_user))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", 0 if uid == 0 else uid))
    groups = [str(pod_sc["fsGroup"])] if "fsGroup" in pod_sc else []
    caps = sc.get("capabilities", {})
    dropped = {c.upper() for c in caps.get("drop", [])}
    kept = set() if "ALL" in dropped else (RUNTIME_DEFAULT_CAPABILITIES | set(caps.get("add", []))) - dropped
    bounding = ",".join(["-all", *sorted(f"+{c.lower()}" for c in kept)])
    args = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
    args += [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
    args += [f"--bounding-set={bounding}", "--inh-caps=-all"]
    if sc.get("allowPrivilegeEscalation") is False:
        args.append("--no-new-privs")
    return (*args, "--")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user of the test may read (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="leap0-isolation-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def sidecar_install() -> Iterator[tuple[str, Path]]:
    """The sidecar installed where its user (65532) may read it, as in its image: the interpreter and the
    folder (``readable_sidecar_install``)."""
    folder = Path(tempfile.mkdtemp(prefix="leap0-isolation-sidecar-"))
    python = readable_sidecar_install(folder)
    yield python, folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def running_sidecar(
    shared_dir: Path, sidecar_install: tuple[str, Path]
) -> Iterator[tuple[SidecarProcess, Path]]:
    """The real sidecar as the telemetry container runs (uid/gid 65532, no capabilities, no_new_privs),
    holding a secret header in its environment and a token file only it is given."""
    python, installed = sidecar_install
    token = shared_dir / "token"
    token.write_text(SECRET)
    token.chmod(0o444)
    env = {
        **IDENTITY_ENV,
        "LEAP0_METRICS_INTERVAL": "3600",
        "LEAP0_SANDBOX_PID": str(os.getpid()),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-platform-key={SECRET}",
        contract.ENV_TELEMETRY_TOKEN_FILE: str(token),
        "PYTHONPATH": str(installed),
    }
    wrapper = setpriv(pod_for(None), contract.TELEMETRY_CONTAINER)
    process = SidecarProcess(env, shared_dir / "sidecar.log", wrapper=wrapper, python=python)
    process.start()
    yield process, token
    assert process.proc is not None
    os.kill(process.proc.pid, signal.SIGCONT)  # in case the app stopped it
    process.stop()


def app_attempts(pod: Mapping[str, Any], target: int, token: Path) -> dict[str, Any]:
    wrapper = setpriv(pod, contract.SANDBOX_CONTAINER)
    cmd = [
        *wrapper,
        sys.executable,
        "-c",
        ATTEMPTS,
        str(target),
        str(token),
        SECRET,
        str(contract.SIDECAR_UID),
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, check=False, env=subprocess_env()
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_the_baseline_app_cannot_stop_or_read_the_sidecar(
    running_sidecar: tuple[SidecarProcess, Path],
) -> None:
    sidecar, token = running_sidecar
    assert sidecar.proc is not None
    pid = sidecar.proc.pid
    outcome = app_attempts(pod_for(None), pid, token)
    # as root with the container's capabilities (no KILL, no SYS_PTRACE)
    assert outcome["as_itself"] == {
        "sigstop": "EPERM",
        "environ": "EACCES",
        "root": "EACCES",
        "mem": "EACCES",
    }
    # root keeps SETUID (apt needs it), so it can take the sidecar's UID: the sidecar is not dumpable, so its
    # environment and files stay closed; signals follow the UID, so it can stop the sidecar (what remains: it
    # stops only its own sandbox's telemetry, and the liveness probe restarts the sidecar)
    assert outcome["setuid_sidecar"] == "ok"
    assert outcome["as_sidecar_uid"] == {
        "sigstop": "ok",
        "environ": "EACCES",
        "root": "EACCES",
        "mem": "EACCES",
    }
    assert stopped(pid)
    os.kill(pid, signal.SIGCONT)
    wait_for(sidecar.ready, 15, "the sidecar answering again")


def test_the_restricted_app_cannot_stop_or_read_the_sidecar_nor_become_it(
    running_sidecar: tuple[SidecarProcess, Path],
) -> None:
    sidecar, token = running_sidecar
    assert sidecar.proc is not None
    outcome = app_attempts(pod_for({"podSecurity": "restricted"}), sidecar.proc.pid, token)
    assert outcome == {
        "as_itself": {"sigstop": "EPERM", "environ": "EACCES", "root": "EACCES", "mem": "EACCES"},
        "setuid_sidecar": "EPERM",
    }
    assert not stopped(sidecar.proc.pid)


def test_the_checks_can_fail_a_dumpable_process_of_the_sidecars_uid_is_open(shared_dir: Path) -> None:
    """Control: the same attempts against a process of the sidecar's UID that is dumpable (what the sidecar
    was before it made itself non-dumpable) leak the secret once the app took that UID."""
    token = shared_dir / "token"
    token.write_text(SECRET)
    token.chmod(0o444)
    wrapper = setpriv(pod_for(None), contract.TELEMETRY_CONTAINER)
    env = {**subprocess_env(), "OTEL_EXPORTER_OTLP_HEADERS": f"x-platform-key={SECRET}"}
    victim = subprocess.Popen([*wrapper, "sleep", "60"], env=env)
    try:
        wait_for(lambda: Path(f"/proc/{victim.pid}/status").read_text().count("65532") >= 4, 10, "setpriv")
        outcome = app_attempts(pod_for(None), victim.pid, token)
        assert outcome["as_itself"]["environ"] == "EACCES"  # root alone does not pass: the UID differs
        assert outcome["as_sidecar_uid"]["environ"] == "leaked"
        assert outcome["as_sidecar_uid"]["root"] == "leaked"
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.skipif(not Path(APT_HELPER).exists(), reason="apt is not installed here")
def test_a_package_manager_still_changes_user_in_the_baseline_app(shared_dir: Path) -> None:
    """apt drops to _apt with setgroups/setresgid/setresuid: the baseline container keeps SETUID, SETGID."""
    wrapper = setpriv(pod_for(None), contract.SANDBOX_CONTAINER)
    dropped = subprocess.run(
        [*wrapper, APT_HELPER, "drop-privs", "--", "id", "-un"], capture_output=True, text=True, check=False
    )
    assert (dropped.returncode, dropped.stdout.strip()) == (0, "_apt"), dropped.stderr
    # a download through apt's acquire system, its method sandboxed as _apt
    target = shared_dir / "downloads"
    target.mkdir()
    shutil.chown(target, "_apt")
    got = subprocess.run(
        [*wrapper, APT_HELPER, "download-file", "copy:///etc/os-release", str(target / "os-release")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "unsandboxed" not in got.stderr
    assert (target / "os-release").read_bytes() == Path("/etc/os-release").read_bytes()
    # control: without SETUID and SETGID (what dropping them would do), apt cannot drop its privileges
    without = [a.replace(",+setgid", "").replace(",+setuid", "") for a in wrapper]
    failed = subprocess.run(
        [*without, APT_HELPER, "drop-privs", "--", "id"], capture_output=True, text=True, check=False
    )
    assert failed.returncode != 0
    assert "Dropping Privileges failed" in failed.stderr

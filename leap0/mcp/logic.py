"""The pure decisions of the MCP server: no MCP, no Kubernetes, no IO (unit-tested in tests/unit/mcp/).

Output caps, the create call's arguments, ownership, file listings and encodings, and the text a model reads.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import leap0_contract as c
from leap0.models import SandboxData

# Labels of every sandbox the MCP server creates.
LABEL_CREATED_BY = c.LABEL_CREATED_BY
CREATED_BY_MCP = c.CREATED_BY_MCP
LABEL_MCP_OWNER = c.LABEL_MCP_OWNER

DEFAULT_MAX_OUTPUT = 64 * 1024
DEFAULT_MAX_READ = 1024 * 1024
DEFAULT_CREATE_TIMEOUT = 180.0
MAX_LIST_ENTRIES = 1000
ENV_TOKEN = c.ENV_MCP_TOKEN

# A label value: at most 63 characters, alphanumerics with - _ . inside.
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)$")


class ToolFailure(Exception):
    """A tool call that cannot succeed: ``str(exc)`` is the one-line cause plus what to do next."""


# --- ownership ---------------------------------------------------------------------------------------
def check_owner(owner: str) -> str:
    """The ``--owner`` value, if it can be a label value; ValueError naming the rule otherwise."""
    if not _LABEL_VALUE.match(owner):
        raise ValueError(
            f"--owner {owner!r} is not a valid label value: 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return owner


def owner_labels(owner: str) -> dict[str, str]:
    """The labels put on every sandbox this server creates."""
    return {LABEL_CREATED_BY: CREATED_BY_MCP, LABEL_MCP_OWNER: owner}


def owner_selector(owner: str, all_sandboxes: bool) -> str | None:
    """The label selector of the sandboxes this server may see (None: every sandbox in the namespace)."""
    return None if all_sandboxes else f"{LABEL_MCP_OWNER}={owner}"


def is_visible(labels: Mapping[str, str], owner: str, all_sandboxes: bool) -> bool:
    """May this server act on a sandbox with these labels? Only on its owner's, unless --all-sandboxes."""
    return all_sandboxes or labels.get(LABEL_MCP_OWNER) == owner


def not_found_message(sandbox_id: str) -> str:
    return (
        f"sandbox {sandbox_id!r} not found (it does not exist, was deleted or expired, or was not created by "
        "this server): call list_sandboxes to see the sandboxes you can use, or create_sandbox for a new one"
    )


def unknown_arguments(tool: str, arguments: Mapping[str, Any], allowed: frozenset[str]) -> str | None:
    """Why a call with arguments the tool does not take is refused (None if all are known).

    An unknown name is usually a misspelling (``memory_mib`` for ``memory``): refusing it beats running the
    call without it.
    """
    unknown = sorted(set(arguments) - allowed)
    if not unknown:
        return None
    names = ", ".join(repr(u) for u in unknown)
    known = ", ".join(sorted(allowed)) or "none"
    return f"{tool} has no parameter {names}: its parameters are {known}. Call again with those names"


# --- create_sandbox ----------------------------------------------------------------------------------
def create_kwargs(
    *,
    template: str | None,
    default_template: str | None,
    vcpu: int | None,
    memory: int | None,
    timeout: int | None,
    env_vars: Mapping[str, str] | None,
    network: Mapping[str, Any] | None,
    owner: str,
    wait_timeout: float = DEFAULT_CREATE_TIMEOUT,
    telemetry_logs: bool | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``client.sandboxes.create`` for a create_sandbox call.

    Only what was given is passed, so the template's values and the operator's defaults apply to the rest.
    ``network`` is passed only when given (as the Sandbox's ``spec.network``: ``policy`` and ``allowCidrs``),
    ``telemetry_logs`` too (``spec.telemetry.logs``: the output of its commands as OTLP log records).
    """
    kwargs: dict[str, Any] = {"labels": owner_labels(owner), "wait_timeout": wait_timeout}
    tmpl = template if template else default_template
    if tmpl:
        kwargs["template"] = tmpl
    for key, value in (("vcpu", vcpu), ("memory", memory), ("timeout", timeout)):
        if value is not None:
            kwargs[key] = value
    if env_vars:
        kwargs["env_vars"] = dict(env_vars)
    if network is not None:
        spec: dict[str, Any] = {"policy": network["policy"]}
        cidrs = network.get("allow_cidrs")
        if cidrs:
            spec["allowCidrs"] = list(cidrs)
        kwargs["network"] = spec
    if telemetry_logs is not None:
        kwargs["telemetry_logs"] = telemetry_logs
    return kwargs


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def sandbox_summary(sb: SandboxData) -> dict[str, Any]:
    """What the tools say about a sandbox: id, phase, reason, expiry and the effective resources."""
    return {
        "sandbox_id": sb.id,
        "phase": sb.phase or "Pending",
        "reason": sb.reason,
        "message": sb.message,
        "template": sb.template_id or sb.template,
        "vcpu": sb.effective_vcpu if sb.effective_vcpu is not None else sb.vcpu,
        "memory": sb.effective_memory if sb.effective_memory is not None else sb.memory,
        "timeout": sb.timeout,
        "created_at": iso(sb.created_at),
        "expires_at": iso(sb.expires_at),
    }


def after_set_timeout(sb: SandboxData, timeout: int) -> dict[str, Any]:
    """The summary right after ``spec.timeout`` was set: the expiry is creation + timeout (the operator
    writes the same ``expiresAt`` to the status a moment later)."""
    summary = sandbox_summary(sb)
    summary["timeout"] = timeout
    if sb.created_at is not None:
        summary["expires_at"] = iso(sb.created_at + timedelta(seconds=timeout))
    return summary


def sandbox_text(summary: Mapping[str, Any]) -> str:
    """One readable line per sandbox."""
    parts = [f"sandbox {summary['sandbox_id']}: {summary['phase']}"]
    if summary.get("reason") and summary.get("phase") != "Running":
        parts.append(f"({summary['reason']}{': ' + summary['message'] if summary.get('message') else ''})")
    resources = []
    if summary.get("vcpu") is not None:
        resources.append(f"{summary['vcpu']} vCPU")
    if summary.get("memory") is not None:
        resources.append(f"{summary['memory']} MiB")
    if resources:
        parts.append(", ".join(resources))
    if summary.get("expires_at"):
        parts.append(f"expires {summary['expires_at']}")
    return " ".join(parts)


# --- execute_command ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Capped:
    text: str
    cut: int  # bytes (UTF-8) left out


def cap_output(text: str, limit: int) -> Capped:
    """Keep at most ``limit`` UTF-8 bytes of ``text``: its head and its tail, with a marker between them.

    The head shows how a command started, the tail how it ended (errors are usually last). The marker
    says how many bytes were cut; characters are never split.
    """
    data = text.encode("utf-8")
    if len(data) <= limit:
        return Capped(text, 0)
    cut = len(data) - limit
    head_n = limit // 2
    tail_n = limit - head_n
    head = data[:head_n].decode("utf-8", errors="ignore")
    tail = data[len(data) - tail_n :].decode("utf-8", errors="ignore")
    return Capped(f"{head}\n[... {cut} bytes cut: output longer than {limit} bytes ...]\n{tail}", cut)


def execute_text(exit_code: int, stdout: str, stderr: str, cut_out: int, cut_err: int) -> str:
    lines = [f"exit code {exit_code}"]
    lines.append("--- stdout" + (f" ({cut_out} bytes cut)" if cut_out else "") + " ---")
    lines.append(stdout.rstrip("\n"))
    if stderr:
        lines.append("--- stderr" + (f" ({cut_err} bytes cut)" if cut_err else "") + " ---")
        lines.append(stderr.rstrip("\n"))
    return "\n".join(lines)


# --- files -------------------------------------------------------------------------------------------
def decode_content(content: str, encoding: str) -> bytes:
    """The bytes to write: ``content`` as UTF-8 text, or decoded from base64."""
    if encoding == "utf-8":
        return content.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ToolFailure(
                f"content is not valid base64 ({exc}): send standard base64 (A-Z a-z 0-9 + /, '=' padding), "
                "or encoding 'utf-8' for text"
            ) from exc
    raise ToolFailure(f"unknown encoding {encoding!r}: use 'utf-8' or 'base64'")


def encode_content(data: bytes, encoding: str | None) -> tuple[str, str]:
    """(content, encoding) of a read file: UTF-8 text when it is text (or asked), else base64."""
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii"), "base64"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        if encoding == "utf-8":
            raise ToolFailure(
                "the file is not valid UTF-8 text: read it again with encoding 'base64'"
            ) from None
        return base64.b64encode(data).decode("ascii"), "base64"


# Lists one directory with POSIX sh only (no python, find -printf or GNU stat needed in the image):
# one NUL-terminated record per entry, "type<TAB>size<TAB>name". Exit 3: not a directory.
LIST_SCRIPT = r"""
d=$1
if [ ! -e "$d" ]; then echo "no such file or directory: $d" >&2; exit 2; fi
if [ ! -d "$d" ]; then echo "not a directory: $d" >&2; exit 3; fi
cd -- "$d" || exit 4
for f in * .*; do
  case $f in .|..) continue ;; esac
  if [ -L "$f" ]; then t=symlink; s=
  elif [ -d "$f" ]; then t=directory; s=
  elif [ -f "$f" ]; then t=file; s=$(wc -c < "$f" 2>/dev/null | tr -d ' ')
  elif [ -e "$f" ]; then t=other; s=
  else continue
  fi
  printf '%s\t%s\t%s\0' "$t" "$s" "$f"
done
"""


def list_argv(path: str) -> list[str]:
    return ["/bin/sh", "-c", LIST_SCRIPT, "leap0-ls", path]


def parse_listing(output: str, limit: int = MAX_LIST_ENTRIES) -> tuple[list[dict[str, Any]], bool]:
    """The entries printed by :data:`LIST_SCRIPT` (name, type, size in bytes for files), sorted by name."""
    entries: list[dict[str, Any]] = []
    for record in output.split("\0"):
        if not record:
            continue
        kind, _, rest = record.partition("\t")
        size, _, name = rest.partition("\t")
        if not name:
            continue
        entries.append({"name": name, "type": kind, "size": int(size) if size.isdigit() else None})
    entries.sort(key=lambda e: e["name"])
    return entries[:limit], len(entries) > limit


def listing_text(path: str, entries: list[dict[str, Any]], truncated: bool) -> str:
    if not entries:
        return f"{path}: empty directory"
    lines = [f"{path}: {len(entries)} entries" + (" (more not shown)" if truncated else "")]
    for e in entries:
        suffix = "/" if e["type"] == "directory" else "@" if e["type"] == "symlink" else ""
        size = f"  {e['size']} bytes" if e["size"] is not None else ""
        lines.append(f"{e['name']}{suffix}{size}")
    return "\n".join(lines)


# --- HTTP --------------------------------------------------------------------------------------------
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def parse_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; a bare ``PORT`` means 127.0.0.1) -> (host, port)."""
    text = value.strip()
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"--http {value!r}: expected [IPV6]:PORT")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"--http {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--http {value!r}: the port must be a number 0-65535")
    return host, int(port_text)


def auth_decision(token: str | None, host: str, insecure_no_auth: bool) -> str | None:
    """None if the HTTP server may start, else why not (and what to do)."""
    if token:
        return None
    if not insecure_no_auth:
        return (
            "leap0 mcp --http needs a bearer token: put one in a file and pass --token-file FILE, or set "
            f"{ENV_TOKEN} (or, on a loopback address only, pass --insecure-no-auth)"
        )
    if host not in LOOPBACK_HOSTS:
        return f"--insecure-no-auth is allowed on a loopback address only (127.0.0.1, ::1), not {host!r}"
    return None


# --- errors ------------------------------------------------------------------------------------------
_LIMITS = "vcpu 1-8, memory 512-8192 MiB (even), timeout 1-28800 s"


def failure_message(exc: BaseException, sandbox_id: str | None = None) -> str:
    """The one-line cause of a failed tool call and what to do about it, for every error the SDK raises.

    Also covers the Kubernetes client's connection errors (the API server is down or unreachable).
    """
    from leap0.exceptions import (
        ApiError,
        ConfigurationError,
        FilesystemError,
        ProcessError,
        ProcessTimeoutError,
        SandboxFailedError,
        SandboxNotFoundError,
        SandboxNotRunningError,
        SandboxTimeoutError,
        SandboxValidationError,
    )

    text = " ".join(str(exc).split())
    if isinstance(exc, ToolFailure):
        return text
    if isinstance(exc, SandboxNotFoundError):
        return not_found_message(sandbox_id or exc.sandbox_id)
    if isinstance(exc, SandboxValidationError):
        return f"the API server rejected the request: {text}. Fix that field ({_LIMITS}) and call again"
    if isinstance(exc, SandboxFailedError):
        return (
            f"{text}. The sandbox is kept for inspection (get_sandbox); delete it with delete_sandbox, then "
            "create a new one with another template or settings"
        )
    if isinstance(exc, ProcessTimeoutError):
        return (
            f"{text}; the command was stopped. Give a longer timeout, or run it in the background "
            "(nohup CMD > /tmp/out.log 2>&1 &) and read the log later"
        )
    if isinstance(exc, SandboxTimeoutError):
        return (
            f"{text}. The sandbox is kept: call get_sandbox later to see whether it started, or remove it "
            "with delete_sandbox"
        )
    if isinstance(exc, SandboxNotRunningError):
        return (
            f"{text}. If it is Pending, wait and call again; if it is Failed or Expired, delete it and "
            "create a new sandbox"
        )
    if isinstance(exc, FilesystemError):
        return f"{text}. Check the path with list_files (relative paths start in the working directory)"
    if isinstance(exc, ProcessError):
        return f"{text}. Call again; if it keeps failing, check the sandbox with get_sandbox"
    if isinstance(exc, ConfigurationError):
        return f"the MCP server is misconfigured: {text}"
    if isinstance(exc, ApiError):
        hint = "call again later; if it persists, the cluster needs attention"
        if exc.status in (401, 403):
            hint = "the MCP server's Kubernetes credentials lack access (check its RBAC or kubeconfig)"
        return f"the Kubernetes API answered {exc.status}: {text}; {hint}"
    if _is_connection_error(exc):
        return (
            f"cannot reach the Kubernetes API server ({type(exc).__name__}: {text[:200]}); the cluster may "
            "be down or unreachable: call again later"
        )
    if isinstance(exc, ValueError | TypeError):
        return f"invalid argument: {text}"
    return f"unexpected error ({type(exc).__name__}: {text[:300]}); call again, or report it"


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | ConnectionError):
        return True
    module = type(exc).__module__
    return module.startswith("urllib3") or module.startswith("requests")

"""The pure decisions of the MCP server: no MCP, no Kubernetes, no IO (unit-tested in tests/unit/mcp/).

Output caps, the create call's arguments, ownership, file listings and encodings, and the text a model reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import leap0_contract as c
from leap0._exec import HeadTail
from leap0._redact import redact
from leap0.models import SandboxData

# Labels of every sandbox the MCP server creates.
LABEL_CREATED_BY = c.LABEL_CREATED_BY
CREATED_BY_MCP = c.CREATED_BY_MCP
LABEL_MCP_OWNER = c.LABEL_MCP_OWNER

ANNOTATION_OWNER_SIGNATURE = c.ANNOTATION_MCP_OWNER_SIGNATURE
ENV_EXEC_ID = c.ENV_MCP_EXEC_ID

DEFAULT_MAX_OUTPUT = 64 * 1024
DEFAULT_MAX_READ = 1024 * 1024
DEFAULT_CREATE_TIMEOUT = 180.0
MAX_LIST_ENTRIES = 1000
# list_files reads at most this much of the listing (1,000 entries of 255-byte names fit in a quarter of it)
MAX_LIST_BYTES = 1024 * 1024
ENV_TOKEN = c.ENV_MCP_TOKEN
MIN_TOKEN_BYTES = 32  # the bearer token, and the owner key
NETWORK_POLICIES = ("Internet", "DenyAll", "AllowAll", "Custom")

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


# A Sandbox's name (what the API server accepts: a DNS-1123 subdomain).
_SANDBOX_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SANDBOX_ID_MAX = 253


def check_sandbox_id(sandbox_id: str) -> None:
    """Refuse what cannot be a Sandbox's name before it reaches a URL (ToolFailure saying the rule)."""
    if len(sandbox_id) <= _SANDBOX_ID_MAX and _SANDBOX_ID.match(sandbox_id):
        return
    shown = sandbox_id if len(sandbox_id) <= 80 else sandbox_id[:80] + "..."
    raise ToolFailure(
        f"sandbox_id {shown!r} is not a sandbox id: ids are Kubernetes names (lowercase letters, digits, "
        "'-' and '.', starting and ending with a letter or digit, at most 253 characters), e.g. "
        "'sbx-1a2b3c4d5e'; call list_sandboxes to see yours"
    )


def owner_signature(key: bytes, namespace: str, name: str, uid: str, owner: str) -> str:
    """The value of the owner-signature annotation: HMAC-SHA256 over the Sandbox's namespace, name and uid
    (the uid is new for every object, so a copied signature fails on another Sandbox, even one re-created
    with the same name) and the owner, under the server's key."""
    message = "\n".join(("v1", namespace, name, uid, owner)).encode()
    return "v1." + hmac.new(key, message, hashlib.sha256).hexdigest()


def is_owned(obj: Mapping[str, Any], owner: str, key: bytes, all_sandboxes: bool) -> bool:
    """May this server act on the Sandbox ``obj`` (as the API returns it)? With ``--all-sandboxes`` on any;
    else only on one labelled with its owner *and* signed with its key for this very object."""
    if all_sandboxes:
        return True
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(LABEL_MCP_OWNER) != owner:
        return False
    given = (meta.get("annotations") or {}).get(ANNOTATION_OWNER_SIGNATURE)
    uid = meta.get("uid")
    if not isinstance(given, str) or not uid:
        return False
    expected = owner_signature(
        key, str(meta.get("namespace", "")), str(meta.get("name", "")), str(uid), owner
    )
    return hmac.compare_digest(given.encode(), expected.encode())


def owner_key(data: bytes, source: str) -> bytes:
    """The owner key read from ``source`` (a file): its content without surrounding whitespace, at least
    32 bytes; ValueError saying what to do otherwise (never quoting the key)."""
    key = data.strip()
    if len(key) < MIN_TOKEN_BYTES:
        raise ValueError(
            f"the owner key in {source} is {len(key)} bytes: use at least {MIN_TOKEN_BYTES} random bytes "
            "(e.g. openssl rand -hex 32 > FILE)"
        )
    return key


def check_token(token: str) -> str:
    """The bearer token if long enough to resist guessing (32 bytes); ValueError otherwise (never quoting
    it)."""
    size = len(token.encode())
    if size < MIN_TOKEN_BYTES:
        raise ValueError(
            f"the bearer token is {size} bytes: use at least {MIN_TOKEN_BYTES} random bytes "
            "(e.g. openssl rand -hex 32)"
        )
    return token


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
@dataclass(frozen=True)
class AdminLimits:
    """What the server's administrator fixed for every sandbox its clients create.

    ``templates``: the templates clients may name (None: any); ``default_template``: the one used when a
    call names none; ``network``: the ``spec.network`` every sandbox gets (None: the client's choice, else
    the template's or the operator's default).
    """

    templates: tuple[str, ...] | None = None
    default_template: str | None = None
    network: Mapping[str, Any] | None = None


def admin_limits(
    *,
    allowed_templates: str | None = None,
    template: str | None = None,
    network_policy: str | None = None,
    network_allow_cidrs: str | None = None,
) -> AdminLimits:
    """The limits of ``--allowed-templates a,b``, ``--template``, ``--network-policy`` and
    ``--network-allow-cidrs``; ValueError naming the flag for a bad combination."""
    templates: tuple[str, ...] | None = None
    if allowed_templates is not None:
        templates = tuple(t.strip() for t in allowed_templates.split(",") if t.strip())
        if not templates:
            raise ValueError("--allowed-templates needs at least one template name (a,b,c)")
        if template is not None and template not in templates:
            raise ValueError(
                f"--template {template!r} is not in --allowed-templates ({', '.join(templates)})"
            )
        template = template or templates[0]
    network: dict[str, Any] | None = None
    cidrs = [x.strip() for x in (network_allow_cidrs or "").split(",") if x.strip()]
    if network_policy is not None:
        if network_policy not in NETWORK_POLICIES:
            raise ValueError(f"--network-policy {network_policy!r}: use one of {', '.join(NETWORK_POLICIES)}")
        network = {"policy": network_policy}
        if network_policy == "Custom":
            if not cidrs:
                raise ValueError("--network-policy Custom needs --network-allow-cidrs CIDR[,CIDR...]")
            for cidr in cidrs:
                try:
                    ipaddress.ip_network(cidr, strict=True)
                except ValueError as exc:
                    raise ValueError(f"--network-allow-cidrs: {cidr!r} is not a CIDR ({exc})") from None
            network["allowCidrs"] = cidrs
    if cidrs and network_policy != "Custom":
        raise ValueError("--network-allow-cidrs is only for --network-policy Custom")
    return AdminLimits(templates=templates, default_template=template, network=network)


def network_text(network: Mapping[str, Any]) -> str:
    cidrs = network.get("allowCidrs")
    return str(network["policy"]) + (f" ({', '.join(cidrs)})" if cidrs else "")


def create_kwargs(
    *,
    template: str | None,
    default_template: str | None = None,
    vcpu: int | None,
    memory: int | None,
    timeout: int | None,
    env_vars: Mapping[str, str] | None,
    network: Mapping[str, Any] | None,
    owner: str,
    wait_timeout: float = DEFAULT_CREATE_TIMEOUT,
    limits: AdminLimits | None = None,
    persistent_workspace: bool | None = None,
    idle_timeout: int | None = None,
    on_timeout: str | None = None,
    telemetry_logs: bool | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``client.sandboxes.create`` for a create_sandbox call.

    Only what was given is passed, so the template's values and the operator's defaults apply to the rest.
    ``network`` is passed only when given (as the Sandbox's ``spec.network``: ``policy`` and ``allowCidrs``),
    ``telemetry_logs`` too (``spec.telemetry.logs``: the output of its commands as OTLP log records).
    The administrator's ``limits`` come first: a template outside them, or a network other than the one they
    fix, is refused (ToolFailure saying what is allowed); the fixed network is always passed.
    ``persistent_workspace`` goes as ``spec.workspace.persistent`` (the storage class stays the template's or
    the cluster's: not a client's choice).
    """
    limits = limits or AdminLimits(default_template=default_template)
    kwargs: dict[str, Any] = {"labels": owner_labels(owner), "wait_timeout": wait_timeout}
    tmpl = template if template else limits.default_template
    if limits.templates is not None and tmpl not in limits.templates:
        raise ToolFailure(
            f"template {tmpl!r} is not allowed on this server: use one of {', '.join(limits.templates)} "
            f"(or omit template for {limits.default_template!r})"
        )
    if tmpl:
        kwargs["template"] = tmpl
    for key, value in (("vcpu", vcpu), ("memory", memory), ("timeout", timeout)):
        if value is not None:
            kwargs[key] = value
    if env_vars:
        kwargs["env_vars"] = dict(env_vars)
    if persistent_workspace is not None:
        kwargs["workspace"] = {"persistent": persistent_workspace}
    if idle_timeout is not None:
        kwargs["idle_timeout"] = idle_timeout
    if on_timeout is not None:
        kwargs["on_timeout"] = on_timeout
    spec: dict[str, Any] | None = None
    if network is not None:
        spec = {"policy": network["policy"]}
        cidrs = network.get("allow_cidrs")
        if cidrs:
            spec["allowCidrs"] = list(cidrs)
    if limits.network is not None:
        if spec is not None and spec != dict(limits.network):
            raise ToolFailure(
                f"network is fixed by this server's administrator to {network_text(limits.network)}: "
                "call create_sandbox again without network"
            )
        spec = dict(limits.network)
    if spec is not None:
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
        "persistent_workspace": (
            bool(sb.effective_workspace.get("persistent"))
            if sb.effective_workspace is not None
            else (sb.workspace or {}).get("persistent")
        ),
        "paused_at": iso(sb.paused_at),
        "resumed_at": iso(sb.resumed_at),
    }


def after_set_timeout(sb: SandboxData, timeout: int) -> dict[str, Any]:
    """The summary right after ``spec.timeout`` was set: the expiry is creation (or the last resume) +
    timeout (the operator writes the same ``expiresAt`` to the status a moment later); none while paused."""
    summary = sandbox_summary(sb)
    summary["timeout"] = timeout
    base = sb.resumed_at or sb.created_at
    if sb.phase == c.PHASE_PAUSED:
        summary["expires_at"] = None
    elif base is not None:
        summary["expires_at"] = iso(base + timedelta(seconds=timeout))
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
    if summary.get("paused_at") and summary.get("phase") == c.PHASE_PAUSED:
        parts.append(f"paused since {summary['paused_at']} (resume_sandbox, or any tool call, resumes it)")
    return " ".join(parts)


# --- execute_command ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Capped:
    text: str
    cut: int  # bytes (UTF-8) left out


def cap_streamed(kept: HeadTail, limit: int) -> Capped:
    """The text of a stream of which ``kept`` holds the head and tail (``limit`` bytes in all): whole when
    nothing was cut, else its head and tail with a marker between them saying how many bytes were cut.

    The head shows how a command started, the tail how it ended (errors are usually last). Characters are
    never split at the cut.
    """
    if not kept.cut:
        return Capped(bytes(kept.head + kept.tail).decode("utf-8", errors="replace"), 0)
    head = bytes(kept.head).decode("utf-8", errors="ignore")
    tail = bytes(kept.tail).decode("utf-8", errors="ignore")
    return Capped(
        f"{head}\n[... {kept.cut} bytes cut: output longer than {limit} bytes ...]\n{tail}", kept.cut
    )


def cap_output(text: str, limit: int) -> Capped:
    """Keep at most ``limit`` UTF-8 bytes of ``text``: its head and its tail (see :func:`cap_streamed`)."""
    kept = HeadTail(limit // 2, limit - limit // 2)
    kept.add(text.encode("utf-8"))
    return cap_streamed(kept, limit)


def exec_env(env: Mapping[str, str] | None, exec_id: str) -> dict[str, str]:
    """The environment of an execute_command call: the client's, plus the call's id
    (:data:`ENV_EXEC_ID`), which marks every process it starts."""
    return {**(env or {}), ENV_EXEC_ID: exec_id}


# Stops what a cancelled call started, however it detached: every process of the container whose
# environment holds the call's id (readable: the same user's) gets TERM, then KILL one second later.
# POSIX sh, tr and grep, and /proc.
STOP_SCRIPT = r"""
m="$1=$2"
pids() {
  for d in /proc/[0-9]*; do
    if tr '\000' '\n' < "$d/environ" 2>/dev/null | grep -qx -- "$m"; then echo "${d#/proc/}"; fi
  done
}
p=$(pids)
[ -n "$p" ] || exit 0
kill -TERM $p 2>/dev/null
sleep 1
p=$(pids)
[ -z "$p" ] || kill -KILL $p 2>/dev/null
exit 0
"""


def stop_argv(exec_id: str) -> list[str]:
    return ["/bin/sh", "-c", STOP_SCRIPT, "leap0-stop", ENV_EXEC_ID, exec_id]


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
_LIMITS = (
    "vcpu 1-8, memory 512-8192 MiB (even), timeout 1-28800 s, idle_timeout 1-86400 s with "
    "persistent_workspace=true"
)


def failure_message(exc: BaseException, sandbox_id: str | None = None) -> str:
    """The one-line cause of a failed tool call and what to do about it, for every error the SDK raises.

    Also covers the Kubernetes client's connection errors (the API server is down or unreachable). URL query
    strings (an exec URL holds the command and its environment), URL credentials and header values are
    redacted.
    """
    from leap0.exceptions import (
        ApiError,
        ApiUnreachableError,
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

    text = redact(" ".join(str(exc).split()))
    if isinstance(exc, ToolFailure):
        return text
    if isinstance(exc, SandboxNotFoundError):
        return not_found_message(sandbox_id or exc.sandbox_id)
    if isinstance(exc, SandboxValidationError) and exc.reason == c.REASON_PAUSE_REFUSED:
        return (
            f"{text}. Through this server: create a new sandbox with persistent_workspace=true; this one "
            "keeps running"
        )
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
    if isinstance(exc, ApiError) and not _is_connection_error(exc):
        if exc.status == 404 and exc.kind == "namespaces" and exc.name:
            return (
                f"namespace {exc.name} does not exist; create it with kubectl create namespace {exc.name} "
                "(or start the MCP server with --namespace naming one that exists)"
            )
        hint = "call again later; if it persists, the cluster needs attention"
        if exc.status in (401, 403):
            hint = "the MCP server's Kubernetes credentials lack access (check its RBAC or kubeconfig)"
        elif exc.status == 404:  # (not a sandbox, not a namespace: the Sandbox resource itself)
            hint = "is leap0 installed in this cluster? Its CRDs (crds/, or the Helm chart) must be"
        return f"the Kubernetes API answered {exc.status}: {text}; {hint}"
    if isinstance(exc, ApiUnreachableError):
        return f"{text[:300]} Call again later."
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

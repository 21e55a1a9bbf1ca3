"""``Leap0Client``: sandboxes through the cluster's Kubernetes API (kubeconfig or in-cluster config)."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import datetime
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn

import leap0_contract as c
from leap0._kube import api_call_errors, load_configuration, resolve_namespace
from leap0._redact import redact
from leap0._telemetry import Telemetry, make_telemetry
from leap0.exceptions import (
    ApiError,
    ApiUnreachableError,
    Leap0Error,
    SandboxFailedError,
    SandboxNotFoundError,
    SandboxNotRunningError,
    SandboxTimeoutError,
    SandboxValidationError,
)
from leap0.models import (
    EnvInput,
    JsonDict,
    SandboxData,
    SandboxRequest,
    activity_patch,
    api_error_message,
    api_error_reason,
    api_error_subject,
    build_otel_secret,
    build_sandbox_body,
    generate_sandbox_name,
    merge_env,
    normalize_env,
    normalize_network,
    normalize_workspace,
    otel_export_env,
    otel_secret_name,
    pause_refusal,
    pause_verdict,
    records_activity,
    resolve_create_args,
    resume_verdict,
)
from leap0.sandbox import Sandbox

DEFAULT_WAIT_TIMEOUT_S = 180.0
_NAME_ATTEMPTS = 3
logger = logging.getLogger("leap0")
# A watched Sandbox's verdict: "done", "failed" or "pending".
Verdict = Callable[[Mapping[str, Any]], str]


def wait_verdict(obj: Mapping[str, Any]) -> str:
    """``done`` (Running), ``failed`` (Failed or Expired) or ``pending``: where a watched Sandbox stands."""
    phase = (obj.get("status") or {}).get("phase")
    if phase == c.PHASE_RUNNING:
        return "done"
    if phase in c.TERMINAL_PHASES:
        return "failed"
    return "pending"


class Leap0Client:
    """Entry point of the SDK.

    ``Leap0Client(namespace=None, kubeconfig=None, sdk_otel_enabled=None)``: the kubeconfig file given, else
    ``$KUBECONFIG``, else ``~/.kube/config``, else the in-cluster service account. The namespace is the
    argument, else the kubeconfig context's (or the pod's), else ``default``. ``sdk_otel_enabled`` turns the
    SDK's own spans and metrics on or off (None: ``LEAP0_SDK_OTEL_ENABLED``, else on when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set). ``tracer_provider``/``meter_provider`` override the providers
    used when telemetry is on (default: the application's global ones, else the SDK's own OTLP/HTTP ones).
    ``auto_resume`` (default True): an operation on a paused sandbox (``process.execute``, ``filesystem``)
    resumes it first and waits until it is Running; False raises ``SandboxNotRunningError`` instead.
    """

    def __init__(
        self,
        namespace: str | None = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        sdk_otel_enabled: bool | None = None,
        *,
        auto_resume: bool = True,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        import kubernetes.client

        k8s: Any = kubernetes.client

        env = dict(os.environ)
        self._configuration, configured_ns = load_configuration(kubeconfig, env)
        self.namespace = resolve_namespace(namespace, configured_ns)
        self._api_client: Any = k8s.ApiClient(self._configuration)
        self._custom: Any = k8s.CustomObjectsApi(self._api_client)
        self._core: Any = k8s.CoreV1Api(self._api_client)
        self._telemetry: Telemetry = make_telemetry(sdk_otel_enabled, env, tracer_provider, meter_provider)
        self._closed = False
        self.auto_resume = auto_resume
        # When this client last recorded the use of each sandbox (monotonic seconds): at most one write per
        # sandbox every ACTIVITY_WRITE_INTERVAL_S.
        self._activity: dict[tuple[str, str], float] = {}
        self._activity_lock = threading.Lock()
        self.sandboxes = SandboxesClient(self)

    @property
    def sdk_otel_enabled(self) -> bool:
        return self._telemetry.enabled

    def close(self) -> None:
        """Release connections and flush/shut down the SDK's own telemetry providers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._telemetry.close()
        finally:
            self._api_client.close()

    def __enter__(self) -> Leap0Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise Leap0Error("this Leap0Client is closed")

    def _record_use(self, sandbox: SandboxData) -> None:
        """Record that ``sandbox`` is being used (for its idleTimeout): the ``leap0.dev/last-activity``
        annotation, at most once per ``ACTIVITY_WRITE_INTERVAL_S`` per sandbox from this client, and only for
        sandboxes that can go idle. Best effort: a failed write is logged, the operation goes on."""
        if not records_activity(sandbox):
            return
        key = (sandbox.namespace or self.namespace, sandbox.id)
        now = time.monotonic()
        with self._activity_lock:
            last = self._activity.get(key)
            if last is not None and now - last < c.ACTIVITY_WRITE_INTERVAL_S:
                return
            self._activity[key] = now
        try:
            self._custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                key[0],
                c.SANDBOX_PLURAL,
                sandbox.id,
                activity_patch(datetime.datetime.now(datetime.UTC)),
                _content_type="application/merge-patch+json",
            )
        except api_call_errors() as exc:
            logger.debug("recording the use of sandbox %s failed: %s", sandbox.id, exc)
            with self._activity_lock:
                self._activity.pop(key, None)

    def __repr__(self) -> str:
        return f"Leap0Client(namespace={self.namespace!r}, host={self._configuration.host!r})"


def _raise_api(exc: Any, *, sandbox_id: str | None, namespace: str) -> NoReturn:
    """Translate a kubernetes ApiException (or urllib3's error when no answer came) into the SDK's typed
    errors."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        cause = redact(str(getattr(exc, "reason", None) or exc))  # MaxRetryError: the last attempt's error
        raise ApiUnreachableError(
            f"cannot reach the Kubernetes API server ({cause}); is the cluster up, and is it the one the "
            "kubeconfig names?"
        ) from exc
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    message = api_error_message(body, f"{getattr(exc, 'reason', '') or 'API error'} (HTTP {status})")
    reason = api_error_reason(body)
    if status == 404 and sandbox_id is not None:
        raise SandboxNotFoundError(sandbox_id, namespace) from exc
    if status == 422:
        raise SandboxValidationError(message, status=status, reason=reason) from exc
    kind, name = api_error_subject(body)
    raise ApiError(message, status=status, reason=reason, kind=kind, name=name) from exc


class SandboxesClient:
    """``client.sandboxes``: create, get, list, delete Sandbox objects in the client's namespace."""

    def __init__(self, client: Leap0Client) -> None:
        self._client = client

    # --- thin API calls ---------------------------------------------------------------------------
    def _ns(self) -> str:
        return self._client.namespace

    def _get_obj(self, sandbox_id: str) -> JsonDict:
        try:
            obj: JsonDict = self._client._custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, self._ns(), c.SANDBOX_PLURAL, sandbox_id
            )
        except api_call_errors() as exc:
            _raise_api(exc, sandbox_id=sandbox_id, namespace=self._ns())
        return obj

    def _bind(self, obj: Mapping[str, Any]) -> Sandbox:
        return Sandbox.from_object(obj, self._client)

    # --- public API -------------------------------------------------------------------------------
    def create(
        self,
        template: str | None = None,
        vcpu: int | None = None,
        memory: int | None = None,
        timeout: int | None = None,
        env_vars: EnvInput | None = None,
        otel_export: bool | None = None,
        wait: bool = True,
        *,
        image: str | None = None,
        disk: int | None = None,
        command: Sequence[str] | None = None,
        args: Sequence[str] | None = None,
        telemetry_sidecar: bool | None = None,
        telemetry_logs: bool | None = None,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S,
        template_name: str | None = None,
        memory_mib: int | None = None,
        timeout_min: int | None = None,
        telemetry: bool | None = None,
        http_timeout: float | None = None,
        network: Mapping[str, Any] | None = None,
        workspace: Mapping[str, Any] | None = None,
        idle_timeout: int | None = None,
        on_timeout: str | None = None,
    ) -> Sandbox:
        """Create a sandbox and (``wait=True``) return it once it is Running.

        ``vcpu`` (1-8), ``memory`` (MiB, 512-8192, even) and ``timeout`` (seconds, 1-28800) left as None come
        from the template, else the operator's defaults (1, 1024, 300). The API validates ranges and its
        message comes back as ``SandboxValidationError``. ``env_vars`` is a ``{"NAME": "value"}`` dict or a
        list of Kubernetes EnvVar dicts. ``otel_export=True`` forwards telemetry produced inside the sandbox
        to the local ``OTEL_EXPORTER_OTLP_ENDPOINT`` (headers through a Secret owned by the Sandbox).
        Hosted-SDK spellings: ``template_name``, ``memory_mib``, ``timeout_min`` (minutes), ``telemetry``
        (= ``otel_export``). ``network={"policy": "DenyAll", "allowCidrs": [...]}`` sets ``spec.network``
        (policies ``Internet``, ``DenyAll``, ``AllowAll``, ``Custom``; unset: the template's, else the
        operator's default). ``workspace={"persistent": True}`` puts ``/workspace`` on a PersistentVolumeClaim
        kept while the sandbox is paused (``storageClassName`` optional); ``idle_timeout`` (seconds without an
        SDK or MCP operation) and ``on_timeout="Pause"`` pause it by themselves (both need a persistent
        workspace). ``telemetry_logs=False`` turns sandbox logs off (``spec.telemetry.logs``: the output of
        the sandbox's command and of ``process.execute`` as OTLP log records; unset: the template's, else on
        with the sidecar). Raises ``SandboxFailedError`` (with the operator's reason) if the sandbox fails,
        ``SandboxTimeoutError`` if it is not Running within ``wait_timeout`` seconds (the sandbox is kept).
        """
        self._client._check_open()
        tmpl, vcpu_, memory_, timeout_ = resolve_create_args(
            template=template,
            template_name=template_name,
            vcpu=vcpu,
            memory=memory,
            memory_mib=memory_mib,
            timeout=timeout,
            timeout_min=timeout_min,
        )
        if otel_export is not None and telemetry is not None and otel_export != telemetry:
            raise TypeError("give either otel_export or telemetry (its hosted-SDK alias), not both")
        export = bool(otel_export if otel_export is not None else telemetry)
        for label, value in (("idle_timeout", idle_timeout),):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{label} must be an int number of seconds, got {value!r}")
        request = SandboxRequest(
            template=tmpl,
            image=image,
            vcpu=vcpu_,
            memory=memory_,
            disk=disk,
            timeout=timeout_,
            env=tuple(normalize_env(env_vars)),
            command=tuple(command) if command is not None else None,
            args=tuple(args) if args is not None else None,
            telemetry_sidecar=telemetry_sidecar,
            telemetry_logs=telemetry_logs,
            network=normalize_network(network),
            workspace=normalize_workspace(workspace),
            idle_timeout=idle_timeout,
            on_timeout=on_timeout,
            labels=dict(labels) if labels else None,
            otel_export=export,
        )
        with self._client._telemetry.operation(c.SDK_OP_SANDBOXES_CREATE) as op:
            obj = self._create_obj(request, name=name, http_timeout=http_timeout)
            op.set_sandbox_id(obj["metadata"]["name"])
            if not wait:
                return self._bind(obj)
            return self._bind(self._wait_running(obj, wait_timeout))

    def _create_obj(
        self, request: SandboxRequest, *, name: str | None, http_timeout: float | None
    ) -> JsonDict:
        """POST the Sandbox of ``request`` (and, for ``otel_export``, then its headers' Secret, owned by the
        Sandbox), named ``name`` or a generated name (another one on a name clash)."""
        ns = self._ns()
        attempts = 1 if name is not None else _NAME_ATTEMPTS
        for attempt in range(attempts):
            sandbox_name = name if name is not None else generate_sandbox_name()
            attempt_request = request
            secret_data: dict[str, str] | None = None
            if request.otel_export:
                otel_env, secret_data = otel_export_env(os.environ, otel_secret_name(sandbox_name))
                # the user's own env_vars win on equal names
                attempt_request = dataclasses.replace(request, env=tuple(merge_env(otel_env, request.env)))
            body = build_sandbox_body(attempt_request, name=sandbox_name, namespace=ns)
            try:
                obj: JsonDict = self._client._custom.create_namespaced_custom_object(
                    c.GROUP, c.VERSION, ns, c.SANDBOX_PLURAL, body, _request_timeout=http_timeout
                )
            except api_call_errors() as exc:
                if getattr(exc, "status", None) == 409 and attempt + 1 < attempts:
                    continue
                _raise_api(exc, sandbox_id=None, namespace=ns)
            if secret_data is None:
                return obj
            # The Secret after the Sandbox, owned by it from the start: the operator references only Secrets
            # owned by the Sandbox (or labelled for sandboxes), and waits for one that does not exist yet.
            secret = build_otel_secret(
                name=otel_secret_name(sandbox_name),
                namespace=ns,
                sandbox_name=sandbox_name,
                data=secret_data,
                owner_uid=obj["metadata"]["uid"],
            )
            try:
                self._client._core.create_namespaced_secret(ns, secret, _request_timeout=http_timeout)
            except api_call_errors() as exc:
                # Without its Secret the sandbox would wait for nothing: take it back.
                with contextlib.suppress(*api_call_errors()):
                    self._client._custom.delete_namespaced_custom_object(
                        c.GROUP, c.VERSION, ns, c.SANDBOX_PLURAL, sandbox_name
                    )
                if getattr(exc, "status", None) == 409 and attempt + 1 < attempts:
                    continue
                _raise_api(exc, sandbox_id=None, namespace=ns)
            return obj
        raise ApiError("could not find a free sandbox name", status=409)  # pragma: no cover

    def _delete_secret_quietly(self, secret_name: str) -> None:
        with contextlib.suppress(*api_call_errors()):
            self._client._core.delete_namespaced_secret(secret_name, self._ns())

    def _wait_running(self, obj: Mapping[str, Any], wait_timeout: float) -> Mapping[str, Any]:
        """Watch a new Sandbox until it is Running (``_wait``)."""
        return self._wait(obj, wait_timeout, wait_verdict, "Running", "starting")

    def _wait(
        self, obj: Mapping[str, Any], wait_timeout: float, verdict: Verdict, goal: str, doing: str
    ) -> Mapping[str, Any]:
        """Watch the Sandbox (field selector on its name, from ``obj``'s resourceVersion) until ``verdict``
        says ``done`` (``goal`` and ``doing`` name it in the errors: ``Running``, ``starting``); ``failed``
        raises the operator's reason."""
        import kubernetes.watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        watch_mod: Any = kubernetes.watch
        name = obj["metadata"]["name"]
        ns = self._ns()
        deadline = time.monotonic() + wait_timeout
        latest: Mapping[str, Any] = obj
        resource_version = obj["metadata"].get("resourceVersion")
        while True:
            where = verdict(latest)
            if where == "done":
                return latest
            if where == "failed":
                status = latest.get("status") or {}
                sb = Sandbox.from_object(latest)
                raise SandboxFailedError(name, status.get("phase", c.PHASE_FAILED), sb.reason, sb.message)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                sb = Sandbox.from_object(latest)
                raise SandboxTimeoutError(
                    f"sandbox {name!r} not {goal} after {wait_timeout:g} s "
                    f"(phase {sb.phase or 'none yet'}{', ' + sb.reason if sb.reason else ''})",
                    sandbox_id=name,
                    phase=sb.phase,
                    reason=sb.reason,
                )
            w: Any = watch_mod.Watch()
            try:
                for event in w.stream(
                    self._client._custom.list_namespaced_custom_object,
                    c.GROUP,
                    c.VERSION,
                    ns,
                    c.SANDBOX_PLURAL,
                    field_selector=f"metadata.name={name}",
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=max(1, math.ceil(remaining)),
                    # the read timeout ends the watch at the deadline even if the server is late to
                    _request_timeout=(10, max(0.05, remaining)),
                ):
                    kind = event.get("type")
                    raw = event.get("raw_object") or {}
                    rv = (raw.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        resource_version = rv
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        raise SandboxNotFoundError(name, ns, f"sandbox {name!r} was deleted while {doing}")
                    if (raw.get("metadata") or {}).get("name") != name:
                        continue
                    latest = raw
                    if verdict(latest) != "pending":
                        break
                    if time.monotonic() >= deadline:
                        break
            except ApiException as exc:
                if exc.status == 410:  # too old: start again from the current object
                    latest = self._get_obj(name)
                    resource_version = latest["metadata"].get("resourceVersion")
                    continue
                _raise_api(exc, sandbox_id=name, namespace=ns)
            except Urllib3Error:
                pass  # read timeout or dropped watch: the loop checks the deadline and watches again
            finally:
                w.stop()

    def get(self, sandbox_id: str) -> Sandbox:
        """The sandbox with this id (``SandboxNotFoundError`` if there is none)."""
        self._client._check_open()
        with self._client._telemetry.operation(c.SDK_OP_SANDBOXES_GET, sandbox_id):
            return self._bind(self._get_obj(sandbox_id))

    def list(self, label_selector: str | None = None) -> list[Sandbox]:
        """Every sandbox in the client's namespace (optionally filtered by a label selector)."""
        self._client._check_open()
        with self._client._telemetry.operation(c.SDK_OP_SANDBOXES_LIST) as op:
            items = [self._bind(item) for item in self._list_objs(label_selector)]
            op.set_attribute("leap0.sandbox.count", len(items))
            return items

    def _list_objs(self, label_selector: str | None = None) -> builtins.list[JsonDict]:
        """The Sandbox objects of the namespace as the API returns them (the MCP server reads annotations)."""
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        try:
            result = self._client._custom.list_namespaced_custom_object(
                c.GROUP, c.VERSION, self._ns(), c.SANDBOX_PLURAL, **kwargs
            )
        except api_call_errors() as exc:
            _raise_api(exc, sandbox_id=None, namespace=self._ns())
        return builtins.list(result.get("items") or [])

    def delete(self, sandbox: str | Sandbox) -> None:
        """Delete a sandbox by id or object (``SandboxNotFoundError`` if it does not exist)."""
        self._client._check_open()
        sandbox_id = sandbox.id if isinstance(sandbox, Sandbox) else sandbox
        with self._client._telemetry.operation(c.SDK_OP_SANDBOXES_DELETE, sandbox_id):
            try:
                self._client._custom.delete_namespaced_custom_object(
                    c.GROUP, c.VERSION, self._ns(), c.SANDBOX_PLURAL, sandbox_id
                )
            except api_call_errors() as exc:
                _raise_api(exc, sandbox_id=sandbox_id, namespace=self._ns())

    def set_timeout(self, sandbox: str | Sandbox, timeout: int) -> Sandbox:
        """Set ``spec.timeout`` (lifetime in seconds from creation; the API checks 1-28800)."""
        self._client._check_open()
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise TypeError(f"timeout must be an int number of seconds, got {timeout!r}")
        sandbox_id = sandbox.id if isinstance(sandbox, Sandbox) else sandbox
        with self._client._telemetry.operation(c.SDK_OP_SANDBOXES_SET_TIMEOUT, sandbox_id):
            try:
                obj = self._client._custom.patch_namespaced_custom_object(
                    c.GROUP,
                    c.VERSION,
                    self._ns(),
                    c.SANDBOX_PLURAL,
                    sandbox_id,
                    {"spec": {"timeout": timeout}},
                    _content_type="application/merge-patch+json",
                )
            except api_call_errors() as exc:
                _raise_api(exc, sandbox_id=sandbox_id, namespace=self._ns())
            return self._bind(obj)

    def _patch_spec(self, sandbox_id: str, spec: JsonDict) -> JsonDict:
        try:
            obj: JsonDict = self._client._custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self._ns(),
                c.SANDBOX_PLURAL,
                sandbox_id,
                {"spec": spec},
                _content_type="application/merge-patch+json",
            )
        except api_call_errors() as exc:
            _raise_api(exc, sandbox_id=sandbox_id, namespace=self._ns())
        return obj

    def pause(
        self, sandbox: str | Sandbox, *, wait: bool = True, wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S
    ) -> Sandbox:
        """Pause a sandbox (``spec.paused: true``): its pod is deleted gracefully (the app gets SIGTERM) and
        its persistent workspace kept; with ``wait``, return once it is ``Paused``. A sandbox without a
        persistent workspace cannot be paused: ``SandboxValidationError`` (reason ``PauseRefused``) says how
        to get one, and nothing is changed. Pausing a paused sandbox does nothing."""
        self._client._check_open()
        sandbox_id = sandbox.id if isinstance(sandbox, Sandbox) else sandbox
        with self._client._telemetry.operation(c.SDK_OP_SANDBOXES_PAUSE, sandbox_id):
            obj = self._get_obj(sandbox_id)
            refusal = pause_refusal(obj)
            if refusal is not None:
                raise SandboxValidationError(refusal, reason=c.REASON_PAUSE_REFUSED)
            if (obj.get("spec") or {}).get("paused") is not True:
                obj = self._patch_spec(sandbox_id, {"paused": True})
            if not wait:
                return self._bind(obj)
            generation = (obj.get("metadata") or {}).get("generation")
            try:
                return self._bind(
                    self._wait(obj, wait_timeout, lambda o: pause_verdict(o, generation), "Paused", "pausing")
                )
            except SandboxFailedError as exc:
                latest = self._get_obj(sandbox_id)
                refused = (latest.get("status") or {}).get("phase") not in c.TERMINAL_PHASES
                if not refused:
                    raise
                # The operator refused it (the workspace came from the template): take the ask back.
                with contextlib.suppress(Leap0Error):
                    self._patch_spec(sandbox_id, {"paused": False})
                message = Sandbox.from_object(latest).pause_refused or str(exc)
                raise SandboxValidationError(message, reason=c.REASON_PAUSE_REFUSED) from None

    def resume(
        self, sandbox: str | Sandbox, *, wait: bool = True, wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S
    ) -> Sandbox:
        """Resume a paused sandbox (``spec.paused: false``): a new pod on the same workspace, the same
        identity, a new ``started_at``, and its timeout counted again from now; with ``wait``, return once it
        is ``Running``. Resuming a running sandbox does nothing."""
        self._client._check_open()
        sandbox_id = sandbox.id if isinstance(sandbox, Sandbox) else sandbox
        with self._client._telemetry.operation(c.SDK_OP_SANDBOXES_RESUME, sandbox_id):
            obj = self._get_obj(sandbox_id)
            phase = (obj.get("status") or {}).get("phase")
            if phase in c.TERMINAL_PHASES:
                raise SandboxNotRunningError(f"sandbox {sandbox_id!r} is {phase}: it cannot be resumed")
            if (obj.get("spec") or {}).get("paused") is True:
                obj = self._patch_spec(sandbox_id, {"paused": False})
            if not wait:
                return self._bind(obj)
            generation = (obj.get("metadata") or {}).get("generation")
            return self._bind(
                self._wait(obj, wait_timeout, lambda o: resume_verdict(o, generation), "Running", "resuming")
            )

"""The HTTP face of the embedded API server (aiohttp): routing, content negotiation, watch streams.

Handlers stay thin: the API semantics live in :mod:`.store`, patches in :mod:`.patching`, selectors in
:mod:`.selectors`. See docs/emulator-fidelity.md for what this does and does not do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import yaml
from aiohttp import web

from . import openapi, protobuf, tables, validation
from .catalog import Resource
from .errors import ApiError, bad_request, not_found, status_body
from .patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from .routing import Target, parse_resource_path
from .selectors import SelectorError, field_matcher, label_matcher
from .store import DEFAULT_HISTORY, Event, Obj, Store, Watcher, now_iso

SERVER_VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.3-leap0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.26.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# (request, namespace, pod name, subresource "exec" | "attach" | "log") -> the response.
SubresourceHandler = Callable[[web.Request, str, str, str], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _flag(value: str | None) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it (kubernetes_asyncio sends ``True``)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type="application/json")


def _error(err: ApiError) -> web.Response:
    return _json(err.status(), err.code)


def user_agent_product(user_agent: str) -> str:
    """``kopf`` of ``kopf/1.37``, ``kubectl`` of ``kubectl/v1.37.1 (linux/amd64) ...``."""
    first = (user_agent or "").strip().split(" ", 1)[0]
    return first.split("/", 1)[0] or "unknown"


async def default_subresource_handler(
    request: web.Request, namespace: str, name: str, sub: str
) -> web.StreamResponse:
    """No kubelet runs pods here: answer as a real server does for a pod without a node."""
    return _json(status_body(400, "BadRequest", f"pod {name} does not have a host assigned"), 400)


class ApiServer:
    """An in-memory Kubernetes API server: ``await start()``, talk to ``url``, ``await stop()``."""

    def __init__(
        self,
        crds: Iterable[dict[str, Any]] = (),
        *,
        history_size: int = DEFAULT_HISTORY,
        bookmark_interval: float = 60.0,
        collect_dangling: bool = True,
    ) -> None:
        self.store = Store(history_size, collect_dangling=collect_dangling)
        self.bookmark_interval = bookmark_interval
        crd_res = self.store.catalogue.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert crd_res is not None
        for crd in crds:
            self.store.create(crd_res, "", crd)
        ns_res = self.store.catalogue.get("", "v1", "namespaces")
        assert ns_res is not None
        self.store.create(ns_res, "", {"metadata": {"name": "default"}})
        # Overridable hooks: the SDK plugs its exec implementation here, the local runner its logs.
        self.exec_handler: SubresourceHandler = default_subresource_handler
        self.log_handler: SubresourceHandler = default_subresource_handler
        # Test hook (fault injection): sees every request first; a response it returns is sent instead.
        self.intercept: Callable[[web.Request], web.StreamResponse | None] | None = None
        self.mutations: Counter[str] = Counter()
        self.requests = 0
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner: web.AppRunner | None = None
        self._watchers: set[Watcher] = set()
        self.url = ""

    # --- lifecycle ----------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        loop = asyncio.get_running_loop()

        def schedule(fn: Callable[[], None]) -> None:
            loop.call_soon(fn)  # garbage collection runs after the request that caused it

        self.store.schedule = schedule
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- dispatch -----------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        path = request.path
        if request.method in MUTATING and not path.startswith("/leap0/"):
            self.mutations[user_agent_product(request.headers.get("User-Agent", ""))] += 1
        if self.intercept is not None and (injected := self.intercept(request)) is not None:
            return injected
        validation.begin_request(request.query.get("fieldValidation", ""))
        try:
            target = parse_resource_path(path)
            if target is None:
                return await self._non_resource(request, path)
            response = await self._resource(request, target)
            if not response.prepared:
                for text in validation.take_warnings():
                    response.headers.add("Warning", f"299 - {json.dumps(text)}")
            return response
        except ApiError as err:
            return _error(err)
        except SelectorError as err:
            return _error(bad_request(str(err)))
        except PatchError as err:
            reason = {400: "BadRequest", 415: "UnsupportedMediaType"}.get(err.code, "Invalid")
            return _json(status_body(err.code, reason, str(err)), err.code)
        except Exception as exc:  # a bug here: answer a Status as the real server does, and say where
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return _json(status_body(500, "InternalError", f"Internal error occurred: {exc!r}"), 500)

    async def _non_resource(self, request: web.Request, path: str) -> web.StreamResponse:
        path = path.rstrip("/") or "/"
        if path == "/leap0/stats":
            if request.method == "DELETE":
                self.mutations.clear()
                self.requests = 0
            return _json(
                {
                    "mutations": dict(self.mutations),
                    "total": sum(self.mutations.values()),
                    "requests": self.requests,
                }
            )
        if request.method != "GET":
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return _json(SERVER_VERSION)
        if path == "/api":
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                    ],
                }
            )
        if path == "/apis":
            groups = [self._group(g, vs) for g, vs in self.store.catalogue.groups().items()]
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            return self._resource_list("", parts[1])
        if parts[0] == "apis" and len(parts) == 2:
            versions = self.store.catalogue.groups().get(parts[1])
            if not versions:
                raise self._no_resource()
            return _json(self._group(parts[1], versions))
        if parts[0] == "apis" and len(parts) == 3:
            return self._resource_list(parts[1], parts[2])
        if parts[:2] == ["openapi", "v3"]:
            return self._openapi(parts[2:])
        raise self._no_resource()

    @staticmethod
    def _no_resource() -> ApiError:
        return ApiError(404, "NotFound", "the server could not find the requested resource", {})

    @staticmethod
    def _group(group: str, versions: list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _resource_list(self, group: str, version: str) -> web.Response:
        resources = self.store.catalogue.in_group_version(group, version)
        if not resources:
            raise self._no_resource()
        entries = [e for r in resources for e in r.discovery_entries()]
        gv = f"{group}/{version}" if group else version
        return _json(
            {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}
        )

    def _openapi(self, rest: list[str]) -> web.Response:
        crds = self.store.crds()
        doc: dict[str, Any] | None
        if not rest:
            doc = openapi.openapi_v3_root(crds)
        elif rest[0] == "api" and len(rest) == 2:
            doc = openapi.openapi_v3_document(crds, "", rest[1])
        elif rest[0] == "apis" and len(rest) == 3:
            doc = openapi.openapi_v3_document(crds, rest[1], rest[2])
        else:
            doc = None
        if doc is None:
            raise self._no_resource()
        return _json(doc)

    # --- resources ----------------------------------------------------------------------------------------
    async def _resource(self, request: web.Request, t: Target) -> web.StreamResponse:
        res = self.store.catalogue.get(t.group, t.version, t.plural)
        if res is None or (t.namespace is not None and not res.namespaced):
            raise self._no_resource()
        q = request.query
        method = request.method
        dry_run = q.get("dryRun") == "All"
        if t.name is None:  # collection
            if method == "GET":
                if _flag(q.get("watch")):
                    return await self._watch(request, res, t.namespace)
                return self._list(request, res, t.namespace)
            if res.namespaced and t.namespace is None:
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            namespace = t.namespace or ""
            if method == "POST":
                obj = self.store.create(res, namespace, await self._body(request), dry_run=dry_run)
                return _json(self._out(res, obj), 201)
            if method == "DELETE":
                return await self._delete_collection(request, res, namespace, dry_run)
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if res.namespaced and t.namespace is None:
            raise self._no_resource()
        namespace = t.namespace or ""
        sub = t.subresource
        if sub in ("exec", "attach", "log"):
            if res.key != ("", "pods"):
                raise self._no_resource()
            self.store.require(res, namespace, t.name)
            handler = self.log_handler if sub == "log" else self.exec_handler
            return await handler(request, namespace, t.name, sub)
        if sub not in ("", "status") or (sub == "status" and not res.has_status):
            raise self._no_resource()
        if method == "GET":
            obj = self.store.require(res, namespace, t.name)
            if self._wants_table(request):
                return _json(
                    self._table(request, res, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]})
                )
            if "as=PartialObjectMetadata" in request.headers.get("Accept", ""):
                # metadata only (what the operator asks of a Secret): the data never leaves the server
                return _json(
                    {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"],
                    }
                )
            return _json(self._out(res, obj))
        if method == "PUT":
            obj = self.store.update(
                res, namespace, t.name, await self._body(request), subresource=sub, dry_run=dry_run
            )
            return _json(self._out(res, obj))
        if method == "PATCH":
            return await self._patch(request, res, namespace, t.name, sub, dry_run)
        if method == "DELETE" and not sub:
            return await self._delete(request, res, namespace, t.name, dry_run)
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    @staticmethod
    async def _body(request: web.Request) -> Any:
        if request.content_type == "application/vnd.kubernetes.protobuf":
            # kubectl's typed clients (kubectl create namespace|configmap|secret|serviceaccount) send these.
            try:
                return protobuf.decode_object(await request.read())
            except protobuf.ProtobufError as exc:
                raise ApiError(415, "UnsupportedMediaType", str(exc)) from exc
        text = await request.text()
        try:
            if "yaml" in request.content_type:
                return yaml.safe_load(text)
            return json.loads(text) if text else {}
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the request body is not valid {request.content_type}: {exc}") from exc

    @staticmethod
    def _out(res: Resource, obj: Obj) -> Obj:
        if obj.get("apiVersion") != res.group_version:
            return {**obj, "apiVersion": res.group_version}
        return obj

    # --- list and tables ----------------------------------------------------------------------------------
    def _matchers(self, request: web.Request, res: Resource) -> Callable[[Obj], bool]:
        lm = label_matcher(request.query.get("labelSelector"))
        fm = field_matcher(request.query.get("fieldSelector"), res.field_labels)

        def match(obj: Obj) -> bool:
            if lm is not None and not lm(obj["metadata"].get("labels") or {}):
                return False
            return fm is None or fm(obj)

        return match

    def _list(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        match = self._matchers(request, res)
        st = self.store.state(res.key)
        items = [o for o in st.iter_objects(namespace) if match(o)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        token = request.query.get("continue")
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request("invalid continue token") from exc
            items = [o for o in items if [o["metadata"].get("namespace", ""), o["metadata"]["name"]] > after]
        try:
            limit = int(request.query.get("limit") or 0)
        except ValueError as exc:
            raise bad_request("limit must be an integer") from exc
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            start = [last.get("namespace", ""), last["name"]]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"start": start}).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if self._wants_table(request):
            return _json(self._table(request, res, items, meta))
        body = {
            "kind": f"{res.kind}List",
            "apiVersion": res.group_version,
            "metadata": meta,
            "items": [self._out(res, o) for o in items],
        }
        return _json(body)

    @staticmethod
    def _wants_table(request: web.Request) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    def _table(
        self, request: web.Request, res: Resource, objects: list[Obj], meta: dict[str, Any]
    ) -> dict[str, Any]:
        crd = self.store.crd_for(res)
        objects = [self._out(res, o) for o in objects]
        table = tables.render_table(crd, res.version, objects, meta)
        include = request.query.get("includeObject", "Metadata")
        for row, obj in zip(table.get("rows") or [], objects, strict=False):
            if include == "None":
                row.pop("object", None)
            elif include == "Object":
                row["object"] = obj
            elif "object" not in row or row["object"] is None:
                row["object"] = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                }
        return table

    # --- watch --------------------------------------------------------------------------------------------
    async def _watch(self, request: web.Request, res: Resource, namespace: str | None) -> web.StreamResponse:
        q = request.query
        match = self._matchers(request, res)
        table = self._wants_table(request)
        rv_param = q.get("resourceVersion", "")
        send_initial = _flag(q.get("sendInitialEvents"))
        bookmarks = _flag(q.get("allowWatchBookmarks"))
        try:
            timeout = float(q.get("timeoutSeconds") or 1800)
        except ValueError as exc:
            raise bad_request("timeoutSeconds must be a number") from exc
        if send_initial and q.get("resourceVersionMatch") not in (None, "NotOlderThan"):
            raise bad_request("sendInitialEvents requires resourceVersionMatch=NotOlderThan")
        st = self.store.state(res.key)
        watcher = Watcher(namespace)
        st.watchers.add(watcher)
        self._watchers.add(watcher)
        try:
            lines: list[bytes] = []
            error: ApiError | None = None
            if send_initial or rv_param in ("", "0"):
                current = sorted(
                    (o for o in st.iter_objects(namespace) if match(o)),
                    key=lambda o: int(o["metadata"]["resourceVersion"]),
                )
                lines.extend(self._event_line(res, "ADDED", o, table) for o in current)
                if send_initial:
                    lines.append(self._bookmark(res, initial_end=True))
            else:
                try:
                    since = int(rv_param)
                except ValueError as exc:
                    raise bad_request(f"invalid resourceVersion: {rv_param}") from exc
                try:
                    for ev in self.store.replay_since(res.key, since):
                        line = self._filtered(res, ev, namespace, match, table)
                        if line is not None:
                            lines.append(line)
                except ApiError as err:
                    error = err
            response = web.StreamResponse(
                headers={"Content-Type": "application/json", "Cache-Control": "no-cache"}
            )
            response.enable_chunked_encoding()
            await response.prepare(request)
            if error is not None:
                await response.write(_dumps({"type": "ERROR", "object": error.status()}) + b"\n")
                return response
            if lines:
                await response.write(b"".join(lines))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            next_bookmark = loop.time() + self.bookmark_interval
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now if bookmarks and not table else deadline - now
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.0))
                except TimeoutError:
                    if bookmarks and not table and loop.time() >= next_bookmark:
                        await response.write(self._bookmark(res))
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
                if event is None:
                    break
                batch = [event]
                while not watcher.queue.empty():  # drain what queued up meanwhile: one write for a burst
                    more = watcher.queue.get_nowait()
                    if more is None:
                        break
                    batch.append(more)
                out = [
                    line
                    for ev in batch
                    if (line := self._filtered(res, ev, namespace, match, table)) is not None
                ]
                if out:
                    await response.write(b"".join(out))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
            return response
        except ConnectionError:  # the client went away: nothing more to send
            return response
        finally:
            st.watchers.discard(watcher)
            self._watchers.discard(watcher)

    def _filtered(
        self, res: Resource, ev: Event, namespace: str | None, match: Callable[[Obj], bool], table: bool
    ) -> bytes | None:
        """The event as this watcher sees it: selector changes turn MODIFIED into ADDED or DELETED."""
        if namespace is not None and ev.obj["metadata"].get("namespace") != namespace:
            return None
        now = match(ev.obj)
        if ev.type == "MODIFIED" and ev.old is not None:
            before = match(ev.old)
            if now and not before:
                return self._event_line(res, "ADDED", ev.obj, table)
            if before and not now:
                # as the watch cache does: the object as it was (it matched), at the event's resourceVersion
                rv = ev.obj["metadata"]["resourceVersion"]
                left = {**ev.old, "metadata": {**ev.old["metadata"], "resourceVersion": rv}}
                return self._event_line(res, "DELETED", left, table)
        return self._event_line(res, ev.type, ev.obj, table) if now else None

    def _event_line(self, res: Resource, kind: str, obj: Obj, table: bool) -> bytes:
        payload: Any = self._out(res, obj)
        if table:
            payload = tables.render_table(
                self.store.crd_for(res),
                res.version,
                [payload],
                {"resourceVersion": obj["metadata"]["resourceVersion"]},
            )
            for row in payload.get("rows") or []:
                if row.get("object") is None:
                    row["object"] = {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"],
                    }
        return _dumps({"type": kind, "object": payload}) + b"\n"

    def _bookmark(self, res: Resource, *, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": res.kind, "apiVersion": res.group_version, "metadata": meta}
        return _dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    # --- patch --------------------------------------------------------------------------------------------
    async def _patch(
        self, request: web.Request, res: Resource, namespace: str, name: str, sub: str, dry_run: bool
    ) -> web.Response:
        ctype = request.content_type
        if ctype == "application/apply-patch+yaml":
            return await self._apply(request, res, namespace, name, sub, dry_run)
        patch = await self._body(request)
        old = self.store.require(res, namespace if res.namespaced else "", name)
        if ctype == "application/json-patch+json":
            new = json_patch(old, patch)
        elif ctype == "application/merge-patch+json":
            new = merge_patch(old, patch)
        elif ctype == "application/strategic-merge-patch+json":
            if not res.strategic_merge:
                raise PatchError(
                    "strategic merge patch is not supported for custom resources: use merge or json patch",
                    415,
                )
            new = strategic_merge_patch(old, patch)
        else:
            raise PatchError(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml, application/strategic-merge-patch+json",
                415,
            )
        if not isinstance(new, dict):
            raise PatchError("the patched object must be an object", 422)
        obj = self.store.update(res, namespace, name, new, subresource=sub, dry_run=dry_run)
        return _json(self._out(res, obj))

    async def _apply(
        self, request: web.Request, res: Resource, namespace: str, name: str, sub: str, dry_run: bool
    ) -> web.Response:
        """Server-side apply, simplified: create when absent, else merge the applied configuration in."""
        manager = request.query.get("fieldManager")
        if not manager:
            raise bad_request(
                "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
            )
        applied = await self._body(request)
        if not isinstance(applied, dict):
            raise bad_request("the applied configuration must be an object")
        entry = {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": res.group_version,
            "time": now_iso(),
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }
        if sub:
            entry["subresource"] = sub
        ns = namespace if res.namespaced else ""
        old = self.store.get(res.key, ns, name)
        meta = dict(applied.get("metadata") or {})
        meta.setdefault("name", name)
        if old is None:
            if sub:
                raise not_found(res.group, res.plural, name)
            meta["managedFields"] = [entry]
            obj = self.store.create(res, ns, {**applied, "metadata": meta}, dry_run=dry_run)
            return _json(self._out(res, obj), 201)
        managed = [m for m in old["metadata"].get("managedFields") or [] if m.get("manager") != manager]
        applied = {**applied, "metadata": {**meta, "managedFields": [*managed, entry]}}
        merged = strategic_merge_patch(old, applied) if res.strategic_merge else merge_patch(old, applied)
        obj = self.store.update(res, namespace, name, merged, subresource=sub, dry_run=dry_run)
        return _json(self._out(res, obj))

    # --- delete -------------------------------------------------------------------------------------------
    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.can_read_body:
            body = await self._body(request)
            if isinstance(body, dict):
                options = body
        q = request.query
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if _flag(q.get("orphanDependents")) or options.get("orphanDependents") is True:
            options.setdefault("propagationPolicy", "Orphan")
        return options

    async def _delete(
        self, request: web.Request, res: Resource, namespace: str, name: str, dry_run: bool
    ) -> web.Response:
        options = await self._delete_options(request)
        dry_run = dry_run or options.get("dryRun") == ["All"]
        obj, gone_now = self.store.delete(
            res,
            namespace,
            name,
            propagation=options.get("propagationPolicy"),
            preconditions=options.get("preconditions"),
            dry_run=dry_run,
        )
        if not gone_now:
            return _json(self._out(res, obj), 202)
        if res.returns_deleted_object:
            return _json(self._out(res, obj))
        details = {"name": name, "kind": res.plural, "uid": obj["metadata"]["uid"]}
        if res.group:
            details["group"] = res.group
        body = status_body(200, "", "", details)
        body.pop("message", None)
        return _json(body)

    async def _delete_collection(
        self, request: web.Request, res: Resource, namespace: str, dry_run: bool
    ) -> web.Response:
        options = await self._delete_options(request)
        match = self._matchers(request, res)
        st = self.store.state(res.key)
        deleted = []
        for obj in [o for o in st.iter_objects(namespace if res.namespaced else None) if match(o)]:
            try:
                out, _ = self.store.delete(
                    res,
                    namespace,
                    obj["metadata"]["name"],
                    propagation=options.get("propagationPolicy"),
                    dry_run=dry_run,
                )
            except ApiError as err:
                if err.code == 404:
                    continue
                raise
            deleted.append(self._out(res, out))
        return _json(
            {"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": {}, "items": deleted}
        )

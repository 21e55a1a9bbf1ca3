"""The in-memory object store: objects, the cluster-wide resourceVersion, watch history and GC.

Everything runs on the server's event loop thread, so each operation is atomic without locks. Stored
objects are never mutated in place: every change stores a new dict, so watch history and responses
can share them.

Indexes (all O(1) per lookup):
- ``ResourceState.objects[namespace][name]`` per (group, plural); namespace "" for cluster-scoped kinds;
- ``uids[uid] -> (key, namespace, name)``;
- ``dependents[owner uid] -> {dependent uid}`` for ownerReference garbage collection;
- ``namespace_counts[namespace]`` so a terminating namespace knows when it is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import admission, podsecurity
from .catalog import CRD_KEY, NAMESPACE_KEY, POD_KEY, Catalogue, Resource, resources_from_crd
from .errors import ApiError, already_exists, bad_request, conflict, gone, invalid, not_found
from .validation import SchemaCache

Obj = dict[str, Any]
Key = tuple[str, str]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
DEFAULT_HISTORY = 10_000
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    """A watch event: ``obj`` is the object after the change, ``old`` before it (MODIFIED only)."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None = None


@dataclass(eq=False)
class Watcher:
    namespace: str | None
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


@dataclass
class ResourceState:
    objects: dict[str, dict[str, Obj]] = field(default_factory=dict)
    history: deque[Event] = field(default_factory=deque)
    compacted_rv: int = 0  # the newest event no longer in history (watches from before it get 410)
    watchers: set[Watcher] = field(default_factory=set)
    count: int = 0

    def iter_objects(self, namespace: str | None) -> Iterator[Obj]:
        if namespace is not None:
            yield from self.objects.get(namespace, {}).values()
        else:
            for by_name in self.objects.values():
                yield from by_name.values()


def _meta(obj: Obj) -> dict[str, Any]:
    meta: dict[str, Any] = obj["metadata"]
    return meta


def _owner_uids(obj: Obj) -> set[str]:
    return {
        ref["uid"]
        for ref in _meta(obj).get("ownerReferences") or []
        if isinstance(ref, dict) and "uid" in ref
    }


def _check_type(res: Resource, body: Obj) -> None:
    """A body of another kind or group than the URL's is refused, as the server's decoder does."""
    kind, api_version = body.get("kind"), body.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else res.group
    if (kind not in (None, "", res.kind)) or (api_version not in (None, "") and group != res.group):
        raise bad_request(
            f"the object provided is unrecognized (must be of type {res.kind}): "
            f"{api_version}, Kind={kind} does not match {res.group_version}, Kind={res.kind}"
        )


def _generate_suffix() -> str:
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))


def _strip_volatile(obj: Obj) -> Obj:
    meta = {k: v for k, v in _meta(obj).items() if k not in ("resourceVersion", "managedFields")}
    return {**obj, "metadata": meta}


class Store:
    """Objects by (group, plural) -> namespace -> name, plus the API semantics that change them."""

    def __init__(self, history_size: int = DEFAULT_HISTORY, *, collect_dangling: bool = True) -> None:
        self.catalogue = Catalogue.builtin()
        self.rv = 0
        self.history_size = history_size
        self.collect_dangling = collect_dangling
        self.states: dict[Key, ResourceState] = {}
        self.uids: dict[str, tuple[Key, str, str]] = {}
        self.dependents: dict[str, set[str]] = {}
        self.namespace_counts: dict[str, int] = {}
        self.schemas = SchemaCache()
        # Garbage collection work, run after the request that caused it (the server sets loop.call_soon).
        self.schedule: Callable[[Callable[[], None]], None] = lambda fn: fn()

    # --- reading ----------------------------------------------------------------------------------------
    def state(self, key: Key) -> ResourceState:
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = ResourceState(history=deque(maxlen=self.history_size))
        return st

    def get(self, key: Key, namespace: str, name: str) -> Obj | None:
        return self.state(key).objects.get(namespace, {}).get(name)

    def require(self, res: Resource, namespace: str, name: str) -> Obj:
        obj = self.get(res.key, namespace, name)
        if obj is None:
            raise not_found(res.group, res.plural, name)
        return obj

    def by_uid(self, uid: str) -> Obj | None:
        where = self.uids.get(uid)
        return None if where is None else self.get(*where)

    def crd_for(self, res: Resource) -> Obj | None:
        return self.get(CRD_KEY, "", res.crd_name) if res.crd_name else None

    def crds(self) -> list[Obj]:
        return list(self.state(CRD_KEY).iter_objects(None))

    # --- events -----------------------------------------------------------------------------------------
    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def _emit(self, key: Key, event: Event) -> None:
        st = self.state(key)
        if st.history.maxlen is not None and len(st.history) == st.history.maxlen and st.history:
            st.compacted_rv = st.history[0].rv
        st.history.append(event)
        for watcher in st.watchers:
            watcher.queue.put_nowait(event)

    def replay_since(self, key: Key, rv: int) -> list[Event]:
        """Events newer than ``rv``; 410 Gone when some of them are no longer retained."""
        st = self.state(key)
        if rv < st.compacted_rv:
            raise gone(rv, st.history[0].rv if st.history else self.rv)
        return [ev for ev in st.history if ev.rv > rv]

    # --- index maintenance --------------------------------------------------------------------------------
    def _put(self, key: Key, namespace: str, name: str, obj: Obj, old: Obj | None) -> None:
        st = self.state(key)
        st.objects.setdefault(namespace, {})[name] = obj
        uid = _meta(obj)["uid"]
        if old is None:
            st.count += 1
            self.uids[uid] = (key, namespace, name)
            if namespace:
                self.namespace_counts[namespace] = self.namespace_counts.get(namespace, 0) + 1
        new_owners = _owner_uids(obj)
        old_owners = _owner_uids(old) if old is not None else set()
        for owner in old_owners - new_owners:
            self._unlink(owner, uid)
        for owner in new_owners - old_owners:
            self.dependents.setdefault(owner, set()).add(uid)

    def _unlink(self, owner: str, uid: str) -> None:
        deps = self.dependents.get(owner)
        if deps is not None:
            deps.discard(uid)
            if not deps:
                del self.dependents[owner]

    # --- create -------------------------------------------------------------------------------------------
    def create(self, res: Resource, namespace: str, body: Any, *, dry_run: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        _check_type(res, body)
        meta = dict(body.get("metadata") or {})
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            ns_obj = self.get(NAMESPACE_KEY, "", namespace)
            if ns_obj is None:
                raise not_found("", "namespaces", namespace)
            if _meta(ns_obj).get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{res.plural} "{meta.get("name", "")}" is forbidden: unable to create new content in '
                    f"namespace {namespace} because it is being terminated",
                )
        else:
            meta.pop("namespace", None)
            namespace = ""
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{_generate_suffix()}"
            else:
                raise invalid(
                    res.kind,
                    res.group,
                    "",
                    [
                        (
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
        name = meta["name"]
        if not (res.is_custom and self.crd_for(res) is not None):
            admission.validate_name(res, name)  # custom resources: schema.py checks metadata with the rest
        if self.get(res.key, namespace, name) is not None:
            raise already_exists(res.group, res.plural, name)
        for drop in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(drop, None)
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta["creationTimestamp"] = now_iso()
        obj: Obj = {**body, "apiVersion": res.group_version, "kind": res.kind, "metadata": meta}
        if res.has_status and res.is_custom:
            obj.pop("status", None)  # the status subresource's strategy drops status on create
        obj = admission.default_on_create(res, obj)
        admission.validate_labels(res, name, obj)
        admission.validate_network_policy(res, name, obj)
        if res.key == CRD_KEY:
            admission.check_crd(obj)
            obj["status"] = admission.crd_status(obj, meta["creationTimestamp"])
        obj = self._schema(res, obj, None)
        if res.key == POD_KEY:  # validating admission: after the object's own validation, as upstream
            labels = _meta(self.get(NAMESPACE_KEY, "", namespace) or {}).get("labels") or {}
            refused = podsecurity.refusal(obj, labels)
            if refused is not None:
                raise ApiError(403, "Forbidden", refused, {"name": name, "kind": "pods"})
        if dry_run:
            return obj
        _meta(obj)["resourceVersion"] = str(self._bump())
        self._put(res.key, namespace, name, obj, None)
        self._emit(res.key, Event(self.rv, "ADDED", obj))
        if res.key == CRD_KEY:
            self._serve_crd(obj)
        if self.collect_dangling and _owner_uids(obj):
            uid = meta["uid"]
            self.schedule(lambda: self._collect_if_orphaned(uid))
        return obj

    def _schema(self, res: Resource, obj: Obj, old: Obj | None) -> Obj:
        crd = self.crd_for(res)
        if crd is None:
            return self.schemas.prepare_builtin(res.group, res.version, res.kind, obj)
        return self.schemas.prepare(crd, res.version, obj, old)

    def _serve_crd(self, crd: Obj) -> None:
        self.catalogue.remove_crd(_meta(crd)["name"])
        for r in resources_from_crd(crd):
            self.catalogue.add(r)

    # --- update -------------------------------------------------------------------------------------------
    def update(
        self,
        res: Resource,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        """PUT semantics (patches end here too, with the patched object as body)."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        _check_type(res, body)
        namespace = namespace if res.namespaced else ""
        old = self.require(res, namespace, name)
        meta_in = body.get("metadata") or {}
        if meta_in.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta_in.get('name')}) does not match the name on the URL ({name})"
            )
        if res.namespaced and meta_in.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        wanted_rv = meta_in.get("resourceVersion")
        old_meta = _meta(old)
        if wanted_rv and str(wanted_rv) != old_meta["resourceVersion"]:
            raise conflict(res.group, res.plural, name)
        if subresource == "status":
            new: Obj = {k: v for k, v in old.items() if k != "status"}
            if "status" in body:
                new["status"] = body["status"]
            new["metadata"] = dict(old_meta)
            if "managedFields" in meta_in:
                new["metadata"]["managedFields"] = meta_in["managedFields"]
        else:
            new = {**body, "apiVersion": old["apiVersion"], "kind": old["kind"]}
            if res.has_status:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
            meta = dict(meta_in)
            for keep in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if keep in old_meta:
                    meta[keep] = old_meta[keep]
                else:
                    meta.pop(keep, None)
            meta["name"] = name
            if res.namespaced:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            new["metadata"] = meta
        if old_meta.get("deletionTimestamp"):
            added = set(_meta(new).get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise invalid(
                    res.kind,
                    res.group,
                    name,
                    [
                        (
                            "metadata.finalizers",
                            "FieldValueForbidden",
                            "Forbidden: no new finalizers can be added if the object is being deleted",
                        )
                    ],
                )
        builtin = self.crd_for(res) is None
        if builtin:  # decoding first (unknown fields: a 400 under Strict), then the kind's update rules
            new = self._schema(res, new, old)
        if subresource != "status":
            new = admission.check_update(res, name, new, old)
            admission.validate_labels(res, name, new)
            admission.validate_network_policy(res, name, new)
            if res.key == CRD_KEY:
                admission.check_crd(new)
        if not builtin:
            new = self._schema(res, new, old)
        if self._changed_generation(res, new, old):
            _meta(new)["generation"] = int(old_meta.get("generation", 1)) + 1
        if dry_run:
            return new
        return self._commit(res.key, namespace, name, new, old)

    @staticmethod
    def _changed_generation(res: Resource, new: Obj, old: Obj) -> bool:
        if res.has_status:
            return new.get("spec") != old.get("spec")
        skip = ("metadata", "apiVersion", "kind")
        return {k: v for k, v in new.items() if k not in skip} != {
            k: v for k, v in old.items() if k not in skip
        }

    def _commit(self, key: Key, namespace: str, name: str, new: Obj, old: Obj) -> Obj:
        """Store an update: no-op if nothing changed; deletion when a deleted object's last finalizer goes."""
        new_meta = _meta(new)
        if _strip_volatile(new) == _strip_volatile(old):
            return old
        new_meta["resourceVersion"] = str(self._bump())
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._remove(key, namespace, name, new, bumped=True)
            return new
        self._put(key, namespace, name, new, old)
        self._emit(key, Event(self.rv, "MODIFIED", new, old))
        if key == CRD_KEY:
            self._serve_crd(new)
        return new

    # --- delete -------------------------------------------------------------------------------------------
    def delete(
        self,
        res: Resource,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """DELETE semantics: returns the object and whether it is gone now (else it waits on finalizers)."""
        namespace = namespace if res.namespaced else ""
        obj = self.require(res, namespace, name)
        meta = _meta(obj)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(
                res.group,
                res.plural,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
            )
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != meta["resourceVersion"]:
            raise conflict(
                res.group,
                res.plural,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        if propagation not in (None, "", "Background", "Foreground", "Orphan"):
            raise bad_request(f"unsupported propagationPolicy: {propagation}")
        if dry_run:
            return obj, True
        if meta.get("deletionTimestamp"):
            return obj, False
        finalizers = list(meta.get("finalizers") or [])
        if propagation == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if propagation == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
        is_namespace = res.key == NAMESPACE_KEY
        if is_namespace and name in PROTECTED_NAMESPACES:
            raise ApiError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )
        if not finalizers and not is_namespace:
            self._remove(res.key, namespace, name, obj)
            return obj, True
        new_meta = {
            **meta,
            "deletionTimestamp": now_iso(),
            "deletionGracePeriodSeconds": 0,
            "finalizers": finalizers,
            "generation": int(meta.get("generation", 1)) + 1,
            "resourceVersion": str(self._bump()),
        }
        if not finalizers:
            del new_meta["finalizers"]
        new = {**obj, "metadata": new_meta}
        if is_namespace:
            new["status"] = {**(obj.get("status") or {}), "phase": "Terminating"}
        self._put(res.key, namespace, name, new, obj)
        self._emit(res.key, Event(self.rv, "MODIFIED", new, obj))
        uid = meta["uid"]
        if is_namespace:
            self.schedule(lambda: self._empty_namespace(name))
        if FOREGROUND in finalizers:
            self.schedule(lambda: self._foreground(uid))
        if ORPHAN in finalizers:
            self.schedule(lambda: self._orphan(uid))
        return new, False

    def _remove(self, key: Key, namespace: str, name: str, final: Obj, *, bumped: bool = False) -> None:
        """The object leaves the store: DELETED event, indexes, then GC of what depended on it."""
        st = self.state(key)
        by_name = st.objects.get(namespace, {})
        if by_name.pop(name, None) is None:
            return
        if not by_name:
            st.objects.pop(namespace, None)
        st.count -= 1
        meta = _meta(final)
        if not bumped:
            meta = {**meta, "resourceVersion": str(self._bump())}
            final = {**final, "metadata": meta}
        uid = meta["uid"]
        self.uids.pop(uid, None)
        self._emit(key, Event(self.rv, "DELETED", final))
        for owner in _owner_uids(final):
            self._unlink(owner, uid)
            self.schedule(functools.partial(self._foreground_progress, owner))
        if self.dependents.get(uid):
            self.schedule(lambda: self._collect_dependents(uid))
        if namespace:
            left = self.namespace_counts.get(namespace, 1) - 1
            if left:
                self.namespace_counts[namespace] = left
            else:
                self.namespace_counts.pop(namespace, None)
                self.schedule(lambda: self._finish_namespace(namespace))
        if key == CRD_KEY:
            self._unserve_crd(final)
        if key == NAMESPACE_KEY:
            self.namespace_counts.pop(name, None)

    def _unserve_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        st = self.states.get(key)
        if st is not None:
            for obj in list(st.iter_objects(None)):
                m = _meta(obj)
                self._remove(key, m.get("namespace", ""), m["name"], obj)
        self.catalogue.remove_crd(_meta(crd)["name"])

    def _resource_for(self, key: Key) -> Resource | None:
        versions = self.catalogue.versions_of(key)
        return versions[0] if versions else None

    # --- garbage collection --------------------------------------------------------------------------------
    def _delete_quietly(self, uid: str, propagation: str) -> None:
        where = self.uids.get(uid)
        if where is None:
            return
        key, namespace, name = where
        res = self._resource_for(key)
        if res is None:
            return
        with contextlib.suppress(ApiError):
            self.delete(res, namespace, name, propagation=propagation)

    def _collect_dependents(self, owner_uid: str) -> None:
        """Background collection: dependents whose owners are all gone are deleted."""
        owner = self.by_uid(owner_uid)
        if owner is not None:
            return
        for dep_uid in list(self.dependents.pop(owner_uid, set())):
            dep = self.by_uid(dep_uid)
            if dep is None:
                continue
            if any(self.by_uid(o) is not None for o in _owner_uids(dep) - {owner_uid}):
                continue
            self._delete_quietly(dep_uid, "Background")

    def _collect_if_orphaned(self, uid: str) -> None:
        """A dependent created with owners that do not exist is collected, as the real GC does."""
        obj = self.by_uid(uid)
        if obj is None:
            return
        owners = _owner_uids(obj)
        if owners and all(self.by_uid(o) is None for o in owners):
            self._delete_quietly(uid, "Background")

    def _foreground(self, owner_uid: str) -> None:
        """Foreground deletion: delete every dependent; release the owner when no blocking one is left."""
        for dep_uid in list(self.dependents.get(owner_uid, set())):
            self._delete_quietly(dep_uid, "Foreground")
        self._foreground_progress(owner_uid)

    def _foreground_progress(self, owner_uid: str) -> None:
        owner = self.by_uid(owner_uid)
        if owner is None or FOREGROUND not in (_meta(owner).get("finalizers") or []):
            return
        for dep_uid in self.dependents.get(owner_uid, set()):
            dep = self.by_uid(dep_uid)
            if dep is None:
                continue
            for ref in _meta(dep).get("ownerReferences") or []:
                if ref.get("uid") == owner_uid and ref.get("blockOwnerDeletion"):
                    return
        self._drop_finalizer(owner_uid, FOREGROUND)

    def _orphan(self, owner_uid: str) -> None:
        for dep_uid in list(self.dependents.get(owner_uid, set())):
            where = self.uids.get(dep_uid)
            dep = self.by_uid(dep_uid)
            if where is None or dep is None:
                continue
            meta = dict(_meta(dep))
            refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner_uid]
            if refs:
                meta["ownerReferences"] = refs
            else:
                meta.pop("ownerReferences", None)
            self._commit(where[0], where[1], where[2], {**dep, "metadata": meta}, dep)
        self._drop_finalizer(owner_uid, ORPHAN)

    def _drop_finalizer(self, uid: str, finalizer: str) -> None:
        where = self.uids.get(uid)
        obj = self.by_uid(uid)
        if where is None or obj is None:
            return
        meta = dict(_meta(obj))
        meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != finalizer]
        if not meta["finalizers"]:
            del meta["finalizers"]
        self._commit(where[0], where[1], where[2], {**obj, "metadata": meta}, obj)

    # --- namespaces ----------------------------------------------------------------------------------------
    def _empty_namespace(self, namespace: str) -> None:
        """A terminating namespace: delete everything in it, then the namespace once it is empty."""
        for key, st in list(self.states.items()):
            res = self._resource_for(key)
            if res is None or not res.namespaced:
                continue
            for obj in list(st.objects.get(namespace, {}).values()):
                self._delete_quietly(_meta(obj)["uid"], "Background")
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        ns = self.get(NAMESPACE_KEY, "", namespace)
        if ns is None or not _meta(ns).get("deletionTimestamp") or self.namespace_counts.get(namespace):
            return
        self._remove(NAMESPACE_KEY, "", namespace, ns)


__all__ = ["DEFAULT_HISTORY", "Event", "Obj", "ResourceState", "Store", "Watcher"]

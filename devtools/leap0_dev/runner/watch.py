"""The API side of the runner: a watch of the pods, the loop that starts and stops them, and the status writes
(merge patches of ``pods/status``, only when something changed)."""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import shutil
import threading
import time
from typing import Any

from leap0_dev import podspec
from leap0_dev.podspec import Obj

from .config import REQUEST_TIMEOUT_S, WATCH_GRACE_S, RunnerConfig, api_errors
from .pod import LocalPod, Lookups, machine

# A queue event after a list (not an API event type): the uids listed, so pods gone meanwhile are stopped.
_SYNC = "SYNC"


class Runner:
    """Watches pods through the Kubernetes API and runs them here. ``start()`` / ``stop()``."""

    def __init__(self, api_client: Any, config: RunnerConfig | None = None) -> None:
        from kubernetes import client  # the dev extra's client; imported late to keep podspec light

        self.config = config or RunnerConfig()
        self.core = client.CoreV1Api(api_client)
        self.host = machine()
        self.pods: dict[str, LocalPod] = {}
        self.events: queue.Queue[tuple[str, Obj]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._response: Any = None
        self._lock = threading.Lock()
        self.lookups = Lookups(self._secret, self._config_map, self._claim)
        # Who tells whether a claim is gone (its folder then removed): the storage side's part; the kubelet
        # mode gives an admin client, since a kubelet may not read the claim of a pod that went.
        self.claims = self.core
        self.networking = client.NetworkingV1Api(api_client)
        self._said_unenforced = False

    # lookups for secretKeyRef / configMapKeyRef
    def _secret(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
        except api_errors():  # missing, or not readable now: the pod is set up again later
            return None
        if secret.data and key in secret.data:
            return base64.b64decode(secret.data[key]).decode()
        if secret.string_data and key in secret.string_data:
            return str(secret.string_data[key])
        return None

    def _config_map(self, namespace: str, name: str, key: str) -> str | None:
        try:
            config_map = self.core.read_namespaced_config_map(
                name, namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        except api_errors():  # missing, or not readable now: the pod is set up again later
            return None
        return None if not config_map.data or key not in config_map.data else str(config_map.data[key])

    def _claim(self, namespace: str, name: str) -> str | None:
        """The uid of a PersistentVolumeClaim that exists and is not being deleted, else None."""
        try:
            claim = self.core.read_namespaced_persistent_volume_claim(
                name, namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        except api_errors():  # missing, or not readable now: the pod is set up again later
            return None
        meta = claim.metadata
        if meta is None or meta.deletion_timestamp is not None:
            return None
        return str(meta.uid)

    def _claim_gone(self, namespace: str, name: str, uid: str) -> bool:
        """The claim ``uid`` is known to be gone: not found, being deleted, or replaced by another of its
        name. Any other answer (a kubelet may no longer read the claim of a pod that went, a lost connection)
        keeps its folder: a folder left behind is better than a workspace lost."""
        from kubernetes.client import ApiException

        try:
            claim = self.claims.read_namespaced_persistent_volume_claim(
                name, namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as exc:
            return bool(exc.status == 404)
        except Exception:  # unknown: keep it
            return False
        meta = claim.metadata
        return meta is None or meta.deletion_timestamp is not None or str(meta.uid) != uid

    def _stop_deleted_pod(self, local: LocalPod) -> None:
        """Stop a deleted pod (:meth:`stop_deleted`), then drop the folders of the claims it mounted that are
        gone (deleted with their Sandbox): a claim that is still there keeps its folder for the next pod."""
        self.stop_deleted(local)
        for claim, uid, path in local.claims:
            if self._claim_gone(local.namespace, claim, uid):
                shutil.rmtree(path, ignore_errors=True)
                self.config.log(f"runner: claim {local.namespace}/{claim} is gone: removed its folder")

    def _record_network_policies(self, local: LocalPod) -> None:
        """Record the NetworkPolicies that would apply to the pod and say it once: nothing enforces them here
        (the pod's processes share this machine's network)."""
        try:
            listed = self.networking.list_namespaced_network_policy(
                local.namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        except api_errors():
            return
        policies = [self.networking.api_client.sanitize_for_serialization(p) for p in listed.items]
        selecting = podspec.selecting_policies(local.pod, policies)
        local.network_policies = [str(p["metadata"]["name"]) for p in selecting]
        if not selecting:
            return
        described = podspec.describe_policies(selecting)
        self.config.log(
            f"runner: pod {local.namespace}/{local.name}: NetworkPolicy {described} recorded, not enforced"
            + (
                ""
                if self._said_unenforced
                else " (the local runner has no pod network: its processes reach whatever this machine can;"
                " a cluster's network plugin enforces NetworkPolicies)"
            )
        )
        self._said_unenforced = True

    def start(self) -> Runner:
        for target, name in ((self._watch_loop, "leap0-runner-watch"), (self._run_loop, "leap0-runner")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop watching, then every pod (the run loop does it as it ends: the containers it started die
        with it, by their parent-death signal, so it must outlive them)."""
        self._stop.set()
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.shutdown()
        for thread in self._threads:
            thread.join(15 if thread.name == "leap0-runner-watch" else None)
        self._stop_pods()  # when the run loop could not

    def _stop_pods(self) -> None:
        with self._lock:
            pods = list(self.pods.values())
            self.pods.clear()
        threads = [threading.Thread(target=p.stop) for p in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch_loop(self) -> None:
        """List the pods, then watch from the list's resourceVersion (a raw watch, so ``stop()`` can cut the
        connection at once), as an informer does: a watch that ends is resumed where it stopped; an error
        (a 410 Gone after compaction, a lost connection) lists again, and a pod running here that the new list
        lacks went meanwhile (a forced deletion between two watches) and is stopped as if deleted."""
        selectors: dict[str, Any] = {}
        if self.config.label_selector:
            selectors["label_selector"] = self.config.label_selector
        if self.config.field_selector:
            selectors["field_selector"] = self.config.field_selector
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list(selectors)
                self._response = self._pods(
                    watch=True,
                    timeout_seconds=max(1, round(self.config.watch_timeout)),
                    _request_timeout=(REQUEST_TIMEOUT_S[0], self.config.watch_timeout + WATCH_GRACE_S),
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                    **selectors,
                )
                for line in self._response:
                    if self._stop.is_set():
                        break
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":  # 410 Gone: the resourceVersion was compacted away
                        resource_version = None
                        break
                    resource_version = event["object"]["metadata"].get("resourceVersion") or resource_version
                    if event["type"] != "BOOKMARK":
                        self.events.put((event["type"], event["object"]))
            except Exception as exc:  # list again on any failure while running
                resource_version = None
                if not self._stop.is_set():
                    self.config.log(f"runner: pod watch failed ({exc}); reconnecting")
                    self._stop.wait(1)

    def _pods(self, **kwargs: Any) -> Any:
        if self.config.namespace:
            return self.core.list_namespaced_pod(self.config.namespace, **kwargs)
        return self.core.list_pod_for_all_namespaces(**kwargs)

    def _list(self, selectors: dict[str, Any]) -> str:
        """List the pods: each one as an ADDED event, then a SYNC event naming them all; the resourceVersion
        to watch from."""
        response = self._pods(_preload_content=False, _request_timeout=REQUEST_TIMEOUT_S, **selectors)
        listed = json.loads(response.data)
        for item in listed["items"]:
            self.events.put(("ADDED", item))
        uids = [item["metadata"].get("uid", "") for item in listed["items"]]
        self.events.put((_SYNC, {"metadata": {"uids": uids}}))
        return str(listed["metadata"]["resourceVersion"])

    def _handle(self, kind: str, pod: Obj) -> None:
        if kind == _SYNC:  # after a list: the pods running here it lacks were deleted meanwhile
            listed = set(pod["metadata"]["uids"])
            with self._lock:
                absent = [local.pod for uid, local in self.pods.items() if uid not in listed]
            for deleted in absent:
                self._handle("DELETED", deleted)
            return
        uid = pod["metadata"].get("uid", "")
        gone = kind == "DELETED" or bool(pod["metadata"].get("deletionTimestamp"))
        with self._lock:
            local = self.pods.get(uid)
            if gone:
                if local is not None:
                    del self.pods[uid]
                    local.pod["metadata"] = pod["metadata"]  # the deletion's grace period
                    self.config.log(f"runner: pod {local.namespace}/{local.name} deleted: stopping it")
                    threading.Thread(target=self._stop_deleted_pod, args=(local,), daemon=True).start()
                elif kind != "DELETED":
                    threading.Thread(target=self.release_deleted, args=(pod,), daemon=True).start()
                return
            if local is not None:
                local.pod["metadata"] = pod["metadata"]  # labels and annotations may change; the spec cannot
                return
            if kind == "ERROR":
                return
            taken = {port for p in self.pods.values() for port in p.ports}
            local = LocalPod(pod, self.config, self.host, self.lookups, taken)
            self.pods[uid] = local
        self.config.log(f"runner: starting pod {local.namespace}/{local.name}")
        self._record_network_policies(local)
        local.start()

    def stop_deleted(self, local: LocalPod) -> None:
        """A deleted pod that runs here: stop its containers (the kubelet mode then deletes the object)."""
        local.stop()

    def release_deleted(self, pod: Obj) -> None:
        """A pod being deleted that does not run here (the kubelet mode deletes the object)."""

    def _run_loop(self) -> None:
        try:
            self._run_pods()
        finally:
            self._stop_pods()

    def _run_pods(self) -> None:
        while not self._stop.is_set():
            deadline = time.monotonic() + 0.5
            while True:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    kind, pod = self.events.get(timeout=timeout)
                except queue.Empty:
                    break
                try:
                    self._handle(kind, pod)
                except Exception as exc:  # one bad pod must not stop the runner
                    self.config.log(f"runner: cannot run pod {pod.get('metadata', {}).get('name')}: {exc}")
            self._retry_unset_pods()
            with self._lock:
                pods = list(self.pods.values())
            for local in pods:
                if local.stopping:
                    continue
                status = local.tick()
                if local.last_reported == podspec.comparable(status):
                    continue
                try:
                    self.core.patch_namespaced_pod_status(
                        local.name,
                        local.namespace,
                        {"status": status},
                        _content_type="application/merge-patch+json",
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                    local.last_reported = podspec.comparable(status)
                except api_errors() as exc:  # reported again on the next tick (the pod still runs)
                    if getattr(exc, "status", None) != 404:
                        self.config.log(f"runner: status of {local.namespace}/{local.name}: {exc}")

    def _retry_unset_pods(self) -> None:
        """Set up again the pods that could not be (a Secret, ConfigMap or claim missing, or not readable yet:
        the API server's node authorizer learns of a pod's volumes a moment after it is bound), every
        ``LocalPod.RETRY_S``, as the kubelet retries; the first attempt that works starts the pod."""
        now = time.monotonic()
        with self._lock:
            due = [
                p for p in self.pods.values() if p.error is not None and not p.stopping and now >= p.retry_at
            ]
        for old in due:
            with self._lock:
                if self.pods.get(old.uid) is not old:
                    continue
                taken = {port for p in self.pods.values() if p is not old for port in p.ports}
                fresh = LocalPod(old.pod, self.config, self.host, self.lookups, taken, previous=old)
                self.pods[old.uid] = fresh
            if fresh.error is None:
                self.config.log(f"runner: starting pod {fresh.namespace}/{fresh.name}")
                self._record_network_policies(fresh)
                fresh.start()

    def find(self, namespace: str, name: str) -> LocalPod | None:
        with self._lock:
            return next((p for p in self.pods.values() if p.namespace == namespace and p.name == name), None)

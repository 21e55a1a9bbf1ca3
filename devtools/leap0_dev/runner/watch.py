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

from .config import RunnerConfig
from .pod import LocalPod, Lookups, machine


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
        self.networking = client.NetworkingV1Api(api_client)
        self._said_unenforced = False

    # lookups for secretKeyRef / configMapKeyRef
    def _secret(self, namespace: str, name: str, key: str) -> str | None:
        from kubernetes.client import ApiException

        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException:
            return None
        if secret.data and key in secret.data:
            return base64.b64decode(secret.data[key]).decode()
        if secret.string_data and key in secret.string_data:
            return str(secret.string_data[key])
        return None

    def _config_map(self, namespace: str, name: str, key: str) -> str | None:
        from kubernetes.client import ApiException

        try:
            config_map = self.core.read_namespaced_config_map(name, namespace)
        except ApiException:
            return None
        return None if not config_map.data or key not in config_map.data else str(config_map.data[key])

    def _claim(self, namespace: str, name: str) -> str | None:
        """The uid of a PersistentVolumeClaim that exists and is not being deleted, else None."""
        from kubernetes.client import ApiException

        try:
            claim = self.core.read_namespaced_persistent_volume_claim(name, namespace)
        except ApiException:
            return None
        meta = claim.metadata
        if meta is None or meta.deletion_timestamp is not None:
            return None
        return str(meta.uid)

    def _stop_pod(self, local: LocalPod) -> None:
        """Stop the pod's processes, then drop the folders of the claims it mounted that are gone (deleted
        with their Sandbox): a claim that is still there keeps its folder for the next pod."""
        local.stop()
        for claim, uid, path in local.claims:
            if self._claim(local.namespace, claim) != uid:
                shutil.rmtree(path, ignore_errors=True)
                self.config.log(f"runner: claim {local.namespace}/{claim} is gone: removed its folder")

    def _record_network_policies(self, local: LocalPod) -> None:
        """Record the NetworkPolicies that would apply to the pod and say it once: nothing enforces them here
        (the pod's processes share this machine's network)."""
        from kubernetes.client import ApiException

        try:
            listed = self.networking.list_namespaced_network_policy(local.namespace)
        except ApiException:
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
        """Watch pods (a raw watch, so ``stop()`` can cut the connection at once), reconnecting on failure."""
        while not self._stop.is_set():
            kwargs: dict[str, Any] = {"watch": True, "timeout_seconds": 300, "_preload_content": False}
            if self.config.label_selector:
                kwargs["label_selector"] = self.config.label_selector
            try:
                if self.config.namespace:
                    self._response = self.core.list_namespaced_pod(self.config.namespace, **kwargs)
                else:
                    self._response = self.core.list_pod_for_all_namespaces(**kwargs)
                for line in self._response:
                    if self._stop.is_set():
                        break
                    if line.strip():
                        event = json.loads(line)
                        self.events.put((event["type"], event["object"]))
            except Exception as exc:  # reconnect on any watch failure while running
                if not self._stop.is_set():
                    self.config.log(f"runner: pod watch failed ({exc}); reconnecting")
                    self._stop.wait(1)

    def _handle(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"].get("uid", "")
        gone = kind == "DELETED" or bool(pod["metadata"].get("deletionTimestamp"))
        with self._lock:
            local = self.pods.get(uid)
            if gone:
                if local is not None:
                    del self.pods[uid]
                    self.config.log(f"runner: pod {local.namespace}/{local.name} deleted: stopping it")
                    threading.Thread(target=self._stop_pod, args=(local,), daemon=True).start()
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

    def _run_loop(self) -> None:
        try:
            self._run_pods()
        finally:
            self._stop_pods()

    def _run_pods(self) -> None:
        from kubernetes.client import ApiException

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
                    )
                    local.last_reported = podspec.comparable(status)
                except ApiException as exc:
                    if exc.status != 404:
                        self.config.log(f"runner: status of {local.namespace}/{local.name}: {exc.reason}")

    def find(self, namespace: str, name: str) -> LocalPod | None:
        with self._lock:
            return next((p for p in self.pods.values() if p.namespace == namespace and p.name == name), None)

"""``--kubelet``: this machine as a Node of the real control plane, the local runner as its kubelet.

:class:`LocalNode` gets what the kubelet needs from the :class:`ControlPlane` (a ``system:node:NAME``
kubeconfig, a serving certificate the API server verifies, the CA of the API server's kubelet client
certificate), builds ``leap0-kubelet`` when missing, and runs :class:`leap0_dev.runner.kubelet.Kubelet`.
``leap0 dev control-plane up --kubelet``, ``leap0 dev up --control-plane real`` and the tests'
``kubelet_node`` fixture use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from leap0_dev.nodespec import NodeOptions
from leap0_dev.runner import RunnerConfig
from leap0_dev.runner.kubelet import Kubelet, KubeletSettings

from .build import ensure_kubelet
from .plane import ControlPlane


class LocalNode:
    """The kubelet of one node of ``plane``: ``start()`` registers the Node and runs its pods; ``stop()``.

    Bad options raise :class:`leap0_dev.nodespec.NodeSpecError` before anything starts."""

    def __init__(
        self,
        plane: ControlPlane,
        options: NodeOptions,
        config: RunnerConfig | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.plane = plane
        self.options = options
        self.name = options.node_name()
        self.config = config or RunnerConfig(workdir=plane.data_dir / "pods")
        if log is not None:
            self.config.log = log
        self._clients: list[Any] = []
        self.kubelet: Kubelet | None = None

    @property
    def runner(self) -> Any:
        assert self.kubelet is not None, "start() first"
        return self.kubelet.runner

    def start(self) -> LocalNode:
        from kubernetes import client, config

        shim = ensure_kubelet(progress=self.config.log)
        credentials = self.plane.kubelet_credentials(self.name)
        from_kubeconfig: Any = config.new_client_from_config  # untyped in the client
        node_client = from_kubeconfig(config_file=str(credentials.kubeconfig))
        admin = self.plane.api_client()
        self._clients = [node_client, admin]
        version = str(client.VersionApi(admin).get_code().git_version)
        settings = KubeletSettings(
            node_name=self.name,
            shim=shim,
            serving_cert=credentials.serving_cert,
            serving_key=credentials.serving_key,
            client_ca=credentials.client_ca,
            cpu=self.options.cpu,
            memory=self.options.memory,
            pods=self.options.pods,
            log_file=Path(self.plane.layout.log("leap0-kubelet")),
        )
        try:
            # The admin client reads the NetworkPolicies the runner records: the network plugin's part, which
            # a kubelet may not do.
            self.kubelet = Kubelet(
                node_client, settings, self.config, kubelet_version=version, policy_client=admin
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
            self.kubelet = None
        for api_client in self._clients:
            api_client.close()
        self._clients = []

    def __enter__(self) -> LocalNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

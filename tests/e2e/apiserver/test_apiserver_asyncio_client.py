"""kubernetes_asyncio (what the operator talks through) against the embedded API server."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client, config, watch

from leap0_dev.apiserver import ServerThread

pytestmark = pytest.mark.e2e


async def test_asyncio_client_creates_watches_and_patches_status(
    apiserver: ServerThread, namespace: str
) -> None:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(apiserver.kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
        await core.create_namespaced_pod(namespace, pod)
        # The asyncio client sends watch=True (capitalised): Go's ParseBool accepts it, so must we.
        events = []
        async with watch.Watch() as w:
            async for ev in w.stream(core.list_namespaced_pod, namespace, timeout_seconds=5):
                events.append((ev["type"], ev["object"].metadata.name))
                w.stop()
        assert events == [("ADDED", "p")]
        custom = client.CustomObjectsApi(api)
        body = {"apiVersion": "leap0.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": "s"}, "spec": {}}
        await custom.create_namespaced_custom_object("leap0.dev", "v1alpha1", namespace, "sandboxes", body)
        patched = await custom.patch_namespaced_custom_object_status(
            "leap0.dev",
            "v1alpha1",
            namespace,
            "sandboxes",
            "s",
            {"status": {"phase": "Running"}},
            _content_type="application/merge-patch+json",
        )
        assert patched["status"] == {"phase": "Running"}

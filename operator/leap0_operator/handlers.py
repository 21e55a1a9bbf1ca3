"""kopf wiring (thin): settings, indexes of pods and templates, event handlers feeding the reconciler.

Why event handlers and indexes rather than ``@kopf.on.create``/``on.update`` with progress storage: the
reconcile is level-triggered (recomputed from the Sandbox, its pod and its template each time), so kopf's
per-object progress and diff-base writes would only add API calls. With this layout a new Sandbox costs
exactly one pod POST and one status PATCH, and an idle operator writes nothing.

kopf still does the watching (with server-side label selectors), the index pre-population before any handler
runs (so a restarted operator knows every existing pod before deciding anything), peering between replicas,
authentication and retries of transient API errors.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import kopf

import leap0_contract as contract

from . import config as config_module
from . import k8s
from .reconcile import trim_pod, trim_sandbox
from .resolve import template_id
from .runtime import Key, Runtime, Sources, first

SANDBOXES = (contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL)
TEMPLATES = (contract.GROUP, contract.VERSION, contract.TEMPLATE_PLURAL)
PODS = ("v1", "pods")
SANDBOX_PODS = {contract.LABEL_SANDBOX_ID: kopf.PRESENT}

# Set by ``leap0-operator`` (flags + env) before kopf starts; ``kopf run -m leap0_operator`` reads env alone.
ACTIVE_CONFIG: config_module.OperatorConfig | None = None
ACTIVE_OPTIONS: config_module.RunOptions | None = None


class NoChangeHandlersDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a deep copy of every event's body (its "essence") to diff it for change handlers. This
    operator has none (it is level-triggered), so the essence is empty: no copy per event, nothing stored.
    Adding an ``on.create/update/field`` handler means going back to ``kopf.AnnotationsDiffBaseStorage``."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: kopf.Body) -> Any:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Every kopf setting of the operator, in one place."""
    k8s.check_kopf_private_api()  # fail at startup, with what moved, rather than on the first API call
    config = ACTIVE_CONFIG or config_module.from_environment(os.environ)
    # kopf's own bookkeeping lives under leap0.dev. With only event handlers and indexes there is no
    # finalizer, no progress and no diff base on our objects; these keep any future change handler consistent.
    settings.persistence.finalizer = f"{contract.OPERATOR_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = NoChangeHandlersDiffBase(
        prefix=contract.OPERATOR_PREFIX, key="last-handled-configuration"
    )
    # Only sandbox pods are listed and watched (server-side label selector): other pods cost nothing.
    settings.watching.label_selectors[PODS] = contract.LABEL_SANDBOX_ID
    # Peering: replicas see each other; the keep-alives are not logged. Replicas must not share a priority
    # (kopf pauses all of them then), so without an explicit priority each replica picks a random one.
    settings.peering.stealth = True
    if ACTIVE_OPTIONS is not None:
        settings.peering.name = ACTIVE_OPTIONS.peering_name
        settings.peering.mandatory = ACTIVE_OPTIONS.peering_mandatory
        settings.peering.standalone = ACTIVE_OPTIONS.standalone
    if settings.peering.priority == 0:
        settings.peering.priority = random.randint(1, 1_000_000)
    # Status writes are our own merge patches; kopf posts no Kubernetes Events for us (each is a write).
    settings.posting.enabled = False
    # kopf logs every handled event ("Handler ... succeeded") at INFO: with thousands of sandboxes that is
    # noise (and CPU). Failures are still logged; --verbose/--debug bring the rest back.
    if ACTIVE_OPTIONS is None or not (ACTIVE_OPTIONS.verbose or ACTIVE_OPTIONS.debug):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Leave settings.queueing.worker_limit unset: a limit serialises objects behind the 5 s idle timeout.
    memo.runtime = Runtime(config, settings)
    logger.info(
        "leap0 operator: sidecar %s (cpu %s, memory %s), default image %s, expired retention %gs, peering %s",
        config.sidecar_image,
        config.sidecar_cpu,
        config.sidecar_memory,
        config.default_image,
        config.expired_retention_s,
        "off" if settings.peering.standalone else settings.peering.name,
    )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else the kubeconfig (kopf's own loaders, no Kubernetes client library)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        await runtime.stop()


# Indexers are async so kopf runs them in its loop (sync ones go through a thread pool: slower, GIL-bound).
# Pods and templates are kopf indexes: kopf lists them fully before any handler runs, so a restarted operator
# never mistakes an existing pod for a missing one. Sandboxes need no such guarantee (each one's own event
# triggers its reconcile): the event handler keeps them in a plain dict, saving kopf's indexing per event.
@kopf.index(*PODS, labels=SANDBOX_PODS)
async def pod_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, dict[str, Any]]:
    return {(namespace or "", labels[contract.LABEL_SANDBOX_ID]): trim_pod(body)}


@kopf.index(*TEMPLATES)
async def template_index(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[Key, dict[str, Any]]:
    return {(namespace or "", name): dict(spec)}


Indexes = kopf.Index[Key, dict[str, Any]]


def _runtime(memo: Any, indexes: dict[str, Any]) -> Runtime:
    runtime: Runtime = memo.runtime
    if runtime.sources is None:
        pod_index: Indexes = indexes["pod_index"]
        template_index: Indexes = indexes["template_index"]
        runtime.sources = Sources(
            sandbox=runtime.sandboxes.get,
            pod=lambda key: first(pod_index.get(key), key[1]),
            template=lambda key: first(template_index.get(key)),
        )
        runtime.start()
    return runtime


@kopf.on.event(*SANDBOXES)
async def sandbox_event(
    type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **kwargs: Any
) -> None:
    runtime = _runtime(memo, kwargs)
    key = (namespace or "", name)
    if type == "DELETED":
        runtime.forget(key)
        return
    if runtime.remember(key, trim_sandbox(body)):
        runtime.queue.add(key)


@kopf.on.event(*PODS, labels=SANDBOX_PODS)
async def pod_event(type: str, namespace: str | None, labels: kopf.Labels, memo: Any, **kwargs: Any) -> None:
    runtime = _runtime(memo, kwargs)
    key = (namespace or "", labels[contract.LABEL_SANDBOX_ID])
    if type == "DELETED":
        runtime.pod_deleted(key)
    runtime.queue.add(key)


@kopf.on.event(*TEMPLATES)
async def template_event(type: str, namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    """A template that appears lets the Sandboxes that failed for want of it start (looked at again)."""
    runtime = _runtime(memo, kwargs)
    if type == "DELETED":
        return
    for key, sandbox in list(runtime.sandboxes.items()):
        if (
            key[0] == (namespace or "")
            and template_id(sandbox["spec"]) == name
            and sandbox["status"].get("reason") == contract.REASON_TEMPLATE_NOT_FOUND
        ):
            runtime.queue.add(key)

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
from . import k8s, objects
from .controller import Controller, Sources
from .objects import Key
from .reconcile import trim_pod, trim_sandbox

SANDBOXES = (contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL)
TEMPLATES = (contract.GROUP, contract.VERSION, contract.TEMPLATE_PLURAL)
PODS = ("v1", "pods")
SANDBOX_PODS = {contract.LABEL_SANDBOX_ID: kopf.PRESENT}


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
    """Every kopf setting of the operator, in one place.

    The operator's settings arrive in kopf's memo: ``leap0-operator`` passes ``kopf.run(memo=...)`` with
    ``memo.config`` and ``memo.options`` (flags and environment); under ``kopf run -m leap0_operator``
    the memo has neither, and the settings come from the environment alone (kopf's own flags then do the
    namespaces and peering).
    """
    k8s.check_kopf_private_api()  # fail at startup, with what moved, rather than on the first API call
    config: config_module.OperatorConfig = getattr(memo, "config", None) or config_module.from_environment(
        os.environ
    )
    options: config_module.RunOptions | None = getattr(memo, "options", None)
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
    if options is not None:
        settings.peering.name = options.peering_name
        settings.peering.mandatory = options.peering_mandatory
        settings.peering.standalone = options.standalone
    if settings.peering.priority == 0:
        settings.peering.priority = random.randint(1, 1_000_000)
    # Status writes are our own merge patches; kopf posts no Kubernetes Events for us (each is a write).
    settings.posting.enabled = False
    # kopf logs every handled event ("Handler ... succeeded") at INFO: with thousands of sandboxes that is
    # noise (and CPU). Failures are still logged; --verbose/--debug bring the rest back.
    if options is None or not (options.verbose or options.debug):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Leave settings.queueing.worker_limit unset: a limit serialises objects behind the 5 s idle timeout.
    memo.controller = Controller(config, k8s.Api(settings, logger, retry_delay=config.retry_delay_s))
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
    controller: Controller | None = getattr(memo, "controller", None)
    if controller is not None:
        await controller.stop()


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


def _first(values: Any, name: str | None = None) -> dict[str, Any] | None:
    """The value named ``name`` among an index store's values (any value when ``name`` is None)."""
    for value in values or ():
        if name is None or objects.name(value) == name:
            return dict(value)
    return None


def _controller(memo: Any, indexes: dict[str, Any]) -> Controller:
    """The controller, started by the first handler call (kopf's indexes are reachable only from handlers)."""
    controller: Controller = memo.controller
    if controller.sources is None:
        pods: Indexes = indexes["pod_index"]
        templates: Indexes = indexes["template_index"]
        controller.start(
            Sources(
                sandbox=controller.sandboxes.get,
                pod=lambda key: _first(pods.get(key), key[1]),
                template=lambda key: _first(templates.get(key)),
            )
        )
    return controller


@kopf.on.event(*SANDBOXES)
async def sandbox_event(
    type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **kwargs: Any
) -> None:
    controller = _controller(memo, kwargs)
    key = (namespace or "", name)
    if type == "DELETED":
        controller.sandbox_deleted(key)
    else:
        controller.sandbox_seen(key, trim_sandbox(body))


@kopf.on.event(*PODS, labels=SANDBOX_PODS)
async def pod_event(type: str, namespace: str | None, labels: kopf.Labels, memo: Any, **kwargs: Any) -> None:
    controller = _controller(memo, kwargs)
    controller.pod_seen((namespace or "", labels[contract.LABEL_SANDBOX_ID]), deleted=type == "DELETED")


@kopf.on.event(*TEMPLATES)
async def template_event(type: str, namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    """A template that appears lets the Sandboxes that failed for want of it start (looked at again)."""
    controller = _controller(memo, kwargs)
    if type != "DELETED":
        controller.template_seen((namespace or "", name))

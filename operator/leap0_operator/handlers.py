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

import itertools
import logging
import os
import random
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import kopf

import leap0_contract as contract

from . import config as config_module
from . import k8s
from .controller import Controller
from .network import trim_policy
from .reconcile import trim_pod, trim_sandbox

if TYPE_CHECKING:
    from .metrics import Metrics

SANDBOXES = (contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL)
TEMPLATES = (contract.GROUP, contract.VERSION, contract.TEMPLATE_PLURAL)
PODS = ("v1", "pods")
POLICIES = ("networking.k8s.io", "v1", "networkpolicies")
SANDBOX_PODS = {contract.LABEL_SANDBOX_ID: kopf.PRESENT}
KOPF_DEFAULT_BACKOFFS = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)  # kopf's networking.error_backoffs
# How long kopf keeps a per-object worker after the object's last event (kopf's default: 5 s).
WORKER_IDLE_S = 0.1


class NoChangeHandlersDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a deep copy of every event's body (its "essence") to diff it for change handlers. This
    operator has none (it is level-triggered), so the essence is empty: no copy per event, nothing stored.
    Adding an ``on.create/update/field`` handler means going back to ``kopf.AnnotationsDiffBaseStorage``."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: kopf.Body) -> Any:
        return None


class RetryForever:
    """kopf's delays between attempts of its own API requests (watches, lists, peering), never exhausted.

    kopf's default (1, 1, 2, 3, 5, 8, 13, 21) gives up after 54 s, and a watch that gives up stops the
    operator. Control-plane upgrades take minutes: after kopf's schedule, every ``then`` seconds, for as long
    as it takes. (The operator's own calls do not retry inside the request: ``k8s.Api`` passes no backoffs.)
    """

    def __init__(self, first: Iterable[float] = KOPF_DEFAULT_BACKOFFS, then: float = 10.0) -> None:
        self.first = tuple(first)
        self.then = then

    def __iter__(self) -> Iterator[float]:
        yield from self.first
        yield from itertools.repeat(self.then)


def client_watch_timeout(server_timeout: float) -> float:
    """How long the client waits for a watch request to end by itself: a little above the server's
    ``timeoutSeconds`` (10%, at least 2 s, at most 30 s), so only a silent stream ever reaches it."""
    return server_timeout + min(max(2.0, server_timeout * 0.1), 30.0)


def apply_watch_settings(settings: kopf.OperatorSettings, config: config_module.OperatorConfig) -> None:
    """Watches never hang and outages never stop the operator.

    Every watch asks the server to end it after ``--watch-timeout`` (``timeoutSeconds``; kopf then resumes it
    from the last resourceVersion, or re-lists after 410 Gone); the client abandons a stream silent a little
    longer (a load balancer or NAT that froze the connection). Other requests (lists, our own calls, peering)
    time out after the watch timeout too, at most 60 s, and connecting after at most 10 s. kopf's own requests
    are retried forever (:class:`RetryForever`).
    """
    timeout = config.watch_timeout_s
    settings.watching.server_timeout = int(timeout)  # the API server takes an integer timeoutSeconds
    settings.watching.client_timeout = client_watch_timeout(timeout)
    settings.watching.connect_timeout = min(timeout, 10.0)
    settings.watching.inactivity_timeout = min(
        settings.watching.inactivity_timeout, client_watch_timeout(timeout)
    )
    settings.networking.request_timeout = min(timeout, 60.0)
    settings.networking.connect_timeout = min(timeout, 10.0)
    settings.networking.error_backoffs = RetryForever()


def apply_memory_settings(settings: kopf.OperatorSettings) -> None:
    """Memory follows the number of objects, not the rate of their events.

    kopf hands each object's events to a per-object worker, which lingers ``queueing.idle_timeout`` after its
    last event holding that event's body. The operator's handlers only update a store and queue a key (the
    work queue holds keys, not bodies), so a worker is done at once: it may go after 0.1 s instead of 5 s,
    and a burst of 10,000 pod updates no longer keeps thousands of workers and bodies alive. Big lists come
    in pages of ``LIST_CHUNK`` objects (kopf's initial listings and its re-lists after 410 Gone).
    """
    settings.queueing.idle_timeout = WORKER_IDLE_S
    settings.watching.chunk_size = k8s.LIST_CHUNK


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
    settings.watching.label_selectors[POLICIES] = contract.LABEL_SANDBOX_ID
    # Peering: replicas see each other; the keep-alives are not logged. Replicas must not share a priority
    # (kopf pauses all of them then), so without an explicit priority each replica picks a random one.
    settings.peering.stealth = True
    if options is not None:
        settings.peering.name = options.peering_name
        settings.peering.mandatory = options.peering_mandatory
        settings.peering.standalone = options.standalone
    if settings.peering.priority == 0:
        settings.peering.priority = random.randint(1, 1_000_000)
    # Status writes are our own merge patches. kopf posts no Kubernetes Events (it would turn log lines into
    # writes); the controller posts one per status transition itself (lifecycle.transition_events).
    settings.posting.enabled = False
    # kopf logs every handled event ("Handler ... succeeded") at INFO: with thousands of sandboxes that is
    # noise (and CPU). Failures are still logged; --verbose/--debug bring the rest back.
    if options is None or not (options.verbose or options.debug):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    apply_watch_settings(settings, config)
    apply_memory_settings(settings)
    clusterwide = options.clusterwide if options is not None else False
    # leap0-operator --metrics-port puts the operator's metrics in the memo (see metrics.py); under
    # `kopf run -m leap0_operator` they start here when LEAP0_OPERATOR_METRICS_PORT is set.
    metrics: Metrics | None = getattr(memo, "metrics", None)
    if metrics is None and options is None:
        port = config_module.parse([], os.environ)[1].metrics_port
        if port is not None:
            from .metrics import Metrics

            metrics = memo.metrics = Metrics()
            logger.info("leap0 operator: metrics at http://0.0.0.0:%d/metrics", metrics.serve(port))
    api = k8s.Api(
        settings,
        logger,
        retry_delay=config.retry_delay_s,
        on_request=metrics.count_api_call if metrics is not None else None,
    )
    memo.controller = controller = Controller(config, api, clusterwide=clusterwide, metrics=metrics)
    k8s.WatchRelists(controller.watch_relisted, show_debug=options is not None and options.debug).install()
    logger.info(
        "leap0 operator: sidecar %s (cpu %s, memory %s), default image %s, expired retention %gs, "
        "peering %s, default network policy %s, telemetry egress to %d destination(s), DNS %s/%s",
        config.sidecar_image,
        config.sidecar_cpu,
        config.sidecar_memory,
        config.default_image,
        config.expired_retention_s,
        "off" if settings.peering.standalone else settings.peering.name,
        config.network.default_policy,
        len(config.network.telemetry_egress),
        config.network.dns.namespace,
        ",".join(f"{k}={v}" for k, v in config.network.dns.labels.items()),
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


# kopf lists every indexed resource before any handler runs (its index readiness), so the pod and template
# "indexes" below are how the operator gets that guarantee: a restarted operator never mistakes an existing
# pod for a missing one. They keep nothing in kopf (they return None); they fill the controller's stores,
# which a resync can correct (kopf's indexes cannot be corrected when a re-list misses deleted objects).
# Indexers are async so kopf runs them in its loop (sync ones go through a thread pool). kopf shows indexers
# no deletions: the event handlers take those, and queue the Sandbox's key.
@kopf.index(*PODS, labels=SANDBOX_PODS)
async def pod_index(namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: Any, **_: Any) -> None:
    controller: Controller = memo.controller
    controller.pods.put((namespace or "", labels[contract.LABEL_SANDBOX_ID]), trim_pod(body))


@kopf.index(*POLICIES, labels=SANDBOX_PODS)
async def policy_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: Any, **_: Any
) -> None:
    controller: Controller = memo.controller
    key = (namespace or "", labels[contract.LABEL_SANDBOX_ID])
    if key not in controller.policies:  # the initial listing; later changes go through policy_event
        controller.policies.put(key, trim_policy(body))


@kopf.index(*TEMPLATES)
async def template_index(namespace: str | None, name: str, spec: kopf.Spec, memo: Any, **_: Any) -> None:
    controller: Controller = memo.controller
    controller.templates.put((namespace or "", name), dict(spec))


def _controller(memo: Any) -> Controller:
    """The controller, started by the first handler call (every indexed resource has been listed by then)."""
    controller: Controller = memo.controller
    controller.start()
    return controller


@kopf.on.event(*SANDBOXES)
async def sandbox_event(
    type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
) -> None:
    controller = _controller(memo)
    key = (namespace or "", name)
    if type == "DELETED":
        controller.sandbox_deleted(key)
    else:
        controller.sandbox_seen(key, trim_sandbox(body))


@kopf.on.event(*PODS, labels=SANDBOX_PODS)
async def pod_event(type: str, namespace: str | None, labels: kopf.Labels, memo: Any, **_: Any) -> None:
    controller = _controller(memo)
    key = (namespace or "", labels[contract.LABEL_SANDBOX_ID])
    if type == "DELETED":
        controller.pod_seen(key, None)
    else:
        controller.queue.add(key)  # the indexer has stored the pod


@kopf.on.event(*POLICIES, labels=SANDBOX_PODS)
async def policy_event(
    type: str, namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: Any, **_: Any
) -> None:
    """A sandbox's NetworkPolicy deleted or edited by hand: its live Sandbox puts it back (drift repair)."""
    controller = _controller(memo)
    key = (namespace or "", labels[contract.LABEL_SANDBOX_ID])
    controller.policy_seen(key, None if type == "DELETED" else trim_policy(body))


@kopf.on.event(*TEMPLATES)
async def template_event(
    type: str, namespace: str | None, name: str, spec: kopf.Spec, memo: Any, **_: Any
) -> None:
    """A template that appears lets the Sandboxes that failed for want of it start (looked at again)."""
    controller = _controller(memo)
    controller.template_seen((namespace or "", name), None if type == "DELETED" else dict(spec))

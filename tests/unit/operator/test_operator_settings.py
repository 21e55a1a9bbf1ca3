"""kopf settings, all set in the one startup function: bookkeeping under leap0.dev, lean watching."""

from __future__ import annotations

import itertools
import logging

import kopf
from kopf._cogs.structs.references import Resource

import leap0_contract as contract
from leap0_operator import handlers
from leap0_operator.config import parse


def _configured() -> tuple[kopf.OperatorSettings, kopf.Memo]:
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    handlers.configure(settings=settings, memo=memo, logger=logging.getLogger("test"))
    return settings, memo


def test_kopf_bookkeeping_lives_under_leap0_dev() -> None:
    settings, memo = _configured()
    assert settings.persistence.finalizer == "leap0.dev/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.StatusProgressStorage)
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert diffbase.prefix == "leap0.dev"
    assert memo.controller.config.default_image == contract.DEFAULT_IMAGE


def test_only_sandbox_pods_are_watched_and_nothing_is_posted_or_limited() -> None:
    settings, _ = _configured()
    pods = Resource("", "v1", "pods", kind="Pod", namespaced=True)
    sandboxes = Resource(contract.GROUP, contract.VERSION, contract.SANDBOX_PLURAL, namespaced=True)
    assert settings.watching.label_selectors.collect(pods) == [contract.LABEL_SANDBOX_ID]
    assert settings.watching.label_selectors.collect(sandboxes) == []
    assert settings.posting.enabled is False
    assert settings.queueing.worker_limit is None


def test_replicas_without_a_priority_pick_different_ones() -> None:
    priorities = {_configured()[0].peering.priority for _ in range(5)}
    assert 0 not in priorities
    assert len(priorities) > 1


def test_the_diff_base_copies_nothing_per_event() -> None:
    settings, _ = _configured()
    body = kopf.Body({"metadata": {"name": "x"}, "spec": {"big": list(range(1000))}})
    assert settings.persistence.diffbase_storage.build(body=body) == {}
    assert settings.persistence.diffbase_storage.fetch(body=body) is None


def test_settings_reach_kopf_through_the_memo() -> None:
    """``leap0-operator`` passes its settings in ``kopf.run(memo=...)``; the startup handler applies them."""
    config, options = parse(["--default-image", "busybox:1", "-P", "mine", "--standalone"], {})
    settings, memo = kopf.OperatorSettings(), kopf.Memo(config=config, options=options)
    handlers.configure(settings=settings, memo=memo, logger=logging.getLogger("test"))
    assert memo.controller.config.default_image == "busybox:1"
    assert (settings.peering.name, settings.peering.mandatory, settings.peering.standalone) == (
        "mine",
        True,
        True,
    )


def test_watches_time_out_on_both_ends_and_kopf_retries_forever() -> None:
    config, options = parse(["--watch-timeout", "10"], {})
    settings = kopf.OperatorSettings()
    handlers.configure(
        settings=settings, memo=kopf.Memo(config=config, options=options), logger=logging.getLogger("t")
    )
    assert settings.watching.server_timeout == 10  # an integer: timeoutSeconds
    assert isinstance(settings.watching.server_timeout, int)
    assert 10 < settings.watching.client_timeout <= 13  # a little above: only a silent stream reaches it
    assert settings.watching.inactivity_timeout <= settings.watching.client_timeout
    assert settings.networking.request_timeout == 10
    backoffs = settings.networking.error_backoffs
    assert list(itertools.islice(backoffs, 8)) == list(handlers.KOPF_DEFAULT_BACKOFFS)  # type: ignore[arg-type]
    assert list(itertools.islice(backoffs, 1000))[-1] == 10  # type: ignore[arg-type]  # never exhausted
    assert handlers.client_watch_timeout(300) == 330


def test_kopf_workers_do_not_outlive_their_events_and_lists_come_in_pages() -> None:
    settings, _ = _configured()
    assert settings.queueing.idle_timeout <= 0.5
    assert settings.watching.chunk_size == 500

"""The stores: a fresh list corrects what the watches missed, never what they saw after the list began."""

from __future__ import annotations

import logging

from leap0_operator.k8s import WatchRelists
from leap0_operator.stores import Store

A, B, C = ("ns", "a"), ("ns", "b"), ("ns", "c")


def test_a_resync_drops_what_the_list_lacks_and_takes_what_differs() -> None:
    store = Store()
    store.put(A, {"v": 1})
    store.put(B, {"v": 1})
    since = store.mark()
    assert store.correct(A, {"v": 2}, since)  # changed while the watch was down
    assert not store.correct(A, {"v": 2}, since)  # already so: no change
    assert store.correct(C, {"v": 1}, since)  # missed entirely
    assert store.prune([A, C], since) == [B]  # deleted while the watch was down
    assert (store.get(A), store.get(B), store.get(C)) == ({"v": 2}, None, {"v": 1})


def test_what_a_watch_showed_after_the_list_began_wins_over_the_list() -> None:
    store = Store()
    store.put(A, {"v": 1})
    store.put(B, {"v": 1})
    since = store.mark()
    store.put(A, {"v": 3})  # newer than the list, which still shows v 1
    store.delete(B)  # deleted after the list showed it
    store.put(C, {"v": 1})  # created after the list was taken
    assert not store.correct(A, {"v": 1}, since)
    assert not store.correct(B, {"v": 1}, since)
    assert store.prune([A, B], since) == []
    assert (store.get(A), store.get(B), store.get(C)) == ({"v": 3}, None, {"v": 1})
    later = store.mark()
    assert store.prune([A], later) == [C]  # the next resync judges C like any other


def test_kopf_relists_reach_the_callback_and_debug_lines_stay_hidden() -> None:
    seen: list[str] = []
    relists = WatchRelists(seen.append)
    record = logging.LogRecord(
        "kopf._cogs.clients.watching", logging.DEBUG, __file__, 1,
        "Restarting the watch-stream for sandboxes.v1alpha1.leap0.dev in 'team-a'.", None, None,
    )  # fmt: skip
    assert relists.filter(record) is False
    other = logging.LogRecord("kopf", logging.WARNING, __file__, 1, "Ignoring an event", None, None)
    assert relists.filter(other) is True
    assert seen == ["sandboxes"]

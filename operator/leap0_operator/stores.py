"""The operator's view of the API: one store per kind (Sandboxes, sandbox pods, templates), by key.

The watches feed the stores event by event (``put``/``delete``). A watch that resumes after "410 Gone"
re-lists and shows every object again, but nothing says which objects disappeared meanwhile; a watch that
missed events for any other reason says nothing at all. So the controller also lists each kind now and then
(a resync: after a watch re-list, and every ``--resync-period``) and corrects the store with
:meth:`Store.correct` and :meth:`Store.prune`: objects that differ take the listed state, objects absent
from the list are dropped.

A list is a snapshot taken over some time while the watches go on: an object the watch touched (changed or
deleted) after the resync began is newer than the list, and the list does not override it. Each store counts
its events for this (``mark``). Pure data structures, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .objects import Key

Value = dict[str, Any]


class Store:
    """Objects of one kind by key, with the bookkeeping a resync needs."""

    def __init__(self) -> None:
        self._items: dict[Key, Value] = {}
        self._seq = 0  # events seen so far
        self._touched: dict[Key, int] = {}  # key -> the event count when a watch event last touched it

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: Key) -> Value | None:
        return self._items.get(key)

    def items(self) -> Iterator[tuple[Key, Value]]:
        return iter(list(self._items.items()))

    def namespaces(self) -> set[str]:
        return {key[0] for key in self._items}

    def put(self, key: Key, value: Value) -> Value | None:
        """A watch event showed the object: keep it; returns the previous value."""
        self._touch(key)
        previous = self._items.get(key)
        self._items[key] = value
        return previous

    def delete(self, key: Key) -> Value | None:
        """A watch event showed the object deleted (or the operator deleted it)."""
        self._touch(key)
        return self._items.pop(key, None)

    def _touch(self, key: Key) -> None:
        self._seq += 1
        self._touched[key] = self._seq

    # --- resync -----------------------------------------------------------------------------------------
    def mark(self) -> int:
        """Call before listing: events counted after this are newer than the list."""
        return self._seq

    def correct(self, key: Key, listed: Value, since: int) -> bool:
        """The list shows ``listed`` for ``key``: take it unless a watch event touched the key since
        ``since``. True when the store changed (the object was missing or different)."""
        if self._touched.get(key, 0) > since or self._items.get(key) == listed:
            return False
        self._items[key] = listed
        return True

    def prune(self, listed: Iterable[Key], since: int) -> list[Key]:
        """Drop what the list did not show (unless a watch event touched it since ``since``); returns the keys
        dropped. Also forgets the event counts the next resync no longer needs."""
        present = set(listed)
        gone = [k for k in self._items if k not in present and self._touched.get(k, 0) <= since]
        for key in gone:
            del self._items[key]
        self._touched = {k: n for k, n in self._touched.items() if n > since}
        return gone

"""glibc's allocator, set for a process that handles large requests in a small memory limit.

Nothing happens on another C library (e.g. musl): there is nothing to set.
"""

from __future__ import annotations

import contextlib
from typing import Any

# glibc's mallopt parameter: allocations from this size up get their own mapping, returned to the system when
# freed. glibc raises the threshold as large blocks are freed (up to 32 MiB), after which freed request bodies
# stay in the heap; a fixed threshold keeps RSS following what is really in use.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 512 * 1024
# And one heap arena per thread (grpcio's, the JSON converter's) would each keep its own freed memory: at most
# two arenas in all.
_M_ARENA_MAX = -8
ARENA_MAX = 2

_libc: Any = None


def configure() -> None:
    """Set the thresholds above (at start, before the first large allocation)."""
    global _libc
    import ctypes

    with contextlib.suppress(AttributeError, OSError):  # not glibc: nothing to set
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
        _libc = libc


def trim() -> None:
    """Give the heap's freed pages back to the system (``malloc_trim``: about a microsecond on the sidecar's
    heap). Called after a large message made of many small blocks was freed: grpcio copies a message
    through one block per received slice, whose freed pages would otherwise stay in the heap."""
    if _libc is not None:
        with contextlib.suppress(AttributeError):
            _libc.malloc_trim(0)

"""Job stores: the store protocol and its backends.

Each backend lives in its own module and imports its driver only there, so
``import masa_jobs`` never imports a database driver. ``_backends`` is the
one registry of backends (name, store class, settings, driver and extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._backends import BACKENDS, StoreBackend, backend_named, build_store, check_store_backend
from .base import JobStore, OperatorStore, ScheduleStore, Store

if TYPE_CHECKING:
    from .memory import MemoryJobStore

__all__ = [
    "ASYNCIO_ONLY_BACKENDS",
    "BACKENDS",
    "STORE_BACKENDS",
    "JobStore",
    "MemoryJobStore",
    "OperatorStore",
    "ScheduleStore",
    "Store",
    "StoreBackend",
    "backend_named",
    "build_store",
    "check_store_backend",
]

# The values ``store.backend`` accepts, in the order the docs present them.
STORE_BACKENDS: tuple[str, ...] = tuple(BACKENDS)
# Backends whose drivers run on asyncio only, not on trio.
ASYNCIO_ONLY_BACKENDS: frozenset[str] = frozenset(
    name for name, backend in BACKENDS.items() if backend.asyncio_only
)


def __getattr__(name: str) -> object:
    # The in-memory store (and sortedcontainers) is imported when it is first
    # named: a process on another store never loads it.
    if name == "MemoryJobStore":
        from .memory import MemoryJobStore

        globals()[name] = MemoryJobStore
        return MemoryJobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

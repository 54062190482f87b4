"""Job stores: the ``JobStore`` protocol and its backends.

Each backend lives in its own module and imports its driver only there, so
``import masa_jobs`` never imports a database driver.
"""

from __future__ import annotations

from ..exceptions import ConfigurationError
from .base import JobStore
from .memory import MemoryJobStore

__all__ = ["STORE_BACKENDS", "JobStore", "MemoryJobStore", "check_store_backend"]

# The values ``store.backend`` accepts, in the order the docs present them.
STORE_BACKENDS: tuple[str, ...] = ("memory",)


def check_store_backend(backend: object) -> str:
    """Return ``backend`` if a store of that name exists, else a clear error.

    An unset backend (None: e.g. a container embedded with
    ``config=parent.config.jobs`` whose section has no ``store``) is the default.
    """
    if backend is None:
        return STORE_BACKENDS[0]
    if backend in STORE_BACKENDS:
        return str(backend)
    known = ", ".join(STORE_BACKENDS)
    raise ConfigurationError(
        f"unknown store backend {backend!r}: set store.backend (MASA_JOBS_STORE__BACKEND) "
        f"to one of: {known}"
    )

"""Where the dashboard finds the job manager and its store: at request time.

The manager is resolved through the container's provider on every request,
never cached, like the static ``BackgroundJobManager``: so the dashboard can
be created before ``MasaApp.build``, and ``override()`` in tests keeps working.
"""

from __future__ import annotations

from typing import Any, cast

from ..app import MasaApp, find_jobs_container
from ..exceptions import NotSupportedError
from ..manager import JobManager
from ..stores.base import Store

__all__ = ["ManagerSource"]


class ManagerSource:
    """The job manager of a container, or of the root container when None."""

    def __init__(self, container: Any | None) -> None:
        if isinstance(container, type):
            raise TypeError(
                f"dashboard() takes a container instance, got the class "
                f"{container.__qualname__}: pass {container.__qualname__}() -- class-level "
                "providers hold singletons apart from any instance's"
            )
        if container is not None:
            # Fails now, with the reason, for a container without the job parts.
            find_jobs_container(container)
        self._container = container

    def manager(self) -> JobManager:
        """The manager, resolved now (``MasaNotBuiltError`` before ``MasaApp.build``)."""
        if self._container is None:
            return MasaApp.job_manager()
        manager: JobManager = find_jobs_container(self._container).job_manager()
        return manager

    @staticmethod
    def store(manager: JobManager) -> Store:
        """The manager's store, for the reads the manager has no method for."""
        store = getattr(manager, "store", None)
        if store is None:
            raise NotSupportedError(
                f"the dashboard reads the store of the job manager (its `store` property), "
                f"and {type(manager).__qualname__} has none: use DefaultJobManager, or give "
                "your manager a `store` property"
            )
        return cast(Store, store)

"""The application ``masa-jobs bench`` starts its worker processes on.

``masa-jobs worker masa_jobs.cli._bench_app:container`` runs the benchmark's
no-op job; the store and the options come from ``MASA_JOBS_STORE__...`` and
``MASA_JOBS_OPTIONS__...`` variables, as for any application. Only the
benchmark imports this module: importing it registers the no-op handler.

A worker on the in-memory store is refused unless its application enqueues
itself, so ``memory_container`` adds a recurring job that never fires during
a run: that worker only shows what an idle process weighs.
"""

from __future__ import annotations

from masa_jobs.containers import BackgroundJobContainer

from . import _bench_jobs  # noqa: F401  (registers the no-op handler)

__all__ = ["container", "memory_container"]

container = BackgroundJobContainer()


def memory_container() -> BackgroundJobContainer:
    """A container whose registry also holds a yearly recurring job."""
    from . import _bench_yearly  # noqa: F401  (registers the recurring job)

    return BackgroundJobContainer()

"""``BackgroundJobContainer``: the composition root of masa-jobs."""

from __future__ import annotations

from dependency_injector import containers, providers

from masa_jobs.manager import DefaultJobManager
from masa_jobs.options import BackgroundJobOptions
from masa_jobs.registry import JobRegistry
from masa_jobs.scheduler import Scheduler
from masa_jobs.stores import build_store, check_store_backend
from masa_jobs.worker import Worker

__all__ = ["BackgroundJobContainer"]


class BackgroundJobContainer(containers.DeclarativeContainer):
    """Options, store, registry, job manager and worker, as singletons.

    Configuration keys (``config.from_dict``/``from_yaml`` in code, the
    ``MASA_JOBS_CONFIG`` YAML file or ``MASA_JOBS_...`` variables)::

        store:   {backend: memory}      # memory | sqlite (path) | postgres (dsn) | redis (url)
        options: {poll_interval: 5, batch_size: 30, max_retry_times: 10, ...}

    ``config`` starts empty and holds only what the code sets: ``MasaApp.build``
    puts the defaults, the file and the environment under it (code wins).
    Unset keys fall back to the defaults when a part is built without
    ``MasaApp.build``.
    """

    # MasaApp.build() wires once; a container must not wire itself on creation.
    wiring_config = containers.WiringConfiguration(auto_wire=False)

    config = providers.Configuration()

    options = providers.Singleton(BackgroundJobOptions.from_config, config.options)

    store_backend = providers.Callable(check_store_backend, config.store.backend)

    # One store per container, built from the registry of backends
    # (masa_jobs.stores._backends): a new backend needs no change here.
    job_store = providers.Singleton(build_store, config.store)

    # Each container builds its own registry: with options.job_packages, only
    # the handlers and recurring jobs defined in those packages; without, all
    # those imported before MasaApp.build. For an explicit list, override it:
    # container.job_registry.override(
    #     providers.Singleton(JobRegistry, [HandlerA, HandlerB], [NightlyReport]))
    job_registry = providers.Singleton(JobRegistry.discover, options.provided.job_packages)

    job_manager = providers.Singleton(
        DefaultJobManager, store=job_store, registry=job_registry, options=options
    )

    worker = providers.Singleton(Worker, store=job_store, registry=job_registry, options=options)

    scheduler = providers.Singleton(
        Scheduler, store=job_store, registry=job_registry, options=options
    )

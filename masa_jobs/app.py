"""``MasaApp``: the one root container every static caller resolves.

MASA's FAQ exists because static callers resolved a different service
provider than the running worker, so jobs were enqueued into a store no worker
read. Here ``MasaApp.build(container)`` publishes one root container; the
static ``BackgroundJobManager`` and ``MasaApp.lifespan()`` resolve the very
singletons the worker uses, or raise ``MasaNotBuiltError``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from ._config_sources import CONFIG_FILE_VARIABLE, ENV_PREFIX, layered_config
from ._redact import redact
from .exceptions import ConfigurationError, MasaAlreadyBuiltError, MasaNotBuiltError

if TYPE_CHECKING:
    from .manager import JobManager
    from .options import BackgroundJobOptions
    from .registry import JobRegistry
    from .scheduler import Scheduler
    from .stores.base import JobStore
    from .worker import Worker

__all__ = ["MasaApp", "describe_store", "find_jobs_container", "is_memory_store"]

logger = logging.getLogger("masa_jobs")
# The line naming the store at build; the CLI's worker says it in its start line.
build_logger = logging.getLogger("masa_jobs.app")

# The providers a background-jobs container offers; how MasaApp finds it.
_JOBS_PROVIDERS = ("options", "job_store", "job_registry", "job_manager", "worker", "scheduler")

_NOT_BUILT = (
    "masa-jobs has no root container yet: call MasaApp.build(container) once at start-up, "
    "with the same container instance that runs the worker, before any "
    "BackgroundJobManager call or MasaApp.lifespan()"
)


class MasaApp:
    """Publishes the root container (MASA's ``MasaApp.Build``)."""

    _root: ClassVar[Any | None] = None
    _jobs: ClassVar[Any | None] = None

    def __init__(self) -> None:
        raise TypeError("MasaApp is used through its class methods; do not instantiate it")

    @classmethod
    def build(cls, container: Any, *, allow_memory_without_worker: bool = False) -> None:
        """Publish ``container`` (an instance) as the root container.

        Applies the configuration sources under the values the code set
        (defaults < ``MASA_JOBS_CONFIG`` file < ``MASA_JOBS_...`` variables <
        code), checks its dependencies, wires it once (its ``wiring_config``
        plus the modules defining the registered handlers) and resolves the
        singletons eagerly, so that a bad configuration fails here; then logs
        (INFO) which store it uses. Building the same container again does
        nothing; a different one is refused.

        An enqueue-only process (``disable_background_job``) on the memory
        store is a ``ConfigurationError``: no worker could ever see its jobs.
        ``allow_memory_without_worker=True`` accepts it, for a process that
        only measures or inspects.
        """
        if isinstance(container, type):
            raise TypeError(
                f"MasaApp.build() takes a container instance, got the class "
                f"{container.__qualname__}: call MasaApp.build({container.__qualname__}()) -- "
                "class-level providers hold singletons apart from any instance's"
            )
        if cls._root is not None:
            if cls._root is container:
                return
            raise MasaAlreadyBuiltError(
                "MasaApp was already built with another container; build it once at "
                "start-up (tests: call MasaApp.reset() between apps)"
            )
        jobs = find_jobs_container(container)
        _apply_config_sources(jobs)
        container.check_dependencies()
        registry: JobRegistry = jobs.job_registry()
        _wire_once(container, registry.handler_modules())
        try:
            for name in _JOBS_PROVIDERS:
                getattr(jobs, name)()
            if not allow_memory_without_worker:
                _refuse_memory_without_worker(jobs)
        except BaseException:
            container.unwire()
            raise
        cls._root, cls._jobs = container, jobs
        _log_store(jobs)

    @classmethod
    def root(cls) -> Any:
        """The container given to ``build``."""
        if cls._root is None:
            raise MasaNotBuiltError(_NOT_BUILT)
        return cls._root

    @classmethod
    def is_built(cls) -> bool:
        return cls._root is not None

    @classmethod
    def reset(cls) -> None:
        """Forget the root container and unwire it (for tests).

        Closes the store the sync API opened, and stops its event loop thread.
        """
        from .sync import close_sync_loop

        close_sync_loop()
        root = cls._root
        cls._root = cls._jobs = None
        if root is not None:
            root.unwire()

    @classmethod
    def job_manager(cls) -> JobManager:
        """The root container's ``job_manager``, resolved through its provider."""
        jobs = cls._jobs
        if jobs is None:
            raise MasaNotBuiltError(_NOT_BUILT)
        manager: JobManager = jobs.job_manager()
        return manager

    @classmethod
    @asynccontextmanager
    async def lifespan(cls) -> AsyncIterator[None]:
        """Open the store and, unless ``disable_background_job``, run the worker
        and the scheduler of recurring jobs.

        On exit the worker stops gracefully (running jobs get
        ``shutdown_timeout``) and the store is closed.
        """
        jobs = cls._jobs
        if jobs is None:
            raise MasaNotBuiltError(_NOT_BUILT)
        options: BackgroundJobOptions = jobs.options()
        store: JobStore = jobs.job_store()
        async with AsyncExitStack() as stack:
            await store.open()
            stack.push_async_callback(store.aclose)
            if options.disable_background_job:
                yield
                return
            worker: Worker = jobs.worker()
            scheduler: Scheduler = jobs.scheduler()
            async with anyio.create_task_group() as tg:
                await tg.start(_run_worker, worker)
                await tg.start(_run_scheduler, scheduler)
                try:
                    yield
                finally:
                    scheduler.stop()
                    worker.stop()


async def _run_worker(worker: Worker, *, task_status: Any) -> None:
    await worker.run(task_status=task_status)


async def _run_scheduler(scheduler: Scheduler, *, task_status: Any) -> None:
    await scheduler.run(task_status=task_status)


def find_jobs_container(container: Any) -> Any:
    """The container itself, or the one sub-container that provides the job parts."""
    if all(hasattr(container, name) for name in _JOBS_PROVIDERS):
        return container
    from dependency_injector import providers

    found = [
        provider.container
        for provider in getattr(container, "providers", {}).values()
        if isinstance(provider, providers.Container)
        and all(hasattr(provider.container, name) for name in _JOBS_PROVIDERS)
    ]
    if len(found) == 1:
        return found[0]
    what = "none" if not found else f"{len(found)}"
    raise TypeError(
        f"MasaApp.build() needs a BackgroundJobContainer, a container extending it, or one "
        f"embedding it as providers.Container(BackgroundJobContainer); "
        f"{type(container).__qualname__} has {what} such sub-containers"
    )


def _wire_once(container: Any, handler_modules: tuple[str, ...]) -> None:
    """One ``wire()``: the container's wiring_config plus the handler modules."""
    config = container.wiring_config
    from_package = config.from_package
    if from_package is None:
        parent = getattr(container, "declarative_parent", None) or type(container)
        from_package = importlib.import_module(parent.__module__).__package__
    modules = [*config.modules, *(m for m in handler_modules if m not in config.modules)]
    container.wire(modules=modules, packages=config.packages, from_package=from_package)


def _apply_config_sources(jobs: Any) -> None:
    """Defaults, the ``MASA_JOBS_CONFIG`` file and the environment, under the code's values."""
    from dependency_injector import providers

    config = getattr(jobs, "config", None)
    if not isinstance(config, providers.Configuration):
        if any(key.startswith(ENV_PREFIX) for key in os.environ):
            logger.warning(
                "the jobs container has no `config` Configuration provider: %s... environment "
                "variables and %s are ignored",
                ENV_PREFIX,
                CONFIG_FILE_VARIABLE,
            )
        return
    # from_dict merges over the current values, which the layers end with: a no-op
    # when the same container is configured again (the CLI, a second build attempt).
    config.from_dict(layered_config(config()))


def _refuse_memory_without_worker(jobs: Any) -> None:
    options: BackgroundJobOptions = jobs.options()
    if options.disable_background_job and is_memory_store(jobs.job_store()):
        raise ConfigurationError(
            "options.disable_background_job is true (this process only enqueues) but the store "
            "is the in-memory one, whose jobs no other process can see: they would never run. "
            f"Set store.backend ({ENV_PREFIX}STORE__BACKEND) to sqlite, postgres or redis, the "
            "same for this process and the workers, or run the worker in this process "
            f"(disable_background_job false, {ENV_PREFIX}OPTIONS__DISABLE_BACKGROUND_JOB=false)"
        )


def is_memory_store(store: object) -> bool:
    """Whether ``store`` is a ``MemoryJobStore`` (or a subclass).

    Without importing the in-memory store: a process whose store is another
    never loads it (nor sortedcontainers), and no object can be an instance of
    a class whose module was never imported.
    """
    memory = sys.modules.get("masa_jobs.stores.memory")
    return memory is not None and isinstance(store, memory.MemoryJobStore)


def describe_store(store: object) -> str:
    """The store in a few words, without a password (for logs and start lines)."""
    if is_memory_store(store):
        return "memory (jobs live in this process only)"
    # Every store's repr names its address already redacted; redact again for
    # an application's own store, whose repr might not be.
    return redact(repr(store))


def _log_store(jobs: Any) -> None:
    options: BackgroundJobOptions = jobs.options()
    worker = (
        "off (disable_background_job: enqueue only)" if options.disable_background_job else "on"
    )
    build_logger.info("masa-jobs: store %s, worker %s", describe_store(jobs.job_store()), worker)

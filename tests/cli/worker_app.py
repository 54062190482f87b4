"""A small application for the ``masa-jobs worker`` tests (run in a subprocess only).

Never import it from a test module: its handlers would be registered in the
test process and show up in every other test's registry.
"""

from __future__ import annotations

import logging

import anyio
from dependency_injector import containers, providers
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob

logger = logging.getLogger(__name__)

# Long enough that only a forced stop ends the job.
NAP_SECONDS = 60.0


class Ping(BaseModel):
    text: str


class PingJob(BackgroundJob[Ping]):
    async def execute(self, args: Ping) -> None:
        """Nothing to do: most tests only start and stop the worker."""


class Nap(BaseModel):
    seconds: float


class NapJob(BackgroundJob[Nap]):
    async def execute(self, args: Nap) -> None:
        logger.info("nap started")
        await anyio.sleep(args.seconds)


class AppContainer(BackgroundJobContainer):
    pass


# The store comes from MASA_JOBS_STORE__... variables, as in production: a
# worker on the memory store with nothing to run is refused.
container = AppContainer()
container.config.from_dict({"options": {"shutdown_timeout": 1}})


def create_container() -> AppContainer:
    return AppContainer()


def busy_container() -> AppContainer:
    """A memory store that already holds a job that runs for a minute (the app enqueued it)."""
    busy = AppContainer()
    busy.config.from_dict({"options": {"shutdown_timeout": NAP_SECONDS}})
    anyio.run(busy.job_manager().enqueue, Nap(seconds=NAP_SECONDS))
    return busy


def needs_arguments(name: str) -> AppContainer:
    return AppContainer()


class EmbeddingContainer(containers.DeclarativeContainer):
    jobs = providers.Container(BackgroundJobContainer)


embedding = EmbeddingContainer()

not_a_container = "just a string"

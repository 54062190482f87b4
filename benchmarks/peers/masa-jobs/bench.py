"""masa-jobs on PostgreSQL or Redis (``--store``), through its public API and its
own worker command, ``masa-jobs worker``."""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_tasks import NoOp  # noqa: E402
from common import WorkerSpec, flush_redis_db, fresh_pg_database, main, pg_dsn, redis_url  # noqa: E402
from masa_jobs.containers import BackgroundJobContainer  # noqa: E402

from masa_jobs import BackgroundJobManager, MasaApp  # noqa: E402

DATABASE = "peers_bench_masa_jobs"
REDIS_DB = 5
# Jobs per enqueue_many call: what a caller would send in one round trip.
BULK_CHUNK = 1000
TUNED = {"concurrency": 50, "batch_size": 200}
_NO_OP = NoOp()


class MasaJobs:
    bulk_method = f"JobManager.enqueue_many, {BULK_CHUNK} a call"
    version = version("masa-jobs")

    def __init__(self, store: str) -> None:
        self.name = f"masa-jobs ({store})"
        self.store = store
        self._stack: AsyncExitStack | None = None
        if store == "postgres":
            self._settings: dict[str, Any] = {"backend": "postgres", "dsn": pg_dsn(DATABASE)}
        else:
            self._settings = {"backend": "redis", "url": redis_url(REDIS_DB)}

    async def reset(self) -> None:
        await self.close()
        if self.store == "postgres":
            await fresh_pg_database(DATABASE)
        else:
            flush_redis_db(REDIS_DB)
        container = BackgroundJobContainer()
        container.config.from_dict(
            {"store": self._settings, "options": {"disable_background_job": True}}
        )
        MasaApp.build(container)
        self._manager = container.job_manager()
        self._stack = AsyncExitStack()
        await self._stack.enter_async_context(MasaApp.lifespan())

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            MasaApp.reset()

    async def enqueue_one(self) -> None:
        await BackgroundJobManager.enqueue(_NO_OP)

    async def enqueue_bulk(self, n: int) -> None:
        for start in range(0, n, BULK_CHUNK):
            await self._manager.enqueue_many([(_NO_OP, None)] * min(BULK_CHUNK, n - start))

    def worker(self, tuned: bool) -> WorkerSpec:
        env = {f"MASA_JOBS_STORE__{key.upper()}": value for key, value in self._settings.items()}
        argv = [str(Path(sys.executable).parent / "masa-jobs"), "worker"]
        argv.append("bench_tasks:create_container")
        settings: dict[str, Any] = {"command": "masa-jobs worker", "options": "defaults"}
        if tuned:
            argv += ["--concurrency", str(TUNED["concurrency"])]
            env["MASA_JOBS_OPTIONS__BATCH_SIZE"] = str(TUNED["batch_size"])
            settings["options"] = dict(TUNED)
        return WorkerSpec(argv=argv, cwd=HERE, env=env, settings=settings)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", choices=["postgres", "redis"], default="postgres")


if __name__ == "__main__":
    main(lambda args: MasaJobs(args.store), _arguments)

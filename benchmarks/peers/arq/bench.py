"""arq on Redis, through its ArqRedis API and its own worker command, ``arq``."""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import WorkerSpec, flush_redis_db, main, redis_url  # noqa: E402

REDIS_DB = 9
os.environ["PEERS_ARQ_URL"] = redis_url(REDIS_DB)

from arq import create_pool  # noqa: E402
from arq.connections import RedisSettings  # noqa: E402

TUNED_MAX_JOBS = 50


class Arq:
    name = "arq"
    store = "redis"
    version = version("arq")
    bulk_method = None  # arq enqueues one job a call

    def __init__(self) -> None:
        self._redis: Any = None

    async def reset(self) -> None:
        await self.close()
        flush_redis_db(REDIS_DB)
        self._redis = await create_pool(RedisSettings.from_dsn(os.environ["PEERS_ARQ_URL"]))

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def enqueue_one(self) -> None:
        await self._redis.enqueue_job("no_op")

    async def enqueue_bulk(self, n: int) -> None:
        for _ in range(n):
            await self.enqueue_one()

    def worker(self, tuned: bool) -> WorkerSpec:
        argv = [str(Path(sys.executable).parent / "arq"), "bench_tasks.WorkerSettings"]
        env = {"PEERS_ARQ_URL": os.environ["PEERS_ARQ_URL"], "PYTHONPATH": str(HERE)}
        settings: dict[str, Any] = {"command": "arq", "options": "defaults (max_jobs 10)"}
        if tuned:
            env["PEERS_ARQ_MAX_JOBS"] = str(TUNED_MAX_JOBS)
            settings["options"] = {"max_jobs": TUNED_MAX_JOBS}
        return WorkerSpec(argv=argv, cwd=HERE, env=env, settings=settings)


if __name__ == "__main__":
    main(lambda args: Arq())

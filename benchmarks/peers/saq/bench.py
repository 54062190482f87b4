"""SAQ on Redis, through its Queue API and its own worker command, ``saq``."""

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

REDIS_DB = 8
os.environ["PEERS_SAQ_URL"] = redis_url(REDIS_DB)

from saq import Queue  # noqa: E402

TUNED_CONCURRENCY = 50


class Saq:
    name = "saq"
    store = "redis"
    version = version("saq")
    bulk_method = None  # Queue.map enqueues one by one and waits for the results

    def __init__(self) -> None:
        self._queue: Queue | None = None

    async def reset(self) -> None:
        await self.close()
        flush_redis_db(REDIS_DB)
        self._queue = Queue.from_url(os.environ["PEERS_SAQ_URL"])
        await self._queue.connect()

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.disconnect()
            self._queue = None

    async def enqueue_one(self) -> None:
        assert self._queue is not None
        await self._queue.enqueue("no_op")

    async def enqueue_bulk(self, n: int) -> None:
        for _ in range(n):
            await self.enqueue_one()

    def worker(self, tuned: bool) -> WorkerSpec:
        argv = [str(Path(sys.executable).parent / "saq"), "bench_tasks.settings"]
        env = {"PEERS_SAQ_URL": os.environ["PEERS_SAQ_URL"], "PYTHONPATH": str(HERE)}
        settings: dict[str, Any] = {"command": "saq", "options": "defaults (concurrency 10)"}
        if tuned:
            env["PEERS_SAQ_CONCURRENCY"] = str(TUNED_CONCURRENCY)
            settings["options"] = {"concurrency": TUNED_CONCURRENCY}
        return WorkerSpec(argv=argv, cwd=HERE, env=env, settings=settings)


if __name__ == "__main__":
    main(lambda args: Saq())

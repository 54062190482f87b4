"""huey on Redis, through its task API and its own worker command, ``huey_consumer``."""

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

REDIS_DB = 6
os.environ["PEERS_HUEY_URL"] = redis_url(REDIS_DB)

from bench_tasks import no_op  # noqa: E402

# huey's nearest knob to "concurrency 50": 50 worker threads.
TUNED_WORKERS = 50


class Huey:
    name = "huey"
    store = "redis"
    version = version("huey")
    bulk_method = None  # huey enqueues one task a call (a group is a loop of enqueues)

    async def reset(self) -> None:
        flush_redis_db(REDIS_DB)

    async def close(self) -> None:
        pass

    async def enqueue_one(self) -> None:
        no_op()

    async def enqueue_bulk(self, n: int) -> None:
        for _ in range(n):
            no_op()

    def worker(self, tuned: bool) -> WorkerSpec:
        argv = [str(Path(sys.executable).parent / "huey_consumer"), "bench_tasks.huey"]
        settings: dict[str, Any] = {
            "command": "huey_consumer",
            "options": "defaults (1 worker thread)",
        }
        if tuned:
            argv += ["-w", str(TUNED_WORKERS), "-k", "thread"]
            settings["options"] = {"workers": TUNED_WORKERS, "worker_type": "thread"}
        env = {"PEERS_HUEY_URL": os.environ["PEERS_HUEY_URL"], "PYTHONPATH": str(HERE)}
        return WorkerSpec(argv=argv, cwd=HERE, env=env, settings=settings)


if __name__ == "__main__":
    main(lambda args: Huey())

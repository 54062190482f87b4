"""Dramatiq on Redis, through its actor API and its own worker command, ``dramatiq``."""

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

REDIS_DB = 7
os.environ["PEERS_DRAMATIQ_URL"] = redis_url(REDIS_DB)

from bench_tasks import no_op  # noqa: E402

# Dramatiq's nearest knobs to "concurrency 50": one process of 50 threads.
TUNED = {"processes": 1, "threads": 50}


class Dramatiq:
    name = "dramatiq"
    store = "redis"
    version = version("dramatiq")
    bulk_method = None  # a group enqueues its messages one by one

    async def reset(self) -> None:
        flush_redis_db(REDIS_DB)

    async def close(self) -> None:
        pass

    async def enqueue_one(self) -> None:
        no_op.send()

    async def enqueue_bulk(self, n: int) -> None:
        for _ in range(n):
            no_op.send()

    def worker(self, tuned: bool) -> WorkerSpec:
        argv = [str(Path(sys.executable).parent / "dramatiq"), "bench_tasks"]
        settings: dict[str, Any] = {
            "command": "dramatiq",
            "options": f"defaults ({os.cpu_count()} processes of 8 threads)",
        }
        if tuned:
            argv += ["--processes", str(TUNED["processes"]), "--threads", str(TUNED["threads"])]
            settings["options"] = dict(TUNED)
        env = {"PEERS_DRAMATIQ_URL": os.environ["PEERS_DRAMATIQ_URL"], "PYTHONPATH": str(HERE)}
        processes = TUNED["processes"] if tuned else os.cpu_count() or 1
        return WorkerSpec(argv, HERE, env, settings, multi_process=processes > 1)


if __name__ == "__main__":
    main(lambda args: Dramatiq())

"""The no-op function and worker settings, for ``arq bench_tasks.WorkerSettings``
(Redis URL from PEERS_ARQ_URL, max_jobs from PEERS_ARQ_MAX_JOBS when set)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from arq.connections import RedisSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import task_ran


async def no_op(ctx: dict[str, Any]) -> None:
    task_ran()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [no_op]
    redis_settings = RedisSettings.from_dsn(os.environ["PEERS_ARQ_URL"])
    if "PEERS_ARQ_MAX_JOBS" in os.environ:
        max_jobs = int(os.environ["PEERS_ARQ_MAX_JOBS"])

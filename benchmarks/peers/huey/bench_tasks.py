"""The no-op task, for ``huey_consumer bench_tasks.huey`` (Redis URL from PEERS_HUEY_URL)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from huey import RedisHuey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import task_ran

huey = RedisHuey("peers-bench", url=os.environ["PEERS_HUEY_URL"])


@huey.task()
def no_op() -> None:
    task_ran()

"""The no-op function and worker settings, for ``saq bench_tasks.settings``
(Redis URL from PEERS_SAQ_URL, concurrency from PEERS_SAQ_CONCURRENCY when set)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from saq import Queue

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import task_ran

queue = Queue.from_url(os.environ["PEERS_SAQ_URL"])


async def no_op(ctx: dict[str, Any]) -> None:
    task_ran()


settings: dict[str, Any] = {"queue": queue, "functions": [no_op]}
if "PEERS_SAQ_CONCURRENCY" in os.environ:
    settings["concurrency"] = int(os.environ["PEERS_SAQ_CONCURRENCY"])

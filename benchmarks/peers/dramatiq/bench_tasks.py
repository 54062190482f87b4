"""The no-op actor, for ``dramatiq bench_tasks`` (Redis URL from PEERS_DRAMATIQ_URL)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import task_ran

dramatiq.set_broker(RedisBroker(url=os.environ["PEERS_DRAMATIQ_URL"]))


@dramatiq.actor
def no_op() -> None:
    task_ran()

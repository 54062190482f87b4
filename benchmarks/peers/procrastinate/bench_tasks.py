"""The no-op task, for ``procrastinate --app=bench_tasks.app worker``
(DSN from PEERS_PROCRASTINATE_DSN)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from procrastinate import App, PsycopgConnector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import task_ran

app = App(connector=PsycopgConnector(conninfo=os.environ["PEERS_PROCRASTINATE_DSN"]))


@app.task(name="peers_no_op")
async def no_op() -> None:
    task_ran()

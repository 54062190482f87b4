"""PgQueuer on PostgreSQL, through its Queries API and its own worker command, ``pgq run``."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import asyncpg  # noqa: E402
from bench_tasks import ENTRYPOINT  # noqa: E402
from common import WorkerSpec, fresh_pg_database, main, pg_dsn  # noqa: E402
from pgqueuer import AsyncpgDriver, Queries  # noqa: E402

DATABASE = "peers_bench_pgqueuer"
# Jobs per list-valued enqueue call: what a caller would send in one round trip.
BULK_CHUNK = 1000
TUNED_BATCH_SIZE = 100
PGQ = str(Path(sys.executable).parent / "pgq")


class PgQueuerPeer:
    name = "pgqueuer"
    store = "postgres"
    version = version("pgqueuer")
    bulk_method = f"Queries.enqueue with lists, {BULK_CHUNK} a call"

    def __init__(self) -> None:
        self.dsn = pg_dsn(DATABASE)
        self._connection: Any = None

    async def reset(self) -> None:
        await self.close()
        await fresh_pg_database(DATABASE)
        # The documented install command; nothing else runs on this loop meanwhile.
        subprocess.run([PGQ, "--pg-dsn", self.dsn, "install"], check=True, capture_output=True)  # noqa: ASYNC221
        self._connection = await asyncpg.connect(self.dsn)
        self._queries = Queries(AsyncpgDriver(self._connection))

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def enqueue_one(self) -> None:
        await self._queries.enqueue(ENTRYPOINT, None)

    async def enqueue_bulk(self, n: int) -> None:
        for start in range(0, n, BULK_CHUNK):
            size = min(BULK_CHUNK, n - start)
            await self._queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)

    def worker(self, tuned: bool) -> WorkerSpec:
        argv = [PGQ, "run", "bench_tasks:create_pgqueuer"]
        settings: dict[str, Any] = {"command": "pgq run", "options": "defaults (batch size 10)"}
        if tuned:
            argv += ["--batch-size", str(TUNED_BATCH_SIZE)]
            settings["options"] = {"batch_size": TUNED_BATCH_SIZE}
        return WorkerSpec(argv=argv, cwd=HERE, env={"PGDSN": self.dsn}, settings=settings)


if __name__ == "__main__":
    main(lambda args: PgQueuerPeer())

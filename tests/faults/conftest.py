"""Fixtures of the fault suite: a store per test, worker fleets that are always
stopped, the scale of the runs, and faketime."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.services import (
    POSTGRES_DSN,
    REDIS_URL,
    delete_redis_prefix,
    drop_postgres_schema,
    require_service,
)

from .fleet import REPO_ROOT, FaultLog, Fleet, faketime_library, skewed_env
from .stores import FaultStore, new_namespace

# Jobs per scenario are counts at scale 1 (a long local run) times this.
SCALE_VARIABLE = "MASA_JOBS_FAULT_SCALE"
DEFAULT_SCALE = 0.2


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    # The test drives worker processes; asyncio is enough (asyncpg needs it).
    return ("asyncio", {})


@pytest.fixture(scope="session")
def scale() -> float:
    value = float(os.environ.get(SCALE_VARIABLE) or DEFAULT_SCALE)
    assert value > 0, f"{SCALE_VARIABLE} must be positive"
    return value


def _make_store(backend: str, tmp_path: Path) -> Iterator[FaultStore]:
    namespace = new_namespace()
    if backend == "sqlite":
        yield FaultStore("sqlite", namespace, tmp_path / "jobs.sqlite3")
    elif backend == "postgres":
        require_service("PostgreSQL", POSTGRES_DSN)
        yield FaultStore("postgres", namespace)
        drop_postgres_schema(namespace)
    else:
        require_service("Redis", REDIS_URL)
        yield FaultStore("redis", namespace)
        delete_redis_prefix(namespace)


@pytest.fixture(params=["postgres", "redis", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultStore]:
    """Every durable store: for faults that do not need a network."""
    yield from _make_store(request.param, tmp_path)


@pytest.fixture(params=["postgres", "redis"])
def network_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultStore]:
    """Stores on a server: for outages, killed connections and skewed clocks."""
    yield from _make_store(request.param, tmp_path)


@pytest.fixture
def postgres_store(tmp_path: Path) -> Iterator[FaultStore]:
    yield from _make_store("postgres", tmp_path)


FleetFactory = Callable[[FaultStore, Mapping[str, object]], Fleet]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetFactory]:
    """Make the test's fleet; every process is stopped afterwards, pass or fail."""
    made: list[Fleet] = []

    def make(store: FaultStore, options: Mapping[str, object]) -> Fleet:
        created = Fleet(tmp_path, store.worker_env(), options, FaultLog())
        made.append(created)
        return created

    yield make
    for created in made:
        created.close()


@pytest.fixture(scope="session")
def faketime() -> Callable[[int], dict[str, str]]:
    """Environment for a worker whose wall clock is off by N seconds.

    Fails in CI and skips elsewhere when faketime is missing; checks first that
    it moves Python's ``datetime.now`` in a subprocess by exactly N seconds
    and leaves the monotonic clock alone.
    """
    if faketime_library() is None or shutil.which("faketime") is None:
        message = "faketime is not installed (apt-get install faketime)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must provide it", pytrace=False)
        pytest.skip(message)
    for offset in (7200, -7200):
        _check_faketime(offset)
    return skewed_env


def _check_faketime(offset: int) -> None:
    script = (
        "import datetime, time\n"
        "print(datetime.datetime.now(datetime.UTC).timestamp(), time.monotonic())\n"
    )
    env = {**os.environ, **skewed_env(offset)}
    before_wall, before_mono = time.time(), time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, check=True
    )
    after_wall, after_mono = time.time(), time.monotonic()
    seen_wall, seen_mono = map(float, result.stdout.split())
    # The subprocess read its clock between our two readings: the bracket is exact.
    assert before_wall - 0.001 <= seen_wall - offset <= after_wall + 0.001, (
        f"faketime {offset:+d} s: the subprocess saw {seen_wall}, expected "
        f"{before_wall + offset:.0f}..{after_wall + offset:.0f}"
    )
    assert before_mono - 1 <= seen_mono <= after_mono + 1, "faketime moved the monotonic clock"

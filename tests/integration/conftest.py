"""Durable stores under test, each in a namespace of its own that is removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.services import (
    POSTGRES_DSN,
    REDIS_URL,
    delete_redis_prefix,
    drop_postgres_schema,
    require_service,
    unique_name,
)


@dataclass(frozen=True)
class StoreUnderTest:
    """A store configuration: as a config dict for a container, and as environment."""

    backend: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.settings}

    def env(self, **overrides: str) -> dict[str, str]:
        values = {**self.config, **overrides}
        return {f"MASA_JOBS_STORE__{key.upper()}": str(value) for key, value in values.items()}

    def with_settings(self, **settings: Any) -> StoreUnderTest:
        return StoreUnderTest(self.backend, {**self.settings, **settings})


def _fresh_postgres_schema() -> Iterator[str]:
    """A PostgreSQL schema name of the test's own (the PostgreSQL store's
    ``schema``), the schema dropped afterwards."""
    require_service("PostgreSQL", POSTGRES_DSN)
    name = unique_name()
    yield name
    drop_postgres_schema(name)


schema = pytest.fixture(_fresh_postgres_schema, name="schema")
other_schema = pytest.fixture(_fresh_postgres_schema, name="other_schema")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of the test's own (the Redis store's ``prefix``),
    its keys deleted afterwards; the Redis modules' stores live under it."""
    require_service("Redis", REDIS_URL)
    name = unique_name()
    yield name
    delete_redis_prefix(name)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def durable_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    yield from _store_under_test(request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def transactional_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    """The stores whose jobs an application's own transaction can write."""
    yield from _store_under_test(request.param, tmp_path)


def _store_under_test(backend: str, tmp_path: Path) -> Iterator[StoreUnderTest]:
    if backend == "sqlite":
        yield StoreUnderTest("sqlite", {"path": str(tmp_path / "jobs.sqlite3")})
    elif backend == "postgres":
        require_service("PostgreSQL", POSTGRES_DSN)
        schema = unique_name()
        yield StoreUnderTest("postgres", {"dsn": POSTGRES_DSN, "schema": schema})
        drop_postgres_schema(schema)
    else:
        require_service("Redis", REDIS_URL)
        prefix = unique_name()
        yield StoreUnderTest("redis", {"url": REDIS_URL, "prefix": prefix})
        delete_redis_prefix(prefix)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    # The test process drives real worker processes; asyncio is enough here
    # (the stores' own trio support is covered by the contract suite).
    return ("asyncio", {})

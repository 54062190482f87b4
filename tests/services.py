"""Real services for the tests: where they are, and what to do when one is missing.

In CI (``CI=true``) a test that needs PostgreSQL or Redis fails when the
service is unreachable; on a laptop without it the test is skipped with the
reason.
"""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlsplit
from uuid import uuid4

import pytest

__all__ = [
    "POSTGRES_DSN",
    "REDIS_URL",
    "delete_redis_prefix",
    "drop_postgres_schema",
    "require_service",
    "unique_name",
]

POSTGRES_DSN = os.environ.get(
    "MASA_JOBS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MASA_JOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# A local service answers in milliseconds; a second means it is not there.
_CONNECT_TIMEOUT_SECONDS = 1.0


def require_service(name: str, url: str) -> None:
    """Fail (CI) or skip (elsewhere) unless ``url``'s host:port accepts connections."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    assert port is not None, f"{name} URL {url!r} has no port"
    try:
        socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_SECONDS).close()
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must provide it", pytrace=False)
        pytest.skip(f"{message}; start it to run this test")


def unique_name(prefix: str = "masa_test") -> str:
    """A name no other test uses: a schema, key prefix or file stem."""
    return f"{prefix}_{uuid4().hex[:12]}"


def drop_postgres_schema(schema: str) -> None:
    """Remove a schema a test created, with everything in it."""
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


def delete_redis_prefix(prefix: str) -> None:
    """Remove every key a test wrote under its prefix."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()

"""The event loops of the SQLite integration tests: asyncio and trio.

The integration conftest runs on asyncio only (asyncpg and redis-py need it);
SQLite runs on trio too, so its modules import this fixture in its place.
"""

from __future__ import annotations

import pytest

__all__ = ["anyio_backend"]


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]

"""Shared fixtures: every async test runs on asyncio and trio; MasaApp is reset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from masa_jobs import MasaApp


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _reset_masa_app() -> Iterator[None]:
    """Each test starts and ends without a published root container."""
    MasaApp.reset()
    yield
    MasaApp.reset()

"""Unit-test fixtures: the shared handlers start every test with a clean slate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import support


@pytest.fixture(autouse=True)
def _clean_support() -> Iterator[None]:
    for state in (support.CALLS, support.SIGNALS, support.GATES, support.FAILURES):
        state.clear()
    yield
    for state in (support.CALLS, support.SIGNALS, support.GATES, support.FAILURES):
        state.clear()

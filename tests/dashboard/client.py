"""Starlette's TestClient, imported without its warning about running on httpx.

Recent Starlette versions deprecate running TestClient on httpx (in favour
of httpx2), and warn when the module is imported; the tests run on httpx.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

__all__ = ["HTTPX_WARNING", "TestClient"]

# For pytest.mark.filterwarnings, should a client also warn when it is used.
HTTPX_WARNING = "ignore:Using `httpx` with `starlette.testclient` is deprecated"

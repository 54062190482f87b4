"""The system's Chromium, as the browser tests and the docs screenshots use it.

No browser is downloaded (no ``playwright install``): Playwright drives
``/usr/bin/chromium``. Without it the browser tests fail in CI (``CI=true``)
and are skipped elsewhere, with the command that installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ...conftest import in_ci

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "artifacts_dir", "require_chromium"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_VARIABLE = "MASA_JOBS_ARTIFACTS"
DEFAULT_ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def artifacts_dir() -> Path:
    """Where screenshots go: ``$MASA_JOBS_ARTIFACTS``, or tests/dashboard/artifacts/."""
    directory = Path(os.environ.get(ARTIFACTS_VARIABLE) or DEFAULT_ARTIFACTS)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def require_chromium() -> None:
    """Fail (CI) or skip (elsewhere) unless the system's Chromium is installed."""
    if CHROMIUM.exists():
        return
    message = (
        f"the browser tests need Chromium at {CHROMIUM}: "
        "apt-get install -y chromium (no browser is downloaded)"
    )
    if in_ci():
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)

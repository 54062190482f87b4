"""Fixtures of the browser tests: one headless Chromium and one server for them all.

The browser is package-scoped, not session-scoped, on purpose: while
Playwright's sync API is active it marks its event loop as running in the
main thread, where no other test could then start one (``anyio.run``,
``asyncio.run``). The browser tests live in this package alone, so one
browser serves all of them and is gone before any other test runs.

Each test gets a fresh browser context (its own cookies), a fresh in-memory
store, and the server serving its dashboard. Store calls go through
``Site.call``, on the server's event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs.dashboard import dashboard
from masa_jobs.manager import DefaultJobManager
from masa_jobs.stores.base import Store

from ..live import LiveServer, no_app
from .chromium import CHROMIUM, CHROMIUM_ARGS, artifacts_dir, require_chromium

VIEWPORT = {"width": 1280, "height": 860}
# Playwright waits this long at most for a page or an element (milliseconds).
BROWSER_TIMEOUT_MS = 15_000
# How Chromium logs a page answered with an error status (a test's 404 or 403).
_ERROR_STATUS = "Failed to load resource: the server responded with a status of"


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh browser context (no cookies).

    Fails the test when a page opens a JavaScript dialog, or logs an error:
    a Content-Security-Policy violation (an inline style, a foreign asset)
    is one. An error status (a 404 page) is logged too, and is no failure.
    """
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    dialogs: list[str] = []
    errors: list[str] = []
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda message: _keep_error(errors, message.type, message.text))
    try:
        yield page
    finally:
        context.close()
    assert dialogs == [], f"the page opened dialogs: {dialogs}"
    assert errors == [], f"the page logged errors: {errors}"


def _keep_error(errors: list[str], kind: str, text: str) -> None:
    if kind == "error" and not text.startswith(_ERROR_STATUS):
        errors.append(text)


@pytest.fixture(scope="package")
def server() -> Iterator[LiveServer]:
    live = LiveServer()
    live.start()
    try:
        yield live
    finally:
        live.stop()


@dataclass
class Site:
    """The dashboard a test serves, its store, and how to reach both."""

    server: LiveServer
    container: Any
    prefix: str = ""

    @property
    def manager(self) -> DefaultJobManager:
        manager: DefaultJobManager = self.container.job_manager()
        return manager

    @property
    def store(self) -> Store:
        return self.manager.store

    def url(self, path: str = "/") -> str:
        return f"{self.server.base_url}{self.prefix}{path}"

    def call(self, coroutine: Any) -> Any:
        """Run a store or manager coroutine on the server's loop."""
        return self.server.call(coroutine)

    def serve(self, **options: Any) -> None:
        """Serve a new dashboard of this site's container (``dashboard()`` options)."""
        self.server.app = dashboard(self.container, **options)


@pytest.fixture
def site(server: LiveServer) -> Iterator[Site]:
    """A fresh memory store behind a dashboard with default options."""
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "memory"}})
    site = Site(server, container)
    site.serve()
    try:
        yield site
    finally:
        server.app = no_app


@pytest.fixture
def screenshot(page: Any) -> Callable[[str], Path]:
    """Save the page as ``<artifacts>/<name>.png`` (a test artifact)."""

    def save(name: str) -> Path:
        path = artifacts_dir() / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save

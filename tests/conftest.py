"""Shared fixtures and the rules of an honest run.

Every async test runs on asyncio and trio; MasaApp is reset around each test.

A combination that cannot apply (trio on a store whose driver is asyncio-only,
a network-store test on a local store ...) is not generated: it is deselected
at collection and counted by reason in the header. So a skip always means that
something is missing (a service, a tool), and in CI (``CI=true``) any skipped
test fails the run, with its reason printed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from masa_jobs import MasaApp

# Contract tests that hold for one kind of store only; the store kinds are in
# tests/contract/conftest.py (``StoreSpec.network``).
NETWORK_STORE_ONLY = "network_store_only"
LOCAL_STORE_ONLY = "local_store_only"

_NOT_APPLICABLE = pytest.StashKey[Counter[str]]()
_SKIP_REASON_INDEX = 2  # a skip's longrepr is (path, line, reason)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


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


# -- combinations that cannot apply are not generated ----------------------------------


def _backend_name(backend: object) -> str | None:
    # anyio accepts "trio" or ("trio", {options}).
    if isinstance(backend, tuple):
        return str(backend[0])
    return backend if isinstance(backend, str) else None


def _why_not_applicable(item: pytest.Item) -> str | None:
    """The reason ``item`` cannot apply, or None when it runs."""
    callspec = getattr(item, "callspec", None)
    # store_spec is a StoreSpec (tests/contract/conftest.py), used by its attributes.
    params: dict[str, Any] = callspec.params if callspec is not None else {}
    spec = params.get("store_spec")
    if spec is None:
        _check_store_markers_have_a_store(item)
        return None
    network = bool(spec.network)
    if _backend_name(params.get("anyio_backend")) == "trio" and not spec.supports_trio:
        return "trio on an asyncio-only store"
    if item.get_closest_marker(NETWORK_STORE_ONLY) and not network:
        return "network-store tests on a local store"
    if item.get_closest_marker(LOCAL_STORE_ONLY) and network:
        return "local-store tests on a network store"
    return None


def _check_store_markers_have_a_store(item: pytest.Item) -> None:
    for marker in (NETWORK_STORE_ONLY, LOCAL_STORE_ONLY):
        if item.get_closest_marker(marker):
            raise pytest.UsageError(
                f"{item.nodeid} is marked {marker} but does not run on the contract "
                "suite's stores: use the store_spec or store fixture, or drop the marker"
            )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    reasons: Counter[str] = Counter()
    for item in items:
        reason = _why_not_applicable(item)
        if reason is None:
            kept.append(item)
        else:
            dropped.append(item)
            reasons[reason] += 1
    config.stash[_NOT_APPLICABLE] = reasons
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    reasons = config.stash.get(_NOT_APPLICABLE, Counter())
    if not reasons:
        return []
    counts = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return [f"not generated (cannot apply): {counts}"]


# -- in CI, a skip is a failure --------------------------------------------------------


def _skipped_reports(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return []
    return list(reporter.stats.get("skipped", []))


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[_SKIP_REASON_INDEX]).removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not in_ci() or not _skipped_reports(session.config):
        return
    # A skip in CI hides a missing service or tool behind a green run.
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not in_ci():
        return
    skipped = _skipped_reports(terminalreporter.config)
    if not skipped:
        return
    terminalreporter.section("skipped tests fail the run in CI", sep="=", red=True, bold=True)
    for report in skipped:
        terminalreporter.line(f"skipped in CI: {report.nodeid}: {_skip_reason(report)}", red=True)
    terminalreporter.line(
        "Provide what each test needs (services, tools) or deselect combinations that "
        "cannot apply in tests/conftest.py.",
        red=True,
    )

"""``/health`` and ``/metrics`` beside the pages."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs.dashboard import dashboard
from masa_jobs.exceptions import NotSupportedError

from .client import HTTPX_WARNING, TestClient

pytestmark = pytest.mark.filterwarnings(HTTPX_WARNING)

LOCAL = ("127.0.0.1", 51000)


@pytest.fixture
def container() -> Any:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "memory"}})
    return container


@pytest.fixture
def client(container: Any) -> Iterator[TestClient]:
    with TestClient(dashboard(container), client=LOCAL) as client:
        yield client


@dataclass
class FakeReport:
    healthy: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, **self.detail}


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: Any) -> None:
    module = ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize(("healthy", "status"), [(True, 200), (False, 503)])
def test_health_answers_the_report_as_json(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, healthy: bool, status: int
) -> None:
    calls: list[float | None] = []

    async def check_health(manager: Any, *, max_due_age: float | None = None) -> FakeReport:
        assert hasattr(manager, "store")
        calls.append(max_due_age)
        return FakeReport(healthy, {"checks": [{"name": "store", "ok": healthy}]})

    _fake_module(monkeypatch, "masa_jobs.health", check_health=check_health)

    response = client.get("/health")
    assert response.status_code == status
    assert response.json() == {"healthy": healthy, "checks": [{"name": "store", "ok": healthy}]}
    assert client.get("/health?max_due_age=90").status_code == status
    assert calls == [None, 90.0]
    assert client.get("/health?max_due_age=soon").status_code == 400


def test_metrics_answer_the_exposition(monkeypatch: pytest.MonkeyPatch, client: TestClient) -> None:
    async def render_metrics(manager: Any) -> tuple[bytes, str]:
        return b'masa_jobs_jobs{state="dead"} 1.0\n', "text/plain; version=0.0.4; charset=utf-8"

    _fake_module(monkeypatch, "masa_jobs.metrics", render_metrics=render_metrics)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.text == 'masa_jobs_jobs{state="dead"} 1.0\n'


def test_metrics_without_prometheus_client_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, client: TestClient
) -> None:
    async def render_metrics(manager: Any) -> tuple[bytes, str]:
        raise NotSupportedError("metrics need prometheus-client: pip install 'masa-jobs[metrics]'")

    _fake_module(monkeypatch, "masa_jobs.metrics", render_metrics=render_metrics)

    response = client.get("/metrics")
    assert response.status_code == 501
    assert "pip install 'masa-jobs[metrics]'" in response.text


def test_metrics_whose_module_cannot_be_imported_are_not_implemented(
    monkeypatch: pytest.MonkeyPatch, client: TestClient
) -> None:
    monkeypatch.setitem(sys.modules, "masa_jobs.metrics", None)  # what a failed import leaves

    response = client.get("/metrics")
    assert response.status_code == 501
    assert "masa_jobs.metrics" in response.text


def test_the_real_probes_answer(client: TestClient) -> None:
    health = client.get("/health")
    assert health.status_code in (200, 503)
    assert isinstance(health.json()["healthy"], bool)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "# HELP" in metrics.text


def test_probes_sit_behind_the_access_rule(container: Any) -> None:
    with TestClient(dashboard(container), client=("203.0.113.7", 4000)) as remote:
        assert remote.get("/health").status_code == 403
        assert remote.get("/metrics").status_code == 403

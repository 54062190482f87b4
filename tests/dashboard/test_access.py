"""Who gets an answer, and the security headers on every answer (no browser needed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from masa_jobs.containers import BackgroundJobContainer
from starlette.applications import Starlette
from starlette.requests import Request

from masa_jobs import MasaApp, MasaNotBuiltError
from masa_jobs.dashboard import dashboard
from masa_jobs.dashboard.security import CONTENT_SECURITY_POLICY, CsrfSigner, is_loopback

from .client import HTTPX_WARNING, TestClient

pytestmark = pytest.mark.filterwarnings(HTTPX_WARNING)

REMOTE = ("203.0.113.7", 51000)
LOCAL = ("127.0.0.1", 51000)


@pytest.fixture
def container() -> Any:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "memory"}})
    return container


@pytest.fixture
def client_for(container: Any) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(app: Starlette | None = None, client: tuple[str, int] = LOCAL) -> TestClient:
        test_client = TestClient(app or dashboard(container), client=client)
        clients.append(test_client)
        return test_client

    yield make
    for test_client in clients:
        test_client.close()


def test_a_remote_client_without_authorize_is_refused_with_the_fix(client_for: Any) -> None:
    response = client_for(client=REMOTE).get("/")
    assert response.status_code == 403
    assert "answers requests from this machine only" in response.text
    assert "came from 203.0.113.7" in response.text
    assert "dashboard(container, authorize=check)" in response.text


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_are_answered(client_for: Any, host: str) -> None:
    assert client_for(client=(host, 50000)).get("/").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"x-forwarded-for": "203.0.113.7"},
        {"x-forwarded-for": "127.0.0.1, 198.51.100.2"},
        {"forwarded": "for=198.51.100.2;proto=https"},
        {"forwarded": 'for="[2001:db8::17]:4711"'},
        {"x-real-ip": "198.51.100.2"},
    ],
)
def test_a_request_a_local_proxy_forwards_from_afar_is_refused(
    client_for: Any, headers: dict[str, str]
) -> None:
    assert client_for().get("/", headers=headers).status_code == 403


def test_a_request_forwarded_from_this_machine_is_local(client_for: Any) -> None:
    headers = {"x-forwarded-for": "127.0.0.1", "forwarded": 'for="[::1]:8080"'}
    assert client_for().get("/", headers=headers).status_code == 200


def test_authorize_decides_for_every_client(container: Any, client_for: Any) -> None:
    seen: list[str] = []

    def authorize(request: Request) -> bool:
        seen.append(request.url.path)
        return request.headers.get("x-operator-token") == "s3cret"

    app = dashboard(container, authorize=authorize)
    remote = client_for(app, REMOTE)
    assert remote.get("/", headers={"x-operator-token": "s3cret"}).status_code == 200
    refused = remote.get("/", headers={"x-operator-token": "guess"})
    assert refused.status_code == 403
    assert "authorize hook refused" in refused.text
    # The hook alone decides: a local client it refuses is refused.
    assert client_for(app, LOCAL).get("/jobs").status_code == 403
    assert seen == ["/", "/", "/jobs"]


def test_an_async_authorize_is_awaited(container: Any, client_for: Any) -> None:
    async def authorize(request: Request) -> bool:
        return request.headers.get("x-role") == "operator"

    client = client_for(dashboard(container, authorize=authorize), REMOTE)
    assert client.get("/workers", headers={"x-role": "operator"}).status_code == 200
    assert client.get("/workers", headers={"x-role": "visitor"}).status_code == 403


@pytest.mark.parametrize(
    "path", ["/", "/jobs", "/queues", "/static/dashboard.css", "/job?id=x", "/nope"]
)
def test_every_answer_carries_the_security_headers(client_for: Any, path: str) -> None:
    response = client_for().get(path)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_refusals_carry_the_security_headers_too(client_for: Any) -> None:
    response = client_for(client=REMOTE).get("/")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_pages_have_no_inline_script_or_style(client_for: Any) -> None:
    client = client_for()
    for path in ("/", "/jobs", "/schedules", "/queues", "/workers", "/job?id=x"):
        html = client.get(path).text
        assert "<script" not in html
        assert "style=" not in html
        assert "<style" not in html
        # No CDN, no external font: every URL is the dashboard's own.
        assert "http://" not in html
        assert "https://" not in html


def test_the_csrf_cookie_is_http_only_strict_and_scoped_to_the_mount(container: Any) -> None:
    outer = Starlette()
    outer.mount("/ops", dashboard(container))
    with TestClient(outer, client=LOCAL) as client:
        cookie = client.get("/ops/jobs").headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ops" in cookie


def test_a_token_signed_with_another_secret_does_not_match() -> None:
    browser_id = "ab" * 32
    assert CsrfSigner("one").token(browser_id) != CsrfSigner("two").token(browser_id)
    assert CsrfSigner("one").token(browser_id) == CsrfSigner(b"one").token(browser_id)


def test_without_a_container_the_root_container_is_used(container: Any) -> None:
    app = dashboard()  # before MasaApp.build: resolved per request
    client = TestClient(app, client=LOCAL)
    not_built = client.get("/jobs")
    assert not_built.status_code == 500
    assert "MasaApp.build(container)" in not_built.text
    MasaApp.build(container, allow_memory_without_worker=True)
    assert client.get("/jobs").status_code == 200


def test_a_container_class_or_a_container_without_jobs_is_refused() -> None:
    with pytest.raises(TypeError, match="container instance"):
        dashboard(BackgroundJobContainer)
    with pytest.raises(TypeError, match="BackgroundJobContainer"):
        dashboard(object())


def test_the_standalone_lifespan_needs_a_built_root() -> None:
    with pytest.raises(MasaNotBuiltError), TestClient(dashboard(), client=LOCAL):
        pass


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("::1", True), ("[::1]", True), ("10.0.0.1", False), ("", False)],
)
def test_is_loopback(host: str, local: bool) -> None:
    assert is_loopback(host) is local

"""The queues page and its actions, and where jobs show their queue (no browser needed).

Store and manager calls go through the client's portal, on the event loop
that serves the dashboard, so the in-memory store is used from one loop only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import pytest
from markupsafe import escape
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs.dashboard import dashboard
from masa_jobs.dashboard.security import CSRF_FIELD
from masa_jobs.manager import DefaultJobManager

from .client import HTTPX_WARNING, TestClient
from .seed import new_job

pytestmark = pytest.mark.filterwarnings(HTTPX_WARNING)

T = TypeVar("T")
LOCAL = ("127.0.0.1", 51000)
SCRIPT = "<script>alert(1)</script>"
_TOKEN = re.compile(rf'name="{CSRF_FIELD}" value="([0-9a-f]+)"')


class Dashboard:
    """A dashboard on a fresh memory store, its client and its manager."""

    def __init__(self, *, read_only: bool = False) -> None:
        self.container = BackgroundJobContainer()
        self.container.config.from_dict({"store": {"backend": "memory"}})
        app = dashboard(self.container, read_only=read_only)
        self.client = TestClient(app, client=LOCAL, follow_redirects=False)

    @property
    def manager(self) -> DefaultJobManager:
        manager: DefaultJobManager = self.container.job_manager()
        return manager

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a store or manager coroutine on the dashboard's event loop."""
        portal = self.client.portal
        assert portal is not None, "the client is not started"
        result: T = portal.call(make)
        return result

    def paused(self) -> set[str]:
        return self.call(self.manager.paused_queues)

    def pause(self, *queues: str) -> None:
        for queue in queues:
            self.call(partial(self.manager.pause_queue, queue))

    def token(self) -> str:
        """The CSRF token of this client's cookie, read from a page's form."""
        found = _TOKEN.search(self.client.get("/queues").text)
        assert found is not None, "the page has no form"
        return found.group(1)

    def post(self, action: str, queue: str, token: str | None = None) -> Any:
        form = {"action": action, "queue": queue}
        if token is not None:
            form[CSRF_FIELD] = token
        return self.client.post("/queues/action", data=form)


@pytest.fixture
def site() -> Iterator[Dashboard]:
    site = Dashboard()
    with site.client:
        yield site


@pytest.fixture
def read_only_site() -> Iterator[Dashboard]:
    site = Dashboard(read_only=True)
    with site.client:
        yield site


def test_the_page_lists_the_paused_queues_each_with_a_resume_button(site: Dashboard) -> None:
    empty = site.client.get("/queues")
    assert empty.status_code == 200
    assert "No queue is paused" in empty.text
    assert '<a href="/queues" aria-current="page">Queues</a>' in empty.text

    site.pause("reports", "media")
    page = site.client.get("/queues").text
    rows = re.findall(r"<tr>\s*<td class=\"name\"><code>([^<]*)</code>", page)
    assert rows == ["media", "reports"]
    assert page.count('name="action" value="resume"') == 2
    assert 'name="queue" value="media"' in page
    assert "No queue is paused" not in page


def test_the_overview_names_the_paused_queues(site: Dashboard) -> None:
    assert "Paused queues" not in site.client.get("/").text
    site.pause("reports", "media")
    overview = site.client.get("/").text
    assert 'Paused queues: <a href="/queues">media, reports</a>' in overview


def test_pause_with_the_token_pauses_and_redirects_back(site: Dashboard) -> None:
    response = site.post("pause", "reports", site.token())
    assert response.status_code == 303
    assert response.headers["location"].startswith("/queues?message=Queue+reports+paused")
    assert site.paused() == {"reports"}

    page = site.client.get(response.headers["location"]).text
    assert "Queue reports paused: no worker starts its jobs until it is resumed." in page
    assert "<code>reports</code>" in page


def test_a_name_typed_with_spaces_around_it_pauses_that_queue(site: Dashboard) -> None:
    assert site.post("pause", "  reports ", site.token()).status_code == 303
    assert site.paused() == {"reports"}


def test_resume_with_the_token_resumes(site: Dashboard) -> None:
    site.pause("reports", "media")
    response = site.post("resume", "reports", site.token())
    assert response.status_code == 303
    assert "Queue+reports+resumed" in response.headers["location"]
    assert site.paused() == {"media"}
    # Resuming a queue that is not paused changes nothing and says it is resumed.
    assert site.post("resume", "reports", site.token()).status_code == 303
    assert site.paused() == {"media"}


@pytest.mark.parametrize("token", [None, "", "0" * 64, "not hex"])
def test_a_post_without_a_valid_token_is_refused_and_changes_nothing(
    site: Dashboard, token: str | None
) -> None:
    site.pause("media")
    site.token()  # the client has its cookie: only the token is wrong
    for action, queue in (("pause", "reports"), ("resume", "media")):
        refused = site.post(action, queue, token)
        assert refused.status_code == 403
        assert "security token" in refused.text
    assert site.paused() == {"media"}


def test_a_token_of_another_browser_is_refused(site: Dashboard) -> None:
    token = site.token()
    site.client.cookies.clear()
    assert site.post("pause", "reports", token).status_code == 403
    assert site.paused() == set()


def test_read_only_shows_no_form_and_refuses_posts(read_only_site: Dashboard) -> None:
    site = read_only_site
    site.pause("media")
    page = site.client.get("/queues").text
    assert "<code>media</code>" in page
    assert "<form" not in page
    assert f'name="{CSRF_FIELD}"' not in page
    assert "Resume" not in page
    for action, queue in (("pause", "reports"), ("resume", "media")):
        refused = site.post(action, queue, "0" * 64)
        assert refused.status_code == 403
        assert "read-only" in refused.text
    assert site.paused() == {"media"}


@pytest.mark.parametrize(
    "name",
    ["", "   ", "two words", "a/b", "x" * 101, "ünïcode", SCRIPT],
)
@pytest.mark.parametrize("action", ["pause", "resume"])
def test_a_bad_name_is_shown_with_the_reason_and_changes_nothing(
    site: Dashboard, name: str, action: str
) -> None:
    site.pause("media")
    response = site.post(action, name, site.token())
    assert response.status_code == 400
    assert "is not a valid queue name" in response.text
    assert "1-100 characters of letters, digits" in response.text
    # The form is shown again with what was typed, and the paused queue still listed.
    assert f'name="queue" value="{escape(name.strip())}"' in response.text
    assert "<code>media</code>" in response.text
    assert site.paused() == {"media"}


def test_a_page_long_name_is_not_echoed_in_full(site: Dashboard) -> None:
    response = site.post("pause", "x" * 100_000, site.token())
    assert response.status_code == 400
    assert len(response.text) < 20_000
    assert site.paused() == set()


def test_an_unknown_action_is_a_bad_request(site: Dashboard) -> None:
    response = site.post("drain", "reports", site.token())
    assert response.status_code == 400
    assert escape("unknown queue action 'drain'") in response.text
    assert site.paused() == set()


def test_typed_html_is_shown_as_text(site: Dashboard) -> None:
    page = site.post("pause", SCRIPT, site.token()).text
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_queue_names_from_the_store_are_escaped_everywhere(site: Dashboard) -> None:
    """A name the manager would refuse may still be in a store written by
    other code: every page shows it as text."""
    evil = '<img src=x onerror="alert(2)">'
    store = site.manager.store
    now = site.call(store.now)
    job = replace(new_job("mail.send", {"to": "ada"}, created_at=now), queue=evil)
    site.call(partial(store.add, (job,)))
    site.call(partial(store.set_queue_paused, evil, True))
    escaped = escape(evil)
    for path in ("/", "/queues", "/jobs", f"/job?id={job.id}"):
        page = site.client.get(path).text
        assert "<img" not in page, path
        assert escaped in page, path


def test_the_jobs_list_and_the_job_page_show_the_queue(site: Dashboard) -> None:
    store = site.manager.store
    now = site.call(store.now)
    urgent = replace(new_job("mail.send", {"n": 1}, created_at=now), queue="critical", priority=2)
    plain = new_job("mail.send", {"n": 2}, created_at=now)
    site.call(partial(store.add, (urgent, plain)))
    site.pause("critical")

    listing = site.client.get("/jobs").text
    assert "<th>Queue</th>" in listing
    cells = re.findall(r'<td class="queue">(.*?)</td>', listing)
    assert len(cells) == 2
    critical = next(cell for cell in cells if "critical" in cell)
    default = next(cell for cell in cells if "default" in cell)
    assert "paused" in critical
    assert "paused" not in default

    page = site.client.get(f"/job?id={urgent.id}").text
    assert re.search(r"<dt>Queue</dt><dd><code>critical</code> <a class=\"badge paused\"", page)
    assert "<dt>Priority</dt><dd>2 " in page
    assert "(0 runs first, 9 last)" in page
    other = site.client.get(f"/job?id={plain.id}").text
    assert "<dt>Queue</dt><dd><code>default</code></dd>" in other
    assert "<dt>Priority</dt><dd>0 " in other

"""Secrets out of text: ``redact`` over every URL and DSN form, addresses without
passwords, DSNs and URLs checked at build, and the ``redact_error`` hook."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import (
    BackgroundJobOptions,
    ConfigurationError,
    DefaultJobManager,
    JobRegistry,
    JobState,
    MasaApp,
    MemoryJobStore,
    StoreUnavailableError,
    Worker,
)
from masa_jobs._outage import OutageLog
from masa_jobs._redact import (
    GuardedRedactor,
    describe_postgres_dsn,
    describe_redis_url,
    redact,
)
from masa_jobs.stores._postgres_settings import PostgresSettings, describe_dsn
from masa_jobs.stores._redis_settings import RedisStoreSettings, redacted

from .support import ALL_HANDLERS, Doomed, fast_options, running, wait_for_record

SECRET = "S3cret"

# -- redact: every form ----------------------------------------------------------------

URLS = [
    ("postgresql://app:S3cret@db/app", "postgresql://app:***@db/app"),
    (
        "postgres://app:S3cret@db.example:5433/jobs?sslmode=require",
        "postgres://app:***@db.example:5433/jobs?sslmode=require",
    ),
    ("redis://:S3cret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("rediss://worker:S3cret@cache:6380/1", "rediss://worker:***@cache:6380/1"),
    ("REDIS://:S3cret@cache", "REDIS://:***@cache"),
    # Unix sockets: the password in the user info or in the query.
    ("redis+unix://:S3cret@/run/redis.sock?db=0", "redis+unix://:***@/run/redis.sock?db=0"),
    ("unix://:S3cret@/run/redis.sock", "unix://:***@/run/redis.sock"),
    ("unix:///run/redis.sock?db=2&password=S3cret", "unix:///run/redis.sock?db=2&password=***"),
    (
        "postgresql:///app?host=/var/run/postgresql&password=S3cret&sslmode=disable",
        "postgresql:///app?host=/var/run/postgresql&password=***&sslmode=disable",
    ),
    ("postgresql://db/app?password=S3cret", "postgresql://db/app?password=***"),
    ("postgresql://db/app?user=a&sslpassword=S3cret", "postgresql://db/app?user=a&sslpassword=***"),
    # Percent-escapes, and unescaped '@' or ':' in the password.
    ("postgresql://app:S3%40cr%3Aet@db/app", "postgresql://app:***@db/app"),
    ("postgresql://app:S3@cr@et@db/app", "postgresql://app:***@db/app"),
    ("postgresql://app:S3:cr:et@db/app", "postgresql://app:***@db/app"),
    ("postgresql://ann@corp.example:S3cret@db/app", "postgresql://ann@corp.example:***@db/app"),
    # An unescaped '/', '?' or '#' cuts the authority short: hidden all the same.
    ("postgresql://app:S3/cret@db/app", "postgresql://app:***@db/app"),
    ("postgresql://app:S3?cret@db/app", "postgresql://app:***@db/app"),
    ("postgresql://app:S3#cret@db/app", "postgresql://app:***@db/app"),
    # Tokens in web URLs, as user info or as a query parameter.
    ("https://S3cret@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("https://x-access-token:S3cret@github.com/o/r", "https://x-access-token:***@github.com/o/r"),
    ("https://api.example/v1?api_key=S3cret&page=2", "https://api.example/v1?api_key=***&page=2"),
    (
        "jdbc:postgresql://db/app?user=a&password=S3cret",
        "jdbc:postgresql://db/app?user=a&password=***",
    ),
    # Several URLs in one run of text.
    ("redis://:S3cret@h1,redis://:S3cret@h2", "redis://:***@h1,redis://:***@h2"),
]

KEYWORDS = [
    ("host=db user=app password=S3cret dbname=app", "host=db user=app password=*** dbname=app"),
    ("host=db password='S3 cr et' dbname=app", "host=db password='***' dbname=app"),
    ("host=db password='S3\\'cret' dbname=app", "host=db password='***' dbname=app"),
    ("host=db password = S3cret dbname=app", "host=db password = *** dbname=app"),
    ("host=db password=S3\\ cret dbname=app", "host=db password=*** dbname=app"),
    ("PGPASSWORD=S3cret psql -h db", "PGPASSWORD=*** psql -h db"),
    ("connect(host='db', password='S3cret')", "connect(host='db', password='***')"),
    ('connect(password="S3cret", port=5432)', 'connect(password="***", port=5432)'),
    ("Server=db;Uid=app;Pwd=S3cret;", "Server=db;Uid=app;Pwd=***;"),
    ("{'user': 'app', 'password': 'S3cret'}", "{'user': 'app', 'password': '***'}"),
    ('{"api_key": "S3\\"cret", "n": 1}', '{"api_key": "***", "n": 1}'),
    ('{"token":"S3cret"}', '{"token":"***"}'),
]

UNCHANGED = [
    "",
    "RuntimeError: doomed x",
    "postgresql://app@db:5432/app",
    "postgresql://db/app?sslmode=require&application_name=masa",
    "redis://cache:6379/0",
    "unix:///run/redis.sock?db=0",
    "https://registry.example/@types/node and https://host/users/ann@example.org",
    "max_tokens=100 passwords_tried=3",
    "password= ",
    "File \"/srv/app/jobs.py\", line 12, in execute\n    raise ValueError('x')",
]


@pytest.mark.parametrize(("text", "expected"), URLS)
def test_a_url_keeps_everything_but_its_password(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(("text", "expected"), KEYWORDS)
def test_keyword_and_mapping_secrets_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(("text", "_"), URLS + KEYWORDS)
def test_redacting_twice_changes_nothing_more(text: str, _: str) -> None:
    assert redact(redact(text)) == redact(text)


def test_a_url_inside_an_exception_text_is_found() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in connect\n'
        "ConnectionError: cannot reach 'postgresql://app:S3cret@db:5432/app' "
        '(dsn="host=db password=S3cret"); retry with redis://:S3cret@cache/0.\n'
    )

    redacted_text = redact(text)

    assert SECRET not in redacted_text
    assert "'postgresql://app:***@db:5432/app'" in redacted_text
    assert "redis://:***@cache/0." in redacted_text
    assert redacted_text.startswith("Traceback (most recent call last):\n")


def test_long_hostile_texts_take_linear_time() -> None:
    # Each of these would be quadratic with a naive pattern: at 200 kB that is minutes.
    for text in ("a." * 100_000, "http://" * 30_000, "'password':'" + "x" * 200_000):
        assert len(redact(text)) > 0


# -- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "address"),
    [
        ("postgresql://app:S3cret@db:5432/app", "app@db:5432/app"),
        ("postgresql://app:S3%40cret@db/app", "app@db/app"),
        ("postgresql://db", "db"),
        ("postgresql:///app", "localhost/app"),
        ("postgresql:///app?host=/var/run/postgresql&user=me", "me@unix:/var/run/postgresql/app"),
        (
            "postgresql://app@%2Fvar%2Frun%2Fpostgresql:5433/app",
            "app@unix:/var/run/postgresql:5433/app",
        ),
        ("postgresql://:S3cret@/app?host=h1,h2&port=5432,5433", "h1:5432,h2:5433/app"),
        ("postgresql://[::1]:5432/app?password=S3cret", "[::1]:5432/app"),
        ("postgresql://[oops/app", "(an address that cannot be read)"),
    ],
)
def test_a_postgres_address_names_user_host_port_and_database(dsn: str, address: str) -> None:
    assert describe_postgres_dsn(dsn) == address
    assert describe_dsn(dsn) == address


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://:S3cret@cache/0", "redis://cache:6379/0"),
        ("rediss://worker:S3cret@cache:6380/2", "rediss://cache:6380/2"),
        ("redis://[::1]", "redis://[::1]:6379"),
        ("redis://", "redis://localhost:6379"),
        ("unix://:S3cret@/run/redis.sock?db=1&password=S3cret", "unix:///run/redis.sock"),
    ],
)
def test_a_redis_address_names_host_port_and_database(url: str, address: str) -> None:
    assert describe_redis_url(url, 6379) == address
    assert redacted(url) == address


# -- PostgreSQL DSNs at build ---------------------------------------------------------------


def _postgres(dsn: str) -> PostgresSettings:
    return PostgresSettings.from_mapping({"backend": "postgres", "dsn": dsn})


@pytest.mark.parametrize(
    ("dsn", "url"),
    [
        ("postgresql://app:S3cret@db/app", "postgresql://app:S3cret@db/app"),
        ("  postgres://db/app  ", "postgres://db/app"),
        ("host=db user=app password=S3cret dbname=app", "postgresql://app:S3cret@db/app"),
        (
            "host=db port=5433 user=app password='S3 @:/?#cr\\'et' dbname='my db' sslmode=require",
            "postgresql://app:S3%20%40%3A%2F%3F%23cr%27et@db:5433/my%20db?sslmode=require",
        ),
        (
            "host=/var/run/postgresql dbname=app",
            "postgresql:///app?host=%2Fvar%2Frun%2Fpostgresql",
        ),
        ("host=h1,h2 port=5432,5433", "postgresql://?host=h1%2Ch2&port=5432%2C5433"),
        ("host=::1 user=app", "postgresql://app@[::1]"),
        ("dbname=app application_name=reports", "postgresql:///app?application_name=reports"),
    ],
)
def test_a_dsn_becomes_a_url_asyncpg_reads_as_meant(dsn: str, url: str) -> None:
    settings = _postgres(dsn)

    assert settings.dsn == url
    assert SECRET not in repr(settings)


def test_a_converted_keyword_dsn_gives_asyncpg_each_part_unchanged() -> None:
    from asyncpg import connect_utils

    settings = _postgres("host=db port=5433 user=app password='S3 @:/cr\\'et' dbname='my db'")

    addresses, params = connect_utils._parse_connect_dsn_and_args(
        dsn=settings.dsn,
        host=None,
        port=None,
        user=None,
        password=None,
        passfile=None,
        database=None,
        ssl=None,
        service=None,
        servicefile=None,
        direct_tls=None,
        server_settings=None,
        target_session_attrs=None,
        krbsrvname=None,
        gsslib=None,
    )[:2]
    assert addresses == [("db", 5433)]
    assert (params.user, params.password, params.database) == ("app", "S3 @:/cr'et", "my db")


@pytest.mark.parametrize(
    ("dsn", "fix"),
    [
        ("postgresql://app:S3@cret@db/app", "percent-escape '@' as %40"),
        ("postgresql://app:pw/S3cret@db/app", "percent-escape"),
        ("postgresql://app:pw#S3cret@db/app", "percent-escape"),
        ("postgresql://app:pw?S3cret@db/app", "%3F"),
        ("postgresql://app:S3cret@db:port/app", "port is not a number"),
        ("postgresql://app:S3cret@db/app?port=S3cret", "port query parameter"),
        ("postgresql://app:S3cret@db/app?S3cret", "name=value"),
        ("postgresql://app:S3cret@[S3cret/app", "IPv6"),
        ("mysql://app:S3cret@db/app", "postgresql://"),
        ("S3cret", "postgresql://user:password@host:5432/database"),
        ("host=db password=S3cret connect_timeout=5", "store.connect_timeout"),
        ("host=db password=S3cret hostaddr=10.0.0.1", "hostaddr is not supported"),
        ("host=db password='S3cret", "single quotes"),
        ("host=db password S3cret", "key=value"),
    ],
)
def test_a_dsn_asyncpg_would_misread_is_refused_without_quoting_it(dsn: str, fix: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _postgres(dsn)

    message = str(caught.value)
    assert fix in message
    assert "store.dsn (MASA_JOBS_STORE__DSN)" in message
    assert SECRET not in message
    # Nothing attached to the error holds the DSN either.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_a_keyword_dsn_refusal_shows_the_url_form() -> None:
    with pytest.raises(ConfigurationError, match=r"postgresql://user:password@host:5432/database"):
        _postgres("host=db password=S3cret options='-c x=y'")


def test_settings_built_directly_never_echo_the_dsn() -> None:
    with pytest.raises(ValueError, match="%40") as caught:
        PostgresSettings(dsn="postgresql://app:S3@cret@db/app")

    assert SECRET not in str(caught.value)


# -- Redis URLs at build ------------------------------------------------------------------


def _redis(url: str) -> RedisStoreSettings:
    return RedisStoreSettings.from_mapping({"backend": "redis", "url": url})


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache",
        "redis://cache/",
        "redis://cache:6379/15",
        "redis://:S3@cret@cache/0",  # redis-py splits at the last '@', as meant
        "rediss://worker:S3cret@cache:6380/1?ssl_cert_reqs=required",
        "unix:///run/redis.sock?db=3",
        "redis://cache?db=2&socket_timeout=1.5",
    ],
)
def test_a_redis_url_redis_reads_as_meant_is_accepted(url: str) -> None:
    settings = _redis(url)

    assert settings.url == url
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("redis://cache/abc", "database part after the host is not a number"),
        ("redis://:S3cret@cache/S3cret", "database part"),
        ("redis://cache/1/2", "database part"),
        ("redis://cache/0?db=abc", "query parameter db is not a number"),
        ("unix:///run/redis.sock?db=zero", "query parameter db"),
        ("redis://cache?socket_timeout=soon", "socket_timeout"),
        ("redis://:pw/S3cret@cache:port/0", "port is not a number"),
        ("redis://cache:0/0", "1 to 65535"),
        ("redis://cache:99999/0", "port is not a number"),
        ("http://:S3cret@cache", "scheme"),
    ],
)
def test_a_redis_url_redis_would_misread_is_refused_without_quoting_it(url: str, fix: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _redis(url)

    message = str(caught.value)
    assert fix in message
    assert "MASA_JOBS_STORE__URL" in message
    assert SECRET not in message
    assert caught.value.__context__ is None


@pytest.mark.parametrize(
    ("store", "fix"),
    [
        ({"backend": "postgres", "dsn": "host=db password=S3cret connect_timeout=3"}, "keyword"),
        ({"backend": "postgres", "dsn": "postgresql://app:S3@cret@db/app"}, "%40"),
        ({"backend": "redis", "url": "redis://:S3cret@cache/abc"}, "database part"),
    ],
)
def test_masa_app_build_refuses_a_misread_address(store: dict[str, Any], fix: str) -> None:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": store})

    with pytest.raises(ConfigurationError, match=fix) as caught:
        MasaApp.build(container)

    assert SECRET not in str(caught.value)


# -- the redact_error option ------------------------------------------------------------------


def scrub_digits(text: str) -> str:
    """A redact_error of an application's own: here, hide every digit."""
    return "".join("#" if char.isdigit() else char for char in text)


def test_the_default_redact_error_is_redact() -> None:
    assert BackgroundJobOptions().redact_error is redact
    assert BackgroundJobOptions.model_fields["redact_error"].default == "masa_jobs:redact"


@pytest.mark.parametrize(
    "path", [f"{__name__}:scrub_digits", f"{__name__}.scrub_digits", f" {__name__}:scrub_digits "]
)
def test_redact_error_from_an_import_path_in_config(path: str) -> None:
    options = BackgroundJobOptions.from_config({"redact_error": path})

    assert options.redact_error("pw 123") == "pw ###"


def test_redact_error_from_the_environment() -> None:
    container = BackgroundJobContainer()
    from masa_jobs.containers import load_env

    load_env(container.config, {"MASA_JOBS_OPTIONS__REDACT_ERROR": f"{__name__}:scrub_digits"})

    assert container.options().redact_error("a1") == "a#"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("no_such_module_here:scrub", "ModuleNotFoundError"),
        (f"{__name__}:no_such_function", "AttributeError"),
        (f"{__name__}:SECRET", "is a str, not a function"),
        ("", "cannot import"),
    ],
)
def test_a_redact_error_that_cannot_be_imported_is_refused(path: str, problem: str) -> None:
    with pytest.raises(ValueError, match="redact_error") as caught:
        BackgroundJobOptions.from_config({"redact_error": path})

    assert problem in str(caught.value)


def test_a_function_is_kept_frozen_and_out_of_dumps() -> None:
    options = BackgroundJobOptions(redact_error=scrub_digits)

    assert options == BackgroundJobOptions(redact_error=scrub_digits)
    assert options.redact_error("7") == "#"
    assert "redact_error" not in options.model_dump()
    with pytest.raises(ValueError, match="frozen"):
        options.redact_error = redact
    with pytest.raises(ValueError, match="callable"):
        BackgroundJobOptions(redact_error=42)  # type: ignore[arg-type]


@pytest.fixture
def fresh_reports() -> Iterator[None]:
    from masa_jobs import _redact

    _redact._REPORTED.clear()
    yield
    _redact._REPORTED.clear()


@pytest.mark.usefixtures("fresh_reports")
def test_a_failing_redact_error_falls_back_to_redact_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(text: str) -> str:
        raise RuntimeError(f"cannot handle {text}")

    guarded = BackgroundJobOptions(redact_error=broken).redact_error

    assert isinstance(guarded, GuardedRedactor)
    for _ in range(3):
        assert guarded("redis://:S3cret@cache") == "redis://:***@cache"
    reports = [r for r in caplog.records if "redact_error" in r.getMessage()]
    assert len(reports) == 1
    assert SECRET not in reports[0].getMessage()
    assert reports[0].exc_info is None


@pytest.mark.usefixtures("fresh_reports")
def test_a_redact_error_that_returns_no_text_falls_back_to_redact() -> None:
    def silent(text: str) -> None:
        return None

    guarded = BackgroundJobOptions(redact_error=silent).redact_error  # type: ignore[arg-type]

    assert guarded("password=S3cret") == "password=***"


# -- where the worker applies it ------------------------------------------------------------


def _worker(store: MemoryJobStore, **options: Any) -> Worker:
    return Worker(store, JobRegistry(ALL_HANDLERS), fast_options(**options), worker_id="w")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "stored"),
    [
        ({}, "doomed postgresql://app:***@db/app"),
        ({"redact_error": scrub_digits}, "doomed postgresql://app:S#cret@db/app"),
    ],
)
async def test_last_error_is_redacted_before_it_is_stored(
    options: dict[str, Any], stored: str
) -> None:
    store = MemoryJobStore()
    manager = DefaultJobManager(store, JobRegistry(ALL_HANDLERS), fast_options())
    async with running(_worker(store, max_retry_times=0, **options)):
        job_id = await manager.enqueue(Doomed(key="postgresql://app:S3cret@db/app"))
        record = await wait_for_record(store, job_id, lambda r: r.state is JobState.DEAD)

    assert record.last_error is not None
    assert stored in record.last_error
    assert SECRET not in record.last_error


def test_outage_logs_redact_the_traceback_and_the_reminders(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import masa_jobs._outage as outage

    caplog.set_level(logging.INFO)
    log = OutageLog(logging.getLogger("test.redact.outage"), "claiming jobs")
    try:
        raise StoreUnavailableError("cannot connect to postgresql://app:S3cret@db/app")
    except StoreUnavailableError as exc:
        failure = exc

    log.failed(failure)
    monkeypatch.setattr(outage, "OUTAGE_REPORT_SECONDS", 0.0)
    log.failed(failure)

    records = [r for r in caplog.records if r.name == "test.redact.outage"]
    assert [r.levelname for r in records] == ["ERROR", "WARNING"]
    first = records[0].getMessage()
    assert first.startswith("claiming jobs failed; retrying\nTraceback (most recent call last):")
    assert "StoreUnavailableError: cannot connect to postgresql://app:***@db/app" in first
    assert records[0].exc_info is None
    assert "last: StoreUnavailableError: cannot connect to postgresql://app:***@db/app" in (
        records[1].getMessage()
    )
    assert all(SECRET not in r.getMessage() for r in records)


def test_an_outage_log_can_use_the_options_hook(caplog: pytest.LogCaptureFixture) -> None:
    log = OutageLog(logging.getLogger("test.redact.hook"), "claiming", redact_error=scrub_digits)

    log.failed(RuntimeError("error 42"))

    assert "RuntimeError: error ##" in caplog.records[-1].getMessage()

"""The public API is a contract: pin it."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import subprocess
import sys
from enum import StrEnum
from pathlib import Path

import masa_jobs.containers as containers
import pytest

import masa_jobs

REPO_ROOT = Path(__file__).resolve().parents[2]

EXPECTED_ALL = [
    "BackgroundJob",
    "BackgroundJobBase",
    "BackgroundJobManager",
    "BackgroundJobOptions",
    "BackgroundScheduleJob",
    "CancelFeed",
    "ConfigurationError",
    "CronSchedule",
    "DefaultJobManager",
    "DuplicateJobError",
    "DuplicateJobNameError",
    "EnqueueError",
    "InvalidDelayError",
    "InvalidJobArgsError",
    "InvalidJobOptionsError",
    "InvalidJobStateError",
    "InvalidQueryError",
    "InvalidScheduleError",
    "InvalidTimeoutError",
    "JobContext",
    "JobEvent",
    "JobId",
    "JobInfo",
    "JobManager",
    "JobNotFoundError",
    "LeaseLostError",
    "JobOutcome",
    "JobQuery",
    "JobRecord",
    "JobRegistry",
    "JobState",
    "JobStore",
    "MasaAlreadyBuiltError",
    "MasaApp",
    "MasaJobsError",
    "MasaNotBuiltError",
    "MemoryJobStore",
    "NotSupportedError",
    "OperatorStore",
    "Page",
    "PayloadTooLargeError",
    "RegistryError",
    "RetryPolicy",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "ScheduleRecord",
    "ScheduleStore",
    "Scheduler",
    "SchemaVersionError",
    "StoreError",
    "Store",
    "StoreRejectedError",
    "StoreUnavailableError",
    "TransactionError",
    "TransactionalStore",
    "UniqueScope",
    "SyncJobManager",
    "UnknownJobError",
    "Worker",
    "WorkerInfo",
    "__version__",
    "current_job",
    "get_job_name",
    "job_name",
    "job_options",
    "redact",
]

# The names the design document promises users.
DESIGN_NAMES = [
    "BackgroundJob",
    "BackgroundJobBase",
    "BackgroundScheduleJob",
    "job_name",
    "get_job_name",
    "BackgroundJobManager",
    "JobManager",
    "MasaApp",
    "BackgroundJobOptions",
    "JobInfo",
    "JobState",
    "MasaJobsError",
    "MasaNotBuiltError",
    "MasaAlreadyBuiltError",
]


def test_all_is_pinned() -> None:
    assert sorted(masa_jobs.__all__) == sorted(EXPECTED_ALL)
    assert len(set(masa_jobs.__all__)) == len(masa_jobs.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_exported_name_exists(name: str) -> None:
    assert getattr(masa_jobs, name) is not None


@pytest.mark.parametrize("name", DESIGN_NAMES)
def test_every_design_name_is_exported(name: str) -> None:
    assert name in masa_jobs.__all__


def test_the_containers_package() -> None:
    from masa_jobs.containers import BackgroundJobContainer

    assert "BackgroundJobContainer" in containers.__all__
    assert BackgroundJobContainer.__module__.startswith("masa_jobs.containers")


def test_no_top_level_containers_module_is_installed(tmp_path: Path) -> None:
    # Outside the repository, "containers" is the user's name to take.
    found = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('containers'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "None"


def test_every_exported_error_derives_from_the_root() -> None:
    errors = [
        obj
        for name in masa_jobs.__all__
        if inspect.isclass(obj := getattr(masa_jobs, name)) and issubclass(obj, Exception)
    ]

    assert len(errors) == 26
    assert all(issubclass(error, masa_jobs.MasaJobsError) for error in errors)


def test_job_states() -> None:
    assert issubclass(masa_jobs.JobState, StrEnum)
    assert [state.value for state in masa_jobs.JobState] == [
        "scheduled",
        "enqueued",
        "processing",
        "succeeded",
        "dead",
        "cancelled",
    ]


def test_job_info_fields() -> None:
    fields = [field.name for field in dataclasses.fields(masa_jobs.JobInfo)]

    assert fields == [
        "id",
        "name",
        "state",
        "attempts",
        "created_at",
        "next_try_at",
        "last_try_at",
        "last_error",
        "args",
        "finished_at",
        "worker",
        "history",
        "headers",
        "queue",
        "priority",
    ]
    assert masa_jobs.JobInfo.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "method",
    [
        "enqueue",
        "enqueue_many",
        "add_or_update_schedule",
        "remove_schedule",
        "get",
        "list",
        "count",
        "retry",
        "cancel",
        "delete",
        "purge",
        "pause_queue",
        "resume_queue",
        "paused_queues",
    ],
)
def test_job_manager_protocol(method: str) -> None:
    assert inspect.iscoroutinefunction(getattr(masa_jobs.JobManager, method))
    assert inspect.iscoroutinefunction(getattr(masa_jobs.DefaultJobManager, method))


@pytest.mark.parametrize("method", ["enqueue", "add_or_update_schedule"])
def test_static_facade(method: str) -> None:
    assert inspect.iscoroutinefunction(getattr(masa_jobs.BackgroundJobManager, method))


def test_enqueue_signature() -> None:
    parameters = inspect.signature(masa_jobs.BackgroundJobManager.enqueue).parameters

    keyword_only = [
        "timeout",
        "queue",
        "priority",
        "unique_key",
        "unique_scope",
        "unique_for",
        "connection",
    ]
    assert list(parameters) == ["args", "delay", *keyword_only]
    assert parameters["delay"].default is None
    for name in keyword_only:
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default is None


def test_importing_the_library_imports_no_store_driver() -> None:
    script = (
        "import sys\n"
        "import masa_jobs, containers\n"
        "loaded = [m for m in ('asyncpg', 'redis', 'aiosqlite', 'psycopg', 'sqlalchemy')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("masa_jobs.dashboard", ["Authorize", "dashboard"]),
        ("masa_jobs.health", ["HealthCheck", "HealthReport", "check_health"]),
        ("masa_jobs.metrics", ["CONTENT_TYPE", "render_metrics"]),
        ("masa_jobs.logs", ["JsonFormatter", "configure_logging"]),
        ("masa_jobs.queries", ["JobQuery", "MAX_PAGE_SIZE", "EXACT_COUNT_LIMIT", "Page"]),
        ("masa_jobs.stores", ["BACKENDS", "OperatorStore", "build_store"]),
    ],
)
def test_operations_modules_export_their_names(module: str, names: list[str]) -> None:
    exported = importlib.import_module(module).__all__
    assert set(names) <= set(exported)

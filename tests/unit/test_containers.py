"""BackgroundJobContainer: configuration from a dict, the environment or YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
from masa_jobs.containers import (
    DEFAULT_CONFIG,
    ENV_PREFIX,
    BackgroundJobContainer,
    config_from_env,
    load_env,
)

from masa_jobs import (
    BackgroundJobOptions,
    ConfigurationError,
    DefaultJobManager,
    JobRegistry,
    MemoryJobStore,
    Worker,
)

ENVIRON = {
    "MASA_JOBS_STORE__BACKEND": "memory",
    "MASA_JOBS_OPTIONS__BATCH_SIZE": "50",
    "MASA_JOBS_OPTIONS__POLL_INTERVAL": "0.5",
    "MASA_JOBS_OPTIONS__DISABLE_BACKGROUND_JOB": "true",
    "MASA_JOBS_OPTIONS__JOB_PACKAGES": "tests.unit.sample_jobs.mail,tests.unit.sample_jobs",
    "HOME_OF_SOMETHING_ELSE": "ignored",
    "MASA_JOBSX": "ignored",
}


def test_defaults() -> None:
    container = BackgroundJobContainer()

    assert ENV_PREFIX == "MASA_JOBS_"
    assert DEFAULT_CONFIG["store"] == {"backend": "memory"}
    assert container.options() == BackgroundJobOptions()
    assert isinstance(container.job_store(), MemoryJobStore)
    assert isinstance(container.job_registry(), JobRegistry)
    assert isinstance(container.job_manager(), DefaultJobManager)
    assert isinstance(container.worker(), Worker)


def test_parts_are_singletons_sharing_one_store() -> None:
    container = BackgroundJobContainer()

    assert container.job_manager() is container.job_manager()
    assert container.worker() is container.worker()
    assert container.job_manager().store is container.job_store()
    assert BackgroundJobContainer().job_store() is not container.job_store()


def test_config_from_a_dict() -> None:
    container = BackgroundJobContainer()
    container.config.from_dict(
        {
            "store": {"backend": "memory"},
            "options": {
                "poll_interval": 0.25,
                "batch_size": 7,
                "max_retry_times": 3,
                "first_wait_duration": 1.5,
                "wait_duration": 3,
                "disable_background_job": True,
                "job_packages": ["tests.unit.sample_jobs"],
            },
        }
    )

    options = container.options()

    assert options == BackgroundJobOptions(
        poll_interval=0.25,
        batch_size=7,
        max_retry_times=3,
        first_wait_duration=1.5,
        wait_duration=3,
        disable_background_job=True,
        job_packages=("tests.unit.sample_jobs",),
    )
    assert container.job_registry().args_type("sample-jobs.send-mail") is not None


def test_config_from_the_environment() -> None:
    container = BackgroundJobContainer()

    load_env(container.config, ENVIRON)

    options = container.options()
    assert options.batch_size == 50
    assert options.poll_interval == 0.5
    assert options.disable_background_job is True
    assert options.job_packages == ("tests.unit.sample_jobs.mail", "tests.unit.sample_jobs")
    assert isinstance(container.job_store(), MemoryJobStore)


def test_config_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASA_JOBS_OPTIONS__BATCH_SIZE", "50")
    container = BackgroundJobContainer()

    load_env(container.config)

    assert container.options().batch_size == 50


def test_the_environment_wins_over_earlier_config() -> None:
    container = BackgroundJobContainer()
    container.config.from_dict({"options": {"batch_size": 5, "concurrency": 3}})

    load_env(container.config, {"MASA_JOBS_OPTIONS__BATCH_SIZE": "50"})

    assert container.options().batch_size == 50
    assert container.options().concurrency == 3


def test_config_from_env_nests_on_double_underscores() -> None:
    assert config_from_env(ENVIRON) == {
        "store": {"backend": "memory"},
        "options": {
            "batch_size": "50",
            "poll_interval": "0.5",
            "disable_background_job": "true",
            "job_packages": "tests.unit.sample_jobs.mail,tests.unit.sample_jobs",
        },
    }
    assert config_from_env({}) == {}


def test_config_from_env_with_another_prefix() -> None:
    assert config_from_env({"APP_STORE__BACKEND": "memory"}, prefix="APP_") == {
        "store": {"backend": "memory"}
    }


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"MASA_JOBS_OPTIONS____BATCH_SIZE": "5"}, "empty key segment"),
        ({"MASA_JOBS_OPTIONS__": "5"}, "empty key segment"),
        ({"MASA_JOBS_STORE": "memory", "MASA_JOBS_STORE__BACKEND": "memory"}, "nests under"),
    ],
)
def test_malformed_environment_variables(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        config_from_env(environ)


def test_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "masa-jobs.yaml"
    path.write_text(
        "store:\n"
        "  backend: memory\n"
        "options:\n"
        "  batch_size: 12\n"
        "  poll_interval: 0.5\n"
        "  max_retry_times: 0\n"
        "  job_packages:\n"
        "    - tests.unit.sample_jobs\n",
        encoding="utf-8",
    )
    container = BackgroundJobContainer()

    container.config.from_yaml(path, required=True)

    options = container.options()
    assert options.batch_size == 12
    assert options.poll_interval == 0.5
    assert options.max_retry_times == 0
    assert options.job_packages == ("tests.unit.sample_jobs",)
    assert isinstance(container.job_store(), MemoryJobStore)


def test_an_unknown_backend_from_the_environment() -> None:
    container = BackgroundJobContainer()
    load_env(container.config, {"MASA_JOBS_STORE__BACKEND": "cassandra"})

    with pytest.raises(ConfigurationError, match=r"'cassandra'.*one of: memory"):
        container.job_store()

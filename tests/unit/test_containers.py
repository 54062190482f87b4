"""BackgroundJobContainer: configuration from a dict, the environment or YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
from masa_jobs.containers import (
    CONFIG_FILE_VARIABLE,
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
from masa_jobs._config_sources import config_from_file, layered_config

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


# -- the sources MasaApp.build layers under the code's values ------------------------


def test_config_holds_only_what_the_code_set() -> None:
    container = BackgroundJobContainer()
    assert container.config() in (None, {})

    container.config.from_dict({"options": {"batch_size": 5}})

    assert container.config() == {"options": {"batch_size": 5}}


def test_the_config_file_variable_is_not_a_key() -> None:
    environ = {CONFIG_FILE_VARIABLE: "/etc/masa-jobs.yaml", "MASA_JOBS_OPTIONS__BATCH_SIZE": "5"}

    assert CONFIG_FILE_VARIABLE == "MASA_JOBS_CONFIG"
    assert config_from_env(environ) == {"options": {"batch_size": "5"}}


def test_layers_merge_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "masa-jobs.yaml"
    path.write_text(
        "store: {backend: sqlite, path: /from/file.db}\noptions: {batch_size: 1, concurrency: 2}\n",
        encoding="utf-8",
    )
    environ = {
        CONFIG_FILE_VARIABLE: str(path),
        "MASA_JOBS_STORE__PATH": "/from/env.db",
        "MASA_JOBS_OPTIONS__BATCH_SIZE": "3",
    }

    merged = layered_config({"options": {"concurrency": 4, "job_packages": ["a"]}}, environ)

    assert merged == {
        "store": {"backend": "sqlite", "path": "/from/env.db"},
        "options": {"batch_size": "3", "concurrency": 4, "job_packages": ["a"]},
    }
    assert layered_config(None, {}) == DEFAULT_CONFIG


def test_an_empty_config_file_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")

    assert config_from_file({CONFIG_FILE_VARIABLE: str(path)}) == {}
    assert config_from_file({}) == {}


def test_load_env_still_lets_the_environment_win() -> None:
    container = BackgroundJobContainer()
    container.config.from_dict({"options": {"batch_size": 5}})

    load_env(container.config, {"MASA_JOBS_OPTIONS__BATCH_SIZE": "50"})

    assert container.config.options.batch_size() == "50"


def test_a_store_named_higher_up_drops_the_settings_of_another_store() -> None:
    environ = {
        "MASA_JOBS_STORE__BACKEND": "postgres",
        "MASA_JOBS_STORE__DSN": "postgresql://app@db/app",
    }

    merged = layered_config({"store": {"backend": "sqlite", "path": "/x.db"}}, environ)
    same = layered_config({"store": {"backend": "postgres", "schema": "a"}}, environ)
    address_only = layered_config(
        {"store": {"backend": "sqlite"}}, {"MASA_JOBS_STORE__PATH": "/y.db"}
    )

    assert merged["store"] == {"backend": "sqlite", "path": "/x.db"}
    assert same["store"] == {"backend": "postgres", "dsn": "postgresql://app@db/app", "schema": "a"}
    assert address_only["store"] == {"backend": "sqlite", "path": "/y.db"}

"""Three sources of configuration: a dict, a YAML file and MASA_JOBS_... variables."""

from collections.abc import Mapping
from pathlib import Path

from masa_jobs.containers import BackgroundJobContainer, load_env

from masa_jobs import BackgroundJobOptions

HERE = Path(__file__).parent


def container_from_dict() -> BackgroundJobContainer:
    container = BackgroundJobContainer()
    container.config.from_dict(
        {
            "store": {"backend": "memory"},
            "options": {"poll_interval": 2, "batch_size": 50, "first_wait_duration": 0.5},
        }
    )
    return container


def container_from_files(environ: Mapping[str, str] | None = None) -> BackgroundJobContainer:
    container = BackgroundJobContainer()
    container.config.from_yaml(HERE / "masa-jobs.yaml")  # the file's values
    load_env(container.config, environ)  # MASA_JOBS_... variables win over the file
    return container


def main(environ: Mapping[str, str] | None = None) -> BackgroundJobOptions:
    options: BackgroundJobOptions = container_from_files(environ).options()
    print(options)
    return options


if __name__ == "__main__":
    main()

"""Configuration sources: defaults, ``MASA_JOBS_CONFIG`` and ``MASA_JOBS_...`` variables.

``MasaApp.build`` applies them under what the code set (see
``masa_jobs._config_sources``); ``load_env`` remains for code that wants the
environment on top of its own values, or a container it never builds.
"""

from __future__ import annotations

from collections.abc import Mapping

from dependency_injector import providers

from masa_jobs._config_sources import (
    CONFIG_FILE_VARIABLE,
    DEFAULT_CONFIG,
    ENV_PREFIX,
    config_from_env,
)

__all__ = ["CONFIG_FILE_VARIABLE", "DEFAULT_CONFIG", "ENV_PREFIX", "config_from_env", "load_env"]


def load_env(
    config: providers.Configuration,
    environ: Mapping[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> None:
    """Merge ``MASA_JOBS_...`` variables into a container's ``config`` (they win over it).

    Not needed before ``MasaApp.build``, which applies the environment under
    the values set in code; call it to let the environment win instead.
    """
    values = config_from_env(environ, prefix)
    if values:
        config.from_dict(values)

"""Configuration sources: defaults and ``MASA_JOBS_...`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dependency_injector import providers

__all__ = ["DEFAULT_CONFIG", "ENV_PREFIX", "config_from_env", "load_env"]

ENV_PREFIX = "MASA_JOBS_"
# Nested keys are joined by a double underscore: MASA_JOBS_STORE__BACKEND.
ENV_NESTING = "__"

DEFAULT_CONFIG: Mapping[str, Any] = {"store": {"backend": "memory"}, "options": {}}


def config_from_env(
    environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX
) -> dict[str, Any]:
    """Nested configuration from variables such as ``MASA_JOBS_OPTIONS__BATCH_SIZE=50``."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(prefix) or len(key) == len(prefix):
            continue
        path = [part.lower() for part in key[len(prefix) :].split(ENV_NESTING)]
        if any(not part for part in path):
            raise ValueError(
                f"environment variable {key} has an empty key segment: "
                f"separate nested keys with one '{ENV_NESTING}'"
            )
        node = config
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"environment variable {key} nests under a plain value")
            node = child
        node[path[-1]] = value
    return config


def load_env(
    config: providers.Configuration,
    environ: Mapping[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> None:
    """Merge ``MASA_JOBS_...`` variables into a container's ``config`` (they win)."""
    values = config_from_env(environ, prefix)
    if values:
        config.from_dict(values)

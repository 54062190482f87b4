"""Where a container's configuration comes from, and in which order.

From lowest to highest: the defaults, the YAML file named by
``MASA_JOBS_CONFIG``, ``MASA_JOBS_...`` environment variables, then what the
code set (``config.from_dict``/``from_yaml``). ``MasaApp.build`` applies the
first three *under* the code's values, so the web process, a script and a
``masa-jobs worker`` read the same environment without each calling a loader.

The library never imports the container module; the container re-exports these.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .exceptions import ConfigurationError

__all__ = [
    "CONFIG_FILE_VARIABLE",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "config_from_env",
    "config_from_file",
    "layered_config",
]

ENV_PREFIX = "MASA_JOBS_"
# Nested keys are joined by a double underscore: MASA_JOBS_STORE__BACKEND.
ENV_NESTING = "__"
# Names the YAML file; not itself a configuration key.
CONFIG_FILE_VARIABLE = f"{ENV_PREFIX}CONFIG"

DEFAULT_CONFIG: Mapping[str, Any] = {"store": {"backend": "memory"}, "options": {}}


def config_from_env(
    environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX
) -> dict[str, Any]:
    """Nested configuration from variables such as ``MASA_JOBS_OPTIONS__BATCH_SIZE=50``."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(prefix) or len(key) == len(prefix) or key == CONFIG_FILE_VARIABLE:
            continue
        path = [part.lower() for part in key[len(prefix) :].split(ENV_NESTING)]
        if any(not part for part in path):
            raise ValueError(
                f"environment variable {key} has an empty key segment: "
                f"separate nested keys with one '{ENV_NESTING}'"
            )
        _set(config, path, value, key)
    return config


def _set(config: dict[str, Any], path: list[str], value: str, key: str) -> None:
    node = config
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"environment variable {key} nests under a plain value")
        node = child
    node[path[-1]] = value


def config_from_file(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The YAML file named by ``MASA_JOBS_CONFIG``, or ``{}`` when it is not set."""
    environ = os.environ if environ is None else environ
    name = environ.get(CONFIG_FILE_VARIABLE, "")
    if not name:
        return {}
    path = Path(name).expanduser()
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"{CONFIG_FILE_VARIABLE}={name!r} cannot be read ({exc.strerror or exc}): "
            f"fix the path, or unset {CONFIG_FILE_VARIABLE}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"{CONFIG_FILE_VARIABLE}={name!r} is not valid YAML ({str(exc).splitlines()[0]}): "
            "fix the file"
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigurationError(
            f"{CONFIG_FILE_VARIABLE}={name!r} holds a {type(values).__name__}, not a mapping: "
            "write sections such as 'store:' and 'options:' at the top of the file"
        )
    return values


def layered_config(
    explicit: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """defaults < ``MASA_JOBS_CONFIG`` file < ``MASA_JOBS_...`` variables < ``explicit``."""
    try:
        from_env = config_from_env(environ)
    except ValueError as exc:
        raise ConfigurationError(f"{exc}; fix or unset it") from None
    # A copy: the merged sections are handed to the container, which may keep them.
    merged: dict[str, Any] = copy.deepcopy(dict(DEFAULT_CONFIG))
    named: object = None  # the store backend a layer named, not the default
    for layer in (config_from_file(environ), from_env, explicit or {}):
        store = layer.get("store")
        backend = store.get("backend") if isinstance(store, Mapping) else None
        if backend is not None:
            if named is not None and backend != named:
                # Another store than a lower layer's: its address and settings
                # (a dsn under a sqlite store ...) do not apply.
                merged["store"] = {}
            named = backend
        merged = _merge(merged, layer)
    return merged


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, section by section; a plain value (or list) replaces."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged

"""Declarative dependency-injector containers that compose masa-jobs.

``BackgroundJobContainer`` builds the options, the store, the registry, the
job manager and the worker as singletons. Extend it with your own providers,
or embed it with ``providers.Container(BackgroundJobContainer)``; then call
``MasaApp.build(container)`` once at start-up: it applies the defaults, the
``MASA_JOBS_CONFIG`` file and ``MASA_JOBS_...`` variables under the values the
code set.

Keep this graph synchronous: no async ``Resource`` upstream of the store, the
manager or the worker. Stores open in ``MasaApp.lifespan()`` instead.
"""

from __future__ import annotations

from ._config import CONFIG_FILE_VARIABLE, DEFAULT_CONFIG, ENV_PREFIX, config_from_env, load_env
from .background_jobs import BackgroundJobContainer

__all__ = [
    "CONFIG_FILE_VARIABLE",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "BackgroundJobContainer",
    "config_from_env",
    "load_env",
]

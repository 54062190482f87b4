"""Declarative dependency-injector containers that compose masa-jobs.

``BackgroundJobContainer`` builds the options, the store, the registry, the
job manager and the worker as singletons. Extend it with your own providers,
or embed it with ``providers.Container(BackgroundJobContainer)``; then call
``MasaApp.build(container)`` once at start-up.

Keep this graph synchronous: no async ``Resource`` upstream of the store, the
manager or the worker. Stores open in ``MasaApp.lifespan()`` instead.
"""

from __future__ import annotations

from ._config import DEFAULT_CONFIG, ENV_PREFIX, config_from_env, load_env
from .background_jobs import BackgroundJobContainer

__all__ = [
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "BackgroundJobContainer",
    "config_from_env",
    "load_env",
]

"""Find the application's container from an ``module:attribute`` APP argument.

The attribute names a container *instance*, or a zero-argument callable
returning one. A container class is refused, as ``MasaApp.build`` refuses it:
class-level providers keep singletons apart from any instance's, so the
worker would read a store the application never writes to.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from dependency_injector import containers

from ._common import CliError, first_line

__all__ = ["load_container"]

_EXAMPLE = "for example 'myapp.jobs:container'"


def load_container(spec: str, app_dir: Path) -> Any:
    """The container instance that ``spec`` (``module:attribute``) names."""
    module_name, attribute = _split(spec)
    _put_on_path(app_dir)
    target = _lookup(_import(module_name), attribute, spec)
    return _to_container(target, spec, module_name)


def _split(spec: str) -> tuple[str, str]:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute or ":" in attribute:
        raise CliError(
            f"APP must be 'module:attribute' naming a container instance, got {spec!r}; {_EXAMPLE}"
        )
    return module_name, attribute


def _put_on_path(app_dir: Path) -> None:
    # Like uvicorn and celery: the application's modules are found from the
    # directory the command runs in, even when the console script is used.
    # First, even if it is on the path already further down: the app's own
    # top-level modules (a containers.py, a jobs.py) win over any other
    # directory's modules of the same name. Nothing of the app is imported
    # before this; masa-jobs itself installs no generic top-level module.
    path = str(app_dir.resolve())
    while path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise CliError(
                f"cannot import module {module_name!r}: no such module; run the command from "
                "the directory that contains it, or pass --app-dir"
            ) from None
        raise CliError(
            f"importing module {module_name!r} failed: {exc}; install the missing package"
        ) from None
    except Exception as exc:
        raise CliError(
            f"importing module {module_name!r} raised {type(exc).__name__}: "
            f"{first_line(str(exc))}; fix the module (python -c 'import {module_name}' "
            "shows the traceback)"
        ) from None


def _lookup(module: ModuleType, attribute: str, spec: str) -> Any:
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(
                f"{spec!r}: module {module.__name__!r} has no attribute {attribute!r}; "
                f"define the container there (container = AppContainer()) or fix the name"
            ) from None
    return target


def _to_container(target: Any, spec: str, module_name: str) -> Any:
    if isinstance(target, type):
        name = target.__qualname__
        raise CliError(
            f"{spec!r} is the container class {name}, not an instance; add "
            f"`container = {name}()` to {module_name} and pass '{module_name}:container' "
            "(class-level providers keep their own singletons)"
        )
    if containers.is_container(target):
        return target
    if not callable(target):
        raise CliError(
            f"{spec!r} is a {type(target).__qualname__}, not a container; point APP at a "
            f"container instance or a zero-argument function returning one ({_EXAMPLE})"
        )
    container = _call_factory(target, spec)
    if isinstance(container, type) or not containers.is_container(container):
        raise CliError(
            f"{spec}() returned {type(container).__qualname__}, not a container instance; "
            "make it return one, e.g. `return AppContainer()`"
        )
    return container


def _call_factory(factory: Any, spec: str) -> Any:
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise CliError(
            f"{spec!r} takes arguments; APP must name a container instance or a "
            "zero-argument function returning one"
        ) from None
    except ValueError:
        pass  # no signature to inspect (some builtins): just call it
    try:
        return factory()
    except Exception as exc:
        raise CliError(
            f"{spec}() raised {type(exc).__name__}: {first_line(str(exc))}; fix the factory"
        ) from None

"""The registry of store backends is the one place that names them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import ConfigurationError, MasaApp, MemoryJobStore
from masa_jobs.stores import (
    ASYNCIO_ONLY_BACKENDS,
    BACKENDS,
    STORE_BACKENDS,
    build_store,
    check_store_backend,
)


class NotebookStore(MemoryJobStore):
    """A fifth backend, as a plug-in would define it."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> NotebookStore:
        return cls(str(settings.get("label", "")))


@asynccontextmanager
async def _scratch(name: str) -> AsyncIterator[dict[str, Any]]:
    yield {"backend": "notebook", "label": name}


@pytest.fixture
def notebook_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    entry = replace(
        BACKENDS["memory"],
        name="notebook",
        store=f"{__name__}:NotebookStore",
        keys="label",
        scratch=_scratch,
    )
    monkeypatch.setitem(BACKENDS, "notebook", entry)
    yield
    MasaApp.reset()


def test_the_registry_lists_every_backend_in_docs_order() -> None:
    assert STORE_BACKENDS == ("memory", "sqlite", "postgres", "redis")
    assert {"postgres", "redis"} == ASYNCIO_ONLY_BACKENDS
    assert {b.extra for b in BACKENDS.values()} == {None, "postgres", "redis"}


def test_unset_backend_is_the_memory_store() -> None:
    assert check_store_backend(None) == "memory"
    assert isinstance(build_store(None), MemoryJobStore)


def test_an_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="memory, sqlite, postgres, redis"):
        build_store({"backend": "mongo"})


def test_memory_store_settings_are_a_mistake_to_report() -> None:
    with pytest.raises(ConfigurationError, match=r"store\.path set, but store\.backend is memory"):
        build_store({"backend": "memory", "path": "/tmp/x"})


def test_a_registered_backend_is_built_by_the_container(notebook_backend: None) -> None:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "notebook", "label": "pages"}})

    store = container.job_store()

    assert isinstance(store, NotebookStore)
    assert store.label == "pages"


def test_a_backend_whose_driver_is_missing_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = replace(BACKENDS["redis"], driver="no_such_driver_module")
    monkeypatch.setitem(BACKENDS, "redis", entry)

    with pytest.raises(ConfigurationError, match=r"pip install 'masa-jobs\[redis\]'"):
        build_store({"backend": "redis", "url": "redis://localhost"})


@pytest.mark.anyio
async def test_scratch_namespaces_are_fresh_settings(notebook_backend: None) -> None:
    async with BACKENDS["notebook"].scratch("n1") as settings:
        assert settings == {"backend": "notebook", "label": "n1"}
    async with BACKENDS["memory"].scratch("n2") as settings:
        assert settings == {"backend": "memory"}

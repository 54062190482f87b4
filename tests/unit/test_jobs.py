"""Job handler base classes."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobBase, BackgroundScheduleJob

pytestmark = pytest.mark.anyio


class Args(BaseModel):
    value: int


class Hooked(BackgroundJobBase[Args]):
    def __init__(self, fail_in: str | None = None) -> None:
        self.steps: list[str] = []
        self.fail_in = fail_in

    def _step(self, name: str, args: Args) -> None:
        self.steps.append(f"{name}:{args.value}")
        if name == self.fail_in:
            raise RuntimeError(name)

    async def pre_execute(self, args: Args) -> None:
        self._step("pre", args)

    async def executing(self, args: Args) -> None:
        self._step("executing", args)

    async def post_execute(self, args: Args) -> None:
        self._step("post", args)


class Minimal(BackgroundJobBase[Args]):
    ran: bool = False

    async def executing(self, args: Args) -> None:
        self.ran = True


async def test_background_job_base_runs_its_hooks_in_order() -> None:
    job = Hooked()

    await job.execute(Args(value=1))

    assert job.steps == ["pre:1", "executing:1", "post:1"]


@pytest.mark.parametrize(
    ("fail_in", "steps"),
    [("pre", ["pre:1"]), ("executing", ["pre:1", "executing:1"])],
)
async def test_a_failing_hook_stops_the_execution(fail_in: str, steps: list[str]) -> None:
    job = Hooked(fail_in=fail_in)

    with pytest.raises(RuntimeError, match=fail_in):
        await job.execute(Args(value=1))

    assert job.steps == steps


async def test_the_hooks_default_to_nothing() -> None:
    job = Minimal()

    await job.execute(Args(value=1))

    assert job.ran


def test_each_handler_class_has_its_own_logger() -> None:
    assert isinstance(Hooked.logger, logging.Logger)
    assert Hooked.logger.name == f"{__name__}.Hooked"
    assert Minimal.logger.name == f"{__name__}.Minimal"


def test_handlers_must_implement_their_work() -> None:
    class NoExecute(BackgroundJob[Args]):
        pass

    class NoExecuting(BackgroundJobBase[Args]):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoExecute()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="abstract"):
        NoExecuting()  # type: ignore[abstract]


def test_a_schedule_job_defaults_to_utc() -> None:
    class Nightly(BackgroundScheduleJob):
        id = "nightly"
        cron_expression = "0 3 * * *"

        async def execute(self) -> None:
            return None

    assert Nightly.timezone == "UTC"
    assert Nightly().id == "nightly"

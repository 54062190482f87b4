"""The registry: job name → args type and handler classes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJob,
    BackgroundJobBase,
    DuplicateJobNameError,
    JobRegistry,
    RegistryError,
    get_job_name,
    job_name,
)

from .support import Flaky, FlakyFailing, FlakySteady, Greet, GreetJob

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "tests.unit.sample_jobs"

T = TypeVar("T", bound=BaseModel)


class Order(BaseModel):
    id: int


class GenericBase(BackgroundJob[T]):
    async def execute(self, args: T) -> None:
        return None


class OrderViaGenericBase(GenericBase[Order]):
    pass


class OrderJob(BackgroundJobBase[Order]):
    async def executing(self, args: Order) -> None:
        return None


class OrderJobSubclass(OrderJob):
    pass


def test_explicit_registry_maps_name_to_args_and_handlers() -> None:
    registry = JobRegistry([GreetJob])
    name = get_job_name(Greet)

    assert registry.names() == (name,)
    assert registry.name_of(Greet) is not None
    assert registry.name_of(Greet) == name
    assert registry.args_type(name) is Greet
    assert registry.handlers(name) == (GreetJob,)


def test_unknown_lookups_are_empty() -> None:
    registry = JobRegistry([GreetJob])

    assert registry.name_of(Order) is None
    assert registry.args_type("no.such.job") is None
    assert registry.handlers("no.such.job") == ()
    assert JobRegistry().names() == ()


def test_args_type_through_a_generic_intermediate_base() -> None:
    registry = JobRegistry([OrderViaGenericBase])

    assert registry.args_type(get_job_name(Order)) is Order


def test_args_type_through_background_job_base_and_a_concrete_subclass() -> None:
    registry = JobRegistry([OrderJob, OrderJobSubclass])

    assert registry.handlers(get_job_name(Order)) == (OrderJob, OrderJobSubclass)


def test_several_handlers_per_args_type_in_registration_order() -> None:
    registry = JobRegistry([FlakyFailing, GreetJob, FlakySteady, FlakyFailing])
    name = get_job_name(Flaky)

    assert registry.handlers(name) == (FlakyFailing, FlakySteady)
    assert len(registry.names()) == 2


def test_duplicate_job_name_for_two_args_types_names_both() -> None:
    @job_name("billing.charge")
    class ChargeCard(BaseModel):
        pass

    @job_name("billing.charge")
    class ChargeInvoice(BaseModel):
        pass

    class ChargeCardJob(BackgroundJob[ChargeCard]):
        async def execute(self, args: ChargeCard) -> None:
            return None

    class ChargeInvoiceJob(BackgroundJob[ChargeInvoice]):
        async def execute(self, args: ChargeInvoice) -> None:
            return None

    with pytest.raises(DuplicateJobNameError) as caught:
        JobRegistry([ChargeCardJob, ChargeInvoiceJob])

    message = str(caught.value)
    assert "'billing.charge'" in message
    assert ChargeCard.__qualname__ in message
    assert ChargeInvoice.__qualname__ in message
    assert "@job_name" in message
    assert isinstance(caught.value, RegistryError)


def test_a_handler_without_a_generic_parameter_is_refused() -> None:
    class Bare(BackgroundJob):  # type: ignore[type-arg]
        async def execute(self, args: BaseModel) -> None:
            return None

    with pytest.raises(RegistryError, match=r"does not say which args.*BackgroundJob\[YourArgs\]"):
        JobRegistry([Bare])


def test_a_generic_base_alone_is_refused() -> None:
    with pytest.raises(RegistryError, match="GenericBase does not say which args"):
        JobRegistry([GenericBase])


def test_a_handler_of_a_non_model_is_refused() -> None:
    class NotAModel:
        pass

    class Wrong(BackgroundJob[NotAModel]):  # type: ignore[type-var]
        async def execute(self, args: NotAModel) -> None:
            return None

    with pytest.raises(RegistryError, match="pydantic model"):
        JobRegistry([Wrong])


def test_an_abstract_handler_is_refused() -> None:
    class Abstract(BackgroundJobBase[Order]):
        pass

    with pytest.raises(RegistryError, match="abstract: implement executing"):
        JobRegistry([Abstract])  # type: ignore[type-abstract]


@pytest.mark.parametrize("thing", [Order, object, "GreetJob", GreetJob()])
def test_things_that_are_not_handlers_are_refused(thing: object) -> None:
    with pytest.raises(RegistryError, match="is not a BackgroundJob subclass"):
        JobRegistry([thing])  # type: ignore[list-item]


def test_handler_modules() -> None:
    registry = JobRegistry([GreetJob, OrderJob])

    assert registry.handler_modules() == tuple(sorted({GreetJob.__module__, __name__}))


# -- discovery -------------------------------------------------------------------


def test_discover_registers_the_handlers_of_job_packages() -> None:
    registry = JobRegistry.discover([SAMPLE])

    from .sample_jobs.mail import AuditMailJob, SendMail, SendMailJob
    from .sample_jobs.reports.monthly import MonthlyReport, MonthlyReportJob, ReportJob

    assert registry.args_type("sample-jobs.send-mail") is SendMail
    assert set(registry.handlers("sample-jobs.send-mail")) == {SendMailJob, AuditMailJob}
    assert registry.handlers(get_job_name(MonthlyReport)) == (MonthlyReportJob,)
    assert ReportJob not in {h for n in registry.names() for h in registry.handlers(n)}


def test_discover_registers_module_level_handlers_already_imported() -> None:
    registry = JobRegistry.discover()

    assert set(registry.handlers(get_job_name(Order))) == {
        OrderViaGenericBase,
        OrderJob,
        OrderJobSubclass,
    }
    assert GreetJob in registry.handlers(get_job_name(Greet))
    assert GenericBase not in registry.handlers(get_job_name(Order))


def test_discover_skips_classes_defined_inside_functions() -> None:
    class LocalArgs(BaseModel):
        pass

    class LocalJob(BackgroundJob[LocalArgs]):
        async def execute(self, args: LocalArgs) -> None:
            return None

    registry = JobRegistry.discover()

    assert registry.name_of(LocalArgs) is None
    assert registry.handlers(get_job_name(LocalArgs)) == ()
    # Explicit registration still takes them.
    assert JobRegistry([LocalJob]).handlers(get_job_name(LocalArgs)) == (LocalJob,)


def test_discover_imports_every_module_of_the_packages() -> None:
    # In a fresh interpreter, so that nothing was imported before.
    script = (
        "import sys\n"
        "from masa_jobs import JobRegistry\n"
        f"assert '{SAMPLE}.mail' not in sys.modules\n"
        f"registry = JobRegistry.discover(['{SAMPLE}'])\n"
        f"assert '{SAMPLE}.mail' in sys.modules\n"
        f"assert '{SAMPLE}.reports.monthly' in sys.modules\n"
        "print(sorted(registry.names()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(
        sorted([f"{SAMPLE}.reports.monthly.MonthlyReport", "sample-jobs.send-mail"])
    )


def test_discover_of_a_single_module() -> None:
    registry = JobRegistry.discover([f"{SAMPLE}.mail"])

    assert registry.args_type("sample-jobs.send-mail") is not None


@pytest.mark.parametrize("package", ["no_such_package_anywhere", f"{SAMPLE}.missing"])
def test_discover_of_a_bad_package_name_is_a_clear_error(package: str) -> None:
    with pytest.raises(RegistryError) as caught:
        JobRegistry.discover([package])

    message = str(caught.value)
    assert repr(package) in message
    assert "job_packages" in message
    assert "importable" in message

"""Job names: "<module>.<QualName>" by default, pinned with @job_name."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from masa_jobs import get_job_name, job_name


class Plain(BaseModel):
    x: int = 0


@job_name("orders.place-order:v2")
class Pinned(BaseModel):
    x: int = 0


class ChildOfPinned(Pinned):
    pass


class Outer:
    class Inner(BaseModel):
        x: int = 0


def test_default_name_is_module_and_qualified_name() -> None:
    assert get_job_name(Plain) == f"{__name__}.Plain"
    assert get_job_name(Outer.Inner) == f"{__name__}.Outer.Inner"


def test_job_name_pins_the_name() -> None:
    assert get_job_name(Pinned) == "orders.place-order:v2"


def test_job_name_returns_the_class_itself() -> None:
    class Local(BaseModel):
        pass

    assert job_name("local")(Local) is Local


def test_a_pinned_name_is_not_inherited() -> None:
    assert get_job_name(ChildOfPinned) == f"{__name__}.ChildOfPinned"


def test_a_subclass_can_pin_its_own_name() -> None:
    @job_name("orders.child")
    class Child(Pinned):
        pass

    assert get_job_name(Child) == "orders.child"
    assert get_job_name(Pinned) == "orders.place-order:v2"


@pytest.mark.parametrize("name", ["a", "A-z_0.9:x", "x" * 200])
def test_valid_names(name: str) -> None:
    @job_name(name)
    class Args(BaseModel):
        pass

    assert get_job_name(Args) == name


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "ünïcode", "x" * 201, "new\nline"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid job name"):
        job_name(name)


@pytest.mark.parametrize("name", [None, 42, b"bytes"])
def test_names_must_be_strings(name: object) -> None:
    with pytest.raises(ValueError, match="invalid job name"):
        job_name(name)  # type: ignore[arg-type]


class NotAModel:
    pass


def not_a_class() -> None:
    return None


@pytest.mark.parametrize("target", [NotAModel, not_a_class, Plain(), "Plain"])
def test_job_name_decorates_pydantic_model_classes_only(target: object) -> None:
    with pytest.raises(TypeError, match="pydantic model class"):
        job_name("some-name")(target)

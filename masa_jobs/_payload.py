"""Job args as a store keeps them: JSON that the worker can validate back into the args.

``enqueue`` stores ``args.model_dump_json()`` and a worker runs the handler on
``ArgsModel.model_validate_json(payload)``. What cannot make that trip is
refused at enqueue, with ``InvalidJobArgsError`` naming the field and the fix,
instead of being stored and failing in the worker (or arriving changed):

* args that pydantic cannot dump as JSON: a ``str`` holding a lone surrogate,
  ``bytes`` that are not UTF-8, a value of a type it cannot serialise;
* args that do not validate back: built with ``model_construct(...)`` from
  values of the wrong type, or nested deeper than pydantic parses;
* values that JSON would change silently: a non-finite float (dumped as
  ``null`` unless the model sets ``ser_json_inf_nan``) and a dict key holding a
  lone surrogate (dumped as replacement characters).

The fast path is one ``model_dump_json`` and one ``model_validate_json``; the
args are walked only when a dump failed or its text shows a possible silent
change (a ``null``, a replacement character).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from .exceptions import InvalidJobArgsError

__all__ = ["stored_args", "validate_stored_args"]

# What a dump with a silent change contains: JSON's null (a NaN or an infinity
# dumped as null) and U+FFFD (what a lone surrogate in a dict key becomes).
_NULL = "null"
_REPLACEMENT = "\ufffd"
# How much of a path segment, or of pydantic's message, an error quotes.
_SHOWN_CHARACTERS = 80
_SURROGATE_FIX = (
    "a str with a lone surrogate, which UTF-8 (and so JSON) cannot encode: decode the "
    "bytes it came from with errors='replace' or errors='backslashreplace', or remove it"
)
_BYTES_FIX = (
    "bytes that are not UTF-8 text, which JSON cannot hold: decode them into a str "
    "first, or declare the field as pydantic's Base64Bytes"
)
_FLOAT_FIX = (
    "a non-finite float ({value}), which JSON cannot hold (it would arrive as None): pass "
    "a finite number, or set model_config = ConfigDict(ser_json_inf_nan='constants') "
    "on the args model to store it"
)


def stored_args(args: BaseModel, name: str) -> str:
    """The args as the JSON a store keeps; ``InvalidJobArgsError`` when pydantic
    cannot dump them. Serializer warnings are off: validation judges the result."""
    try:
        return args.model_dump_json(warnings=False)
    except ValueError as exc:  # PydanticSerializationError and UnicodeError among them
        raise _unserialisable(args, name, exc) from exc


def validate_stored_args(args: BaseModel, name: str, payload: str) -> None:
    """Refuse ``payload`` unless the worker will read the same args back from it."""
    if _REPLACEMENT in payload or (_NULL in payload and _nan_becomes_null(args)):
        found = _first_unstorable(args)
        if found is not None:
            raise InvalidJobArgsError(_refusal(args, name, *found))
    try:
        type(args).model_validate_json(payload)
    except ValidationError as exc:
        raise _invalid(args, name, exc) from exc


def _nan_becomes_null(args: BaseModel) -> bool:
    return args.model_config.get("ser_json_inf_nan", "null") == "null"


def _unserialisable(args: BaseModel, name: str, exc: ValueError) -> InvalidJobArgsError:
    found = _first_unstorable(args) or _failing_field(args)
    if found is None:
        found = ("", f"a value pydantic cannot dump as JSON ({_cut(str(exc))})")
    return InvalidJobArgsError(_refusal(args, name, *found))


def _invalid(args: BaseModel, name: str, exc: ValidationError) -> InvalidJobArgsError:
    error = exc.errors(include_url=False, include_input=False)[0]
    path = _path(error["loc"])
    message = _cut(str(error["msg"]))
    if error["type"] == "json_invalid":
        fix = (
            f"data the worker cannot parse back from JSON ({message}): nest it less deeply, "
            "or store it elsewhere and pass a reference"
        )
    else:
        model = type(args).__qualname__
        fix = (
            f"a value the worker cannot validate back ({message}): build the args with "
            f"{model}(...), which validates them, not {model}.model_construct(...), and "
            "give each field a value of its declared type"
        )
    return InvalidJobArgsError(_refusal(args, name, path, fix))


def _refusal(args: BaseModel, name: str, path: str, problem: str) -> str:
    where = f"field {path} contains" if path else "the args contain"
    return (
        f"the args of job {name!r} ({type(args).__qualname__}) cannot be stored: {where} "
        f"{problem}; nothing was stored"
    )


def _first_unstorable(args: BaseModel) -> tuple[str, str] | None:
    """The path of the first value JSON cannot hold or would change, and the fix."""
    check_floats = _nan_becomes_null(args)
    try:
        dumped = args.model_dump(warnings=False)
    except ValueError:
        return None
    for path, value in _walk(dumped):
        problem = _problem(value, check_floats)
        if problem is not None:
            return _path(path), problem
    return None


def _problem(value: object, check_floats: bool) -> str | None:
    if isinstance(value, str):
        return None if _encodes(value) else _SURROGATE_FIX
    if isinstance(value, bytes | bytearray):
        try:
            bytes(value).decode()
        except UnicodeDecodeError:
            return _BYTES_FIX
        return None
    if check_floats and isinstance(value, float) and not math.isfinite(value):
        return _FLOAT_FIX.format(value=value)
    return None


def _walk(root: object) -> Iterator[tuple[tuple[object, ...], object]]:
    """Every value in ``root`` (dict keys too) with its path, depth first, without
    recursion: the args may nest deeper than Python's stack."""
    stack: list[tuple[tuple[object, ...], object]] = [((), root)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            items = list(value.items())
            for key, item in reversed(items):
                stack.append(((*path, key), item))
            for key, _ in items:
                if isinstance(key, str) and not _encodes(key):
                    yield (*path, key), key
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend(((*path, i), item) for i, item in reversed(list(enumerate(value))))
        else:
            yield path, value


def _failing_field(args: BaseModel) -> tuple[str, str] | None:
    """The first field that pydantic cannot dump on its own, and why."""
    for field in type(args).model_fields:
        try:
            args.model_dump_json(include={field}, warnings=False)
        except ValueError as exc:
            return field, f"a value pydantic cannot dump as JSON ({_cut(str(exc))})"
    return None


def _encodes(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _path(loc: tuple[Any, ...]) -> str:
    """A location as pydantic writes one (``items.0.name``), each part printable."""
    return ".".join(_segment(part) for part in loc)


def _segment(part: object) -> str:
    if isinstance(part, str) and part.isprintable() and _encodes(part):
        return _cut(part)
    return _cut(repr(part))


def _cut(text: str) -> str:
    if len(text) <= _SHOWN_CHARACTERS:
        return text
    return f"{text[:_SHOWN_CHARACTERS]}..."

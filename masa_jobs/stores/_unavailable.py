"""Connection-level failures of a server store, raised as ``StoreUnavailableError``.

A store decorates each public method with ``reports_unavailable``; the store
itself says which of its driver's exceptions mean that the server cannot be
used (``_unavailable_after``) and words the message. Everything else passes
unchanged: masa-jobs' own errors (a ``StoreUnavailableError`` from a nested
call among them), errors that mean a bug, and cancellation, which is not an
``Exception``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from ..exceptions import MasaJobsError, StoreUnavailableError

__all__ = ["reports_unavailable"]


class _Translates(Protocol):
    def _unavailable_after(self, exc: Exception) -> StoreUnavailableError | None:
        """The error to raise for ``exc``, or None when ``exc`` is no connection failure."""


S = TypeVar("S", bound=_Translates)
P = ParamSpec("P")
T = TypeVar("T")


def reports_unavailable(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Raise the store's ``StoreUnavailableError``, chained to the driver's
    exception, where ``method`` meets a connection-level failure."""

    @functools.wraps(method)
    async def reporting(store: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(store, *args, **kwargs)
        except MasaJobsError:
            raise
        except Exception as exc:
            unavailable = store._unavailable_after(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    return reporting

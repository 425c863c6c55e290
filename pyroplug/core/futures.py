"""Futures and the exception wrapper used inside batch and async results."""

from __future__ import annotations

from typing import NoReturn

from pyroplug.core.serializer import wire_class

__all__ = ["_ExceptionWrapper"]


@wire_class("Pyro4.futures._ExceptionWrapper")
class _ExceptionWrapper:
    """Carries an exception inside a batch or async result list; :meth:`raiseIt` re-raises it."""

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception

    def raiseIt(self) -> NoReturn:  # noqa: N802 - Pyro4 API
        """Raise the wrapped exception."""
        raise self.exception

    def __getstate__(self) -> dict:
        return {"exception": self.exception}

    def __setstate__(self, state: dict) -> None:
        self.exception = state["exception"]

    def __repr__(self) -> str:
        return f"<_ExceptionWrapper {self.exception!r}>"

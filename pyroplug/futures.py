"""Pyro4's futures module (``Pyro4.futures``): Future, FutureResult and _ExceptionWrapper."""

from pyroplug.core.futures import Future, FutureResult, _ExceptionWrapper

__all__ = ["Future", "FutureResult", "_ExceptionWrapper"]

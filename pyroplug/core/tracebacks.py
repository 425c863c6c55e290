"""Remote tracebacks: formatting them on the server, and showing them on the client."""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Any

__all__ = ["excepthook", "formatTraceback", "getPyroTraceback"]

REMOTE_MARKER = " +--- This exception occured remotely (Pyro) - Remote traceback:"


def formatTraceback(  # noqa: N802 - Pyro4 API
    ex_type: type[BaseException] | None = None,
    ex_value: BaseException | None = None,
    ex_tb: TracebackType | None = None,
    detailed: bool = False,
) -> list[str]:
    """The (current) exception's traceback as a list of strings ending in newlines.

    With ``detailed`` every frame also lists its local variables (DETAILED_TRACEBACK).
    """
    if ex_type is None and ex_tb is None:
        ex_type, ex_value, ex_tb = sys.exc_info()
    if ex_type is None:
        return []
    if not detailed:
        return traceback.format_exception(ex_type, ex_value, ex_tb)
    lines = ["-" * 52 + "\n", f" EXCEPTION {ex_type}: {ex_value}\n", " Extended stacktrace follows (most recent call last)\n"]
    for frame, lineno in traceback.walk_tb(ex_tb):
        code = frame.f_code
        lines.append("-" * 52 + "\n")
        lines.append(f'File "{code.co_filename}", line {lineno}, in {code.co_name}\n')
        for name, value in sorted(frame.f_locals.items()):
            try:
                shown = repr(value)
            except Exception:  # a broken __repr__ must not hide the real error
                shown = "<unrepresentable>"
            lines.append(f"  {name} = {shown[:200]}\n")
    lines.append("-" * 52 + "\n")
    lines.extend(traceback.format_exception_only(ex_type, ex_value))
    return lines


def getPyroTraceback(  # noqa: N802 - Pyro4 API
    ex_type: type[BaseException] | None = None,
    ex_value: BaseException | None = None,
    ex_tb: TracebackType | None = None,
) -> list[str]:
    """The local traceback plus, for an exception raised remotely, the remote one."""
    if ex_type is None and ex_value is None:
        ex_type, ex_value, ex_tb = sys.exc_info()
    elif ex_type is None and ex_value is not None:
        ex_type, ex_tb = type(ex_value), ex_value.__traceback__
    remote: Any = getattr(ex_value, "_pyroTraceback", None)
    local = formatTraceback(ex_type, ex_value, ex_tb)
    if not remote:
        return local
    if isinstance(remote, str):
        remote = [remote]
    result = list(local)
    result.append("\n" + REMOTE_MARKER + "\n")
    for line in "".join(remote).splitlines(keepends=True):
        result.append(" | " + line)
    result.append(" +--- End of remote traceback\n")
    return result


def excepthook(ex_type: type[BaseException], ex_value: BaseException, ex_tb: TracebackType | None) -> None:
    """A ``sys.excepthook`` that also prints the remote traceback of Pyro exceptions."""
    sys.stderr.write("".join(getPyroTraceback(ex_type, ex_value, ex_tb)))

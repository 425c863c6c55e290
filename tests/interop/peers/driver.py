"""Client peer: executes snippets of Pyro4 code sent by the test process, one JSON request per stdin line.

Run as ``python driver.py --flavor pyro4|pyroplug``. ``Pyro4`` in a snippet is stock Pyro4 4.82 or
``pyroplug`` (``import pyroplug as Pyro4``). Request: ``{"code": str, "vars": base64(pickle(dict))}``.
Reply: one stdout line ``RESULT <base64(pickle({"ok": True, "value": ...} | {"ok": False, "error": ...}))>``.
Anything a snippet prints goes to stderr. The snippet's ``result`` variable is sanitized so the test
process unpickles builtin types only: foreign objects become ``{"__peer_object__": "<module.Class>",
"str": ..., "repr": ...}``, exceptions become ``{"__exception__": "<module.Class>", ...}``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import decimal
import importlib
import json
import math
import os
import pickle
import sys
import threading
import time
import traceback
import uuid
from typing import Any

PLAIN = (type(None), bool, int, float, complex, str, bytes, bytearray, decimal.Decimal, datetime.datetime,
         datetime.date, datetime.time, datetime.timedelta, uuid.UUID)


def qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """An exception as plain data: class name, args, str, remote traceback, attributes, local traceback."""
    remote = getattr(exc, "_pyroTraceback", None)
    attributes = {k: v for k, v in vars(exc).items() if k != "_pyroTraceback"} if hasattr(exc, "__dict__") else {}
    return {
        "__exception__": qualname(exc),
        "args": sanitize(exc.args),
        "str": str(exc),
        "remote_traceback": "".join(remote) if isinstance(remote, (list, tuple)) else remote,
        "attributes": sanitize(attributes),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def sanitize(value: Any, depth: int = 0) -> Any:
    """``value`` with every non-builtin object replaced by a description (see the module docstring)."""
    if depth > 50:
        return {"__peer_object__": "too-deep", "str": "", "repr": ""}
    t = type(value)
    if t in PLAIN:
        return value
    if t is list:
        return [sanitize(v, depth + 1) for v in value]
    if t is tuple:
        return tuple(sanitize(v, depth + 1) for v in value)
    if t is set:
        return {sanitize(v, depth + 1) for v in value}
    if t is frozenset:
        return frozenset(sanitize(v, depth + 1) for v in value)
    if t is dict:
        return {sanitize(k, depth + 1): sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, BaseException):
        return describe_exception(value)
    try:
        text, rep = str(value), repr(value)
    except Exception as exc:  # a proxy whose str fails must not kill the reply
        text = rep = f"<unprintable: {exc!r}>"
    return {"__peer_object__": qualname(value), "str": text, "repr": rep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flavor", choices=("pyro4", "pyroplug"), default="pyro4")
    options = parser.parse_args()
    pyro = importlib.import_module("Pyro4" if options.flavor == "pyro4" else "pyroplug")
    for submodule in ("errors", "message", "naming", "util"):  # Pyro4.naming etc. without imports in snippets
        importlib.import_module(f"{pyro.__name__}.{submodule}")
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr  # snippets may print: keep stdout for the protocol
    state: dict[str, Any] = {}
    timeout = float(os.environ.get("INTEROP_CALL_TIMEOUT", "15"))

    def proxy(uri: Any, serializer: str | None = None, **attrs: Any) -> Any:
        """A Proxy with a per-proxy serializer, a call timeout and any ``_pyro*`` attributes set."""
        p = pyro.Proxy(uri)
        if serializer:
            p._pyroSerializer = serializer
        p._pyroTimeout = timeout
        for name, value in attrs.items():
            setattr(p, name, value)
        return p

    def catch(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - describe whatever the peer library raised
            return describe_exception(exc)
        raise AssertionError(f"expected an exception, got {value!r}")

    proto.write("READY driver " + options.flavor + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        pyro.config.reset()
        ctx = pyro.current_context
        ctx.annotations = {}
        ctx.response_annotations = {}
        ctx.correlation_id = None
        namespace: dict[str, Any] = {
            "Pyro4": pyro, "datetime": datetime, "decimal": decimal, "math": math, "uuid": uuid,
            "time": time, "threading": threading, "proxy": proxy, "catch": catch, "describe": describe_exception,
            "state": state,
            "FLAVOR": options.flavor, "result": None,
        }
        namespace.update(pickle.loads(base64.b64decode(request["vars"])))  # noqa: S301 - from our test process
        try:
            exec(compile(request["code"], "<snippet>", "exec"), namespace)  # noqa: S102 - test harness
            reply: dict[str, Any] = {"ok": True, "value": sanitize(namespace.get("result"))}
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the test
            reply = {"ok": False, "error": describe_exception(exc)}
        try:
            data = pickle.dumps(reply)
        except Exception as exc:  # noqa: BLE001 - report unpicklable results instead of dying
            data = pickle.dumps({"ok": False, "error": describe_exception(exc)})
        proto.write("RESULT " + base64.b64encode(data).decode("ascii") + "\n")


if __name__ == "__main__":
    main()

"""The remote test objects every interop daemon hosts, written once as ordinary Pyro4 code.

:func:`build` takes the ``Pyro4`` module to use (stock Pyro4 4.82 or ``pyroplug``) and returns the
classes, so both peers host the very same service and the same Daemon subclass.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class ServiceError(Exception):
    """A user-defined exception (its class is unknown to the client side)."""


class Point:
    """A plain user class, importable by every peer (for the pickle family); no custom __getstate__."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


def type_tree(value: Any) -> Any:
    """How a value arrived, as plain data every serializer carries: ``"type:repr"`` leaves in lists."""
    t = type(value)
    if t is dict:
        return ["dict", sorted(([type_tree(k), type_tree(v)] for k, v in value.items()), key=repr)]
    if t in (list, tuple):
        return [t.__name__, [type_tree(v) for v in value]]
    if t in (set, frozenset):
        return [t.__name__, sorted((type_tree(v) for v in value), key=repr)]
    return f"{t.__name__}:{value!r}"


def build(Pyro4: Any, flavor: str) -> dict[str, Any]:  # noqa: N803 - the Pyro4 module, by its usual name
    """The service classes for ``Pyro4`` (a module with Pyro4's API); ``flavor`` names the library."""
    errors = Pyro4.errors
    current_context = Pyro4.current_context
    version = f"{flavor} {getattr(Pyro4, '__version__', '?')}"

    @Pyro4.expose
    class Item:
        """Returned by Service.make_item after registering it: travels as a proxy (autoproxy)."""

        def __init__(self, name: str) -> None:
            self.name = name

        def get_name(self) -> str:
            return self.name

        def rename(self, name: str) -> str:
            self.name = name
            return name

    @Pyro4.expose
    class Service:
        """Every dispatch path: values, kwargs, errors, oneway, properties, streams, autoproxy, context."""

        def __init__(self) -> None:
            self._value = 42
            self._log: list[Any] = []
            self._log_changed = threading.Condition()

        def whoami(self) -> str:
            return version

        def echo(self, value: Any) -> Any:
            return value

        def echo_args(self, *args: Any, **kwargs: Any) -> Any:
            return [list(args), kwargs]

        def types(self, *args: Any, **kwargs: Any) -> Any:
            """The type tree of every argument, as the daemon received it."""
            return {"args": [type_tree(a) for a in args], "kwargs": {k: type_tree(v) for k, v in kwargs.items()}}

        def add(self, a: Any, b: Any = 0) -> Any:
            return a + b

        def nothing(self) -> None:
            return None

        def fail(self, kind: str = "ValueError", message: str = "boom", code: int = 42) -> None:
            if kind == "ValueError":
                error = ValueError(message, code)
                error.code = code  # type: ignore[attr-defined]
                raise error
            if kind == "ZeroDivisionError":
                return 1 // 0  # type: ignore[return-value]
            if kind == "KeyError":
                raise KeyError(message)
            if kind == "custom":
                raise ServiceError(message)
            raise getattr(errors, kind)(message)

        def slow(self, seconds: float) -> float:
            time.sleep(seconds)
            return seconds

        @Pyro4.oneway
        def record(self, value: Any) -> None:
            with self._log_changed:
                self._log.append(value)
                self._log_changed.notify_all()

        @Pyro4.oneway
        def record_fail(self, value: Any) -> None:
            raise ValueError("a oneway call failing: nobody hears it")

        def wait_log(self, count: int, timeout: float = 5.0) -> list[Any]:
            """The oneway log once it holds ``count`` entries (or after ``timeout``)."""
            with self._log_changed:
                self._log_changed.wait_for(lambda: len(self._log) >= count, timeout)
                return list(self._log)

        def clear_log(self) -> None:
            with self._log_changed:
                self._log.clear()

        def gen(self, n: int) -> Any:
            yield from range(n)

        def gen_fail(self, n: int) -> Any:
            yield from range(n)
            raise ValueError("stream broke")

        def make_item(self, name: str) -> Any:
            item = Item(name)
            self._pyroDaemon.register(item)  # type: ignore[attr-defined]
            return item

        def annotations_seen(self) -> dict[str, str]:
            return {k: bytes(v).decode("latin-1") for k, v in current_context.annotations.items() if k not in ("CORR", "HMAC")}

        def correlation(self) -> str:
            return str(current_context.correlation_id)

        def respond_annotated(self, key: str, value: str) -> str:
            current_context.response_annotations[key] = value.encode()
            return "annotated"

        def call_other(self, uri: str, method: str, *args: Any) -> Any:
            """Call ``method(*args)`` on another Pyro object (any flavor) and return its result."""
            with Pyro4.Proxy(uri) as other:
                return getattr(other, method)(*args)

        @property
        def value(self) -> int:
            return self._value

        @value.setter
        def value(self, value: int) -> None:
            self._value = value

        @property
        def readonly(self) -> str:
            return "fixed"

        def _private(self) -> str:
            return "never reachable"

    class InteropDaemon(Pyro4.Daemon):
        """A Daemon with Pyro4's override hooks: handshake check and a custom response annotation."""

        def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802 - Pyro4 API
            if data == "hello":
                return "hello"
            if isinstance(data, dict) and data.get("token") == "sesame":
                return {"welcome": flavor}
            raise ValueError(f"handshake refused: {data!r}")

        def annotations(self) -> dict[str, bytes]:
            return {"XSRV": flavor.encode()}

    return {"Service": Service, "Item": Item, "InteropDaemon": InteropDaemon, "ServiceError": ServiceError}

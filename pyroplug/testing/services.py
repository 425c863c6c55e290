"""Remote test objects used by the end-to-end conformance suite, the examples and the demo."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from pyroplug.core.context import current_context
from pyroplug.core.expose import behavior, expose, oneway

__all__ = ["Calculator", "Counter", "Item", "PerCall", "Replier", "Session", "Single", "Tagged", "TaggedError"]


class TaggedError(ValueError):
    """A user exception with an extra attribute (travels back only when the client knows the class)."""


class Calculator:
    """A service exercising every dispatch path: calls, kwargs, errors, oneway, properties, streams."""

    def __init__(self) -> None:
        self._value = 42
        self.oneway_log: list[Any] = []
        self.oneway_event = threading.Event()
        self.items: list[Item] = []

    def add(self, a: Any, b: Any = 0) -> Any:
        return a + b

    def echo(self, value: Any) -> Any:
        return value

    def fail(self, message: str = "boom", code: int = 42) -> None:
        error = ValueError(message, code)
        error.code = code  # type: ignore[attr-defined]
        raise error

    def divide(self, a: float, b: float) -> float:
        return a / b

    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @oneway
    def record(self, value: Any) -> None:
        self.oneway_log.append(value)
        self.oneway_event.set()

    @oneway
    def record_slowly(self, value: Any, seconds: float) -> None:
        time.sleep(seconds)
        self.oneway_log.append(value)
        self.oneway_event.set()

    def get_log(self) -> list[Any]:
        return list(self.oneway_log)

    def count_up(self, n: int) -> Iterator[int]:
        yield from range(n)

    def lazy_view(self) -> Any:
        return {"a": 1}.keys()

    def annotations_seen(self) -> dict[str, bytes]:
        return {k: bytes(v) for k, v in current_context.annotations.items() if k not in ("CORR", "HMAC")}

    def correlation(self) -> str:
        corr = current_context.correlation_id
        return str(corr) if corr is not None else ""

    def new_item(self, name: str) -> Item:
        """Register a fresh Item with this object's daemon and return it (autoproxied)."""
        item = Item(name)
        self._pyroDaemon.register(item)  # type: ignore[attr-defined]
        self.items.append(item)
        return item

    def call_back(self, target: Any, value: Any) -> Any:
        """Call ``target.reply(value)`` on a proxy passed in by the client."""
        return target.reply(value)

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
        return "secret"

    def __dunder__(self) -> str:
        return "dunder"

    def __len__(self) -> int:
        return 7

    plain_attribute = "not exposed"


class Item:
    """A small object the Calculator registers and returns by proxy."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name

    def rename(self, name: str) -> str:
        self.name = name
        return name


class Counter:
    """Counts calls on one instance (whose lifetime the instance mode decides)."""

    created = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        with Counter.lock:
            type(self).created += 1
        self.calls = 0

    def increment(self) -> int:
        self.calls += 1
        return self.calls

    def instance_id(self) -> int:
        return id(self)


@behavior(instance_mode="single")
class Single(Counter):
    created = 0


@behavior(instance_mode="session")
class Session(Counter):
    created = 0


@expose(instance_mode="percall")
class PerCall(Counter):
    created = 0


class Tagged:
    """Only partly exposed: for REQUIRE_EXPOSE=True tests."""

    @expose
    def visible(self) -> str:
        return "visible"

    def hidden(self) -> str:
        return "hidden"

    @expose  # type: ignore[prop-decorator]
    @property
    def shown(self) -> str:
        return "shown"


class Replier:
    """A client-side callback object."""

    def reply(self, value: Any) -> Any:
        return ("replied", value)

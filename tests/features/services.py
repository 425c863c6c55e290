"""Remote objects of the feature tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from pyroplug.core.context import current_context
from pyroplug.core.expose import behavior, callback, expose, oneway

__all__ = ["Resource", "Service", "SessionCounter"]


class Resource:
    """Something a call opens and tracks with current_context.track_resource."""

    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self._closed = closed

    def close(self) -> None:
        self._closed.append(self.name)


@expose
class Service:
    """Calls, failures, streams, context inspection and resource tracking."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.log_changed = threading.Condition()
        self.generators_closed: list[str] = []
        self.resources_closed: list[str] = []
        self.resources: list[Resource] = []
        self.connections: list[int] = []

    def add(self, a: Any, b: Any = 0) -> Any:
        return a + b

    def echo(self, value: Any) -> Any:
        return value

    def fail(self, message: str = "boom") -> None:
        raise ValueError(message)

    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def connection_id(self) -> int:
        """An id of the client connection this call came in on."""
        return id(current_context.client)

    @oneway
    def record(self, value: Any) -> None:
        with self.log_changed:
            self.log.append(value)
            self.log_changed.notify_all()

    def wait_log(self, count: int, timeout: float = 5.0) -> list[Any]:
        with self.log_changed:
            self.log_changed.wait_for(lambda: len(self.log) >= count, timeout)
            return list(self.log)

    def gen(self, n: int, name: str = "gen") -> Iterator[int]:
        try:
            yield from range(n)
        finally:
            self.generators_closed.append(name)

    def gen_fail(self, n: int) -> Iterator[int]:
        yield from range(n)
        raise ValueError("stream broke")

    def iterator(self, n: int) -> Iterator[str]:
        return iter([str(i) for i in range(n)])

    def keys_view(self) -> Any:
        return {"a": 1, "b": 2}.keys()

    def values_view(self) -> Any:
        return {"a": 1}.values()

    def items_view(self) -> Any:
        return {"a": 1}.items()

    def context(self) -> dict[str, Any]:
        """What the call context says about this call."""
        ctx = current_context
        corr = ctx.correlation_id
        return {
            "corr": str(corr) if corr is not None else None,
            "annotations": {k: bytes(v).decode("latin-1") for k, v in ctx.annotations.items() if k not in ("CORR", "HMAC")},
            "sock_addr": list(ctx.client_sock_addr) if isinstance(ctx.client_sock_addr, tuple) else ctx.client_sock_addr,
            "seq": ctx.seq,
            "flags": ctx.msg_flags,
            "serializer_id": ctx.serializer_id,
            "has_client": ctx.client is not None,
        }

    def annotate_response(self, key: str, value: str) -> str:
        current_context.response_annotations[key] = value.encode()
        return "ok"

    def open_resource(self, name: str) -> str:
        """Open a resource kept by this object and tracked (weakly, as in Pyro4) by the connection."""
        resource = Resource(name, self.resources_closed)
        self.resources.append(resource)
        current_context.track_resource(resource)
        return name

    def open_then_untrack(self, name: str) -> str:
        resource = Resource(name, self.resources_closed)
        self.resources.append(resource)
        current_context.track_resource(resource)
        current_context.untrack_resource(resource)
        return name

    @callback
    def callback_fails(self) -> None:
        raise KeyError("in a callback method")


@behavior(instance_mode="session")
@expose
class SessionCounter:
    """One instance per connection: counts the calls made over it."""

    def __init__(self) -> None:
        self.calls = 0

    def increment(self) -> int:
        self.calls += 1
        return self.calls

"""current_context: the thread-local call context of the running call (server) or next call (client)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

__all__ = ["CallContext", "current_context"]


class CallContext(threading.local):
    """Per-thread call information, as Pyro4's ``current_context``.

    On the server, inside a remote call: ``client`` (the Connection), ``client_sock_addr``, ``seq``,
    ``msg_flags``, ``serializer_id``, ``annotations`` (the request's), ``response_annotations`` (added
    to the reply) and ``correlation_id``. On the client: set ``annotations`` and ``correlation_id``
    before a call to send them.
    """

    def __init__(self) -> None:
        self.client: Any = None
        self.client_sock_addr: Any = None
        self.seq = 0
        self.msg_flags = 0
        self.serializer_id = 0
        self.annotations: dict[str, bytes] = {}
        self.response_annotations: dict[str, bytes] = {}
        #: the raw 16 bytes of the correlation id (the daemon sets these; the UUID is built on demand)
        self.correlation_id_bytes: bytes | None = None
        self._correlation_uuid: uuid.UUID | None = None

    @property
    def correlation_id(self) -> uuid.UUID | None:
        """The correlation id of the current call (server) or to send with the next calls (client)."""
        raw = self.correlation_id_bytes
        if raw is None:
            return None
        cached = self._correlation_uuid
        if cached is None or cached.bytes != raw:
            cached = self._correlation_uuid = uuid.UUID(bytes=bytes(raw))
        return cached

    @correlation_id.setter
    def correlation_id(self, value: uuid.UUID | None) -> None:
        self._correlation_uuid = value
        self.correlation_id_bytes = value.bytes if value is not None else None

    def to_global(self) -> dict[str, Any]:
        """A plain dict copy of this context, to carry into another thread."""
        return {
            "client": self.client,
            "client_sock_addr": self.client_sock_addr,
            "seq": self.seq,
            "msg_flags": self.msg_flags,
            "serializer_id": self.serializer_id,
            "annotations": self.annotations,
            "response_annotations": self.response_annotations,
            "correlation_id": self.correlation_id,
        }

    def from_global(self, values: dict[str, Any]) -> None:
        """Restore a context copied with :meth:`to_global` (in the current thread)."""
        for key, value in values.items():
            setattr(self, key, value)

    def track_resource(self, resource: Any) -> None:
        """Close ``resource`` (call its ``close()``) when the current client connection closes."""
        if self.client is not None:
            self.client.tracked_resources.add(resource)
        else:
            raise LookupError("can only track resources inside a remote call (no client connection)")

    def untrack_resource(self, resource: Any) -> None:
        """Stop tracking a resource."""
        if self.client is not None:
            self.client.tracked_resources.discard(resource)
        else:
            raise LookupError("can only untrack resources inside a remote call (no client connection)")


#: the thread-local context object
current_context = CallContext()

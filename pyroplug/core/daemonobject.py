"""DaemonObject: the daemon's own remote interface (object id ``Pyro.Daemon``), and item streams."""

from __future__ import annotations

import inspect
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any

from pyroplug.core import errors
from pyroplug.core.constants import DAEMON_NAME
from pyroplug.core.context import current_context
from pyroplug.core.expose import expose, members_of, oneway

if TYPE_CHECKING:
    from pyroplug.core.daemon import Daemon
    from pyroplug.core.transport import Connection

__all__ = ["DaemonObject", "StreamTable"]


@expose
class DaemonObject:
    """The part of a daemon that is itself remotely callable, as ``PYRO:Pyro.Daemon@location``."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def registered(self) -> list[str]:
        """The ids of every registered object."""
        return list(self.daemon.objectsById)

    def ping(self) -> None:
        """Do nothing; a cheap liveness check."""

    def info(self) -> str:
        """A line describing the daemon."""
        d = self.daemon
        return (
            f"{DAEMON_NAME} bound on {d.locationStr}, NAT {d.natLocationStr}, {len(d.objectsById)} objects registered. "
            f"Servertype: {d.transportServer}"
        )

    def get_metadata(self, objectId: str, as_lists: bool = False) -> dict[str, Any]:  # noqa: N803 - Pyro4 API
        """The exposed methods, oneway methods and attributes of a registered object."""
        obj = self.daemon.objectsById.get(objectId)
        if obj is None:
            raise errors.DaemonError("unknown object")
        require = self.daemon.config.REQUIRE_EXPOSE
        members = members_of(obj, require)
        if require and not members.methods and not members.attrs:
            cls = obj if inspect.isclass(obj) else type(obj)
            warnings.warn(f"Class {cls!r} doesn't expose any methods or attributes. Did you forget setting @expose on them?", stacklevel=2)
        return members.as_dict(as_lists)

    def get_next_stream_item(self, streamId: str) -> Any:  # noqa: N803 - Pyro4 API
        """The next item of an item stream; StopIteration (remotely) at its end."""
        return self.daemon.streams.next_item(streamId, current_context.client)

    @oneway
    def close_stream(self, streamId: str) -> None:  # noqa: N803 - Pyro4 API
        """Discard an item stream the client no longer wants."""
        self.daemon.streams.discard(streamId)


class StreamTable:
    """Open item streams: id -> [client connection or None, created, lingering since, iterator]."""

    def __init__(self, lifetime: float, linger: float) -> None:
        self.lifetime = lifetime
        self.linger = linger
        self.entries: dict[str, list[Any]] = {}

    def open(self, iterator: Any, client: Connection) -> str:
        """Store a new stream and return its id (a uuid4 string)."""
        stream_id = str(uuid.uuid4())
        self.entries[stream_id] = [client, time.time(), 0.0, iterator]
        return stream_id

    def next_item(self, stream_id: str, client: Connection | None) -> Any:
        entry = self.entries.get(stream_id)
        if entry is None:
            raise errors.PyroError("item stream terminated")
        if entry[0] is None:  # a reconnected client resumes a lingering stream
            entry[0], entry[2] = client, 0.0
        try:
            return next(entry[3])
        except BaseException:
            self.entries.pop(stream_id, None)
            raise

    def discard(self, stream_id: str) -> None:
        entry = self.entries.pop(stream_id, None)
        if entry is not None:
            _close_iterator(entry[3])

    def client_gone(self, client: Connection) -> None:
        """Start the linger period of the client's streams (or drop them when lingering is off)."""
        if not self.entries:
            return
        now = time.time()
        for stream_id, entry in list(self.entries.items()):
            if entry[0] is client:
                if self.linger > 0:
                    entry[0], entry[2] = None, now
                else:
                    self.discard(stream_id)

    def expire(self) -> None:
        """Drop streams past ITER_STREAM_LIFETIME or lingering past ITER_STREAM_LINGER."""
        now = time.time()
        for stream_id, entry in list(self.entries.items()):
            too_old = 0 < self.lifetime < now - entry[1]
            lingered = entry[2] and now - entry[2] > self.linger
            if too_old or lingered:
                self.discard(stream_id)

    def clear(self) -> None:
        for stream_id in list(self.entries):
            self.discard(stream_id)


def _close_iterator(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # a generator's cleanup failing must not break housekeeping
            pass

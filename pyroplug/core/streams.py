"""StreamResultIterator: the client side of item streaming (a remote iterator consumed item by item)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyroplug.core import errors
from pyroplug.core.constants import DAEMON_NAME
from pyroplug.core.protocol import FLAGS_ONEWAY

if TYPE_CHECKING:
    from pyroplug.core.proxy import Proxy

__all__ = ["StreamResultIterator"]


class StreamResultIterator:
    """Iterates a remote iterator or generator: each ``next()`` fetches one item over the proxy's connection."""

    def __init__(self, stream_id: str, proxy: Proxy) -> None:
        self.streamId = stream_id
        self.proxy: Proxy | None = proxy
        self.pyroseq = proxy._pyroSeq

    def __iter__(self) -> StreamResultIterator:
        return self

    def __next__(self) -> Any:
        proxy = self.proxy
        if proxy is None:
            raise StopIteration
        if proxy._pyroConnection is None:
            raise errors.ConnectionClosedError("the proxy for this stream result has been closed")
        self.pyroseq += 1
        try:
            return proxy._pyroInvoke("get_next_stream_item", [self.streamId], {}, objectId=DAEMON_NAME)
        except (StopIteration, GeneratorExit):
            self.proxy = None  # the daemon already dropped its side
            raise StopIteration from None

    def close(self) -> None:
        """Tell the daemon the stream is no longer needed (a oneway call)."""
        proxy, self.proxy = self.proxy, None
        if proxy is None or proxy._pyroConnection is None:
            return
        if self.pyroseq != proxy._pyroSeq:
            # the proxy moved on (this may run from the garbage collector mid-call): use a clone
            import copy

            proxy = copy.copy(proxy)
        try:
            proxy._pyroInvoke("close_stream", [self.streamId], {}, flags=FLAGS_ONEWAY, objectId=DAEMON_NAME)
        except errors.CommunicationError:
            pass

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown or a dead connection: nothing to tell
            pass

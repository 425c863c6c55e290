"""The ``u`` transport: unix domain stream sockets for ``./u:PATH`` locations (NUL-prefixed: Linux abstract)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pyroplug import socketutil
from pyroplug.core import errors
from pyroplug.core.hookspec import hookimpl
from pyroplug.core.transport import LISTEN_BACKLOG, Connection, Listener, SocketListener, Transport

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.core.uri import URI

__all__ = ["UnixListener", "UnixTransport", "pyroplug_transports"]

log = logging.getLogger(__name__)


def _require_af_unix() -> None:
    if not hasattr(socket, "AF_UNIX"):
        raise errors.CommunicationError(
            f"unix domain sockets (./u: locations) are not supported on this platform ({sys.platform})"
        )


def _is_abstract(address: str) -> bool:
    return address.startswith("\0")


def _display(address: str) -> str:
    return repr(address) if _is_abstract(address) else address


class UnixListener(SocketListener):
    """A listening unix socket; :meth:`close` removes the socket file it created."""

    def __init__(self, sock: socket.socket, address: str, config: Config) -> None:
        super().__init__(sock, "./u:" + address, config)
        self.address = address
        self._file_id: tuple[int, int, int] | None = None
        if not _is_abstract(address):
            try:
                self._file_id = _identity(address)
            except OSError:
                pass

    def wrap(self, csock: socket.socket) -> Connection:
        if self.config.SSL:  # TLS over the unix socket; the handshake runs as the client's records arrive
            return socketutil.ssl_wrap_server(csock, self.config)
        csock.setblocking(True)
        if self.config.COMMTIMEOUT:
            csock.settimeout(self.config.COMMTIMEOUT)
        return socketutil.SocketConnection(csock)

    def close(self) -> None:
        super().close()
        file_id, self._file_id = self._file_id, None
        if file_id is None:
            return
        try:  # remove the file only while it is still ours (a new server may have replaced it)
            if _identity(self.address) == file_id:
                os.unlink(self.address)
        except OSError:
            pass


def _identity(path: str) -> tuple[int, int, int]:
    """Device, inode and ctime of a file: inode numbers are reused at once, so ctime tells files apart."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_ctime_ns


class UnixTransport(Transport):
    """Unix domain sockets: a filesystem path, or on Linux an abstract name starting with NUL."""

    location_kind: ClassVar[str] = "u"

    def connect(self, uri: URI, timeout: float | None = None) -> Connection:
        """Connect to the socket at ``uri.address``; CommunicationError when nothing listens there."""
        _require_af_unix()
        address = uri.address
        if not address:
            raise errors.CommunicationError(f"not a unix socket location: {uri}")
        if timeout is None:
            timeout = self.config.COMMTIMEOUT
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout or None)
            sock.connect(address)
        except TimeoutError as exc:  # the builtin, raised by socket timeouts
            sock.close()
            raise errors.TimeoutError(f"cannot connect to ./u:{_display(address)}: timeout") from exc
        except OSError as exc:
            sock.close()
            if isinstance(exc, (ConnectionRefusedError, FileNotFoundError)):
                reason = "no server listening" if isinstance(exc, FileNotFoundError) else "connection refused"
            else:
                reason = str(exc)
            raise errors.CommunicationError(f"cannot connect to ./u:{_display(address)}: {reason}") from exc
        if self.config.SSL:  # no host name to check on a unix socket: the certificate chain is verified
            sock = socketutil.ssl_wrap_client(sock, self.config, None, f"./u:{_display(address)}")
        return socketutil.SocketConnection(sock)

    def listen(self, host: str | None = None, port: int = 0, address: str | None = None) -> Listener:
        """Bind the unix socket ``address``.

        A stale socket file (nothing listens on it) is replaced; a live one raises CommunicationError,
        and so does an existing file that is not a socket.
        """
        _require_af_unix()
        if not address:
            raise errors.CommunicationError("the unix socket transport needs an address (a path or a \\0name)")
        if _is_abstract(address):
            if not sys.platform.startswith("linux"):
                raise errors.CommunicationError("abstract unix socket names (starting with NUL) need Linux")
        else:
            _remove_stale(address)
        if self.config.SSL:
            socketutil.ssl_server_context(self.config)  # a missing certificate fails here, not per connection
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            socketutil.setNoInherit(sock)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            raise errors.CommunicationError(f"cannot bind ./u:{_display(address)}: {exc}") from exc
        log.debug("listening on ./u:%s", _display(address))
        return UnixListener(sock, address, self.config)


def _remove_stale(path: str) -> None:
    """Unlink a socket file nobody listens on; refuse a live socket or a non-socket file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise errors.CommunicationError(f"cannot bind ./u:{path}: {exc}") from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise errors.CommunicationError(f"cannot bind ./u:{path}: the file exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise errors.CommunicationError(f"cannot bind ./u:{path}: {exc}") from exc
    else:
        raise errors.CommunicationError(f"cannot bind ./u:{path}: address already in use (a server is listening)")
    finally:
        probe.close()
    log.info("replacing stale unix socket file %s", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@hookimpl
def pyroplug_transports() -> Sequence[type[Transport]]:
    """The unix socket transport (also where AF_UNIX is missing: it then explains that on use)."""
    return (UnixTransport,)

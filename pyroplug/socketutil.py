"""Low-level socket helpers with Pyro4's ``Pyro4.socketutil`` names and behaviour.

Address helpers (:func:`getIpVersion`, :func:`getIpAddress`, :func:`getInterfaceAddress`,
:func:`findProbablyUnusedPort`, :func:`bindOnUnusedPort`), socket factories (:func:`createSocket`,
:func:`createBroadcastSocket`), option setters, blocking I/O helpers (:func:`receiveData`,
:func:`sendData`) and :class:`SocketConnection`. Functions that Pyro4 lets read the global config
(``PREFER_IP_VERSION``, ``USE_MSG_WAITALL``, ``SSL_REQUIRECLIENTCERT``) read
:data:`pyroplug.config`; the transports pass their own Config values explicitly instead.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from pyroplug.core import errors
from pyroplug.core import transport as _transport
from pyroplug.core.transport import map_oserror

if TYPE_CHECKING:
    from pyroplug.core.protocol import Message

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None  # type: ignore[assignment]

__all__ = [
    "ERRNO_BADF",
    "ERRNO_EADDRINUSE",
    "ERRNO_EADDRNOTAVAIL",
    "ERRNO_ENOTSOCK",
    "ERRNO_RETRIES",
    "SocketConnection",
    "TLSServerConnection",
    "bindOnUnusedPort",
    "createBroadcastSocket",
    "createSocket",
    "family_str",
    "findProbablyUnusedPort",
    "getInterfaceAddress",
    "getIpAddress",
    "getIpVersion",
    "getSSLcontext",
    "interruptSocket",
    "receiveData",
    "resolve",
    "sendData",
    "setKeepalive",
    "setNoDelay",
    "setNoInherit",
    "setReuseAddr",
    "ssl_client_context",
    "ssl_server_context",
    "ssl_wrap_client",
    "ssl_wrap_server",
]


def _errnos(*names: str) -> list[int]:
    """The errno values (POSIX and WSA) that exist on this platform, in the order given."""
    return [getattr(errno, name) for name in names if hasattr(errno, name)]


#: errors after which a socket call is simply retried
ERRNO_RETRIES = _errnos("EINTR", "EAGAIN", "EWOULDBLOCK", "EINPROGRESS", "WSAEINTR", "WSAEWOULDBLOCK", "WSAEINPROGRESS")
ERRNO_BADF = _errnos("EBADF", "WSAEBADF")
ERRNO_ENOTSOCK = _errnos("ENOTSOCK", "WSAENOTSOCK")
ERRNO_EADDRNOTAVAIL = _errnos("EADDRNOTAVAIL", "WSAEADDRNOTAVAIL")
ERRNO_EADDRINUSE = _errnos("EADDRINUSE", "WSAEADDRINUSE")

#: sentinel: "leave the socket's timeout alone" (Pyro4's createSocket default)
_DEFAULT_TIMEOUT: Any = object()

_FAMILY_BY_VERSION = {4: socket.AF_INET, 6: socket.AF_INET6, 0: socket.AF_UNSPEC}


def _config() -> Any:
    from pyroplug.core.config import config

    return config


# --- addresses ---------------------------------------------------------------------------------


#: (host, port, ip_version) -> the address of a numeric host (they never change; names are not kept)
_literals: dict[tuple[str, int, int], list[tuple[int, tuple[Any, ...]]]] = {}


def _literal_address(host: str, port: int, ip_version: int) -> list[tuple[int, tuple[Any, ...]]] | None:
    """The address of a numeric IPv4/IPv6 ``host`` without asking the resolver; None for names."""
    key = (host, port, ip_version)
    known = _literals.get(key)
    if known is not None:
        return list(known)
    found = _parse_literal(host, port, ip_version)
    if found is not None:
        if len(_literals) >= 1024:
            _literals.clear()
        _literals[key] = found
        return list(found)
    return None


def _parse_literal(host: str, port: int, ip_version: int) -> list[tuple[int, tuple[Any, ...]]] | None:
    if ":" in host:
        if "%" in host or ip_version == 4:  # scoped addresses need the resolver for their scope id
            return None
        try:
            socket.inet_pton(socket.AF_INET6, host)
        except (OSError, ValueError):
            return None
        return [(socket.AF_INET6, (host, port, 0, 0))]
    if ip_version == 6 or not host[-1:].isdigit():
        return None
    try:
        socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):
        return None
    return [(socket.AF_INET, (host, port))]


def resolve(
    host: str | None, port: int, ip_version: int, passive: bool = False
) -> list[tuple[int, tuple[Any, ...]]]:
    """``(family, sockaddr)`` pairs for ``host``, preferring IP version ``ip_version`` (4, 6 or 0 = any).

    A host with a ``:`` is an IPv6 literal and resolves in any family; brackets are stripped.
    When the preferred version 4 has no address, any family is tried (like Pyro4); a forced
    version 6 without an address raises ``socket.gaierror``.
    """
    if host and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not passive and host:
        literal = _literal_address(host, port, ip_version)
        if literal is not None:
            return literal
    if host and ":" in host:
        ip_version = 0
    family = _FAMILY_BY_VERSION.get(ip_version)
    if family is None:
        raise ValueError(f"unknown IP version {ip_version!r} (use 4, 6 or 0)")
    flags = socket.AI_PASSIVE if passive else 0
    if passive and not host:
        host = None  # the wildcard address of the family
        if family == socket.AF_UNSPEC:
            family = socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP, flags)
    except socket.gaierror:
        if ip_version != 4:
            raise
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, socket.IPPROTO_TCP, flags)
    result: list[tuple[int, tuple[Any, ...]]] = []
    for fam, _type, _proto, _canon, sockaddr in infos:
        if fam in (socket.AF_INET, socket.AF_INET6) and (fam, sockaddr) not in result:
            result.append((fam, tuple(sockaddr)))
    if not result:
        raise socket.gaierror(socket.EAI_NONAME, f"no IP address for {host!r}")
    return result


def getIpVersion(hostnameOrAddress: str) -> int:  # noqa: N802,N803 - Pyro4 API
    """4 or 6: the IP version of the address that ``hostnameOrAddress`` resolves to."""
    address = getIpAddress(hostnameOrAddress)
    if ":" in address:
        return 6
    if "." in address:
        return 4
    raise errors.CommunicationError(f"Unknown IP address format: {address}")


def getIpAddress(hostname: str | None, workaround127: bool = False, ipVersion: int | None = None) -> str:  # noqa: N802,N803
    """The IP address of ``hostname`` (None or '' means this machine's name).

    ``ipVersion`` 4 or 6 asks for that version, 0 lets the OS choose, None uses PREFER_IP_VERSION
    (or 0 for a name containing ``:``). With ``workaround127`` a loopback answer is replaced by the
    address of the interface that routes outwards (IPv4 only). A missing IPv6 address raises OSError.
    """
    if ipVersion is None:
        ipVersion = 0 if hostname and ":" in hostname else _config().PREFER_IP_VERSION
    if ipVersion not in _FAMILY_BY_VERSION:
        raise ValueError("unknown value for argument ipVersion.")
    name = hostname or socket.gethostname()
    try:
        family, sockaddr = resolve(name, 80, ipVersion)[0]
    except socket.gaierror as exc:
        if ipVersion == 6:
            raise OSError("unable to determine IPV6 address") from exc
        raise
    ip = str(sockaddr[0])
    if workaround127 and (ip.startswith("127.") or ip == "0.0.0.0"):
        ip = getInterfaceAddress("4.2.2.2")
    return ip


def getInterfaceAddress(ip_address: str) -> str:  # noqa: N802 - Pyro4 API
    """The address of the local interface that routes to ``ip_address`` (no packet is sent)."""
    family = socket.AF_INET if getIpVersion(ip_address) == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((ip_address, 53))
        return str(sock.getsockname()[0])


def bindOnUnusedPort(sock: socket.socket, host: str = "localhost") -> int:  # noqa: N802 - Pyro4 API
    """Bind an IP socket to a free port on ``host`` and return the port (``localhost``: the loopback)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise errors.CommunicationError(f"unsupported socket family: {sock.family!r}")
    if sock.type == socket.SOCK_STREAM and hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        except OSError:
            pass
    if sock.family == socket.AF_INET:
        sock.bind(("127.0.0.1" if host == "localhost" else host, 0))
    else:
        sock.bind(("::1" if host == "localhost" else host, 0, 0, 0))
    return int(sock.getsockname()[1])


def findProbablyUnusedPort(family: int = socket.AF_INET, socktype: int = socket.SOCK_STREAM) -> int:  # noqa: N802
    """A port that is free right now (another process may still take it before you bind it)."""
    with socket.socket(family, socktype) as tempsock:
        return bindOnUnusedPort(tempsock)


# --- socket options ----------------------------------------------------------------------------


def setReuseAddr(sock: socket.socket) -> None:  # noqa: N802 - Pyro4 API
    """Set SO_REUSEADDR, when possible."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    except (OSError, AttributeError):
        pass


def setNoDelay(sock: socket.socket) -> None:  # noqa: N802 - Pyro4 API
    """Set TCP_NODELAY (disable Nagle's algorithm), when possible."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def setKeepalive(sock: socket.socket) -> None:  # noqa: N802 - Pyro4 API
    """Set SO_KEEPALIVE, when possible."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except (OSError, AttributeError):
        pass


def setNoInherit(sock: socket.socket) -> None:  # noqa: N802 - Pyro4 API
    """Keep the socket out of child processes (Python sockets already are non-inheritable; this insists)."""
    try:
        sock.set_inheritable(False)
    except OSError:
        pass


def family_str(sock: socket.socket) -> str:
    """``IPv4``, ``IPv6``, ``Unix`` or ``???``."""
    return _transport.family_name(sock)


# --- factories ---------------------------------------------------------------------------------


def _ip_family(address: tuple[Any, ...], force_ipv6: bool, what: str) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """The family for a (host, port) bind/connect address, and the address in that family's form."""
    host = address[0]
    if not host:
        return (socket.AF_INET6 if force_ipv6 else socket.AF_INET), address
    version = getIpVersion(host)
    if version == 4:
        if force_ipv6:
            raise ValueError(f"IPv4 address is used in {what} argument with forceIPv6 argument: {host}.")
        return socket.AF_INET, address
    return socket.AF_INET6, (host, address[1], 0, 0)


def createSocket(  # noqa: N802 - Pyro4 API
    bind: Any = None,
    connect: Any = None,
    reuseaddr: bool = False,
    keepalive: bool = True,
    timeout: Any = _DEFAULT_TIMEOUT,
    noinherit: bool = False,
    ipv6: bool | None = False,
    nodelay: bool = True,
    sslContext: Any = None,  # noqa: N803
    backlog: int = 100,
) -> socket.socket:
    """Create a stream socket that is bound and listening (``bind``) or connected (``connect``).

    A ``str`` address means a unix domain socket, a tuple an IP ``(host, port)``; port 0 binds a free
    port. ``ipv6=True`` forces IPv6, None follows PREFER_IP_VERSION. ``timeout`` 0 means blocking;
    by default the socket's timeout is left alone. ``backlog`` is the listen backlog (Pyro4: 100).
    """
    if bind and connect:
        raise ValueError("bind and connect cannot both be specified at the same time")
    force_ipv6 = bool(ipv6) or (ipv6 is None and _config().PREFER_IP_VERSION == 6)
    if isinstance(bind, str) or isinstance(connect, str):
        if not hasattr(socket, "AF_UNIX"):
            raise errors.CommunicationError("unix domain sockets are not supported on this platform")
        family = socket.AF_UNIX
    elif not bind and not connect:
        family = socket.AF_INET6 if force_ipv6 else socket.AF_INET
    elif isinstance(bind, tuple):
        family, bind = _ip_family(bind, force_ipv6, "bind")
    elif isinstance(connect, tuple):
        family, connect = _ip_family(connect, force_ipv6, "connect")
    else:
        raise ValueError("unknown bind or connect format.")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sslContext is not None:
            if bind:
                sock = sslContext.wrap_socket(sock, server_side=True)
            elif connect:
                sock = sslContext.wrap_socket(sock, server_side=False, server_hostname=connect[0])
            else:
                sock = sslContext.wrap_socket(sock, server_side=False)
        if nodelay and family != getattr(socket, "AF_UNIX", None):
            setNoDelay(sock)
        if reuseaddr:
            setReuseAddr(sock)
        if noinherit:
            setNoInherit(sock)
        if timeout is not _DEFAULT_TIMEOUT:
            sock.settimeout(timeout or None)
        if bind:
            if isinstance(bind, tuple) and bind[1] == 0:
                bindOnUnusedPort(sock, bind[0])
            else:
                sock.bind(bind)
            try:
                sock.listen(backlog)
            except OSError:
                pass
        if connect:
            sock.connect(connect)
        if keepalive:
            setKeepalive(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def createBroadcastSocket(  # noqa: N802 - Pyro4 API
    bind: Any = None, reuseaddr: bool = False, timeout: Any = _DEFAULT_TIMEOUT, ipv6: bool | None = False
) -> socket.socket:
    """Create a UDP socket (broadcast-enabled for IPv4), bound when ``bind`` is a (host, port) tuple."""
    force_ipv6 = bool(ipv6) or (ipv6 is None and _config().PREFER_IP_VERSION == 6)
    if not bind:
        family = socket.AF_INET6 if force_ipv6 else socket.AF_INET
    elif isinstance(bind, tuple):
        family, bind = _ip_family(bind, force_ipv6, "bind")
    else:
        raise ValueError(f"unknown bind format: {bind!r}")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if reuseaddr:
            setReuseAddr(sock)
        if timeout is not _DEFAULT_TIMEOUT:
            sock.settimeout(timeout)
        if bind:
            host = bind[0] or ""
            if bind[1] == 0:
                bindOnUnusedPort(sock, host)
            elif family == socket.AF_INET:
                sock.bind((host, bind[1]))
            else:
                sock.bind((host, bind[1], 0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


# --- blocking I/O ------------------------------------------------------------------------------


def _retry_delay(delay: float) -> float:
    """A few very short waits first, then 0.1 s longer each time."""
    if delay == 0.0:
        return 0.001
    if delay == 0.001:
        return 0.01
    return delay + 0.1


def receiveData(sock: socket.socket, size: int) -> bytes:  # noqa: N802 - Pyro4 API
    """Receive exactly ``size`` bytes.

    Raises TimeoutError (``receiving: timeout``), or ConnectionClosedError: ``receiving: not enough
    data`` with the bytes received so far in its ``partialData`` attribute, or ``receiving: connection
    lost: ...``. Uses MSG_WAITALL when USE_MSG_WAITALL is on (never on TLS sockets).
    """
    buf = bytearray(size)
    view = memoryview(buf)
    flags = 0
    if _config().USE_MSG_WAITALL and hasattr(socket, "MSG_WAITALL") and not hasattr(sock, "getpeercert"):
        flags = socket.MSG_WAITALL
    got = 0
    delay = 0.0
    while got < size:
        try:
            n = sock.recv_into(view[got:], size - got, flags)
        except TimeoutError as exc:  # the builtin, raised by socket timeouts
            raise errors.TimeoutError("receiving: timeout") from exc
        except OSError as exc:
            if exc.errno not in ERRNO_RETRIES:
                raise errors.ConnectionClosedError(f"receiving: connection lost: {exc}") from exc
            time.sleep(0.00001 + delay)
            delay = _retry_delay(delay)
            continue
        if not n:
            err = errors.ConnectionClosedError("receiving: not enough data")
            err.partialData = bytes(buf[:got])  # type: ignore[attr-defined]
            raise err
        got += n
    return bytes(buf)


def sendData(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:  # noqa: N802 - Pyro4 API
    """Send all of ``data``; TimeoutError or ConnectionClosedError on failure.

    Blocking sockets use ``sendall``; sockets with a timeout or non-blocking ones use a send loop
    that retries EAGAIN-like errors with short sleeps.
    """
    if sock.gettimeout() is None:
        try:
            sock.sendall(data)
        except TimeoutError as exc:
            raise errors.TimeoutError("sending: timeout") from exc
        except OSError as exc:
            raise errors.ConnectionClosedError(f"sending: connection lost: {exc}") from exc
        return
    view = memoryview(data).cast("B")
    delay = 0.0
    while len(view):
        try:
            sent = sock.send(view)
        except TimeoutError as exc:
            raise errors.TimeoutError("sending: timeout") from exc
        except OSError as exc:
            if exc.errno not in ERRNO_RETRIES:
                raise errors.ConnectionClosedError(f"sending: connection lost: {exc}") from exc
            time.sleep(0.00001 + delay)
            delay = _retry_delay(delay)
            continue
        view = view[sent:]


def interruptSocket(address: Any) -> None:  # noqa: N802 - Pyro4 API
    """Connect to ``address``, send a few bytes and hang up: wakes a server blocked in accept/select."""
    try:
        sock = createSocket(connect=address, keepalive=False, timeout=None)
    except OSError:
        return
    try:
        sock.sendall(b"!" * 16)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


# --- TLS ---------------------------------------------------------------------------------------

#: TLS contexts made by getSSLcontext: (role, settings) -> (the files' modification times, context)
_ssl_contexts: dict[tuple[Any, ...], tuple[tuple[int, ...], Any]] = {}
_ssl_lock = threading.Lock()


def _file_stamp(path: str) -> int:
    """Modification time of ``path`` in ns (-1 when it is missing or empty): part of a context's cache key."""
    if not path:
        return -1
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def getSSLcontext(  # noqa: N802 - Pyro4 API
    servercert: str = "",
    serverkey: str = "",
    clientcert: str = "",
    clientkey: str = "",
    cacerts: str = "",
    keypassword: str = "",
    *,
    requireclientcert: bool | None = None,
    checkhostname: bool = True,
) -> Any:
    """A TLS context: a server context when ``servercert`` is given, else a client context.

    As in Pyro4 a context is created once and then reused by the whole process; the cache is keyed by
    the settings, so daemons and proxies with different certificates in one process each get their own
    (Pyro4 keeps just one of each kind), and a context is made anew when one of its files changed (so
    renewed certificates are used by new connections without a restart).

    * server (``ssl.Purpose.CLIENT_AUTH``): ``servercert`` (+ ``serverkey``, ``keypassword``). Client
      certificates are required and verified against ``cacerts`` when ``requireclientcert`` (default:
      the SSL_REQUIRECLIENTCERT config item) is on (two-way TLS), else not asked for (one-way).
    * client (``ssl.Purpose.SERVER_AUTH``): the server's certificate is verified against ``cacerts``
      (a PEM file, or a directory of hashed certificates; default: the system's CA store), and its name
      against the host connected to unless ``checkhostname`` is False; ``clientcert`` (+ ``clientkey``,
      ``keypassword``) is presented when the server asks for one.

    Raises ValueError for both a server and a client certificate, OSError (Pyro4's messages) for a
    missing certificate or key file, and ssl.SSLError for one that cannot be loaded (e.g. a wrong key
    password).
    """
    if ssl is None:
        raise ValueError("SSL requested but ssl module is not available")
    if servercert:
        if clientcert:
            raise ValueError("can't have both server cert and client cert")
        if requireclientcert is None:
            requireclientcert = bool(_config().SSL_REQUIRECLIENTCERT)
        key: tuple[Any, ...] = ("server", servercert, serverkey, cacerts, keypassword, requireclientcert)
    else:
        key = ("client", clientcert, clientkey, cacerts, keypassword, checkhostname)
    stamps = tuple(_file_stamp(path) for path in (servercert or clientcert, serverkey or clientkey, cacerts))
    with _ssl_lock:
        cached = _ssl_contexts.get(key)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        if servercert:
            context = _server_context(servercert, serverkey, cacerts, keypassword, bool(requireclientcert))
        else:
            context = _client_context(clientcert, clientkey, cacerts, keypassword, checkhostname)
        _ssl_contexts[key] = (stamps, context)
        return context


def _server_context(servercert: str, serverkey: str, cacerts: str, keypassword: str, requireclientcert: bool) -> Any:
    if not os.path.isfile(servercert):
        raise OSError("server cert file not found")
    if serverkey and not os.path.isfile(serverkey):
        raise OSError("server key file not found")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(servercert, serverkey or None, keypassword or None)
    _load_cacerts(context, cacerts)
    context.verify_mode = ssl.CERT_REQUIRED if requireclientcert else ssl.CERT_NONE
    return context


def _client_context(clientcert: str, clientkey: str, cacerts: str, keypassword: str, checkhostname: bool) -> Any:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if clientcert:
        if not os.path.isfile(clientcert):
            raise OSError("client cert file not found")
        if clientkey and not os.path.isfile(clientkey):
            raise OSError("client key file not found")
        context.load_cert_chain(clientcert, clientkey or None, keypassword or None)
    _load_cacerts(context, cacerts)
    if not checkhostname:
        context.check_hostname = False  # the chain is still verified (CERT_REQUIRED)
    return context


def _load_cacerts(context: Any, cacerts: str) -> None:
    if cacerts:
        if os.path.isdir(cacerts):
            context.load_verify_locations(capath=cacerts)
        else:
            context.load_verify_locations(cafile=cacerts)


def ssl_server_context(config: Any) -> Any:
    """The server TLS context for a daemon's Config (SSL_SERVERCERT, SSL_SERVERKEY, SSL_SERVERKEYPASSWD,
    SSL_CACERTS, SSL_REQUIRECLIENTCERT); PyroError when SSL_SERVERCERT is not set."""
    if not config.SSL_SERVERCERT:
        raise errors.PyroError("SSL is enabled but no server certificate is configured (SSL_SERVERCERT)")
    return getSSLcontext(servercert=config.SSL_SERVERCERT, serverkey=config.SSL_SERVERKEY,
                         cacerts=config.SSL_CACERTS, keypassword=config.SSL_SERVERKEYPASSWD,
                         requireclientcert=config.SSL_REQUIRECLIENTCERT)


def ssl_client_context(config: Any, checkhostname: bool = True) -> Any:
    """The client TLS context for a proxy's Config (SSL_CLIENTCERT, SSL_CLIENTKEY, SSL_CLIENTKEYPASSWD,
    SSL_CACERTS)."""
    return getSSLcontext(clientcert=config.SSL_CLIENTCERT, clientkey=config.SSL_CLIENTKEY,
                         cacerts=config.SSL_CACERTS, keypassword=config.SSL_CLIENTKEYPASSWD,
                         checkhostname=checkhostname)


def ssl_wrap_client(sock: socket.socket, config: Any, server_hostname: str | None, location: str) -> socket.socket:
    """Run the client side of the TLS handshake on a connected socket, within the socket's timeout.

    The server's certificate must chain to SSL_CACERTS and, when ``server_hostname`` is given, name
    that host (for unix sockets there is no host name: only the chain is checked). Returns the
    SSLSocket; on failure the socket is closed and CommunicationError (TimeoutError) raised, naming
    ``location`` like Pyro4 (``cannot connect to LOCATION: ...``) with the ssl error as its cause.
    """
    try:
        context = ssl_client_context(config, checkhostname=server_hostname is not None)
        return context.wrap_socket(sock, server_hostname=server_hostname)  # type: ignore[no-any-return]
    except TimeoutError as exc:  # the builtin
        sock.close()
        raise errors.TimeoutError(f"cannot connect to {location}: TLS handshake timeout") from exc
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; a bad config can give ValueError
        sock.close()
        raise errors.CommunicationError(f"cannot connect to {location}: TLS: {exc}") from exc


def ssl_wrap_server(sock: socket.socket, config: Any) -> TLSServerConnection:
    """Wrap an accepted socket for TLS without any I/O: the handshake runs in :meth:`TLSServerConnection.fill`,
    a step at a time, as the client's records arrive (so it never blocks a server's loop)."""
    context = ssl_server_context(config)
    tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    return TLSServerConnection(tls, config.COMMTIMEOUT)


def _wait(sock: socket.socket, write: bool, timeout: float | None, doing: str) -> None:
    """Block until ``sock`` is readable (or writable) or ``timeout`` passed (TimeoutError).

    Uses poll where there is one: a busy server's descriptors can be beyond select()'s FD_SETSIZE.
    """
    try:
        fd = sock.fileno()
        if fd < 0:
            raise ValueError("closed")
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLOUT if write else select.POLLIN)
            ready = bool(poller.poll(None if timeout is None else timeout * 1000.0))
        else:  # pragma: no cover - Windows
            readers, writers = ([], [fd]) if write else ([fd], [])
            r, w, _ = select.select(readers, writers, [], timeout)
            ready = bool(r or w)
    except (OSError, ValueError) as exc:  # closed meanwhile
        raise errors.ConnectionClosedError(f"{doing}: connection closed") from exc
    if not ready:
        raise errors.TimeoutError(f"{doing}: timeout")


class TLSServerConnection(_transport.SocketConnection):
    """The daemon side of a TLS connection: a non-blocking SSLSocket.

    A server type reads through :meth:`fill` only after the socket became readable; here that read
    never blocks: the TLS handshake advances a step at a time (its failure, e.g. a missing or untrusted
    client certificate, raises SecurityError before any Pyro message is read), and a record that has
    only partly arrived leaves the reader untouched until the rest arrives. Decrypted bytes left inside
    the SSL object are reported by :meth:`buffered`, so server types read them without waiting for the
    selector. Sends (and :meth:`recv_into`, for blocking callers) wait for the socket with COMMTIMEOUT
    (the connection's timeout; None: forever), like a plain blocking socket would.
    """

    def __init__(self, sock: Any, timeout: float | None = None) -> None:
        super().__init__(sock)
        sock.setblocking(False)
        self._tls: Any = sock  # the SSLSocket (``sock`` is typed as a plain socket)
        self._io_timeout: float | None = timeout or None
        #: True once the TLS handshake completed
        self.tls_established = False

    # --- handshake ---------------------------------------------------------------------------
    def _handshake_step(self) -> bool:
        """Advance the TLS handshake with what has arrived; True once it is complete."""
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLWantWriteError:
                _wait(self.sock, True, self._io_timeout, "TLS handshake")
                continue
            except ssl.SSLError as exc:
                raise errors.SecurityError(f"TLS handshake failed: {exc}") from exc
            except (OSError, ValueError) as exc:
                raise map_oserror(exc, "TLS handshake") from exc
            self.tls_established = True
            return True

    # --- receiving -----------------------------------------------------------------------------
    def fill(self) -> None:
        """Read what has arrived (never blocks): handshake records first, then application data."""
        if not self.tls_established and not self._handshake_step():
            return
        reader = self.reader
        try:
            n = self.sock.recv_into(reader.get_buffer())
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # only part of a record has arrived (or a non-application record)
        except ssl.SSLError as exc:
            raise errors.ConnectionClosedError(f"receiving: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise map_oserror(exc, "receiving") from exc
        if not n:
            raise errors.ConnectionClosedError("receiving: connection closed")
        reader.buffer_updated(n)

    def receive(self) -> Message | None:
        """:meth:`fill` (never blocks), then the first complete message in the reader, or None.

        Overridden so that no plain-socket fast path (a direct ``recv_into`` on the socket) is ever
        used on this connection.
        """
        self.fill()
        return self.reader.next_message()

    def recv_into(self, buffer: memoryview) -> int:
        """Blocking receive (waits up to the timeout for a whole record); 0 at the end of the stream."""
        while not self.tls_established and not self._handshake_step():
            _wait(self.sock, False, self._io_timeout, "receiving")
        while True:
            try:
                return int(self.sock.recv_into(buffer))
            except ssl.SSLWantReadError:
                _wait(self.sock, False, self._io_timeout, "receiving")
            except ssl.SSLWantWriteError:
                _wait(self.sock, True, self._io_timeout, "receiving")
            except ssl.SSLError as exc:
                raise errors.ConnectionClosedError(f"receiving: {exc}") from exc
            except (OSError, ValueError) as exc:
                raise map_oserror(exc, "receiving") from exc

    # --- sending -------------------------------------------------------------------------------
    def send(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        sock = self.sock
        while len(view):
            try:
                sent = sock.send(view)
            except ssl.SSLWantWriteError:
                _wait(sock, True, self._io_timeout, "sending")
                continue
            except ssl.SSLWantReadError:
                _wait(sock, False, self._io_timeout, "sending")
                continue
            except (OSError, ValueError) as exc:
                raise map_oserror(exc, "sending") from exc
            view = view[sent:]

    def send_parts(self, head: bytes, payload: bytes | bytearray | memoryview) -> None:
        if len(payload) < _transport.GATHER_THRESHOLD:
            self.send(head + payload)
        else:
            self.send(head)
            self.send(payload)

    # --- timeouts ------------------------------------------------------------------------------
    def settimeout(self, timeout: float | None) -> None:
        """The time sends and blocking receives may wait (the socket itself stays non-blocking)."""
        self._io_timeout = timeout or None

    def gettimeout(self) -> float | None:
        return self._io_timeout


# --- connection --------------------------------------------------------------------------------


class SocketConnection(_transport.SocketConnection):
    """Pyro4's ``SocketConnection(sock, objectId=None, keep_open=False)`` on pyroplug's socket Connection.

    Adds Pyro4's ``objectId``, ``recv(size)``, the ``timeout`` property and the context-manager protocol
    to :class:`pyroplug.plugin.SocketConnection`; ``family()`` works as a call and as a value.
    """

    def __init__(self, sock: socket.socket, objectId: str | None = None, keep_open: bool = False) -> None:  # noqa: N803
        super().__init__(sock, keep_open)
        self.objectId = objectId

    def recv(self, size: int) -> bytes:
        """Receive exactly ``size`` bytes (see :func:`receiveData`)."""
        return receiveData(self.sock, size)

    @property
    def timeout(self) -> float | None:
        """The socket timeout (None: blocking)."""
        return self.gettimeout()

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.settimeout(value)

    def __enter__(self) -> SocketConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

